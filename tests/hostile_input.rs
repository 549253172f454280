//! Hostile input against every public RPC of a real cluster, with a raw gRPC client (the
//! generated one, no CLI-side checks): huge and deep names, control and bidi characters,
//! values at, over and far over the limit, `u64::MAX` versions, waits and TTLs, garbage and
//! oversized tokens and consistency tokens, deeply nested and oversized policies, globs built
//! to backtrack, and 2 000 concurrent calls. Every call answers within its deadline with a
//! clear status (never Internal or Unknown, never a hang), and the cluster keeps serving.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use std::time::Instant;

use coffer::client::Client;
use coffer::pb;
use common::*;
use tonic::Code;

/// Every hostile call must answer within this (the server's own bound on a request is 60 s;
/// the longest wait a client may ask for is 30 s).
const DEADLINE: Duration = Duration::from_secs(40);

type Call = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// The hostile calls, each named. `c` carries the root token. `big`: with the calls whose
/// messages are near the 1 MiB limit.
fn hostile_calls(c: &Client, big: bool) -> Vec<(String, Call)> {
    let deep = "a/".repeat(10_000) + "z";
    let mut names: Vec<(&str, String)> = vec![
        ("10 000 segments", format!("acme/{deep}")),
        ("NUL", "acme/a\0b".into()),
        ("RTL override", "acme/\u{202e}gpj.exe".into()),
        ("ESC and CR", "acme/\u{1b}[2J\rfake".into()),
        ("empty", String::new()),
        ("dots", "acme/../../etc/passwd".into()),
    ];
    if big {
        names.push(("1 MiB name", format!("acme/{}", "x".repeat(1 << 20))));
    }
    let mut calls: Vec<(String, Call)> = vec![];
    macro_rules! call {
        ($what:expr, $client:ident, $method:ident, $req:expr) => {{
            let mut s = c.$client.clone();
            let req = $req;
            calls.push(($what, Box::pin(async move { s.$method(req).await.map(|_| ()) })));
        }};
    }
    for (what, name) in &names {
        let n = || name.clone();
        call!(
            format!("CreateSecret {what}"),
            secrets,
            create_secret,
            pb::CreateSecretRequest { name: n(), spec: None }
        );
        call!(
            format!("UpdateSecret {what}"),
            secrets,
            update_secret,
            pb::UpdateSecretRequest {
                name: n(),
                spec: Some(pb::SecretSpec {
                    description: n(),
                    ..Default::default()
                }),
                expected_etag: n(),
            }
        );
        call!(
            format!("RotateSecret {what}"),
            secrets,
            rotate_secret,
            pb::RotateSecretRequest {
                name: n(),
                rollback: true,
                expected_current: Some(u64::MAX),
            }
        );
        call!(
            format!("RotationStatus {what}"),
            secrets,
            rotation_status,
            pb::RotationStatusRequest {
                prefix: n(),
                owner_team: n(),
                due: true,
                failed: true,
            }
        );
        call!(
            format!("PutSecretValue {what}"),
            secrets,
            put_secret_value,
            pb::PutSecretValueRequest {
                name: n(),
                value: b"fake".to_vec(),
                ..Default::default()
            }
        );
        call!(
            format!("GetSecretValue {what}"),
            secrets,
            get_secret_value,
            pb::GetSecretValueRequest {
                name: n(),
                ..Default::default()
            }
        );
        call!(
            format!("ListVersions {what}"),
            secrets,
            list_versions,
            pb::ListVersionsRequest {
                name: n(),
                ..Default::default()
            }
        );
        call!(
            format!("DescribeSecret {what}"),
            secrets,
            describe_secret,
            pb::DescribeSecretRequest {
                name: n(),
                consistency: None
            }
        );
        call!(
            format!("ListSecrets {what}"),
            secrets,
            list_secrets,
            pb::ListSecretsRequest {
                prefix: n(),
                page_token: n(),
                limit: u32::MAX,
                consistency: None
            }
        );
        call!(
            format!("MoveAlias {what}"),
            secrets,
            move_alias,
            pb::MoveAliasRequest {
                name: n(),
                alias: n(),
                version: u64::MAX,
                expected_version: Some(u64::MAX)
            }
        );
        call!(
            format!("SetVersionState {what}"),
            secrets,
            set_version_state,
            pb::SetVersionStateRequest {
                name: n(),
                version: u64::MAX,
                enabled: false
            }
        );
        call!(
            format!("DestroyVersion {what}"),
            secrets,
            destroy_version,
            pb::DestroyVersionRequest {
                name: n(),
                version: u64::MAX
            }
        );
        call!(
            format!("GetPolicy {what}"),
            access,
            get_policy,
            pb::GetPolicyRequest { name: n() }
        );
        call!(
            format!("DeletePolicy {what}"),
            access,
            delete_policy,
            pb::DeletePolicyRequest { name: n() }
        );
        call!(
            format!("RevokeToken {what}"),
            access,
            revoke_token,
            pb::RevokeTokenRequest { accessor: n() }
        );
        call!(
            format!("CreateToken {what}"),
            access,
            create_token,
            pb::CreateTokenRequest {
                principal: n(),
                tenant: n(),
                groups: vec![n()],
                policies: vec![n()],
                ttl_ms: u64::MAX,
            }
        );
        call!(
            format!("CheckPolicy {what}"),
            access,
            check_policy,
            pb::CheckPolicyRequest {
                principal: n(),
                groups: vec![n()],
                action: n(),
                resource: n(),
                region: n()
            }
        );
        call!(format!("Rewrap {what}"), kms, rewrap, pb::RewrapRequest { region: n() });
    }
    // Values at, just over and far over the limit.
    let mut values = vec![("64 KiB value", 64 << 10), ("64 KiB + 1 value", (64 << 10) + 1)];
    if big {
        values.push(("900 KiB value", 900 << 10));
    }
    for (what, len) in values {
        call!(
            what.to_string(),
            secrets,
            put_secret_value,
            pb::PutSecretValueRequest {
                name: "acme/hostile/value".into(),
                value: vec![0xa5; len],
                ..Default::default()
            }
        );
    }
    // Versions, waits and consistency tokens at their extremes.
    let read = |mode| pb::GetSecretValueRequest {
        name: "acme/hostile/value".into(),
        selector: Some(pb::get_secret_value_request::Selector::Version(u64::MAX)),
        consistency: Some(pb::ReadConsistency { mode: Some(mode) }),
        break_glass: None,
    };
    use pb::read_consistency::Mode;
    for (what, mode) in [
        (
            "bounded, u64::MAX wait",
            Mode::Bounded(pb::BoundedRead {
                max_staleness_ms: 0,
                on_unmet: "explode".into(),
                max_wait_ms: u64::MAX,
            }),
        ),
        (
            "at-least, garbage token",
            Mode::AtLeast(pb::AtLeastRead {
                token: "ct1_zz\0".into(),
                max_wait_ms: u64::MAX,
            }),
        ),
        (
            "at-least, 1 MiB token",
            Mode::AtLeast(pb::AtLeastRead {
                token: format!("ct1_{}", "00".repeat(400 << 10)),
                max_wait_ms: 0,
            }),
        ),
    ] {
        call!(what.to_string(), secrets, get_secret_value, read(mode));
    }
    // Policies: deep, huge, many statements, globs built to backtrack.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let backtrack = format!("{}b", "*a".repeat(200));
    let mut docs = vec![
        (
            "100 000-deep JSON",
            format!(r#"{{"name":"deep","statements":{nested}}}"#),
        ),
        (
            "10 000 statements",
            format!(
                r#"{{"name":"many","statements":[{}]}}"#,
                vec![
                    r#"{"effect":"allow","principals":["user:a"],"actions":["secrets:read"],"resources":["acme/*"]}"#;
                    10_000
                ]
                .join(",")
            ),
        ),
        (
            "backtracking glob",
            format!(
                r#"{{"name":"glob","statements":[{{"effect":"allow","principals":["user:{backtrack}"],"actions":["secrets:read"],"resources":["acme/{backtrack}"]}}]}}"#
            ),
        ),
        ("not JSON", "\0\u{1b}{".to_string()),
    ];
    if big {
        docs.push((
            "900 KiB policy",
            format!(
                r#"{{"name":"huge","description":"{}","statements":[]}}"#,
                "d".repeat(900 << 10)
            ),
        ));
    }
    for (what, document) in docs {
        call!(
            format!("PutPolicy {what}"),
            access,
            put_policy,
            pb::PutPolicyRequest { document }
        );
    }
    call!(
        "CheckPolicy against a backtracking resource".to_string(),
        access,
        check_policy,
        pb::CheckPolicyRequest {
            principal: "user:a".into(),
            groups: vec![],
            action: "secrets:read".into(),
            resource: format!("acme/{}", "a".repeat(500)),
            region: String::new(),
        }
    );
    call!(
        "AuditTail u32::MAX".to_string(),
        access,
        audit_tail,
        pb::AuditTailRequest { count: u32::MAX }
    );
    call!("ListTokens".to_string(), access, list_tokens, pb::ListTokensRequest {});
    call!(
        "AuditVerify".to_string(),
        access,
        audit_verify,
        pb::AuditVerifyRequest {}
    );
    call!("KmsStatus".to_string(), kms, status, pb::KmsStatusRequest {});
    call!(
        "ClusterStatus".to_string(),
        cluster,
        status,
        pb::ClusterStatusRequest {}
    );
    call!("Health".to_string(), cluster, health, pb::HealthRequest {});
    use pb::membership_change_request::Change;
    for (what, change) in [
        ("remove u64::MAX", Change::Remove(u64::MAX)),
        ("transfer to u64::MAX", Change::TransferLeader(u64::MAX)),
        ("promote 0", Change::Promote(0)),
        (
            "add a learner at a garbage address",
            Change::AddLearner(pb::NodeInfo {
                api_addr: "\0:99999".into(),
                ..Default::default()
            }),
        ),
    ] {
        call!(
            format!("ChangeMembership {what}"),
            cluster,
            change_membership,
            pb::MembershipChangeRequest {
                change: Some(change),
                force: true
            }
        );
    }
    calls
}

/// A status a client can act on: not a bug report (Internal, Unknown), not a hang or a crash
/// (Unavailable, DeadlineExceeded, Cancelled), with a bounded one-line message.
fn clear(what: &str, r: &Result<(), tonic::Status>) -> Result<(), String> {
    let Err(s) = r else { return Ok(()) };
    match s.code() {
        Code::Internal | Code::Unknown | Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            return Err(format!("{what}: {:?} {}", s.code(), s.message()))
        }
        _ => {}
    }
    if s.message().is_empty() || s.message().len() > 2048 || s.message().chars().any(|c| c.is_control()) {
        return Err(format!(
            "{what}: unclear message {:?}",
            &s.message()[..s.message().len().min(200)]
        ));
    }
    Ok(())
}

