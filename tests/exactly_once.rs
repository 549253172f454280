//! A client that sends its own request id (`coffer-request-id`) may retry a write as often as
//! it likes, through any node: every attempt is answered with the first one's outcome and the
//! write is applied once. Also for alias moves after later writes, and for tokens (the retry
//! gets the very token the first attempt issued). Ids are scoped by principal and checked.

mod common;

use std::time::Duration;

use coffer::client::with_request_id;
use coffer::client::Client;
use coffer::pb;
use common::*;

async fn put_as(c: &Client, name: &str, value: &[u8], id: &str) -> Result<pb::WriteResponse, tonic::Status> {
    let req = pb::PutSecretValueRequest {
        name: name.into(),
        value: value.to_vec(),
        alias: String::new(),
        must_exist: false,
        ..Default::default()
    };
    c.secrets
        .clone()
        .put_secret_value(with_request_id(req, id).expect("a valid id"))
        .await
        .map(|r| r.into_inner())
}

async fn promote_as(
    c: &Client,
    name: &str,
    version: u64,
    expected: u64,
    id: &str,
) -> Result<pb::WriteResponse, tonic::Status> {
    let req = pb::MoveAliasRequest {
        name: name.into(),
        alias: "current".into(),
        version,
        expected_version: Some(expected),
    };
    c.secrets
        .clone()
        .move_alias(with_request_id(req, id).expect("a valid id"))
        .await
        .map(|r| r.into_inner())
}

/// A move of CURRENT to `version` that names no expected version (the node reads it).
async fn move_as(c: &Client, name: &str, version: u64, id: &str) -> Result<pb::WriteResponse, tonic::Status> {
    let req = pb::MoveAliasRequest {
        name: name.into(),
        alias: "current".into(),
        version,
        expected_version: None,
    };
    c.secrets
        .clone()
        .move_alias(with_request_id(req, id).expect("a valid id"))
        .await
        .map(|r| r.into_inner())
}

/// A move retried through a node that lags behind the secret's creation is never answered
/// NotFound from that node's replica: while the node cannot catch up it says so (a retryable
/// error), and once it can, the retry is answered with the first outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_retried_through_a_lagging_node_is_never_answered_not_found() {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], FAST_RAFT);
    spec.rtt_ms = Some(|_, _| 0);
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let f = (leader + 1) % 3;
    let lc = cluster.client(leader).await;
    let fc = cluster.client(f).await;
    wait_token_key(&lc).await;
    cluster.isolate(f);
    let name = "acme/prod/lagging";
    put(&lc, name, b"fake-one").await.unwrap();
    put(&lc, name, b"fake-two").await.unwrap();
    let moved = move_as(&lc, name, 1, "mv-1").await.unwrap();
    let e = move_as(&fc, name, 1, "mv-1").await.unwrap_err();
    assert_ne!(e.code(), tonic::Code::NotFound, "the secret exists: {e:?}");
    assert!(e.message().contains("not found on this replica"), "{}", e.message());
    cluster.heal_all();
    let again = eventually(Duration::from_secs(30), "the retry through the healed node", || async {
        move_as(&fc, name, 1, "mv-1").await.ok()
    })
    .await;
    assert_eq!(
        (again.version, again.log_index),
        (moved.version, moved.log_index),
        "answered with the first outcome"
    );
    // A move of a secret that exists nowhere is still NotFound (from the model).
    let e = move_as(&lc, "acme/prod/never", 1, "mv-2").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
}

