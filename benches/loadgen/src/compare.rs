//! `coffer-loadgen compare`: Coffer beside etcd and the bare echo limit, on one machine, in one
//! run. Every cell (workload x value size x connections x in-flight) runs each system in turn,
//! `runs` times over (ABAB...), so drift in the machine (other load, page cache, compaction)
//! lands on both sides alike; the load average is recorded before and after every run. Cells
//! compare medians. The results go to `<out>/<date>.json` (raw runs, medians, ratios) and
//! `<out>/<date>.md` (the tables benches/README.md shows).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::cpu;
use crate::disk_space;
use crate::load;
use crate::load::Outcome;
use crate::load::Window;
use crate::systems;
use crate::target::Conn;
use crate::target::Keyspace;
use crate::target::System;
use crate::target::Workload;

#[derive(Clone, Debug, clap::Args)]
pub struct Plan {
    /// Runs of each system per cell (interleaved).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Unmeasured warm-up seconds before each run.
    #[arg(long, default_value_t = 0.5)]
    pub warmup_secs: f64,
    /// Concurrency levels as CONNECTIONSxIN_FLIGHT (in flight per connection).
    #[arg(long, value_delimiter = ',', default_value = "1x1,10x10,100x10")]
    pub concurrency: Vec<String>,
    /// Value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "256,4096")]
    pub sizes: Vec<usize>,
    /// Preloaded keys per value size.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Workloads to run.
    #[arg(long, value_delimiter = ',', default_values_t = Workload::ALL.to_vec(), value_enum)]
    pub workloads: Vec<Workload>,
    /// Systems to run (all three by default; fewer for profiling one of them).
    #[arg(long, value_delimiter = ',', default_values_t = vec![System::Coffer, System::Etcd, System::Echo], value_enum)]
    pub systems: Vec<System>,
    /// Concurrent writers for the group-commit report (the flag with no value skips it).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1,8,64")]
    pub group_commit_writers: Vec<usize>,
    /// Runs per system of the open-loop latency check (0: skip it).
    #[arg(long, default_value_t = 3)]
    pub open_loop_runs: usize,
    /// The etcd binary (3.4).
    #[arg(long, default_value = "etcd")]
    pub etcd: PathBuf,
    /// The coffer binary (default: beside this one).
    #[arg(long)]
    pub coffer: Option<PathBuf>,
    /// Where the JSON and markdown results go.
    #[arg(long, default_value = "benches/results")]
    pub out: PathBuf,
    /// Where etcd keeps its data (Coffer's nodes use the temp dir, see TMPDIR); must be a real
    /// disk so fsync costs what it costs.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Refuse to start with less than this many GiB free in the temp dir and the work dir (a
    /// full run's data grows to about 6 GiB; 0 skips the check).
    #[arg(long, default_value_t = 10.0)]
    pub min_free_gib: f64,
}

/// One measured run, as stored in the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub system: System,
    pub workload: Workload,
    pub value_bytes: usize,
    pub connections: usize,
    pub in_flight: usize,
    pub run: usize,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub loadavg_before: [f64; 3],
    pub loadavg_after: [f64; 3],
    /// CPU seconds the system's server processes and the load generator spent during the run
    /// (warm-up included), and the servers' CPU per request served.
    pub server_cpu_secs: f64,
    pub loadgen_cpu_secs: f64,
    pub server_cpu_us_per_op: f64,
}

fn parse_concurrency(s: &str) -> anyhow::Result<(usize, usize)> {
    let (c, i) = s
        .split_once('x')
        .with_context(|| format!("concurrency {s:?} must look like 10x10 (connections x in flight)"))?;
    let c: usize = c.parse().with_context(|| format!("connections in {s:?}"))?;
    let i: usize = i.parse().with_context(|| format!("in flight in {s:?}"))?;
    anyhow::ensure!(c >= 1 && i >= 1, "concurrency {s:?}: both numbers must be at least 1");
    Ok((c, i))
}

pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A system that completed no request in a measured run has stopped (a full disk stops a
/// node's Raft core); a row of zeros would read as a measurement, so the comparison ends there.
fn ensure_served(s: System, o: &Outcome, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        o.ops > 0,
        "{s} completed no request in {what} ({} errors{}): it has stopped. See its nodes' logs, \
         and check free disk space",
        o.errors,
        o.first_error
            .as_deref()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `n` connections to `system`, spread round-robin over its members.
async fn conns(
    system: System,
    n: usize,
    coffer: &systems::Coffer,
    etcd: &systems::Etcd,
    echo: &systems::EchoServer,
) -> anyhow::Result<Vec<Conn>> {
    systems::connect(n, async |i| match system {
        System::Coffer => Conn::coffer(&coffer.apis[i % coffer.apis.len()], &coffer.token).await,
        System::Etcd => Conn::etcd(&etcd.client_urls[i % etcd.client_urls.len()]).await,
        System::Echo => Conn::echo(&echo.addr).await,
    })
    .await
}

pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let levels: Vec<(usize, usize)> = plan
        .concurrency
        .iter()
        .map(|s| parse_concurrency(s))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(plan.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(plan.keys >= 1, "--keys must be at least 1");
    anyhow::ensure!(
        plan.secs > 0.0 && plan.warmup_secs >= 0.0,
        "--secs must be > 0, --warmup-secs >= 0"
    );
    let window = Window {
        warmup: Duration::from_secs_f64(plan.warmup_secs),
        measure: Duration::from_secs_f64(plan.secs),
    };
    let coffer_bin = match &plan.coffer {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("coffer"),
    };
    let work = match &plan.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("coffer-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let _cleanup = RemoveOnDrop(work.clone());
    if plan.min_free_gib > 0.0 {
        disk_space::ensure_free(&std::env::temp_dir(), plan.min_free_gib)?;
        disk_space::ensure_free(&work, plan.min_free_gib)?;
    }

    eprintln!("starting a 3-member etcd, a 3-node Coffer and the echo service on loopback ...");
    let etcd = systems::Etcd::start(&plan.etcd, &work).await?;
    let coffer = systems::Coffer::start(&coffer_bin).await?;
    let echo = systems::EchoServer::start().await?;
    eprintln!(
        "etcd {} at {:?}; coffer at {:?} (data in {}); echo at {}",
        etcd.version,
        etcd.client_urls,
        coffer.apis,
        coffer.data_dir().display(),
        echo.addr
    );

    let pids: BTreeMap<System, Vec<u32>> = [
        (
            System::Coffer,
            cpu::pids_matching(&coffer.data_dir().display().to_string()),
        ),
        (System::Etcd, cpu::pids_matching(&format!("{}/etcd-", work.display()))),
        (
            System::Echo,
            cpu::pids_matching(&format!("echo-server --listen {}", echo.addr)),
        ),
    ]
    .into_iter()
    .collect();
    for (s, p) in &pids {
        anyhow::ensure!(
            p.len() == if *s == System::Echo { 1 } else { 3 },
            "found {s} processes {p:?}"
        );
    }

    let spaces: Vec<Keyspace> = plan.sizes.iter().map(|&s| Keyspace::new(s, plan.keys)).collect();
    for ks in &spaces {
        let t = std::time::Instant::now();
        let c = conns(System::Coffer, 6, &coffer, &etcd, &echo).await?;
        load::preload(&c, 64, ks).await.context("preloading coffer")?;
        let e = conns(System::Etcd, 6, &coffer, &etcd, &echo).await?;
        load::preload(&e, 64, ks).await.context("preloading etcd")?;
        eprintln!(
            "preloaded {} keys of {} B in each ({:.1?})",
            ks.names.len(),
            ks.size,
            t.elapsed()
        );
    }
    // Every node must know the bench token and hold the preload before reads are timed.
    let probe = &spaces[0];
    for i in 0..coffer.apis.len() {
        let mut c = Conn::coffer(&coffer.apis[i], &coffer.token).await?;
        let last = probe.names.len() - 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Err(e) = c.call(Workload::LocalRead, probe, last).await {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "coffer node {i} cannot serve the preload: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut runs: Vec<Run> = Vec::new();
    for &workload in &plan.workloads {
        for ks in &spaces {
            for &(nc, inflight) in &levels {
                let systems: Vec<System> = plan
                    .systems
                    .iter()
                    .copied()
                    .filter(|&s| s != System::Echo || workload == Workload::LocalRead)
                    .collect();
                let mut pools = BTreeMap::new();
                for &s in &systems {
                    pools.insert(s, conns(s, nc, &coffer, &etcd, &echo).await?);
                }
                for r in 0..plan.runs {
                    for &s in &systems {
                        let before = loadavg();
                        let (cpu0, own0) = (cpu::total(&pids[&s]), cpu::own_cpu_secs());
                        let outcome = load::closed_loop(&pools[&s], inflight, workload, ks, window).await;
                        let (cpu1, own1) = (cpu::total(&pids[&s]), cpu::own_cpu_secs());
                        let after = loadavg();
                        let served = outcome.ops_per_sec * (window.warmup + window.measure).as_secs_f64();
                        let per_op = if served > 0.0 {
                            (cpu1 - cpu0) * 1e6 / served
                        } else {
                            f64::NAN
                        };
                        eprintln!(
                            "{:<18} {:>4} B {:>3}x{:<3} run {r} {:<6} {:>9.0} ops/s  p50 {:>6} us  p99 {:>7} us  server CPU {:>5.0} us/op{}",
                            workload.name(),
                            ks.size,
                            nc,
                            inflight,
                            s,
                            outcome.ops_per_sec,
                            outcome.latency_us.p50,
                            outcome.latency_us.p99,
                            per_op,
                            match &outcome.first_error {
                                Some(e) => format!("  {} errors, first: {e}", outcome.errors),
                                None => String::new(),
                            }
                        );
                        ensure_served(s, &outcome, &format!("{} run {r} at {nc}x{inflight}", workload.name()))?;
                        runs.push(Run {
                            system: s,
                            workload,
                            value_bytes: ks.size,
                            connections: nc,
                            in_flight: inflight,
                            run: r,
                            outcome,
                            loadavg_before: before,
                            loadavg_after: after,
                            server_cpu_secs: cpu1 - cpu0,
                            loadgen_cpu_secs: own1 - own0,
                            server_cpu_us_per_op: per_op,
                        });
                    }
                }
            }
        }
    }

    let summary = summarize(&runs);
    let open = if plan.open_loop_runs > 0 {
        open_loop_runs(&plan, &summary, &spaces[0], window, &coffer, &etcd, &echo).await?
    } else {
        vec![]
    };
    let group = group_commit(&plan, &spaces[0], &coffer, &etcd, &echo).await?;

    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let day = &date[..10];
    let ratios = ratios(&summary, plan.sizes.first().copied().unwrap_or(256));
    let ratios_by_size: BTreeMap<String, serde_json::Value> = plan
        .sizes
        .iter()
        .map(|&s| (s.to_string(), serde_json::to_value(ratios_of(&summary, s)).unwrap()))
        .collect();
    let doc = json!({
        "date": date,
        "machine": machine(),
        "versions": {"etcd": etcd.version, "coffer": env!("CARGO_PKG_VERSION"), "coffer_commit": git_commit()},
        "method": {
            "runs_per_cell": plan.runs,
            "measure_secs": plan.secs,
            "warmup_secs": plan.warmup_secs,
            "concurrency": plan.concurrency,
            "value_sizes": plan.sizes,
            "preloaded_keys_per_size": plan.keys,
            "order": "each cell runs coffer, etcd (and echo for local reads) in turn, runs times over",
            "coffer": "3 nodes (us-east, eu-west, ap-south) on loopback, default Raft timings, RocksDB WAL fsynced before a write is acknowledged, a non-root token with a policy, every request authorized and audited (audit record fdatasync'd, batched, before the answer)",
            "etcd": "3 members on loopback, default settings (WAL fsynced), no auth",
            "echo": "a bare tonic unary service answering with a payload of the value size",
            "connections": "spread round-robin over the members; followers forward writes (and linearizable reads) to the leader on both systems",
            "build": "the dev profile make test uses, with the workspace at opt-level 2 and the request-path crates at 3 (Cargo.toml); debug assertions on",
        },
        "ratios": ratios,
        "ratios_by_value_bytes": ratios_by_size,
        "targets": targets(&ratios),
        "summary": summary.iter().map(|(k, v)| json!({
            "workload": k.1.name(), "system": k.0, "value_bytes": k.2, "connections": k.3, "in_flight": k.4,
            "median_ops_per_sec": v.ops, "median_p50_us": v.p50, "median_p99_us": v.p99,
            "median_server_cpu_us_per_op": v.cpu_us_per_op, "errors": v.errors,
        })).collect::<Vec<_>>(),
        "open_loop": open,
        "group_commit": group,
        "runs": runs,
        "elapsed_secs": started.elapsed().as_secs_f64(),
    });
    std::fs::create_dir_all(&plan.out).with_context(|| format!("cannot create {}", plan.out.display()))?;
    let json_path = plan.out.join(format!("{day}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let md = markdown(&doc, &summary, &levels, &plan);
    let md_path = plan.out.join(format!("{day}.md"));
    std::fs::write(&md_path, &md)?;
    println!("{md}");
    eprintln!(
        "wrote {} and {} in {:.0?}",
        json_path.display(),
        md_path.display(),
        started.elapsed()
    );
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Medians of one (system, workload, size, connections, in-flight) over its runs.
#[derive(Clone, Copy, Debug)]
pub struct Medians {
    pub ops: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu_us_per_op: f64,
    pub errors: u64,
}

type SummaryKey = (System, Workload, usize, usize, usize);

fn summarize(runs: &[Run]) -> BTreeMap<SummaryKey, Medians> {
    let mut groups: BTreeMap<SummaryKey, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.system, r.workload, r.value_bytes, r.connections, r.in_flight))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|(k, rs)| {
            let m = Medians {
                ops: median(rs.iter().map(|r| r.outcome.ops_per_sec).collect()),
                p50: median(rs.iter().map(|r| r.outcome.latency_us.p50 as f64).collect()),
                p99: median(rs.iter().map(|r| r.outcome.latency_us.p99 as f64).collect()),
                cpu_us_per_op: median(rs.iter().map(|r| r.server_cpu_us_per_op).collect()),
                errors: rs.iter().map(|r| r.outcome.errors).sum(),
            };
            (k, m)
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub local_read_vs_etcd_serializable: Option<f64>,
    pub linearizable_read_vs_etcd_linearizable: Option<f64>,
    pub write_vs_etcd_put: Option<f64>,
    pub local_read_vs_bare_echo: Option<f64>,
}

/// Throughput ratios of the medians at 10 connections x 10 in flight.
fn ratios_of(s: &BTreeMap<SummaryKey, Medians>, size: usize) -> Ratios {
    let at = |sys, w| s.get(&(sys, w, size, 10, 10)).map(|m| m.ops);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    };
    Ratios {
        local_read_vs_etcd_serializable: ratio(
            at(System::Coffer, Workload::LocalRead),
            at(System::Etcd, Workload::LocalRead),
        ),
        linearizable_read_vs_etcd_linearizable: ratio(
            at(System::Coffer, Workload::LinearizableRead),
            at(System::Etcd, Workload::LinearizableRead),
        ),
        write_vs_etcd_put: ratio(at(System::Coffer, Workload::Write), at(System::Etcd, Workload::Write)),
        local_read_vs_bare_echo: ratio(
            at(System::Coffer, Workload::LocalRead),
            at(System::Echo, Workload::LocalRead),
        ),
    }
}

fn ratios(s: &BTreeMap<SummaryKey, Medians>, size: usize) -> serde_json::Value {
    let mut v = serde_json::to_value(ratios_of(s, size)).unwrap();
    v["value_bytes"] = json!(size);
    v["at"] = json!("10x10 (connections x in flight), medians");
    v
}

const TARGETS: [(&str, f64); 4] = [
    ("local_read_vs_etcd_serializable", 1.5),
    ("linearizable_read_vs_etcd_linearizable", 1.0),
    ("write_vs_etcd_put", 1.0),
    ("local_read_vs_bare_echo", 0.7),
];

fn targets(ratios: &serde_json::Value) -> serde_json::Value {
    TARGETS
        .iter()
        .map(|(name, target)| {
            let got = ratios[name].as_f64();
            (
                name.to_string(),
                json!({"target": target, "measured": got, "met": got.map(|g| g >= *target)}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Latency at a fixed arrival rate (half the slower system's closed-loop 10x10 median), so
/// both systems get the same offered load.
async fn open_loop_runs(
    plan: &Plan,
    summary: &BTreeMap<SummaryKey, Medians>,
    ks: &Keyspace,
    window: Window,
    coffer: &systems::Coffer,
    etcd: &systems::Etcd,
    echo: &systems::EchoServer,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = vec![];
    for &workload in &plan.workloads {
        let stores: Vec<System> = plan.systems.iter().copied().filter(|&s| s != System::Echo).collect();
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
            pools.insert(s, conns(s, 10, coffer, etcd, echo).await?);
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
async fn group_commit(
    plan: &Plan,
    ks: &Keyspace,
    coffer: &systems::Coffer,
    etcd: &systems::Etcd,
    echo: &systems::EchoServer,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = vec![];
    let window = Window {
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(3),
    };
    for &writers in &plan.group_commit_writers {
        let nc = writers.clamp(1, 8);
        let inflight = writers.div_ceil(nc);
        for s in plan.systems.iter().copied().filter(|&s| s != System::Echo) {
            let pool = conns(s, nc, coffer, etcd, echo).await?;
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

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "temp_dir": std::env::temp_dir(),
    })
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn fmt_ops(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.0}")
    }
}

fn fmt_ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn markdown(
    doc: &serde_json::Value,
    s: &BTreeMap<SummaryKey, Medians>,
    levels: &[(usize, usize)],
    plan: &Plan,
) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Run {} on {} CPUs ({}), etcd {}, coffer {}; {} runs per cell of {} s after {} s warm-up, medians; \
         `make bench-compare`.\n",
        doc["date"].as_str().unwrap_or(""),
        doc["machine"]["cpus"],
        doc["machine"]["cpu_model"].as_str().unwrap_or("?"),
        doc["versions"]["etcd"].as_str().unwrap_or("?"),
        doc["versions"]["coffer_commit"].as_str().unwrap_or("?"),
        plan.runs,
        plan.secs,
        plan.warmup_secs,
    );
    let _ = writeln!(
        md,
        "| ratio (10x10, {} B, medians) | measured | target | met |",
        doc["ratios"]["value_bytes"]
    );
    let _ = writeln!(md, "|---|---|---|---|");
    for (name, t) in TARGETS {
        let got = doc["ratios"][name].as_f64();
        let _ = writeln!(
            md,
            "| `{name}` | {} | >= {t} | {} |",
            got.map(|g| format!("{g:.2}x")).unwrap_or("-".into()),
            match got {
                Some(g) if g >= t => "yes",
                Some(_) => "**no**",
                None => "-",
            }
        );
    }
    let _ = writeln!(
        md,
        "\n| workload (coffer / etcd) | value | conns x in flight | coffer ops/s | etcd ops/s | coffer/etcd | coffer p50 / p99 ms | etcd p50 / p99 ms | server CPU µs/op coffer / etcd | echo ops/s | coffer/echo |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for &w in &plan.workloads {
        for &size in &plan.sizes {
            for &(c, i) in levels {
                let get = |sys| s.get(&(sys, w, size, c, i)).copied();
                let (Some(a), Some(b)) = (get(System::Coffer), get(System::Etcd)) else {
                    continue;
                };
                let echo = get(System::Echo);
                let errs = if a.errors + b.errors > 0 {
                    format!(" (errors: coffer {}, etcd {})", a.errors, b.errors)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    md,
                    "| {} / {}{errs} | {size} B | {c}x{i} | {} | {} | {:.2}x | {} / {} | {} / {} | {:.0} / {:.0} | {} | {} |",
                    w.label(System::Coffer),
                    w.label(System::Etcd),
                    fmt_ops(a.ops),
                    fmt_ops(b.ops),
                    a.ops / b.ops,
                    fmt_ms(a.p50),
                    fmt_ms(a.p99),
                    fmt_ms(b.p50),
                    fmt_ms(b.p99),
                    a.cpu_us_per_op,
                    b.cpu_us_per_op,
                    echo.map(|e| fmt_ops(e.ops)).unwrap_or("".into()),
                    echo.map(|e| format!("{:.2}x", a.ops / e.ops)).unwrap_or("".into()),
                );
            }
        }
    }
    if let Some(open) = doc["open_loop"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(
            md,
            "\nOpen loop (fixed arrival rate, latency from each request's intended start), medians over runs:\n"
        );
        let _ = writeln!(
            md,
            "| workload | value | rate/s | system | p50 ms | p99 ms | p99.9 ms | max ms | shed |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        let mut groups: BTreeMap<(String, String), Vec<&serde_json::Value>> = BTreeMap::new();
        for r in open {
            groups
                .entry((r["workload"].to_string(), r["system"].to_string()))
                .or_default()
                .push(r);
        }
        for ((w, sys), rs) in groups {
            let q = |k: &str| {
                median(
                    rs.iter()
                        .filter_map(|r| r["outcome"]["latency_us"][k].as_f64())
                        .collect(),
                )
            };
            let _ = writeln!(
                md,
                "| {} | {} B | {} | {} | {} | {} | {} | {} | {} |",
                w.trim_matches('"'),
                rs[0]["value_bytes"],
                rs[0]["outcome"]["target_rate"],
                sys.trim_matches('"'),
                fmt_ms(q("p50")),
                fmt_ms(q("p99")),
                fmt_ms(q("p999")),
                fmt_ms(q("max")),
                rs.iter().filter_map(|r| r["outcome"]["shed"].as_u64()).sum::<u64>(),
            );
        }
    }
    if let Some(group) = doc["group_commit"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(
            md,
            "\nGroup commit (leader, {} B writes, 3 s):\n",
            plan.sizes.first().unwrap_or(&256)
        );
        let _ = writeln!(
            md,
            "| writers | system | writes/s | Raft entries | WAL fsyncs | entries per fsync |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for g in group {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                g["writers"],
                g["system"].as_str().unwrap_or("?"),
                fmt_ops(g["writes_per_sec"].as_f64().unwrap_or(f64::NAN)),
                fmt_ops(g["leader_entries"].as_f64().unwrap_or(f64::NAN)),
                fmt_ops(g["leader_wal_fsyncs"].as_f64().unwrap_or(f64::NAN)),
                g["entries_per_fsync"],
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ops: u64, errors: u64, first_error: Option<&str>) -> Outcome {
        let latency = load::Latency {
            p50: 0,
            p90: 0,
            p99: 0,
            p999: 0,
            max: 0,
            mean: 0.0,
        };
        Outcome {
            ops,
            errors,
            secs: 3.0,
            ops_per_sec: ops as f64 / 3.0,
            latency_us: latency,
            first_error: first_error.map(String::from),
            target_rate: None,
            shed: None,
        }
    }

    #[test]
    fn a_run_that_served_nothing_ends_the_comparison_and_says_which_and_why() {
        // The full-disk run: every request hung, so no completion and no error either.
        let err = ensure_served(
            System::Coffer,
            &outcome(0, 0, None),
            "the group-commit run with 64 writers",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("coffer completed no request in the group-commit run with 64 writers"),
            "{err}"
        );
        assert!(err.contains("free disk space"), "{err}");
        let err = ensure_served(
            System::Etcd,
            &outcome(0, 7, Some("connection refused")),
            "write run 2 at 10x10",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("etcd") && err.contains("7 errors, first: connection refused"),
            "{err}"
        );
        // One completed request is a (bad) measurement, and it is reported, not refused.
        ensure_served(
            System::Coffer,
            &outcome(1, 500, Some("Timeout expired")),
            "local_read run 0 at 1x1",
        )
        .unwrap();
    }
}
