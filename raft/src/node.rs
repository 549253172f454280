//! [`RaftNode`]: the Raft side of a Coffer node behind one facade, so the rest of Coffer never
//! names openraft. It starts Raft over the given storage and connector, serves peers, reports
//! status and freshness, and runs leader-only work (proposals, read indexes, forwarded reads,
//! membership changes) from any node by routing it to the leader.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ChangeMembers;
use openraft::ReadPolicy;
use openraft::ServerState;
use tokio::time::Instant;

use coffer_kv::AnswerError;
use coffer_kv::Application;
use coffer_kv::Overlay;

use crate::error::PeerError;
use crate::error::ProposeError;
use crate::error::StartError;
use crate::forward_batch::ForwardBatcher;
use crate::forward_batch::ForwardStats;
use crate::forward_batch::ForwardTarget;
use crate::forward_batch::Outcome;
use crate::leader_contact::LeaderContact;
use crate::log_store::LogStore;
use crate::membership;
use crate::network::Connector;
use crate::network::NetworkFactory;
use crate::network::PeerChannels;
use crate::pb;
use crate::read_batch::ReadBatchStats;
use crate::read_batch::ReadIndexBatcher;
use crate::read_batch::ReadIndexSource;
use crate::snapshot_schedule::SnapshotSchedule;
use crate::state_machine::applied_index_in;
use crate::state_machine::Raft;
use crate::state_machine::StateMachineStore;
use crate::state_machine::StateReader;
use crate::storage::LogBackend;
use crate::storage::SmBackend;
use crate::NodeId;

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
    /// Reach these peers at these addresses instead of the ones in the membership (tunnels,
    /// sidecars, test proxies).
    pub peer_addr_override: BTreeMap<NodeId, String>,
    /// Refuse membership changes that leave fewer voters than this (unless forced).
    pub min_voters: u32,
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
            // Snapshots are triggered by this node's own schedule (see `crate::snapshot_schedule`).
            snapshot_policy: openraft::SnapshotPolicy::Never,
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

/// Whether this node belongs to the cluster it knows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Pristine: never part of a cluster (e.g. a new node waiting to be added).
    NotJoined,
    Member,
    /// The membership it has applied no longer lists it.
    Removed,
}

/// A point-in-time view of this node's Raft state.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub id: NodeId,
    pub role: Role,
    pub membership: MemberState,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub committed: u64,
    pub applied: u64,
    pub last_log: u64,
    pub snapshot: u64,
    pub purged: u64,
    pub voters: Vec<pb::NodeInfo>,
    pub learners: Vec<pb::NodeInfo>,
    /// True while a joint (two-step) membership change is in flight.
    pub joint: bool,
    /// Leader only: highest index each node is known to hold.
    pub matched: BTreeMap<NodeId, u64>,
    /// Leader only: milliseconds since each node last acknowledged the leader.
    pub acked_ms_ago: BTreeMap<NodeId, u64>,
    /// Leader only: milliseconds since a quorum last acknowledged the leader.
    pub millis_since_quorum_ack: Option<u64>,
}

impl RaftStatus {
    pub fn node(&self, id: NodeId) -> Option<&pb::NodeInfo> {
        self.voters.iter().chain(self.learners.iter()).find(|n| n.id == id)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.iter().any(|n| n.id == id)
    }

    pub fn tolerance(&self) -> pb::Tolerance {
        membership::tolerance(&self.voters, &self.learners)
    }
}

/// The outcome of one attempt at leader-only work on some node.
pub enum Routed<T> {
    Done(T),
    /// That node is not the leader; it may know who is.
    NotLeader(Option<pb::NodeInfo>),
}

type Attempt<'a, T> = Pin<Box<dyn Future<Output = Result<Routed<T>, PeerError>> + Send + 'a>>;

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
    min_voters: u32,
    log: Arc<dyn LogBackend>,
    /// Set once a leader said this node was removed; persisted under [`REMOVED_META_KEY`].
    removed: std::sync::atomic::AtomicBool,
    /// Concurrent read-index requests share one round to the leader.
    read_batch: ReadIndexBatcher,
    /// Writes forwarded to the leader at about the same time share one call.
    forward: ForwardBatcher,
}

