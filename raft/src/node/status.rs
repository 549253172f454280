//! What the node reports: role, membership, status of this node and of a peer.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use tokio::time::Instant;

use crate::error::PeerError;
use crate::pb;
use crate::NodeId;

use super::facade::*;
use super::routing::*;
use super::staleness::quorum_ack_age_ms;
use super::state::*;

impl RaftNode {
    /// Whether this node is a member, from metrics it only borrows.
    pub(super) fn membership_in(&self, m: &crate::RaftMetrics) -> MemberState {
        let mut nodes = m.membership_config.membership().nodes().peekable();
        if self.is_removed() {
            MemberState::Removed
        } else if nodes.peek().is_none() {
            MemberState::NotJoined
        } else if nodes.any(|(id, _)| *id == m.id) {
            MemberState::Member
        } else {
            MemberState::Removed
        }
    }

    /// This node's role and membership without copying the metrics (every read checks them;
    /// [`RaftNode::status`] builds the whole picture).
    pub fn role_and_membership(&self) -> (Role, MemberState) {
        let rx = self.inner.raft.metrics();
        let m = rx.borrow_watched();
        (role_of(m.state), self.membership_in(&m))
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let stored = m.membership_config.membership();
        let nodes: Vec<pb::NodeInfo> = stored.nodes().map(|(_, n)| n.clone()).collect();
        let voter_ids: Vec<NodeId> = stored.voter_ids().collect();
        let (voters, learners): (Vec<_>, Vec<_>) = nodes.into_iter().partition(|n| voter_ids.contains(&n.id));
        RaftStatus {
            id: m.id,
            role: role_of(m.state),
            membership: self.membership_in(&m),
            term: m.current_term,
            leader: m.current_leader,
            committed: m.local_committed.map(|l| l.index).unwrap_or(0),
            applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log: m.last_log_index.unwrap_or(0),
            snapshot: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged: m.purged.map(|l| l.index).unwrap_or(0),
            voters,
            learners,
            joint: stored.get_joint_config().len() > 1,
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0))).collect())
                .unwrap_or_default(),
            acked_ms_ago: m
                .heartbeat
                .as_ref()
                .map(|h| {
                    h.iter()
                        .filter_map(|(id, t)| {
                            t.as_ref()
                                .map(|t| (*id, openraft::Instant::elapsed(&**t).as_millis() as u64))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            millis_since_quorum_ack: quorum_ack_age_ms(&m),
        }
    }

    /// This node's own report for cluster status and health.
    pub fn local_status(&self) -> pb::LocalStatus {
        let s = self.status();
        let leader = s.role == Role::Leader;
        let applied = self.inner.reader.applied_index();
        let known_commit = self.inner.contact.announced_commit().max(s.committed);
        pb::LocalStatus {
            node_id: s.id,
            state: if s.membership == MemberState::Removed {
                "removed".into()
            } else {
                s.role.as_str().into()
            },
            term: s.term,
            leader_id: s.leader.unwrap_or(0),
            committed_index: s.committed,
            applied_index: applied,
            last_contact_ms: if leader {
                0
            } else {
                self.inner.contact.millis_since_contact()
            },
            staleness_upper_bound_ms: self.staleness_bound_ms(),
            lag: known_commit.saturating_sub(applied),
            shredded_through: self.inner.reader.shredding().through(),
            shred_requested: self.inner.reader.shredding().requested(),
            out_of_disk: self.inner.disk.refusal().unwrap_or_default(),
        }
    }

    /// `node`'s own status report (this node's, or a peer's over peer RPC).
    pub async fn node_status(&self, node: &pb::NodeInfo, timeout: Duration) -> Result<pb::LocalStatus, PeerError> {
        if node.id == self.id() {
            return Ok(self.local_status());
        }
        let deadline = Instant::now() + timeout;
        let mut c = self.peer(node)?;
        let req = with_deadline(pb::LocalStatusRequest {}, deadline);
        unary(node, c.get_local_status(req), deadline).await
    }
}
