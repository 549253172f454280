//! [`RaftSettings`]: Raft timing and log compaction, checked and turned into openraft's config.

use std::collections::BTreeMap;

use crate::error::StartError;
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
    /// This node's name, for errors that name it.
    pub node_name: String,
    /// Free space below which the node is out of disk (see `crate::disk_space`); 0: never.
    pub min_free_disk_bytes: u64,
}

impl RaftSettings {
    pub(super) fn to_openraft(&self) -> Result<openraft::Config, StartError> {
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
        cfg.validate().map_err(|e| StartError::Settings(e.to_string()))
    }
}
