//! Bad input gets a clear gRPC status and a one-line CLI error, changes nothing, and panics
//! nothing. Every RPC passes the authorization seam: without a valid token, each one is refused.

mod common;

use std::process::Command;
use std::time::Duration;

use coffer::pb;
use common::*;
use tonic::Code;

async fn snapshot_of(c: &coffer::client::Client, name: &str) -> (String, usize) {
    let d = c
        .secrets
        .clone()
        .describe_secret(pb::DescribeSecretRequest {
            name: name.into(),
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    let v = c
        .secrets
        .clone()
        .list_versions(pb::ListVersionsRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (d.secret.unwrap().etag, v.versions.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client((leader + 1) % 3).await;
    put(&c, "acme/app/key", b"fake-original").await.unwrap();
    let before = snapshot_of(&c, "acme/app/key").await;

    let mut s = c.secrets.clone();
    let put_req = |name: &str, value: Vec<u8>| pb::PutSecretValueRequest {
        name: name.into(),
        value,
        alias: String::new(),
        must_exist: false,
        ..Default::default()
    };
    // Invalid names.
    for bad in [
        "Acme/../x",
        "acme/../x",
        "acme//x",
        "acme",
        "",
        "acme/%2F",
        "acme/x/",
        "acme/\u{0430}pi",
    ] {
        let e = s.put_secret_value(put_req(bad, b"v".to_vec())).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
        assert!(e.message().contains("invalid secret name"), "{}", e.message());
        assert!(!e.message().contains('\n'));
    }
    // Oversize and empty values.
    let e = s
        .put_secret_value(put_req("acme/app/key", vec![b'x'; 64 * 1024 + 1]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("64 KiB"), "{}", e.message());
    let e = s.put_secret_value(put_req("acme/app/key", vec![])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Exactly 64 KiB is fine (on another secret, so the checked one stays unchanged).
    s.put_secret_value(put_req("acme/app/big", vec![b'x'; 64 * 1024]))
        .await
        .unwrap();

    // Unknown versions, secrets and aliases.
    let e = get(&c, "acme/app/key", Some(99)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no version 99"), "{}", e.message());
    let e = get(&c, "acme/app/missing", None).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    for (version, code) in [(99, Code::NotFound), (0, Code::InvalidArgument)] {
        let e = s
            .move_alias(pb::MoveAliasRequest {
                name: "acme/app/key".into(),
                alias: "current".into(),
                version,
                expected_version: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "promote to {version}");
    }
    let e = s
        .set_version_state(pb::SetVersionStateRequest {
            name: "acme/app/key".into(),
            version: 1,
            enabled: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "cannot disable CURRENT");
    let e = s
        .destroy_version(pb::DestroyVersionRequest {
            name: "acme/app/key".into(),
            version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = s
        .list_secrets(pb::ListSecretsRequest {
            prefix: "../".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Metadata past its bounds, and bad page tokens and limits.
    let e = s
        .create_secret(pb::CreateSecretRequest {
            name: "acme/app/meta".into(),
            spec: Some(pb::SecretSpec {
                description: "d".repeat(600 * 1024),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("description") && e.message().len() < 300,
        "{}",
        e.message()
    );
    for (page_token, limit) in [("not-a-number", 0), ("", 5000)] {
        let e = s
            .list_versions(pb::ListVersionsRequest {
                name: "acme/app/key".into(),
                page_token: page_token.into(),
                limit,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{page_token:?} {limit}: {e:?}");
    }

    // Nothing changed.
    assert_eq!(snapshot_of(&c, "acme/app/key").await, before);
    assert_eq!(get(&c, "acme/app/key", None).await.unwrap().value, b"fake-original");

    // No node crashed on any of it.
    for i in 0..3 {
        assert!(cluster.status(i).await.is_some(), "node {i} still answers");
        assert!(!cluster.log(i).contains("panicked"), "node {i} panicked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_missing_or_wrong_tokens() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    cluster.wait_leader(Duration::from_secs(20)).await;
    put(&cluster.client(0).await, "acme/app/key", b"fake").await.unwrap();
    for token in [None, Some("cft_wrong"), Some("not even a token")] {
        let c = cluster.client_with(0, token).await;
        let mut s = c.secrets.clone();
        let mut k = c.cluster.clone();
        let name = || "acme/app/key".to_string();
        let results: Vec<(&str, Result<(), tonic::Status>)> = vec![
            (
                "CreateSecret",
                s.create_secret(pb::CreateSecretRequest {
                    name: "acme/new".into(),
                    spec: None,
                })
                .await
                .map(|_| ()),
            ),
            (
                "PutSecretValue",
                s.put_secret_value(pb::PutSecretValueRequest {
                    name: name(),
                    value: b"x".to_vec(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
            (
                "GetSecretValue",
                s.get_secret_value(pb::GetSecretValueRequest {
                    name: name(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
            (
                "ListVersions",
                s.list_versions(pb::ListVersionsRequest {
                    name: name(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
            (
                "DescribeSecret",
                s.describe_secret(pb::DescribeSecretRequest {
                    name: name(),
                    consistency: None,
                })
                .await
                .map(|_| ()),
            ),
            (
                "ListSecrets",
                s.list_secrets(pb::ListSecretsRequest {
                    prefix: "acme/".into(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            ),
            (
                "MoveAlias",
                s.move_alias(pb::MoveAliasRequest {
                    name: name(),
                    alias: "next".into(),
                    version: 1,
                    expected_version: Some(0),
                })
                .await
                .map(|_| ()),
            ),
            (
                "SetVersionState",
                s.set_version_state(pb::SetVersionStateRequest {
                    name: name(),
                    version: 1,
                    enabled: true,
                })
                .await
                .map(|_| ()),
            ),
            (
                "DestroyVersion",
                s.destroy_version(pb::DestroyVersionRequest {
                    name: name(),
                    version: 1,
                })
                .await
                .map(|_| ()),
            ),
            (
                "Cluster.Status",
                k.status(pb::ClusterStatusRequest {}).await.map(|_| ()),
            ),
        ];
        assert_eq!(results.len(), 10, "every RPC of the public API is covered");
        for (rpc, r) in results {
            let e = r.expect_err(rpc);
            assert_eq!(e.code(), Code::Unauthenticated, "{rpc} with {token:?}: {e:?}");
        }
    }
    // State unchanged: v1 still CURRENT, no new secret.
    let c = cluster.client(0).await;
    assert_eq!(get(&c, "acme/app/key", None).await.unwrap().version, 1);
    assert_eq!(get(&c, "acme/new", None).await.unwrap_err().code(), Code::NotFound);
}

fn cli(cluster: &TestCluster, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("COFFER_ADDR", &cluster.file.nodes[0].api)
        .env("COFFER_TOKEN", token)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_one_line_and_non_zero() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    cluster.wait_leader(Duration::from_secs(20)).await;
    let t = cluster.token().to_string();
    let (code, out, _) = cli(
        &cluster,
        &t,
        &["secret", "put", "acme/cli/key", "--value", "fake-cli-value"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = cli(&cluster, &t, &["secret", "get", "acme/cli/key"]);
    assert_eq!((code, out.as_str()), (0, "fake-cli-value"));

    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![b'x'; 70_000]).unwrap();
    let big_path = big.path().to_str().unwrap().to_string();
    // Each case: the args, the token, what the line must say, and how it starts: the server's
    // stable code in brackets, or no code for what the CLI refuses before sending.
    let cases: Vec<(Vec<&str>, &str, &str, &str)> = vec![
        (
            vec!["secret", "put", "Acme/../x", "--value", "v"],
            &t,
            "invalid secret name",
            "error[invalid_argument]: ",
        ),
        (
            vec!["secret", "put", "acme/cli/key", "--value-file", &big_path],
            &t,
            "64 KiB",
            "error[invalid_argument]: ",
        ),
        (
            vec!["secret", "get", "acme/cli/key", "--version", "42"],
            &t,
            "no version 42",
            "error[not_found]: ",
        ),
        (
            vec!["secret", "get", "acme/cli/nope"],
            &t,
            "not found",
            "error[not_found]: ",
        ),
        (
            vec!["secret", "get", "acme/cli/key"],
            "cft_wrong",
            "invalid token",
            "error[unauthenticated]: ",
        ),
        (
            vec!["secret", "get", "acme/cli/key", "--consistency", "sometimes"],
            &t,
            "unknown --consistency",
            "error: ",
        ),
        (
            vec![
                "secret",
                "promote",
                "acme/cli/key",
                "--alias",
                "current",
                "--version",
                "1",
                "--expect",
                "5",
            ],
            &t,
            "not the expected 5",
            "error[alias_cas_failed]: ",
        ),
    ];
    for (args, token, needle, starts) in cases {
        let (code, out, err) = cli(&cluster, token, &args);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(out.is_empty(), "{args:?} printed to stdout: {out}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, got {err:?}");
        assert!(
            err.starts_with(starts),
            "{args:?}: {err:?} should start with {starts:?}"
        );
        assert!(err.contains(needle), "{args:?}: {err:?} should mention {needle:?}");
    }
    // With --output json the error is one JSON object carrying the same code.
    let (code, out, err) = cli(&cluster, &t, &["secret", "get", "acme/cli/nope", "--output", "json"]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    let json: serde_json::Value = serde_json::from_str(err.trim_end()).expect("one JSON object on stderr");
    assert_eq!(json["error"]["code"], "not_found", "{err}");
    assert!(
        json["error"]["message"].as_str().unwrap().contains("not found"),
        "{err}"
    );
    // Unreachable server: still one line, with what to do.
    let out = Command::new(BIN)
        .args(["secret", "get", "acme/cli/key"])
        .env("COFFER_ADDR", "127.0.0.1:1")
        .env("COFFER_TOKEN", &t)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("COFFER_ADDR"), "{err}");
    assert!(err.starts_with("error[unreachable]: "), "{err}");
    // The value is unchanged after all of it.
    let (_, out, _) = cli(&cluster, &t, &["secret", "get", "acme/cli/key"]);
    assert_eq!(out, "fake-cli-value");
}
