//! Server configuration (`coffer server --config FILE`, TOML).
//!
//! Every field is validated at load, with an error that names the field and says what to do.
//! See deploy/ for complete examples.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::pb;
use crate::tls::TlsConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub node: NodeConfig,
    pub cluster: ClusterConfig,
    /// Every region of the cluster and the KMS key that wraps data keys for it.
    pub regions: Vec<RegionKms>,
    #[serde(default)]
    pub kms: KmsConfig,
    #[serde(default)]
    pub raft: RaftConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub network: NetworkConfig,
    /// TLS on the API and peer ports; required unless `network.plaintext = true`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
}

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
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Reach a peer (by node id) at another address than the one in the membership: a tunnel,
    /// a sidecar, or a fault-injecting proxy in tests.
    #[serde(default)]
    pub peer_addr_override: std::collections::BTreeMap<String, String>,
    /// Serve and dial without TLS: for coffer dev and tests on loopback only. A config must
    /// either set this or have a `[tls]` section.
    #[serde(default)]
    pub plaintext: bool,
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
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionKms {
    pub name: String,
    /// "local" (file keyring) or "aws" (AWS KMS or a KMS-compatible service).
    #[serde(default = "default_provider")]
    pub kms_provider: String,
    /// Key reference: for `local` always `local/<region>` (the default); for `aws` a key id,
    /// ARN or `alias/…` (required).
    #[serde(default)]
    pub key_id: Option<String>,
    /// `aws`: the AWS region of the key, e.g. `us-east-1` (required).
    #[serde(default)]
    pub aws_region: Option<String>,
    /// `aws`: endpoint override (a VPC endpoint, moto, a KMS-compatible service).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `aws`: static credentials (both or neither); unset uses the standard AWS chain
    /// (environment, profile, web identity, container or instance role).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<ConfigSecret>,
}

/// A secret in a config file: deserialized like a string, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ConfigSecret(String);

impl ConfigSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConfigSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl RegionKms {
    fn validate(&self) -> Result<(), String> {
        let r = &self.name;
        let aws_only = [
            ("aws_region", self.aws_region.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
        ];
        match self.kms_provider.as_str() {
            "local" => {
                if let Some((field, _)) = aws_only.iter().find(|(_, set)| *set) {
                    return Err(format!("region {r}: {field} is only for kms_provider = \"aws\""));
                }
                let expected = crate::crypto::kms::local::key_id(r);
                if self.key_id.as_ref().is_some_and(|k| *k != expected) {
                    return Err(format!(
                        "region {r}: the local provider's key is always {expected:?}; remove key_id"
                    ));
                }
            }
            "aws" => {
                if self.key_id.as_deref().unwrap_or("").is_empty() {
                    return Err(format!(
                        "region {r}: kms_provider = \"aws\" needs key_id (a key id, ARN or alias/NAME)"
                    ));
                }
                match self.aws_region.as_deref() {
                    Some(a)
                        if !a.is_empty()
                            && a.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') => {}
                    _ => {
                        return Err(format!(
                            "region {r}: kms_provider = \"aws\" needs aws_region, e.g. \"us-east-1\""
                        ))
                    }
                }
                if let Some(e) = &self.endpoint {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(format!(
                            "region {r}: endpoint {e:?} must start with http:// or https://"
                        ));
                    }
                }
                if self.access_key_id.is_some() != self.secret_access_key.is_some() {
                    return Err(format!(
                        "region {r}: give both access_key_id and secret_access_key, or neither to use the AWS credential chain"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "region {r}: kms_provider {other:?} is not supported (use \"local\" or \"aws\")"
                ))
            }
        }
        Ok(())
    }

    /// Settings of the `aws` provider (None for other providers).
    pub fn aws_settings(&self, call_timeout: Duration) -> Option<crate::crypto::kms::aws::AwsSettings> {
        (self.kms_provider == "aws").then(|| crate::crypto::kms::aws::AwsSettings {
            aws_region: self.aws_region.clone().unwrap_or_default(),
            endpoint: self.endpoint.clone(),
            static_credentials: self
                .access_key_id
                .clone()
                .zip(self.secret_access_key.as_ref().map(|s| s.expose().to_string())),
            call_timeout,
        })
    }
}

fn default_provider() -> String {
    "local".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// Folder of `<region>.keyring` files for the `local` provider.
    pub local_keyring_dir: Option<PathBuf>,
    /// Create a missing local keyring instead of refusing to start (dev only).
    #[serde(default)]
    pub create_missing_keyrings: bool,
    #[serde(default = "default_dek_cache_ttl")]
    pub dek_cache_ttl_secs: u64,
    #[serde(default = "default_dek_cache_capacity")]
    pub dek_cache_capacity: usize,
    /// "deny" (default): a read whose data key is not cached fails with UNAVAILABLE when the
    /// local region's KMS cannot unwrap it. "allow": it is unwrapped by another region's KMS
    /// (counted in `coffer_kms_fallback_total`); the data key then crosses regions.
    #[serde(default = "default_fallback")]
    pub fallback: String,
    /// Deadline of one KMS call, retries included.
    #[serde(default = "default_kms_call_timeout")]
    pub call_timeout_ms: u64,
    /// After a KMS call fails, that region's KMS is skipped this long before it is tried again.
    #[serde(default = "default_retry_unhealthy_after")]
    pub retry_unhealthy_after_ms: u64,
    /// How often the leader looks for versions missing a region's wrap and adds them.
    #[serde(default = "default_rewrap_interval")]
    pub rewrap_interval_ms: u64,
}

impl KmsConfig {
    pub fn policy(&self) -> crate::crypto::kms::KmsPolicy {
        crate::crypto::kms::KmsPolicy {
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            retry_unhealthy_after: Duration::from_millis(self.retry_unhealthy_after_ms),
            fallback: self.fallback == "allow",
        }
    }
}

fn default_fallback() -> String {
    "deny".into()
}
fn default_kms_call_timeout() -> u64 {
    3000
}
fn default_retry_unhealthy_after() -> u64 {
    5000
}
fn default_rewrap_interval() -> u64 {
    30_000
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            local_keyring_dir: None,
            create_missing_keyrings: false,
            dek_cache_ttl_secs: default_dek_cache_ttl(),
            dek_cache_capacity: default_dek_cache_capacity(),
            fallback: default_fallback(),
            call_timeout_ms: default_kms_call_timeout(),
            retry_unhealthy_after_ms: default_retry_unhealthy_after(),
            rewrap_interval_ms: default_rewrap_interval(),
        }
    }
}