async fn versions(c: &Client, name: &str) -> Vec<u64> {
    let req = pb::ListVersionsRequest {
        name: name.into(),
        consistency: Some(pb::ReadConsistency {
            mode: Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})),
        }),
        ..Default::default()
    };
    let r = c.secrets.clone().list_versions(req).await.unwrap().into_inner();
    r.versions.into_iter().map(|v| v.version).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_answered_with_its_first_outcome_through_any_node() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let a = cluster.client(leader).await;
    let b = cluster.client((leader + 1) % 3).await;
    wait_token_key(&a).await;
    let name = "acme/prod/retried";

    // A put, then its retry through another node (a client re-sends the same request).
    let first = put_as(&a, name, b"fake-first", "job-1").await.unwrap();
    assert_eq!(first.version, 1);
    let again = put_as(&b, name, b"fake-first", "job-1").await.unwrap();
    assert_eq!(
        (again.version, again.log_index),
        (1, first.log_index),
        "answered, not applied"
    );
    assert_eq!(versions(&a, name).await, [1], "one version");
    assert_eq!(put_as(&a, name, b"fake-second", "job-2").await.unwrap().version, 2);

    // A promote retried after another write: answered as it was (CURRENT 2 -> 1), not refused
    // by its own CAS and not applied again.
    let moved = promote_as(&a, name, 1, 2, "job-3").await.unwrap();
    put_as(&a, name, b"fake-third", "job-4").await.unwrap();
    let retried = promote_as(&b, name, 1, 2, "job-3").await.unwrap();
    assert_eq!(retried.log_index, moved.log_index);
    let now = get_with(
        &b,
        name,
        None,
        Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})),
    )
    .await
    .unwrap();
    assert_eq!(now.version, 3, "the retry did not move CURRENT back");

    // An id reused for another request is refused and changes nothing.
    let e = put_as(&a, "acme/prod/other", b"fake-x", "job-1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("already used"), "{}", e.message());
    assert!(get(&a, "acme/prod/other", None).await.is_err());
    // So is one reused for the same name with another value: the value a caller meant to write
    // is not silently answered with an earlier one.
    let e = put_as(&b, name, b"fake-other-value", "job-1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("another value"), "{}", e.message());
    assert!(!e.message().contains("fake-other-value"), "never echoes a value");
    assert_eq!(versions(&a, name).await, [1, 2, 3], "nothing written");

    // A malformed id is refused before anything is written, and not echoed back.
    let mut bad = tonic::Request::new(pb::PutSecretValueRequest {
        name: "acme/prod/bad-id".into(),
        value: b"fake-x".to_vec(),
        alias: String::new(),
        must_exist: false,
        ..Default::default()
    });
    bad.metadata_mut()
        .insert("coffer-request-id", "no spaces|allowed".parse().unwrap());
    let e = a.secrets.clone().put_secret_value(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("coffer-request-id") && !e.message().contains("no spaces"),
        "{}",
        e.message()
    );
    assert!(with_request_id((), "no spaces").is_err(), "the SDK checks ids too");

    // Ids are scoped by principal: another principal's "job-1" is its own request.
    let policy = r#"{"name":"acme-writer","statements":[{"effect":"allow","principals":["service:acme:writer"],"actions":["secrets:write","secrets:read"],"resources":["acme/*"]}]}"#;
    a.access
        .clone()
        .put_policy(pb::PutPolicyRequest {
            document: policy.into(),
        })
        .await
        .unwrap();
    let mint = |c: &Client| {
        let req = pb::CreateTokenRequest {
            principal: "service:acme:writer".into(),
            tenant: "acme".into(),
            groups: vec![],
            policies: vec!["acme-writer".into()],
            ttl_ms: 3_600_000,
        };
        let mut access = c.access.clone();
        async move {
            let req = with_request_id(req, "mint-1").unwrap();
            access.create_token(req).await.unwrap().into_inner()
        }
    };
    // A token request retried through another node gets the same token back.
    let issued = mint(&a).await;
    let reissued = mint(&b).await;
    assert_eq!(
        (reissued.accessor.as_str(), reissued.token.as_str()),
        (issued.accessor.as_str(), issued.token.as_str())
    );
    let tokens = a
        .access
        .clone()
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    let writers = tokens
        .tokens
        .iter()
        .filter(|t| t.principal == "service:acme:writer")
        .count();
    assert_eq!(writers, 1, "one token issued");
    let writer = cluster.client_with(leader, Some(&issued.token)).await;
    let theirs = put_as(&writer, name, b"fake-writer", "job-1").await.unwrap();
    assert_eq!(theirs.version, 4, "a new request, not root's job-1");

    // A token request retried after the policy it names was deleted is answered with the token
    // it issued (the policy check is the state machine's, after the request table), and a new
    // request naming that policy is refused.
    let temp = r#"{"name":"acme-temp","statements":[{"effect":"allow","principals":["service:acme:temp"],"actions":["secrets:read"],"resources":["acme/*"]}]}"#;
    a.access
        .clone()
        .put_policy(pb::PutPolicyRequest { document: temp.into() })
        .await
        .unwrap();
    let mint_temp = |c: &Client, id: &'static str| {
        let req = pb::CreateTokenRequest {
            principal: "service:acme:temp".into(),
            tenant: "acme".into(),
            groups: vec![],
            policies: vec!["acme-temp".into()],
            ttl_ms: 3_600_000,
        };
        let mut access = c.access.clone();
        async move { access.create_token(with_request_id(req, id).unwrap()).await }
    };
    let issued = mint_temp(&a, "mint-2").await.unwrap().into_inner();
    a.access
        .clone()
        .delete_policy(pb::DeletePolicyRequest {
            name: "acme-temp".into(),
        })
        .await
        .unwrap();
    let retried = mint_temp(&b, "mint-2").await.unwrap().into_inner();
    assert_eq!(
        (retried.accessor.as_str(), retried.token.as_str()),
        (issued.accessor.as_str(), issued.token.as_str()),
        "the retry is answered with the token first issued"
    );
    let e = mint_temp(&a, "mint-3").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(
        e.message().contains("policy acme-temp does not exist"),
        "{}",
        e.message()
    );

    // The CLI: the same --request-id twice writes once.
    let cli_put = |value: &str| {
        cluster.cli_json(
            (leader + 2) % 3,
            &[
                "secret",
                "put",
                "acme/prod/cli",
                "--value",
                value,
                "--request-id",
                "cli-1",
            ],
        )
    };
    let one = cli_put("fake-cli-1");
    let two = cli_put("fake-cli-1");
    assert_eq!(one["version"], two["version"]);
    assert_eq!(versions(&a, "acme/prod/cli").await, [1]);
    let (code, _, err) = cluster.cli(
        leader,
        &[
            "secret",
            "put",
            "acme/prod/cli",
            "--value",
            "fake-x",
            "--request-id",
            "bad id",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--request-id"), "{err}");
}