/// Log-store metadata key holding the [`pb::RemovedNotice`] of a node removed from the cluster.
const REMOVED_META_KEY: &str = "removed";

impl RaftNode {
    pub async fn start(
        id: NodeId,
        settings: &RaftSettings,
        log: Arc<dyn LogBackend>,
        sm: Arc<dyn SmBackend>,
        app: Arc<dyn Application>,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, StartError> {
        let config = Arc::new(settings.to_openraft().map_err(StartError::Settings)?);
        let mut sm = StateMachineStore::new(sm, app)?;
        let snapshot_points = sm.schedule_snapshots(SnapshotSchedule::new(id, settings.snapshot_every_entries));
        let reader = sm.reader();
        let channels = Arc::new(PeerChannels::new(connector, settings.peer_addr_override.clone()));
        let network = NetworkFactory {
            self_id: id,
            channels: channels.clone(),
        };
        let removed = log.get_meta(REMOVED_META_KEY).map_err(StartError::Storage)?.is_some();
        let raft = Raft::new(id, config, network, LogStore::new(log.clone()), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if removed {
            // A removed node keeps its data for inspection but takes no part in Raft.
            let _ = raft.shutdown().await;
        }
        spawn_snapshot_trigger(raft.clone(), snapshot_points);
        let node = Self {
            inner: Arc::new(Inner {
                id,
                raft,
                reader,
                channels,
                contact: Arc::new(LeaderContact::default()),
                min_voters: settings.min_voters,
                log,
                removed: std::sync::atomic::AtomicBool::new(removed),
                read_batch: ReadIndexBatcher::default(),
                forward: ForwardBatcher::default(),
            }),
        };
        node.spawn_freshness_probe(Duration::from_millis(settings.heartbeat_ms.max(10)));
        Ok(node)
    }

    /// On a follower or learner, asks the leader for a read index every `every`, timed on this
    /// node's clock: the proofs behind its staleness bound (see [`LeaderContact`]). Stops when
    /// the node is dropped, shut down or removed.
    fn spawn_freshness_probe(&self, every: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let timeout = (every * 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let node = RaftNode { inner };
                match node.role_and_membership() {
                    (Role::Shutdown, _) | (_, MemberState::Removed) => return,
                    (Role::Leader, _) | (_, MemberState::NotJoined) => continue,
                    _ => {}
                }
                let sent = Instant::now();
                if let Ok(index) = node.read_index(timeout).await {
                    let applied = node.inner.reader.applied_index();
                    node.inner.contact.confirmed(index, sent, applied);
                }
            }
        });
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn reader(&self) -> &StateReader {
        &self.inner.reader
    }

    pub(crate) fn contact(&self) -> &LeaderContact {
        &self.inner.contact
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

    fn is_removed(&self) -> bool {
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
    fn notify_removed(&self, node: pb::NodeInfo) {
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

    /// Whether this node is a member, from metrics it only borrows.
    fn membership_in(&self, m: &crate::RaftMetrics) -> MemberState {
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

    /// Upper bound, in ms, on how stale this replica may be; never zero.
    ///
    /// Every bound comes from a freshness proof in [`LeaderContact`]: "every entry the cluster
    /// had committed at instant t is at or below index i", which holds for this replica once it
    /// has applied i. A follower gets its proofs from read-index probes; a leader also proves
    /// its own freshness from its commit index (see [`leader_proof`]) each time it is asked.
    pub fn staleness_bound_ms(&self) -> u64 {
        let applied = self.inner.reader.applied_index();
        let proof = {
            let rx = self.inner.raft.metrics();
            let m = rx.borrow_watched();
            let lease = self.inner.raft.config().election_timeout_min;
            (m.state == ServerState::Leader)
                .then(|| leader_proof(m.current_term, m.local_committed.as_ref(), quorum_ack_age_ms(&m), lease))
                .flatten()
        };
        staleness_with(&self.inner.contact, proof, applied)
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
        }
    }

    /// `node`'s own status report (this node's, or a peer's over peer RPC).
    pub async fn node_status(&self, node: &pb::NodeInfo, timeout: Duration) -> Result<pb::LocalStatus, String> {
        if node.id == self.id() {
            return Ok(self.local_status());
        }
        let deadline = Instant::now() + timeout;
        let mut c = self.peer(node).map_err(|e| e.message)?;
        let req = with_deadline(pb::LocalStatusRequest {}, deadline);
        unary(node, c.get_local_status(req), deadline)
            .await
            .map_err(|e| e.message)
    }

    /// Waits until some node is known as leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.inner.raft.metrics();
        let deadline = Instant::now() + timeout;
        loop {
            // borrow_and_update: the next changed() waits for a change after this look.
            let leader = rx.borrow_and_update().current_leader;
            if let Some(l) = leader {
                return Some(l);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or Raft stopped (no more changes will come).
                _ => return None,
            }
        }
    }

    fn leader_node(&self) -> Option<pb::NodeInfo> {
        let s = self.status();
        s.leader.and_then(|id| s.node(id).cloned())
    }

    /// Runs `attempt` against the leader until it is done or `timeout` passes, following
    /// redirects and waiting out elections. `attempt` gets the node to try; it runs the work
    /// locally when that node is this one.
    async fn on_leader<'a, T>(
        &'a self,
        timeout: Duration,
        what: &str,
        mut attempt: impl FnMut(pb::NodeInfo) -> Attempt<'a, T>,
    ) -> Result<T, ProposeError> {
        let deadline = Instant::now() + timeout;
        let mut hint: Option<pb::NodeInfo> = None;
        let mut backoff = Duration::from_millis(20);
        let mut last_error;
        loop {
            let target = hint.take().or_else(|| self.leader_node());
            // The leader this attempt went to (or, with no address for it, the one reported).
            let tried = target.as_ref().map(|n| n.id).or_else(|| self.status().leader);
            let outcome = match target {
                Some(node) => attempt(node).await,
                None => Err(PeerError::new(tonic::Code::Unavailable, "no leader is known")),
            };
            match outcome {
                Ok(Routed::Done(v)) => return Ok(v),
                Ok(Routed::NotLeader(h)) => {
                    last_error = "the node asked was not the leader".to_string();
                    hint = h;
                }
                Err(PeerError { code, message: msg }) => {
                    if matches!(code, tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) {
                        return Err(ProposeError::Rejected(msg));
                    }
                    last_error = msg;
                }
            }
            if Instant::now() + backoff >= deadline {
                return Err(ProposeError::Unavailable(format!(
                    "no leader answered the {what} within {} ms ({last_error})",
                    timeout.as_millis()
                )));
            }
            if hint.is_some() {
                // Follow the redirect promptly, but never spin if nodes point at each other.
                tokio::time::sleep(Duration::from_millis(5)).await;
            } else {
                // Wake early only when the leader differs from the one just tried. Metrics change
                // on every message the Raft core handles (our own attempt included), so waking on
                // any change would let two callers on a deposed leader wake each other forever
                // without time passing.
                let mut rx = self.inner.raft.metrics();
                let _ = tokio::time::timeout(backoff, async {
                    loop {
                        if rx.borrow_and_update().current_leader != tried {
                            return;
                        }
                        if rx.changed().await.is_err() {
                            // Raft stopped: nothing will change; wait out the backoff.
                            std::future::pending::<()>().await;
                        }
                    }
                })
                .await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    fn peer(
        &self,
        node: &pb::NodeInfo,
    ) -> Result<pb::raft_peer_client::RaftPeerClient<tonic::transport::Channel>, PeerError> {
        self.inner
            .channels
            .client(node.id, &node.raft_addr)
            .map_err(|e| PeerError::new(tonic::Code::Unavailable, e))
    }

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
    fn early_ack(&self, cmd: &pb::Command, timeout: Duration) -> Option<pb::CommandResult> {
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

    async fn propose_routed(&self, cmd: pb::Command, timeout: Duration) -> Result<pb::CommandResult, ProposeError> {
        let deadline = Instant::now() + timeout;
        self.on_leader(timeout, "write", |leader| {
            let cmd = cmd.clone();
            Box::pin(async move {
                use pb::propose_response::Result as R;
                let r = if leader.id == self.id() {
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

    /// How many writes this node forwarded to the leader and how many calls carried them.
    pub fn forward_stats(&self) -> ForwardStats {
        self.inner.forward.stats()
    }

    /// A read index from the leader: once this replica has applied it, a read here is
    /// linearizable. Concurrent callers on this node share one round to the leader, always one
    /// that began after they asked (see [`crate::read_batch`]).
    pub async fn read_index(&self, timeout: Duration) -> Result<u64, ProposeError> {
        if coffer_kv::bugs::active(coffer_kv::bugs::Bug::StaleLinearizable) {
            return Ok(self.inner.reader.applied_index());
        }
        self.inner.read_batch.read_index(self, timeout).await
    }

    /// How many read indexes this node was asked for and how many rounds to the leader served them.
    pub fn read_batch_stats(&self) -> ReadBatchStats {
        self.inner.read_batch.stats()
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
    async fn lease_or_read_index(&self) -> Result<Routed<u64>, tonic::Status> {
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
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), String> {
        self.inner
            .raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops Raft. Storage is flushed by its owner afterwards.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }

    /// The underlying openraft handle, for code inside this crate.
    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }
}

/// Milliseconds since a quorum last acknowledged this leader.
/// Asks openraft for a snapshot at each of this node's snapshot points. Ends when the state
/// machine is dropped (the channel closes) or Raft has stopped.
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

fn spawn_snapshot_trigger(raft: Raft, mut points: tokio::sync::mpsc::Receiver<()>) {
    tokio::spawn(async move {
        while points.recv().await.is_some() {
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::debug!(error = %e, "snapshot trigger stops: Raft has stopped");
                return;
            }
        }
    });
}

fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Learner => Role::Learner,
        ServerState::Candidate => Role::Candidate,
        ServerState::Shutdown => Role::Shutdown,
    }
}

/// What a leader knows of the cluster's commit, as a freshness proof for [`LeaderContact`]:
/// `(index, ms_ago)` means every entry the cluster had committed `ms_ago` ms ago is at or below
/// `index`.
///
/// Raft's rule: a new leader does not know what is committed until an entry of its own term is.
/// Until then its commit index may be behind what the previous leader committed (and answered
/// clients for), so it proves nothing (`None`) and the node reports what its proofs as a
/// follower say. Once one is: within the lease (a quorum acknowledged it less than `lease_ms`
/// ago, so no other leader can exist yet), its commit index holds now; past the lease, as of
/// that acknowledgement.
fn leader_proof(
    current_term: u64,
    local_committed: Option<&crate::LogId>,
    quorum_ack_age_ms: Option<u64>,
    lease_ms: u64,
) -> Option<(u64, u64)> {
    let committed = local_committed?;
    if committed.leader_id.term != current_term {
        return None;
    }
    let ago = quorum_ack_age_ms?;
    Some((committed.index, if ago < lease_ms { 0 } else { ago }))
}

/// The bound of a replica that has applied `applied`: `contact`'s, after adding the leader's
/// own proof when it has one.
fn staleness_with(contact: &LeaderContact, leader_proof: Option<(u64, u64)>, applied: u64) -> u64 {
    if let Some((index, ago_ms)) = leader_proof {
        if let Some(as_of) = Instant::now().checked_sub(Duration::from_millis(ago_ms)) {
            contact.confirmed(index, as_of, applied);
        }
    }
    contact.staleness_bound_ms(applied)
}

fn quorum_ack_age_ms(m: &crate::RaftMetrics) -> Option<u64> {
    m.last_quorum_acked
        .as_ref()
        .map(|t| openraft::Instant::elapsed(&**t).as_millis() as u64)
}

enum MembershipOp {
    AddLearner(pb::NodeInfo),
    Change(ChangeMembers<NodeId, pb::NodeInfo>),
    Demote(NodeId),
    Transfer(NodeId),
}

fn empty_reply() -> PeerError {
    PeerError::new(tonic::Code::Internal, "empty reply from a peer")
}

fn with_deadline<T>(msg: T, deadline: Instant) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(remaining(deadline));
    r
}

/// Time left until `deadline`, at most 5 s per attempt and never zero.
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(5))
        .max(Duration::from_millis(1))
}

/// One unary peer call bounded by `deadline`.
async fn unary<T>(
    node: &pb::NodeInfo,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    deadline: Instant,
) -> Result<T, PeerError> {
    match tokio::time::timeout(remaining(deadline), call).await {
        Err(_) => Err(PeerError::new(
            tonic::Code::DeadlineExceeded,
            format!("{} did not answer in time", node.name),
        )),
        Ok(Err(s)) => Err(PeerError::new(s.code(), format!("{}: {}", node.name, s.message()))),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

#[cfg(test)]
mod tests {
    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;

    fn log_id(term: u64, index: u64) -> crate::LogId {
        crate::LogId::new(LeaderId { term, node_id: 3 }, index)
    }

    #[test]
    fn a_leader_proves_its_commit_only_once_an_entry_of_its_term_is_committed() {
        // Just elected in term 3, it knows of the term-2 commit (2, 20) only.
        assert_eq!(leader_proof(3, Some(&log_id(2, 20)), Some(100), 1000), None);
        assert_eq!(leader_proof(3, None, Some(100), 1000), None);
        // Its blank entry is committed: within the lease the commit holds now; past it, as of
        // the last quorum acknowledgement; with none, nothing.
        assert_eq!(leader_proof(3, Some(&log_id(3, 23)), Some(100), 1000), Some((23, 0)));
        assert_eq!(
            leader_proof(3, Some(&log_id(3, 23)), Some(1500), 1000),
            Some((23, 1500))
        );
        assert_eq!(leader_proof(3, Some(&log_id(3, 23)), None, 1000), None);
    }

    /// Seed 297 of the simulations: n3 was last proven fresh as a follower 6.4 s ago (index 20),
    /// then won term 3 while the term-2 leader had committed and acknowledged index 21. Until its
    /// own blank entry (23) commits, it must not answer "1 ms".
    #[tokio::test(start_paused = true)]
    async fn a_new_leader_reports_its_follower_bound_until_its_term_commits() {
        let contact = LeaderContact::default();
        tokio::time::advance(Duration::from_millis(500)).await;
        contact.confirmed(20, Instant::now(), 20);
        tokio::time::advance(Duration::from_millis(6_400)).await;
        let proof = leader_proof(3, Some(&log_id(2, 20)), Some(100), 1000);
        assert_eq!(staleness_with(&contact, proof, 20), 6_400);
        // Its term's entry committed but not yet applied here: still the old proof.
        let proof = leader_proof(3, Some(&log_id(3, 23)), Some(100), 1000);
        assert_eq!(staleness_with(&contact, proof, 22), 6_400);
        // Applied: fresh now.
        assert_eq!(staleness_with(&contact, proof, 23), 1);
        // Past its lease, as of the last quorum acknowledgement (and never younger than a
        // proof it already has).
        tokio::time::advance(Duration::from_millis(3_000)).await;
        let proof = leader_proof(3, Some(&log_id(3, 23)), Some(1_500), 1000);
        assert_eq!(staleness_with(&contact, proof, 23), 1_500);
    }
}
