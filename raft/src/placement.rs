//! Leader placement: the leader hands leadership to a healthy, caught-up voter in a more
//! preferred region when there is one.
//!
//! Runs on every node and acts only while the node leads. A candidate must have acknowledged
//! the leader recently and hold every committed entry, so a transfer never lands on a node that
//! is down or behind. A cool-down between transfers prevents flapping.

use std::time::Duration;

use tokio::time::Instant;

use crate::node::RaftNode;
use crate::node::Role;

/// Checks placement every `tick` until `stop` flips to true.
pub async fn run(node: RaftNode, preferred: Vec<String>, tick: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    if preferred.is_empty() {
        return;
    }
    let cooldown = tick * 10;
    let mut last_transfer: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if last_transfer.is_some_and(|t| t.elapsed() < cooldown) {
            continue;
        }
        if let Some(to) = candidate(&node, &preferred, tick) {
            tracing::info!(to, "moving leadership to a more preferred region");
            match node.transfer_leader(to).await {
                Ok(()) => last_transfer = Some(Instant::now()),
                Err(e) => tracing::warn!("leader transfer to {to} failed: {e}"),
            }
        }
    }
}

fn rank(preferred: &[String], region: &str) -> usize {
    preferred.iter().position(|r| r == region).unwrap_or(preferred.len())
}

/// The voter leadership should move to, if this node leads from a less preferred region.
fn candidate(node: &RaftNode, preferred: &[String], tick: Duration) -> Option<u64> {
    let s = node.status();
    if s.role != Role::Leader {
        return None;
    }
    let mine = rank(preferred, &s.node(s.id)?.region);
    let healthy = (tick * 3).as_millis() as u64;
    s.voters
        .iter()
        .filter(|v| v.id != s.id)
        .filter(|v| rank(preferred, &v.region) < mine)
        .filter(|v| s.acked_ms_ago.get(&v.id).is_some_and(|ms| *ms <= healthy))
        .filter(|v| s.matched.get(&v.id).is_some_and(|m| *m >= s.committed))
        .min_by_key(|v| (rank(preferred, &v.region), v.id))
        .map(|v| v.id)
}
