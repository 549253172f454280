//! Three nodes in three regions, each a separate process: writes through a follower, reads on
//! every node, leader kill -9 and re-election, catch-up of the restarted node by snapshot, and
//! no acknowledged write lost; concurrent writes through a follower share forwarding calls.

mod common;

use std::time::Duration;

use common::*;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];
/// Snapshot every 10 entries and keep no log behind it, so a node that misses 10+ entries must
/// catch up by snapshot.
const RAFT: &str = "heartbeat_ms = 50\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 800\n\
                    snapshot_every_entries = 10\nkeep_logs_after_snapshot = 0\nsnapshot_chunk_bytes = 512\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_everywhere_kill_leader_and_catch_up() {
    let mut cluster = TestCluster::start(BIN, &REGIONS, RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;

    // Every acknowledged write: (name, version, value).
    let mut acked: Vec<(String, u64, Vec<u8>)> = Vec::new();

    // Write through a follower; the write is forwarded to the leader.
    let fc = cluster.client(follower).await;
    let w = put(&fc, "acme/prod/db-password", b"fake-value-1")
        .await
        .expect("write via follower");
    assert_eq!(w.version, 1);
    acked.push(("acme/prod/db-password".into(), 1, b"fake-value-1".to_vec()));

    // Every node serves it from its own replica.
    for (i, region) in REGIONS.iter().enumerate() {
        let c = cluster.client(i).await;
        let r = eventually(Duration::from_secs(10), "replication to every node", || {
            let c = c.clone();
            async move { get(&c, "acme/prod/db-password", None).await.ok() }
        })
        .await;
        assert_eq!(r.value, b"fake-value-1");
        let served = r.read.unwrap().served_by.unwrap();
        assert_eq!(&served.region, region, "served by the local replica");
    }

    // kill -9 the leader.
    cluster.kill(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(20)).await;
    assert_ne!(new_leader, leader);

    // Writes continue through both survivors; enough of them to force snapshots and purges.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for n in 0..30u64 {
        let via = survivors[(n % 2) as usize];
        let c = cluster.client(via).await;
        let name = format!("acme/svc-{}/token", n % 5);
        let value = format!("fake-token-{n}").into_bytes();
        let w = put(&c, &name, &value).await.expect("write after failover");
        acked.push((name, w.version, value));
    }
    let w = put(
        &cluster.client(survivors[0]).await,
        "acme/prod/db-password",
        b"fake-value-2",
    )
    .await
    .unwrap();
    assert_eq!(w.version, 2);
    acked.push(("acme/prod/db-password".into(), 2, b"fake-value-2".to_vec()));

    // Restart the killed node: it must catch up (the log behind the snapshot is purged) and
    // serve the latest version.
    cluster.restart(leader);
    let rc = cluster.client(leader).await;
    let latest = eventually(Duration::from_secs(20), "restarted node catching up", || {
        let rc = rc.clone();
        async move {
            match get(&rc, "acme/prod/db-password", None).await {
                Ok(r) if r.version == 2 => Some(r),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(latest.value, b"fake-value-2");
    assert!(
        cluster.log(leader).contains("installed a snapshot"),
        "the restarted node caught up by a snapshot install"
    );

    // No acknowledged write is lost, on any node.
    for i in 0..3 {
        let c = cluster.client(i).await;
        for (name, version, value) in &acked {
            let r = eventually(Duration::from_secs(10), "acknowledged write on every node", || {
                let c = c.clone();
                let name = name.clone();
                let version = *version;
                async move { get(&c, &name, Some(version)).await.ok() }
            })
            .await;
            assert_eq!(&r.value, value, "{name} v{version} on node {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_a_follower_share_forwarding_calls_and_every_one_lands() {
    // Real delay on the peer links, so a forwarding call is in flight for at least a round trip
    // and writes arriving meanwhile queue behind it.
    let mut spec = ClusterSpec::new(&REGIONS, "");
    spec.rtt_ms = Some(wan_rtt);
    spec.metrics = true;
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let f = (leader + 1) % 3;
    let fc = cluster.client(f).await;
    let counters = |m: &str| {
        (
            metric(m, "coffer_forwarded_writes_total", &[]),
            metric(m, "coffer_forward_calls_total", &[]),
        )
    };
    let (writes_before, calls_before) = counters(&cluster.metrics(f).await);

    const WRITERS: usize = 48;
    let writes: Vec<_> = (0..WRITERS)
        .map(|i| {
            let fc = fc.clone();
            tokio::spawn(async move {
                let name = format!("acme/batch/key-{i}");
                let value = format!("fake-batched-{i}").into_bytes();
                let w = put(&fc, &name, &value).await.expect("a forwarded write");
                (name, value, w.version)
            })
        })
        .collect();
    let mut acked = Vec::new();
    for w in writes {
        acked.push(w.await.unwrap());
    }

    // Every write is applied once, as version 1, and reads back whole on the leader.
    let lc = cluster.client(leader).await;
    for (name, value, version) in &acked {
        assert_eq!(*version, 1, "{name}");
        let r = get(&lc, name, Some(1)).await.expect("a forwarded write on the leader");
        assert_eq!(&r.value, value, "{name}");
    }

    // The follower's counters (sampled every 500 ms) cover these writes, and the calls that
    // carried them are a fraction of them.
    let (writes, calls) = eventually(Duration::from_secs(5), "the forwarding counters", || {
        let cluster = &cluster;
        async move {
            let (w, c) = counters(&cluster.metrics(f).await);
            (w >= writes_before + WRITERS as f64).then_some((w - writes_before, c - calls_before))
        }
    })
    .await;
    assert!(
        calls > 0.0 && calls * 4.0 <= writes,
        "{writes} forwarded writes took {calls} calls to the leader"
    );
}
