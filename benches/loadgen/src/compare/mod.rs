//! `coffer-loadgen compare`: Coffer beside etcd, OpenBao and the bare echo limit, on one
//! machine, in one run. Every cell (workload x value size x connections x in-flight) runs each system in turn,
//! `runs` times over (ABAB...), so drift in the machine (other load, page cache, compaction)
//! lands on both sides alike; the load average is recorded before and after every run. Cells
//! compare medians. The results go to `<out>/<date>.json` (raw runs, medians, ratios) and
//! `<out>/<date>.md` (the tables benches/README.md shows).

mod client_check;
mod disk_use;
mod extra_runs;
mod measure;
mod plan;
mod report;
mod summary;

pub use plan::Plan;
pub use plan::Run;
pub use plan::CLIENT_BOUND_SHARE;

use measure::conns;
use measure::ensure_served;
use measure::loadavg;
use measure::Fleet;
use plan::parse_concurrency;

use extra_runs::group_commit;
use extra_runs::open_loop_runs;
use report::git_commit;
use report::machine;
use report::markdown;
use summary::disk_ratio;
use summary::ratios;
use summary::ratios_of;
use summary::summarize;
use summary::targets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::cpu;
use crate::disk_space;
use crate::load;
use crate::load::Window;
use crate::openbao::OpenBao;
use crate::systems;
use crate::target::Conn;
use crate::target::Keyspace;
use crate::target::System;
use crate::target::Workload;

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

    let with_openbao = plan
        .systems
        .iter()
        .any(|s| matches!(s, System::OpenBao | System::OpenBaoStandby));
    eprintln!(
        "starting a 3-member etcd, a 3-node Coffer{} and the echo service on loopback ...",
        if with_openbao { ", a 3-node OpenBao" } else { "" }
    );
    let etcd = systems::Etcd::start(&plan.etcd, &work).await?;
    let coffer = systems::Coffer::start(&coffer_bin).await?;
    let echo = systems::EchoServer::start().await?;
    let openbao = match with_openbao {
        true => Some(OpenBao::start(&plan.openbao, &work).await?),
        false => None,
    };
    eprintln!(
        "etcd {} at {:?}; coffer at {:?} (data in {}); echo at {}{}",
        etcd.version,
        etcd.client_urls,
        coffer.apis,
        coffer.data_dir().display(),
        echo.addr,
        openbao
            .as_ref()
            .map(|b| format!("; openbao {} at {:?} (active: {})", b.version, b.apis, b.active))
            .unwrap_or_default()
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
        (
            System::CofferHttp,
            cpu::pids_matching(&coffer.data_dir().display().to_string()),
        ),
        (System::OpenBao, openbao_pids(&work, with_openbao)),
        (System::OpenBaoStandby, openbao_pids(&work, with_openbao)),
    ]
    .into_iter()
    .collect();
    for (s, p) in &pids {
        let expected = match s {
            System::Echo => 1,
            System::OpenBao | System::OpenBaoStandby if !with_openbao => 0,
            _ => 3,
        };
        anyhow::ensure!(p.len() == expected, "found {s} processes {p:?}");
    }
    let fleet = Fleet {
        coffer,
        etcd,
        echo,
        openbao,
    };
    let (coffer, etcd) = (&fleet.coffer, &fleet.etcd);

    let spaces: Vec<Keyspace> = plan.sizes.iter().map(|&s| Keyspace::new(s, plan.keys)).collect();
    for ks in &spaces {
        let t = std::time::Instant::now();
        let c = conns(System::Coffer, 6, &fleet).await?;
        load::preload(&c, 64, ks).await.context("preloading coffer")?;
        let e = conns(System::Etcd, 6, &fleet).await?;
        load::preload(&e, 64, ks).await.context("preloading etcd")?;
        if with_openbao {
            let b = conns(System::OpenBao, 6, &fleet).await?;
            load::preload(&b, 64, ks).await.context("preloading openbao")?;
        }
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
        if plan.systems.contains(&System::CofferHttp) {
            let mut h = Conn::http(&coffer.https[i], &coffer.token);
            h.call(Workload::LocalRead, probe, last)
                .await
                .map_err(|e| anyhow::anyhow!("coffer node {i} cannot serve the preload over HTTP: {e}"))?;
        }
    }

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let mut runs: Vec<Run> = Vec::new();
    for &workload in &plan.workloads {
        for ks in &spaces {
            for &(nc, inflight) in &levels {
                let systems: Vec<System> = plan.systems.iter().copied().filter(|&s| s.runs(workload)).collect();
                let mut pools = BTreeMap::new();
                for &s in &systems {
                    pools.insert(s, conns(s, nc, &fleet).await?);
                }
                for r in 0..plan.runs {
                    for &s in &systems {
                        let before = loadavg();
                        let (cpu0, own0) = (cpu::total(&pids[&s]), cpu::own_cpu_secs());
                        let outcome = load::closed_loop(&pools[&s], inflight, workload, ks, window).await;
                        let (cpu1, own1) = (cpu::total(&pids[&s]), cpu::own_cpu_secs());
                        let after = loadavg();
                        let served = outcome.ops_per_sec * (window.warmup + window.measure).as_secs_f64();
                        let per_op = |cpu: f64| if served > 0.0 { cpu * 1e6 / served } else { f64::NAN };
                        let wall = (window.warmup + window.measure).as_secs_f64();
                        let client_share = (own1 - own0) / (wall * cores);
                        eprintln!(
                            "{:<18} {:>4} B {:>3}x{:<3} run {r} {:<6} {:>9.0} ops/s  p50 {:>6} us  p99 {:>7} us  server CPU {:>5.0} us/op  client {:>4.0} us/op{}{}",
                            workload.name(),
                            ks.size,
                            nc,
                            inflight,
                            s,
                            outcome.ops_per_sec,
                            outcome.latency_us.p50,
                            outcome.latency_us.p99,
                            per_op(cpu1 - cpu0),
                            per_op(own1 - own0),
                            if client_share > CLIENT_BOUND_SHARE {
                                format!("  CLIENT-BOUND? the load generator used {:.0}% of the machine", client_share * 100.0)
                            } else {
                                String::new()
                            },
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
                            server_cpu_us_per_op: per_op(cpu1 - cpu0),
                            loadgen_cpu_us_per_op: per_op(own1 - own0),
                            loadgen_machine_share: client_share,
                        });
                    }
                }
            }
        }
    }

    let summary = summarize(&runs);
    let check = client_check::client_check(&plan, spaces[0].size, window, &work, &fleet).await?;
    let open = if plan.open_loop_runs > 0 {
        open_loop_runs(&plan, &summary, &spaces[0], window, &fleet).await?
    } else {
        vec![]
    };
    let group = group_commit(&plan, &spaces[0], &fleet).await?;
    let disk = disk_use::disk_per_write(&plan, &spaces[0], &fleet, &work).await?;

    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let day = &date[..10];
    let mut ratios = ratios(&summary, plan.sizes.first().copied().unwrap_or(256));
    ratios["disk_per_write_vs_etcd"] = json!(disk_ratio(&disk, System::Etcd));
    ratios["disk_per_write_vs_openbao"] = json!(disk_ratio(&disk, System::OpenBao));
    let ratios_by_size: BTreeMap<String, serde_json::Value> = plan
        .sizes
        .iter()
        .map(|&s| (s.to_string(), serde_json::to_value(ratios_of(&summary, s)).unwrap()))
        .collect();
    let doc = json!({
        "date": date,
        "machine": machine(),
        "versions": {
            "etcd": etcd.version, "coffer": env!("CARGO_PKG_VERSION"), "coffer_commit": git_commit(),
            "openbao": fleet.openbao.as_ref().map(|b| b.version.clone()),
        },
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
            "openbao": "3 nodes on loopback, integrated Raft storage, a file audit device declared in each node's config, KV v2 at secret/, a non-root token with a policy on secret/data/bench/*; HTTP/1.1 keep-alive JSON (its API); reads through the active node (openbao) and through the standbys, which forward them (openbao_standby); writes through the active node",
            "echo": "a bare tonic unary service answering with a payload of the value size",
            "connections": "spread round-robin over the members; followers forward writes (and linearizable reads) to the leader on both systems",
            "build": "the release profile (cargo build --release), not the dev profile make test uses",
            "client": "coffer-loadgen: gRPC calls over the h2 crate with requests encoded once (reads), one tokio runtime with a worker per core; its CPU per request is reported beside the servers' and a run where it used more than a quarter of the machine is flagged; client_check sets it beside h2load on one name",
        },
        "ratios": ratios,
        "ratios_by_value_bytes": ratios_by_size,
        "targets": targets(&ratios),
        "summary": summary.iter().map(|(k, v)| json!({
            "workload": k.1.name(), "system": k.0, "value_bytes": k.2, "connections": k.3, "in_flight": k.4,
            "median_ops_per_sec": v.ops, "median_p50_us": v.p50, "median_p99_us": v.p99,
            "median_server_cpu_us_per_op": v.cpu_us_per_op, "errors": v.errors,
            "median_loadgen_cpu_us_per_op": v.client_cpu_us_per_op, "max_loadgen_machine_share": v.client_share_max,
            "client_bound": v.client_share_max > CLIENT_BOUND_SHARE,
        })).collect::<Vec<_>>(),
        "client_check": check,
        "open_loop": open,
        "group_commit": group,
        "disk": disk,
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

/// OpenBao's server processes (their command lines name their configs in `work`).
fn openbao_pids(work: &std::path::Path, running: bool) -> Vec<u32> {
    match running {
        true => cpu::pids_matching(&format!("-config={}/openbao-n", work.display())),
        false => vec![],
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;

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
