//! `coffer-sdk`'s cached `get` (docs/architecture.md: Delivery): what a service pays per read
//! once the value is cached and kept fresh by the watch stream (target: under 1 µs). A real
//! 3-region cluster serves the one fetch; every measured call is a cache hit.
//!
//! `cargo bench --workspace --bench sdk_cached_get` measures. Without `--bench` (how
//! `cargo test --all-targets` runs it) criterion runs each bench once, and the assertions check
//! that the calls were hits of the written value.

use std::hint::black_box;
use std::time::Duration;

use coffer_sdk::Coffer;
use coffer_sdk::Config;
use coffer_sdk::Endpoint;
use coffer_testkit::*;
use criterion::criterion_group;
use criterion::criterion_main;
use criterion::Criterion;

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

fn cached_get(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (cluster, sdk) = rt.block_on(async {
        let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
        let leader = cluster.wait_leader(Duration::from_secs(20)).await;
        let root = cluster.client(leader).await;
        wait_token_key(&root).await;
        put(&root, "acme/bench/db", b"fake-bench-value").await.unwrap();
        let endpoints = (0..3)
            .map(|i| Endpoint {
                addr: format!("http://{}", cluster.node(i).api),
                region: cluster.node(i).region.clone(),
            })
            .collect();
        let sdk = Coffer::new(Config::new(cluster.node(0).region.clone(), cluster.token(), endpoints)).unwrap();
        let first = sdk.get("acme/bench/db").await.unwrap();
        assert_eq!(first.value.expose(), b"fake-bench-value");
        (cluster, sdk)
    });
    let before = sdk.stats();
    c.bench_function("sdk_cached_get", |b| {
        b.iter(|| {
            // A hit completes on its first poll: no runtime round trip in the measurement.
            let s = futures::executor::block_on(sdk.get(black_box("acme/bench/db"))).unwrap();
            black_box(s.version)
        })
    });
    let after = sdk.stats();
    assert_eq!(after.fetches, before.fetches, "a measured get went to the server");
    assert!(after.hits > before.hits);
    drop(cluster);
}

criterion_group!(benches, cached_get);
criterion_main!(benches);
