//! Alias moves are compare-and-swap: of two concurrent promotes with the same expected
//! version, exactly one succeeds.

mod common;

use std::time::Duration;

use coffer::pb;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promotes_with_same_expectation_exactly_one_wins() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let a = cluster.client(leader).await;
    let b = cluster.client((leader + 1) % 3).await;

    for round in 0..5u64 {
        let name = format!("acme/rotating-{round}");
        put(&a, &name, b"fake-v1").await.unwrap();
        // v2 goes in as PENDING, so CURRENT stays at 1.
        let w2 = a
            .secrets
            .clone()
            .put_secret_value(pb::PutSecretValueRequest {
                name: name.clone(),
                value: b"fake-v2".to_vec(),
                alias: "pending".into(),
                must_exist: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(w2.aliases.get("CURRENT"), Some(&1));
        put(&a, &name, b"fake-v3").await.ok(); // v3 CURRENT, v1 PREVIOUS
        let promote = |c: coffer::client::Client, version: u64| {
            let name = name.clone();
            async move {
                c.secrets
                    .clone()
                    .move_alias(pb::MoveAliasRequest {
                        name,
                        alias: "current".into(),
                        version,
                        expected_version: Some(3),
                    })
                    .await
            }
        };
        // Both expect CURRENT = 3; one moves it to 2, the other to 1.
        let (ra, rb) = tokio::join!(promote(a.clone(), 2), promote(b.clone(), 1));
        let (winner_version, loser) = match (ra, rb) {
            (Ok(_), Err(e)) => (2, e),
            (Err(e), Ok(_)) => (1, e),
            (a, b) => panic!("round {round}: exactly one promote must succeed: {a:?} / {b:?}"),
        };
        assert_eq!(loser.code(), tonic::Code::Aborted, "{loser:?}");
        assert!(loser.message().contains("expected 3"), "{}", loser.message());
        // The winner's move is what everyone reads.
        let r = get(&a, &name, None).await.unwrap();
        assert_eq!(r.version, winner_version);
        assert!(r.aliases.contains(&"CURRENT".to_string()));
    }
}
