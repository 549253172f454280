//! The client check: is the load generator measuring the server, or itself? On one name and the
//! same encoded request, a run of `coffer-loadgen` is set beside h2load (nghttp2's load
//! generator, written in C) at 10 connections x 10 in flight against one member, alternating.
//! The two agree within noise when the servers are what limits them; a loadgen result well
//! below h2load's means the client is the bottleneck and the comparison says so. h2load counts
//! an HTTP 200 as success without reading `grpc-status`, so the request is first sent once
//! through the load generator, which checks the answer.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use super::measure::Fleet;
use super::plan::Plan;
use super::summary::median;
use crate::load;
use crate::load::Window;
use crate::target::Conn;
use crate::target::Keyspace;
use crate::target::System;
use crate::target::Workload;

/// The loadgen/h2load throughput ratio beyond which the runs disagree.
pub(super) const AGREEMENT: f64 = 0.15;
const CONNECTIONS: usize = 10;
const IN_FLIGHT: usize = 10;

/// What one h2load run printed.
#[derive(Debug, PartialEq)]
pub(super) struct H2load {
    pub ops_per_sec: f64,
    pub succeeded: u64,
    pub failed: u64,
}

/// Reads h2load's summary (`finished in 2.00s, 54490.00 req/s, ...` and `requests: N total, N
/// started, N done, N succeeded, M failed, ...`).
pub(super) fn parse_h2load(out: &str) -> anyhow::Result<H2load> {
    let finished = out
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .context("h2load printed no \"finished in\" line")?;
    let ops_per_sec = finished
        .split(", ")
        .find_map(|f| f.strip_suffix(" req/s"))
        .and_then(|n| n.parse::<f64>().ok())
        .context("h2load's \"finished in\" line has no req/s")?;
    let requests = out
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .context("h2load printed no \"requests:\" line")?;
    let count = |what: &str| {
        requests
            .split(", ")
            .find_map(|f| f.strip_suffix(what))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .with_context(|| format!("h2load's \"requests:\" line has no{what} count"))
    };
    Ok(H2load {
        ops_per_sec,
        succeeded: count(" succeeded")?,
        failed: count(" failed")?,
    })
}

/// One h2load run of `window` (its warm-up not counted) sending `frame_file` to `url`.
fn h2load(bin: &Path, url: &str, frame_file: &Path, token: Option<&str>, window: Window) -> anyhow::Result<H2load> {
    let mut cmd = Command::new(bin);
    cmd.args(["-c", &CONNECTIONS.to_string(), "-m", &IN_FLIGHT.to_string(), "-t", "1"])
        .args(["-D", &format!("{}ms", window.measure.as_millis())])
        .args(["--warm-up-time", &format!("{}ms", window.warmup.as_millis().max(1))])
        .arg("-d")
        .arg(frame_file)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().with_context(|| {
        format!(
            "cannot run {} (make bench-compare installs nghttp2-client)",
            bin.display()
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "h2load failed ({}): {text}", out.status);
    let r = parse_h2load(&text)?;
    anyhow::ensure!(r.failed == 0 && r.succeeded > 0, "h2load against {url}: {r:?}");
    Ok(r)
}

/// The check for Coffer's local read and etcd's serializable Range, `runs` rounds each.
pub(super) async fn client_check(
    plan: &Plan,
    size: usize,
    window: Window,
    work: &Path,
    fleet: &Fleet,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let (coffer, etcd) = (&fleet.coffer, &fleet.etcd);
    let one = Keyspace::new(size, 1);
    let mut out = vec![];
    for s in [System::Coffer, System::Etcd] {
        if !plan.systems.contains(&s) {
            continue;
        }
        let (addr, token) = match s {
            System::Coffer => (format!("http://{}", coffer.apis[0]), Some(coffer.token.as_str())),
            _ => (etcd.client_urls[0].clone(), None),
        };
        let (path, frame) = one
            .read_request(s, Workload::LocalRead, 0)
            .context("a local read has an encoded request")?;
        let file = work.join(format!("{s}-read.frame"));
        std::fs::write(&file, &frame)?;
        let mut pool = vec![];
        for _ in 0..CONNECTIONS {
            pool.push(match s {
                System::Coffer => Conn::coffer(&addr, token.unwrap_or_default()).await?,
                _ => Conn::etcd(&addr).await?,
            });
        }
        pool[0]
            .clone()
            .call(Workload::LocalRead, &one, 0)
            .await
            .map_err(|e| anyhow::anyhow!("{s}: the request h2load is to send fails: {e}"))?;
        let (mut ours, mut theirs) = (vec![], vec![]);
        for r in 0..plan.runs.max(2) {
            let url = format!("{addr}{path}");
            let (b, f) = (plan.h2load.clone(), file.clone());
            let tok = token.map(String::from);
            let h = tokio::task::spawn_blocking(move || h2load(&b, &url, &f, tok.as_deref(), window)).await??;
            let o = load::closed_loop(&pool, IN_FLIGHT, Workload::LocalRead, &one, window).await;
            anyhow::ensure!(o.errors == 0, "{s}: client check run {r}: {:?}", o.first_error);
            eprintln!(
                "client check {s:<6} one name, {CONNECTIONS}x{IN_FLIGHT}, run {r}: h2load {:>8.0} ops/s, coffer-loadgen {:>8.0} ops/s",
                h.ops_per_sec, o.ops_per_sec
            );
            theirs.push(h.ops_per_sec);
            ours.push(o.ops_per_sec);
        }
        let (h, o) = (median(theirs.clone()), median(ours.clone()));
        let ratio = o / h;
        out.push(json!({
            "system": s, "workload": Workload::LocalRead, "value_bytes": size,
            "connections": CONNECTIONS, "in_flight": IN_FLIGHT, "member": 0,
            "h2load_ops_per_sec": theirs, "loadgen_ops_per_sec": ours,
            "median_h2load": h, "median_loadgen": o,
            "loadgen_vs_h2load": (ratio * 100.0).round() / 100.0,
            "agree": (1.0 - ratio).abs() <= AGREEMENT,
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "starting benchmark...
Application protocol: h2c

finished in 2.50s, 54490.00 req/s, 16.32MB/s
requests: 108980 total, 108980 started, 108980 done, 108980 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 108980 2xx, 0 3xx, 0 4xx, 0 5xx
";

    #[test]
    fn h2load_output_is_read_and_a_truncated_one_is_refused() {
        assert_eq!(
            parse_h2load(OUTPUT).unwrap(),
            H2load {
                ops_per_sec: 54490.0,
                succeeded: 108980,
                failed: 0
            }
        );
        let failing = OUTPUT.replace("108980 succeeded, 0 failed", "0 succeeded, 108980 failed");
        assert_eq!(parse_h2load(&failing).unwrap().failed, 108980);
        let no_rate = OUTPUT.replace("54490.00 req/s", "n/a");
        assert!(parse_h2load(&no_rate).unwrap_err().to_string().contains("req/s"));
        let cut = &OUTPUT[..OUTPUT.find("requests:").unwrap()];
        assert!(parse_h2load(cut).unwrap_err().to_string().contains("requests:"));
    }
}
