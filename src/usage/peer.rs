//! The node telemetry service on the peer port (members only, behind the peer guard): one
//! member asks another what it counted ([`super::book::UsageBook::report`]).

use std::sync::Arc;
use std::time::Duration;

use coffer_model::names;
use coffer_raft::node::RaftNode;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use super::book::UsageBook;
use crate::pb;
use crate::pb::node_telemetry_client::NodeTelemetryClient;
use crate::pb::node_telemetry_server::NodeTelemetry;
use crate::pb::node_telemetry_server::NodeTelemetryServer;

/// Names one request may ask about.
pub const MAX_NAMES: usize = 256;

pub struct TelemetryPeer {
    book: Arc<UsageBook>,
}

impl TelemetryPeer {
    pub fn server(book: Arc<UsageBook>) -> NodeTelemetryServer<Self> {
        NodeTelemetryServer::new(Self { book })
    }
}

#[tonic::async_trait]
impl NodeTelemetry for TelemetryPeer {
    async fn version_usage(&self, req: Request<pb::NodeUsageRequest>) -> Result<Response<pb::NodeUsage>, Status> {
        let names = req.into_inner().names;
        if names.len() > MAX_NAMES {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_NAMES} names per telemetry request, not {}",
                names.len()
            )));
        }
        if let Some(bad) = names.iter().find(|n| names::validate_name(n).is_err()) {
            let shown: String = bad.chars().take(64).collect();
            return Err(Status::invalid_argument(format!("not a secret name: {shown:?}")));
        }
        Ok(Response::new(self.book.report(&names, crate::time::now_ms())))
    }
}

/// What member `node` counted for `names`, within `timeout`.
pub async fn ask(
    raft: &RaftNode,
    node: &pb::NodeInfo,
    names: &[String],
    timeout: Duration,
) -> Result<pb::NodeUsage, String> {
    let channel = raft.peer_channel(node).map_err(|e| e.to_string())?;
    let mut client = NodeTelemetryClient::new(channel);
    let mut req = Request::new(pb::NodeUsageRequest { names: names.to_vec() });
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.version_usage(req)).await {
        Err(_) => Err("no answer in time".into()),
        Ok(Err(s)) => Err(format!("{}: {}", s.code(), s.message())),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}
