//! Audit anchors say what the node's log said: on every replica, every anchor a node has is the
//! hash of that record of its chain (never a record it had not written), a node's anchors are
//! in the order of its log, and none went back (a simulated node's log survives its crashes, so
//! a start-over is always a bug). Liveness: every node that recorded events anchored some.

use super::evidence::Evidence;
use super::evidence::Violation;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let bad = |detail: String| Violation::new("audit_anchored", detail);
    let mut anchored_nodes = std::collections::BTreeSet::new();
    for replica in &e.anchors {
        for record in &replica.records {
            let Some((_, node, chain)) = e.audit_chains.iter().find(|(id, _, _)| *id == record.node_id) else {
                out.push(bad(format!(
                    "{} holds audit anchors of node {}, which does not exist",
                    replica.replica, record.node_id
                )));
                continue;
            };
            if let Some(s) = record.started_over.first() {
                out.push(bad(format!(
                    "{} says {node}'s audit log went back below record {} at {} ms; it never did",
                    replica.replica, s.seq, s.at_ms
                )));
            }
            if record.anchors.len() > coffer_model::audit_anchors::KEPT {
                out.push(bad(format!(
                    "{} keeps {} anchors of {node}, more than {}",
                    replica.replica,
                    record.anchors.len(),
                    coffer_model::audit_anchors::KEPT
                )));
            }
            if record.anchors.windows(2).any(|w| w[0].seq >= w[1].seq) {
                out.push(bad(format!(
                    "{}'s anchors of {node} are not in the order of its log: {:?}",
                    replica.replica,
                    record.anchors.iter().map(|a| a.seq).collect::<Vec<_>>()
                )));
            }
            for a in &record.anchors {
                anchored_nodes.insert(record.node_id);
                let actual = usize::try_from(a.seq)
                    .ok()
                    .and_then(|s| s.checked_sub(1))
                    .and_then(|i| chain.get(i));
                match actual {
                    Some(h) if h.as_slice() == a.hash.as_slice() => {}
                    Some(_) => out.push(bad(format!(
                        "{} anchors record {} of {node}'s audit log with a hash the record does not have",
                        replica.replica, a.seq
                    ))),
                    None => out.push(bad(format!(
                        "{} anchors record {} of {node}'s audit log, which has only {} records",
                        replica.replica,
                        a.seq,
                        chain.len()
                    ))),
                }
            }
        }
    }
    for (id, node, chain) in &e.audit_chains {
        if !chain.is_empty() && !anchored_nodes.contains(id) {
            out.push(bad(format!(
                "{node} recorded {} audit events but none of its anchors reached any replica",
                chain.len()
            )));
        }
    }
    out
}
