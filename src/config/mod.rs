//! Server configuration (`coffer server --config FILE`, TOML).
//!
//! Every field is validated at load, with an error that names the field and says what to do.
//! See deploy/ for complete examples.
//!
//! One file per section: `node` (`[node]`, `[network]`, `[audit]`, `[rotation]`), `cluster`, `kms`
//! (`[[regions]]`, `[kms]`) and `raft` (`[raft]`, `[limits]`); this file holds the whole
//! config, its loading and the checks that span sections.

mod cluster;
mod kms;
mod node;
mod raft;

use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::pb;
use crate::tls::TlsConfig;

pub use cluster::{ClusterConfig, Member};
pub use kms::{ConfigSecret, KmsConfig, RegionKms};
pub use node::{AuditConfig, BackupConfig, HealthConfig, NetworkConfig, NodeConfig, RotationConfig};
pub use raft::{Limits, RaftConfig};

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
    #[serde(default)]
    pub rotation: RotationConfig,
    #[serde(default)]
    pub health: HealthConfig,
    /// Scheduled backups; none without this section.
    #[serde(default)]
    pub backup: Option<BackupConfig>,
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

    pub fn audit_anchor_interval(&self) -> Duration {
        Duration::from_millis(self.audit.anchor_interval_ms.unwrap_or(10_000))
    }

    pub fn rotation_tick(&self) -> Duration {
        Duration::from_millis(self.rotation.tick_ms.unwrap_or(1000))
    }

    pub fn ready_max_staleness_ms(&self) -> u64 {
        self.health
            .ready_max_staleness_ms
            .unwrap_or(crate::service::health::DEFAULT_READY_MAX_STALENESS_MS)
    }

    /// The scheduled backups `[backup]` asks for (defaults filled in).
    pub fn backup_schedule(&self) -> Option<crate::backup::schedule::Schedule> {
        self.backup.as_ref().map(|b| crate::backup::schedule::Schedule {
            dir: b.dir.clone(),
            interval: Duration::from_millis(b.interval_ms.unwrap_or(3_600_000)),
            keep: b.keep.unwrap_or(24),
        })
    }

    pub fn hook_timeout(&self) -> Duration {
        Duration::from_millis(self.rotation.hook_timeout_ms.unwrap_or(30_000))
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut cfg: ServerConfig = toml::from_str(&text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))?;
        cfg.read_root_token_hash_file().map_err(err)?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Moves the hash in `cluster.root_token_sha256_file` into `cluster.root_token_sha256`.
    fn read_root_token_hash_file(&mut self) -> Result<(), String> {
        let Some(file) = self.cluster.root_token_sha256_file.take() else {
            return Ok(());
        };
        if self.cluster.root_token_sha256.is_some() {
            return Err("cluster.root_token_sha256 and cluster.root_token_sha256_file are both set; keep one".into());
        }
        let at = |e: String| format!("cluster.root_token_sha256_file {}: {e}", file.display());
        let meta = std::fs::metadata(&file).map_err(|e| at(e.to_string()))?;
        if meta.len() > 4096 {
            return Err(at("larger than 4096 bytes; it should hold one SHA-256 in hex".into()));
        }
        let text = std::fs::read_to_string(&file).map_err(|e| at(e.to_string()))?;
        let hash = text.split_whitespace().next().unwrap_or("");
        if hex::decode(hash).map(|b| b.len()) != Ok(32) {
            return Err(at("must start with a SHA-256 in hex (64 characters)".into()));
        }
        self.cluster.root_token_sha256 = Some(hash.to_ascii_lowercase());
        Ok(())
    }

    /// `[audit] sync` and `sync_interval_ms`, checked.
    pub fn audit_sync(&self) -> Result<crate::audit::file::SyncMode, String> {
        use crate::audit::file::SyncMode;
        let interval = self.audit.sync_interval_ms;
        match (self.audit.sync.as_deref().unwrap_or("batch"), interval) {
            ("batch", None) => Ok(SyncMode::Batch),
            ("batch", Some(_)) => Err("audit.sync_interval_ms needs audit.sync = \"interval\"".into()),
            ("interval", ms) => {
                let ms = ms.unwrap_or(100);
                if !(1..=10_000).contains(&ms) {
                    return Err(format!("audit.sync_interval_ms {ms} must be between 1 and 10000"));
                }
                Ok(SyncMode::Interval(Duration::from_millis(ms)))
            }
            (other, _) => Err(format!("audit.sync {other:?} must be \"batch\" or \"interval\"")),
        }
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
        for (field, v, max) in [
            (
                "limits.anonymous_requests_per_sec",
                self.limits.anonymous_requests_per_sec,
                100_000,
            ),
            ("limits.anonymous_burst", self.limits.anonymous_burst, 1_000_000),
        ] {
            if !(1..=max).contains(&v) {
                return Err(format!("{field} {v} must be between 1 and {max}"));
            }
        }
        if let Some(b) = self.audit.max_file_bytes {
            if !(4096..=1 << 40).contains(&b) {
                return Err(format!(
                    "audit.max_file_bytes {b} must be between 4096 and 1099511627776"
                ));
            }
        }
        if let Some(n) = self.audit.retain_files {
            if !(1..=100_000).contains(&n) {
                return Err(format!("audit.retain_files {n} must be between 1 and 100000"));
            }
        }
        if let Some(t) = self.audit.anchor_interval_ms {
            if !(100..=3_600_000).contains(&t) {
                return Err(format!("audit.anchor_interval_ms {t} must be between 100 and 3600000"));
            }
        }
        if let Some(t) = self.rotation.tick_ms {
            if !(50..=60_000).contains(&t) {
                return Err(format!("rotation.tick_ms {t} must be between 50 and 60000"));
            }
        }
        if let Some(t) = self.health.ready_max_staleness_ms {
            let range = crate::service::health::READY_MAX_STALENESS_RANGE;
            if !range.contains(&t) {
                return Err(format!(
                    "health.ready_max_staleness_ms {t} must be between {} and {}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if let Some(b) = &self.backup {
            if b.dir.as_os_str().is_empty() {
                return Err("backup.dir must name a folder".into());
            }
            if let Some(t) = b.interval_ms {
                if !(1_000..=604_800_000).contains(&t) {
                    return Err(format!("backup.interval_ms {t} must be between 1000 and 604800000"));
                }
            }
            if let Some(k) = b.keep {
                if !(1..=10_000).contains(&k) {
                    return Err(format!("backup.keep {k} must be between 1 and 10000"));
                }
            }
        }
        if let Some(t) = self.rotation.hook_timeout_ms {
            if !(100..=300_000).contains(&t) {
                return Err(format!("rotation.hook_timeout_ms {t} must be between 100 and 300000"));
            }
        }
        if let Some(f) = &self.rotation.hook_ca_file {
            let pem = std::fs::read(f).map_err(|e| format!("rotation.hook_ca_file {}: {e}", f.display()))?;
            if crate::tls::pem_certs(&pem).is_empty() {
                return Err(format!(
                    "rotation.hook_ca_file {} holds no PEM certificate",
                    f.display()
                ));
            }
        }
        self.audit_sync()?;
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
        if let Some(n) = self.cluster.default_max_versions {
            let max = coffer_model::spec::MAX_MAX_VERSIONS;
            if !(1..=max).contains(&n) {
                return Err(format!("cluster.default_max_versions {n} must be between 1 and {max}"));
            }
        }
        if let Some(ms) = self.cluster.token_record_retention_ms {
            let (min, max) = (
                coffer_model::token_gc::MIN_RETENTION_MS,
                coffer_model::token_gc::MAX_RETENTION_MS,
            );
            if !(min..=max).contains(&ms) {
                return Err(format!(
                    "cluster.token_record_retention_ms {ms} must be between {min} (1 s) and {max} (30 days)"
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
    /// With plaintext, a peer key file too; with TLS, no peer key (certificates prove membership).
    fn validate_transport(&self) -> Result<(), String> {
        let key = self.network.peer_key_file.as_ref();
        if key.is_some_and(|p| p.as_os_str().is_empty()) {
            return Err("network.peer_key_file must not be empty".into());
        }
        match (&self.tls, self.network.plaintext) {
            (Some(_), true) => Err("network.plaintext = true and [tls] are both set; remove one".into()),
            (None, false) => Err(
                "no [tls] section: add [tls] with ca_cert, cert and key (see deploy/README.md), \
                 or set network.plaintext = true (coffer dev and tests on loopback only)"
                    .into(),
            ),
            (Some(_), false) if key.is_some() => Err(
                "network.peer_key_file is for plaintext transport; with [tls], node certificates prove membership: remove it"
                    .into(),
            ),
            (Some(_), false) => self.tls_material().map(drop).map_err(|e| e.to_string()),
            (None, true) if key.is_none() => Err(
                "network.plaintext = true needs network.peer_key_file (64 hex characters, mode 0600, the same on every member; coffer dev writes one)"
                    .into(),
            ),
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
            node_name: self.node.name.clone(),
            min_free_disk_bytes: r.min_free_disk_bytes,
        }
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.write_timeout_ms.max(1))
    }
}
