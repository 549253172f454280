//! The metrics operators watch (docs/architecture.md: Metrics and alerts) on a real cluster:
//! each node labels its series with its name and region, and after a write and reads every
//! metric the alert rules and the dashboard name is exported, with values that follow the
//! cluster's state.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

/// Metrics named by deploy/prometheus/alerts.yml and deploy/grafana/coffer.json.
fn named_metrics() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    text.push_str(&std::fs::read_to_string(root.join("deploy/grafana/coffer.json")).unwrap());
    let mut out = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("coffer_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.insert(base.to_string());
    }
    out
}

/// Series names in a scrape (histograms by their base name).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_dashboard_name_is_exported_and_follows_the_cluster() {
    let mut spec = ClusterSpec::new(&REGIONS, FAST_RAFT);
    spec.metrics = true;
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let c = cluster.client(leader).await;
    wait_token_key(&c).await;
    put(&c, "acme/metrics/db", b"fake-metrics-value").await.unwrap();
    for _ in 0..3 {
        get(&c, "acme/metrics/db", None).await.unwrap();
    }
    let linearizable = coffer::pb::read_consistency::Mode::Linearizable(coffer::pb::LinearizableRead {});
    get_with(&c, "acme/metrics/db", None, Some(linearizable)).await.unwrap();

    let me = cluster.node(leader);
    let labels = [("node", me.name.as_str()), ("node_region", me.region.as_str())];
    let m = eventually(Duration::from_secs(10), "the leader's sampled metrics", || async {
        let m = cluster.metrics(leader).await;
        (metric(&m, "coffer_node_health", &[("state", "serving")]) == 1.0).then_some(m)
    })
    .await;
    // The node's own labels on its series; one state at a time.
    assert_eq!(
        metric(&m, "coffer_node_health", &[labels[0], labels[1], ("state", "serving")]),
        1.0
    );
    assert_eq!(metric(&m, "coffer_node_health", &[]), 1.0, "one-hot: {m}");
    assert_eq!(metric(&m, "coffer_raft_is_leader", &labels), 1.0);
    assert!(metric(&m, "coffer_raft_term", &[]) >= 1.0);
    for r in REGIONS {
        assert_eq!(
            metric(&m, "coffer_cluster_members", &[("member_region", r)]),
            1.0,
            "{r}"
        );
    }
    let staleness = metric(&m, "coffer_staleness_upper_bound_seconds", &[]);
    assert!(staleness > 0.0 && staleness <= 5.0, "{staleness}");
    assert_eq!(metric(&m, "coffer_ready_max_staleness_seconds", &[]), 5.0);
    // Reads timed by consistency; the writing node reads its data key from its cache; the put
    // wrapped the data key under every region's KMS, each call timed by region.
    assert!(
        metric(
            &m,
            "coffer_read_seconds_count",
            &[("consistency", "local"), ("result", "ok")]
        ) >= 3.0
    );
    assert!(metric(&m, "coffer_read_seconds_count", &[("consistency", "linearizable")]) >= 1.0);
    assert!(
        metric(
            &m,
            "coffer_read_seconds_bucket",
            &[("consistency", "local"), ("le", "+Inf")]
        ) >= 3.0
    );
    assert!(metric(&m, "coffer_dek_cache_lookups_total", &[("result", "hit")]) >= 3.0);
    for r in REGIONS {
        assert!(
            metric(&m, "coffer_kms_call_seconds_count", &[("region", r), ("op", "wrap")]) >= 1.0,
            "{r}"
        );
    }
    assert!(metric(&m, "coffer_authz_decision_seconds_count", &[]) >= 5.0);

    // Every other node sees the same leader and members, and none is leader but one.
    let mut leaders = 0.0;
    for i in 0..3 {
        let m = eventually(Duration::from_secs(10), "each node's sampled metrics", || async {
            let m = cluster.metrics(i).await;
            (metric(&m, "coffer_node_health", &[("state", "serving")]) == 1.0).then_some(m)
        })
        .await;
        leaders += metric(&m, "coffer_raft_is_leader", &[]);
        assert_eq!(metric(&m, "coffer_cluster_members", &[]), 3.0);
    }
    assert_eq!(leaders, 1.0);

    // What the rules and dashboard name is exported, but for series that exist only once
    // their event happened.
    let only_on_event = [
        "coffer_break_glass_reads_total",
        "coffer_audit_write_failures_total",
        "coffer_kms_fallback_total",
        "coffer_anonymous_rate_limited_total",
        "coffer_raft_leader_changes_total",
        "coffer_secrets_past_rotation_due",
        "coffer_kms_versions_missing_wrap",
        // Only with [backup] (tests/backup.rs checks them).
        "coffer_backup_last_success_timestamp_seconds",
        "coffer_backup_interval_seconds",
        "coffer_backup_failures_total",
    ];
    let have = exported(&m);
    let missing: Vec<_> = named_metrics()
        .into_iter()
        .filter(|n| !have.contains(n) && !only_on_event.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "named by the alerts or dashboard, not exported: {missing:?}"
    );
}
