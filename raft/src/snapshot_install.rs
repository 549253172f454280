//! Installing a snapshot a leader sent, without walking into openraft's cursor regression.
//!
//! openraft 0.10.0-alpha.37 moves a follower's log I/O cursor to the snapshot's last log id
//! when it installs a snapshot (`FollowingHandler::install_full_snapshot` ends in
//! `log_progress().submit(snapshot_last)`). When the same leader had already sent this node
//! entries past that point (their acknowledgement was lost, the leader purged its log and fell
//! back to a snapshot), that cursor goes backwards: a debug build panics in `RaftCore`
//! (`io_progress.rs`: `expect submitted:(by:<T1-N1:Q>, T1-N1.19) < new_submitted:(…, T1-N1.18)`,
//! found by simulation seed 913) and a release build carries on with its I/O cursors moved back.
//!
//! Such a snapshot brings nothing this node's log lacks: its last log id is a committed entry
//! this log already holds, and by Raft's log matching everything before it too. So before an
//! install, the leader's claim is checked through openraft's own AppendEntries path: an empty
//! append whose previous log id is the snapshot's last one, and whose commit is that id. It
//! takes the leader's vote like any append (a higher vote here is answered as such), and
//! succeeds only when the log holds that very entry (it waits for it to be durable). Then the
//! node applies up to it from its own log and answers the leader as an install would (its
//! vote): the leader's view that this node matches the snapshot's last log id is true. On a
//! conflict (the log does not hold it; openraft truncates the conflicting suffix, as the
//! install would) the snapshot is installed as usual.

use openraft::error::Fatal;
use openraft::error::RaftError;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;

use crate::state_machine::Raft;
use crate::state_machine::Snapshot;
use crate::TypeConfig;
use crate::Vote;

/// Installs `snapshot` from the leader with `vote`, or, when this log already holds its last
/// entry, commits up to it from the log instead. Returns this node's vote for the reply.
pub async fn install(raft: &Raft, vote: Vote, snapshot: Snapshot) -> Result<Vote, Fatal<TypeConfig>> {
    if let Some(last) = snapshot.meta.last_log_id {
        let probe = AppendEntriesRequest {
            vote,
            prev_log_id: Some(last),
            entries: vec![],
            leader_commit: Some(last),
        };
        match raft.append_entries(probe).await {
            Ok(AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)) => return Ok(vote),
            Ok(AppendEntriesResponse::HigherVote(mine)) => return Ok(mine),
            Ok(AppendEntriesResponse::Conflict) => {}
            Err(RaftError::Fatal(f)) => return Err(f),
            Err(RaftError::APIError(never)) => match never {},
        }
    }
    Ok(raft.install_full_snapshot(vote, snapshot).await?.vote)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::storage::RaftSnapshotBuilder;
    use openraft::storage::RaftStateMachine;

    use super::*;
    use crate::mem::MemLogBackend;
    use crate::mem::MemSmBackend;
    use crate::network::TcpConnector;
    use crate::node::RaftNode;
    use crate::node::RaftSettings;
    use crate::state_machine::StateMachineStore;
    use crate::LogId;

    fn log_id(index: u64) -> LogId {
        LogId::new(LeaderId { term: 1, node_id: 1 }, index)
    }

    fn blank(index: u64) -> crate::Entry {
        crate::Entry::new_blank(log_id(index))
    }

    /// Node 2 receives blank entries 0..=last from the term-1 leader, `commit` committed.
    async fn receive(node: &RaftNode, last: u64, commit: u64) {
        let append = AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: (0..=last).map(blank).collect(),
            leader_commit: Some(log_id(commit)),
        };
        assert!(node.raft().append_entries(append).await.unwrap().is_success());
    }

    /// A snapshot of blank entries 0..=last (a log starts at 0), as node 1 (the term-1 leader) would send it.
    async fn snapshot_upto(last: u64) -> Snapshot {
        let mut sm =
            StateMachineStore::new(Arc::new(MemSmBackend::new()), Arc::new(coffer_model::app::SecretsModel)).unwrap();
        sm.apply(futures::stream::iter((0..=last).map(|i| Ok((blank(i), None)))))
            .await
            .unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        sm.get_current_snapshot().await.unwrap().expect("a snapshot")
    }

    /// Node 2, a follower that never campaigns here (it is in no membership).
    async fn follower() -> RaftNode {
        let settings = RaftSettings {
            cluster_name: "test".into(),
            heartbeat_ms: 50,
            election_timeout_min_ms: 60_000,
            election_timeout_max_ms: 120_000,
            // Never a snapshot of its own here.
            snapshot_every_entries: 1_000_000,
            keep_logs_after_snapshot: 0,
            snapshot_chunk_bytes: 1 << 20,
            peer_addr_override: Default::default(),
            min_voters: 1,
            node_name: "n2".into(),
            min_free_disk_bytes: 0,
        };
        RaftNode::start(
            2,
            &settings,
            Arc::new(MemLogBackend::new()),
            Arc::new(MemSmBackend::new()),
            Arc::new(coffer_model::app::SecretsModel),
            Arc::new(TcpConnector::new(crate::peer_auth::PeerCredential::none())),
        )
        .await
        .unwrap()
    }

    /// Simulation seed 913: the term-1 leader sent this node entries up to 19 (it committed 5
    /// here), lost the acknowledgement, purged its log and sent a snapshot ending at 18. Handed
    /// to openraft as an install, that panics its core (a debug build) and stops the node.
    #[tokio::test]
    async fn a_snapshot_behind_entries_the_same_leader_sent_is_committed_from_the_log() {
        let node = follower().await;
        let vote = Vote::new_committed(1, 1);
        receive(&node, 19, 5).await;

        let reply = install(node.raft(), vote, snapshot_upto(18).await).await;
        assert_eq!(reply.expect("the node is still running"), vote);
        let m = node
            .raft()
            .wait(Some(Duration::from_secs(5)))
            .applied_index_at_least(Some(18), "applied up to the snapshot from its log")
            .await
            .expect("applies up to 18");
        assert!(m.running_state.is_ok(), "{:?}", m.running_state);
        assert_eq!(m.last_log_index, Some(19), "entry 19 is kept");
        assert_eq!(
            (m.snapshot, m.purged),
            (None, None),
            "nothing was installed, no log purged"
        );
        node.shutdown().await;
    }

    /// A snapshot that this log does not hold is installed as before.
    #[tokio::test]
    async fn a_snapshot_past_the_log_is_installed() {
        let node = follower().await;
        let vote = Vote::new_committed(1, 1);
        receive(&node, 3, 2).await;
        assert_eq!(install(node.raft(), vote, snapshot_upto(18).await).await.unwrap(), vote);
        let m = node
            .raft()
            .wait(Some(Duration::from_secs(5)))
            .snapshot(log_id(18), "installed")
            .await
            .expect("the snapshot is installed");
        assert_eq!(m.last_applied, Some(log_id(18)));
        node.shutdown().await;
    }
}
