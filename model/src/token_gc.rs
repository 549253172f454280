//! Token records do not outlive their use. A token stops working when it is revoked or
//! expires; its record (and hash index entry) is kept `token_record_retention_ms` longer (24
//! hours unless the bootstrap said otherwise), so that `token list` shows it and a client is
//! told "revoked" or "expired" rather than "unknown", and is then deleted. The number of
//! records is bounded: creating one past [`MAX_RECORDS`] is refused, so a
//! listing never has to fail.
//!
//! Invariants:
//! - Deletion depends only on the state and the command: each token has due entries
//!   (`g/<due ms><accessor>`, one for its expiry and one for its revocation), and a command
//!   deletes records whose due time has come on the request table's clock (the largest
//!   `proposed_at_ms` applied, so it never goes back). Every replica deletes the same records at
//!   the same log index.
//! - A record is deleted only once it is revoked or expired and the retention has passed since;
//!   a token that is neither is never touched.
//! - Each command deletes at most [`COLLECT_PER_COMMAND`] records and adds at most two due
//!   entries, so a backlog shrinks whenever commands arrive.
//! - `TokenTableMeta.records` counts the `t/` records. A state from before this bookkeeping is
//!   indexed (every record counted and given its due entries) by the first command.

use prost::Message;

use crate::error::decode;
use crate::error::fail;
use crate::error::Result;
use crate::keys;
use crate::pb;
use crate::pb::ErrorCode;
use coffer_kv::Overlay;
use coffer_kv::Txn;

/// Retention when the bootstrap named none.
pub const DEFAULT_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// Bounds for `cluster.token_record_retention_ms`: 1 s (tests, simulations) to 30 days.
pub const MIN_RETENTION_MS: u64 = 1_000;
pub const MAX_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most token records the cluster keeps (no more than a listing reads whole).
pub const MAX_RECORDS: usize = 10_000;
/// Due records one command may delete.
pub const COLLECT_PER_COMMAND: usize = 16;

fn meta_in(bytes: Option<Vec<u8>>) -> Result<pb::TokenTableMeta> {
    Ok(match bytes {
        Some(b) => decode(&b, "token table")?,
        None => pb::TokenTableMeta::default(),
    })
}

/// How long records are kept after a token stops working.
fn retention_ms(tx: &Txn<'_, '_>) -> Result<u64> {
    let info: Option<pb::ClusterInfo> = tx.get(keys::CLUSTER)?.map(|b| decode(&b, "cluster")).transpose()?;
    Ok(match info.map_or(0, |i| i.token_record_retention_ms) {
        0 => DEFAULT_RETENTION_MS,
        ms => ms.clamp(MIN_RETENTION_MS, MAX_RETENTION_MS),
    })
}

/// When a record may go: `stopped_ms` (expiry or revocation) plus the retention.
fn due(tx: &Txn<'_, '_>, stopped_ms: u64) -> Result<u64> {
    Ok(stopped_ms.saturating_add(retention_ms(tx)?))
}

/// Records a new token: counted (refused past the bound) and due at its expiry.
pub(crate) fn created(tx: &mut Txn<'_, '_>, t: &pb::TokenRecord) -> Result<()> {
    let mut m = meta_in(tx.get(keys::TOKENS_META)?)?;
    let max = MAX_RECORDS as u64;
    if m.records >= max {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "the cluster holds {max} token records (revoked and expired ones are kept for the \
                 retention); revoke tokens that are not used, or wait for old ones to be deleted"
            ),
        );
    }
    m.records += 1;
    tx.put(keys::TOKENS_META.to_vec(), m.encode_to_vec());
    let at = due(tx, t.expires_at_ms)?;
    tx.put(keys::token_due(at, &t.accessor), Vec::new());
    Ok(())
}

/// Records a revocation at `revoked_ms`: the record is due the retention after it.
pub(crate) fn revoked(tx: &mut Txn<'_, '_>, accessor: &str, revoked_ms: u64) -> Result<()> {
    let at = due(tx, revoked_ms)?;
    tx.put(keys::token_due(at, accessor), Vec::new());
    Ok(())
}

/// Whether `t` is past its use and its retention at `clock_ms`.
fn is_due(t: &pb::TokenRecord, retention_ms: u64, clock_ms: u64) -> bool {
    let stopped = match t.revoked_at_ms {
        0 => t.expires_at_ms,
        r => r.min(t.expires_at_ms),
    };
    stopped.saturating_add(retention_ms) <= clock_ms
}

/// Indexes a state from before this bookkeeping, then deletes up to [`COLLECT_PER_COMMAND`]
/// records due at `clock_ms`. Called once for every applied command after the bootstrap.
pub fn collect(ov: &mut Overlay<'_>, clock_ms: u64) -> std::io::Result<()> {
    let mut tx = ov.txn();
    match collect_in(&mut tx, clock_ms) {
        Ok(()) => {
            tx.commit();
            Ok(())
        }
        Err(crate::error::ApplyError::Io(e)) => Err(e),
        // Only storage fails here; a refusal would be a bug, and changes nothing.
        Err(crate::error::ApplyError::Model(e)) => Err(std::io::Error::other(e.message)),
    }
}

