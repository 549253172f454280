//! Read consistency across regions, with real delay on every peer link: us-east <-> eu-west
//! 70 ms round trip, every other region pair 200 ms.

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use coffer::pb;
use coffer::pb::read_consistency::Mode;
use common::*;
use tonic::Code;

/// The product's default Raft timing, which must hold for these round trips.
const WAN_RAFT: &str = "";

async fn wan_cluster() -> TestCluster {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], WAN_RAFT);
    spec.rtt_ms = Some(wan_rtt);
    TestCluster::launch(BIN, spec).await
}

fn bounded(ms: u64, on_unmet: &str, wait_ms: u64) -> Mode {
    Mode::Bounded(pb::BoundedRead {
        max_staleness_ms: ms,
        on_unmet: on_unmet.into(),
        max_wait_ms: wait_ms,
    })
}

fn meta(r: &pb::GetSecretValueResponse) -> pb::ReadMeta {
    r.read.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_reports_a_growing_bound_and_bounded_reads_fail_or_forward() {
    let cluster = wan_cluster().await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let f = (leader + 1) % 3;
    let lc = cluster.client(leader).await;
    let fc = cluster.client(f).await;
    put(&lc, "acme/db", b"fake-v1").await.unwrap();
    let r = eventually(Duration::from_secs(10), "replication to the follower", || {
        let fc = fc.clone();
        async move { get(&fc, "acme/db", None).await.ok() }
    })
    .await;
    let m = meta(&r);
    assert_eq!(m.served_by.as_ref().unwrap().role, "follower");
    assert!(m.staleness_upper_bound_ms > 0, "a follower never claims zero staleness");
    // Connected, a follower is fresh within a few heartbeats plus a round trip.
    let ok = get_with(&fc, "acme/db", None, Some(bounded(1000, "fail", 2000)))
        .await
        .unwrap();
    assert_eq!(meta(&ok).consistency, "bounded");
    // A wait above the cap, or an unknown on_unmet, is refused at once, even with the bound met.
    for (mode, needle) in [
        (bounded(1000, "explode", 2000), "must be \"fail\" or \"forward\""),
        (bounded(1000, "fail", u64::MAX), "above the limit of 30000 ms"),
        (
            Mode::AtLeast(pb::AtLeastRead {
                token: String::new(),
                max_wait_ms: 30_001,
            }),
            "above the limit of 30000 ms",
        ),
    ] {
        let started = Instant::now();
        let e = get_with(&fc, "acme/db", None, Some(mode)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(needle), "{}", e.message());
        assert!(started.elapsed() < Duration::from_secs(2), "refused without waiting");
    }

    // The leader can no longer reach the follower (the follower can still reach it).
    cluster.cut(leader, f);
    put(&lc, "acme/db", b"fake-v2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = get(&fc, "acme/db", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = get(&fc, "acme/db", None).await.unwrap();
    // Local reads still answer, with the old value and an honest, growing bound.
    assert_eq!(first.value, b"fake-v1");
    let (b1, b2) = (
        meta(&first).staleness_upper_bound_ms,
        meta(&second).staleness_upper_bound_ms,
    );
    assert!(b1 >= 1400, "bound after 1.5 s cut off: {b1}");
    assert!(b2 >= b1 + 400, "the bound grows: {b1} then {b2}");

    // bounded=200ms fails after its wait ...
    let started = Instant::now();
    let e = get_with(&fc, "acme/db", None, Some(bounded(200, "fail", 300)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("staleness bound is"), "{}", e.message());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited before failing"
    );
    // ... or forwards to the leader and gets the newest value, decrypted here.
    let fwd = get_with(&fc, "acme/db", None, Some(bounded(200, "forward", 300)))
        .await
        .unwrap();
    assert_eq!(fwd.value, b"fake-v2");
    let fm = meta(&fwd);
    assert_eq!(fm.served_by.as_ref().unwrap().role, "leader");
    assert!(fm.staleness_upper_bound_ms <= 200, "{fm:?}");

    // Healed, the follower catches up and bounded reads are served locally again.
    cluster.heal(leader, f);
    let r = eventually(Duration::from_secs(10), "the follower to catch up", || {
        let fc = fc.clone();
        async move {
            get_with(&fc, "acme/db", None, Some(bounded(500, "fail", 100)))
                .await
                .ok()
                .filter(|r| r.value == b"fake-v2")
        }
    })
    .await;
    assert_eq!(meta(&r).served_by.unwrap().role, "follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_reads_see_the_tokens_write_and_forged_tokens_are_refused() {
    let cluster = wan_cluster().await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let (a, c) = ((leader + 1) % 3, (leader + 2) % 3);
    let ac = cluster.client(a).await;
    let cc = cluster.client(c).await;
    put(&ac, "acme/api-key", b"fake-v1").await.unwrap();
    eventually(Duration::from_secs(10), "v1 on C", || {
        let cc = cc.clone();
        async move { get(&cc, "acme/api-key", None).await.ok().filter(|r| r.version == 1) }
    })
    .await;

    // C lags: the leader cannot reach it. A write on A returns a token.
    cluster.cut(leader, c);
    let w = eventually(
        Duration::from_secs(10),
        "a token (the token key is created after bootstrap)",
        || {
            let ac = ac.clone();
            async move {
                put(&ac, "acme/api-key", b"fake-v2")
                    .await
                    .ok()
                    .filter(|w| !w.token.is_empty())
            }
        },
    )
    .await;
    assert!(w.token.starts_with("ct1_"));
    let local = get(&cc, "acme/api-key", None).await.unwrap();
    assert!(local.version < w.version, "C is behind without the token");

    // With the token, C waits until it has the write: heal the link while it waits.
    let token = w.token.clone();
    let reader = {
        let cc = cc.clone();
        tokio::spawn(async move {
            get_with(
                &cc,
                "acme/api-key",
                None,
                Some(Mode::AtLeast(pb::AtLeastRead {
                    token,
                    max_wait_ms: 10_000,
                })),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!reader.is_finished(), "the read waits for C to catch up");
    cluster.heal(leader, c);
    let r = reader.await.unwrap().unwrap();
    assert!(
        r.version >= w.version,
        "at_least saw the write: v{} >= v{}",
        r.version,
        w.version
    );
    assert_eq!(meta(&r).consistency, "at_least");
    assert!(meta(&r).applied_index >= w.log_index);

    // Reads return tokens too, usable anywhere.
    let again = get_with(
        &ac,
        "acme/api-key",
        None,
        Some(Mode::AtLeast(pb::AtLeastRead {
            token: meta(&r).token,
            max_wait_ms: 5000,
        })),
    )
    .await
    .unwrap();
    assert!(again.version >= r.version);

    // The CLI: a write's JSON has the token; a read with --consistency at-least=TOKEN uses it.
    let w = cluster.cli_json(a, &["secret", "put", "acme/api-key", "--value", "fake-v3"]);
    let token = w["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ct1_"), "{w}");
    let at_least = format!("at-least={token}");
    let r = cluster.cli_json(c, &["secret", "get", "acme/api-key", "--consistency", &at_least]);
    assert!(r["version"].as_u64().unwrap() >= w["version"].as_u64().unwrap(), "{r}");
    assert_eq!(r["read"]["consistency"], "at_least", "{r}");

    // A token from another cluster, a forged one, and garbage are refused clearly.
    let other = coffer::tokens::TokenKey::new("another-cluster", coffer::crypto::SecretValue::new(vec![7; 32])).mint(1);
    let forged = coffer::tokens::TokenKey::new("test-cluster", coffer::crypto::SecretValue::new(vec![7; 32])).mint(1);
    for (token, needle) in [
        (other, "belongs to cluster"),
        (forged, "forged"),
        ("ct1_zz".to_string(), "malformed"),
    ] {
        let e = get_with(
            &cc,
            "acme/api-key",
            None,
            Some(Mode::AtLeast(pb::AtLeastRead {
                token,
                max_wait_ms: 100,
            })),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(needle), "{}", e.message());
    }
}

/// A read that started after a write was acknowledged must return that write's version or a
/// newer one. Returns the reads that broke the rule.
fn stale_reads(acks: &[(Instant, u64)], reads: &[(Instant, u64)]) -> Vec<(u64, u64)> {
    reads
        .iter()
        .filter_map(|(started, got)| {
            let must = acks
                .iter()
                .filter(|(t, _)| t < started)
                .map(|(_, v)| *v)
                .max()
                .unwrap_or(0);
            (*got < must).then_some((*got, must))
        })
        .collect()
}

/// Collects the readers' histories and asserts that enough happened and that no read returned a
/// version older than a write acknowledged before it started. Returns the reads.
async fn assert_no_stale_reads(
    acks: &Mutex<Vec<(Instant, u64)>>,
    readers: Vec<tokio::task::JoinHandle<Vec<(Instant, u64)>>>,
    min_writes: usize,
    min_reads: usize,
) -> Vec<(Instant, u64)> {
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.unwrap());
    }
    let acks = acks.lock().unwrap().clone();
    assert!(
        acks.len() >= min_writes && reads.len() >= min_reads,
        "{} writes, {} reads",
        acks.len(),
        reads.len()
    );
    assert_eq!(
        stale_reads(&acks, &reads),
        vec![],
        "linearizable reads went back in time"
    );
    reads
}

/// Linearizable reads of `acme/counter` through `c` until `stop`: when each read began and the
/// version it returned. `check` sees every reply.
async fn linearizable_reads_until(
    c: coffer::client::Client,
    stop: Instant,
    check: impl Fn(&pb::GetSecretValueResponse),
) -> Vec<(Instant, u64)> {
    let mut reads = Vec::new();
    while Instant::now() < stop {
        let started = Instant::now();
        let r = get_with(
            &c,
            "acme/counter",
            None,
            Some(Mode::Linearizable(pb::LinearizableRead {})),
        )
        .await
        .unwrap();
        check(&r);
        reads.push((started, r.version));
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_never_return_a_version_older_than_an_acknowledged_write() {
    let cluster = wan_cluster().await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let clients: Vec<_> = futures::future::join_all((0..3).map(|i| cluster.client(i))).await;
    put(&clients[leader], "acme/counter", b"fake-0").await.unwrap();
    let acks: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(6);

    // Two writers on different nodes.
    let per_writer: Arc<[std::sync::atomic::AtomicUsize; 2]> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..2 {
        let c = clients[(leader + w) % 3].clone();
        let acks = acks.clone();
        let per_writer = per_writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop {
                n += 1;
                // Two writers race for each version number; a writer that still loses after its
                // retries gets ABORTED ("retry"), which acknowledges nothing.
                match put(&c, "acme/counter", format!("fake-{n}").as_bytes()).await {
                    Ok(wr) => {
                        acks.lock().unwrap().push((Instant::now(), wr.version));
                        per_writer[w].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => assert_eq!(e.code(), Code::Aborted, "{e:?}"),
                }
            }
            Vec::new()
        }));
    }
    // Linearizable readers on every node.
    for c in &clients {
        tasks.push(tokio::spawn(linearizable_reads_until(c.clone(), stop, |r| {
            assert_eq!(r.read.as_ref().unwrap().consistency, "linearizable")
        })));
    }
    assert_no_stale_reads(&acks, tasks, 10, 30).await;
    // The far writer is not starved by the one next to the leader.
    let far = per_writer[1].load(std::sync::atomic::Ordering::Relaxed);
    assert!(far >= 3, "the writer away from the leader landed {far} writes");

    // The check bites: a follower the leader cannot reach serves stale local reads, and the
    // same check flags them, while a linearizable read there refuses rather than go stale.
    let f = (leader + 1) % 3;
    cluster.cut(leader, f);
    let w = put(&clients[leader], "acme/counter", b"fake-after-cut").await.unwrap();
    let acked = vec![(Instant::now(), w.version)];
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    let local = get(&clients[f], "acme/counter", None).await.unwrap();
    assert_eq!(
        stale_reads(&acked, &[(started, local.version)]).len(),
        1,
        "the local read is stale"
    );
    let lin = get_with(
        &clients[f],
        "acme/counter",
        None,
        Some(Mode::Linearizable(pb::LinearizableRead {})),
    )
    .await;
    match lin {
        Ok(r) => assert!(r.version >= w.version, "a linearizable read is never stale"),
        Err(e) => assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}"),
    }
}

/// Many linearizable reads at once on a follower 200 ms from the leader share read-index rounds
/// (one quorum round answers every read queued before it began), and none of them returns a
/// version older than a write acknowledged before the read started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_linearizable_reads_share_read_index_rounds_and_never_go_back_in_time() {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], WAN_RAFT);
    spec.rtt_ms = Some(wan_rtt);
    spec.metrics = true;
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    // ap-south is 200 ms from every other region.
    let f = if leader == 2 { 0 } else { 2 };
    let lc = cluster.client(leader).await;
    let fc = cluster.client(f).await;
    put(&lc, "acme/counter", b"fake-0").await.unwrap();
    let before = metric(&cluster.metrics(f).await, "coffer_read_index_requests_total", &[]);
    let acks: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(4);

    let writer = {
        let (lc, acks) = (lc.clone(), acks.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop {
                n += 1;
                let w = put(&lc, "acme/counter", format!("fake-{n}").as_bytes()).await.unwrap();
                acks.lock().unwrap().push((Instant::now(), w.version));
            }
        })
    };
    let readers: Vec<_> = (0..32)
        .map(|_| {
            tokio::spawn(linearizable_reads_until(fc.clone(), stop, |r| {
                assert_eq!(meta(r).served_by.unwrap().role, "follower")
            }))
        })
        .collect();
    writer.await.unwrap();
    let reads = assert_no_stale_reads(&acks, readers, 10, 100).await;

    // The follower's counters (sampled every 500 ms) cover these reads, and the rounds that
    // served them are a fraction of them: one round trip to the leader per batch, not per read.
    let (requests, rounds) = eventually(Duration::from_secs(5), "the read-index counters", || {
        let cluster = &cluster;
        let want = before + reads.len() as f64;
        async move {
            let m = cluster.metrics(f).await;
            let requests = metric(&m, "coffer_read_index_requests_total", &[]);
            let rounds = metric(&m, "coffer_read_index_rounds_total", &[]);
            (requests >= want).then_some((requests, rounds))
        }
    })
    .await;
    assert!(
        rounds > 0.0 && rounds * 4.0 <= requests,
        "{requests} read indexes took {rounds} rounds to the leader"
    );
}
