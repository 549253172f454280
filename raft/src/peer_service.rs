//! Server side of peer RPC: decodes peer messages and hands them to the local Raft node.
//!
//! Input from a peer is untrusted bytes: every decode failure becomes `INVALID_ARGUMENT`,
//! never a panic. Served on the raft address only, apart from the public API.

use futures::StreamExt;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::VoteRequest;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

use crate::codec;
use crate::local_propose::propose_batch_locally;
use crate::local_propose::propose_locally;
use crate::local_propose::raft_down;
use crate::node::RaftNode;
use crate::node::Routed;
use crate::pb;
use crate::pb::raft_peer_server::RaftPeer;
use crate::pb::raft_peer_server::RaftPeerServer;
use crate::state_machine::Raft;
use crate::state_machine::Snapshot;
use crate::state_machine::SnapshotData;

/// Snapshots larger than this are refused (the state is held in memory while installing).
pub const MAX_SNAPSHOT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

pub struct PeerService {
    node: RaftNode,
}

impl PeerService {
    pub fn new(node: RaftNode) -> Self {
        Self { node }
    }

    fn raft(&self) -> &Raft {
        self.node.raft()
    }

    /// `RESOURCE_EXHAUSTED` while this node is out of disk (see `crate::disk_space`).
    fn refuse_if_out_of_disk(&self) -> Result<(), Status> {
        match self.node.disk().refusal() {
            Some(why) => Err(Status::resource_exhausted(why)),
            None => Ok(()),
        }
    }

    /// Like [`Self::refuse_if_out_of_disk`], for proposals: only while this node leads (a
    /// follower answers `NotLeader` as usual, so the sender finds a leader that has space).
    fn refuse_proposals_if_out_of_disk(&self) -> Result<(), Status> {
        let leads = self.raft().metrics().borrow_watched().current_leader == Some(self.node.id());
        if leads {
            self.refuse_if_out_of_disk()?;
        }
        Ok(())
    }

