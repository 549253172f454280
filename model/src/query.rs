//! Read side of the secrets model: lookups over a consistent [`KvView`] of the local replica.

use prost::Message;

use crate::error::ModelError;
use crate::keys;
use crate::names;
use crate::pb;
use crate::pb::ErrorCode;
use coffer_kv::KvView;

/// Failure of a query: a domain answer (not found, disabled, …) or a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, QueryError>;

fn not_found(msg: String) -> QueryError {
    ModelError::new(ErrorCode::NotFound, msg).into()
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

pub fn cluster_info(view: &dyn KvView) -> Result<Option<pb::ClusterInfo>> {
    view.get(keys::CLUSTER)?.map(|b| decode(&b)).transpose()
}

/// What the cluster holds of node `node_id`'s audit log ([`crate::audit_anchors`]).
pub fn audit_anchors(view: &dyn KvView, node_id: u64) -> Result<Option<pb::AuditAnchors>> {
    view.get(&keys::audit_anchors(node_id))?.map(|b| decode(&b)).transpose()
}

/// A record whose self-description is not the key it was read from was copied or corrupted:
/// never served as the secret asked for (another tenant's record would otherwise answer).
fn misplaced(found: String, asked: String) -> QueryError {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the record stored as {asked} describes {found}; refusing it (copied or corrupted)"),
    )
    .into()
}

pub fn secret(view: &dyn KvView, name: &str) -> Result<pb::Secret> {
    names::validate_name(name).map_err(ModelError::from)?;
    match view.get(&keys::secret(name))? {
        Some(b) => {
            let s: pb::Secret = decode(&b)?;
            if s.name != name {
                return Err(misplaced(format!("secret {}", s.name), format!("secret {name}")));
            }
            Ok(s)
        }
        None => Err(not_found(format!("secret {name} not found"))),
    }
}

/// Decodes the record stored as version `version` of `name`; refuses one that describes
/// another place.
fn version_record(bytes: &[u8], name: &str, version: u64) -> Result<pb::SecretVersion> {
    let v: pb::SecretVersion = decode(bytes)?;
    if v.name != name || v.version != version {
        return Err(misplaced(
            format!("version {} of {}", v.version, v.name),
            format!("version {version} of {name}"),
        ));
    }
    Ok(v)
}

pub fn version(view: &dyn KvView, name: &str, version: u64) -> Result<pb::SecretVersion> {
    match view.get(&keys::version(name, version))? {
        Some(b) => version_record(&b, name, version),
        None => Err(not_found(format!("secret {name} has no version {version}"))),
    }
}

/// The aliases of `secret` that point at `version`.
pub fn aliases_of(secret: &pb::Secret, version: u64) -> Vec<String> {
    secret
        .aliases
        .iter()
        .filter(|(_, v)| **v == version)
        .map(|(a, _)| a.clone())
        .collect()
}

/// Which version a read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// CURRENT.
    Current,
    Version(u64),
    Alias(String),
}

/// Resolves `selector` to an ENABLED version of `name`, with the secret it belongs to.
pub fn resolve(view: &dyn KvView, name: &str, selector: &Selector) -> Result<(pb::Secret, pb::SecretVersion)> {
    let s = secret(view, name)?;
    let number = match selector {
        Selector::Version(v) => *v,
        Selector::Current | Selector::Alias(_) => {
            let alias = match selector {
                Selector::Alias(a) => names::normalize_alias(a).map_err(ModelError::from)?,
                _ => names::CURRENT.to_string(),
            };
            *s.aliases
                .get(&alias)
                .ok_or_else(|| not_found(format!("secret {name} has no alias {alias}")))?
        }
    };
    let v = version(view, name, number)?;
    match pb::VersionState::try_from(v.state) {
        Ok(pb::VersionState::Enabled) => Ok((s, v)),
        Ok(pb::VersionState::Disabled) => Err(ModelError::new(
            ErrorCode::VersionDisabled,
            format!("version {number} of {name} is disabled; enable it or read another version"),
        )
        .into()),
        Ok(pb::VersionState::Destroyed) => Err(ModelError::new(
            ErrorCode::VersionDestroyed,
            format!("version {number} of {name} is destroyed"),
        )
        .into()),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "version in unknown state").into()),
    }
}

/// Most versions one page lists.
pub const MAX_VERSIONS_PAGE: usize = 1000;

