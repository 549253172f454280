//! Whether this node serves: the one answer behind `Cluster.Health`, HTTP `/health/ready` and
//! `grpc.health.v1` (docs/architecture.md: Health).
//!
//! Ready means this replica answers reads with a staleness bound a caller would accept: it is
//! a bootstrapped member, it is in touch with a leader (or, as the leader, a quorum
//! acknowledged it) within the bound, and its reported staleness bound is within it. A
//! follower cut off from the leader keeps openraft's `current_leader` while elections fail, so
//! "a leader is known" alone would call it ready for as long as the partition lasts.

use coffer_raft::node::MemberState;
use coffer_raft::node::Role;

use super::Service;

/// The staleness a ready node may report at most, unless the probe or `[health]` says otherwise.
pub const DEFAULT_READY_MAX_STALENESS_MS: u64 = 5_000;
/// The range `[health] ready_max_staleness_ms` and a probe's `max_staleness_ms` may take.
pub const READY_MAX_STALENESS_RANGE: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// This node's state, from the most to the least serious; only [`NodeHealth::Serving`] is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Shutting down: in-flight requests finish, new ones should go elsewhere.
    Stopping,
    /// Removed from the membership: its data is no longer current.
    Removed,
    /// A failover drill fenced it: it refuses clients and peers until the drill ends.
    Fenced,
    /// Started without a membership; waiting to be added.
    NotJoined,
    /// A member of a cluster whose bootstrap has not reached this replica yet.
    NotBootstrapped,
    /// No leader, or none heard from (as a leader: no quorum acknowledged it) within the bound.
    NoLeader,
    /// In touch with a leader, but this replica's staleness bound is above the limit.
    Stale,
    Serving,
}

impl NodeHealth {
    /// Every state, for series that report each (`coffer_node_health{state}`).
    pub const ALL: [NodeHealth; 8] = [
        NodeHealth::Serving,
        NodeHealth::Fenced,
        NodeHealth::Stale,
        NodeHealth::NoLeader,
        NodeHealth::NotBootstrapped,
        NodeHealth::NotJoined,
        NodeHealth::Removed,
        NodeHealth::Stopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeHealth::Stopping => "stopping",
            NodeHealth::Removed => "removed",
            NodeHealth::Fenced => "fenced",
            NodeHealth::NotJoined => "not_joined",
            NodeHealth::NotBootstrapped => "not_bootstrapped",
            NodeHealth::NoLeader => "no_leader",
            NodeHealth::Stale => "stale",
            NodeHealth::Serving => "serving",
        }
    }

    pub fn ready(self) -> bool {
        self == NodeHealth::Serving
    }
}

/// What the probes report: the state and the figures it was decided from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub state: NodeHealth,
    pub role: &'static str,
    pub staleness_upper_bound_ms: u64,
    /// The limit the state was decided against.
    pub max_staleness_ms: u64,
}

/// What [`decide`] looks at, gathered from the Raft node.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub stopping: bool,
    /// A drill's fence stands on this node.
    pub fenced: bool,
    pub membership: MemberState,
    pub bootstrapped: bool,
    pub role: Role,
    pub leader_known: bool,
    /// A follower's time since the leader's last message; a leader's since a quorum
    /// acknowledged it (`None`: never).
    pub contact_ms: Option<u64>,
    pub staleness_upper_bound_ms: u64,
}

/// The state for `facts` against `max_staleness_ms`.
pub fn decide(f: &Facts, max_staleness_ms: u64) -> NodeHealth {
    if f.stopping {
        return NodeHealth::Stopping;
    }
    match f.membership {
        // A removed node's Raft has shut down: it says why.
        MemberState::Removed => return NodeHealth::Removed,
        MemberState::NotJoined => return NodeHealth::NotJoined,
        MemberState::Member => {}
    }
    if f.fenced {
        return NodeHealth::Fenced;
    }
    if f.role == Role::Shutdown {
        NodeHealth::Stopping
    } else if !f.bootstrapped {
        NodeHealth::NotBootstrapped
    } else if !f.leader_known || f.contact_ms.is_none_or(|ms| ms > max_staleness_ms) {
        NodeHealth::NoLeader
    } else if f.staleness_upper_bound_ms > max_staleness_ms {
        NodeHealth::Stale
    } else {
        NodeHealth::Serving
    }
}

