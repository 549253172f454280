//! The HTTP/JSON API (docs/architecture.md: Delivery) on a real cluster, with curl-equivalent
//! requests: every endpoint, the error body and status of bad input, and the same audit record
//! as the same call over gRPC, and deploy/k8s/external-secrets.yaml's requests as ESO makes them.

mod common;

use std::time::Duration;

use coffer::pb;
use common::*;
use serde_json::json;

/// A bad request: method, path, body, token, and the status and code it must get.
type BadCase<'a> = (&'a str, String, Option<Vec<u8>>, Option<&'a str>, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_json_and_bad_requests_get_their_status_and_code() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    let follower = (leader + 1) % 3;
    let http = cluster.node(follower).http.clone();
    let token = Some(cluster.token());
    let call = |method: &'static str, path: String, body: Option<serde_json::Value>, token: Option<&str>| {
        let http = http.clone();
        let token = token.map(str::to_string);
        async move {
            let body = body.map(|b| b.to_string().into_bytes());
            http_request(&http, method, &path, token.as_deref(), body.as_deref())
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        }
    };

    // Put, as text and as base64; read back by alias, version and default.
    let p1 = call(
        "PUT",
        "/v1/secrets/acme/http/db".into(),
        Some(json!({"value": "fake-http-one"})),
        token,
    )
    .await;
    assert_eq!((p1.status, p1.json["version"].as_u64()), (200, Some(1)), "{}", p1.text);
    let p2 = call(
        "PUT",
        "/v1/secrets/acme/http/db".into(),
        Some(json!({"value_base64": "ZmFrZS1odHRwLXR3bw=="})),
        token,
    )
    .await;
    assert_eq!(p2.json["aliases"]["CURRENT"], 2, "{}", p2.text);
    let g = call("GET", "/v1/secrets/acme/http/db".into(), None, token).await;
    assert_eq!(
        (g.status, g.json["value"].as_str()),
        (200, Some("fake-http-two")),
        "{}",
        g.text
    );
    assert_eq!(
        g.json["read"]["served_by"]["region"],
        cluster.node(follower).region.as_str()
    );
    let g1 = call("GET", "/v1/secrets/acme/http/db?version=1".into(), None, token).await;
    assert_eq!(g1.json["value"], "fake-http-one");
    let prev = call(
        "GET",
        "/v1/secrets/acme/http/db?alias=PREVIOUS&consistency=linearizable".into(),
        None,
        token,
    )
    .await;
    assert_eq!(
        (prev.json["version"].as_u64(), prev.json["read"]["consistency"].as_str()),
        (Some(1), Some("linearizable")),
        "{}",
        prev.text
    );

    // Versions, the alias compare-and-swap, the listing in pages.
    let vs = call("GET", "/v1/secrets/acme/http/db/versions".into(), None, token).await;
    let listed: Vec<u64> = vs.json["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [1, 2], "{}", vs.text);
    let moved = call(
        "POST",
        "/v1/secrets/acme/http/db/aliases/CURRENT".into(),
        Some(json!({"version": 1, "expected_version": 2})),
        token,
    )
    .await;
    assert_eq!(
        (moved.status, moved.json["aliases"]["CURRENT"].as_u64()),
        (200, Some(1)),
        "{}",
        moved.text
    );
    let lost = call(
        "POST",
        "/v1/secrets/acme/http/db/aliases/CURRENT".into(),
        Some(json!({"version": 2, "expected_version": 2})),
        token,
    )
    .await;
    assert_eq!((lost.status, lost.code()), (409, "alias_cas_failed"), "{}", lost.text);
    call(
        "PUT",
        "/v1/secrets/acme/http/api".into(),
        Some(json!({"value": "fake-http-api"})),
        token,
    )
    .await;
    let page1 = call("GET", "/v1/secrets?prefix=acme/http/&limit=1".into(), None, token).await;
    assert_eq!(page1.json["names"], json!(["acme/http/api"]), "{}", page1.text);
    let next = page1.json["next_page_token"].as_str().unwrap().to_string();
    let page2 = call(
        "GET",
        format!("/v1/secrets?prefix=acme/http/&limit=1&page_token={next}"),
        None,
        token,
    )
    .await;
    assert_eq!(page2.json["names"], json!(["acme/http/db"]), "{}", page2.text);
    let health = call("GET", "/v1/health".into(), None, None).await;
    assert_eq!((health.status, health.json["status"].as_str()), (200, Some("serving")));

    // Bad input: each its status and stable code, and nothing written.
    let cases: Vec<BadCase> = vec![
        (
            "PUT",
            "/v1/secrets/acme/http/db".into(),
            Some(b"{\"value\": \"fake-unclosed".to_vec()),
            token,
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/secrets/acme/http/db".into(),
            Some(b"{\"valu\": \"fake\"}".to_vec()),
            token,
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/secrets/acme/Bad%20Name".into(),
            Some(br#"{"value": "fake"}"#.to_vec()),
            token,
            400,
            "invalid_argument",
        ),
        (
            "GET",
            "/v1/secrets/acme/http/db".into(),
            None,
            None,
            401,
            "unauthenticated",
        ),
        (
            "GET",
            "/v1/secrets/acme/http/db".into(),
            None,
            Some("cft_not-a-real-token"),
            401,
            "unauthenticated",
        ),
        (
            "PUT",
            "/v1/secrets/acme/http/db".into(),
            Some(vec![b'x'; 200 * 1024]),
            token,
            413,
            "invalid_argument",
        ),
        (
            "GET",
            "/v1/secrets/acme/http/db?version=two".into(),
            None,
            token,
            400,
            "invalid_argument",
        ),
        (
            "GET",
            "/v1/secrets/acme/http/db?consistency=eventually".into(),
            None,
            token,
            400,
            "invalid_argument",
        ),
        (
            "GET",
            "/v1/secrets/acme/http/nothing".into(),
            None,
            token,
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/secrets/acme/http/db".into(),
            None,
            token,
            405,
            "invalid_argument",
        ),
        ("GET", "/v2/anything".into(), None, token, 404, "not_found"),
    ];
    for (method, path, body, tok, status, code) in cases {
        let a = http_request(&http, method, &path, tok, body.as_deref()).await.unwrap();
        assert_eq!((a.status, a.code()), (status, code), "{method} {path}: {}", a.text);
        assert!(
            !a.json["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{}",
            a.text
        );
        assert!(
            !a.text.contains("fake-unclosed"),
            "an error quoted the body: {}",
            a.text
        );
    }
    let after = call("GET", "/v1/secrets/acme/http/db/versions".into(), None, token).await;
    assert_eq!(
        after.json["versions"].as_array().unwrap().len(),
        2,
        "a refused request wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_over_http_leaves_the_same_audit_record_as_over_grpc() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put(&root, "acme/audit/db", b"fake-audited").await.unwrap();
    get(&root, "acme/audit/db", None).await.unwrap();
    let a = http_request(
        &cluster.node(leader).http,
        "GET",
        "/v1/secrets/acme/audit/db",
        Some(cluster.token()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let tail = root
        .access
        .clone()
        .audit_tail(pb::AuditTailRequest { count: 50 })
        .await
        .unwrap()
        .into_inner();
    let reads: Vec<pb::AuditEvent> = tail
        .entries
        .into_iter()
        .filter_map(|e| e.event)
        .filter(|e| e.resource == "acme/audit/db" && e.action == "secrets:read")
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    let shape = |e: &pb::AuditEvent| {
        (
            e.principal.clone(),
            e.decision.clone(),
            e.version,
            e.consistency.clone(),
            e.outcome.clone(),
            e.credential.clone(),
            e.source.split(':').next().unwrap_or("").to_string(),
        )
    };
    assert_eq!(shape(&reads[0]), shape(&reads[1]));
    assert_eq!(reads[1].version, 1);
}

/// deploy/k8s/external-secrets.yaml as External Secrets Operator runs it: the SecretStore's URL
/// with each ExternalSecret key filled in (on a node of this cluster instead of the manifest's
/// host), its Authorization header with a read-only token, and its JSON path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_secrets_store_in_deploy_k8s_reads_through_the_http_api() {
    let manifest = include_str!("../deploy/k8s/external-secrets.yaml");
    let fields = |name: &str| -> Vec<String> {
        manifest
            .lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().trim_matches('"').to_string())
            .collect()
    };
    let url = fields("url:").pop().expect("the store's url");
    let authorization = fields("Authorization:")
        .pop()
        .expect("the store's Authorization header");
    let json_path = fields("jsonPath:").pop().expect("the store's result.jsonPath");
    let keys: Vec<String> = fields("key: ").into_iter().filter(|k| k.starts_with("acme/")).collect();
    assert_eq!(keys, ["acme/payments/db-user", "acme/payments/db-password"]);
    let (_, path_template) = url.split_once(":7600").expect("the url names the HTTP port");
    let field = json_path.strip_prefix("$.").expect("a top-level JSON path");

    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put_policy(
        &root,
        r#"{"name":"payments-eso","statements":[{"effect":"allow","principals":["service:acme:eso"],
            "actions":["secrets:read"],"resources":["acme/payments/*"]}]}"#,
    )
    .await;
    let eso = create_token(
        &root,
        "service:acme:eso",
        &[],
        &["payments-eso"],
        Duration::from_secs(3600),
    )
    .await;
    put(&root, "acme/payments/db-user", b"fake-payments-user")
        .await
        .unwrap();
    put(&root, "acme/payments/db-password", b"fake-payments-password")
        .await
        .unwrap();
    let follower = cluster.node((leader + 1) % 3).http.clone();
    let header = authorization.replace("{{ print .auth.token }}", &eso.token);
    let token = header.strip_prefix("Bearer ").expect("a bearer token");
    let fetch = |key: &str| {
        let (follower, path, token) = (
            follower.clone(),
            path_template.replace("{{ .remoteRef.key }}", key),
            token.to_string(),
        );
        async move { http_request(&follower, "GET", &path, Some(&token), None).await.unwrap() }
    };
    for (key, want) in keys.iter().zip(["fake-payments-user", "fake-payments-password"]) {
        let a = eventually(Duration::from_secs(10), "the follower to know the token", || async {
            let a = fetch(key).await;
            (a.status != 401).then_some(a)
        })
        .await;
        assert_eq!(
            (a.status, a.json[field].as_str()),
            (200, Some(want)),
            "{key}: {}",
            a.text
        );
    }

    // A name that does not exist answers 404, which ESO takes as deleted; one the token may not
    // read answers 403 (ESO reports the error and keeps its copy).
    let missing = fetch("acme/payments/never-written").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"), "{}", missing.text);
    put(&root, "acme/other/key", b"fake-other").await.unwrap();
    let denied = eventually(Duration::from_secs(10), "the follower to apply the put", || async {
        let a = fetch("acme/other/key").await;
        (a.status != 404).then_some(a)
    })
    .await;
    assert_eq!(
        (denied.status, denied.code()),
        (403, "permission_denied"),
        "{}",
        denied.text
    );
    assert!(!denied.text.contains("fake-other"));
}
