//! How fresh this replica provably is: the staleness bound of a follower or learner.
//!
//! Recorded where the leader's AppendEntries arrive: each carries the commit index the leader
//! announced and the leader's last measured round trip to us (an upper bound on how long the
//! message was in flight). When this replica has applied an announced commit, it holds every
//! entry the cluster had committed when that message was sent, so it is fresh "as of" the
//! receipt time minus the round trip. The staleness bound is the time since the newest such
//! instant; while the node is cut off it grows, and it is never reported as zero on a follower.
//!
//! Uses `tokio::time`, so simulations control the clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Announced commits not yet applied that are remembered; older ones are dropped, which only
/// makes the bound larger (safe).
const MAX_PENDING: usize = 1024;

#[derive(Debug)]
pub struct LeaderContact {
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last_contact: Option<Instant>,
    announced_commit: u64,
    /// Newest instant as of which this replica is known to hold every committed entry.
    fresh_as_of: Option<Instant>,
    /// Announced commits this replica had not applied when they arrived: (index, as of).
    pending: VecDeque<(u64, Instant)>,
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }
}

impl Inner {
    fn absorb(&mut self, applied: u64) {
        while let Some(&(index, as_of)) = self.pending.front() {
            if index > applied {
                break;
            }
            self.pending.pop_front();
            self.fresh_as_of = Some(self.fresh_as_of.map_or(as_of, |f| f.max(as_of)));
        }
    }
}

impl LeaderContact {
    /// Records an accepted AppendEntries announcing `leader_commit`, sent by a leader whose last
    /// round trip to us took `rtt`, while this replica has applied `applied`.
    pub fn record(&self, leader_commit: u64, rtt: Duration, applied: u64) {
        let now = Instant::now();
        let as_of = now.checked_sub(rtt).unwrap_or(self.started).max(self.started);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.last_contact = Some(now);
        g.announced_commit = g.announced_commit.max(leader_commit);
        g.pending.push_back((leader_commit, as_of));
        if g.pending.len() > MAX_PENDING {
            g.pending.pop_front();
        }
        g.absorb(applied);
    }

    /// Upper bound, in ms, on how far this replica (having applied `applied`) is behind the
    /// cluster. Measured from node start when no freshness proof exists yet.
    pub fn staleness_bound_ms(&self, applied: u64) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.absorb(applied);
        let since = g.fresh_as_of.unwrap_or(self.started);
        (since.elapsed().as_millis() as u64).max(1)
    }

    /// Milliseconds since the leader's last accepted AppendEntries (since start if none yet).
    pub fn millis_since_contact(&self) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.last_contact.unwrap_or(self.started).elapsed().as_millis() as u64
    }

    /// Highest commit index a leader has announced to this node.
    pub fn announced_commit(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).announced_commit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bound_grows_while_cut_off_and_needs_the_announced_commit_applied() {
        let c = LeaderContact::default();
        tokio::time::advance(Duration::from_millis(500)).await;
        // Contact announcing commit 10 while we have applied only 5: no proof yet.
        c.record(10, Duration::from_millis(20), 5);
        assert!(c.staleness_bound_ms(5) >= 500, "measured from start");
        // Once 10 is applied, fresh as of receipt minus the round trip.
        assert_eq!(c.staleness_bound_ms(10), 20);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(c.staleness_bound_ms(10), 320, "grows while no leader reaches us");
        c.record(12, Duration::from_millis(20), 12);
        assert_eq!(c.staleness_bound_ms(12), 20);
        assert_eq!(c.millis_since_contact(), 0);
        assert_eq!(c.announced_commit(), 12);
    }

    #[tokio::test(start_paused = true)]
    async fn never_zero_on_a_follower() {
        let c = LeaderContact::default();
        c.record(1, Duration::ZERO, 1);
        assert_eq!(c.staleness_bound_ms(1), 1);
    }
}
