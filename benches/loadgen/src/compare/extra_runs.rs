//! The runs beside the closed-loop cells: latency at a fixed arrival rate, and group commit.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::measure::conns;
use super::measure::ensure_served;
use super::measure::loadavg;
use super::measure::Fleet;
use super::plan::Plan;
use super::summary::Medians;
use super::summary::SummaryKey;
use crate::load;
use crate::load::Window;
use crate::target::Keyspace;
use crate::target::System;
use crate::target::Workload;

/// Latency at a fixed arrival rate (half the slower system's closed-loop 10x10 median), so
/// both systems get the same offered load.
pub(super) async fn open_loop_runs(
    plan: &Plan,
    summary: &BTreeMap<SummaryKey, Medians>,
    ks: &Keyspace,
    window: Window,
    fleet: &Fleet,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = vec![];
    for &workload in &plan.workloads {
        let stores: Vec<System> = plan.systems.iter().copied().filter(|&s| s.is_store()).collect();
        let rates: Vec<f64> = stores
            .iter()
            .filter_map(|&s| summary.get(&(s, workload, ks.size, 10, 10)).map(|m| m.ops))
            .collect();
        if rates.is_empty() {
            continue;
        }
        let rate = (rates.iter().cloned().fold(f64::INFINITY, f64::min) * 0.5)
            .max(10.0)
            .round();
        let mut pools = BTreeMap::new();
        for &s in &stores {
            pools.insert(s, conns(s, 10, fleet).await?);
        }
        for r in 0..plan.open_loop_runs {
            for &s in &stores {
                let before = loadavg();
                let o = load::open_loop(&pools[&s], rate, 10_000, workload, ks, window).await;
                let after = loadavg();
                eprintln!(
                    "open loop {:<18} {:>4} B at {rate:>7.0}/s run {r} {:<6} p50 {:>6} us  p99 {:>7} us  p99.9 {:>7} us  max {:>7} us  shed {}",
                    workload.name(),
                    ks.size,
                    s,
                    o.latency_us.p50,
                    o.latency_us.p99,
                    o.latency_us.p999,
                    o.latency_us.max,
                    o.shed.unwrap_or(0)
                );
                out.push(json!({
                    "system": s, "workload": workload, "value_bytes": ks.size, "connections": 10, "run": r,
                    "outcome": o, "loadavg_before": before, "loadavg_after": after,
                }));
            }
        }
    }
    Ok(out)
}

/// Raft entries per WAL fsync on each system's leader with 1, 8, 64 concurrent writers.
pub(super) async fn group_commit(plan: &Plan, ks: &Keyspace, fleet: &Fleet) -> anyhow::Result<Vec<serde_json::Value>> {
    let (coffer, etcd) = (&fleet.coffer, &fleet.etcd);
    let mut out = vec![];
    let window = Window {
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(3),
    };
    for &writers in &plan.group_commit_writers {
        let nc = writers.clamp(1, 8);
        let inflight = writers.div_ceil(nc);
        for s in plan.systems.iter().copied().filter(|&s| s.is_store()) {
            let pool = conns(s, nc, fleet).await?;
            let leader = match s {
                System::Coffer => coffer.cluster.wait_leader(Duration::from_secs(10)).await,
                _ => etcd.leader().await?,
            };
            let counters = async || match s {
                System::Coffer => Ok(coffer.log_counters(leader).await),
                _ => etcd.log_counters(leader).await,
            };
            let (e0, f0) = counters().await?;
            let o = load::closed_loop(&pool, inflight, Workload::Write, ks, window).await;
            ensure_served(s, &o, &format!("the group-commit run with {writers} writers"))?;
            // Coffer publishes its counters every 500 ms.
            tokio::time::sleep(Duration::from_millis(600)).await;
            let (e1, f1) = counters().await?;
            let (entries, fsyncs) = (e1 - e0, f1 - f0);
            let per = if fsyncs > 0.0 { entries / fsyncs } else { f64::NAN };
            eprintln!(
                "group commit {s:<6} {writers:>3} writers: {:>8.0} writes/s, {entries:.0} entries / {fsyncs:.0} fsyncs = {per:.2} entries per fsync (leader)",
                o.ops_per_sec
            );
            out.push(json!({
                "system": s, "writers": writers, "connections": nc, "in_flight": inflight,
                "writes_per_sec": o.ops_per_sec, "leader_entries": entries, "leader_wal_fsyncs": fsyncs,
                "entries_per_fsync": (per * 100.0).round() / 100.0, "errors": o.errors,
                "counters": match s {
                    System::Coffer => "coffer_raft_log_entries_appended_total / coffer_raft_wal_fsyncs_total",
                    _ => "etcd_server_proposals_committed_total / etcd_disk_wal_fsync_duration_seconds_count",
                },
            }));
        }
    }
    Ok(out)
}
