//! `[raft]` and `[limits]`: Raft timing and log compaction, and request limits.

use serde::Deserialize;

/// Raft timing. Defaults hold for inter-region round trips of 70–200 ms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat period. It is also the deadline of each heartbeat RPC (openraft's rule),
    /// so it must exceed the largest round trip between voters, with margin: a heartbeat that
    /// cannot make the round trip in time counts as lost and the leader can lose its quorum.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    #[serde(default = "default_election_min")]
    pub election_timeout_min_ms: u64,
    #[serde(default = "default_election_max")]
    pub election_timeout_max_ms: u64,
    /// Build a snapshot, and purge the log behind it, after this many applied entries. The
    /// state machine is its own snapshot, so a build is one WAL sync: this sets how much log
    /// a node keeps on disk. Purged often enough, most entries are dropped while still in the
    /// log's memtable and never written to an SST file. Each node builds at its own point of
    /// the period (set by its id), so the nodes of a quorum do not purge at the same index.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind the last snapshot: a follower that fell fewer entries
    /// behind catches up from the log; one further behind is sent the whole state.
    #[serde(default = "default_keep_logs")]
    pub keep_logs_after_snapshot: u64,
    #[serde(default = "default_snapshot_chunk")]
    pub snapshot_chunk_bytes: u64,
    /// Below this much free space under the data folder the node stops taking writes and
    /// log entries (out of disk) until space is back to 1.5 times it; 0 turns the check off.
    #[serde(default = "default_min_free_disk")]
    pub min_free_disk_bytes: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: default_heartbeat(),
            election_timeout_min_ms: default_election_min(),
            election_timeout_max_ms: default_election_max(),
            snapshot_every_entries: default_snapshot_every(),
            keep_logs_after_snapshot: default_keep_logs(),
            snapshot_chunk_bytes: default_snapshot_chunk(),
            min_free_disk_bytes: default_min_free_disk(),
        }
    }
}

fn default_heartbeat() -> u64 {
    300
}
fn default_election_min() -> u64 {
    1500
}
fn default_election_max() -> u64 {
    3000
}
fn default_snapshot_every() -> u64 {
    10_000
}
fn default_keep_logs() -> u64 {
    10_000
}
fn default_min_free_disk() -> u64 {
    256 << 20
}
fn default_snapshot_chunk() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// How long a write may wait for the leader before failing with UNAVAILABLE.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_ms: u64,
    /// Requests a second one source address may send without credentials (each one costs an
    /// audit record); past it they fail with `rate_limited`.
    #[serde(default = "default_anonymous_rate")]
    pub anonymous_requests_per_sec: u32,
    /// How many of them may come at once.
    #[serde(default = "default_anonymous_burst")]
    pub anonymous_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            write_timeout_ms: default_write_timeout(),
            anonymous_requests_per_sec: default_anonymous_rate(),
            anonymous_burst: default_anonymous_burst(),
        }
    }
}

fn default_anonymous_rate() -> u32 {
    crate::authz::anonymous::DEFAULT_PER_SEC
}
fn default_anonymous_burst() -> u32 {
    crate::authz::anonymous::DEFAULT_BURST
}

fn default_write_timeout() -> u64 {
    10_000
}
