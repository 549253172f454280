//! The request table: every command is applied at most once, whoever retries it.
//!
//! A client that timed out, a follower whose forward to the leader failed, a proposer that
//! lost its leader: each retries the very same command under the same request id, and the
//! first copy may already be in the log. This table (the client sessions of the Raft
//! dissertation, §6.3, keyed by request id) makes the retry harmless.
//!
//! Invariants:
//! - A command whose request id has a record is never evaluated. Its answer is the record's
//!   result, with the index where it was first applied and `replayed` set, whatever the state
//!   is now. An id reused by another principal or for another operation or target is refused
//!   (and that refusal is not recorded).
//! - A record is written in the same apply, hence the same atomic write, as the command's
//!   effects: for a success and for a domain refusal alike (the state is unchanged then, and the
//!   retry gets the same refusal). It is never changed afterwards; only expiry deletes it.
//! - Expiry is a function of the state and the command alone (the table's clock, its queue and
//!   the command's `proposed_at_ms`), never of apply batch boundaries or a node's own clock, so
//!   every replica drops the same records at the same log index and answers a late retry alike.
//! - A record lives at least `retention_ms` of table clock after it was written. The clock is
//!   the largest `proposed_at_ms` applied so far (a node whose clock runs ahead shortens
//!   retention by its lead). Each command drops at most [`PRUNE_PER_COMMAND`] expired records
//!   and adds at most one, so the table holds what `retention_ms` of writes added, plus a
//!   backlog that shrinks whenever commands arrive.
//! - The table lives in the state machine's key space (`r/`, `x/`, `m/requests`), so
//!   snapshots carry it like every other record.

use prost::Message;

use crate::error::ModelError;
use crate::keys;
use crate::pb;
use crate::pb::ErrorCode;
use coffer_kv::Overlay;

/// Retention when the bootstrap named none (and in clusters bootstrapped before the table).
pub const DEFAULT_RETENTION_MS: u64 = 10 * 60 * 1000;
/// Bounds for `cluster.request_retention_ms`. Keep it well above how long clients go on
/// retrying one write (a node gives a write up after `limits.write_timeout_ms`, 10 s by
/// default); a day of records at most.
pub const MIN_RETENTION_MS: u64 = 30_000;
pub const MAX_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// Expired records one command may drop (it adds at most one, so a backlog shrinks).
pub const PRUNE_PER_COMMAND: usize = 2;
/// Longest request id the table accepts: a client's id (64) scoped by its principal (at most
/// 225 bytes) and an attempt suffix fit well inside.
pub const MAX_REQUEST_ID_BYTES: usize = 512;

/// What a command is, for telling a retry from a reused id: operation name, target, and a
/// digest of the parameters every attempt of one request shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub op: &'static str,
    pub target: String,
    /// SHA-256 of [`stable_params`].
    pub params: Vec<u8>,
    /// An AddVersion's `value_mac` (empty: none), compared only when both sides have one.
    pub value_mac: Vec<u8>,
}

