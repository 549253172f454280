//! Bytes on disk per write. After the timed runs, each store takes the same count of 256 B
//! writes (new versions of the preloaded names, `--disk-writes`, 64 at a time); its members'
//! data on disk is summed before and after (allocated blocks, like `du`), split into the parts
//! a store keeps (its Raft log, its state, its snapshots, its audit log), and divided by the
//! writes. The figure after the writes is what a store holds once its own purge and compaction
//! ran for `--disk-settle-secs`; each store keeps its default history (Coffer: 100 versions per
//! secret; etcd 3.4: every revision, no auto-compaction; OpenBao KV v2: 10 versions).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use coffer::backup::census::Census;
use serde_json::json;

use super::measure::conns;
use super::measure::Fleet;
use super::plan::Plan;
use crate::load;
use crate::target::Keyspace;
use crate::target::System;

/// Bytes by part, summed over a store's members.
pub(super) type Parts = BTreeMap<&'static str, u64>;

/// Allocated bytes of every file under `path` (a file or a folder), added to `parts` under the
/// part `classify` names for its path relative to `root`.
fn add(parts: &mut Parts, root: &Path, path: &Path, classify: &dyn Fn(&str) -> &'static str) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for e in entries.flatten() {
            add(parts, root, &e.path(), classify);
        }
    } else if meta.is_file() {
        let rel = path.strip_prefix(root).unwrap_or(path).to_string_lossy();
        *parts.entry(classify(&rel)).or_default() += meta.blocks() * 512;
    }
}

/// Coffer node `<node>/data/`: RocksDB (`db/`: the Raft log and the state, which is also the
/// snapshot, in SST files, and their shared WAL, `*.log`), `audit.log`.
pub(super) fn coffer_part(rel: &str) -> &'static str {
    let rel = rel.split_once("/data/").map(|(_, r)| r).unwrap_or(rel);
    if rel.starts_with("db/") && rel.ends_with(".log") {
        "rocksdb WAL"
    } else if rel.starts_with("db/") {
        "rocksdb (log + state)"
    } else if rel.starts_with("audit") {
        "audit"
    } else {
        "other"
    }
}

/// etcd member `etcd-N/member/`: `wal/` (the Raft log), `snap/db` (bbolt: the state),
/// `snap/*.snap` (Raft snapshots).
pub(super) fn etcd_part(rel: &str) -> &'static str {
    if rel.contains("/member/wal/") {
        "log"
    } else if rel.ends_with("/member/snap/db") {
        "state"
    } else if rel.contains("/member/snap/") {
        "snapshots"
    } else {
        "other"
    }
}

/// OpenBao node `openbao-nI/`: `raft/raft.db` (bbolt: the Raft log), `vault.db` (bbolt: the
/// state), `raft/snapshots/`; `openbao-nI-audit.log` beside it.
pub(super) fn openbao_part(rel: &str) -> &'static str {
    if rel.ends_with("-audit.log") {
        "audit"
    } else if rel.ends_with("/raft/raft.db") {
        "log"
    } else if rel.ends_with("/vault.db") {
        "state"
    } else if rel.contains("/raft/snapshots/") {
        "snapshots"
    } else {
        "other"
    }
}

/// The parts of `system`'s members now.
fn measure(system: System, fleet: &Fleet, work: &Path) -> anyhow::Result<Parts> {
    let mut parts = Parts::new();
    match system {
        System::Coffer => {
            let root = fleet.coffer.data_dir();
            for n in &fleet.coffer.cluster.file.nodes {
                add(&mut parts, &root, &root.join(&n.name).join("data"), &coffer_part);
            }
        }
        System::Etcd => {
            for i in 1..=3 {
                add(&mut parts, work, &work.join(format!("etcd-{i}")), &etcd_part);
            }
        }
        System::OpenBao => {
            let n = fleet.openbao.as_ref().context("OpenBao is not running")?.apis.len();
            for i in 0..n {
                add(&mut parts, work, &work.join(format!("openbao-n{i}")), &openbao_part);
                add(
                    &mut parts,
                    work,
                    &work.join(format!("openbao-n{i}-audit.log")),
                    &openbao_part,
                );
            }
        }
        _ => {}
    }
    Ok(parts)
}

