//! The Rust SDK (`coffer-sdk`, docs/architecture.md: Delivery) against a real cluster: request
//! coalescing, a rotation reaching a cached client through the watch, failover to another
//! region, stale serves up to max_stale, and revocation that no max_stale overrides.

mod common;

use std::time::Duration;
use std::time::Instant;

use coffer::pb;
use coffer_sdk::Coffer;
use coffer_sdk::Config;
use coffer_sdk::Endpoint;
use common::*;

/// A client of `cluster` whose own region is node `local`'s.
fn sdk(cluster: &TestCluster, local: usize, token: &str, tune: impl FnOnce(&mut Config)) -> Coffer {
    let endpoints = (0..3)
        .map(|i| Endpoint {
            addr: format!("http://{}", cluster.node(i).api),
            region: cluster.node(i).region.clone(),
        })
        .collect();
    let mut cfg = Config::new(cluster.node(local).region.clone(), token, endpoints);
    cfg.connect_timeout = Duration::from_millis(500);
    cfg.call_timeout = Duration::from_secs(2);
    tune(&mut cfg);
    Coffer::new(cfg).unwrap()
}

async fn value(c: &Coffer, name: &str) -> Result<(u64, String), String> {
    c.get(name)
        .await
        .map(|s| (s.version, s.value.as_str().unwrap_or("").to_string()))
        .map_err(|e| e.code().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_cache_makes_one_fetch_for_a_thousand_callers_and_a_rotation_reaches_it_through_the_watch() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put(&root, "acme/sdk/db", b"fake-sdk-one").await.unwrap();
    let local = (leader + 1) % 3;
    let c = sdk(&cluster, local, cluster.token(), |_| {});
    let before = c.stats();
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { value(&c, "acme/sdk/db").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Ok((1, "fake-sdk-one".to_string())));
    }
    let after = c.stats();
    assert_eq!(after.fetches - before.fetches, 1, "{after:?}");
    assert_eq!(after.hits - before.hits, 999, "{after:?}");
    // Startup fails closed, naming the missing secret.
    let missing = c.require(&["acme/sdk/db", "acme/sdk/nothing"]).await.unwrap_err();
    assert_eq!(missing.code(), "not_found");
    assert!(missing.to_string().contains("acme/sdk/nothing"), "{missing}");

    // A new version: the watch makes the cache refresh (its TTL is five minutes).
    tokio::time::sleep(Duration::from_millis(300)).await; // the watch stream is open
    put(&root, "acme/sdk/db", b"fake-sdk-two").await.unwrap();
    let written = Instant::now();
    let seen = eventually(Duration::from_secs(5), "the cached client to see version 2", || async {
        (value(&c, "acme/sdk/db").await == Ok((2, "fake-sdk-two".to_string()))).then(Instant::now)
    })
    .await;
    let lag = seen - written;
    assert!(
        lag < Duration::from_secs(2),
        "the rotation reached the cache after {lag:?}"
    );
    assert!(c.stats().invalidations >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_regions_node_serves_while_up_and_the_cache_outlives_every_node_until_max_stale() {
    let mut cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put(&root, "acme/sdk/api-key", b"fake-sdk-key").await.unwrap();
    let local = (leader + 1) % 3;
    let c = sdk(&cluster, local, cluster.token(), |cfg| {
        cfg.ttl = Duration::from_millis(500);
        cfg.ttl_jitter = 0.0;
        cfg.max_stale = Duration::from_secs(4);
    });
    let here = format!("http://{}", cluster.node(local).api);
    assert_eq!(c.serving_endpoint().await.unwrap().addr, here);
    cluster.kill(local);
    let elsewhere = c.serving_endpoint().await.unwrap();
    assert_ne!(elsewhere.addr, here);
    assert_ne!(elsewhere.region, cluster.node(local).region);
    assert_eq!(value(&c, "acme/sdk/api-key").await, Ok((1, "fake-sdk-key".into())));

    // Every node down: past the TTL the cached value is served, past max_stale it is not.
    let cached_at = Instant::now();
    cluster.stop_all();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(value(&c, "acme/sdk/api-key").await, Ok((1, "fake-sdk-key".into())));
    assert!(c.stats().stale_serves >= 1 && c.stats().refresh_failures >= 1);
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(cached_at.elapsed()) + Duration::from_millis(200)).await;
    let err = c.get("acme/sdk/api-key").await.unwrap_err();
    assert_eq!(err.code(), "max_stale_exceeded", "{err}");
    assert!(
        err.to_string().contains("acme/sdk/api-key") && err.to_string().contains("max_stale"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("fake-sdk-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_version_or_a_revoked_token_stops_being_served_at_once_whatever_max_stale_says() {
    let mut cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put(&root, "acme/sdk/cert", b"fake-sdk-cert-one").await.unwrap();
    put(&root, "acme/sdk/token", b"fake-sdk-token").await.unwrap();
    put_policy(
        &root,
        r#"{"name":"sdk-reader","statements":[{"effect":"allow","principals":["service:acme:sdk"],
            "actions":["secrets:read"],"resources":["acme/sdk/*"]}]}"#,
    )
    .await;
    let t = create_token(
        &root,
        "service:acme:sdk",
        &[],
        &["sdk-reader"],
        Duration::from_secs(3600),
    )
    .await;
    let local = (leader + 1) % 3;
    let forever = |cfg: &mut Config| cfg.max_stale = Duration::from_secs(3600);
    let admin = sdk(&cluster, local, cluster.token(), forever);
    let service = sdk(&cluster, local, &t.token, forever);
    assert_eq!(value(&admin, "acme/sdk/cert").await.unwrap().0, 1);
    let token_read = eventually(Duration::from_secs(10), "the token on the local node", || async {
        value(&service, "acme/sdk/token").await.ok()
    })
    .await;
    assert_eq!(token_read.0, 1);
    tokio::time::sleep(Duration::from_millis(300)).await; // the watch streams are open

    // Version 1 leaves CURRENT and is destroyed: the cached copy goes with it.
    put(&root, "acme/sdk/cert", b"fake-sdk-cert-two").await.unwrap();
    root.secrets
        .clone()
        .destroy_version(pb::DestroyVersionRequest {
            name: "acme/sdk/cert".into(),
            version: 1,
        })
        .await
        .unwrap();
    // The token is revoked: everything it read goes.
    root.access
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            accessor: t.accessor.clone(),
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "both revocations to reach the caches",
        || async { (admin.stats().revocations >= 1 && service.stats().revocations >= 1).then_some(()) },
    )
    .await;
    // With no node left to refresh from, nothing revoked is served, max_stale or not.
    cluster.stop_all();
    let err = admin.get("acme/sdk/cert").await.unwrap_err();
    assert_eq!(err.code(), "unreachable", "{err}");
    let err = service.get("acme/sdk/token").await.unwrap_err();
    assert_eq!(err.code(), "unreachable", "{err}");
}
