//! Membership: forming a cluster, adding, promoting, demoting and removing nodes (checked
//! against the failure tolerance), leadership transfer, and a removed node's notice.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use tokio::time::Instant;

use crate::error::NodeError;
use crate::error::PeerError;
use crate::error::ProposeError;
use crate::membership;
use crate::pb;
use crate::NodeId;

use super::facade::*;
use super::routing::*;
use super::state::*;

impl RaftNode {
    /// Forms a new cluster with `members` as voters if this node's storage is pristine.
    /// Returns whether it initialized.
    pub async fn initialize(&self, members: Vec<pb::NodeInfo>) -> Result<bool, NodeError> {
        let raft = &self.inner.raft;
        if raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Core(e.to_string()))?
        {
            return Ok(false);
        }
        let nodes: BTreeMap<NodeId, pb::NodeInfo> = members.into_iter().map(|n| (n.id, n)).collect();
        match raft.initialize(nodes).await {
            Ok(()) => Ok(true),
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(NodeError::Core(e.to_string())),
        }
    }

    pub(super) fn is_removed(&self) -> bool {
        self.inner.removed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes a leader's word that this node was removed: persists it, then stops Raft. A notice
    /// from a term older than this node's is refused (it may come from a deposed leader).
    pub(crate) async fn accept_removal(&self, notice: pb::RemovedNotice) -> Result<(), tonic::Status> {
        let term = self.status().term;
        if notice.term < term {
            return Err(tonic::Status::failed_precondition(format!(
                "removal notice from term {} is older than this node's term {term}",
                notice.term
            )));
        }
        if self.is_removed() {
            return Ok(());
        }
        use prost::Message;
        self.inner
            .log
            .put_meta_durable(REMOVED_META_KEY, &notice.encode_to_vec())
            .map_err(|e| tonic::Status::internal(format!("cannot persist the removal: {e}")))?;
        self.inner.removed.store(true, std::sync::atomic::Ordering::Release);
        tracing::warn!(
            leader = notice.leader_id,
            term = notice.term,
            index = notice.membership_index,
            "this node was removed from the cluster; Raft stops, reads are refused"
        );
        let raft = self.inner.raft.clone();
        tokio::spawn(async move {
            let _ = raft.shutdown().await;
        });
        Ok(())
    }

    /// Tells `node` it was removed, retrying for a while; a node that is down learns nothing
    /// (it then reports its growing staleness like any node cut off from the leader).
    pub(super) fn notify_removed(&self, node: pb::NodeInfo) {
        let this = self.clone();
        tokio::spawn(async move {
            let s = this.status();
            let notice = pb::RemovedNotice {
                leader_id: this.id(),
                term: s.term,
                membership_index: s.committed,
            };
            for _ in 0..20 {
                if let Ok(mut c) = this.peer(&node) {
                    let req = with_deadline(notice, Instant::now() + Duration::from_secs(2));
                    if c.removed(req).await.is_ok() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tracing::warn!(node = node.id, "could not tell {} it was removed", node.name);
        });
    }

    /// Applies a membership change on the leader (routed there), after the safety check.
    pub async fn change_membership(
        &self,
        req: pb::MembershipChangeRequest,
        timeout: Duration,
    ) -> Result<pb::MembershipChangeResponse, ProposeError> {
        let deadline = Instant::now() + timeout;
        self.on_leader(timeout, "membership change", |leader| {
            let req = req.clone();
            Box::pin(async move {
                let r = if leader.id == self.id() {
                    self.change_membership_locally(req).await
                } else {
                    let mut c = self.peer(&leader)?;
                    unary(&leader, c.admin(with_deadline(req, deadline)), deadline).await?
                };
                match r.result {
                    Some(pb::admin_response::Result::Done(d)) => Ok(Routed::Done(d)),
                    Some(pb::admin_response::Result::NotLeader(nl)) => Ok(Routed::NotLeader(nl.leader)),
                    Some(pb::admin_response::Result::Refused(why)) => {
                        Err(PeerError::new(tonic::Code::FailedPrecondition, why))
                    }
                    None => Err(empty_reply()),
                }
            })
        })
        .await
    }

    /// Leader side of [`RaftNode::change_membership`].
    pub(crate) async fn change_membership_locally(&self, req: pb::MembershipChangeRequest) -> pb::AdminResponse {
        use pb::admin_response::Result as R;
        use pb::membership_change_request::Change;
        let refuse = |why: String| pb::AdminResponse {
            result: Some(R::Refused(why)),
        };
        let s = self.status();
        if s.role != Role::Leader {
            return pb::AdminResponse {
                result: Some(R::NotLeader(pb::NotLeader {
                    leader_id: s.leader.unwrap_or(0),
                    leader: self.leader_node(),
                })),
            };
        }
        if s.joint {
            return refuse("another membership change is still in progress; try again shortly".into());
        }
        let Some(change) = req.change else {
            return refuse("no change given".into());
        };
        let name = |id: u64| {
            s.node(id)
                .map(|n| format!("{} (id {id})", n.name))
                .unwrap_or(format!("node {id}"))
        };
        let mut voters = s.voters.clone();
        let mut learners = s.learners.clone();
        let raft = &self.inner.raft;
        let mut removed: Option<pb::NodeInfo> = None;
        // Compute the membership after the change and the Raft operation that makes it.
        let (summary, op): (String, MembershipOp) = match change {
            Change::AddLearner(node) => {
                if let Some(existing) = s.node(node.id) {
                    if existing == &node {
                        return refuse(format!("{} is already a member", name(node.id)));
                    }
                    return refuse(format!("node id {} already belongs to {}", node.id, existing.name));
                }
                if node.id == 0 || node.raft_addr.is_empty() {
                    return refuse("a learner needs a node id and a raft address".into());
                }
                learners.push(node.clone());
                (
                    format!("added {} in {} as a learner", node.name, node.region),
                    MembershipOp::AddLearner(node),
                )
            }
            Change::Promote(id) => {
                let Some(pos) = learners.iter().position(|n| n.id == id) else {
                    return refuse(format!("{} is not a learner; add it as a learner first", name(id)));
                };
                voters.push(learners.remove(pos));
                (
                    format!("promoted {} to voter", name(id)),
                    MembershipOp::Change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))),
                )
            }
            Change::Demote(id) => {
                let Some(pos) = voters.iter().position(|n| n.id == id) else {
                    return refuse(format!("{} is not a voter", name(id)));
                };
                learners.push(voters.remove(pos));
                (format!("demoted {} to learner", name(id)), MembershipOp::Demote(id))
            }
            Change::Remove(id) => {
                removed = s.node(id).cloned();
                if let Some(pos) = voters.iter().position(|n| n.id == id) {
                    voters.remove(pos);
                    (
                        format!("removed voter {}", name(id)),
                        MembershipOp::Change(ChangeMembers::RemoveVoters(BTreeSet::from([id]))),
                    )
                } else if let Some(pos) = learners.iter().position(|n| n.id == id) {
                    learners.remove(pos);
                    (
                        format!("removed learner {}", name(id)),
                        MembershipOp::Change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))),
                    )
                } else {
                    return refuse(format!("{} is not a member", name(id)));
                }
            }
            Change::TransferLeader(id) => {
                if id == self.id() {
                    return refuse(format!("{} is already the leader", name(id)));
                }
                if !s.is_voter(id) {
                    return refuse(format!("{} is not a voter; only voters can lead", name(id)));
                }
                (
                    format!("asked {} to take over leadership", name(id)),
                    MembershipOp::Transfer(id),
                )
            }
        };
        let before = s.tolerance();
        let after = membership::tolerance(&voters, &learners);
        if !req.force {
            if let Err(why) = membership::check_change(&before, &after, self.inner.min_voters) {
                return refuse(format!(
                    "refused: {why} (before: {}; after: {}); pass --force to do it anyway",
                    membership::line(&before),
                    membership::line(&after)
                ));
            }
        }
        let result = match op {
            MembershipOp::AddLearner(node) => raft
                .add_learner(node.id, node, false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            MembershipOp::Change(c) => raft
                .change_membership(c, false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            MembershipOp::Demote(id) => raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            MembershipOp::Transfer(id) => raft.trigger().transfer_leader(id).await.map_err(|e| e.to_string()),
        };
        if let (Ok(()), Some(node)) = (&result, removed) {
            self.notify_removed(node);
        }
        match result {
            Ok(()) => pb::AdminResponse {
                result: Some(R::Done(pb::MembershipChangeResponse {
                    before: Some(before),
                    after: Some(after),
                    summary,
                    leader_id: self.id(),
                })),
            },
            Err(e) => refuse(format!("raft refused the change: {e}")),
        }
    }

    /// Asks `to` to take over leadership (used by leader placement).
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), NodeError> {
        self.inner
            .raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| NodeError::Core(e.to_string()))
    }
}

pub(super) enum MembershipOp {
    AddLearner(pb::NodeInfo),
    Change(ChangeMembers<NodeId, pb::NodeInfo>),
    Demote(NodeId),
    Transfer(NodeId),
}
