//! [`RaftNode`]: the Raft side of a Coffer node behind one facade, so the rest of Coffer never
//! names openraft. It starts Raft over the given storage and connector, serves peers, reports
//! status, and proposes commands from any node (forwarding to the leader).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use tokio::time::Instant;

use crate::leader_contact::LeaderContact;
use crate::log_store::LogStore;
use crate::network::Connector;
use crate::network::NetworkFactory;
use crate::network::PeerChannels;
use crate::pb;
use crate::pb::raft_peer_server::RaftPeerServer;
use crate::peer_service::propose_locally;
use crate::peer_service::PeerService;
use crate::state_machine::StateMachineStore;
use crate::state_machine::StateReader;
use crate::storage::LogBackend;
use crate::storage::SmBackend;
use crate::NodeId;
use crate::Raft;

/// Raft timing and log-compaction settings.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub cluster_name: String,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub keep_logs_after_snapshot: u64,
    pub snapshot_chunk_bytes: u64,
}

impl RaftSettings {
    fn to_openraft(&self) -> Result<openraft::Config, String> {
        let cfg = openraft::Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: 60_000,
            max_payload_entries: 256,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries.max(1)),
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes.max(1),
            enable_pre_vote: Some(true),
            ..Default::default()
        };
        cfg.validate().map_err(|e| e.to_string())
    }
}

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

/// A point-in-time view of this node's Raft state.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub committed: u64,
    pub applied: u64,
    pub last_log: u64,
    pub snapshot: u64,
    pub purged: u64,
    pub voters: Vec<pb::NodeInfo>,
    pub learners: Vec<pb::NodeInfo>,
    /// Leader only: highest index each node is known to hold.
    pub matched: BTreeMap<NodeId, u64>,
}

