//! Policies and tokens as the state machine stores them (docs/architecture.md: Security model).
//!
//! The policy language is checked in full by the API before a policy is proposed
//! (`coffer::authz::policy`); `apply` re-checks only what keeps the state well formed, so a
//! bad entry from an old or buggy proposer cannot break lookups. Tokens are stored as SHA-256
//! hashes with a lookup index; the token itself never enters the log.
//!
//! Like the secrets model, `apply` is deterministic: times come from the command.

use prost::Message;

use crate::error::ApplyError;
use crate::error::ModelError;
use crate::keys;
use crate::pb;
use crate::pb::ErrorCode;
use crate::query;
use coffer_kv::KvView;
use coffer_kv::Txn;

/// Most policies (and, separately, token records, see [`crate::token_gc`]) the cluster keeps: a
/// put of a new policy or a new token past it is refused, and a read of a whole set larger
/// than this (a state from before the caps) fails instead of cutting it short.
pub const MAX_LISTED: usize = 10_000;
const _: () = assert!(crate::token_gc::MAX_RECORDS <= MAX_LISTED);

/// The accessor that names the bootstrap root token.
pub const ROOT_ACCESSOR: &str = "root";

type Result<T> = std::result::Result<T, ApplyError>;

fn fail<T>(code: ErrorCode, msg: impl Into<String>) -> Result<T> {
    Err(ApplyError::Model(ModelError::new(code, msg)))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> std::io::Result<M> {
    M::decode(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Policy names: like a name segment, `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn validate_policy_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "policy name {name:?} is invalid: use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ))
    }
}

/// Accessors: 1-64 lowercase hex characters, or `root`.
fn valid_accessor(a: &str) -> bool {
    a == ROOT_ACCESSOR || (!a.is_empty() && a.len() <= 64 && a.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn put_policy(tx: &mut Txn<'_, '_>, c: &pb::PutPolicy, now: u64, by: &str) -> Result<pb::CommandOk> {
    let Some(p) = &c.policy else {
        return fail(ErrorCode::InvalidArgument, "put_policy without a policy");
    };
    validate_policy_name(&p.name).map_err(|m| ModelError::new(ErrorCode::InvalidArgument, m))?;
    if p.statements.is_empty() {
        return fail(ErrorCode::InvalidArgument, "a policy needs at least one statement");
    }
    if !tx.contains(&keys::policy(&p.name))?
        && tx.scan(keys::POLICY_PREFIX, keys::POLICY_PREFIX, MAX_LISTED)?.len() >= MAX_LISTED
    {
        return fail(
            ErrorCode::FailedPrecondition,
            format!("the cluster holds {MAX_LISTED} policies, the most it keeps; delete one first"),
        );
    }
    let mut stored = p.clone();
    stored.updated_at_ms = now;
    stored.updated_by = by.to_string();
    tx.put(keys::policy(&p.name), stored.encode_to_vec());
    Ok(pb::CommandOk::default())
}

pub(crate) fn delete_policy(tx: &mut Txn<'_, '_>, c: &pb::DeletePolicy) -> Result<pb::CommandOk> {
    let key = keys::policy(&c.name);
    if tx.get(&key)?.is_none() {
        return fail(ErrorCode::NotFound, format!("policy {} not found", c.name));
    }
    tx.delete(key);
    Ok(pb::CommandOk::default())
}

pub(crate) fn create_token(tx: &mut Txn<'_, '_>, c: &pb::CreateToken) -> Result<pb::CommandOk> {
    let Some(t) = &c.token else {
        return fail(ErrorCode::InvalidArgument, "create_token without a token");
    };
    if !valid_accessor(&t.accessor) || t.accessor == ROOT_ACCESSOR {
        return fail(ErrorCode::InvalidArgument, "a token needs a hex accessor");
    }
    if t.token_sha256.len() != 32 || t.principal.is_empty() || t.expires_at_ms <= t.created_at_ms {
        return fail(
            ErrorCode::InvalidArgument,
            "a token needs a hash, a principal and an expiry after its creation",
        );
    }
    if tx.get(&keys::token(&t.accessor))?.is_some() || tx.get(&keys::token_hash(&t.token_sha256))?.is_some() {
        return fail(ErrorCode::AlreadyExists, "a token with this accessor or hash exists");
    }
    // Checked here, in the apply, not by the handler before proposing: a handler's check
    // would answer a retry (whose first attempt applied, and whose policy was deleted since)
    // NotFound instead of the first outcome, and would race a delete between check and apply.
    for p in &t.policies {
        if tx.get(&keys::policy(p))?.is_none() {
            return fail(
                ErrorCode::NotFound,
                format!("policy {p} does not exist; create it first with `coffer policy put`"),
            );
        }
    }
    let mut stored = t.clone();
    stored.revoked_at_ms = 0;
    crate::token_gc::created(tx, &stored)?;
    tx.put(keys::token(&t.accessor), stored.encode_to_vec());
    tx.put(keys::token_hash(&t.token_sha256), t.accessor.as_bytes().to_vec());
    Ok(pb::CommandOk {
        reply: c.reply.clone(),
        ..Default::default()
    })
}

/// Revokes a token (idempotent). `root` marks the bootstrap root token revoked (its hash stays,
/// so a client still using it is told why it fails).
pub(crate) fn revoke_token(tx: &mut Txn<'_, '_>, c: &pb::RevokeToken, now: u64) -> Result<pb::CommandOk> {
    if c.accessor == ROOT_ACCESSOR {
        let Some(bytes) = tx.get(keys::CLUSTER)? else {
            return fail(ErrorCode::NotBootstrapped, "the cluster is not bootstrapped yet");
        };
        let mut info: pb::ClusterInfo = decode(&bytes)?;
        if info.root_revoked_at_ms == 0 {
            info.root_revoked_at_ms = now.max(1);
            tx.put(keys::CLUSTER.to_vec(), info.encode_to_vec());
        }
        return Ok(pb::CommandOk::default());
    }
    let key = keys::token(&c.accessor);
    let Some(bytes) = tx.get(&key)? else {
        return fail(ErrorCode::NotFound, format!("no token has accessor {}", c.accessor));
    };
    let mut t: pb::TokenRecord = decode(&bytes)?;
    if t.revoked_at_ms == 0 {
        t.revoked_at_ms = now.max(1);
        tx.put(key, t.encode_to_vec());
        crate::token_gc::revoked(tx, &c.accessor, t.revoked_at_ms)?;
    }
    Ok(pb::CommandOk::default())
}

// ---- reads (like `query`: storage failures come back as `QueryError::Io`) ----

pub fn policy(view: &dyn KvView, name: &str) -> query::Result<Option<pb::Policy>> {
    Ok(view.get(&keys::policy(name))?.map(|b| decode(&b)).transpose()?)
}

/// Every record under `prefix`, decoded; an error, never a silent cut, when there are more
/// than [`MAX_LISTED`]: a decision over a partial list of policies could miss a deny.
fn all_records<M: Message + Default>(view: &dyn KvView, prefix: &[u8], what: &str) -> query::Result<Vec<M>> {
    let pairs = view.scan(prefix, prefix, MAX_LISTED + 1)?;
    if pairs.len() > MAX_LISTED {
        return Err(ModelError::new(
            ErrorCode::FailedPrecondition,
            format!("more than {MAX_LISTED} {what} are stored; refusing to work from a partial list (delete some)"),
        )
        .into());
    }
    Ok(pairs
        .into_iter()
        .map(|(_, v)| decode(&v))
        .collect::<std::io::Result<_>>()?)
}

/// Every policy, in name order.
pub fn policies(view: &dyn KvView) -> query::Result<Vec<pb::Policy>> {
    all_records(view, keys::POLICY_PREFIX, "policies")
}

/// The token whose SHA-256 is `sha256`, revoked and expired ones included.
pub fn token_by_hash(view: &dyn KvView, sha256: &[u8]) -> query::Result<Option<pb::TokenRecord>> {
    let Some(accessor) = view.get(&keys::token_hash(sha256))? else {
        return Ok(None);
    };
    let record = view.get(&[keys::TOKEN_PREFIX, &accessor[..]].concat())?;
    Ok(record.map(|b| decode(&b)).transpose()?)
}

pub fn token(view: &dyn KvView, accessor: &str) -> query::Result<Option<pb::TokenRecord>> {
    Ok(view.get(&keys::token(accessor))?.map(|b| decode(&b)).transpose()?)
}

/// Every token record, in accessor order.
pub fn tokens(view: &dyn KvView) -> query::Result<Vec<pb::TokenRecord>> {
    all_records(view, keys::TOKEN_PREFIX, "token records")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sm::MemState;

    /// [`MAX_LISTED`] policies, `p-00000` on.
    fn full_of_policies() -> coffer_kv::WriteSet {
        (0..MAX_LISTED)
            .map(|i| {
                let p = pb::Policy {
                    name: format!("p-{i:05}"),
                    ..Default::default()
                };
                (keys::policy(&p.name), Some(p.encode_to_vec()))
            })
            .collect()
    }

    #[test]
    fn a_set_past_the_limit_is_an_error_never_a_partial_list() {
        let state = MemState::new();
        state.commit(full_of_policies()).unwrap();
        assert_eq!(policies(&*state.view()).unwrap().len(), MAX_LISTED);
        // One more, sorting last (a deny there would have been cut off before).
        let mut w = coffer_kv::WriteSet::new();
        let last = pb::Policy {
            name: "zz-deny".into(),
            ..Default::default()
        };
        w.insert(keys::policy(&last.name), Some(last.encode_to_vec()));
        state.commit(w).unwrap();
        let e = policies(&*state.view()).unwrap_err().to_string();
        assert!(e.contains("more than 10000 policies"), "{e}");
        assert!(tokens(&*state.view()).unwrap().is_empty());
    }

    #[test]
    fn a_new_policy_past_the_limit_is_refused_and_an_existing_one_still_changes() {
        let mut sm = crate::test_sm::Sm::new();
        sm.backend.commit(full_of_policies()).unwrap();
        let put = |name: &str| {
            pb::command::Op::PutPolicy(pb::PutPolicy {
                policy: Some(pb::Policy {
                    name: name.into(),
                    statements: vec![pb::PolicyStatement::default()],
                    ..Default::default()
                }),
            })
        };
        let e = sm.run(put("one-more")).unwrap_err();
        assert_eq!(e.code, ErrorCode::FailedPrecondition);
        assert!(e.message.contains("10000 policies"), "{}", e.message);
        sm.run(put("p-00042")).unwrap();
        assert_eq!(policies(&*sm.backend.view()).unwrap().len(), MAX_LISTED);
    }
}
