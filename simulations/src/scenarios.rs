//! Pinned scenarios: named situations run with a fixed fault schedule (the seed still drives
//! latencies jitter-free, the workload and Raft's timers).

use std::time::Duration;

use crate::faults::Fault;
use crate::faults::Scheduled;
use crate::rng::SimRng;
use crate::shape::Shape;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The leader's region is cut off while clients rotate (put new versions, promote CURRENT).
    LeaderRegionIsolatedDuringRotation,
    /// The leader region's KMS is down while clients write.
    KmsDownInLeaderRegion,
    /// Scheduled rotations go on while the leader's region is cut off and another region's
    /// KMS is down: the next leader carries each run on, once.
    RotationsLeaderIsolatedKmsDown,
    /// A follower falls behind a compacted log, restarts, and crashes again while the leader
    /// installs a snapshot on it.
    CrashDuringSnapshotInstall,
    /// Leaders are isolated while writes flow and a reader on every node asks for
    /// `bounded(1000)` every 20 ms: each new leader knows less of what its predecessor
    /// committed than the clients were told, until an entry of its own term commits.
    NewLeaderBoundedReads,
    /// Clients write for well over the request retention while leaders change and a node
    /// crashes, so request records expire (and snapshots carry the expiry queue) under retries.
    RequestsExpire,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::LeaderRegionIsolatedDuringRotation,
        Scenario::KmsDownInLeaderRegion,
        Scenario::RotationsLeaderIsolatedKmsDown,
        Scenario::CrashDuringSnapshotInstall,
        Scenario::RequestsExpire,
        Scenario::NewLeaderBoundedReads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LeaderRegionIsolatedDuringRotation => "leader-region-isolated-during-rotation",
            Scenario::KmsDownInLeaderRegion => "kms-down-in-leader-region",
            Scenario::RotationsLeaderIsolatedKmsDown => "rotations-leader-isolated-kms-down",
            Scenario::CrashDuringSnapshotInstall => "crash-during-snapshot-install",
            Scenario::RequestsExpire => "requests-expire",
            Scenario::NewLeaderBoundedReads => "new-leader-bounded-reads",
        }
    }

    /// Whether every node gets a reader of its own that asks for bounded reads all along.
    pub fn bounded_readers(self) -> bool {
        self == Scenario::NewLeaderBoundedReads
    }

    /// The safety phase this scenario needs at least, whatever `--safety-secs` says.
    pub fn min_safety(self) -> Duration {
        match self {
            // Two and a half request retentions of writes.
            Scenario::RequestsExpire => crate::cluster::REQUEST_RETENTION * 5 / 2,
            Scenario::NewLeaderBoundedReads => Duration::from_secs(50),
            _ => Duration::ZERO,
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Three regions, one voter each, fixed latencies; small snapshots for the crash case.
    pub fn shape(self, rng: &SimRng) -> Shape {
        let mut s = Shape::from_seed(rng);
        s.regions.truncate(3);
        s.nodes = (0..3)
            .map(|r| crate::shape::SimNode::new(r as u64 + 1, &s.regions[r], r, true))
            .collect();
        s.latency = [((0, 1), 70), ((0, 2), 200), ((1, 2), 130)]
            .into_iter()
            .map(|(k, ms)| (k, Duration::from_millis(ms)))
            .collect();
        s.heartbeat_ms = 500;
        s.election_min_ms = 2000;
        s.election_max_ms = 4000;
        s.snapshot_every = if matches!(self, Scenario::CrashDuringSnapshotInstall | Scenario::RequestsExpire) {
            10
        } else {
            100
        };
        s
    }

    pub fn faults(self, _shape: &Shape) -> Vec<Scheduled> {
        let at = |s: u64, len: u64, fault: Fault| Scheduled {
            start: Duration::from_millis(s),
            length: Duration::from_millis(len),
            fault,
        };
        match self {
            Scenario::LeaderRegionIsolatedDuringRotation => vec![at(4_000, 12_000, Fault::IsolateLeaderRegion)],
            Scenario::KmsDownInLeaderRegion => vec![at(3_000, 15_000, Fault::LeaderRegionKmsDown)],
            // Region 1's KMS goes down first; then the leader's region (whichever it is) is cut
            // off for longer than a rotation period, mid run.
            Scenario::RotationsLeaderIsolatedKmsDown => vec![
                at(3_000, 15_000, Fault::KmsDown(1)),
                at(5_000, 9_000, Fault::IsolateLeaderRegion),
            ],
            // Node 3 misses many entries (the log is compacted past them), comes back at 15 s and
            // is crashed again 400 ms later, mid snapshot transfer (its link is the slowest).
            Scenario::CrashDuringSnapshotInstall => {
                vec![at(2_000, 13_000, Fault::Crash(3)), at(15_400, 3_000, Fault::Crash(3))]
            }
            // Three elections under load, each after the old leader committed writes whose
            // commit the others learn only with its next heartbeat.
            // (12 s each: followers refuse votes for election_timeout_max after they last heard
            // from a leader, so an election takes up to about 8 s here.)
            Scenario::NewLeaderBoundedReads => vec![
                at(4_000, 12_000, Fault::IsolateLeader),
                at(20_000, 12_000, Fault::IsolateLeader),
                at(36_000, 12_000, Fault::IsolateLeader),
            ],
            // Retries meet expiry: leaders lost while records written a retention ago expire,
            // and a node that misses the expiry of many records catches up by snapshot.
            Scenario::RequestsExpire => vec![
                at(20_000, 10_000, Fault::IsolateLeaderRegion),
                at(70_000, 25_000, Fault::Crash(2)),
                at(110_000, 6_000, Fault::IsolateLeader),
            ],
        }
    }
}
