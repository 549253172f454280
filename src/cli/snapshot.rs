//! `coffer snapshot save|inspect|restore`: backups of the cluster's state
//! (docs/architecture.md: Backups).
//!
//! `save` streams a consistent backup from the node at `--addr` (needs `cluster:admin`) into a
//! temporary file beside FILE, fsyncs it, reads it back in full, and only then renames it into
//! place. `inspect` checks a file offline. `restore` writes a file into the empty data dir of
//! a new cluster's bootstrap node, offline, from that node's config.

use std::path::Path;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use serde_json::Value;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::backup::census::Census;
use crate::backup::file;
use crate::backup::saving::Saving;
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Save a consistent backup of the cluster's state, streamed from the node at --addr
    /// (it first catches up with the leader). Values stay wrapped under the regions' KMS keys.
    Save {
        /// Where to write it (replaced atomically; mode 0600).
        file: PathBuf,
    },
    /// Check a backup file (every frame and its SHA-256) and show what it holds.
    Inspect { file: PathBuf },
    /// Bootstrap a new cluster from a backup: write it into the empty data dir of the node
    /// whose config is given, the one with cluster.bootstrap = true. Then start that node, and
    /// the other members with empty data dirs: they receive the state from it.
    Restore {
        file: PathBuf,
        /// The new node's server config (its cluster.id must be the backup's).
        #[arg(long)]
        config: PathBuf,
    },
}

pub async fn run(g: &Global, cmd: SnapshotCmd) -> Result<(), CliError> {
    match cmd {
        SnapshotCmd::Save { file } => save(g, &file).await,
        SnapshotCmd::Inspect { file } => {
            let mut census = Census::default();
            let v = verify(&file, &mut |p| census.add(&p.key, &p.value))?;
            report(g, &file, &v, "verified", Some(&census));
            Ok(())
        }
        SnapshotCmd::Restore { file, config } => restore(g, &file, &config),
    }
}

fn verify(path: &Path, each: &mut dyn FnMut(pb::KvPair)) -> Result<file::Verified, CliError> {
    let f = std::fs::File::open(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    file::read(f, each).map_err(|e| CliError::new(format!("{}: {e}", path.display())))
}

fn summary(path: &Path, v: &file::Verified) -> Value {
    let applied = v.header.applied.unwrap_or_default();
    json!({
        "file": path.display().to_string(),
        "cluster_id": v.header.cluster_id,
        "applied_index": applied.index,
        "applied_term": applied.term,
        "taken_at": output::time(v.header.taken_at_ms),
        "node": v.header.node,
        "region": v.header.region,
        "regions": v.header.regions,
        "coffer_version": v.header.coffer_version,
        "pairs": v.trailer.pairs,
        "bytes": v.bytes,
        "sha256": hex::encode(&v.trailer.sha256),
    })
}

/// The summary, and with `census` what the state is made of by key space.
fn report(g: &Global, path: &Path, v: &file::Verified, what: &str, census: Option<&Census>) {
    let mut s = summary(path, v);
    if let Some(c) = census {
        s["key_spaces"] = c.to_json();
    }
    match g.output {
        Output::Json => output::print_json(&s),
        Output::Table => output::say(format!(
            "{what} {}: cluster {}, index {} (term {}), taken {} on {} ({}), {} pairs, {} bytes, sha256 {}",
            path.display(),
            s["cluster_id"].as_str().unwrap_or(""),
            s["applied_index"],
            s["applied_term"],
            s["taken_at"].as_str().unwrap_or(""),
            s["node"].as_str().unwrap_or(""),
            s["region"].as_str().unwrap_or(""),
            s["pairs"],
            s["bytes"],
            s["sha256"].as_str().unwrap_or(""),
        )),
    }
    if let (Output::Table, Some(c)) = (&g.output, census) {
        output::say(format!("by key space: {}", c.line()));
    }
}

async fn save(g: &Global, path: &Path) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CliError::invalid(format!("{} names no file", path.display())))?;
    let mut out = Saving::create(&dir, &name.to_string_lossy()).map_err(CliError::new)?;
    let client = connect(g).await?;
    let mut stream = client.cluster.clone().backup(pb::BackupRequest {}).await?.into_inner();
    let (mut bytes, mut shown) = (0u64, 0u64);
    while let Some(chunk) = stream.message().await? {
        out.write(&chunk.data).map_err(CliError::new)?;
        bytes += chunk.data.len() as u64;
        if bytes - shown >= 16 << 20 {
            eprintln!("received {:.1} MiB", bytes as f64 / (1 << 20) as f64);
            shown = bytes;
        }
    }
    let v = out
        .finish()
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    report(g, path, &v, "saved", None);
    Ok(())
}

fn restore(g: &Global, path: &Path, config: &Path) -> Result<(), CliError> {
    let cfg = crate::config::ServerConfig::load(config).map_err(|e| CliError::new(e.to_string()))?;
    let data_dir = &cfg.node.data_dir;
    // Refused before the file is read: never over a node that holds anything.
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(CliError::new(format!(
            "{} is not empty: a backup is restored only into a new node's empty data dir",
            data_dir.display()
        )));
    }
    if !cfg.cluster.bootstrap {
        return Err(CliError::new(format!(
            "{}: restore into the new cluster's bootstrap node (cluster.bootstrap = true); its other members start empty",
            config.display()
        )));
    }
    let mut pairs = Vec::new();
    let v = verify(path, &mut |p| pairs.push((p.key, p.value)))?;
    if v.header.cluster_id != cfg.cluster.id {
        return Err(CliError::new(format!(
            "{} is a backup of cluster {:?}; {} is a node of cluster {:?}",
            path.display(),
            v.header.cluster_id,
            config.display(),
            cfg.cluster.id
        )));
    }
    let regions: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
    if let Some(missing) = v.header.regions.iter().find(|r| !regions.contains(&r.as_str())) {
        return Err(CliError::new(format!(
            "the backup's data keys are wrapped for region {missing}, which {} has no [[regions]] entry (and KMS key) for",
            config.display()
        )));
    }
    let applied = v.header.applied.unwrap_or_default();
    crate::private_files::make_private(data_dir).map_err(|e| CliError::new(format!("{}: {e}", data_dir.display())))?;
    let members: Vec<pb::NodeInfo> = cfg.cluster.members.iter().map(|m| m.to_node_info()).collect();
    let (log, sm) = coffer_raft::rocks::open_for_node(data_dir, cfg.node.id)
        .map_err(|e| CliError::new(format!("cannot open storage in {}: {e}", data_dir.display())))?;
    coffer_raft::backup::seed(&log, &sm, pairs, &applied, members)
        .map_err(|e| CliError::new(format!("cannot restore into {}: {e}", data_dir.display())))?;
    report(g, path, &v, &format!("restored into {}:", data_dir.display()), None);
    Ok(())
}
