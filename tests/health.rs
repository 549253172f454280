//! Health probes on a real cluster (docs/architecture.md: Health): HTTP `/health/live` and
//! `/health/ready`, and the standard `grpc.health.v1`, as a node loses its peers and gets them
//! back.

mod common;

use std::time::Duration;

use common::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Links with no added delay, through the kit's proxies so a node can be cut off.
fn lan(_: &str, _: &str) -> u64 {
    0
}

async fn ready(cluster: &TestCluster, i: usize) -> HttpAnswer {
    http_request(&cluster.node(i).http, "GET", "/health/ready", None, None)
        .await
        .expect("the HTTP port answers")
}

async fn grpc_health(cluster: &TestCluster, i: usize) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", cluster.node(i).api))
        .unwrap()
        .connect()
        .await
        .expect("the API port answers");
    HealthClient::new(channel)
}

async fn check(c: &mut HealthClient<tonic::transport::Channel>, service: &str) -> Result<ServingStatus, tonic::Status> {
    let r = c
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(r.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_its_peers_stops_being_ready_and_is_ready_again_once_healed() {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], FAST_RAFT);
    spec.rtt_ms = Some(lan);
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let cut = (leader + 1) % 3;

    // Every node serves: 200 and the same answer from grpc.health.v1.
    for i in 0..3 {
        let r = eventually(Duration::from_secs(15), "every node ready", || async {
            Some(ready(&cluster, i).await).filter(|r| r.status == 200)
        })
        .await;
        assert_eq!(r.json["status"], "serving", "{}", r.text);
        assert_eq!(r.json["ready"], true);
        assert!(
            r.json["staleness_upper_bound_ms"].as_u64().unwrap() <= 5_000,
            "{}",
            r.text
        );
        let live = http_request(&cluster.node(i).http, "GET", "/health/live", None, None)
            .await
            .unwrap();
        assert_eq!((live.status, live.json["status"].as_str()), (200, Some("live")));
        let mut h = grpc_health(&cluster, i).await;
        eventually(Duration::from_secs(5), "grpc.health.v1 serving", || {
            let mut h = h.clone();
            async move { (check(&mut h, "").await.ok()? == ServingStatus::Serving).then_some(()) }
        })
        .await;
        assert_eq!(
            check(&mut h, "coffer.v1.Secrets").await.unwrap(),
            ServingStatus::Serving
        );
        let unknown = check(&mut h, "coffer.v1.NoSuchService").await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }
    let bad = http_request(
        &cluster.node(cut).http,
        "GET",
        "/health/ready?max_staleness_ms=5",
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!((bad.status, bad.code()), (400, "invalid_argument"), "{}", bad.text);

    // A watcher of the node's gRPC health, then the node loses every peer. openraft keeps
    // naming the old leader while its elections fail; the probes must not believe it.
    let mut watch = grpc_health(&cluster, cut)
        .await
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);
    cluster.isolate(cut);
    // Its staleness bound may pass the limit a moment before its last contact does: `stale`
    // first, then `no_leader` once it has heard from no leader for the limit.
    let first = eventually(Duration::from_secs(20), "the cut-off node not ready", || async {
        Some(ready(&cluster, cut).await).filter(|r| r.status != 200)
    })
    .await;
    assert_eq!(first.status, 503, "{}", first.text);
    assert!(
        matches!(first.json["status"].as_str(), Some("stale" | "no_leader")),
        "{}",
        first.text
    );
    let r = eventually(
        Duration::from_secs(10),
        "the cut-off node to report no_leader",
        || async { Some(ready(&cluster, cut).await).filter(|r| r.json["status"] == "no_leader") },
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["ready"], false);
    let changed = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the watch sees the change")
        .unwrap()
        .unwrap();
    assert_eq!(changed.status(), ServingStatus::NotServing);
    assert_eq!(
        check(&mut grpc_health(&cluster, cut).await, "").await.unwrap(),
        ServingStatus::NotServing
    );
    let h = cluster
        .health(cut)
        .await
        .expect("the cut-off node answers Cluster.Health");
    assert_eq!(h.status, "no_leader");
    // Still alive, and the two nodes that keep a quorum stay ready.
    let live = http_request(&cluster.node(cut).http, "GET", "/health/live", None, None)
        .await
        .unwrap();
    assert_eq!(live.status, 200);
    for i in (0..3).filter(|i| *i != cut) {
        let r = eventually(Duration::from_secs(15), "the majority ready", || async {
            Some(ready(&cluster, i).await).filter(|r| r.status == 200)
        })
        .await;
        assert_eq!(r.json["status"], "serving");
    }

    cluster.heal_all();
    let r = eventually(Duration::from_secs(20), "the healed node ready again", || async {
        Some(ready(&cluster, cut).await).filter(|r| r.status == 200)
    })
    .await;
    assert_eq!(r.json["status"], "serving", "{}", r.text);
    let back = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the watch sees the node serve again")
        .unwrap()
        .unwrap();
    assert_eq!(back.status(), ServingStatus::Serving);
}
