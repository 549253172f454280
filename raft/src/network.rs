//! Client side of peer RPC: openraft's network over tonic.
//!
//! - One cached channel per peer ([`PeerChannels`]), shared by replication, elections,
//!   snapshot transfer and write forwarding.
//! - Every call has a deadline (`RPCOption::hard_ttl`), enforced both as the gRPC timeout and
//!   locally, because a partitioned peer may never answer.
//! - Channels come from a [`Connector`], so tests and simulations can plug in their own
//!   transport (e.g. turmoil sockets or injected delay) without branches in this code.

// openraft's RPCError is large by design; these functions return it as openraft asks.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use openraft::error::NetworkError;
use openraft::error::RPCError;
use openraft::error::ReplicationClosed;
use openraft::error::StreamingError;
use openraft::error::Timeout;
use openraft::error::Unreachable;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use openraft::RPCTypes;
use openraft::RaftNetworkFactory;
use openraft::RaftNetworkV2;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::codec;
use crate::error::AddressError;
use crate::fence::Fence;
use crate::pb;
use crate::pb::raft_peer_client::RaftPeerClient;
use crate::peer_auth::PeerCredential;
use crate::state_machine::Snapshot;
use crate::state_machine::SnapshotData;
use crate::NodeId;
use crate::TypeConfig;

/// Largest gRPC message a peer sends or accepts (a batch of entries or a snapshot chunk).
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Smallest deadline for an append that carries entries (see `append_entries`).
pub const MIN_APPEND_TTL: Duration = Duration::from_secs(2);
/// Snapshot chunk size when openraft does not set one.
pub const DEFAULT_SNAPSHOT_CHUNK: usize = 1024 * 1024;

/// Makes channels to peer addresses, and says how this node proves its membership on them.
/// Production uses [`TcpConnector`] (plaintext, loopback) or mutual TLS.
pub trait Connector: Send + Sync + 'static {
    /// A channel to `addr` (`host:port`) that connects lazily on first use.
    fn channel(&self, addr: &str) -> Result<Channel, AddressError>;

    /// What every request on these channels carries to prove membership: a proof under the
    /// cluster key on plaintext, nothing where the transport authenticates (mutual TLS).
    fn credential(&self) -> PeerCredential;
}

/// Plain TCP (HTTP/2 without TLS) with a connect timeout and keepalives; requests carry this
/// node's proof under the cluster key.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    pub connect_timeout: Duration,
    pub credential: PeerCredential,
}

impl TcpConnector {
    pub fn new(credential: PeerCredential) -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            credential,
        }
    }
}

impl Connector for TcpConnector {
    fn channel(&self, addr: &str) -> Result<Channel, AddressError> {
        Ok(peer_endpoint("http", addr, self.connect_timeout)?.connect_lazy())
    }

    fn credential(&self) -> PeerCredential {
        self.credential.clone()
    }
}

/// A channel to a peer whose every request carries the node's [`PeerCredential`].
pub type PeerChannel = InterceptedService<Channel, PeerCredential>;
/// A Raft peer client over a [`PeerChannel`].
pub type PeerRpcClient = RaftPeerClient<PeerChannel>;

