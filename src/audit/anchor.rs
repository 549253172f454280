//! The anchor job: every node records the head of its audit log (the newest durable record's
//! number and hash) through Raft ([`coffer_model::audit_anchors`]) every interval in which it
//! moved, so a log later rewritten from any point or cut at a record boundary no longer matches
//! what the cluster holds (`coffer audit verify`, [`super::rotation::verify_anchored`]).
//!
//! One anchor at a time: a head is proposed under one request id until its outcome is known
//! (a retry of one that was applied meanwhile is a replay), and only then is a newer head
//! proposed. So a node's anchors are applied in the order of its log, and a late attempt never
//! looks like a log that went back.

use std::sync::Arc;
use std::time::Duration;

use coffer_raft::node::RaftNode;
use tokio::sync::watch;

use super::sink::AuditSink;
use crate::pb;

/// Deadline of one proposal; an unknown outcome is retried (same request id) next interval.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Who proposes anchors (the command's principal).
pub const PRINCIPAL: &str = "system:audit-anchor";

/// The command anchoring `head` for `node_id` under `request_id`.
fn command(node_id: u64, (seq, hash): (u64, [u8; 32]), request_id: String) -> pb::Command {
    // Injected bug (simulations only): anchor the head's hash under the next record's number.
    let seq = if coffer_kv::bugs::active(coffer_kv::bugs::Bug::AnchorOffByOne) {
        seq + 1
    } else {
        seq
    };
    pb::Command {
        proposed_at_ms: crate::time::now_ms(),
        principal: PRINCIPAL.into(),
        request_id,
        op: Some(pb::command::Op::AnchorAudit(pb::AnchorAudit {
            node_id,
            seq,
            hash: hash.to_vec(),
        })),
    }
}

/// Runs until `stop`: each `interval`, anchors `audit`'s head for `node_id` if it moved since
/// the last anchor that was applied.
pub async fn run(
    raft: RaftNode,
    node_id: u64,
    audit: Arc<dyn AuditSink>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut anchored: Option<(u64, [u8; 32])> = None;
    // The head being anchored and its command (with its request id), kept until its outcome
    // is known.
    let mut pending: Option<((u64, [u8; 32]), pb::Command)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if pending.is_none() {
            let Some(head) = audit.head() else { continue };
            if anchored == Some(head) {
                continue;
            }
            let id = match crate::request_ids::fresh() {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot anchor the audit log: no request id");
                    continue;
                }
            };
            pending = Some((head, command(node_id, head, id)));
        }
        let Some((head, cmd)) = pending.clone() else { continue };
        match raft.propose(cmd, PROPOSE_TIMEOUT).await {
            Ok(r) => {
                pending = None;
                match r.outcome {
                    Some(pb::command_result::Outcome::Ok(_)) => {
                        anchored = Some(head);
                        metrics::counter!("coffer_audit_anchors_total").increment(1);
                    }
                    // Refused (not bootstrapped yet, malformed): nothing was applied; the next
                    // interval proposes the head of then under a new id.
                    Some(pb::command_result::Outcome::Error(e)) => {
                        tracing::debug!(code = e.code, message = %e.message, "audit anchor refused");
                    }
                    None => {}
                }
            }
            // Unknown outcome: the same command again next interval.
            Err(e) => tracing::debug!(error = %e, "audit anchor not applied yet; retrying"),
        }
    }
}
