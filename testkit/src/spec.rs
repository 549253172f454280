//! What a test cluster is made of: regions, spares, Raft timings, KMS, TLS, extra config.

use std::collections::BTreeMap;

/// Raft settings for tests: fast elections on loopback.
pub const FAST_RAFT: &str = "heartbeat_ms = 50\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 800\n";

/// What to start.
#[derive(Clone)]
pub struct ClusterSpec {
    /// One initial voter per entry (its region).
    pub regions: Vec<String>,
    /// Nodes that exist but are not members yet (added later as learners), by region.
    pub spare_regions: Vec<String>,
    /// Body of every node's `[raft]` section.
    pub raft: String,
    /// Round trip between two regions in ms; `None` = direct connections, no proxies.
    pub rtt_ms: Option<fn(&str, &str) -> u64>,
    /// Extra lines for every node's `[cluster]` section.
    pub cluster_extra: String,
    /// The KMS of every region.
    pub kms: coffer::dev::DevKmsConfig,
    /// Extra lines for every node's `[kms]` section, and for single nodes' (by index).
    pub kms_extra: String,
    pub node_kms_extra: BTreeMap<usize, String>,
    /// Give every node a Prometheus metrics listener ([`TestCluster::metrics`]).
    pub metrics: bool,
    /// Serve TLS (mutual TLS between nodes) with certificates from a throwaway CA made in
    /// `<dir>/tls` (see [`coffer::dev::ensure_dev_tls`]); the kit's clients then trust that CA.
    pub tls: bool,
    /// Extra config sections for single nodes (by index), appended to their config file,
    /// e.g. an `[audit]` section.
    pub node_extra: BTreeMap<usize, String>,
    /// `RUST_LOG` of the nodes (default: `COFFER_TEST_LOG` or `info,openraft=info`).
    pub log_filter: Option<String>,
    /// Environment variables every node starts with (e.g. test hooks).
    pub node_env: Vec<(String, String)>,
    /// Put every node's data folder on a tmpfs of this many MiB of its own, so a test can run
    /// it out of space (mounting needs root, as `make test` runs).
    pub data_tmpfs_mib: Option<u64>,
}

impl ClusterSpec {
    pub fn new(regions: &[&str], raft: &str) -> Self {
        Self {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            spare_regions: vec![],
            raft: raft.to_string(),
            rtt_ms: None,
            cluster_extra: String::new(),
            kms: coffer::dev::DevKmsConfig::Local,
            kms_extra: String::new(),
            node_kms_extra: BTreeMap::new(),
            metrics: false,
            tls: false,
            node_extra: BTreeMap::new(),
            log_filter: None,
            node_env: vec![],
            data_tmpfs_mib: None,
        }
    }
}

/// The inter-region round trips the WAN tests use: us-east <-> eu-west 70 ms, every other pair
/// of regions 200 ms, 0 inside a region.
pub fn wan_rtt(a: &str, b: &str) -> u64 {
    match (a, b) {
        _ if a == b => 0,
        ("us-east", "eu-west") | ("eu-west", "us-east") => 70,
        _ => 200,
    }
}
