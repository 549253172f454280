//! Scheduled backups (`[backup] dir, interval_ms, keep`; docs/architecture.md: Backups): the
//! leader saves one every interval into `dir` through the same path as `coffer snapshot save`
//! (a consistent view after a barrier, written to a temporary file, fsynced, read back in
//! full, renamed), then keeps the newest `keep`. Followers take none; a new leader carries on.
//!
//! Metrics: `coffer_backup_last_success_timestamp_seconds` (at start, the newest file already
//! in `dir`, so a restart does not hide an old backup), `coffer_backup_interval_seconds`,
//! `coffer_backup_bytes` (the newest), `coffer_backup_failures_total`.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coffer_raft::node::Role;

use super::saving::Saving;
use crate::service::Service;

/// Names of scheduled backups: `coffer-<UTC time>.backup`, so they sort by age.
const PREFIX: &str = "coffer-";
const SUFFIX: &str = ".backup";

#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub interval: Duration,
    pub keep: usize,
}

pub async fn run(service: Arc<Service>, s: Schedule, mut stop: tokio::sync::watch::Receiver<bool>) {
    metrics::gauge!("coffer_backup_interval_seconds").set(s.interval.as_secs_f64());
    if let Err(e) = crate::private_files::make_private(&s.dir) {
        tracing::error!(dir = %s.dir.display(), "backup dir: {e}; scheduled backups fail until it can be written");
    }
    if let Some((modified, bytes)) = newest(&s.dir) {
        metrics::gauge!("coffer_backup_last_success_timestamp_seconds").set(modified);
        metrics::gauge!("coffer_backup_bytes").set(bytes as f64);
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + s.interval, s.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if service.raft.status().role != Role::Leader {
            continue;
        }
        match take(&service, &s.dir).await {
            Ok((path, bytes)) => {
                metrics::gauge!("coffer_backup_last_success_timestamp_seconds")
                    .set(crate::time::now_ms() as f64 / 1000.0);
                metrics::gauge!("coffer_backup_bytes").set(bytes as f64);
                tracing::info!(file = %path.display(), bytes, "scheduled backup saved");
                if let Err(e) = prune(&s.dir, s.keep) {
                    tracing::warn!(dir = %s.dir.display(), "cannot remove old backups: {e}");
                }
            }
            Err(e) => {
                metrics::counter!("coffer_backup_failures_total").increment(1);
                tracing::warn!(dir = %s.dir.display(), "scheduled backup failed: {e}");
            }
        }
    }
}

/// One backup into `dir`: its path and size.
async fn take(service: &Service, dir: &Path) -> Result<(PathBuf, u64), String> {
    let mut chunks = service.backup().await.map_err(|e| e.to_string())?;
    let name = format!("{PREFIX}{}{SUFFIX}", file_time(crate::time::now_ms()));
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut out = Saving::create(&dir, &name)?;
        while let Some(chunk) = chunks.blocking_recv() {
            out.write(&chunk.map_err(|e| e.to_string())?)?;
        }
        let v = out.finish()?;
        Ok((dir.join(&name), v.bytes))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `20261207T101500.123Z`: UTC, sortable, no characters a file name dislikes.
fn file_time(ms: u64) -> String {
    crate::time::rfc3339_ms(ms).replace(['-', ':'], "")
}

/// The scheduled backups in `dir`, oldest first.
fn backups(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The newest scheduled backup's modification time (seconds since the epoch) and size.
fn newest(dir: &Path) -> Option<(f64, u64)> {
    let meta = std::fs::metadata(backups(dir).ok()?.pop()?).ok()?;
    let secs = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some((secs, meta.len()))
}

/// Removes all but the newest `keep` scheduled backups.
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let all = backups(dir)?;
    for old in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_pruning_keeps_the_newest_and_nothing_else_is_touched() {
        assert!(file_time(1_000) < file_time(2_000));
        assert!(!file_time(1_800_000_000_123).contains(':'));
        let dir = tempfile::tempdir().unwrap();
        for ms in [3_000u64, 1_000, 2_000, 4_000] {
            std::fs::write(dir.path().join(format!("{PREFIX}{}{SUFFIX}", file_time(ms))), b"x").unwrap();
        }
        std::fs::write(dir.path().join("operator-notes.txt"), b"kept").unwrap();
        prune(dir.path(), 2).unwrap();
        let left: Vec<String> = backups(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            vec![
                format!("{PREFIX}{}{SUFFIX}", file_time(3_000)),
                format!("{PREFIX}{}{SUFFIX}", file_time(4_000)),
            ]
        );
        assert!(dir.path().join("operator-notes.txt").exists());
    }
}
