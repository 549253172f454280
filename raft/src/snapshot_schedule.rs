//! When this node builds a Raft snapshot: once every `every` applied entries, at a log index
//! that depends on the node's id.
//!
//! openraft's `LogsSinceLast(n)` makes every member of a cluster that started together build a
//! snapshot at the same log indexes (n, 2n, ...). Builds used to write the whole state to a
//! file, and all replicas slowed down together, and with them the quorum that commits writes
//! (on the 3-node loopback bench, three 535 MB snapshot files landed on one disk at once). A
//! build is now a WAL sync, but the log purge behind it and the compaction that reclaims the
//! purged entries are still better not run by every replica at once. Here node
//! `id` builds when its applied index crosses `k * every - phase(id)`, where `phase(id)` is
//! `every` times the fractional part of `id * golden ratio`: nodes 1, 2 and 3 sit at 0.62, 0.24
//! and 0.85 of a period, so no two of them build within 0.23 of a period of each other, and
//! two nodes of a 3-voter quorum are never busy building at the same index.
//!
//! Invariants: the schedule depends only on (id, every, applied index), so it is the same
//! after a restart and in a simulation; a node builds at least once per `every` applied
//! entries, unless a trigger arrives while a build is still running (openraft then ignores it
//! and the next period's trigger builds).

use crate::NodeId;

/// 2^64 / golden ratio: multiplying by it spreads consecutive ids evenly over a period.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// `span` times the fractional part of `id * golden ratio` (`< span`): consecutive ids land far
/// apart in `0..span`, nodes 1, 2 and 3 at 0.62, 0.24 and 0.85 of it. Also spreads the nodes'
/// RocksDB memtable sizes ([`crate::rocks::memtable_bytes`]).
pub fn spread(id: NodeId, span: u64) -> u64 {
    ((u128::from(id.wrapping_mul(GOLDEN)) * u128::from(span)) >> 64) as u64
}

/// The snapshot points of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSchedule {
    every: u64,
    phase: u64,
}

impl SnapshotSchedule {
    /// Snapshot points `every` entries apart (at least 1), offset by this node's phase.
    pub fn new(id: NodeId, every: u64) -> Self {
        let every = every.max(1);
        Self {
            every,
            phase: spread(id, every),
        }
    }

    /// Entries a node waits between two snapshots.
    pub fn every(&self) -> u64 {
        self.every
    }

    /// How far into a period this node's snapshot points are shifted (`< every`).
    pub fn phase(&self) -> u64 {
        self.phase
    }

    /// Whether applying the entries after `from` up to `to` passes a snapshot point.
    pub fn crosses(&self, from: u64, to: u64) -> bool {
        self.period(to) > self.period(from)
    }

    fn period(&self, index: u64) -> u64 {
        (u128::from(index) + u128::from(self.phase)).div_euclid(u128::from(self.every)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The applied indexes (stepping by `step` from 0 to `to`) at which `s` asks for a snapshot.
    fn points(s: SnapshotSchedule, step: u64, to: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < to {
            let next = (at + step).min(to);
            if s.crosses(at, next) {
                out.push(next);
            }
            at = next;
        }
        out
    }

    #[test]
    fn each_node_builds_once_per_period_at_its_own_indexes() {
        let every = 100_000;
        let per_node: Vec<Vec<u64>> = (1..=3)
            .map(|id| points(SnapshotSchedule::new(id, every), 1, 5 * every))
            .collect();
        for p in &per_node {
            assert_eq!(p.len(), 5, "one snapshot per period: {p:?}");
            for w in p.windows(2) {
                assert_eq!(w[1] - w[0], every, "{p:?}");
            }
            assert!(p[0] <= every, "the first snapshot is due within one period: {p:?}");
        }
        // Any two nodes of the three are at least a fifth of a period apart, modulo the period.
        for a in 0..3 {
            for b in a + 1..3 {
                let d = per_node[a][0].abs_diff(per_node[b][0]) % every;
                let gap = d.min(every - d);
                assert!(
                    gap >= every / 5,
                    "nodes {} and {} are {gap} entries apart",
                    a + 1,
                    b + 1
                );
            }
        }
    }

    #[test]
    fn a_batch_that_spans_a_point_crosses_it_once_and_the_schedule_survives_restarts() {
        let s = SnapshotSchedule::new(2, 1_000);
        let point = points(s, 1, 1_000)[0];
        assert!(s.crosses(point - 1, point));
        assert!(
            s.crosses(point - 300, point + 200),
            "a batch of many entries still crosses"
        );
        assert!(!s.crosses(point, point + 999), "no second point within the period");
        // Same id and period after a restart: the same points.
        assert_eq!(s, SnapshotSchedule::new(2, 1_000));
        assert!(s.phase() < s.every());
    }

    #[test]
    fn tiny_and_huge_periods_do_not_overflow() {
        let s = SnapshotSchedule::new(u64::MAX, 0);
        assert_eq!(s.every(), 1);
        assert!(s.crosses(0, 1));
        let s = SnapshotSchedule::new(7, u64::MAX);
        assert!(
            s.crosses(0, u64::MAX),
            "index + phase goes past u64::MAX without wrapping"
        );
        assert!(!s.crosses(u64::MAX, u64::MAX));
    }
}