fn collect_in(tx: &mut Txn<'_, '_>, clock_ms: u64) -> Result<()> {
    let mut m = meta_in(tx.get(keys::TOKENS_META)?)?;
    if !m.indexed {
        index_all(tx, &mut m)?;
    }
    if coffer_kv::bugs::active(coffer_kv::bugs::Bug::TokensKept) {
        return Ok(());
    }
    let mut retention = None;
    let mut changed = false;
    let first = tx.scan(keys::TOKEN_DUE_PREFIX, keys::TOKEN_DUE_PREFIX, COLLECT_PER_COMMAND)?;
    for (key, _) in first {
        let Some((due, accessor)) = keys::parse_token_due(&key) else {
            tx.delete(key);
            continue;
        };
        let early = coffer_kv::bugs::active(coffer_kv::bugs::Bug::TokensCollectedEarly);
        if due > clock_ms && !early {
            break;
        }
        let record_key = keys::token(accessor);
        if let Some(bytes) = tx.get(&record_key)? {
            let t: pb::TokenRecord = decode(&bytes, "token")?;
            let retention = match retention {
                Some(r) => r,
                None => *retention.insert(retention_ms(tx)?),
            };
            // The other due entry (or a shorter retention) may come later: only a record past
            // its use and its retention goes.
            if is_due(&t, retention, clock_ms) || early {
                tx.delete(record_key);
                tx.delete(keys::token_hash(&t.token_sha256));
                m.records = m.records.saturating_sub(1);
                changed = true;
            }
        }
        tx.delete(key);
    }
    if changed || !m.indexed {
        m.indexed = true;
        tx.put(keys::TOKENS_META.to_vec(), m.encode_to_vec());
    }
    Ok(())
}

