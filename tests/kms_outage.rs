//! Regional KMS outages against a real moto server, each region's KMS behind its own TCP proxy
//! so one region's KMS can be cut while the others answer: cached reads go on, uncached reads
//! fail clearly (fallback denied) or go through another region (fallback allowed), writes
//! commit with the missing wrap, and after recovery the rewrap job gives every version every
//! region's wrap.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use coffer::dev::dev_alias;
use coffer::dev::AwsDev;
use coffer::dev::DevKmsConfig;
use coffer_testkit::moto::MotoServer;
use common::*;
use tonic::Code;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];
const US: usize = 0;
const EU: usize = 1;
const AP: usize = 2;

fn missing_wraps(status: &serde_json::Value) -> BTreeMap<String, u64> {
    status["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["region"].as_str().unwrap().to_string(),
                r["versions_missing_wrap"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn region<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == name)
        .unwrap_or_else(|| panic!("{name} not in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_a_regional_kms_outage_and_the_rewrap_job_heals_missing_wraps() {
    let moto = MotoServer::start().await;
    // One proxy per region in front of moto: cutting it is that region's KMS outage.
    let mut proxies = BTreeMap::new();
    for r in REGIONS {
        proxies.insert(r, DelayProxy::start(moto.addr(), Duration::ZERO).await.unwrap());
    }
    let dev = AwsDev {
        endpoints: proxies
            .iter()
            .map(|(r, p)| (r.to_string(), format!("http://{}", p.addr())))
            .collect(),
        access_key_id: "coffer-test-fake-access-key".into(),
        secret_access_key: "coffer-test-fake-secret-key".into(),
    };
    dev.ensure_keys(&REGIONS.map(String::from)).await.unwrap();
    let mut spec = ClusterSpec::new(&REGIONS, FAST_RAFT);
    spec.kms = DevKmsConfig::Aws(dev);
    spec.metrics = true;
    spec.kms_extra = "call_timeout_ms = 1500\nretry_unhealthy_after_ms = 300\nrewrap_interval_ms = 300".into();
    // eu-west keeps the default (fallback denied); ap-south allows it.
    spec.node_kms_extra.insert(AP, "fallback = \"allow\"".into());
    let cluster = TestCluster::launch(BIN, spec).await;
    let us = cluster.client(US).await;
    let eu = cluster.client(EU).await;
    let ap = cluster.client(AP).await;
    wait_token_key(&us).await;

    // Before the outage: `cached` is read once in eu-west (its DEK is now cached there);
    // `uncached` is never read outside us-east.
    put(&us, "acme/app/cached", b"fake-cached-value").await.unwrap();
    put(&us, "acme/app/uncached", b"fake-uncached-value").await.unwrap();
    for c in [&eu, &ap] {
        let got = eventually(Duration::from_secs(10), "replication", || async {
            get(c, "acme/app/cached", None).await.ok()
        })
        .await;
        assert_eq!(got.value, b"fake-cached-value");
        eventually(Duration::from_secs(10), "replication", || async {
            c.secrets
                .clone()
                .describe_secret(coffer::pb::DescribeSecretRequest {
                    name: "acme/app/uncached".into(),
                    ..Default::default()
                })
                .await
                .ok()
        })
        .await;
    }

    // eu-west's and ap-south's KMS go down.
    proxies["eu-west"].cut();
    proxies["ap-south"].cut();
    let eu_calls = metric(&cluster.metrics(EU).await, "coffer_kms_calls_total", &[]);

    // Cached reads go on, with no KMS call.
    assert_eq!(
        get(&eu, "acme/app/cached", None).await.unwrap().value,
        b"fake-cached-value"
    );
    assert_eq!(
        metric(&cluster.metrics(EU).await, "coffer_kms_calls_total", &[]),
        eu_calls
    );

    // Uncached, fallback denied: UNAVAILABLE naming the region and its key. Never a value.
    let e = get(&eu, "acme/app/uncached", None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("eu-west"), "{}", e.message());
    assert!(e.message().contains(&dev_alias("eu-west")), "{}", e.message());
    // Also through the CLI: one line, non-zero exit.
    let (code, out, err) = cluster.cli(EU, &["secret", "get", "acme/app/uncached"]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("eu-west"), "{err}");

    // Uncached, fallback allowed: read through another region's KMS, and counted.
    let got = get(&ap, "acme/app/uncached", None).await.unwrap();
    assert_eq!(got.value, b"fake-uncached-value");
    let m = cluster.metrics(AP).await;
    assert_eq!(
        metric(
            &m,
            "coffer_kms_fallback_total",
            &[("region", "ap-south"), ("to", "us-east")]
        ),
        1.0,
        "{m}"
    );

    // A write during the outage commits with those regions' wraps missing.
    let w = put(&us, "acme/app/during", b"fake-written-during-outage")
        .await
        .unwrap();
    assert_eq!(w.version, 1);
    let versions = cluster.cli_json(US, &["secret", "versions", "acme/app/during"]);
    assert_eq!(
        versions["versions"][0]["wrapped_regions"],
        serde_json::json!(["us-east"])
    );
    let status = cluster.cli_json(US, &["kms", "status"]);
    assert_eq!(
        missing_wraps(&status),
        BTreeMap::from([("ap-south".into(), 1), ("eu-west".into(), 1), ("us-east".into(), 0)]),
        "{status}"
    );
    let eu_status = region(&status, "eu-west");
    assert_eq!(eu_status["healthy"], false, "{status}");
    assert!(!eu_status["last_error"].as_str().unwrap().is_empty());
    assert!(
        eu_status["unhealthy_since"].as_str().unwrap().ends_with('Z'),
        "{status}"
    );
    assert_eq!(region(&status, "us-east")["healthy"], true);
    assert!(region(&status, "us-east")["last_error"].is_null());
    // eu-west cannot read the new version (no wrap, fallback denied): it says why.
    let e = eventually(Duration::from_secs(10), "eu-west to see the new version", || async {
        match get(&eu, "acme/app/during", None).await {
            Err(e) if e.code() == Code::Unavailable => Some(e),
            _ => None,
        }
    })
    .await;
    assert!(e.message().contains("eu-west"), "{}", e.message());
    // The gauge on every node says the same.
    let gauge = eventually(Duration::from_secs(10), "the missing-wrap gauge", || async {
        let m = cluster.metrics(EU).await;
        let v = metric(&m, "coffer_kms_versions_missing_wrap", &[("region", "eu-west")]);
        (v == 1.0).then_some(v)
    })
    .await;
    assert_eq!(gauge, 1.0);

    // Recovery: the leader's rewrap job adds the missing wraps on its own.
    proxies["eu-west"].heal();
    proxies["ap-south"].heal();
    eventually(
        Duration::from_secs(30),
        "the rewrap job to add every missing wrap",
        || async {
            let s = cluster.cli_json(US, &["kms", "status"]);
            missing_wraps(&s).values().all(|m| *m == 0).then_some(())
        },
    )
    .await;
    let versions = cluster.cli_json(US, &["secret", "versions", "acme/app/during"]);
    let mut wrapped: Vec<String> = versions["versions"][0]["wrapped_regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    wrapped.sort();
    assert_eq!(wrapped, ["ap-south", "eu-west", "us-east"]);
    // eu-west now reads it through its own KMS (fallback still denied there).
    let got = eventually(
        Duration::from_secs(10),
        "eu-west to read the healed version",
        || async { get(&eu, "acme/app/during", None).await.ok() },
    )
    .await;
    assert_eq!(got.value, b"fake-written-during-outage");
    let status = cluster.cli_json(EU, &["kms", "status"]);
    assert!(
        status["regions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == true),
        "{status}"
    );
    assert!(missing_wraps(&status).values().all(|m| *m == 0), "{status}");
}
