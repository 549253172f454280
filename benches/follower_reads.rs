//! Follower read latency against the injected inter-region round trip.
//!
//! For each RTT (0, 70 and 200 ms between every pair of regions) this starts a real 3-region
//! cluster of `coffer server` processes (testkit: RocksDB, gRPC over loopback, a delaying
//! proxy on every peer link), writes one secret, and times reads on a follower through the
//! public API: `local` reads (served from the follower's replica: they should not grow with the
//! RTT) next to `linearizable` ones (a read index from the leader: they pay the RTT). Prints
//! one table, side by side.
//!
//! `cargo bench --workspace --bench follower_reads` measures. Without `--bench` (how
//! `cargo test --all-targets` runs it) it does a short smoke run that checks the reads return
//! the written value, so the bench cannot rot.

use std::time::Duration;
use std::time::Instant;

use coffer::pb;
use coffer::pb::read_consistency::Mode;
use coffer_testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

type RttFn = fn(&str, &str) -> u64;

fn rtt_0(_: &str, _: &str) -> u64 {
    0
}
fn rtt_70(a: &str, b: &str) -> u64 {
    if a == b {
        0
    } else {
        70
    }
}
fn rtt_200(a: &str, b: &str) -> u64 {
    if a == b {
        0
    } else {
        200
    }
}

struct Row {
    rtt: u64,
    local: Vec<Duration>,
    linearizable: Vec<Duration>,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn timed(c: &coffer::client::Client, mode: Option<Mode>, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = get_with(c, "acme/bench/key", None, mode.clone()).await.expect("read");
        out.push(t.elapsed());
        assert_eq!(r.value, b"fake-bench-value", "the follower served the written value");
    }
    out.sort();
    out
}

async fn measure(rtt: u64, rtt_fn: RttFn, local_n: usize, lin_n: usize) -> Row {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], "");
    spec.rtt_ms = Some(rtt_fn);
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    put(&cluster.client(leader).await, "acme/bench/key", b"fake-bench-value")
        .await
        .expect("put");
    let f = (leader + 1) % 3;
    let fc = cluster.client(f).await;
    eventually(Duration::from_secs(10), "the follower to have the value", || {
        let fc = fc.clone();
        async move { get(&fc, "acme/bench/key", None).await.ok() }
    })
    .await;
    // Warm the connection and the DEK cache.
    timed(&fc, None, 20).await;
    let local = timed(&fc, None, local_n).await;
    let linearizable = timed(&fc, Some(Mode::Linearizable(pb::LinearizableRead {})), lin_n).await;
    Row {
        rtt,
        local,
        linearizable,
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (local_n, lin_n) = if measuring { (5000, 200) } else { (50, 5) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases: [(u64, RttFn); 3] = [(0, rtt_0), (70, rtt_70), (200, rtt_200)];
    let rows: Vec<Row> = cases
        .iter()
        .filter(|(rtt, _)| measuring || *rtt != 70)
        .map(|(rtt, f)| rt.block_on(measure(*rtt, *f, local_n, lin_n)))
        .collect();
    println!("\nfollower reads through the gRPC API ({local_n} local, {lin_n} linearizable per row; ms)\n");
    println!(
        "{:>8} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10}",
        "RTT", "local p50", "local p99", "local max", "lin p50", "lin p99", "lin max"
    );
    for r in &rows {
        println!(
            "{:>6}ms | {:>10.3} {:>10.3} {:>10.3} | {:>10.1} {:>10.1} {:>10.1}",
            r.rtt,
            pct(&r.local, 0.5),
            pct(&r.local, 0.99),
            pct(&r.local, 1.0),
            pct(&r.linearizable, 0.5),
            pct(&r.linearizable, 0.99),
            pct(&r.linearizable, 1.0),
        );
    }
}
