//! Server side of peer RPC: decodes peer messages and hands them to the local Raft node.
//!
//! Input from a peer is untrusted bytes: every decode failure becomes `INVALID_ARGUMENT`,
//! never a panic. Served on the raft address only, apart from the public API.

use futures::StreamExt;
use openraft::error::ClientWriteError;
use openraft::error::RaftError;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::VoteRequest;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

use crate::codec;
use crate::node::RaftNode;
use crate::node::Routed;
use crate::pb;
use crate::pb::raft_peer_server::RaftPeer;
use crate::pb::raft_peer_server::RaftPeerServer;
use crate::state_machine::Snapshot;
use crate::state_machine::SnapshotData;
use crate::Raft;

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

    pub fn into_server(self) -> RaftPeerServer<Self> {
        RaftPeerServer::new(self)
            .max_decoding_message_size(crate::network::MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(crate::network::MAX_PEER_MESSAGE_BYTES)
    }
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("malformed peer message: {e}"))
}

fn raft_down(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft node is not running: {e}"))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let r = request.into_inner();
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
            Err((code, msg)) => Err(Status::new(code, msg)),
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

/// Proposes `cmd` through the local Raft node, which must be the leader.
///
/// Returns the applied result, or `NotLeader` when the proposal was refused before it entered
/// the log (safe to retry elsewhere). A proposal whose entry was discarded by a leader change
/// has an unknown outcome and fails with `ABORTED`.
/// Proposes a follower's batch of commands in one message to the Raft core and answers each,
/// in order, as [`propose_locally`] would: applied, `NotLeader` (refused before it entered the
/// log), or an error (`ABORTED` when a leader change discarded its entry: outcome unknown).
pub async fn propose_batch_locally(raft: &Raft, commands: Vec<pb::Command>) -> Result<Vec<pb::ProposeOutcome>, Status> {
    use pb::propose_outcome::Result as O;
    let n = commands.len();
    let mut results = raft.client_write_many(commands).await.map_err(raft_down)?;
    let mut outcomes = Vec::with_capacity(n);
    while let Some(item) = results.next().await {
        let outcome = match item {
            Ok(Ok(resp)) => O::Applied(resp.response),
            Ok(Err(e)) => match refused_write(e) {
                Ok(not_leader) => O::NotLeader(not_leader),
                Err(s) => peer_error(s.code(), s.message()),
            },
            Err(e) => {
                let s = raft_down(e);
                peer_error(s.code(), s.message())
            }
        };
        outcomes.push(pb::ProposeOutcome { result: Some(outcome) });
    }
    // A stopped core ends the stream early: the rest have an unknown outcome.
    while outcomes.len() < n {
        outcomes.push(pb::ProposeOutcome {
            result: Some(peer_error(
                tonic::Code::Unavailable,
                "raft node stopped; the write may or may not have been applied",
            )),
        });
    }
    Ok(outcomes)
}

fn peer_error(code: tonic::Code, message: &str) -> pb::propose_outcome::Result {
    pb::propose_outcome::Result::Error(pb::PeerError {
        code: code as i32,
        message: message.to_string(),
    })
}

pub async fn propose_locally(raft: &Raft, cmd: pb::Command) -> Result<pb::propose_response::Result, Status> {
    match raft.client_write(cmd).await {
        // The state machine sets the index: this entry's, or for a retried request the one
        // that first applied it.
        Ok(resp) => Ok(pb::propose_response::Result::Applied(resp.data)),
        Err(RaftError::APIError(e)) => refused_write(e).map(pb::propose_response::Result::NotLeader),
        Err(RaftError::Fatal(e)) => Err(raft_down(e)),
    }
}

/// A write the Raft core did not apply: `NotLeader` when it was refused before it entered the
/// log (safe to retry elsewhere), `ABORTED` when a leader change discarded its entry (outcome
/// unknown), otherwise `FAILED_PRECONDITION`. One mapping for unary and batched proposals.
fn refused_write(e: ClientWriteError<crate::TypeConfig>) -> Result<pb::NotLeader, Status> {
    match e {
        ClientWriteError::ForwardToLeader(f) => Ok(pb::NotLeader {
            leader_id: f.leader_id.unwrap_or(0),
            leader: f.leader_node,
        }),
        ClientWriteError::LogEntryDiscarded(_) => Err(Status::aborted(
            "the leader changed before the write committed; it may or may not have been applied",
        )),
        e => Err(Status::failed_precondition(e.to_string())),
    }
}
