//! The plan of a dev cluster (`cluster.json`): its id, root token and one node per region, made
//! once per DIR and reused.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;
use serde::Serialize;

use crate::authz;
use crate::cli::CliError;
use crate::cli::DevArgs;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub cluster_id: String,
    pub root_token: String,
    pub nodes: Vec<DevNode>,
    /// The CA certificate of a TLS cluster (its nodes' configs then use the certificates in
    /// [`tls_dir`]); absent for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevNode {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub api: String,
    pub raft: String,
    /// The HTTP/JSON API (empty in files written before it existed: then the API port + 200).
    #[serde(default)]
    pub http: String,
    pub pid: u32,
}

pub(super) fn err(msg: impl Into<String>) -> CliError {
    CliError::new(msg)
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(format!("cannot write {}: {e}", tmp.display())))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Where a plaintext dev or test cluster keeps its peer key.
pub fn peer_key_path(dir: &Path) -> std::path::PathBuf {
    dir.join("peer.key")
}

/// DIR/peer.key: 32 random bytes in hex, mode 0600, made once and reused (every member of a
/// plaintext cluster proves membership with it).
pub fn ensure_peer_key(dir: &Path) -> Result<std::path::PathBuf, CliError> {
    let path = peer_key_path(dir);
    if !path.exists() {
        let key = crate::crypto::random_bytes::<{ coffer_raft::peer_auth::PEER_KEY_BYTES }>()
            .map_err(|e| err(format!("cannot make a peer key: {e}")))?;
        write_private(&path, format!("{}\n", hex::encode(key)).as_bytes())?;
    }
    Ok(path)
}

/// Loads DIR/cluster.json or makes a new cluster description.
pub fn plan(args: &DevArgs, dir: &Path) -> Result<ClusterFile, CliError> {
    if args.regions.is_empty() {
        return Err(err("--regions needs at least one region"));
    }
    for r in &args.regions {
        if !coffer_model::names::is_valid_segment(r) {
            return Err(err(format!("region {r:?} must match [a-z0-9][a-z0-9._-]{{0,62}}")));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = args.regions.iter().find(|r| !seen.insert(*r)) {
        return Err(err(format!("region {dup} is listed twice")));
    }
    if args.base_port as usize + 200 + args.regions.len() > u16::MAX as usize {
        return Err(err("--base-port is too high"));
    }
    let path = dir.join("cluster.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        let file: ClusterFile = serde_json::from_str(&text).map_err(|e| {
            err(format!(
                "{} is not a coffer dev cluster file ({e}); use another --data-dir",
                path.display()
            ))
        })?;
        let regions: Vec<&str> = file.nodes.iter().map(|n| n.region.as_str()).collect();
        let wanted: Vec<&str> = args.regions.iter().map(String::as_str).collect();
        if regions != wanted {
            return Err(err(format!(
                "{} holds a cluster in regions {} but --regions asks for {}; use another --data-dir or delete it",
                dir.display(),
                regions.join(","),
                wanted.join(",")
            )));
        }
        // The membership records each node's address, so a reused cluster keeps its ports.
        let recorded = file.nodes.first().map(|n| n.api.clone()).unwrap_or_default();
        if recorded != format!("127.0.0.1:{}", args.base_port) {
            return Err(err(format!(
                "{} holds a cluster whose first node listens on {recorded}; pass the --base-port it \
                 was made with, or use another --data-dir",
                dir.display()
            )));
        }
        let mut file = file;
        for n in file.nodes.iter_mut().filter(|n| n.http.is_empty()) {
            let port = n
                .api
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .unwrap_or(0);
            n.http = format!("127.0.0.1:{}", port.saturating_add(200));
        }
        return Ok(file);
    }
    let token = authz::new_token().map_err(|e| err(e.to_string()))?;
    let id = crate::crypto::random_bytes::<4>().map_err(|e| err(e.to_string()))?;
    Ok(ClusterFile {
        cluster_id: format!("dev-{}", hex::encode(id)),
        ca_cert: None,
        root_token: token,
        nodes: args
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| DevNode {
                id: i as u64 + 1,
                name: format!("{r}-1"),
                region: r.clone(),
                api: format!("127.0.0.1:{}", args.base_port as usize + i),
                raft: format!("127.0.0.1:{}", args.base_port as usize + 100 + i),
                http: format!("127.0.0.1:{}", args.base_port as usize + 200 + i),
                pid: 0,
            })
            .collect(),
    })
}

/// Raft timing for loopback clusters.
pub const LOOPBACK_RAFT: &str = "heartbeat_ms = 100\nelection_timeout_min_ms = 800\nelection_timeout_max_ms = 1600\n";