async fn run_all(calls: Vec<(String, Call)>, parallel: usize) -> Vec<String> {
    use futures::StreamExt;
    futures::stream::iter(calls.into_iter().map(|(what, call)| async move {
        let started = Instant::now();
        match tokio::time::timeout(DEADLINE, call).await {
            Ok(r) => clear(&what, &r).err(),
            Err(_) => Some(format!("{what}: no answer within {:?}", started.elapsed())),
        }
    }))
    .buffer_unordered(parallel)
    .filter_map(|e| async move { e })
    .collect()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_hostile_input_clearly_and_the_cluster_keeps_serving() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let c = cluster.client(follower).await;
    wait_token_key(&c).await;
    put(&c, "acme/hostile/value", b"fake-before").await.unwrap();

    // One by one (each failure names its call).
    let failures = run_all(hostile_calls(&c, true), 1).await;
    assert!(
        failures.is_empty(),
        "{} unclear answers:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Garbage and oversized bearer tokens on every service: refused by the seam.
    for token in ["garbage\u{7f}", "not-a-token", &format!("cft_{}", "f".repeat(32 << 10))] {
        let stranger = Client::connect(&cluster.node(follower).api, Some(token)).await;
        let Ok(s) = stranger else { continue }; // refused by the client: fine, nothing sent
        let failures = run_all(hostile_calls(&s, false).into_iter().step_by(7).collect(), 4).await;
        assert!(failures.is_empty(), "token {:.20}…:\n{}", token, failures.join("\n"));
        let e = get(&s, "acme/hostile/value", None).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    }
    // Past the 64 KiB header limit, HTTP/2 refuses the request before any handler, at the
    // connection level: a 431, a GOAWAY (tonic: ResourceExhausted) or the stream cut while the
    // client still writes (a transport error), whichever the race gives. Never a success, and
    // the node goes on serving (checked below).
    let huge = Client::connect(
        &cluster.node(follower).api,
        Some(&format!("cft_{}", "f".repeat(1 << 20))),
    )
    .await
    .unwrap();
    let e = get(&huge, "acme/hostile/value", None).await.unwrap_err();
    assert!(
        e.code() == Code::ResourceExhausted || e.message().contains("431") || e.message().contains("transport error"),
        "{e:?}"
    );

    // 2 000 concurrent calls: hostile ones and ordinary reads, all at once.
    let mut calls = vec![];
    while calls.len() < 2_000 {
        calls.extend(hostile_calls(&c, false));
        for i in 0..100 {
            let c = c.clone();
            calls.push((
                format!("ordinary read {i}"),
                Box::pin(async move { get(&c, "acme/hostile/value", None).await.map(|_| ()) }) as Call,
            ));
        }
    }
    calls.truncate(2_000);
    let started = Instant::now();
    let failures = run_all(calls, 2_000).await;
    assert!(
        failures.is_empty(),
        "under load, {} unclear answers:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    eprintln!("2 000 concurrent calls answered in {:?}", started.elapsed());

    // Still serving, nothing changed, nothing crashed.
    for i in 0..3 {
        let ci = cluster.client(i).await;
        let r = eventually(Duration::from_secs(10), "a read on every node", || {
            let ci = ci.clone();
            async move { get(&ci, "acme/hostile/value", None).await.ok() }
        })
        .await;
        assert!(
            r.value == b"fake-before" || r.value == vec![0xa5; 64 << 10],
            "the value is one that was written"
        );
        assert!(!cluster.log(i).contains("panicked"), "node {i} panicked");
    }
    put(&c, "acme/hostile/after", b"fake-after").await.unwrap();
}
