//! When this node last heard from the leader, recorded where the leader's AppendEntries
//! arrive. A follower's staleness bound grows from this instant while it is cut off.
//!
//! Uses `tokio::time`, so simulations control the clock.

use std::sync::Mutex;

use tokio::time::Instant;

/// When the leader last reached this node, recorded where its AppendEntries arrive.
#[derive(Debug)]
pub struct LeaderContact {
    started: Instant,
    last: Mutex<Option<(Instant, u64)>>,
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }
}

impl LeaderContact {
    pub fn record(&self, leader_commit: u64) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), leader_commit));
    }

    /// Milliseconds since the leader's last accepted AppendEntries (since start if none yet).
    pub fn millis_since_contact(&self) -> u64 {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let since = last.map(|(t, _)| t).unwrap_or(self.started);
        since.elapsed().as_millis() as u64
    }

    /// The commit index the leader announced at its last contact.
    pub fn announced_commit(&self) -> Option<u64> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).map(|(_, c)| c)
    }
}