/// What Coffer's state is made of after the writes: a backup streamed from node 0 (the
/// cluster's root client), counted by key space. The bytes are the records' own, before
/// RocksDB's compression and files.
async fn coffer_state(fleet: &Fleet) -> anyhow::Result<Census> {
    let client = fleet.coffer.cluster.client(0).await;
    let mut stream = client
        .cluster
        .clone()
        .backup(coffer::pb::BackupRequest {})
        .await
        .context("a backup for the state census")?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    let mut census = Census::default();
    coffer::backup::file::read(&bytes[..], &mut |p| census.add(&p.key, &p.value))
        .context("reading the census backup")?;
    Ok(census)
}

/// The disk report of every store the plan runs.
pub(super) async fn disk_per_write(
    plan: &Plan,
    ks: &Keyspace,
    fleet: &Fleet,
    work: &Path,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = vec![];
    if plan.disk_writes == 0 {
        return Ok(out);
    }
    for s in [System::Coffer, System::Etcd, System::OpenBao] {
        if !plan.systems.contains(&s) {
            continue;
        }
        let before = measure(s, fleet, work)?;
        let pool = conns(s, 8, fleet).await?;
        let t = std::time::Instant::now();
        load::write_n(&pool, 64, ks, plan.disk_writes)
            .await
            .with_context(|| format!("{s}: the disk run's writes"))?;
        let took = t.elapsed();
        tokio::time::sleep(Duration::from_secs_f64(plan.disk_settle_secs)).await;
        let after = measure(s, fleet, work)?;
        let per_write: BTreeMap<&str, f64> = after
            .iter()
            .map(|(part, &b)| {
                let grew = b as f64 - before.get(part).copied().unwrap_or(0) as f64;
                (*part, (grew / plan.disk_writes as f64).round())
            })
            .collect();
        let total_per_write: f64 = per_write.values().sum();
        eprintln!(
            "disk {s:<8} {} writes of {} B in {took:.1?}: {total_per_write:.0} bytes on disk per write over 3 members {per_write:?}",
            plan.disk_writes, ks.size
        );
        let mut report = json!({
            "system": s, "writes": plan.disk_writes, "value_bytes": ks.size,
            "settle_secs": plan.disk_settle_secs,
            "bytes_before": before, "bytes_after": after,
            "bytes_per_write_by_part": per_write,
            "bytes_per_write": total_per_write,
        });
        if s == System::Coffer {
            let census = coffer_state(fleet).await?;
            eprintln!("disk coffer state (one replica) by key space: {}", census.line());
            report["state_by_key_space"] = census.to_json();
        }
        out.push(report);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_file_lands_in_its_part() {
        assert_eq!(coffer_part("us-east/data/db/000012.sst"), "rocksdb (log + state)");
        assert_eq!(coffer_part("us-east/data/db/000015.log"), "rocksdb WAL");
        assert_eq!(coffer_part("us-east/data/db/MANIFEST-000005"), "rocksdb (log + state)");
        assert_eq!(coffer_part("us-east/data/audit.log"), "audit");
        assert_eq!(
            etcd_part("etcd-1/member/wal/0000000000000000-0000000000000000.wal"),
            "log"
        );
        assert_eq!(etcd_part("etcd-1/member/snap/db"), "state");
        assert_eq!(
            etcd_part("etcd-1/member/snap/0000000000000002-0000000000002711.snap"),
            "snapshots"
        );
        assert_eq!(openbao_part("openbao-n0/raft/raft.db"), "log");
        assert_eq!(openbao_part("openbao-n0/vault.db"), "state");
        assert_eq!(
            openbao_part("openbao-n0/raft/snapshots/3-10-1.snap/state.bin"),
            "snapshots"
        );
        assert_eq!(openbao_part("openbao-n0-audit.log"), "audit");
    }

    #[test]
    fn a_folder_is_summed_by_part_in_allocated_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("n1/data/db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("1.sst"), vec![7u8; 10_000]).unwrap();
        std::fs::write(dir.path().join("n1/data/audit.log"), vec![7u8; 5000]).unwrap();
        let mut parts = Parts::new();
        add(&mut parts, dir.path(), &dir.path().join("n1/data"), &coffer_part);
        assert!(parts["rocksdb (log + state)"] >= 10_000, "{parts:?}");
        assert!(parts["audit"] >= 5000 && parts["audit"] < 10_000, "{parts:?}");
        assert_eq!(parts.len(), 2, "{parts:?}");
    }
}
