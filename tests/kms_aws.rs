//! The `aws` KMS provider against a real moto server: a key per region, writes wrapped for
//! every region, reads from every region, and key rotation followed by `coffer kms rewrap`.

mod common;

use std::time::Duration;

use coffer::crypto::kms::aws;
use coffer::dev::dev_alias;
use coffer::dev::AwsDev;
use coffer::dev::DevKmsConfig;
use coffer_testkit::moto::MotoServer;
use common::*;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

fn aws_dev(moto: &MotoServer) -> AwsDev {
    AwsDev {
        endpoints: REGIONS.iter().map(|r| (r.to_string(), moto.url())).collect(),
        access_key_id: "coffer-test-fake-access-key".into(),
        secret_access_key: "coffer-test-fake-secret-key".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_region_reads_through_its_own_key_and_rotation_rewraps_without_touching_ciphertext() {
    let moto = MotoServer::start().await;
    let dev = aws_dev(&moto);
    let regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    dev.ensure_keys(&regions).await.unwrap();
    let mut spec = ClusterSpec::new(&REGIONS, FAST_RAFT);
    spec.kms = DevKmsConfig::Aws(dev.clone());
    spec.metrics = true;
    let mut cluster = TestCluster::launch(BIN, spec).await;

    // Each region's key is its own: the status names the provider and the alias.
    let status = cluster.cli_json(0, &["kms", "status"]);
    for r in status["regions"].as_array().unwrap() {
        let region = r["region"].as_str().unwrap();
        assert_eq!(r["provider"], "aws");
        assert_eq!(r["key"], dev_alias(region).as_str());
        assert_eq!(r["healthy"], true, "{r}");
        assert_eq!(r["versions_missing_wrap"], 0);
    }

    let c0 = cluster.client(0).await;
    wait_token_key(&c0).await;
    let w = put(&c0, "acme/prod/db", b"fake-aws-wrapped-password").await.unwrap();
    assert_eq!(w.version, 1);
    let versions = cluster.cli_json(0, &["secret", "versions", "acme/prod/db"]);
    let wrapped: Vec<&str> = versions["versions"][0]["wrapped_regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(wrapped.len(), 3, "{versions}");
    for r in REGIONS {
        assert!(wrapped.contains(&r), "{r} missing from {wrapped:?}");
    }

    // Every region reads it, each unwrapping through its own region's KMS.
    for (i, region) in REGIONS.into_iter().enumerate() {
        let c = cluster.client(i).await;
        let got = eventually(Duration::from_secs(10), "the write to replicate", || async {
            get(&c, "acme/prod/db", None).await.ok()
        })
        .await;
        assert_eq!(got.value, b"fake-aws-wrapped-password");
        let m = cluster.metrics(i).await;
        if i > 0 {
            assert!(
                metric(
                    &m,
                    "coffer_kms_calls_total",
                    &[("region", region), ("op", "unwrap"), ("result", "ok")]
                ) >= 1.0,
                "node {i} never unwrapped with its own region's KMS:\n{m}"
            );
        }
        for other in REGIONS.iter().filter(|r| **r != region) {
            assert_eq!(
                metric(&m, "coffer_kms_calls_total", &[("region", other), ("op", "unwrap")]),
                0.0,
                "node {i} unwrapped through {other}"
            );
        }
        // Steady state: more reads make no KMS call.
        let before = metric(&m, "coffer_kms_calls_total", &[]);
        for _ in 0..5 {
            get(&c, "acme/prod/db", None).await.unwrap();
        }
        let after = metric(&cluster.metrics(i).await, "coffer_kms_calls_total", &[]);
        assert_eq!(before, after, "node {i}: cached reads called the KMS");
    }

    // Rotation, the AWS way: a new key behind the same alias.
    let us = dev.settings("us-east");
    let new_arn = aws::create_key(&us, "coffer us-east rotated").await.unwrap();
    aws::update_alias(&us, &dev_alias("us-east"), &new_arn).await.unwrap();
    put(&c0, "acme/prod/db", b"fake-written-after-rotation").await.unwrap();

    let before_versions = cluster.cli_json(0, &["secret", "versions", "acme/prod/db"]);
    let r = cluster.cli_json(1, &["kms", "rewrap", "--region", "us-east"]);
    // Every data key but the one written after the rotation was wrapped under the old key
    // (acme/prod/db v1, the warm-up versions and the cluster token key).
    let checked = r["checked"].as_u64().unwrap();
    assert!(checked >= 4, "{r}");
    assert_eq!(r["replaced"].as_u64(), Some(checked - 1), "{r}");
    assert_eq!(r["added"], 0, "{r}");
    assert_eq!(r["stale_after"], 0, "{r}");
    assert_eq!(r["failures"].as_array().unwrap().len(), 0, "{r}");
    // On the node that ran the first pass: its replica has applied that pass's SetWraps (another
    // node's replica may still lag a moment and would redo them).
    let again = cluster.cli_json(1, &["kms", "rewrap"]);
    assert_eq!(
        (again["replaced"].as_u64(), again["added"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    // Ciphertext untouched: same versions, same sizes; values still read everywhere, also on a
    // node whose DEK cache is empty (restarted), which must unwrap under the new key.
    let after_versions = cluster.cli_json(0, &["secret", "versions", "acme/prod/db"]);
    assert_eq!(before_versions["versions"].as_array().unwrap().len(), 2);
    assert_eq!(
        before_versions["versions"][0]["size"],
        after_versions["versions"][0]["size"]
    );
    cluster.stop(0);
    cluster.restart(0);
    cluster.wait_leader(Duration::from_secs(30)).await;
    let c0 = cluster.client(0).await;
    let v1 = eventually(Duration::from_secs(10), "node 0 back", || async {
        get(&c0, "acme/prod/db", Some(1)).await.ok()
    })
    .await;
    assert_eq!(v1.value, b"fake-aws-wrapped-password");
    let m = cluster.metrics(0).await;
    assert!(
        metric(
            &m,
            "coffer_kms_calls_total",
            &[("region", "us-east"), ("op", "unwrap"), ("result", "ok")]
        ) >= 1.0
    );
    assert_eq!(metric(&m, "coffer_kms_fallback_total", &[]), 0.0);
}