/// Up to `limit` (at most [`MAX_VERSIONS_PAGE`]) versions of `name` numbered above `after`,
/// oldest first, and the number to resume after (0 on the last page).
pub fn versions(view: &dyn KvView, name: &str, after: u64, limit: usize) -> Result<(Vec<pb::SecretVersion>, u64)> {
    secret(view, name)?;
    let limit = limit.clamp(1, MAX_VERSIONS_PAGE);
    let prefix = keys::versions_of(name);
    let start = keys::version(name, after.saturating_add(1));
    let mut out = view
        .scan(&prefix, &start, limit + 1)?
        .into_iter()
        .map(|(k, v)| {
            let number = keys::version_number(&k, name).ok_or_else(|| misplaced("a key".into(), "a version".into()))?;
            version_record(&v, name, number)
        })
        .collect::<Result<Vec<_>>>()?;
    let next = if out.len() > limit {
        out.truncate(limit);
        out.last().map_or(0, |v| v.version)
    } else {
        0
    };
    Ok((out, next))
}

/// Where a scan over every version stopped: (secret name, version).
pub type VersionCursor = (String, u64);

/// Up to `limit` live (not destroyed) versions of every secret, in key order, after the version
/// `after` (exclusive; `None` = from the start). Returns them and the cursor for the next page
/// (`None` when the scan is done). Pages may be taken from different views: a version written
/// between pages is seen or not, nothing is seen twice.
pub fn live_versions_page(
    view: &dyn KvView,
    after: Option<&VersionCursor>,
    limit: usize,
) -> Result<(Vec<pb::SecretVersion>, Option<VersionCursor>)> {
    let start = versions_after(after);
    let pairs = view.scan(keys::VERSION_PREFIX, &start, limit.max(1))?;
    let full = pairs.len() >= limit.max(1);
    let mut last = None;
    let mut out = Vec::with_capacity(pairs.len());
    for (_, bytes) in pairs {
        let v: pb::SecretVersion = decode(&bytes)?;
        last = Some((v.name.clone(), v.version));
        if v.state != pb::VersionState::Destroyed as i32 && v.envelope.is_some() {
            out.push(v);
        }
    }
    Ok((out, if full { last } else { None }))
}