impl Fingerprint {
    pub fn of(cmd: &pb::Command) -> Fingerprint {
        use pb::command::Op;
        let (op, target): (&'static str, &str) = match &cmd.op {
            None => ("none", ""),
            Some(Op::Bootstrap(_)) => ("bootstrap", ""),
            Some(Op::CreateSecret(c)) => ("create_secret", &c.name),
            Some(Op::AddVersion(c)) => ("add_version", &c.name),
            Some(Op::MoveAlias(c)) => ("move_alias", &c.name),
            Some(Op::SetVersionState(c)) => ("set_version_state", &c.name),
            Some(Op::DestroyVersion(c)) => ("destroy_version", &c.name),
            Some(Op::SetTokenKey(_)) => ("set_token_key", ""),
            Some(Op::SetWraps(_)) => ("set_wraps", ""),
            Some(Op::PutPolicy(c)) => ("put_policy", c.policy.as_ref().map_or("", |p| p.name.as_str())),
            Some(Op::DeletePolicy(c)) => ("delete_policy", &c.name),
            // The principal, not the accessor: each attempt of one request draws its own token.
            Some(Op::CreateToken(c)) => ("create_token", c.token.as_ref().map_or("", |t| t.principal.as_str())),
            Some(Op::RevokeToken(c)) => ("revoke_token", &c.accessor),
            Some(Op::AnchorAudit(_)) => ("anchor_audit", ""),
            Some(Op::UpdateSecret(c)) => ("update_secret", &c.name),
            Some(Op::StartRotation(c)) => ("start_rotation", &c.name),
            Some(Op::AdvanceRotation(c)) => ("advance_rotation", &c.name),
            Some(Op::RotationFailed(c)) => ("rotation_failed", &c.name),
            Some(Op::RollbackRotation(c)) => ("rollback_rotation", &c.name),
        };
        let value_mac = match &cmd.op {
            Some(Op::AddVersion(c)) => c.value_mac.clone(),
            _ => Vec::new(),
        };
        Fingerprint {
            op,
            target: target.to_string(),
            value_mac,
            params: stable_params(cmd).map_or_else(Vec::new, |op| {
                use sha2::Digest;
                sha2::Sha256::digest(
                    pb::Command {
                        op: Some(op),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )
                .to_vec()
            }),
        }
    }
}

/// The part of `cmd`'s operation that every attempt of one request carries alike; `None` when
/// only its name and target identify it. Left out: what a proposer draws or reads for each
/// attempt (sealed values, token secrets, clocks, the version a new value would get, an alias's
/// expected version read from the proposer's replica when the client named none).
fn stable_params(cmd: &pb::Command) -> Option<pb::command::Op> {
    use pb::command::Op;
    let mut op = cmd.op.clone()?;
    match &mut op {
        Op::Bootstrap(_) | Op::SetTokenKey(_) | Op::SetWraps(_) => return None,
        Op::CreateSecret(_) | Op::SetVersionState(_) | Op::DestroyVersion(_) | Op::DeletePolicy(_) => {}
        Op::RevokeToken(_) | Op::AnchorAudit(_) | Op::UpdateSecret(_) => {}
        Op::StartRotation(_) | Op::AdvanceRotation(_) | Op::RotationFailed(_) | Op::RollbackRotation(_) => {}
        Op::AddVersion(c) => {
            c.version = 0;
            c.envelope = None;
            c.also_for.clear();
            c.expires_at_ms = 0;
            c.create_if_missing = None;
            // Compared on its own (`Fingerprint::value_mac`): an attempt made before the token
            // key existed has none.
            c.value_mac.clear();
        }
        Op::MoveAlias(c) => c.expected_version = 0,
        Op::PutPolicy(c) => {
            if let Some(p) = &mut c.policy {
                p.updated_at_ms = 0;
            }
        }
        Op::CreateToken(c) => {
            c.reply = None;
            if let Some(t) = &mut c.token {
                t.accessor.clear();
                t.token_sha256.clear();
                t.created_at_ms = 0;
                t.expires_at_ms = 0;
                t.revoked_at_ms = 0;
            }
        }
    }
    Some(op)
}

/// What the table says about a command's request id.
#[derive(Debug)]
pub enum Lookup {
    /// Never applied (or expired): evaluate it.
    Fresh,
    /// Applied before: answer with this, change nothing.
    Replay(pb::CommandResult),
    /// The id belongs to another command: refuse.
    Reused(ModelError),
}

fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> std::io::Result<M> {
    M::decode(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt {what} record: {e}")))
}

/// The record of `request_id`, if the table holds one.
pub fn record_of(ov: &Overlay<'_>, request_id: &str) -> std::io::Result<Option<pb::RequestRecord>> {
    ov.get(&keys::request(request_id))?
        .map(|b| decode(&b, "request"))
        .transpose()
}

/// Looks `cmd` up by its request id (which must not be empty).
pub fn lookup(ov: &Overlay<'_>, cmd: &pb::Command, fp: &Fingerprint) -> std::io::Result<Lookup> {
    if coffer_kv::bugs::active(coffer_kv::bugs::Bug::ReplayForgets) {
        return Ok(Lookup::Fresh);
    }
    let Some(rec) = record_of(ov, &cmd.request_id)? else {
        return Ok(Lookup::Fresh);
    };
    if rec.principal != cmd.principal {
        // Never say what another principal's request was.
        return Ok(Lookup::Reused(ModelError::new(
            ErrorCode::InvalidArgument,
            "this request id was already used for another request; give each request its own id",
        )));
    }
    if rec.op != fp.op || rec.target != fp.target {
        return Ok(Lookup::Reused(ModelError::new(
            ErrorCode::InvalidArgument,
            format!(
                "this request id was already used for another request ({} of {:?}); give each request its own id",
                rec.op, rec.target
            ),
        )));
    }
    if !rec.params_sha256.is_empty() && rec.params_sha256 != fp.params {
        return Ok(Lookup::Reused(ModelError::new(
            ErrorCode::InvalidArgument,
            format!(
                "this request id was already used for a different {} of {:?} (another value or version); \
                 give each request its own id",
                rec.op, rec.target
            ),
        )));
    }
    if !rec.value_mac.is_empty() && !fp.value_mac.is_empty() && rec.value_mac != fp.value_mac {
        return Ok(Lookup::Reused(ModelError::new(
            ErrorCode::InvalidArgument,
            format!(
                "this request id was already used for a different {} of {:?} (another value); give each \
                 request its own id",
                rec.op, rec.target
            ),
        )));
    }
    let mut result = rec.result.unwrap_or_default();
    result.replayed = true;
    Ok(Lookup::Replay(result))
}

/// The table's bookkeeping, or a fresh one.
pub fn meta(ov: &Overlay<'_>) -> std::io::Result<pb::RequestTableMeta> {
    Ok(match ov.get(keys::REQUESTS_META)? {
        Some(b) => decode(&b, "request table")?,
        None => pb::RequestTableMeta::default(),
    })
}

/// Retention in force for `meta`.
pub fn retention_ms(meta: &pb::RequestTableMeta) -> u64 {
    match meta.retention_ms {
        0 => DEFAULT_RETENTION_MS,
        r => r,
    }
}

/// Sets the retention a Bootstrap carries, once: a retried or racing bootstrap changes nothing.
pub fn set_retention(ov: &mut Overlay<'_>, retention_ms: u64) -> std::io::Result<()> {
    let mut m = meta(ov)?;
    if m.retention_ms == 0 && retention_ms != 0 {
        m.retention_ms = retention_ms.clamp(MIN_RETENTION_MS, MAX_RETENTION_MS);
        ov.put(keys::REQUESTS_META.to_vec(), m.encode_to_vec());
    }
    Ok(())
}

/// Moves the table's clock to `proposed_at_ms` (never back), drops up to
/// [`PRUNE_PER_COMMAND`] expired records, and, when `record` is given, writes it as the first
/// outcome of `request_id`. Called once for every applied command after the bootstrap.
pub fn advance(
    ov: &mut Overlay<'_>,
    proposed_at_ms: u64,
    record: Option<(&str, &Fingerprint, &pb::Command, &pb::CommandResult)>,
) -> std::io::Result<()> {
    let before = meta(ov)?;
    let mut m = before;
    m.clock_ms = m.clock_ms.max(proposed_at_ms);
    let keep = retention_ms(&m);
    let expired = |m: &pb::RequestTableMeta, applied_at_ms: u64| applied_at_ms.saturating_add(keep) <= m.clock_ms;
    for _ in 0..PRUNE_PER_COMMAND {
        if m.head >= m.tail || !expired(&m, m.head_applied_at_ms) {
            break;
        }
        let entry = queue_entry(ov, &m, m.head)?;
        if !expired(&m, entry.applied_at_ms) {
            // The bookkeeping said otherwise; the queue is the truth.
            m.head_applied_at_ms = entry.applied_at_ms;
            break;
        }
        ov.delete(keys::request_queue(m.head));
        ov.delete(keys::request(&entry.request_id));
        m.head += 1;
        m.head_applied_at_ms = if m.head < m.tail {
            queue_entry(ov, &m, m.head)?.applied_at_ms
        } else {
            0
        };
    }
    if let Some((id, fp, cmd, result)) = record {
        let mut first = result.clone();
        first.replayed = false;
        let rec = pb::RequestRecord {
            result: Some(first),
            principal: cmd.principal.clone(),
            op: fp.op.to_string(),
            target: fp.target.clone(),
            applied_at_ms: m.clock_ms,
            params_sha256: fp.params.clone(),
            value_mac: fp.value_mac.clone(),
        };
        ov.put(keys::request(id), rec.encode_to_vec());
        let entry = pb::RequestQueueEntry {
            request_id: id.to_string(),
            applied_at_ms: m.clock_ms,
        };
        ov.put(keys::request_queue(m.tail), entry.encode_to_vec());
        if m.head == m.tail {
            m.head_applied_at_ms = m.clock_ms;
        }
        m.tail += 1;
    }
    if m != before {
        ov.put(keys::REQUESTS_META.to_vec(), m.encode_to_vec());
    }
    Ok(())
}

/// The queue entry at `seq`, which must exist (it lies in `[head, tail)`).
fn queue_entry(ov: &Overlay<'_>, m: &pb::RequestTableMeta, seq: u64) -> std::io::Result<pb::RequestQueueEntry> {
    match ov.get(&keys::request_queue(seq))? {
        Some(bytes) => decode(&bytes, "request queue"),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("request queue entry {seq} of [{}, {}) is missing", m.head, m.tail),
        )),
    }
}