/// The endpoint settings every peer channel shares (connect timeout, no Nagle, HTTP/2
/// keepalives), for `scheme://addr`; connectors add their transport (e.g. TLS) on top.
pub fn peer_endpoint(scheme: &str, addr: &str, connect_timeout: Duration) -> Result<Endpoint, AddressError> {
    Ok(Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| AddressError {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

/// One cached channel per peer, replaced when the peer's address changes. While a drill's
/// [`Fence`] stands no channel is handed out: every outbound peer call fails at once.
pub struct PeerChannels {
    connector: Arc<dyn Connector>,
    overrides: BTreeMap<NodeId, String>,
    cache: Mutex<BTreeMap<NodeId, (String, Channel)>>,
    fence: Arc<Fence>,
}

impl PeerChannels {
    /// `overrides` reach some peers at another address than the membership's.
    pub fn new(connector: Arc<dyn Connector>, overrides: BTreeMap<NodeId, String>, fence: Arc<Fence>) -> Self {
        Self {
            connector,
            overrides,
            cache: Mutex::new(BTreeMap::new()),
            fence,
        }
    }

    pub fn client(&self, id: NodeId, addr: &str) -> Result<PeerRpcClient, AddressError> {
        Ok(RaftPeerClient::new(self.channel(id, addr)?)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
    }

    /// The channel to peer `id` with this node's credential on every request, for any service
    /// on the peer port.
    pub fn channel(&self, id: NodeId, addr: &str) -> Result<PeerChannel, AddressError> {
        if let Some(why) = self.fence.refusal_to(id) {
            return Err(AddressError {
                addr: addr.to_string(),
                reason: why,
            });
        }
        let addr = self.overrides.get(&id).map(String::as_str).unwrap_or(addr);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let channel = match cache.get(&id) {
            Some((a, ch)) if a == addr => ch.clone(),
            _ => {
                let ch = self.connector.channel(addr)?;
                cache.insert(id, (addr.to_string(), ch.clone()));
                ch
            }
        };
        Ok(InterceptedService::new(channel, self.connector.credential()))
    }
}

/// openraft's network factory: hands out per-target clients over the shared channels.
#[derive(Clone)]
pub struct NetworkFactory {
    pub self_id: NodeId,
    pub channels: Arc<PeerChannels>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &pb::NodeInfo) -> Self::Network {
        PeerClient {
            self_id: self.self_id,
            target,
            addr: node.raft_addr.clone(),
            channels: self.channels.clone(),
        }
    }
}

pub struct PeerClient {
    self_id: NodeId,
    target: NodeId,
    addr: String,
    channels: Arc<PeerChannels>,
}

type RpcResult<T> = Result<T, RPCError<TypeConfig>>;

impl PeerClient {
    fn client(&self) -> RpcResult<PeerRpcClient> {
        self.channels
            .client(self.target, &self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    fn timeout(&self, action: RPCTypes, ttl: Duration) -> Timeout<TypeConfig> {
        Timeout {
            action,
            id: self.self_id,
            target: self.target,
            timeout: ttl,
        }
    }

    /// Runs one unary call with the deadline applied on the wire and locally.
    async fn call<T, F, Fut>(&self, action: RPCTypes, ttl: Duration, f: F) -> RpcResult<T>
    where
        F: FnOnce(PeerRpcClient, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client()?;
        match tokio::time::timeout(ttl, f(client, ttl)).await {
            Err(_) => Err(RPCError::Timeout(self.timeout(action, ttl))),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(status_to_rpc_error(status, || self.timeout(action, ttl))),
        }
    }
}

impl PeerClient {
    /// A vote or pre-vote round trip.
    async fn send_vote(
        &self,
        rpc: &VoteRequest<TypeConfig>,
        option: RPCOption,
        pre_vote: bool,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        let req = vote_request_to_pb(rpc, pre_vote);
        let ttl = option.hard_ttl();
        let resp = self
            .call(RPCTypes::Vote, ttl, |mut c, ttl| async move {
                c.vote(with_deadline(req, ttl)).await
            })
            .await?;
        vote_response_from_pb(resp)
    }
}

fn with_deadline<T>(msg: T, ttl: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(ttl);
    r
}

fn status_to_rpc_error(status: tonic::Status, timeout: impl FnOnce() -> Timeout<TypeConfig>) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(timeout()),
        // A peer out of disk refuses entries until space is back: back off as from one that is
        // down (`crate::disk_space`).
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
            RPCError::Unreachable(Unreachable::from_string(status.message()))
        }
        _ => RPCError::Network(NetworkError::from_string(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
    }
}

fn bad_reply(msg: &str) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!("malformed peer reply: {msg}")))
}

fn vote_request_to_pb(rpc: &VoteRequest<TypeConfig>, pre_vote: bool) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(codec::vote_to_pb(&rpc.vote)),
        last_log_id: codec::opt_log_id_to_pb(rpc.last_log_id.as_ref()),
        leadership_transfer: rpc.leadership_transfer,
        pre_vote,
    }
}