/// [`live_versions_page`] for scans that only need each live version's wrapped keys: calls `f`
/// with them, decoding nothing else (the ciphertext is skipped, never copied) and copying no
/// pair out of storage. Returns the cursor for the next page (`None` when the scan is done).
pub fn live_version_wraps_page(
    view: &dyn KvView,
    after: Option<&VersionCursor>,
    limit: usize,
    f: &mut dyn FnMut(&[pb::WrappedKey]),
) -> Result<Option<VersionCursor>> {
    let limit = limit.max(1);
    let mut last = None;
    let visited = view.scan_each(keys::VERSION_PREFIX, &versions_after(after), limit, &mut |_, bytes| {
        let v = pb::SecretVersionWraps::decode(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if v.state != pb::VersionState::Destroyed as i32 {
            if let Some(env) = &v.envelope {
                f(&env.wrapped_keys);
            }
        }
        last = Some((v.name, v.version));
        Ok(())
    })?;
    Ok(if visited >= limit { last } else { None })
}

/// The first version key after `after` (from the first version when `None`).
fn versions_after(after: Option<&VersionCursor>) -> Vec<u8> {
    match after {
        Some((name, v)) => {
            let mut k = keys::version(name, *v);
            k.push(0); // strictly after
            k
        }
        None => keys::VERSION_PREFIX.to_vec(),
    }
}

/// Names starting with `prefix`, after `after` (exclusive), at most `limit`. Returns the names
/// and the token for the next page (empty when there is none).
///
/// A bare tenant (`acme`) lists that tenant (`acme/`), never `acmecorp/…`.
pub fn list(view: &dyn KvView, prefix: &str, after: &str, limit: usize) -> Result<(Vec<String>, String)> {
    names::validate_prefix(prefix).map_err(ModelError::from)?;
    let prefix = if prefix.contains('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let key_prefix = keys::secret(&prefix);
    let start = if after.is_empty() {
        key_prefix.clone()
    } else {
        let mut k = keys::secret(after);
        k.push(0); // strictly after
        k
    };
    let pairs = view.scan(&key_prefix, &start, limit + 1)?;
    let mut out: Vec<String> = pairs
        .iter()
        .filter_map(|(k, _)| keys::secret_name(k).map(str::to_string))
        .collect();
    let next = if out.len() > limit {
        out.truncate(limit);
        out.last().cloned().unwrap_or_default()
    } else {
        String::new()
    };
    Ok((out, next))
}

/// A page of versions for a listing: the secret, and each version without its ciphertext,
/// nonce or wrapped-key blobs (a listing needs the regions only).
fn versions_answer(view: &dyn KvView, name: &str, after: u64, limit: usize) -> Result<pb::ReadAnswer> {
    let s = secret(view, name)?;
    let (mut vs, next) = versions(view, name, after, limit)?;
    for v in &mut vs {
        if let Some(e) = &mut v.envelope {
            e.ciphertext.clear();
            e.nonce.clear();
            for w in &mut e.wrapped_keys {
                w.blob.clear();
            }
        }
    }
    Ok(pb::ReadAnswer {
        secret: Some(s),
        versions: vs,
        next_page_token: if next == 0 { String::new() } else { next.to_string() },
        ..Default::default()
    })
}

/// Answers a read from records alone (never plaintext): what the API needs to build a reply.
/// Used on the local replica, and on the leader for forwarded reads.
pub fn answer(view: &dyn KvView, q: &pb::ReadQuery) -> Result<pb::ReadAnswer> {
    use pb::read_query::Query;
    match &q.query {
        Some(Query::Get(g)) => {
            let selector = match &g.selector {
                None => Selector::Current,
                Some(pb::get_query::Selector::Version(v)) => Selector::Version(*v),
                Some(pb::get_query::Selector::Alias(a)) => Selector::Alias(a.clone()),
            };
            let (s, v) = resolve(view, &g.name, &selector)?;
            Ok(pb::ReadAnswer {
                secret: Some(s),
                versions: vec![v],
                ..Default::default()
            })
        }
        Some(Query::Describe(name)) => Ok(pb::ReadAnswer {
            secret: Some(secret(view, name)?),
            ..Default::default()
        }),
        Some(Query::Versions(name)) => versions_answer(view, name, 0, MAX_VERSIONS_PAGE),
        Some(Query::VersionsPage(q)) => versions_answer(view, &q.name, q.after, q.limit as usize),
        Some(Query::List(l)) => {
            let (names, next) = list(view, &l.prefix, &l.after, l.limit as usize)?;
            Ok(pb::ReadAnswer {
                names,
                next_page_token: next,
                ..Default::default()
            })
        }
        None => Err(ModelError::new(ErrorCode::InvalidArgument, "empty read query").into()),
    }
}

/// A version state's name as replies and the CLI show it.
pub fn state_name(state: i32) -> &'static str {
    match pb::VersionState::try_from(state) {
        Ok(pb::VersionState::Enabled) => "enabled",
        Ok(pb::VersionState::Disabled) => "disabled",
        Ok(pb::VersionState::Destroyed) => "destroyed",
        _ => "unknown",
    }
}

/// Names of the secrets whose rotation queue entry for the scheduler (`q/a`) has come by
/// `now`, soonest first, at most `limit`.
pub fn rotation_due(view: &dyn KvView, now: u64, limit: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    view.scan_each(
        keys::ROTATION_ACT_PREFIX,
        keys::ROTATION_ACT_PREFIX,
        limit,
        &mut |k, _| {
            if let Some((at, _, name)) = keys::parse_rotation_queue(k) {
                if at <= now {
                    out.push(name.to_string());
                }
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Names of every secret with a rotation policy (the whole rotation queue), at most `limit`,
/// and whether there were more.
pub fn rotating_secrets(view: &dyn KvView, limit: usize) -> Result<(Vec<String>, bool)> {
    let mut out = Vec::new();
    view.scan_each(
        keys::ROTATION_QUEUE_PREFIX,
        keys::ROTATION_QUEUE_PREFIX,
        limit + 1,
        &mut |k, _| {
            if let Some((_, _, name)) = keys::parse_rotation_queue(k) {
                out.push(name.to_string());
            }
            Ok(())
        },
    )?;
    let more = out.len() > limit;
    out.truncate(limit);
    out.sort();
    Ok((out, more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sm::MemState;

    fn with_secrets(names: &[&str]) -> MemState {
        let b = MemState::new();
        let mut w = coffer_kv::WriteSet::new();
        for n in names {
            let s = pb::Secret {
                name: n.to_string(),
                ..Default::default()
            };
            w.insert(keys::secret(n), Some(s.encode_to_vec()));
        }
        b.commit(w).unwrap();
        b
    }

    #[test]
    fn a_record_copied_to_another_secrets_or_versions_key_is_refused() {
        let b = with_secrets(&["acme/a", "other/b"]);
        let a1 = pb::SecretVersion {
            name: "acme/a".into(),
            version: 1,
            ..Default::default()
        };
        let mut w = coffer_kv::WriteSet::new();
        w.insert(keys::version("acme/a", 1), Some(a1.encode_to_vec()));
        // Copies: to another tenant's secret, to another version of the same secret; and the
        // secret record itself under another name.
        w.insert(keys::version("other/b", 1), Some(a1.encode_to_vec()));
        w.insert(keys::version("acme/a", 2), Some(a1.encode_to_vec()));
        let a = pb::Secret {
            name: "acme/a".into(),
            ..Default::default()
        };
        w.insert(keys::secret("other/c"), Some(a.encode_to_vec()));
        b.commit(w).unwrap();
        let view = b.view();
        assert_eq!(version(&*view, "acme/a", 1).unwrap(), a1);
        for (name, n) in [("other/b", 1), ("acme/a", 2)] {
            let e = version(&*view, name, n).unwrap_err().to_string();
            assert!(e.contains("refusing it"), "{e}");
            assert!(versions(&*view, name, 0, 10).is_err());
        }
        assert!(secret(&*view, "other/c")
            .unwrap_err()
            .to_string()
            .contains("describes secret acme/a"));
    }

    #[test]
    fn versions_come_in_pages_oldest_first_and_the_legacy_query_is_bounded() {
        let b = with_secrets(&["acme/a", "acme/ab"]);
        let mut w = coffer_kv::WriteSet::new();
        for (name, n) in (1..=2_500u64).map(|n| ("acme/a", n)).chain([("acme/ab", 1)]) {
            let v = pb::SecretVersion {
                name: name.into(),
                version: n,
                ..Default::default()
            };
            w.insert(keys::version(name, n), Some(v.encode_to_vec()));
        }
        b.commit(w).unwrap();
        let view = b.view();
        let mut after = 0;
        let mut seen = vec![];
        loop {
            let (page, next) = versions(&*view, "acme/a", after, 700).unwrap();
            assert!(page.len() <= 700);
            seen.extend(page.iter().map(|v| v.version));
            if next == 0 {
                break;
            }
            after = next;
        }
        assert_eq!(
            seen,
            (1..=2_500).collect::<Vec<_>>(),
            "every version once, in order, no other secret's"
        );
        // A limit past the page bound is cut to it; the legacy query answers one bounded page.
        assert_eq!(
            versions(&*view, "acme/a", 0, usize::MAX).unwrap().0.len(),
            MAX_VERSIONS_PAGE
        );
        let q = pb::ReadQuery {
            query: Some(pb::read_query::Query::Versions("acme/a".into())),
        };
        let a = answer(&*view, &q).unwrap();
        assert_eq!(a.versions.len(), MAX_VERSIONS_PAGE);
        assert_eq!(a.next_page_token, MAX_VERSIONS_PAGE.to_string());
        assert_eq!(versions(&*view, "acme/a", u64::MAX, 10).unwrap().0.len(), 0);
    }

    #[test]
    fn list_pages_through_a_prefix_and_stays_in_the_tenant() {
        let b = with_secrets(&["acme/a", "acme/b", "acme/c/d", "acmecorp/x", "globex/y"]);
        let view = b.view();
        let (page, next) = list(&*view, "acme", "", 2).unwrap();
        assert_eq!(page, ["acme/a", "acme/b"]);
        assert_eq!(next, "acme/b");
        let (page, next) = list(&*view, "acme", &next, 2).unwrap();
        assert_eq!(page, ["acme/c/d"]);
        assert_eq!(next, "");
        assert_eq!(list(&*view, "acme/c", "", 10).unwrap().0, ["acme/c/d"]);
        assert!(list(&*view, "../", "", 10).is_err());
    }
}
