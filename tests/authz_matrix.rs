//! The authorization matrix: tenants acme and globex, services, a group, a break-glass
//! principal and a platform admin, every action, wildcard escapes, path tricks, expired and
//! revoked tokens, a region condition and cross-tenant denial — over real nodes, with policies
//! and tokens replicated through Raft and decided on whichever node serves the request.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use coffer::client::Client;
use coffer::pb;
use common::*;
use tonic::Code;

const POLICIES: &[&str] = &[
    r#"{"name":"acme-app","statements":[{"sid":"app-rw","effect":"allow","principals":["service:acme:api"],
        "actions":["secrets:read","secrets:write"],"resources":["acme/app/*"]}]}"#,
    r#"{"name":"shared-certs","statements":[{"effect":"allow","principals":["service:acme:api"],
        "actions":["secrets:read"],"resources":["shared/certs/*"]}]}"#,
    r#"{"name":"acme-rotator","statements":[{"effect":"allow","principals":["service:acme:rotator"],
        "actions":["secrets:rotate"],"resources":["acme/*"]}]}"#,
    r#"{"name":"acme-ops","statements":[
        {"sid":"ops-all","effect":"allow","principals":["group:acme:ops"],"actions":["secrets:*"],"resources":["acme/*"]},
        {"sid":"no-app-destroy","effect":"deny","principals":["group:acme:ops"],"actions":["secrets:admin"],"resources":["acme/app/*"]}]}"#,
    r#"{"name":"acme-greedy","statements":[{"effect":"allow","principals":["service:acme:greedy"],
        "actions":["*"],"resources":["*","acme*","globex/*"]}]}"#,
    r#"{"name":"globex-app","statements":[{"effect":"allow","principals":["service:globex:api"],
        "actions":["secrets:read"],"resources":["globex/*"]}]}"#,
    r#"{"name":"break-glass","statements":[{"sid":"oncall","effect":"allow","principals":["user:oncall"],
        "actions":["secrets:read-break-glass"],"resources":["*"],"conditions":{"max_token_ttl":"1h"}}]}"#,
    r#"{"name":"platform-admin","statements":[{"sid":"admins","effect":"allow","principals":["user:admin"],
        "actions":["policy:admin","cluster:admin","audit:read","drill:run"],"resources":["*"]}]}"#,
    r#"{"name":"acme-delegate","statements":[{"effect":"allow","principals":["user:delegate"],
        "actions":["policy:admin"],"resources":["policy/acme-*","token/service:acme:*","token/user:*"]}]}"#,
    r#"{"name":"acme-lister","statements":[
        {"effect":"allow","principals":["service:acme:lister"],"actions":["secrets:read"],"resources":["acme/*"]},
        {"effect":"deny","principals":["service:acme:lister"],"actions":["secrets:*"],"resources":["acme/prod/*"]}]}"#,
    r#"{"name":"cluster-operator","statements":[{"effect":"allow","principals":["user:clusterop"],
        "actions":["cluster:admin"],"resources":["cluster"]}]}"#,
    r#"{"name":"kms-operator","statements":[{"effect":"allow","principals":["user:kmsop"],
        "actions":["cluster:admin"],"resources":["kms"]}]}"#,
    r#"{"name":"eu-only","statements":[{"effect":"allow","principals":["service:acme:eu"],
        "actions":["secrets:read"],"resources":["acme/*"],"conditions":{"regions":["eu-west"]}}]}"#,
];

const SECRETS: &[&str] = &[
    "acme/app/db",
    "acme/other/x",
    "acme/prod/db",
    "acmecorp/app/db",
    "globex/app/db",
    "shared/certs/ca",
    "shared/other/y",
];

/// The obviously fake value stored under `name`.
fn value_of(name: &str) -> String {
    format!("fake-value-of-{}", name.replace('/', "-"))
}

