//! `[cluster]`: the cluster this node belongs to: its members and bootstrap settings.

use serde::Deserialize;

use crate::pb;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster id, recorded at bootstrap.
    pub id: String,
    /// This node forms the cluster from `members` when its storage is empty.
    #[serde(default)]
    pub bootstrap: bool,
    /// Hex SHA-256 of the bootstrap root token (required with `bootstrap`).
    #[serde(default)]
    pub root_token_sha256: Option<String>,
    /// Or a file holding that hash (its first word, so `sha256sum` output does), read when
    /// the config loads: for deployments that make the root token on first start.
    #[serde(default)]
    pub root_token_sha256_file: Option<std::path::PathBuf>,
    /// Initial voters (required with `bootstrap`).
    #[serde(default)]
    pub members: Vec<Member>,
    /// Regions where the leader should be, most preferred first. The leader hands leadership
    /// to a healthy, caught-up voter in a more preferred region when there is one.
    #[serde(default)]
    pub preferred_regions: Vec<String>,
    /// Membership changes that leave fewer voters than this are refused unless forced.
    #[serde(default = "default_min_voters")]
    pub min_voters: u32,
    /// How long (ms) the cluster remembers each request's first outcome, so that a retry with
    /// the same request id is answered instead of applied again (default 600000, 10 minutes;
    /// 30000 to 86400000). Set once, by the bootstrap node.
    #[serde(default)]
    pub request_retention_ms: Option<u64>,
    /// Versions a secret keeps when it was created without `max_versions` (default 100; 1 to
    /// 10000): older versions no alias points at are deleted. Set once, by the bootstrap node.
    #[serde(default)]
    pub default_max_versions: Option<u32>,
    /// How long (ms) a revoked or expired token's record is kept before it is deleted (default
    /// 86400000, 24 hours; 1000 to 2592000000, 30 days). Set once, by the bootstrap node.
    #[serde(default)]
    pub token_record_retention_ms: Option<u64>,
}

fn default_min_voters() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub region: String,
    #[serde(default)]
    pub zone: String,
    pub raft_addr: String,
    pub api_addr: String,
}

impl Member {
    pub fn to_node_info(&self) -> pb::NodeInfo {
        pb::NodeInfo {
            id: self.id,
            name: self.name.clone(),
            region: self.region.clone(),
            zone: self.zone.clone(),
            raft_addr: self.raft_addr.clone(),
            api_addr: self.api_addr.clone(),
        }
    }
}