fn vote_response_from_pb(r: pb::VoteResponse) -> RpcResult<VoteResponse<TypeConfig>> {
    let vote = codec::vote_from_opt_pb(r.vote.as_ref()).map_err(|e| bad_reply(&e.to_string()))?;
    Ok(VoteResponse::new(
        vote,
        codec::opt_log_id_from_pb(r.last_log_id.as_ref()),
        r.vote_granted,
    ))
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<TypeConfig>> {
        let req = pb::AppendEntriesRequest {
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            prev_log_id: codec::opt_log_id_to_pb(rpc.prev_log_id.as_ref()),
            entries: rpc.entries.iter().map(codec::entry_to_pb).collect(),
            leader_commit: codec::opt_log_id_to_pb(rpc.leader_commit.as_ref()),
        };
        // openraft gives appends the heartbeat period as deadline. Heartbeats keep it (openraft
        // times them out itself); appends that carry entries also pay the follower's fsync and
        // the transfer, so they get at least MIN_APPEND_TTL before counting as lost.
        let ttl = match req.entries.is_empty() {
            true => option.hard_ttl(),
            false => option.hard_ttl().max(MIN_APPEND_TTL),
        };
        let resp = self
            .call(RPCTypes::AppendEntries, ttl, |mut c, ttl| async move {
                c.append_entries(with_deadline(req, ttl)).await
            })
            .await?;
        use pb::append_entries_response::Result as R;
        Ok(match resp.result {
            Some(R::Success(_)) => AppendEntriesResponse::Success,
            Some(R::PartialSuccess(p)) => {
                AppendEntriesResponse::PartialSuccess(codec::opt_log_id_from_pb(p.last_log_id.as_ref()))
            }
            Some(R::Conflict(_)) => AppendEntriesResponse::Conflict,
            Some(R::HigherVote(v)) => AppendEntriesResponse::HigherVote(codec::vote_from_pb(&v)),
            None => return Err(bad_reply("append-entries reply without a result")),
        })
    }

    async fn vote(&mut self, rpc: VoteRequest<TypeConfig>, option: RPCOption) -> RpcResult<VoteResponse<TypeConfig>> {
        self.send_vote(&rpc, option, false).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        self.send_vote(&rpc, option, true).await
    }

    async fn full_snapshot(
        &mut self,
        vote: crate::Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let bytes = snapshot
            .snapshot
            .into_bytes()
            .map_err(|e| StreamingError::Network(NetworkError::from_string(e.to_string())))?;
        let chunk = option.snapshot_chunk_size().unwrap_or(DEFAULT_SNAPSHOT_CHUNK).max(1);
        let header = pb::SnapshotChunk {
            part: Some(pb::snapshot_chunk::Part::Header(pb::SnapshotHeader {
                vote: Some(codec::vote_to_pb(&vote)),
                meta: Some(codec::snapshot_meta_to_pb(&snapshot.meta)),
                total_bytes: bytes.len() as u64,
            })),
        };
        let chunks: Vec<pb::SnapshotChunk> = std::iter::once(header)
            .chain(bytes.chunks(chunk).map(|c| pb::SnapshotChunk {
                part: Some(pb::snapshot_chunk::Part::Data(c.to_vec())),
            }))
            .collect();
        let ttl = option.hard_ttl();
        let mut client = self.client().map_err(|e| match e {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        })?;
        let send = client.install_snapshot(with_deadline(futures::stream::iter(chunks), ttl));
        let result = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, send) => r,
        };
        let resp = match result {
            Err(_) => return Err(StreamingError::Timeout(self.timeout(RPCTypes::InstallSnapshot, ttl))),
            Ok(Err(status)) => {
                return Err(
                    match status_to_rpc_error(status, || self.timeout(RPCTypes::InstallSnapshot, ttl)) {
                        RPCError::Timeout(t) => StreamingError::Timeout(t),
                        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                        RPCError::Network(n) => StreamingError::Network(n),
                        RPCError::RemoteError(r) => StreamingError::Network(NetworkError::from_string(r.to_string())),
                    },
                )
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let vote = codec::vote_from_opt_pb(resp.vote.as_ref())
            .map_err(|e| StreamingError::Network(NetworkError::from_string(e.to_string())))?;
        Ok(SnapshotResponse::new(vote))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<TransferLeaderResponse<TypeConfig>> {
        let msg = pb::TransferLeaderRequest {
            from_leader: Some(codec::vote_to_pb(req.from_leader())),
            to_node_id: *req.to_node_id(),
            last_log_id: codec::opt_log_id_to_pb(req.last_log_id()),
        };
        let ttl = option.hard_ttl();
        let resp = self
            .call(RPCTypes::TransferLeader, ttl, |mut c, ttl| async move {
                c.transfer_leader(with_deadline(msg, ttl)).await
            })
            .await?;
        if resp.error.is_empty() {
            Ok(Ok(()))
        } else {
            // The remote refused (its vote or log moved on); openraft retries on its own terms.
            Err(RPCError::Network(NetworkError::from_string(format!(
                "transfer-leader refused: {}",
                resp.error
            ))))
        }
    }
}
