//! Values never reach logs or audit records: a workload with known values on nodes logging at
//! `trace` (every crate), then a search of every log and audit file for the values and the
//! tokens, in plain text and hex.

mod common;

use std::time::Duration;

use coffer::pb;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_or_token_appears_in_any_log_line_or_audit_record() {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], FAST_RAFT);
    spec.log_filter = Some("trace".into());
    let mut cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;

    let canary = |i: usize| {
        format!(
            "fake-canary-{i}-{}",
            hex::encode(coffer::crypto::random_bytes::<8>().unwrap())
        )
    };
    let values: Vec<String> = (0..6).map(canary).collect();
    put_policy(
        &root,
        r#"{"name":"canary-rw","statements":[{"effect":"allow","principals":["service:acme:canary"],
            "actions":["secrets:read","secrets:write","secrets:rotate"],"resources":["acme/canary/*"]}]}"#,
    )
    .await;
    let token = create_token(
        &root,
        "service:acme:canary",
        &[],
        &["canary-rw"],
        Duration::from_secs(3600),
    )
    .await
    .token;

    for i in 0..3 {
        let c = cluster.client_with(i, Some(&token)).await;
        eventually(Duration::from_secs(10), "the token to replicate", || {
            let c = c.clone();
            async move { c.access.clone().list_policies(pb::ListPoliciesRequest {}).await.err() }
        })
        .await;
        let name = format!("acme/canary/s{i}");
        put(&c, &name, values[2 * i].as_bytes()).await.unwrap();
        put(&c, &name, values[2 * i + 1].as_bytes()).await.unwrap();
        for (version, want) in [(1, &values[2 * i]), (2, &values[2 * i + 1])] {
            let r = get(&c, &name, Some(version)).await.unwrap();
            assert_eq!(&r.value, want.as_bytes());
        }
        for mode in [
            pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {}),
            pb::read_consistency::Mode::Bounded(pb::BoundedRead {
                max_staleness_ms: 5000,
                on_unmet: "forward".into(),
                max_wait_ms: 0,
            }),
        ] {
            get_with(&c, &name, None, Some(mode)).await.unwrap();
        }
        // A refused read of a value, and a failed write with a value in it.
        get(&c, "acme/other/x", None).await.unwrap_err();
        c.secrets
            .clone()
            .put_secret_value(pb::PutSecretValueRequest {
                name: "Bad Name".into(),
                value: values[0].as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        c.secrets
            .clone()
            .move_alias(pb::MoveAliasRequest {
                name: name.clone(),
                alias: "previous".into(),
                version: 1,
                expected_version: None,
            })
            .await
            .ok();
    }
    // A follower restart replays the log (and a snapshot may be sent): still nothing.
    let follower = (leader + 1) % 3;
    cluster.stop(follower);
    cluster.restart(follower);
    let c = cluster.client_with(follower, Some(&token)).await;
    eventually(Duration::from_secs(15), "the restarted follower to serve", || {
        let c = c.clone();
        async move { get(&c, "acme/canary/s0", Some(2)).await.ok() }
    })
    .await;
    cluster.stop_all();

    let mut searched = 0usize;
    for i in 0..3 {
        let log = cluster.log(i);
        assert!(
            log.lines().count() > 1000 && log.contains("TRACE"),
            "node {i} did not log at trace level ({} lines)",
            log.lines().count()
        );
        let audit = std::fs::read(cluster.data_dir(i).join("audit.log")).expect("audit log");
        assert!(!audit.is_empty());
        for secret in values.iter().chain(std::iter::once(&token)) {
            for needle in [secret.clone(), hex::encode(secret)] {
                assert!(
                    !log.contains(&needle),
                    "node {i}'s log contains a secret ({} chars)",
                    needle.len()
                );
                assert!(
                    !audit.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "node {i}'s audit log contains a secret"
                );
            }
        }
        searched += log.len() + audit.len();
    }
    assert!(searched > 100_000, "searched only {searched} bytes");
}
