//! Rotation as a workflow (docs/architecture.md: Rotation), on a real three-process cluster
//! through the CLI: a secret's metadata and rotation policy are created, updated under
//! compare-and-swap on the etag and described; bad policies are refused with one line naming
//! the field, and change nothing.

mod common;

use std::time::Duration;

use coffer::pb;
use common::*;
use tonic::Code;

fn describe(cluster: &TestCluster, via: usize, name: &str) -> serde_json::Value {
    cluster.cli_json(via, &["secret", "describe", name, "--consistency", "linearizable"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_rotation_policy_are_created_updated_under_cas_and_refused_clearly() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let via = (leader + 1) % 3;
    let name = "acme/rot/db-password";
    let (code, out, err) = cluster.cli(
        via,
        &[
            "secret",
            "create",
            name,
            "--owner-team",
            "payments",
            "--description",
            "checkout database",
            "--label",
            "env=prod",
            "--rotation-period",
            "30d",
            "--overlap",
            "24h",
            "--strategy",
            "generate",
            "--generate-spec",
            "length=40,alphabet=alnum-symbols",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("created {name} (etag ")), "{out}");
    let d = describe(&cluster, via, name);
    assert_eq!(d["owner_team"], "payments");
    assert_eq!(d["labels"]["env"], "prod");
    let r = &d["rotation"];
    assert_eq!(r["period_ms"], 30 * 86_400_000u64);
    assert_eq!(r["overlap_ms"], 86_400_000u64);
    assert_eq!(r["strategy"], "generate");
    assert_eq!(r["generate"], "40 characters (alnum-symbols)");
    let first_etag = d["etag"].as_str().unwrap().to_string();

    // An update changes only what it names.
    let (code, _, err) = cluster.cli(
        via,
        &[
            "secret",
            "update",
            name,
            "--overlap",
            "2h",
            "--label",
            "tier=1",
            "--remove-label",
            "env",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let d = describe(&cluster, leader, name);
    assert_eq!(d["rotation"]["overlap_ms"], 7_200_000u64);
    assert_eq!(d["rotation"]["period_ms"], 30 * 86_400_000u64);
    assert_eq!(d["labels"], serde_json::json!({"tier": "1"}));
    assert_eq!(d["owner_team"], "payments");
    let etag = d["etag"].as_str().unwrap().to_string();
    assert_ne!(etag, first_etag);

    // Compare-and-swap: an etag read before that update is refused, and changes nothing.
    let (code, out, err) = cluster.cli(
        via,
        &["secret", "update", name, "--description", "lost", "--etag", &first_etag],
    );
    assert_ne!(code, 0, "{out}");
    assert!(err.starts_with("error[etag_mismatch]:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(describe(&cluster, via, name)["etag"], etag.as_str());

    // Bad policies: one line naming the field, nothing sent or nothing changed.
    for (args, field) in [
        (
            vec!["--rotation-period", "1h", "--overlap", "2h"],
            "rotation.overlap_ms",
        ),
        (vec!["--strategy", "cron"], "--strategy"),
        (vec!["--generate-spec", "length=4"], "rotation.generate.length"),
        (
            vec!["--generate-spec", "length=32,alphabet=emoji"],
            "rotation.generate.alphabet",
        ),
        (vec!["--generate-spec", "size=32"], "--generate-spec"),
        (
            vec!["--hook-url", "http://rotator.acme.internal/rotate"],
            "rotation.hook_url",
        ),
        (vec!["--rotation-period", "soon"], "--rotation-period"),
    ] {
        let mut all = vec!["secret", "update", name];
        all.extend(&args);
        let (code, out, err) = cluster.cli(via, &all);
        assert_ne!(code, 0, "{args:?}: {out}");
        assert!(err.starts_with("error[invalid_argument]:"), "{args:?}: {err}");
        assert!(err.contains(field), "{args:?} should name {field}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    assert_eq!(describe(&cluster, via, name)["etag"], etag.as_str());

    // The server checks too, whatever the client: a policy sent straight over gRPC.
    let c = cluster.client(via).await;
    let refused = c
        .secrets
        .clone()
        .create_secret(pb::CreateSecretRequest {
            name: "acme/rot/other".into(),
            spec: Some(pb::SecretSpec {
                rotation: Some(pb::RotationPolicy {
                    period_ms: 60_000,
                    overlap_ms: 120_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("rotation.overlap_ms"),
        "{}",
        refused.message()
    );
    let missing = c
        .secrets
        .clone()
        .describe_secret(pb::DescribeSecretRequest {
            name: "acme/rot/other".into(),
            consistency: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // max_versions takes effect on update: versions past the cap go, aliased ones stay.
    for v in 1..=4 {
        put(&c, name, format!("fake-v{v}").as_bytes()).await.unwrap();
    }
    let (code, _, err) = cluster.cli(via, &["secret", "update", name, "--max-versions", "2"]);
    assert_eq!(code, 0, "{err}");
    let versions = cluster.cli_json(via, &["secret", "versions", name, "--consistency", "linearizable"]);
    let kept: Vec<u64> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [3, 4], "the newest two (CURRENT and PREVIOUS)");
    assert_eq!(describe(&cluster, via, name)["max_versions"], 2);
}
