//! The `coffer.v1.Cluster` service: status (with every node's own report), health, membership
//! changes, backups and a drill's faults.

use std::sync::Arc;
use std::time::Duration;

use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::authz::Action;
use crate::error::ApiError;
use crate::pb;
use crate::service::Service;

/// How long status waits for each node's own report.
const NODE_STATUS_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a membership change may take (a leader change or a slow quorum in between).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ClusterApi {
    service: Arc<Service>,
}

impl ClusterApi {
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterApi {
    async fn status(
        &self,
        req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        self.service.grant(&req, Action::ClusterAdmin, "cluster").await?;
        let raft = &self.service.raft;
        let s = raft.status();
        let cluster = self.service.cluster_here()?.unwrap_or_default();
        let members: Vec<(pb::NodeInfo, bool)> = s
            .voters
            .iter()
            .map(|n| (n.clone(), true))
            .chain(s.learners.iter().map(|n| (n.clone(), false)))
            .collect();
        // Ask every member for its own report, all at once.
        let reports =
            futures::future::join_all(members.iter().map(|(n, _)| raft.node_status(n, NODE_STATUS_TIMEOUT))).await;
        let nodes = members
            .into_iter()
            .zip(reports)
            .map(|((n, voter), report)| {
                let role = if Some(n.id) == s.leader {
                    "leader"
                } else if voter {
                    "voter"
                } else {
                    "learner"
                };
                let (local, unreachable) = match report {
                    Ok(l) => (Some(l), String::new()),
                    Err(e) => (None, e.to_string()),
                };
                pb::NodeStatus {
                    role: role.to_string(),
                    matched_index: s.matched.get(&n.id).copied().unwrap_or(0),
                    node: Some(n),
                    local,
                    unreachable,
                }
            })
            .collect();
        Ok(Response::new(pb::ClusterStatusResponse {
            cluster_id: cluster.cluster_id,
            leader_id: s.leader.unwrap_or(0),
            term: s.term,
            commit_index: s.committed,
            applied_index: raft.reader().applied_index(),
            nodes,
            served_by: Some(self.service.served_by(s.role.as_str())),
            regions: cluster.regions,
            tolerance: Some(s.tolerance()),
        }))
    }

    async fn health(&self, req: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        let grant = self.service.grant(&req, Action::Health, "node").await?;
        let status = self.service.health(None).state.as_str();
        // Anonymous callers learn live/ready only; who this node is and its Raft state (term,
        // leader, peers' view) need a valid identity, except on a node that has not joined:
        // it holds nothing, and `coffer cluster add-learner` reads its identity to add it.
        let details = status == "not_joined" || grant.authenticated();
        Ok(Response::new(pb::HealthResponse {
            status: status.to_string(),
            node: details.then(|| self.service.me.clone()),
            local: details.then(|| self.service.raft.local_status()),
        }))
    }

    type BackupStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::BackupBytes, Status>> + Send>>;

    async fn backup(&self, req: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        use tokio_stream::StreamExt as _;
        self.service.grant(&req, Action::ClusterAdmin, "cluster").await?;
        let chunks = self.service.backup().await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(chunks)
            .map(|r| r.map(|data| pb::BackupBytes { data }).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn drill_fault(
        &self,
        req: Request<pb::DrillFaultRequest>,
    ) -> Result<Response<pb::DrillFaultResponse>, Status> {
        self.service.grant(&req, Action::DrillRun, "cluster").await?;
        let regions: Vec<String> = self.service.vault.kms().region_names().map(String::from).collect();
        let (standing, lifted) = self.service.faults.apply(req.get_ref(), &regions)?;
        let role = self.service.raft.status().role;
        Ok(Response::new(pb::DrillFaultResponse {
            standing,
            served_by: Some(self.service.served_by(role.as_str())),
            lifted,
            kms_usage: Some(self.service.vault.kms().usage().to_pb()),
        }))
    }

    async fn change_membership(
        &self,
        req: Request<pb::MembershipChangeRequest>,
    ) -> Result<Response<pb::MembershipChangeResponse>, Status> {
        self.service.grant(&req, Action::ClusterAdmin, "cluster").await?;
        let r = self
            .service
            .raft
            .change_membership(req.into_inner(), MEMBERSHIP_TIMEOUT)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(r))
    }
}
