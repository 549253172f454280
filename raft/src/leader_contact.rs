//! How fresh this replica provably is: the staleness bound of any node.
//!
//! A freshness proof says "every entry the cluster had committed at instant t is at or below
//! index i"; once this replica has applied i, it is fresh "as of" t. The staleness bound is the
//! time since the newest such instant; while the node is cut off or behind it grows, and it is
//! never reported as zero.
//!
//! A follower or learner starts its proofs itself, on its own clock: it asks the leader for a
//! read index (the leader confirms its leadership with a quorum) and notes when it sent the
//! request. A leader proves its own commit index, once an entry of its term is committed
//! (`node::leader_proof`). Proofs stay valid across role changes: each was true when made.
//!
//! The leader's pushed AppendEntries only tell us the leader is in contact and which commit it
//! announced. They cannot prove freshness: how long a message was in flight is unknown here
//! (a round trip measured earlier is no bound when latency rises, as the simulations showed).
//!
//! Uses `tokio::time`, so simulations control the clock.

use std::collections::VecDeque;
use std::sync::Mutex;

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
    /// Records an accepted AppendEntries announcing `leader_commit` (contact, not freshness).
    pub fn record(&self, leader_commit: u64, applied: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.last_contact = Some(Instant::now());
        g.announced_commit = g.announced_commit.max(leader_commit);
        g.absorb(applied);
    }

    /// Records a read index `index` the leader confirmed for a request this node sent at
    /// `sent_at`: once `index` is applied, this replica is fresh as of `sent_at`.
    pub fn confirmed(&self, index: u64, sent_at: Instant, applied: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.announced_commit = g.announced_commit.max(index);
        // Kept in send order, so absorb() can stop at the first index not yet applied.
        if g.pending.back().is_some_and(|&(i, _)| i > index) {
            g.pending.retain(|&(i, _)| i <= index);
        }
        let as_of = sent_at.max(self.started);
        match g.pending.back_mut() {
            // The same index again (a leader proves its commit on every read while its apply
            // lags): both would be absorbed together, so keep the newer instant only.
            Some((i, t)) if *i == index => *t = (*t).max(as_of),
            _ => g.pending.push_back((index, as_of)),
        }
        if g.pending.len() > MAX_PENDING {
            g.pending.pop_front();
        }
        g.absorb(applied);
    }

    /// Upper bound, in ms, on how far this replica (having applied `applied`) is behind the
    /// cluster; `u64::MAX` (unknown) until the first proof since this process started. A
    /// restarted node's data is as old as whatever it last applied, not as its start.
    pub fn staleness_bound_ms(&self, applied: u64) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.absorb(applied);
        match g.fresh_as_of {
            Some(since) => (since.elapsed().as_millis() as u64).max(1),
            None => u64::MAX,
        }
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
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bound_grows_while_cut_off_and_needs_the_confirmed_index_applied() {
        let c = LeaderContact::default();
        tokio::time::advance(Duration::from_millis(500)).await;
        // A read index of 10 confirmed for a request sent 20 ms ago, with only 5 applied.
        let sent = Instant::now() - Duration::from_millis(20);
        c.confirmed(10, sent, 5);
        assert_eq!(
            c.staleness_bound_ms(5),
            u64::MAX,
            "no proof yet: unknown, not time since start"
        );
        // Once 10 is applied, fresh as of the send time.
        assert_eq!(c.staleness_bound_ms(10), 20);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(c.staleness_bound_ms(10), 320, "grows while no proof arrives");
        // Pushed appends are contact, never freshness.
        c.record(12, 12);
        assert_eq!(c.staleness_bound_ms(12), 320);
        assert_eq!(c.millis_since_contact(), 0);
        assert_eq!(c.announced_commit(), 12);
        c.confirmed(12, Instant::now(), 12);
        assert_eq!(c.staleness_bound_ms(12), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_proofs_of_one_index_keep_one_entry_with_the_newest_instant() {
        let c = LeaderContact::default();
        tokio::time::advance(Duration::from_millis(100)).await;
        for _ in 0..5 {
            c.confirmed(7, Instant::now(), 3);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(c.inner.lock().unwrap().pending.len(), 1);
        assert_eq!(c.staleness_bound_ms(7), 10, "fresh as of the last of them");
    }

    #[tokio::test(start_paused = true)]
    async fn never_zero_on_a_follower() {
        let c = LeaderContact::default();
        c.confirmed(1, Instant::now(), 1);
        assert_eq!(c.staleness_bound_ms(1), 1);
    }
}
