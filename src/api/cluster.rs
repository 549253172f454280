//! The `coffer.v1.Cluster` service.

use std::sync::Arc;

use tonic::Request;
use tonic::Response;
use tonic::Status;

use super::Core;
use crate::authz::Action;
use crate::error::ApiError;
use crate::pb;

pub struct ClusterApi {
    core: Arc<Core>,
}

impl ClusterApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterApi {
    async fn status(
        &self,
        req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        self.core.grant(&req, Action::ClusterAdmin, "cluster")?;
        let s = self.core.raft.status();
        let cluster = {
            let view = self.core.raft.reader().view();
            coffer_raft::query::cluster_info(&*view).map_err(ApiError::from)?
        }
        .unwrap_or_default();
        let role = |n: &pb::NodeInfo, voter: bool| {
            if Some(n.id) == s.leader {
                "leader"
            } else if voter {
                "voter"
            } else {
                "learner"
            }
        };
        let nodes = s
            .voters
            .iter()
            .map(|n| (n, true))
            .chain(s.learners.iter().map(|n| (n, false)))
            .map(|(n, voter)| pb::NodeStatus {
                node: Some(n.clone()),
                role: role(n, voter).to_string(),
                matched_index: s.matched.get(&n.id).copied().unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::ClusterStatusResponse {
            cluster_id: cluster.cluster_id,
            leader_id: s.leader.unwrap_or(0),
            term: s.term,
            commit_index: s.committed,
            applied_index: self.core.raft.reader().applied_index(),
            nodes,
            served_by: Some(self.core.served_by(s.role.as_str())),
            regions: cluster.regions,
        }))
    }
}