/// Whether a refusal is recorded as the request's outcome. Not-bootstrapped is transient (the
/// client is told UNAVAILABLE and retries): recording it would answer every retry with it.
pub fn is_recorded(result: &pb::CommandResult) -> bool {
    match &result.outcome {
        Some(pb::command_result::Outcome::Error(e)) => e.code != ErrorCode::NotBootstrapped as i32,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::command::Op;

    use crate::test_sm::add;
    use crate::test_sm::token_record as token;
    use crate::test_sm::Sm;

    fn policy(name: &str, resource: &str) -> pb::Policy {
        pb::Policy {
            name: name.into(),
            statements: vec![pb::PolicyStatement {
                effect: pb::Effect::Allow as i32,
                principals: vec!["service:acme:api".into()],
                actions: vec!["secrets:read".into()],
                resources: vec![resource.into()],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn disable(name: &str, version: u64) -> Op {
        Op::SetVersionState(pb::SetVersionState {
            name: name.into(),
            version,
            state: pb::VersionState::Disabled as i32,
        })
    }

    fn enable(name: &str, version: u64) -> Op {
        Op::SetVersionState(pb::SetVersionState {
            name: name.into(),
            version,
            state: pb::VersionState::Enabled as i32,
        })
    }

    fn destroy(name: &str, version: u64) -> Op {
        Op::DestroyVersion(pb::DestroyVersion {
            name: name.into(),
            version,
        })
    }

    fn promote(name: &str, version: u64, expected: u64) -> Op {
        Op::MoveAlias(pb::MoveAlias {
            name: name.into(),
            alias: "CURRENT".into(),
            version,
            expected_version: expected,
        })
    }

    fn wrap_entry(name: &str, version: u64, blob: u8) -> pb::RewrapEntry {
        pb::RewrapEntry {
            name: name.into(),
            version,
            nonce: vec![1; 12],
            wrap: Some(pb::WrappedKey {
                region: "eu".into(),
                provider: "local".into(),
                key_id: "k".into(),
                key_version: 1,
                blob: vec![blob; 8],
            }),
            token_key: false,
        }
    }

    fn token_key(byte: u8) -> Op {
        Op::SetTokenKey(pb::SetTokenKey {
            key: Some(pb::Envelope {
                format: 1,
                nonce: vec![byte; 12],
                ciphertext: vec![byte; 48],
                wrapped_keys: vec![pb::WrappedKey {
                    region: "r".into(),
                    blob: vec![byte; 8],
                    ..Default::default()
                }],
            }),
        })
    }

    /// The reproduction every command kind gets: `cmd` applied as request `r`, then `others`
    /// (other requests that change what `cmd` would do now), then `cmd` again as `r`. The retry
    /// is answered with the first outcome and the first entry's index, flagged as a replay, and
    /// changes nothing.
    fn retried(setup: &[Op], cmd: Op, others: &[Op]) -> (Result<pb::CommandOk, ModelError>, Sm) {
        let mut sm = Sm::new();
        for (i, op) in setup.iter().enumerate() {
            sm.run_as(op.clone(), &format!("setup-{i}"))
                .unwrap_or_else(|e| panic!("setup step {i} failed: {e}"));
        }
        let first = sm.run_as(cmd.clone(), "r");
        let first_at = sm.reply_index;
        assert!(!sm.replayed);
        for (i, op) in others.iter().enumerate() {
            sm.run_as(op.clone(), &format!("other-{i}"))
                .unwrap_or_else(|e| panic!("interfering write {i} failed: {e}"));
        }
        let before = sm.snapshot();
        let again = sm.run_as(cmd, "r");
        assert_eq!(again, first, "a retry is answered with the first outcome");
        assert_eq!(sm.reply_index, first_at, "and the index where it was first applied");
        assert!(sm.replayed, "flagged as a replay");
        assert_eq!(sm.snapshot(), before, "a replay changes nothing");
        (first, sm)
    }

    #[test]
    fn a_retried_promote_is_answered_with_its_first_outcome_after_other_writes() {
        // Simulation seed 10: a forwarded promote was proposed again after a transport error;
        // a destroy and a disable landed in between, and the second application failed its CAS.
        let setup = [
            add("acme/s0", 1, "CURRENT"),
            add("acme/s0", 2, "CURRENT"),
            add("acme/s0", 3, "CURRENT"),
            add("acme/s0", 4, "CURRENT"),
        ];
        let (first, _) = retried(
            &setup,
            promote("acme/s0", 2, 4),
            &[destroy("acme/s0", 3), disable("acme/s0", 1)],
        );
        let ok = first.expect("the promote moved CURRENT from 4 to 2");
        assert_eq!(ok.aliases.get("CURRENT"), Some(&2));
    }

    #[test]
    fn a_refused_promote_stays_refused_when_retried_after_the_state_changed() {
        let setup = [add("acme/s0", 1, "CURRENT"), add("acme/s0", 2, "CURRENT")];
        // Expects CURRENT=1 while it is 2: refused. Then CURRENT moves back to 1, so the same
        // promote would now succeed; its retry must still report the refusal it got.
        let (first, sm) = retried(&setup, promote("acme/s0", 2, 1), &[promote("acme/s0", 1, 2)]);
        assert_eq!(first.unwrap_err().code, ErrorCode::CasFailed);
        let view = sm.backend.view();
        let s = crate::query::secret(&*view, "acme/s0").unwrap();
        assert_eq!(s.aliases.get("CURRENT"), Some(&1), "the retry did not move CURRENT");
    }

    #[test]
    fn a_retried_put_is_answered_with_its_version_after_other_puts() {
        let (first, sm) = retried(&[], add("acme/s0", 1, "CURRENT"), &[add("acme/s0", 2, "CURRENT")]);
        assert_eq!(first.unwrap().version, 1);
        let view = sm.backend.view();
        assert_eq!(
            crate::query::secret(&*view, "acme/s0").unwrap().next_version,
            3,
            "no third version"
        );
    }

    #[test]
    fn a_retried_create_is_answered_ok_not_already_exists() {
        let create = Op::CreateSecret(pb::CreateSecret {
            name: "acme/s0".into(),
            spec: None,
        });
        let (first, _) = retried(&[], create, &[add("acme/s0", 1, "CURRENT")]);
        assert!(first.is_ok());
    }

    #[test]
    fn a_retried_disable_is_answered_ok_after_an_enable_and_does_not_disable_again() {
        let setup = [add("acme/s0", 1, "CURRENT"), add("acme/s0", 2, "CURRENT")];
        let (first, sm) = retried(&setup, disable("acme/s0", 1), &[enable("acme/s0", 1)]);
        assert!(first.is_ok());
        let view = sm.backend.view();
        let v = crate::query::version(&*view, "acme/s0", 1).unwrap();
        assert_eq!(v.state, pb::VersionState::Enabled as i32, "the later enable stands");
    }

    #[test]
    fn a_retried_destroy_is_answered_with_its_first_outcome() {
        let setup = [add("acme/s0", 1, "CURRENT"), add("acme/s0", 2, "CURRENT")];
        // The destroy is refused (version 2 is CURRENT); after a promote it would succeed.
        let (first, sm) = retried(&setup, destroy("acme/s0", 2), &[promote("acme/s0", 1, 2)]);
        assert_eq!(first.unwrap_err().code, ErrorCode::FailedPrecondition);
        let view = sm.backend.view();
        let v = crate::query::version(&*view, "acme/s0", 2).unwrap();
        assert_eq!(v.state, pb::VersionState::Enabled as i32, "the retry destroyed nothing");
    }

    #[test]
    fn a_retried_policy_put_does_not_overwrite_a_later_one() {
        let put = |resource: &str| {
            Op::PutPolicy(pb::PutPolicy {
                policy: Some(policy("acme-read", resource)),
            })
        };
        let (first, sm) = retried(&[], put("acme/a/*"), &[put("acme/b/*")]);
        assert!(first.is_ok());
        let p = crate::access_records::policy(&*sm.backend.view(), "acme-read")
            .unwrap()
            .unwrap();
        assert_eq!(p.statements[0].resources, ["acme/b/*"], "the later put stands");
    }

    #[test]
    fn a_retried_policy_delete_is_answered_ok_not_not_found() {
        let put = Op::PutPolicy(pb::PutPolicy {
            policy: Some(policy("acme-read", "acme/*")),
        });
        let del = Op::DeletePolicy(pb::DeletePolicy {
            name: "acme-read".into(),
        });
        let other = Op::PutPolicy(pb::PutPolicy {
            policy: Some(policy("acme-other", "acme/*")),
        });
        let (first, sm) = retried(std::slice::from_ref(&put), del, &[other]);
        assert!(first.is_ok());
        assert!(crate::access_records::policy(&*sm.backend.view(), "acme-read")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_retried_token_create_is_answered_ok_not_already_exists() {
        let create = Op::CreateToken(pb::CreateToken {
            token: Some(token("aa01", 7)),
            reply: None,
        });
        let revoke = Op::RevokeToken(pb::RevokeToken {
            accessor: "aa01".into(),
        });
        let (first, sm) = retried(&[crate::test_sm::put_policy("acme-read")], create, &[revoke]);
        assert!(first.is_ok());
        let t = crate::access_records::token(&*sm.backend.view(), "aa01")
            .unwrap()
            .unwrap();
        assert!(t.revoked_at_ms > 0, "the retry did not bring back a revoked token");
    }

    #[test]
    fn a_retried_token_create_is_answered_ok_after_its_policy_was_deleted() {
        let create = Op::CreateToken(pb::CreateToken {
            token: Some(token("aa01", 7)),
            reply: None,
        });
        let delete = Op::DeletePolicy(pb::DeletePolicy {
            name: "acme-read".into(),
        });
        let (first, sm) = retried(&[crate::test_sm::put_policy("acme-read")], create.clone(), &[delete]);
        assert!(first.is_ok());
        assert!(crate::access_records::token(&*sm.backend.view(), "aa01")
            .unwrap()
            .is_some());
        // A new request naming the deleted policy is refused, and stores nothing.
        let mut sm = sm;
        let fresh = Op::CreateToken(pb::CreateToken {
            token: Some(token("aa02", 8)),
            reply: None,
        });
        let e = sm.run_as(fresh, "new").unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("policy acme-read does not exist"), "{}", e.message);
        assert!(crate::access_records::token(&*sm.backend.view(), "aa02")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_retried_token_revoke_keeps_its_first_time() {
        let create = Op::CreateToken(pb::CreateToken {
            token: Some(token("aa01", 7)),
            reply: None,
        });
        let revoke = Op::RevokeToken(pb::RevokeToken {
            accessor: "aa01".into(),
        });
        let other = Op::CreateToken(pb::CreateToken {
            token: Some(token("aa02", 8)),
            reply: None,
        });
        let (first, sm) = retried(&[crate::test_sm::put_policy("acme-read"), create], revoke, &[other]);
        assert!(first.is_ok());
        let t = crate::access_records::token(&*sm.backend.view(), "aa01")
            .unwrap()
            .unwrap();
        // Bootstrap at 1000 ms, the policy at 1001, the create at 1002, the revoke at 1003: not
        // the retry's time.
        assert_eq!(t.revoked_at_ms, 1003, "revoked at the first application's time");
    }

    #[test]
    fn a_retried_set_wraps_is_answered_with_its_first_count() {
        let setup = [add("acme/s0", 1, "CURRENT"), add("acme/s0", 2, "CURRENT")];
        let wraps = |entries| Op::SetWraps(pb::SetWraps { entries });
        let (first, sm) = retried(
            &setup,
            wraps(vec![wrap_entry("acme/s0", 1, 5), wrap_entry("acme/s0", 2, 5)]),
            &[destroy("acme/s0", 1), wraps(vec![wrap_entry("acme/s0", 2, 6)])],
        );
        assert_eq!(first.unwrap().applied, 2);
        let v2 = crate::query::version(&*sm.backend.view(), "acme/s0", 2).unwrap();
        let eu = v2
            .envelope
            .unwrap()
            .wrapped_keys
            .into_iter()
            .find(|w| w.region == "eu")
            .unwrap();
        assert_eq!(eu.blob, vec![6; 8], "the later wrap stands");
    }

    #[test]
    fn a_retried_token_key_is_answered_and_the_first_key_stays() {
        let (first, sm) = retried(&[], token_key(1), &[token_key(2)]);
        assert!(first.is_ok());
        let info = crate::query::cluster_info(&*sm.backend.view()).unwrap().unwrap();
        assert_eq!(info.token_key.unwrap().nonce, vec![1; 12]);
    }

    #[test]
    fn an_id_reused_for_another_command_is_refused_and_the_first_record_stays() {
        let mut sm = Sm::new();
        let first = sm.run_as(add("acme/s0", 1, "CURRENT"), "r").unwrap();
        let first_at = sm.reply_index;
        let before = sm.snapshot();
        let e = sm.run_as(promote("acme/s0", 1, 1), "r").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.contains("move_alias") || e.message.contains("add_version"),
            "{e}"
        );
        let e = sm.run_as(add("acme/other", 1, "CURRENT"), "r").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "same operation, other target");
        sm.principal = "user:mallory".into();
        let e = sm.run_as(add("acme/s0", 1, "CURRENT"), "r").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            !e.message.contains("acme/s0"),
            "another principal's request is not described: {e}"
        );
        assert_eq!(sm.snapshot(), before, "refused reuses change nothing");
        sm.principal = "root".into();
        assert_eq!(sm.run_as(add("acme/s0", 1, "CURRENT"), "r").unwrap(), first);
        assert_eq!(sm.reply_index, first_at, "the first record is still there");
    }

    /// `op` as an AddVersion with another value (its MAC).
    fn other_value(mut op: Op) -> Op {
        if let Op::AddVersion(c) = &mut op {
            c.value_mac = vec![0xfe; 32];
        }
        op
    }

    /// `op` as an AddVersion whose proposer had no token key (no MAC).
    fn no_mac(mut op: Op) -> Op {
        if let Op::AddVersion(c) = &mut op {
            c.value_mac.clear();
        }
        op
    }

    #[test]
    fn an_id_reused_for_another_value_or_version_is_refused() {
        let mut sm = Sm::new();
        let first = sm.run_as(add("acme/s0", 1, "CURRENT"), "put").unwrap();
        sm.run(add("acme/s0", 2, "CURRENT")).unwrap();
        let e = sm.run_as(other_value(add("acme/s0", 3, "CURRENT")), "put").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.contains("different add_version") && e.message.contains("(another value)"),
            "{e}"
        );
        // The same value proposed again for the version its proposer now sees is a retry.
        assert_eq!(sm.run_as(add("acme/s0", 3, "CURRENT"), "put").unwrap(), first);
        assert!(sm.replayed);
        // An attempt without a MAC (no token key yet) is judged on the rest.
        assert_eq!(sm.run_as(no_mac(add("acme/s0", 3, "CURRENT")), "put").unwrap(), first);
        assert!(sm.replayed);

        let moved = sm.run_as(promote("acme/s0", 1, 2), "promote").unwrap();
        // A retry whose proposer read the alias's expected version after the first landed.
        assert_eq!(sm.run_as(promote("acme/s0", 1, 1), "promote").unwrap(), moved);
        let e = sm.run_as(promote("acme/s0", 2, 1), "promote").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "another target version");
    }

    #[test]
    fn not_bootstrapped_is_not_recorded_and_oversized_ids_are_refused() {
        let mut sm = Sm::empty();
        let e = sm.run_as(add("acme/s0", 1, "CURRENT"), "r").unwrap_err();
        assert_eq!(e.code, ErrorCode::NotBootstrapped);
        sm.run(Op::Bootstrap(pb::Bootstrap {
            cluster: Some(pb::ClusterInfo {
                cluster_id: "test".into(),
                root_token_sha256: vec![0; 32],
                ..Default::default()
            }),
            request_retention_ms: 0,
        }))
        .unwrap();
        assert_eq!(
            sm.run_as(add("acme/s0", 1, "CURRENT"), "r").unwrap().version,
            1,
            "the retry after the bootstrap is applied, not answered with NotBootstrapped"
        );
        assert!(!sm.replayed);
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        let before = sm.snapshot();
        let e = sm.run_as(add("acme/s0", 2, "CURRENT"), &long).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(sm.snapshot(), before);
    }

    fn table_size(sm: &Sm) -> (usize, usize) {
        let view = sm.backend.view();
        let count = |prefix: &[u8]| view.scan(prefix, prefix, usize::MAX).unwrap().len();
        (count(keys::REQUEST_PREFIX), count(keys::REQUEST_QUEUE_PREFIX))
    }

    #[test]
    fn records_expire_after_the_retention_and_the_table_stays_bounded() {
        let mut sm = Sm::with_retention(MIN_RETENTION_MS);
        sm.run_as(add("acme/s0", 1, "CURRENT"), "early").unwrap();
        let early_at = sm.reply_index;
        // One write a second for the retention: the record is kept all along.
        for i in 0..29 {
            sm.clock_ms += 1000;
            sm.run_as(disable("acme/s0", 9), &format!("w{i}")).unwrap_err();
        }
        sm.clock_ms += 900;
        assert_eq!(sm.run_as(add("acme/s0", 1, "CURRENT"), "early").unwrap().version, 1);
        assert_eq!(
            (sm.reply_index, sm.replayed),
            (early_at, true),
            "still answered just before expiry"
        );
        // Past the retention, the next command drops it; a very late retry is a new request
        // (here a conflict: version 1 is taken).
        sm.clock_ms += 200;
        sm.run_as(disable("acme/s0", 9), "w-late").unwrap_err();
        let late = sm.run_as(add("acme/s0", 1, "CURRENT"), "early").unwrap_err();
        assert_eq!(late.code, ErrorCode::VersionConflict);
        assert!(!sm.replayed);

        // A steady stream of writes: the table holds what one retention of them added, plus
        // at most the ones written since the last prune, whatever the total.
        for i in 0..400 {
            sm.clock_ms += 250;
            sm.run_as(disable("acme/s0", 9), &format!("s{i}")).unwrap_err();
            let (records, queue) = table_size(&sm);
            assert_eq!(records, queue, "every record has its queue entry");
            assert!(records <= 30_000 / 250 + 2, "{records} records after {i} writes");
        }
        let meta = meta(&Overlay::new(&*sm.backend.view())).unwrap();
        assert_eq!(meta.tail - meta.head, table_size(&sm).0 as u64);
    }

    #[test]
    fn the_clock_never_goes_back_so_a_slow_proposer_expires_nothing_early() {
        let mut sm = Sm::with_retention(MIN_RETENTION_MS);
        sm.clock_ms = 100_000;
        sm.run_as(add("acme/s0", 1, "CURRENT"), "a").unwrap();
        // A proposer whose clock is behind does not move the table's clock back.
        sm.clock_ms = 10;
        sm.run_as(disable("acme/s0", 9), "b").unwrap_err();
        let m = meta(&Overlay::new(&*sm.backend.view())).unwrap();
        assert_eq!(m.clock_ms, 100_000);
        assert_eq!(sm.run_as(add("acme/s0", 1, "CURRENT"), "a").unwrap().version, 1);
        assert!(sm.replayed);
    }

    /// Pruning depends on the commands alone, never on how a node batches its applies: one
    /// overlay per command and one overlay for all of them end in the same state.
    #[test]
    fn expiry_is_the_same_whatever_the_apply_batches() {
        let mut clock = 1000;
        let mut cmds = vec![pb::Command {
            proposed_at_ms: clock,
            principal: "root".into(),
            request_id: String::new(),
            op: Some(Op::Bootstrap(pb::Bootstrap {
                cluster: Some(pb::ClusterInfo {
                    cluster_id: "test".into(),
                    root_token_sha256: vec![0; 32],
                    ..Default::default()
                }),
                request_retention_ms: MIN_RETENTION_MS,
            })),
        }];
        for i in 0..300u64 {
            clock += 100 + (i * 7919) % 900;
            let op = match i % 3 {
                0 => add("acme/s0", i / 3 + 1, "CURRENT"),
                1 => disable("acme/s0", 9),
                _ => promote("acme/s0", i / 3 + 1, i / 3 + 1),
            };
            // Every fifth command retries an earlier one.
            let id = if i % 5 == 4 {
                format!("c{}", i - 3)
            } else {
                format!("c{i}")
            };
            cmds.push(pb::Command {
                proposed_at_ms: clock,
                principal: "root".into(),
                request_id: id,
                op: Some(op),
            });
        }
        let run = |batch: usize| {
            let backend = crate::test_sm::MemState::new();
            let mut results = vec![];
            for (b, chunk) in cmds.chunks(batch).enumerate() {
                let view = backend.view();
                let mut ov = Overlay::new(&*view);
                for (i, c) in chunk.iter().enumerate() {
                    results.push(crate::apply::apply(&mut ov, c, (b * batch + i + 1) as u64).unwrap());
                }
                let writes = ov.into_writes();
                drop(view);
                backend.commit(writes).unwrap();
            }
            let mut state = vec![];
            backend
                .view()
                .for_each(&mut |k, v| {
                    state.push((k.to_vec(), v.to_vec()));
                    Ok(())
                })
                .unwrap();
            (results, state)
        };
        let one = run(1);
        assert!(one.0.iter().any(|r| r.replayed), "the run has replays");
        for batch in [2, 7, 64, cmds.len()] {
            assert!(
                run(batch) == one,
                "batches of {batch} end elsewhere than batches of one"
            );
        }
    }
}
