//! Key layout of the state machine's key space (RocksDB column family `sm`).
//!
//! ```text
//! m/last_applied              LogId            last applied log id      } written by the state
//! m/membership                StoredMembership last applied membership } machine (coffer-raft)
//! m/cluster                   ClusterInfo      set once by Bootstrap
//! m/requests                  RequestTableMeta request table: queue bounds and clock
//! s/<name>                    Secret
//! v/<name> 0x00 <u64 BE>      SecretVersion    (names never contain 0x00)
//! p/<policy name>             Policy
//! t/<accessor>                TokenRecord
//! h/<hex SHA-256 of a token>  accessor         (token lookup index)
//! r/<request id>              RequestRecord    first outcome of a request (exactly once)
//! x/<u64 BE seq>              RequestQueueEntry request records in the order written (expiry)
//! m/tokens                    TokenTableMeta   token record count, indexed flag
//! g/<u64 BE due ms><accessor> (empty)          when a token record may be deleted
//! a/<u64 BE node id>          AuditAnchors     a node's audit chain heads
//! q/a<u64 BE wake ms><name>   (empty)          when the rotation scheduler acts on a secret
//! q/m<u64 BE due ms><name>    (empty)          when a manual secret is due (reported only)
//! ```
//! Every key starts with an ASCII letter, so `[0x00, 0xff)` covers the whole space. The model
//! never writes the two keys of the state machine.

pub const CLUSTER: &[u8] = b"m/cluster";
pub const META_PREFIX: &[u8] = b"m/";
pub const SECRET_PREFIX: &[u8] = b"s/";
pub const VERSION_PREFIX: &[u8] = b"v/";
pub const POLICY_PREFIX: &[u8] = b"p/";
pub const TOKEN_PREFIX: &[u8] = b"t/";
pub const TOKEN_HASH_PREFIX: &[u8] = b"h/";
pub const REQUESTS_META: &[u8] = b"m/requests";
pub const REQUEST_PREFIX: &[u8] = b"r/";
pub const REQUEST_QUEUE_PREFIX: &[u8] = b"x/";
pub const TOKENS_META: &[u8] = b"m/tokens";
pub const TOKEN_DUE_PREFIX: &[u8] = b"g/";
pub const AUDIT_ANCHORS_PREFIX: &[u8] = b"a/";
pub const ROTATION_QUEUE_PREFIX: &[u8] = b"q/";
/// Entries the scheduler acts on (runs in flight, automatic strategies when due).
pub const ROTATION_ACT_PREFIX: &[u8] = b"q/a";
/// Manual secrets' due times: reported, never acted on.
pub const ROTATION_DUE_PREFIX: &[u8] = b"q/m";

/// The rotation queue entry of `name` at `at_ms`.
pub fn rotation_queue(manual: bool, at_ms: u64, name: &str) -> Vec<u8> {
    let prefix = if manual {
        ROTATION_DUE_PREFIX
    } else {
        ROTATION_ACT_PREFIX
    };
    [prefix, &at_ms.to_be_bytes()[..], name.as_bytes()].concat()
}

/// The time, kind (manual) and name in a [`rotation_queue`] key.
pub fn parse_rotation_queue(key: &[u8]) -> Option<(u64, bool, &str)> {
    let (manual, rest) = if let Some(r) = key.strip_prefix(ROTATION_DUE_PREFIX) {
        (true, r)
    } else {
        (false, key.strip_prefix(ROTATION_ACT_PREFIX)?)
    };
    if rest.len() < 8 {
        return None;
    }
    let (at, name) = rest.split_at(8);
    Some((
        u64::from_be_bytes(at.try_into().ok()?),
        manual,
        std::str::from_utf8(name).ok()?,
    ))
}

/// The key of node `node_id`'s audit anchors.
pub fn audit_anchors(node_id: u64) -> Vec<u8> {
    [AUDIT_ANCHORS_PREFIX, &node_id.to_be_bytes()[..]].concat()
}

/// The key saying token `accessor`'s record may be deleted from `due_ms` on.
pub fn token_due(due_ms: u64, accessor: &str) -> Vec<u8> {
    [TOKEN_DUE_PREFIX, &due_ms.to_be_bytes()[..], accessor.as_bytes()].concat()
}