fn default_dek_cache_ttl() -> u64 {
    300
}
fn default_dek_cache_capacity() -> usize {
    100_000
}

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
    /// Build a snapshot after this many applied entries. A snapshot copies the whole state,
    /// so this trades log kept on disk for CPU: 100 000 like etcd's `--snapshot-count`
    /// (at 10 000 the leader spent about 15% of its CPU building snapshots under steady writes).
    /// Each node builds at its own point of the period (set by its id), so the nodes of a
    /// quorum do not all build at the same log index.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind the last snapshot (for followers catching up by log).
    #[serde(default = "default_keep_logs")]
    pub keep_logs_after_snapshot: u64,
    #[serde(default = "default_snapshot_chunk")]
    pub snapshot_chunk_bytes: u64,
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
    100_000
}
fn default_keep_logs() -> u64 {
    1_000
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            write_timeout_ms: default_write_timeout(),
        }
    }
}

fn default_write_timeout() -> u64 {
    10_000
}

#[derive(Debug, thiserror::Error)]
#[error("config {path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ServerConfig {
    pub fn audit_path(&self) -> PathBuf {
        self.audit
            .path
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("audit.log"))
    }

    pub fn audit_write_timeout(&self) -> Duration {
        Duration::from_millis(self.audit.write_timeout_ms.unwrap_or(2000))
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let cfg: ServerConfig = toml::from_str(&text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        let n = &self.node;
        if n.id == 0 {
            return Err("node.id must be a positive number".into());
        }
        for (field, v) in [("node.name", &n.name), ("node.region", &n.region)] {
            if !coffer_model::names::is_valid_segment(v) {
                return Err(format!("{field} {v:?} must match [a-z0-9][a-z0-9._-]{{0,62}}"));
            }
        }
        if self.cluster.id.is_empty() {
            return Err("cluster.id must not be empty".into());
        }
        let mut seen = BTreeSet::new();
        for r in &self.regions {
            if !coffer_model::names::is_valid_segment(&r.name) {
                return Err(format!(
                    "region name {:?} must match [a-z0-9][a-z0-9._-]{{0,62}}",
                    r.name
                ));
            }
            if !seen.insert(r.name.clone()) {
                return Err(format!("region {} is listed twice", r.name));
            }
            r.validate()?;
        }
        if let Some(t) = self.audit.write_timeout_ms {
            if !(10..=60_000).contains(&t) {
                return Err(format!("audit.write_timeout_ms {t} must be between 10 and 60000"));
            }
        }
        if self
            .audit
            .path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty() || p.is_dir())
        {
            return Err("audit.path must name a file (not empty, not a directory)".into());
        }
        let k = &self.kms;
        if k.fallback != "allow" && k.fallback != "deny" {
            return Err(format!("kms.fallback {:?} must be \"deny\" or \"allow\"", k.fallback));
        }
        for (field, v, min) in [
            ("kms.call_timeout_ms", k.call_timeout_ms, 50),
            ("kms.rewrap_interval_ms", k.rewrap_interval_ms, 100),
        ] {
            if v < min {
                return Err(format!("{field} must be at least {min}"));
            }
        }
        if !seen.contains(&n.region) {
            return Err(format!(
                "node.region {} has no [[regions]] entry with its KMS key",
                n.region
            ));
        }
        if self.regions.iter().any(|r| r.kms_provider == "local") && self.kms.local_keyring_dir.is_none() {
            return Err("kms.local_keyring_dir is required for the local KMS provider".into());
        }
        for (k, v) in &self.network.peer_addr_override {
            if k.parse::<u64>().map_or(true, |id| id == 0) {
                return Err(format!("network.peer_addr_override key {k:?} must be a node id"));
            }
            if v.is_empty() {
                return Err(format!("network.peer_addr_override for node {k} is empty"));
            }
        }
        self.validate_transport()?;
        for r in &self.cluster.preferred_regions {
            if !seen.contains(r) {
                return Err(format!(
                    "cluster.preferred_regions names {r}, which has no [[regions]] entry"
                ));
            }
        }
        if let Some(ms) = self.cluster.request_retention_ms {
            let (min, max) = (
                coffer_model::requests::MIN_RETENTION_MS,
                coffer_model::requests::MAX_RETENTION_MS,
            );
            if !(min..=max).contains(&ms) {
                return Err(format!(
                    "cluster.request_retention_ms {ms} must be between {min} (30 s) and {max} (24 h)"
                ));
            }
        }
        if !(100..=120_000).contains(&self.limits.write_timeout_ms) {
            return Err(format!(
                "limits.write_timeout_ms {} must be between 100 and 120000",
                self.limits.write_timeout_ms
            ));
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            return Err("raft.election_timeout_min_ms must exceed raft.heartbeat_ms (> 0)".into());
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err("raft.election_timeout_max_ms must exceed raft.election_timeout_min_ms".into());
        }
        if self.cluster.bootstrap {
            let hash = self.cluster.root_token_sha256.as_deref().unwrap_or("");
            if hex::decode(hash).map(|b| b.len()) != Ok(32) {
                return Err("cluster.root_token_sha256 must be 64 hex characters when bootstrap = true".into());
            }
            if hash.bytes().all(|b| b == b'0') {
                return Err(
                    "cluster.root_token_sha256 is the all-zero placeholder; put your root token's hash there".into(),
                );
            }
            if !self.cluster.members.iter().any(|m| m.id == n.id) {
                return Err("cluster.members must include this node when bootstrap = true".into());
            }
            let mut ids = BTreeSet::new();
            for m in &self.cluster.members {
                if !ids.insert(m.id) {
                    return Err(format!("cluster.members lists node id {} twice", m.id));
                }
                if !seen.contains(&m.region) {
                    return Err(format!(
                        "member {} is in region {} which has no [[regions]] entry",
                        m.name, m.region
                    ));
                }
            }
        }
        Ok(())
    }

    /// Exactly one of `[tls]` and `network.plaintext = true`; the TLS files load and fit.
    fn validate_transport(&self) -> Result<(), String> {
        match (&self.tls, self.network.plaintext) {
            (Some(_), true) => Err("network.plaintext = true and [tls] are both set; remove one".into()),
            (None, false) => Err(
                "no [tls] section: add [tls] with ca_cert, cert and key (see deploy/README.md), \
                 or set network.plaintext = true (coffer dev and tests on loopback only)"
                    .into(),
            ),
            (Some(_), false) => self.tls_material().map(drop).map_err(|e| e.to_string()),
            (None, true) => Ok(()),
        }
    }

    /// This node's TLS material (None with plaintext transport).
    pub fn tls_material(&self) -> Result<Option<crate::tls::TlsMaterial>, crate::tls::TlsError> {
        self.tls
            .as_ref()
            .map(|t| crate::tls::TlsMaterial::load(t, &self.node.name))
            .transpose()
    }

    /// This node's identity as replicated in the membership.
    pub fn node_info(&self) -> pb::NodeInfo {
        let n = &self.node;
        pb::NodeInfo {
            id: n.id,
            name: n.name.clone(),
            region: n.region.clone(),
            zone: n.zone.clone(),
            raft_addr: n.advertise_raft_addr.clone().unwrap_or_else(|| n.raft_addr.to_string()),
            api_addr: n.advertise_api_addr.clone().unwrap_or_else(|| n.api_addr.to_string()),
        }
    }

    pub fn region_configs(&self) -> Vec<pb::RegionConfig> {
        self.regions
            .iter()
            .map(|r| pb::RegionConfig {
                region: r.name.clone(),
                kms_provider: r.kms_provider.clone(),
                key_id: r
                    .key_id
                    .clone()
                    .unwrap_or_else(|| crate::crypto::kms::local::key_id(&r.name)),
            })
            .collect()
    }

    pub fn raft_settings(&self) -> coffer_raft::node::RaftSettings {
        let r = &self.raft;
        coffer_raft::node::RaftSettings {
            cluster_name: self.cluster.id.clone(),
            heartbeat_ms: r.heartbeat_ms,
            election_timeout_min_ms: r.election_timeout_min_ms,
            election_timeout_max_ms: r.election_timeout_max_ms,
            snapshot_every_entries: r.snapshot_every_entries,
            keep_logs_after_snapshot: r.keep_logs_after_snapshot,
            snapshot_chunk_bytes: r.snapshot_chunk_bytes,
            // Validated at load: every key is a node id.
            peer_addr_override: self
                .network
                .peer_addr_override
                .iter()
                .filter_map(|(k, v)| k.parse().ok().map(|id| (id, v.clone())))
                .collect(),
            min_voters: self.cluster.min_voters,
        }
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.write_timeout_ms.max(1))
    }
}