impl Service {
    /// This node's health against `max_staleness_ms` (the configured limit when `None`).
    pub fn health(&self, max_staleness_ms: Option<u64>) -> HealthReport {
        let max_staleness_ms = max_staleness_ms.unwrap_or(self.ready_max_staleness_ms);
        let s = self.raft.status();
        let local = self.raft.local_status();
        let facts = Facts {
            stopping: *self.stopping.borrow(),
            fenced: self.faults.fenced().is_some(),
            membership: s.membership,
            bootstrapped: matches!(self.cluster_here(), Ok(Some(_))),
            role: s.role,
            leader_known: s.leader.is_some(),
            contact_ms: if s.role == Role::Leader && s.voters.len() <= 1 {
                Some(0) // its own quorum
            } else if s.role == Role::Leader {
                s.millis_since_quorum_ack
            } else {
                Some(local.last_contact_ms)
            },
            staleness_upper_bound_ms: local.staleness_upper_bound_ms,
        };
        HealthReport {
            state: decide(&facts, max_staleness_ms),
            role: s.role.as_str(),
            staleness_upper_bound_ms: local.staleness_upper_bound_ms,
            max_staleness_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving() -> Facts {
        Facts {
            stopping: false,
            fenced: false,
            membership: MemberState::Member,
            bootstrapped: true,
            role: Role::Follower,
            leader_known: true,
            contact_ms: Some(40),
            staleness_upper_bound_ms: 300,
        }
    }

    #[test]
    fn a_node_is_ready_only_when_in_touch_with_a_leader_and_fresh_within_the_limit() {
        let cases: Vec<(Facts, NodeHealth)> = vec![
            (serving(), NodeHealth::Serving),
            (
                Facts {
                    stopping: true,
                    ..serving()
                },
                NodeHealth::Stopping,
            ),
            (
                Facts {
                    role: Role::Shutdown,
                    ..serving()
                },
                NodeHealth::Stopping,
            ),
            (
                Facts {
                    membership: MemberState::Removed,
                    ..serving()
                },
                NodeHealth::Removed,
            ),
            // A drill's fence outranks whatever Raft still says.
            (
                Facts {
                    fenced: true,
                    ..serving()
                },
                NodeHealth::Fenced,
            ),
            (
                Facts {
                    fenced: true,
                    stopping: true,
                    ..serving()
                },
                NodeHealth::Stopping,
            ),
            (
                Facts {
                    membership: MemberState::NotJoined,
                    bootstrapped: false,
                    ..serving()
                },
                NodeHealth::NotJoined,
            ),
            (
                Facts {
                    bootstrapped: false,
                    ..serving()
                },
                NodeHealth::NotBootstrapped,
            ),
            (
                Facts {
                    leader_known: false,
                    ..serving()
                },
                NodeHealth::NoLeader,
            ),
            // Cut off: openraft still names the old leader, but nothing was heard for too long.
            (
                Facts {
                    contact_ms: Some(5_001),
                    ..serving()
                },
                NodeHealth::NoLeader,
            ),
            // A leader no quorum ever acknowledged.
            (
                Facts {
                    role: Role::Leader,
                    contact_ms: None,
                    ..serving()
                },
                NodeHealth::NoLeader,
            ),
            (
                Facts {
                    staleness_upper_bound_ms: 5_001,
                    ..serving()
                },
                NodeHealth::Stale,
            ),
            (
                Facts {
                    staleness_upper_bound_ms: 5_000,
                    contact_ms: Some(5_000),
                    ..serving()
                },
                NodeHealth::Serving,
            ),
        ];
        for (facts, want) in cases {
            assert_eq!(decide(&facts, 5_000), want, "{facts:?}");
            assert_eq!(decide(&facts, 5_000).ready(), want == NodeHealth::Serving);
        }
    }
}