    pub fn into_server(self) -> RaftPeerServer<Self> {
        RaftPeerServer::new(self)
            .max_decoding_message_size(crate::network::MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(crate::network::MAX_PEER_MESSAGE_BYTES)
    }
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("malformed peer message: {e}"))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let r = request.into_inner();
        if !r.entries.is_empty() {
            self.refuse_if_out_of_disk()?;
        }
        let entries = r
            .entries
            .into_iter()
            .map(codec::entry_from_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let leader_commit = r.leader_commit.as_ref().map(|l| l.index).unwrap_or(0);
        let req = AppendEntriesRequest {
            vote: codec::vote_from_opt_pb(r.vote.as_ref()).map_err(bad)?,
            prev_log_id: codec::opt_log_id_from_pb(r.prev_log_id.as_ref()),
            entries,
            leader_commit: codec::opt_log_id_from_pb(r.leader_commit.as_ref()),
        };
        let resp = self.raft().append_entries(req).await.map_err(raft_down)?;
        use pb::append_entries_response::Result as R;
        if matches!(
            resp,
            AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)
        ) {
            self.node
                .contact()
                .record(leader_commit, self.node.reader().applied_index());
        }
        let result = match resp {
            AppendEntriesResponse::Success => R::Success(pb::Blank {}),
            AppendEntriesResponse::PartialSuccess(l) => R::PartialSuccess(pb::PartialSuccess {
                last_log_id: codec::opt_log_id_to_pb(l.as_ref()),
            }),
            AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
            AppendEntriesResponse::HigherVote(v) => R::HigherVote(codec::vote_to_pb(&v)),
        };
        Ok(Response::new(pb::AppendEntriesResponse { result: Some(result) }))
    }

    async fn vote(&self, request: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        let r = request.into_inner();
        let mut req = VoteRequest::new(
            codec::vote_from_opt_pb(r.vote.as_ref()).map_err(bad)?,
            codec::opt_log_id_from_pb(r.last_log_id.as_ref()),
        );
        req.leadership_transfer = r.leadership_transfer;
        let resp = if r.pre_vote {
            self.raft().pre_vote(req).await
        } else {
            self.raft().vote(req).await
        }
        .map_err(raft_down)?;
        Ok(Response::new(pb::VoteResponse {
            vote: Some(codec::vote_to_pb(&resp.vote)),
            vote_granted: resp.vote_granted,
            last_log_id: codec::opt_log_id_to_pb(resp.last_log_id.as_ref()),
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        self.refuse_if_out_of_disk()?;
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(pb::SnapshotChunk {
                part: Some(pb::snapshot_chunk::Part::Header(h)),
            })) => h,
            Some(Err(s)) => return Err(s),
            _ => return Err(bad("snapshot stream must start with a header")),
        };
        if header.total_bytes > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "snapshot of {} bytes exceeds the {} byte limit",
                header.total_bytes, MAX_SNAPSHOT_BYTES
            )));
        }
        let vote = codec::vote_from_opt_pb(header.vote.as_ref()).map_err(bad)?;
        let meta = codec::snapshot_meta_from_pb(&header.meta.unwrap_or_default()).map_err(bad)?;
        // Grow as chunks arrive: a header alone must not make us allocate gigabytes.
        let mut data = Vec::with_capacity(header.total_bytes.min(64 * 1024 * 1024) as usize);
        while let Some(chunk) = stream.next().await {
            match chunk?.part {
                Some(pb::snapshot_chunk::Part::Data(d)) => {
                    if data.len() as u64 + d.len() as u64 > header.total_bytes {
                        return Err(bad("snapshot longer than its header says"));
                    }
                    data.extend_from_slice(&d);
                }
                _ => return Err(bad("a second snapshot header")),
            }
        }
        if data.len() as u64 != header.total_bytes {
            return Err(bad(format!(
                "snapshot stream ended at {} of {} bytes",
                data.len(),
                header.total_bytes
            )));
        }
        // Verify the bytes before openraft installs them.
        crate::state_machine::decode_snapshot(&data).map_err(bad)?;
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotData::Bytes(data),
        };
        let vote = crate::snapshot_install::install(self.raft(), vote, snapshot)
            .await
            .map_err(raft_down)?;
        Ok(Response::new(pb::SnapshotResponse {
            vote: Some(codec::vote_to_pb(&vote)),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let r = request.into_inner();
        // A node out of disk would only refuse writes and hand leadership on again.
        if let Some(why) = self.node.disk().refusal() {
            return Ok(Response::new(pb::TransferLeaderResponse { error: why }));
        }
        let req = TransferLeaderRequest::new(
            codec::vote_from_opt_pb(r.from_leader.as_ref()).map_err(bad)?,
            r.to_node_id,
            codec::opt_log_id_from_pb(r.last_log_id.as_ref()),
        );
        let resp = self.raft().handle_transfer_leader(req).await.map_err(raft_down)?;
        Ok(Response::new(pb::TransferLeaderResponse {
            error: resp.err().map(|e| e.to_string()).unwrap_or_default(),
        }))
    }

    async fn propose(&self, request: Request<pb::ProposeRequest>) -> Result<Response<pb::ProposeResponse>, Status> {
        self.refuse_proposals_if_out_of_disk()?;
        let cmd = request
            .into_inner()
            .command
            .ok_or_else(|| bad("propose without a command"))?;
        let result = propose_locally(self.raft(), cmd).await?;
        Ok(Response::new(pb::ProposeResponse { result: Some(result) }))
    }

    async fn propose_batch(
        &self,
        request: Request<pb::ProposeBatchRequest>,
    ) -> Result<Response<pb::ProposeBatchResponse>, Status> {
        self.refuse_proposals_if_out_of_disk()?;
        let commands = request.into_inner().commands;
        if commands.is_empty() || commands.len() > crate::forward_batch::MAX_BATCH {
            return Err(bad(format!(
                "a batch holds 1 to {} commands, not {}",
                crate::forward_batch::MAX_BATCH,
                commands.len()
            )));
        }
        let outcomes = propose_batch_locally(self.raft(), commands).await?;
        Ok(Response::new(pb::ProposeBatchResponse { outcomes }))
    }

    async fn read_index(&self, _: Request<pb::ReadIndexRequest>) -> Result<Response<pb::ReadIndexResponse>, Status> {
        use pb::read_index_response::Result as R;
        let result = match self.node.read_index_locally().await? {
            Routed::Done(i) => R::Index(i),
            Routed::NotLeader(leader) => R::NotLeader(pb::NotLeader {
                leader_id: leader.as_ref().map(|l| l.id).unwrap_or(0),
                leader,
            }),
        };
        Ok(Response::new(pb::ReadIndexResponse { result: Some(result) }))
    }

    async fn get_local_status(&self, _: Request<pb::LocalStatusRequest>) -> Result<Response<pb::LocalStatus>, Status> {
        Ok(Response::new(self.node.local_status()))
    }

    async fn fetch(&self, request: Request<pb::ReadQuery>) -> Result<Response<pb::FetchResponse>, Status> {
        // The caller holds its own deadline; this bounds the leader's wait to apply its read index.
        match self.node.fetch_locally(request.get_ref(), FETCH_APPLY_WAIT).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => Err(e.into()),
        }
    }

    async fn removed(&self, request: Request<pb::RemovedNotice>) -> Result<Response<pb::RemovedAck>, Status> {
        self.node.accept_removal(request.into_inner()).await?;
        Ok(Response::new(pb::RemovedAck {}))
    }

    async fn admin(
        &self,
        request: Request<pb::MembershipChangeRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        Ok(Response::new(
            self.node.change_membership_locally(request.into_inner()).await,
        ))
    }
}

/// How long a leader answering a forwarded read waits to apply up to its read index.
const FETCH_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The peer gRPC service to serve on `node`'s raft address.
pub fn peer_server(node: RaftNode) -> RaftPeerServer<PeerService> {
    PeerService::new(node).into_server()
}
