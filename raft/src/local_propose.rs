//! Proposing on this node's Raft core, which must be the leader: one command, or a follower's
//! forwarded batch. The peer service calls it for forwarded writes, the node for its own.

use futures::StreamExt;
use openraft::error::ClientWriteError;
use openraft::error::RaftError;
use tonic::Status;

use crate::pb;
use crate::state_machine::Raft;

/// The Raft core stopped: nothing more can be proposed or answered here.
pub(crate) fn raft_down(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft node is not running: {e}"))
}

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

/// Proposes `cmd` through the local Raft node, which must be the leader.
///
/// Returns the applied result, or `NotLeader` when the proposal was refused before it entered
/// the log (safe to retry elsewhere). A proposal whose entry was discarded by a leader change
/// has an unknown outcome and fails with `ABORTED`.
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