impl RaftStatus {
    pub fn node(&self, id: NodeId) -> Option<&pb::NodeInfo> {
        self.voters.iter().chain(self.learners.iter()).find(|n| n.id == id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader accepted the command in time. It may still commit (retries are idempotent by
    /// request id).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Rejected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft settings: {0}")]
    Settings(String),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    reader: StateReader,
    channels: Arc<PeerChannels>,
    contact: Arc<LeaderContact>,
}

impl RaftNode {
    pub async fn start(
        id: NodeId,
        settings: &RaftSettings,
        log: Arc<dyn LogBackend>,
        sm: Arc<dyn SmBackend>,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, StartError> {
        let config = Arc::new(settings.to_openraft().map_err(StartError::Settings)?);
        let sm = StateMachineStore::new(sm)?;
        let reader = sm.reader();
        let channels = Arc::new(PeerChannels::new(connector));
        let network = NetworkFactory {
            self_id: id,
            channels: channels.clone(),
        };
        let raft = Raft::new(id, config, network, LogStore::new(log), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                id,
                raft,
                reader,
                channels,
                contact: Arc::new(LeaderContact::default()),
            }),
        })
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The peer gRPC service to serve on this node's raft address.
    pub fn peer_server(&self) -> RaftPeerServer<PeerService> {
        PeerService::new(self.inner.raft.clone(), self.inner.contact.clone()).into_server()
    }

    pub fn reader(&self) -> &StateReader {
        &self.inner.reader
    }

    /// Forms a new cluster with `members` as voters if this node's storage is pristine.
    /// Returns whether it initialized.
    pub async fn initialize(&self, members: Vec<pb::NodeInfo>) -> Result<bool, String> {
        let raft = &self.inner.raft;
        if raft.is_initialized().await.map_err(|e| e.to_string())? {
            return Ok(false);
        }
        let nodes: BTreeMap<NodeId, pb::NodeInfo> = members.into_iter().map(|n| (n.id, n)).collect();
        match raft.initialize(nodes).await {
            Ok(()) => Ok(true),
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let nodes: Vec<pb::NodeInfo> = membership.nodes().map(|(_, n)| n.clone()).collect();
        let voter_ids: Vec<NodeId> = membership.voter_ids().collect();
        let (voters, learners) = nodes.into_iter().partition(|n| voter_ids.contains(&n.id));
        RaftStatus {
            id: m.id,
            role: match m.state {
                ServerState::Leader => Role::Leader,
                ServerState::Follower => Role::Follower,
                ServerState::Learner => Role::Learner,
                ServerState::Candidate => Role::Candidate,
                ServerState::Shutdown => Role::Shutdown,
            },
            term: m.current_term,
            leader: m.current_leader,
            committed: m.local_committed.map(|l| l.index).unwrap_or(0),
            applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log: m.last_log_index.unwrap_or(0),
            snapshot: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged: m.purged.map(|l| l.index).unwrap_or(0),
            voters,
            learners,
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0))).collect())
                .unwrap_or_default(),
        }
    }

    /// Upper bound, in milliseconds, on how stale this replica may be: 0 on the leader, else
    /// the time since the leader last reached this node (growing while cut off).
    pub fn staleness_bound_ms(&self) -> u64 {
        if self.inner.raft.is_leader() {
            return 0;
        }
        self.inner.contact.millis_since_contact()
    }

    /// Waits until some node is known as leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.inner.raft.metrics();
        let deadline = Instant::now() + timeout;
        loop {
            let leader = rx.borrow_watched().current_leader;
            if let Some(l) = leader {
                return Some(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return None;
            }
        }
    }

    /// Proposes `cmd` through the leader (this node or another), waiting up to `timeout`.
    ///
    /// Retries after leader changes and transport errors. This is safe because commands carry a
    /// request id and the state machine answers a replayed request instead of re-applying it.
    pub async fn propose(&self, cmd: pb::Command, timeout: Duration) -> Result<pb::CommandResult, ProposeError> {
        use pb::propose_response::Result as R;
        let deadline = Instant::now() + timeout;
        let mut hint: Option<pb::NodeInfo> = None;
        let mut backoff = Duration::from_millis(20);
        let mut last_error: String;
        loop {
            let target = match hint.take() {
                Some(n) => Some(n),
                None => {
                    let status = self.status();
                    status.leader.and_then(|id| status.node(id).cloned())
                }
            };
            let outcome = match target {
                Some(node) if node.id == self.inner.id => propose_locally(&self.inner.raft, cmd.clone())
                    .await
                    .map_err(|s| (s.code(), s.message().to_string())),
                Some(node) => self.forward(&node, cmd.clone(), deadline).await,
                None => Err((tonic::Code::Unavailable, "no leader is known".to_string())),
            };
            match outcome {
                Ok(R::Applied(r)) => return Ok(r),
                Ok(R::NotLeader(nl)) => {
                    last_error = "the node asked was not the leader".into();
                    hint = nl.leader.filter(|_| nl.leader_id != 0);
                }
                Err((code, msg)) => {
                    if matches!(code, tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) {
                        return Err(ProposeError::Rejected(msg));
                    }
                    last_error = msg;
                }
            }
            if Instant::now() + backoff >= deadline {
                return Err(ProposeError::Unavailable(format!(
                    "no leader accepted the write within {} ms ({last_error}); it may still be applied, \
                     and retrying the same request is safe",
                    timeout.as_millis()
                )));
            }
            if hint.is_some() {
                // Follow the redirect promptly, but never spin if nodes point at each other.
                tokio::time::sleep(Duration::from_millis(5)).await;
            } else {
                // Wake early when the leader changes.
                let mut rx = self.inner.raft.metrics();
                let _ = tokio::time::timeout(backoff, rx.changed()).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    async fn forward(
        &self,
        node: &pb::NodeInfo,
        cmd: pb::Command,
        deadline: Instant,
    ) -> Result<pb::propose_response::Result, (tonic::Code, String)> {
        let mut client = self
            .inner
            .channels
            .client(node.id, &node.raft_addr)
            .map_err(|e| (tonic::Code::Unavailable, e))?;
        let ttl = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(5))
            .max(Duration::from_millis(1));
        let mut req = tonic::Request::new(pb::ProposeRequest { command: Some(cmd) });
        req.set_timeout(ttl);
        match tokio::time::timeout(ttl, client.propose(req)).await {
            Err(_) => Err((
                tonic::Code::DeadlineExceeded,
                format!("leader {} did not answer in time", node.name),
            )),
            Ok(Err(s)) => Err((s.code(), format!("leader {}: {}", node.name, s.message()))),
            Ok(Ok(r)) => r
                .into_inner()
                .result
                .ok_or_else(|| (tonic::Code::Internal, "empty propose reply".to_string())),
        }
    }

    /// Stops Raft. Storage is flushed by its owner afterwards.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }

    /// The underlying openraft handle, for tests and membership tooling inside this crate.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }
}
