//! `[node]`, `[network]`, `[audit]`, `[rotation]` and `[health]`: who this node is, how it
//! listens, where it audits, how often its rotation scheduler looks, when it calls itself ready.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The node-local audit log. Sinks are set here only, never through the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Hash-chained audit file (default: `<node.data_dir>/audit.log`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A request whose audit record is not durable within this bound fails (default 2000 ms).
    #[serde(default)]
    pub write_timeout_ms: Option<u64>,
    /// The live file is rotated at this size (default 256 MiB, at least 4096).
    #[serde(default)]
    pub max_file_bytes: Option<u64>,
    /// Rotated files kept; older ones are removed (default 16, at least 1). Ship them elsewhere
    /// before they age out if they must be kept longer.
    #[serde(default)]
    pub retain_files: Option<usize>,
    /// How often the log's newest record is anchored through Raft, when it moved (default
    /// 10000 ms, 100 to 3600000): records newer than the last anchor are not yet protected
    /// against a cut at a record boundary.
    #[serde(default)]
    pub anchor_interval_ms: Option<u64>,
    /// When a record is made durable: "batch" (default: fsynced before the request is
    /// answered) or "interval" (answered once written; fsynced every `sync_interval_ms`, so a
    /// power failure can lose that much; a write error still refuses the request).
    #[serde(default)]
    pub sync: Option<String>,
    /// With sync = "interval": at most this long from a record's write to its fsync (default
    /// 100 ms, 1 to 10000).
    #[serde(default)]
    pub sync_interval_ms: Option<u64>,
}

/// The rotation scheduler (it acts on the leader only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// How often the leader looks for rotation steps that are due (default 1000 ms, 50 to
    /// 60000): a step is made at most this late.
    #[serde(default)]
    pub tick_ms: Option<u64>,
    /// PEM certificates of the CAs that sign the rotators' certificates, trusted for hook
    /// calls beside the system's roots.
    #[serde(default)]
    pub hook_ca_file: Option<std::path::PathBuf>,
    /// How long a hook call may take, connect to answer (default 30000 ms, 100 to 300000);
    /// a rotator that takes longer fails the run's attempt, which is retried after a backoff.
    #[serde(default)]
    pub hook_timeout_ms: Option<u64>,
}

/// Scheduled backups (`crate::backup::schedule`): the leader saves one every interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Where backups go (created with mode 0700). Keep it off the data dir's disk.
    pub dir: PathBuf,
    /// How often (default 3600000 ms, 1000 to 604800000).
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// The newest this many are kept; older ones are removed (default 24, 1 to 10000).
    #[serde(default)]
    pub keep: Option<usize>,
}

/// What the health probes (`/health/ready`, `grpc.health.v1`) call ready.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A node whose staleness bound (or time since it heard from the leader) is above this is
    /// not ready (default 5000 ms, 100 to 3600000). A probe may ask for another limit with
    /// `?max_staleness_ms=`.
    #[serde(default)]
    pub ready_max_staleness_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Reach a peer (by node id) at another address than the one in the membership: a tunnel,
    /// a sidecar, or a fault-injecting proxy in tests.
    #[serde(default)]
    pub peer_addr_override: std::collections::BTreeMap<String, String>,
    /// Serve and dial without TLS: for coffer dev and tests on loopback only (a node refuses
    /// to start plaintext on any other address). A config must either set this or have a
    /// `[tls]` section.
    #[serde(default)]
    pub plaintext: bool,
    /// With plaintext: the cluster's peer key (64 hex characters, mode 0600), the same file on
    /// every member. Each peer request carries a proof under it; callers without it are
    /// refused. `coffer dev` writes one.
    #[serde(default)]
    pub peer_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: u64,
    pub name: String,
    pub region: String,
    #[serde(default)]
    pub zone: String,
    pub data_dir: PathBuf,
    /// Listen address of the public API.
    pub api_addr: SocketAddr,
    /// Listen address of the peer (Raft) service.
    pub raft_addr: SocketAddr,
    /// Address other nodes and clients use to reach this node's API (default: `api_addr`).
    #[serde(default)]
    pub advertise_api_addr: Option<String>,
    /// Address peers use to reach this node's Raft service (default: `raft_addr`).
    #[serde(default)]
    pub advertise_raft_addr: Option<String>,
    /// Serve Prometheus metrics at `http://<metrics_addr>/metrics` (off when unset).
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve the HTTP/JSON API here (off when unset): HTTPS with the node's certificate when
    /// the node has `[tls]`.
    #[serde(default)]
    pub http_addr: Option<SocketAddr>,
}