/// Counts every token record and gives it its due entries (once, for an older state).
fn index_all(tx: &mut Txn<'_, '_>, m: &mut pb::TokenTableMeta) -> Result<()> {
    let all = tx.scan(keys::TOKEN_PREFIX, keys::TOKEN_PREFIX, usize::MAX)?;
    m.records = all.len() as u64;
    for (_, bytes) in all {
        let t: pb::TokenRecord = decode(&bytes, "token")?;
        let at = due(tx, t.expires_at_ms)?;
        tx.put(keys::token_due(at, &t.accessor), Vec::new());
        if t.revoked_at_ms != 0 {
            let at = due(tx, t.revoked_at_ms)?;
            tx.put(keys::token_due(at, &t.accessor), Vec::new());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sm::token_record;
    use crate::test_sm::Sm;

    /// A bootstrapped state machine keeping token records `retention_ms` after they stop.
    fn sm(retention_ms: u64) -> Sm {
        let mut sm = Sm::empty();
        sm.run(pb::command::Op::Bootstrap(pb::Bootstrap {
            cluster: Some(pb::ClusterInfo {
                cluster_id: "test".into(),
                root_token_sha256: vec![0; 32],
                token_record_retention_ms: retention_ms,
                ..Default::default()
            }),
            request_retention_ms: 0,
        }))
        .unwrap();
        sm.run(crate::test_sm::put_policy("acme-read")).unwrap();
        sm
    }

    fn create(sm: &mut Sm, accessor: &str, hash: u8, expires_at_ms: u64) -> std::result::Result<(), String> {
        let mut t = token_record(accessor, hash);
        t.created_at_ms = sm.clock_ms;
        t.expires_at_ms = expires_at_ms;
        sm.run(pb::command::Op::CreateToken(pb::CreateToken {
            token: Some(t),
            reply: None,
        }))
        .map(|_| ())
        .map_err(|e| e.message)
    }

    fn revoke(sm: &mut Sm, accessor: &str) {
        sm.run(pb::command::Op::RevokeToken(pb::RevokeToken {
            accessor: accessor.into(),
        }))
        .unwrap();
    }

    /// Any command: a policy put, to move the clock and let collection run.
    fn tick(sm: &mut Sm, to_ms: u64) {
        sm.clock_ms = to_ms;
        sm.run(pb::command::Op::PutPolicy(pb::PutPolicy {
            policy: Some(pb::Policy {
                name: "p".into(),
                statements: vec![pb::PolicyStatement::default()],
                ..Default::default()
            }),
        }))
        .unwrap();
    }

    fn accessors(sm: &Sm) -> Vec<String> {
        let view = sm.backend.view();
        view.scan(keys::TOKEN_PREFIX, keys::TOKEN_PREFIX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k[keys::TOKEN_PREFIX.len()..].to_vec()).unwrap())
            .collect()
    }

    fn records(sm: &Sm) -> u64 {
        let view = sm.backend.view();
        meta_in(view.get(keys::TOKENS_META).unwrap()).unwrap().records
    }

    #[test]
    fn revoked_and_expired_records_go_after_the_retention_and_live_ones_stay() {
        let mut sm = sm(1_000);
        let t0 = sm.clock_ms;
        create(&mut sm, "aa", 1, t0 + 10_000).unwrap(); // revoked below
        create(&mut sm, "bb", 2, t0 + 500).unwrap(); // expires soon
        create(&mut sm, "cc", 3, t0 + 3_600_000).unwrap(); // lives
        revoke(&mut sm, "aa");
        assert_eq!(records(&sm), 3);
        // Inside every retention: all three records stay (revoked and expired shown as such).
        tick(&mut sm, t0 + 900);
        assert_eq!(accessors(&sm), ["aa", "bb", "cc"]);
        // Past the revoked one's retention, not the expired one's.
        tick(&mut sm, t0 + 1_200);
        assert_eq!(accessors(&sm), ["bb", "cc"]);
        let view = sm.backend.view();
        assert!(view.get(&keys::token_hash(&[1; 32])).unwrap().is_none());
        drop(view);
        tick(&mut sm, t0 + 1_600);
        assert_eq!(accessors(&sm), ["cc"]);
        assert_eq!(records(&sm), 1);
        // The live token stays however many commands run, until its own expiry + retention.
        tick(&mut sm, t0 + 3_600_000);
        assert_eq!(accessors(&sm), ["cc"]);
        tick(&mut sm, t0 + 3_601_000);
        assert!(accessors(&sm).is_empty());
        assert_eq!(records(&sm), 0);
        let view = sm.backend.view();
        assert!(view
            .scan(keys::TOKEN_DUE_PREFIX, keys::TOKEN_DUE_PREFIX, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn records_past_the_bound_are_refused_and_a_deleted_one_makes_room() {
        let mut sm = sm(1_000);
        let t0 = sm.clock_ms;
        // Start near the bound without ten thousand commands.
        let mut w = coffer_kv::WriteSet::new();
        let m = pb::TokenTableMeta {
            records: MAX_RECORDS as u64 - 1,
            indexed: true,
        };
        w.insert(keys::TOKENS_META.to_vec(), Some(m.encode_to_vec()));
        sm.backend.commit(w).unwrap();
        create(&mut sm, "aa", 1, t0 + 100).unwrap();
        let e = create(&mut sm, "bb", 2, t0 + 3_600_000).unwrap_err();
        assert!(e.contains("10000 token records"), "{e}");
        tick(&mut sm, t0 + 2_000);
        create(&mut sm, "bb", 2, t0 + 3_600_000).unwrap();
    }

    #[test]
    fn a_state_from_before_the_bookkeeping_is_indexed_by_the_first_command() {
        let mut sm = sm(1_000);
        let t0 = sm.clock_ms;
        // Records written the old way: no due entries, no count.
        let mut w = coffer_kv::WriteSet::new();
        for (a, hash, revoked) in [("aa", 1u8, t0), ("bb", 2, 0)] {
            let mut t = token_record(a, hash);
            t.expires_at_ms = t0 + 3_600_000;
            t.revoked_at_ms = revoked;
            w.insert(keys::token(a), Some(t.encode_to_vec()));
            w.insert(keys::token_hash(&t.token_sha256), Some(a.as_bytes().to_vec()));
        }
        w.insert(keys::TOKENS_META.to_vec(), None);
        sm.backend.commit(w).unwrap();
        tick(&mut sm, t0 + 10);
        assert_eq!(records(&sm), 2);
        tick(&mut sm, t0 + 1_100);
        assert_eq!(accessors(&sm), ["bb"]);
        assert_eq!(records(&sm), 1);
    }

    #[test]
    fn every_replica_collects_alike_whatever_the_batches() {
        // Two state machines fed the same commands, one per batch and then as one batch, end
        // with the same state (collection depends on the commands, not on batching).
        let run = |one_batch: bool| {
            let mut sm = sm(1_000);
            let t0 = sm.clock_ms;
            let mut cmds = vec![];
            for i in 0..40u8 {
                let mut t = token_record(&format!("{i:02x}"), i);
                t.created_at_ms = t0;
                t.expires_at_ms = t0 + 1 + u64::from(i % 5) * 100;
                cmds.push(pb::Command {
                    proposed_at_ms: t0 + u64::from(i) * 50,
                    principal: "root".into(),
                    request_id: String::new(),
                    op: Some(pb::command::Op::CreateToken(pb::CreateToken {
                        token: Some(t),
                        reply: None,
                    })),
                });
            }
            if one_batch {
                sm.apply_batch(&cmds);
            } else {
                for c in &cmds {
                    sm.apply(c);
                }
            }
            sm.snapshot()
        };
        assert_eq!(run(true), run(false));
    }
}
