//! Leader placement: with `preferred_regions = ["eu-west", "us-east"]` the cluster moves
//! leadership to eu-west; when that leader dies, a leader appears elsewhere (and settles in
//! us-east, the next preference); when it comes back and catches up, leadership returns.
//! Peer links carry real delay: us-east <-> eu-west 70 ms round trip, other pairs 200 ms.

mod common;

use std::time::Duration;

use common::*;

/// Waits until every running node agrees the leader is in `region`; returns its index.
async fn leader_in(cluster: &TestCluster, region: &str, within: Duration) -> usize {
    eventually(within, &format!("leadership in {region}"), || async move {
        let l = cluster.wait_leader(Duration::from_secs(30)).await;
        (cluster.node(l).region == region).then_some(l)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_follows_the_preferred_regions() {
    // ap-south first, so the bootstrap leader is usually not where placement wants it.
    let mut spec = ClusterSpec::new(&["ap-south", "us-east", "eu-west"], "");
    spec.rtt_ms = Some(wan_rtt);
    spec.cluster_extra = r#"preferred_regions = ["eu-west", "us-east"]"#.into();
    let mut cluster = TestCluster::launch(BIN, spec).await;

    let eu = leader_in(&cluster, "eu-west", Duration::from_secs(40)).await;
    let w = put(&cluster.client(eu).await, "acme/placed", b"fake-1").await.unwrap();
    assert_eq!(w.version, 1);

    // The preferred leader dies: a leader appears elsewhere and writes go on.
    cluster.kill(eu);
    let us = leader_in(&cluster, "us-east", Duration::from_secs(40)).await;
    put(&cluster.client(us).await, "acme/placed", b"fake-2").await.unwrap();

    // It comes back, catches up, and leadership returns to it.
    cluster.restart(eu);
    let back = leader_in(&cluster, "eu-west", Duration::from_secs(60)).await;
    assert_eq!(back, eu);
    let r = get(&cluster.client(eu).await, "acme/placed", None).await.unwrap();
    assert_eq!((r.version, r.value.as_slice()), (2, b"fake-2".as_slice()));
}