#[derive(Debug, Clone)]
enum Op {
    Read(&'static str),
    BreakGlass(&'static str, &'static str, &'static str),
    Write(&'static str),
    Rotate(&'static str),
    Destroy(&'static str),
    Describe(&'static str),
    List(&'static str),
    PolicyAdmin,
    /// Cluster status: `cluster:admin` on `cluster`.
    ClusterAdmin,
    /// KMS status: `cluster:admin` on `kms`.
    KmsAdmin,
    AuditRead,
}

/// Runs `op`; Ok(()) when the seam let it through (the operation may still fail afterwards
/// for its own reasons, e.g. a destroy of a version that does not exist), Err(code, message)
/// when it was refused.
async fn run(c: &Client, op: &Op) -> Result<(), (Code, String)> {
    let refused = |s: tonic::Status| match s.code() {
        Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument => {
            Err((s.code(), s.message().to_string()))
        }
        _ => Ok(()),
    };
    match op {
        Op::Read(name) => match get(c, name, None).await {
            Ok(r) => {
                assert_eq!(
                    r.value,
                    value_of(name).into_bytes(),
                    "a read of {name} returned another value"
                );
                Ok(())
            }
            Err(s) => refused(s),
        },
        Op::BreakGlass(name, reason, ticket) => {
            let r = c
                .secrets
                .clone()
                .get_secret_value(pb::GetSecretValueRequest {
                    name: name.to_string(),
                    break_glass: Some(pb::BreakGlass {
                        reason: reason.to_string(),
                        ticket: ticket.to_string(),
                    }),
                    ..Default::default()
                })
                .await;
            match r {
                Ok(r) => {
                    assert_eq!(r.into_inner().value, value_of(name).into_bytes());
                    Ok(())
                }
                Err(s) => refused(s),
            }
        }
        Op::Write(name) => put(c, name, value_of(name).as_bytes())
            .await
            .map(|_| ())
            .or_else(refused),
        Op::Rotate(name) => c
            .secrets
            .clone()
            .move_alias(pb::MoveAliasRequest {
                name: name.to_string(),
                alias: "next".into(),
                version: 1,
                expected_version: None,
            })
            .await
            .map(|_| ())
            .or_else(refused),
        Op::Destroy(name) => c
            .secrets
            .clone()
            .destroy_version(pb::DestroyVersionRequest {
                name: name.to_string(),
                version: 999,
            })
            .await
            .map(|_| ())
            .or_else(refused),
        Op::Describe(name) => c
            .secrets
            .clone()
            .describe_secret(pb::DescribeSecretRequest {
                name: name.to_string(),
                consistency: None,
            })
            .await
            .map(|_| ())
            .or_else(refused),
        Op::List(prefix) => c
            .secrets
            .clone()
            .list_secrets(pb::ListSecretsRequest {
                prefix: prefix.to_string(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .or_else(refused),
        Op::PolicyAdmin => c
            .access
            .clone()
            .list_policies(pb::ListPoliciesRequest {})
            .await
            .map(|_| ())
            .or_else(refused),
        Op::ClusterAdmin => c
            .cluster
            .clone()
            .status(pb::ClusterStatusRequest {})
            .await
            .map(|_| ())
            .or_else(refused),
        Op::KmsAdmin => c
            .kms
            .clone()
            .status(pb::KmsStatusRequest {})
            .await
            .map(|_| ())
            .or_else(refused),
        Op::AuditRead => c
            .access
            .clone()
            .audit_tail(pb::AuditTailRequest { count: 1 })
            .await
            .map(|_| ())
            .or_else(refused),
    }
}

/// The first page of names a listing of `prefix` shows this client.
async fn list_names(c: &Client, prefix: &str) -> Vec<String> {
    c.secrets
        .clone()
        .list_secrets(pb::ListSecretsRequest {
            prefix: prefix.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_holds_on_every_node() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;

    for doc in POLICIES {
        put_policy(&root, doc).await;
    }
    for name in SECRETS {
        put(&root, name, value_of(name).as_bytes()).await.unwrap();
    }
    let day = Duration::from_secs(24 * 3600);
    let mut tokens: BTreeMap<&str, String> = BTreeMap::new();
    let mut accessors: BTreeMap<&str, String> = BTreeMap::new();
    for (who, principal, groups, policies, ttl) in [
        (
            "api",
            "service:acme:api",
            &[][..],
            &["acme-app", "shared-certs"][..],
            day,
        ),
        ("rotator", "service:acme:rotator", &[], &["acme-rotator"], day),
        ("dana", "user:acme:dana", &["group:acme:ops"], &["acme-ops"], day),
        ("greedy", "service:acme:greedy", &[], &["acme-greedy"], day),
        ("globex", "service:globex:api", &[], &["globex-app"], day),
        (
            "oncall",
            "user:oncall",
            &[],
            &["break-glass"],
            Duration::from_secs(1800),
        ),
        ("oncall-long", "user:oncall", &[], &["break-glass"], day),
        ("admin", "user:admin", &[], &["platform-admin"], day),
        ("clusterop", "user:clusterop", &[], &["cluster-operator"], day),
        ("lister", "service:acme:lister", &[], &["acme-lister"], day),
        ("delegate", "user:delegate", &[], &["acme-delegate"], day),
        ("kmsop", "user:kmsop", &[], &["kms-operator"], day),
        ("eu", "service:acme:eu", &[], &["eu-only"], day),
        (
            "expired",
            "service:acme:api",
            &[],
            &["acme-app"],
            Duration::from_secs(1),
        ),
        ("revoked", "service:acme:api", &[], &["acme-app"], day),
    ] {
        let t = create_token(&root, principal, groups, policies, ttl).await;
        assert!(t.token.starts_with("cft_") && !format!("{t:?}").contains(&t.token));
        tokens.insert(who, t.token);
        accessors.insert(who, t.accessor);
    }
    // Tokens only for policies that exist, of the principal's own tenant.
    let bad = root
        .access
        .clone()
        .create_token(pb::CreateTokenRequest {
            principal: "service:acme:api".into(),
            tenant: "globex".into(),
            policies: vec!["acme-app".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    let missing = root
        .access
        .clone()
        .create_token(pb::CreateTokenRequest {
            principal: "service:acme:api".into(),
            policies: vec!["no-such-policy".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Revoke one token by its accessor; the listing shows it revoked, never the token.
    root.access
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            accessor: accessors["revoked"].clone(),
        })
        .await
        .unwrap();
    let list = root
        .access
        .clone()
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.tokens.len(), tokens.len());
    let listed = list.tokens.iter().find(|t| t.accessor == accessors["revoked"]).unwrap();
    assert!(listed.revoked_at_ms > 0 && listed.principal == "service:acme:api");
    assert!(!format!("{list:?}").contains(&tokens["revoked"]));

    // Everything replicated: every node knows the newest token before the matrix starts.
    for i in 0..3 {
        let c = cluster.client_with(i, Some(&tokens["admin"])).await;
        eventually(Duration::from_secs(10), "tokens replicated", || {
            let c = c.clone();
            async move { run(&c, &Op::PolicyAdmin).await.ok() }
        })
        .await;
    }
    let c = cluster.client_with(0, Some(&tokens["expired"])).await;
    eventually(Duration::from_secs(10), "the 1 s token to expire", || {
        let c = c.clone();
        async move {
            match run(&c, &Op::Read("acme/app/db")).await {
                Err((Code::Unauthenticated, m)) if m.contains("expired") => Some(()),
                _ => None,
            }
        }
    })
    .await;

    use Op::*;
    let y = true;
    let n = false;
    let matrix: Vec<(&str, Op, bool)> = vec![
        // A service reads and writes its own path, and nothing else of its tenant.
        ("api", Read("acme/app/db"), y),
        ("api", Write("acme/app/db"), y),
        ("api", Describe("acme/app/db"), y),
        ("api", List("acme/app"), y),
        ("api", Rotate("acme/app/db"), n),
        ("api", Destroy("acme/app/db"), n),
        ("api", BreakGlass("acme/app/db", "incident in progress", "INC-1"), n),
        ("api", Read("acme/other/x"), n),
        ("api", List("acme"), n),
        // Wildcard escapes and other tenants.
        ("api", Read("acmecorp/app/db"), n),
        ("api", List("acmecorp"), n),
        ("api", Read("globex/app/db"), n),
        // shared/ only where granted explicitly.
        ("api", Read("shared/certs/ca"), y),
        ("api", Read("shared/other/y"), n),
        // Path tricks never reach another secret.
        ("api", Read("acme/app/../other/x"), n),
        ("api", Read("acme/app/%2F..%2Fother/x"), n),
        ("api", Read("acme/app/%2e%2e/other/x"), n),
        ("api", Read("\u{430}cme/app/db"), n),
        ("api", Read("acme/app/db/"), n),
        ("api", Read("acme//app/db"), n),
        ("api", Read("acme/app//db"), n),
        ("api", Read("ACME/app/db"), n),
        ("api", Read("acme/app/./db"), n),
        ("api", Read("acme/app/db\u{0}"), n),
        ("api", Read("/acme/app/db"), n),
        ("api", Read(""), n),
        // Platform actions.
        ("api", PolicyAdmin, n),
        ("api", ClusterAdmin, n),
        ("api", AuditRead, n),
        // A rotator rotates and sees metadata, but never plaintext.
        ("rotator", Rotate("acme/app/db"), y),
        ("rotator", Describe("acme/app/db"), y),
        ("rotator", Read("acme/app/db"), n),
        ("rotator", Write("acme/app/db"), n),
        ("rotator", Rotate("globex/app/db"), n),
        // Group membership; deny wins; wildcards never cover break-glass.
        ("dana", Read("acme/other/x"), y),
        ("dana", Write("acme/other/x"), y),
        ("dana", Destroy("acme/other/x"), y),
        ("dana", Read("acme/app/db"), y),
        ("dana", Destroy("acme/app/db"), n),
        ("dana", BreakGlass("acme/app/db", "incident in progress", "INC-2"), n),
        ("dana", Read("globex/app/db"), n),
        // A tenant principal with `*` everywhere stays inside its tenant.
        ("greedy", Read("acme/app/db"), y),
        ("greedy", Read("acmecorp/app/db"), n),
        ("greedy", Read("globex/app/db"), n),
        ("greedy", Read("shared/certs/ca"), n),
        ("greedy", PolicyAdmin, n),
        ("greedy", ClusterAdmin, n),
        ("greedy", KmsAdmin, n),
        ("greedy", AuditRead, n),
        ("greedy", BreakGlass("acme/app/db", "incident in progress", "INC-3"), n),
        // The other tenant.
        ("globex", Read("globex/app/db"), y),
        ("globex", Read("acme/app/db"), n),
        ("globex", List("acme"), n),
        // Break-glass: only with the action, a reason and a ticket, and a short-lived token.
        (
            "oncall",
            BreakGlass("acme/app/db", "payments down, INC-4 bridge", "INC-4"),
            y,
        ),
        (
            "oncall",
            BreakGlass("globex/app/db", "payments down, INC-4 bridge", "INC-4"),
            y,
        ),
        ("oncall", Read("acme/app/db"), n),
        ("oncall", BreakGlass("acme/app/db", "", "INC-4"), n),
        (
            "oncall",
            BreakGlass("acme/app/db", "payments down, INC-4 bridge", ""),
            n,
        ),
        (
            "oncall",
            BreakGlass("acme/app/db", "payments down, INC-4 bridge", "INC 4; rm"),
            n,
        ),
        (
            "oncall-long",
            BreakGlass("acme/app/db", "payments down, INC-4 bridge", "INC-4"),
            n,
        ),
        // The platform admin administers but reads no secret.
        ("admin", PolicyAdmin, y),
        ("admin", ClusterAdmin, y),
        ("admin", KmsAdmin, y),
        // The KMS RPCs are on the `kms` resource, the cluster's on `cluster`.
        ("clusterop", ClusterAdmin, y),
        ("clusterop", KmsAdmin, n),
        ("kmsop", KmsAdmin, y),
        ("kmsop", ClusterAdmin, n),
        ("admin", AuditRead, y),
        ("admin", Read("acme/app/db"), n),
        ("admin", Write("acme/app/db"), n),
        // Expired and revoked tokens do nothing.
        ("expired", Read("acme/app/db"), n),
        ("revoked", Read("acme/app/db"), n),
        ("revoked", Write("acme/app/db"), n),
    ];
    let mut failures = vec![];
    for (k, (who, op, allowed)) in matrix.iter().enumerate() {
        // Spread the cases over the nodes: every node decides locally.
        let node = k % 3;
        let c = cluster.client_with(node, Some(&tokens[who])).await;
        let got = run(&c, op).await;
        if got.is_ok() != *allowed {
            failures.push(format!(
                "{who} {op:?} on node {node}: expected allowed={allowed}, got {got:?}"
            ));
        }
        if let Err((code, msg)) = &got {
            for v in SECRETS.iter().map(|s| value_of(s)) {
                assert!(!msg.contains(&v), "an error carried a value: {msg}");
            }
            if *who == "expired" {
                assert!(*code == Code::Unauthenticated && msg.contains("expired"), "{msg}");
            }
            if *who == "revoked" {
                assert!(*code == Code::Unauthenticated && msg.contains("revoked"), "{msg}");
            }
        }
    }
    // A region condition: the same token, allowed in eu-west only.
    for (node, allowed) in [(0, false), (1, true), (2, false)] {
        let c = cluster.client_with(node, Some(&tokens["eu"])).await;
        let got = run(&c, &Read("acme/app/db")).await;
        if got.is_ok() != allowed {
            failures.push(format!(
                "eu read on node {node}: expected allowed={allowed}, got {got:?}"
            ));
        }
    }
    // No token, a garbage token, a token-shaped stranger.
    for token in [
        None,
        Some("garbage"),
        Some("cft_0000000000000000000000000000000000000000000000000000000000000000"),
    ] {
        let c = cluster.client_with(1, token).await;
        let got = run(&c, &Read("acme/app/db")).await;
        if !matches!(got, Err((Code::Unauthenticated, _))) {
            failures.push(format!("token {token:?}: expected unauthenticated, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A listing shows only the names the caller may see one by one: a denied sub-folder
    // stays hidden from a listing of its parent.
    let lister = cluster.client_with(1, Some(&tokens["lister"])).await;
    let listed = list_names(&lister, "acme").await;
    assert!(
        listed.contains(&"acme/app/db".to_string()) && !listed.iter().any(|n| n.starts_with("acme/prod/")),
        "acme/prod/db is denied: {listed:?}"
    );
    let root_listing = list_names(&root, "acme").await;
    assert!(root_listing.contains(&"acme/prod/db".to_string()), "{root_listing:?}");
    assert_eq!(root_listing.len(), listed.len() + 1, "only acme/prod/db is hidden");

    // policy:admin on some policies is not root: a delegated administrator may not write or
    // delete a policy (a document can grant anything), may attach only policies it
    // administers, and `token/user:*` names platform users only, part by part.
    let delegate = cluster.client_with(0, Some(&tokens["delegate"])).await;
    let evil = r#"{"name":"acme-evil","statements":[{"effect":"allow","principals":["*"],
        "actions":["*"],"resources":["*"]}]}"#;
    let e = delegate
        .access
        .clone()
        .put_policy(pb::PutPolicyRequest { document: evil.into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("policy:admin on every policy"), "{}", e.message());
    let e = delegate
        .access
        .clone()
        .delete_policy(pb::DeletePolicyRequest {
            name: "acme-app".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mint = |principal: &'static str, policies: &[&str]| {
        let mut a = delegate.access.clone();
        let policies = policies.iter().map(|p| p.to_string()).collect();
        async move {
            a.create_token(pb::CreateTokenRequest {
                principal: principal.into(),
                policies,
                ..Default::default()
            })
            .await
        }
    };
    let ok = mint("service:acme:api", &["acme-app"]).await.unwrap().into_inner();
    assert!(ok.token.starts_with("cft_"));
    for (principal, policies) in [
        ("service:acme:api", &["acme-app", "platform-admin"][..]),
        ("service:acme:api", &["globex-app"][..]),
    ] {
        let e = mint(principal, policies).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{policies:?}: {e:?}");
        assert!(
            e.message().contains("only policies its creator administers"),
            "{}",
            e.message()
        );
    }
    let e = mint("user:acme:dana", &["acme-app"]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "token/user:* is not user:acme:dana: {e:?}"
    );

    // `policy check` explains decisions, drill:run included (no drill RPC exists yet).
    let admin = cluster.client_with(2, Some(&tokens["admin"])).await;
    let check = |principal: &'static str, action: &'static str, resource: &'static str| {
        let mut a = admin.access.clone();
        async move {
            a.check_policy(pb::CheckPolicyRequest {
                principal: principal.into(),
                action: action.into(),
                resource: resource.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let d = check("user:admin", "drill:run", "drill").await;
    assert!(d.allowed && d.statement.contains("platform-admin"), "{d:?}");
    let d = check("service:acme:greedy", "drill:run", "drill").await;
    assert!(!d.allowed, "{d:?}");
    let d = check("group:acme:ops", "secrets:admin", "acme/app/db").await;
    assert!(
        !d.allowed && d.statement.contains("acme-ops") && d.statement.contains("no-app-destroy"),
        "{d:?}"
    );
    let d = check("service:acme:api", "secrets:read", "globex/app/db").await;
    assert!(!d.allowed && d.explanation.contains("tenant"), "{d:?}");

    // Every decision is audited on the node that made it, with the deciding statement.
    let tail = admin
        .access
        .clone()
        .audit_tail(pb::AuditTailRequest { count: 10_000 })
        .await
        .unwrap()
        .into_inner();
    let events: Vec<pb::AuditEvent> = tail.entries.into_iter().filter_map(|e| e.event).collect();
    assert!(events.iter().any(|e| e.principal == "service:acme:api"
        && e.resource == "globex/app/db"
        && e.decision == "deny"
        && e.statement.contains("tenant")));
    assert!(events.iter().any(|e| e.principal == "service:acme:rotator"
        && e.action == "secrets:rotate"
        && e.decision == "allow"
        && e.statement.contains("acme-rotator")));
    let glass: Vec<&pb::AuditEvent> = events
        .iter()
        .filter(|e| e.break_glass && e.decision == "allow")
        .collect();
    assert!(
        glass
            .iter()
            .all(|e| e.severity == "critical" && e.ticket == "INC-4" && !e.reason.is_empty()),
        "{glass:?}"
    );

    // The root token can be revoked once another administrator exists — here one does.
    let revoke_root = |c: Client| async move {
        c.access
            .clone()
            .revoke_token(pb::RevokeTokenRequest {
                accessor: "root".into(),
            })
            .await
    };
    revoke_root(admin.clone()).await.unwrap();
    let old_root = cluster.client(1).await;
    let err = eventually(Duration::from_secs(10), "the root token to stop working", || {
        let c = old_root.clone();
        async move { run(&c, &PolicyAdmin).await.err() }
    })
    .await;
    assert!(
        err.0 == Code::Unauthenticated && err.1.contains("root token was revoked"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_token_stays_until_another_admin_exists() {
    let cluster = TestCluster::start(BIN, &["us-east"], FAST_RAFT).await;
    let root = cluster.client(0).await;
    let err = root
        .access
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            accessor: "root".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("administrator"), "{err:?}");
    // Still works.
    root.access
        .clone()
        .list_policies(pb::ListPoliciesRequest {})
        .await
        .unwrap();
}

/// Nodes keep what authentication and authorization read (token, its policies, the cluster
/// record) between requests. A token that was just used must still lose what a changed policy
/// takes away, and stop working once revoked, on every node as soon as that node has applied
/// the change (a root linearizable read on the node makes sure it has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_changes_reach_tokens_in_use_on_every_node() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let root = cluster.client(0).await;
    wait_token_key(&root).await;
    let cached = |resources: &str| {
        format!(
            r#"{{"name":"cached","statements":[{{"effect":"allow","principals":["service:acme:cached"],
                "actions":["secrets:read"],"resources":["{resources}"]}}]}}"#
        )
    };
    put_policy(&root, &cached("acme/app/*")).await;
    put(&root, "acme/app/cached", b"fake-cached-value").await.unwrap();
    let t = create_token(
        &root,
        "service:acme:cached",
        &[],
        &["cached"],
        Duration::from_secs(3600),
    )
    .await;
    // Caught up: the node has applied everything so far (policy, secret, token).
    let caught_up = async |i: usize| {
        let root = cluster.client(i).await;
        let linearizable = Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {}));
        get_with(&root, "acme/app/cached", None, linearizable).await.unwrap();
    };
    let mut users = vec![];
    for i in 0..3 {
        caught_up(i).await;
        let user = cluster.client_with(i, Some(&t.token)).await;
        // Used twice: the second read is served from the node's cache.
        for _ in 0..2 {
            get(&user, "acme/app/cached", None).await.unwrap();
        }
        users.push(user);
    }

    put_policy(&root, &cached("acme/other/*")).await;
    for (i, user) in users.iter().enumerate() {
        caught_up(i).await;
        let err = get(user, "acme/app/cached", None).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "node {i}: {err:?}");
    }

    put_policy(&root, &cached("acme/app/*")).await;
    root.access
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            accessor: t.accessor.clone(),
        })
        .await
        .unwrap();
    for (i, user) in users.iter().enumerate() {
        caught_up(i).await;
        let err = get(user, "acme/app/cached", None).await.unwrap_err();
        assert!(
            err.code() == Code::Unauthenticated && err.message().contains("revoked"),
            "node {i}: {err:?}"
        );
    }
}
