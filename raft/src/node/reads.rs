//! Read indexes (batched per node) and reads the leader answers for a follower (fetch).

use std::time::Duration;

use openraft::ReadPolicy;
use tokio::time::Instant;

use coffer_kv::AnswerError;

use crate::error::PeerError;
use crate::error::ProposeError;
use crate::pb;
use crate::read_batch::ReadIndexBatcher;
use crate::read_batch::ReadIndexSource;
use crate::state_machine::applied_index_in;

use super::facade::*;
use super::routing::*;

impl RaftNode {
    /// A read index from the leader: once this replica has applied it, a read here is
    /// linearizable. Concurrent callers on this node share one round to the leader, always one
    /// that began after they asked (see [`crate::read_batch`]).
    pub async fn read_index(&self, timeout: Duration) -> Result<u64, ProposeError> {
        if coffer_kv::bugs::active(coffer_kv::bugs::Bug::StaleLinearizable) {
            return Ok(self.inner.reader.applied_index());
        }
        self.inner.read_batch.read_index(self, timeout).await
    }

    /// Leader side of [`RaftNode::read_index`]: confirms leadership with a quorum (ReadIndex).
    pub(crate) async fn read_index_locally(&self) -> Result<Routed<u64>, tonic::Status> {
        match self.inner.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(l) => Ok(Routed::Done(l.read_log_id().index())),
            Err(e) => match e.forward_to_leader() {
                Some(f) => Ok(Routed::NotLeader(f.leader_node.clone())),
                None => Err(tonic::Status::unavailable(format!("cannot confirm leadership: {e}"))),
            },
        }
    }

    /// The leader's read index: from its lease when valid (no round trip), else confirmed by a
    /// quorum (ReadIndex).
    pub(super) async fn lease_or_read_index(&self) -> Result<Routed<u64>, tonic::Status> {
        match self.inner.raft.get_read_linearizer(ReadPolicy::LeaseRead).await {
            Ok(l) => Ok(Routed::Done(l.read_log_id().index())),
            Err(_) => self.read_index_locally().await,
        }
    }

    /// Answers `query` from the leader's records (a forwarded read). The leader first confirms
    /// its leadership (lease or ReadIndex) and applies up to that index, so the answer was
    /// current at some instant after this call began: the reply's staleness bound is the time
    /// this call took, measured here (at least 1 ms).
    pub async fn fetch_from_leader(
        &self,
        query: pb::ReadQuery,
        timeout: Duration,
    ) -> Result<pb::FetchResponse, ProposeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut r = self
            .on_leader(timeout, "forwarded read", |leader| {
                let query = query.clone();
                Box::pin(async move {
                    let r = if leader.id == self.id() {
                        self.fetch_locally(&query, deadline.saturating_duration_since(Instant::now()))
                            .await?
                    } else {
                        let mut c = self.peer(&leader)?;
                        unary(&leader, c.fetch(with_deadline(query, deadline)), deadline).await?
                    };
                    Ok(match r.result {
                        Some(pb::fetch_response::Result::NotLeader(nl)) => Routed::NotLeader(nl.leader),
                        Some(_) => Routed::Done(r),
                        None => return Err(empty_reply()),
                    })
                })
            })
            .await?;
        r.staleness_upper_bound_ms = (started.elapsed().as_millis() as u64).max(1);
        Ok(r)
    }

    /// Leader side of [`RaftNode::fetch_from_leader`]: read index, wait until applied, answer.
    pub(crate) async fn fetch_locally(
        &self,
        query: &pb::ReadQuery,
        timeout: Duration,
    ) -> Result<pb::FetchResponse, PeerError> {
        let started = Instant::now();
        let index = match self.lease_or_read_index().await.map_err(PeerError::from)? {
            Routed::Done(i) => i,
            Routed::NotLeader(leader) => {
                return Ok(pb::FetchResponse {
                    result: Some(pb::fetch_response::Result::NotLeader(pb::NotLeader {
                        leader_id: 0,
                        leader,
                    })),
                    ..Default::default()
                })
            }
        };
        if !self.inner.reader.wait_applied(index, timeout).await {
            return Err(PeerError::new(
                tonic::Code::DeadlineExceeded,
                format!("the leader did not apply its read index {index} in time"),
            ));
        }
        let view = self.inner.reader.view();
        // The index of exactly the state the answer comes from.
        let applied_index = match applied_index_in(&*view) {
            Ok(i) => i,
            Err(e) => return Err(PeerError::new(tonic::Code::Internal, format!("leader storage: {e}"))),
        };
        let result = match self.inner.reader.app().answer(&*view, query) {
            Ok(a) => pb::fetch_response::Result::Answer(a),
            Err(AnswerError::Refused(e)) => pb::fetch_response::Result::Error(e),
            Err(AnswerError::Io(e)) => pb::fetch_response::Result::Error(pb::CommandError {
                code: pb::ErrorCode::Internal as i32,
                message: format!("leader storage: {e}"),
                ..Default::default()
            }),
        };
        Ok(pb::FetchResponse {
            result: Some(result),
            applied_index,
            served_by: self.status().node(self.id()).cloned(),
            staleness_upper_bound_ms: (started.elapsed().as_millis() as u64).max(1),
        })
    }
}

impl ReadIndexSource for RaftNode {
    fn batcher(&self) -> &ReadIndexBatcher {
        &self.inner.read_batch
    }

    /// One read-index round: the leader (this node, or asked over the peer port) confirms its
    /// leadership with a quorum and returns its commit index.
    async fn read_index_round(&self, timeout: Duration) -> Result<u64, ProposeError> {
        let deadline = Instant::now() + timeout;
        self.on_leader(timeout, "read-index request", |leader| {
            Box::pin(async move {
                if leader.id == self.id() {
                    return self.read_index_locally().await.map_err(PeerError::from);
                }
                let mut c = self.peer(&leader)?;
                let req = with_deadline(pb::ReadIndexRequest {}, deadline);
                Ok(match unary(&leader, c.read_index(req), deadline).await?.result {
                    Some(pb::read_index_response::Result::Index(i)) => Routed::Done(i),
                    Some(pb::read_index_response::Result::NotLeader(nl)) => Routed::NotLeader(nl.leader),
                    None => return Err(empty_reply()),
                })
            })
        })
        .await
    }
}
