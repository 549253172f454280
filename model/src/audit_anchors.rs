//! Audit chain anchors: each node records the head of its audit log (the newest durable
//! record's number and hash) through Raft, so the cluster holds what the node's log said even
//! if that log is later rewritten from any point or cut at a record boundary. `coffer audit
//! verify` compares the log with these anchors.
//!
//! Invariants (`a/<node id>`, one [`pb::AuditAnchors`] per node):
//! - `anchors` is ordered by `seq`, strictly increasing, at most [`KEPT`] of them (the newest).
//! - An anchor at or below the newest one with another hash (or a lower seq) is a log that
//!   started over: the newest anchor moves to `started_over` (at most [`KEPT_STARTS`], newest
//!   last) and the new anchor starts the list again. Anchoring the newest anchor again is a
//!   no-op. So a cut or rewritten log stays on record in every replica.
//! - At most [`MAX_NODES`] nodes have anchors; anchors of a new node past that are refused.

use prost::Message;

use crate::error::decode;
use crate::error::fail;
use crate::error::Result;
use crate::keys;
use crate::pb;
use crate::pb::ErrorCode;
use coffer_kv::Txn;

/// Anchors kept per node.
pub const KEPT: usize = 16;
/// Start-overs kept per node.
pub const KEPT_STARTS: usize = 8;
/// Most nodes with anchors (far above any cluster's size).
pub const MAX_NODES: usize = 1024;

/// Records `c` as node `c.node_id`'s audit head at `now_ms`.
pub(crate) fn anchor(tx: &mut Txn<'_, '_>, c: &pb::AnchorAudit, now_ms: u64) -> Result<pb::CommandOk> {
    if c.seq == 0 || c.hash.len() != 32 {
        return fail(
            ErrorCode::InvalidArgument,
            "an audit anchor names a record (seq from 1) and its 32-byte hash",
        );
    }
    let key = keys::audit_anchors(c.node_id);
    let mut record = match tx.get(&key)? {
        Some(b) => decode::<pb::AuditAnchors>(&b, "audit anchors")?,
        None => {
            if tx
                .scan(keys::AUDIT_ANCHORS_PREFIX, keys::AUDIT_ANCHORS_PREFIX, MAX_NODES)?
                .len()
                >= MAX_NODES
            {
                return fail(
                    ErrorCode::FailedPrecondition,
                    format!("{MAX_NODES} nodes have audit anchors already"),
                );
            }
            pb::AuditAnchors {
                node_id: c.node_id,
                ..Default::default()
            }
        }
    };
    let new = pb::AuditAnchor {
        seq: c.seq,
        hash: c.hash.clone(),
        at_ms: now_ms,
    };
    match record.anchors.last() {
        Some(last) if last.seq == c.seq && last.hash == c.hash => return Ok(pb::CommandOk::default()),
        Some(last) if last.seq >= c.seq => {
            let passed = pb::AuditAnchor {
                at_ms: now_ms,
                ..last.clone()
            };
            record.started_over.push(passed);
            let excess = record.started_over.len().saturating_sub(KEPT_STARTS);
            record.started_over.drain(..excess);
            record.anchors = vec![new];
        }
        _ => {
            record.anchors.push(new);
            let excess = record.anchors.len().saturating_sub(KEPT);
            record.anchors.drain(..excess);
        }
    }
    tx.put(key, record.encode_to_vec());
    Ok(pb::CommandOk::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sm::Sm;

    fn anchors(sm: &Sm, node_id: u64) -> Option<pb::AuditAnchors> {
        crate::query::audit_anchors(&*sm.backend.view(), node_id).unwrap()
    }

    fn op(node_id: u64, seq: u64, h: u8) -> pb::command::Op {
        pb::command::Op::AnchorAudit(pb::AnchorAudit {
            node_id,
            seq,
            hash: vec![h; 32],
        })
    }

    #[test]
    fn anchors_advance_and_keep_the_newest() {
        let mut sm = Sm::new();
        for seq in 1..=20 {
            sm.run(op(7, seq * 10, seq as u8)).unwrap();
        }
        // The same head again changes nothing.
        sm.run(op(7, 200, 20)).unwrap();
        let a = anchors(&sm, 7).unwrap();
        let seqs: Vec<u64> = a.anchors.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, (5..=20).map(|s| s * 10).collect::<Vec<_>>());
        assert!(a.started_over.is_empty());
        assert!(anchors(&sm, 8).is_none());
    }

    #[test]
    fn a_log_that_goes_back_or_changes_stays_on_record() {
        let mut sm = Sm::new();
        sm.run(op(1, 50, 1)).unwrap();
        // Cut back to record 30: the anchor of 50 is kept as passed over.
        sm.run(op(1, 30, 2)).unwrap();
        // Same number, another hash: rewritten.
        sm.run(op(1, 30, 3)).unwrap();
        let a = anchors(&sm, 1).unwrap();
        assert_eq!(a.anchors.len(), 1);
        assert_eq!((a.anchors[0].seq, a.anchors[0].hash[0]), (30, 3));
        let passed: Vec<(u64, u8)> = a.started_over.iter().map(|s| (s.seq, s.hash[0])).collect();
        assert_eq!(passed, [(50, 1), (30, 2)]);
        for i in 0..20 {
            sm.run(op(1, 10, 10 + i)).unwrap();
        }
        assert_eq!(anchors(&sm, 1).unwrap().started_over.len(), KEPT_STARTS);
    }

    #[test]
    fn the_number_of_anchored_nodes_is_bounded() {
        let mut sm = Sm::new();
        for node in 0..MAX_NODES as u64 {
            sm.run(op(node, 1, 1)).unwrap();
        }
        let e = sm.run(op(MAX_NODES as u64, 1, 1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::FailedPrecondition, "{e}");
        // Nodes that have anchors go on anchoring.
        sm.run(op(3, 2, 2)).unwrap();
        assert_eq!(anchors(&sm, 3).unwrap().anchors.len(), 2);
    }

    #[test]
    fn malformed_anchors_are_refused() {
        let mut sm = Sm::new();
        assert_eq!(sm.run(op(1, 0, 1)).unwrap_err().code, ErrorCode::InvalidArgument);
        let short = pb::command::Op::AnchorAudit(pb::AnchorAudit {
            node_id: 1,
            seq: 3,
            hash: vec![1; 31],
        });
        assert_eq!(sm.run(short).unwrap_err().code, ErrorCode::InvalidArgument);
        assert!(anchors(&sm, 1).is_none());
    }
}
