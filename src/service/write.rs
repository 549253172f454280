//! The one write path: a command proposed on behalf of a grant, applied by the leader at most
//! once (its request id), and waited for on this node's replica so a read here sees it.

use std::time::Duration;

use coffer_model::error::ModelError;

use super::Service;
use crate::authz::Grant;
use crate::error::ApiError;
use crate::pb;

/// How long a write waits for the receiving node's replica to apply it before replying.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(1);

/// A command the cluster applied (or, for a retried request id, had applied before).
pub struct Committed {
    pub ok: pb::CommandOk,
    /// The log index where it took effect.
    pub index: u64,
    /// The request id was applied before: `ok` is that first outcome and nothing changed now.
    pub replayed: bool,
}

impl Service {
    /// Proposes `op` on behalf of `grant` and waits for it to be applied (and, briefly, for
    /// this node's replica to apply it too, so a read here sees it).
    /// The outer error is the transport (no leader, timeout); the inner one the model's answer.
    pub async fn propose(&self, grant: &Grant, op: pb::command::Op) -> Result<Result<Committed, ModelError>, ApiError> {
        self.propose_as(&grant.principal().id, grant.request_id(), op).await
    }

    /// [`Service::propose`] on behalf of `principal` under `request_id`: a grant's own, one
    /// attempt of it (see [`crate::request_ids::attempt`]), or a job's (the rotation scheduler).
    pub async fn propose_as(
        &self,
        principal: &str,
        request_id: &str,
        op: pb::command::Op,
    ) -> Result<Result<Committed, ModelError>, ApiError> {
        let cmd = pb::Command {
            proposed_at_ms: crate::time::now_ms(),
            principal: principal.to_string(),
            request_id: request_id.to_string(),
            op: Some(op),
        };
        let result = self
            .raft
            .propose(cmd, self.write_timeout)
            .await
            .map_err(ApiError::from)?;
        self.raft
            .reader()
            .wait_applied(result.log_index, LOCAL_APPLY_WAIT)
            .await;
        if result.replayed {
            metrics::counter!("coffer_requests_replayed_total").increment(1);
        }
        Ok(match result.outcome {
            Some(pb::command_result::Outcome::Ok(ok)) => Ok(Committed {
                ok,
                index: result.log_index,
                replayed: result.replayed,
            }),
            Some(pb::command_result::Outcome::Error(e)) => Err(ModelError::from_pb(&e)),
            None => Err(ModelError::new(
                pb::ErrorCode::Internal,
                "the command produced no result",
            )),
        })
    }
}
