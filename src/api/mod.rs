//! Public gRPC services: [`secrets::SecretsApi`] and [`cluster::ClusterApi`], over a shared
//! [`Core`]. Each handler passes the authorization seam first ([`Core::grant`]), then works on
//! the local replica (reads) or proposes a command to the leader (writes).

pub mod cluster;
pub mod secrets;

use std::time::Duration;

use coffer_raft::node::ProposeError;
use coffer_raft::node::RaftNode;
use coffer_raft::secrets::ModelError;

use crate::authz::Access;
use crate::authz::Action;
use crate::authz::Grant;
use crate::authz::RequestInfo;
use crate::crypto::vault::Vault;
use crate::error::ApiError;
use crate::pb;

/// How long a write waits for the receiving node's replica to apply it before replying.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(1);

/// Everything a request handler needs, shared by the services of one node.
pub struct Core {
    pub raft: RaftNode,
    pub access: Access,
    pub vault: Vault,
    pub me: pb::NodeInfo,
    pub write_timeout: Duration,
}

impl Core {
    /// Passes the request through the authorization seam.
    pub fn grant<T>(&self, req: &tonic::Request<T>, action: Action, resource: &str) -> Result<Grant, ApiError> {
        let info = RequestInfo {
            source: req.remote_addr().map(|a| a.to_string()).unwrap_or_default(),
        };
        self.access.check(req.metadata(), &info, action, resource)
    }

    /// Proposes `op` on behalf of `grant` and waits for it to be applied.
    /// The outer error is the transport (no leader, timeout); the inner one the model's answer.
    pub async fn propose(
        &self,
        grant: &Grant,
        op: pb::command::Op,
    ) -> Result<Result<pb::CommandOk, ModelError>, ApiError> {
        let cmd = pb::Command {
            proposed_at_ms: crate::time::now_ms(),
            principal: grant.principal().id.clone(),
            request_id: grant.request_id().to_string(),
            op: Some(op),
        };
        let result = self.raft.propose(cmd, self.write_timeout).await.map_err(|e| match e {
            ProposeError::Unavailable(m) => ApiError::Unavailable(m),
            ProposeError::Rejected(m) => ApiError::FailedPrecondition(m),
        })?;
        // Read-your-writes on the node that took the write: wait (briefly) until its own replica
        // has applied the entry. The write is committed either way.
        self.raft
            .reader()
            .wait_applied(result.log_index, LOCAL_APPLY_WAIT)
            .await;
        Ok(match result.outcome {
            Some(pb::command_result::Outcome::Ok(ok)) => Ok(ok),
            Some(pb::command_result::Outcome::Error(e)) => Err(ModelError::from_pb(&e)),
            None => Err(ModelError::new(
                pb::ErrorCode::Internal,
                "the command produced no result",
            )),
        })
    }

    /// What a local read got: applied index, staleness bound and who served it.
    pub fn read_meta(&self) -> pb::ReadMeta {
        let status = self.raft.status();
        pb::ReadMeta {
            applied_index: self.raft.reader().applied_index(),
            staleness_upper_bound_ms: self.raft.staleness_bound_ms(),
            served_by: Some(self.served_by(status.role.as_str())),
            consistency: "local".into(),
        }
    }

    pub fn served_by(&self, role: &str) -> pb::ServedBy {
        pb::ServedBy {
            node_id: self.me.id,
            node: self.me.name.clone(),
            region: self.me.region.clone(),
            role: role.to_string(),
        }
    }

    /// Checks the requested consistency mode; this release serves `local` reads only.
    pub fn check_consistency(&self, c: &Option<pb::ReadConsistency>) -> Result<(), ApiError> {
        match c.as_ref().and_then(|c| c.mode.as_ref()) {
            None | Some(pb::read_consistency::Mode::Local(_)) => Ok(()),
            Some(_) => Err(ApiError::Unimplemented(
                "only local consistency is available in this release; use --consistency local".into(),
            )),
        }
    }
}
