//! What a node reports about itself: its [`Role`], whether it is a member ([`MemberState`]) and
//! a point-in-time [`RaftStatus`].

use std::collections::BTreeMap;

use openraft::ServerState;

use crate::membership;
use crate::pb;
use crate::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Learner,
    Candidate,
    Shutdown,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
            Role::Candidate => "candidate",
            Role::Shutdown => "shutdown",
        }
    }
}

/// Whether this node belongs to the cluster it knows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Pristine: never part of a cluster (e.g. a new node waiting to be added).
    NotJoined,
    Member,
    /// The membership it has applied no longer lists it.
    Removed,
}

/// A point-in-time view of this node's Raft state.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub id: NodeId,
    pub role: Role,
    pub membership: MemberState,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub committed: u64,
    pub applied: u64,
    pub last_log: u64,
    pub snapshot: u64,
    pub purged: u64,
    pub voters: Vec<pb::NodeInfo>,
    pub learners: Vec<pb::NodeInfo>,
    /// True while a joint (two-step) membership change is in flight.
    pub joint: bool,
    /// Leader only: highest index each node is known to hold.
    pub matched: BTreeMap<NodeId, u64>,
    /// Leader only: milliseconds since each node last acknowledged the leader.
    pub acked_ms_ago: BTreeMap<NodeId, u64>,
    /// Leader only: milliseconds since a quorum last acknowledged the leader.
    pub millis_since_quorum_ack: Option<u64>,
}

impl RaftStatus {
    pub fn node(&self, id: NodeId) -> Option<&pb::NodeInfo> {
        self.voters.iter().chain(self.learners.iter()).find(|n| n.id == id)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.iter().any(|n| n.id == id)
    }

    pub fn tolerance(&self) -> pb::Tolerance {
        membership::tolerance(&self.voters, &self.learners)
    }
}

pub(super) fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Learner => Role::Learner,
        ServerState::Candidate => Role::Candidate,
        ServerState::Shutdown => Role::Shutdown,
    }
}