/// The due time and accessor in a [`token_due`] key.
pub fn parse_token_due(key: &[u8]) -> Option<(u64, &str)> {
    let rest = key.strip_prefix(TOKEN_DUE_PREFIX)?;
    if rest.len() < 8 {
        return None;
    }
    let (due, accessor) = rest.split_at(8);
    Some((
        u64::from_be_bytes(due.try_into().ok()?),
        std::str::from_utf8(accessor).ok()?,
    ))
}

pub fn request(id: &str) -> Vec<u8> {
    [REQUEST_PREFIX, id.as_bytes()].concat()
}

pub fn request_queue(seq: u64) -> Vec<u8> {
    [REQUEST_QUEUE_PREFIX, &seq.to_be_bytes()[..]].concat()
}

pub fn policy(name: &str) -> Vec<u8> {
    [POLICY_PREFIX, name.as_bytes()].concat()
}

pub fn token(accessor: &str) -> Vec<u8> {
    [TOKEN_PREFIX, accessor.as_bytes()].concat()
}

pub fn token_hash(sha256: &[u8]) -> Vec<u8> {
    [TOKEN_HASH_PREFIX, hex::encode(sha256).as_bytes()].concat()
}

pub fn secret(name: &str) -> Vec<u8> {
    let mut k = SECRET_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Prefix of every version key of one secret.
pub fn versions_of(name: &str) -> Vec<u8> {
    let mut k = VERSION_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

pub fn version(name: &str, version: u64) -> Vec<u8> {
    let mut k = versions_of(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The version number in a version key of `name` (`None` for any other key).
pub fn version_number(key: &[u8], name: &str) -> Option<u64> {
    let rest = key.strip_prefix(versions_of(name).as_slice())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The secret name in an `s/` key.
pub fn secret_name(key: &[u8]) -> Option<&str> {
    key.strip_prefix(SECRET_PREFIX)
        .and_then(|n| std::str::from_utf8(n).ok())
}

/// The key spaces of the layout above, by prefix, as [`space_of`] names them.
const SPACES: &[(&[u8], &str)] = &[
    (SECRET_PREFIX, "secrets"),
    (VERSION_PREFIX, "versions"),
    (POLICY_PREFIX, "policies"),
    (TOKEN_PREFIX, "tokens"),
    (TOKEN_HASH_PREFIX, "token index"),
    (REQUEST_PREFIX, "requests"),
    (REQUEST_QUEUE_PREFIX, "request queue"),
    (TOKEN_DUE_PREFIX, "token expiry"),
    (AUDIT_ANCHORS_PREFIX, "audit anchors"),
    (ROTATION_QUEUE_PREFIX, "rotation queue"),
    (META_PREFIX, "meta"),
];

/// The name of the key space `key` belongs to (what a census of the state counts it under);
/// "other" for a key outside the layout.
pub fn space_of(key: &[u8]) -> &'static str {
    SPACES
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map_or("other", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_layout_is_in_its_named_space() {
        assert_eq!(space_of(&secret("acme/x")), "secrets");
        assert_eq!(space_of(&version("acme/x", 3)), "versions");
        assert_eq!(space_of(&request("r-1")), "requests");
        assert_eq!(space_of(&request_queue(9)), "request queue");
        assert_eq!(space_of(&token_due(5, "acc")), "token expiry");
        assert_eq!(space_of(&rotation_queue(true, 5, "acme/x")), "rotation queue");
        assert_eq!(space_of(&audit_anchors(2)), "audit anchors");
        assert_eq!(space_of(&token_hash(&[1; 32])), "token index");
        assert_eq!(space_of(CLUSTER), "meta");
        assert_eq!(space_of(b"zz"), "other");
    }

    #[test]
    fn version_keys_sort_numerically_and_stay_inside_their_secret() {
        assert!(version("a/b", 2) < version("a/b", 10));
        assert!(version("a/b", u64::MAX) < versions_of("a/b-c"));
        assert!(version("a/b", 1).starts_with(&versions_of("a/b")));
        assert!(!version("a/bc", 1).starts_with(&versions_of("a/b")));
        assert_eq!(secret_name(&secret("acme/x")), Some("acme/x"));
        assert_eq!(version_number(&version("a/b", 7), "a/b"), Some(7));
        assert_eq!(version_number(&version("a/b", 7), "a/c"), None);
        assert_eq!(version_number(&versions_of("a/b"), "a/b"), None);
    }
}
