//! The write path of the node: a command proposed on the leader (here, or forwarded in a batch).

use std::time::Duration;

use tokio::time::Instant;

use coffer_kv::Overlay;

use crate::error::PeerError;
use crate::error::ProposeError;
use crate::forward_batch::ForwardBatcher;
use crate::forward_batch::ForwardTarget;
use crate::forward_batch::Outcome;
use crate::pb;

use super::facade::*;
use super::routing::*;

impl RaftNode {
    /// Proposes `cmd` through the leader, waiting up to `timeout`.
    ///
    /// Retries after leader changes and transport errors. This is safe because commands carry a
    /// request id and the state machine answers a replayed request instead of re-applying it.
    pub async fn propose(&self, cmd: pb::Command, timeout: Duration) -> Result<pb::CommandResult, ProposeError> {
        use pb::command::Op;
        let client_write = matches!(
            cmd.op,
            Some(Op::AddVersion(_) | Op::MoveAlias(_) | Op::SetVersionState(_) | Op::DestroyVersion(_))
        );
        if client_write && coffer_kv::bugs::active(coffer_kv::bugs::Bug::EarlyAck) {
            if let Some(r) = self.early_ack(&cmd, timeout) {
                return Ok(r);
            }
        }
        self.propose_routed(cmd, timeout).await
    }

    /// Injected bug: predicts the result on this replica, commits in the background.
    pub(super) fn early_ack(&self, cmd: &pb::Command, timeout: Duration) -> Option<pb::CommandResult> {
        let predicted = {
            let view = self.inner.reader.view();
            let mut ov = Overlay::new(&*view);
            self.inner
                .reader
                .app()
                .apply(&mut ov, cmd, self.inner.reader.applied_index() + 1)
                .ok()
        };
        let this = self.clone();
        let cmd = cmd.clone();
        tokio::spawn(async move {
            let _ = this.propose_routed(cmd, timeout).await;
        });
        predicted
    }

    pub(super) async fn propose_routed(
        &self,
        cmd: pb::Command,
        timeout: Duration,
    ) -> Result<pb::CommandResult, ProposeError> {
        let deadline = Instant::now() + timeout;
        self.on_leader(timeout, "write", |leader| {
            let cmd = cmd.clone();
            Box::pin(async move {
                use pb::propose_response::Result as R;
                let r = if leader.id == self.id() {
                    if let Some(why) = self.disk().refusal() {
                        return Err(PeerError::new(tonic::Code::ResourceExhausted, why));
                    }
                    crate::local_propose::propose_locally(&self.inner.raft, cmd)
                        .await
                        .map_err(PeerError::from)?
                } else {
                    self.inner.forward.forward(self, leader.clone(), cmd, deadline).await?
                };
                Ok(match r {
                    R::Applied(a) => Routed::Done(a),
                    R::NotLeader(nl) => Routed::NotLeader(nl.leader),
                })
            })
        })
        .await
        .map_err(|e| match e {
            ProposeError::Unavailable(m) => ProposeError::Unavailable(format!(
                "{m}; the write may still be applied, and retrying the same request is safe"
            )),
            other => other,
        })
    }
}

impl ForwardTarget for RaftNode {
    fn forwarder(&self) -> &ForwardBatcher {
        &self.inner.forward
    }

    /// Sends a batch of forwarded writes to `leader` in one `ProposeBatch` call and returns one
    /// outcome per command, in order (see [`crate::forward_batch`]).
    async fn propose_batch_remote(
        &self,
        leader: &pb::NodeInfo,
        commands: Vec<pb::Command>,
        deadline: Instant,
    ) -> Result<Vec<Outcome>, PeerError> {
        let n = commands.len();
        let mut c = self.peer(leader)?;
        let req = with_deadline(pb::ProposeBatchRequest { commands }, deadline);
        let reply = unary(leader, c.propose_batch(req), deadline).await?;
        Ok(crate::forward_batch::outcomes_from_reply(leader, n, reply))
    }

    /// Forwards one write to `leader` in a unary `Propose` call (a leader without
    /// `ProposeBatch`).
    async fn propose_remote(&self, leader: &pb::NodeInfo, command: pb::Command, deadline: Instant) -> Outcome {
        let mut c = self.peer(leader)?;
        let req = with_deadline(pb::ProposeRequest { command: Some(command) }, deadline);
        unary(leader, c.propose(req), deadline)
            .await?
            .result
            .ok_or_else(empty_reply)
    }
}
