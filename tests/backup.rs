//! Backups on a real cluster (docs/architecture.md: Backups): `coffer snapshot save` from a
//! follower, `inspect`, a flipped byte and a foreign file refused, and `restore` into a fresh
//! cluster (the same configs and KMS keys, every data dir emptied) that then holds every
//! secret, version, alias, policy and token, and never a destroyed version.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];
const POLICY: &str = r#"{"name":"backup-app","statements":[{"effect":"allow","principals":["service:acme:api"],
    "actions":["secrets:read"],"resources":["acme/app/*"]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_fresh_cluster_with_every_secret_version_alias_policy_and_token() {
    let mut cluster = TestCluster::start(BIN, &REGIONS, FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    for v in 1..=3 {
        put(&root, "acme/app/db", format!("fake-db-v{v}").as_bytes())
            .await
            .unwrap();
    }
    put(&root, "acme/app/api-key", b"fake-api-key-v1").await.unwrap();
    put(&root, "acme/app/api-key", b"fake-api-key-v2").await.unwrap();
    put(&root, "acme/other/secret", b"fake-other").await.unwrap();
    put_policy(&root, POLICY).await;
    let token = create_token(
        &root,
        "service:acme:api",
        &[],
        &["backup-app"],
        Duration::from_secs(3600),
    )
    .await
    .token;
    let follower = (leader + 1) % 3;
    let ok = |args: &[&str]| {
        let (code, out, err) = cluster.cli(follower, args);
        assert_eq!(code, 0, "coffer {args:?}: {err}{out}");
        out
    };
    ok(&[
        "secret",
        "promote",
        "acme/app/db",
        "--alias",
        "stable",
        "--version",
        "2",
    ]);
    ok(&["secret", "destroy", "acme/app/api-key", "--version", "1"]);
    let last = put(&root, "acme/app/last", b"fake-last-write").await.unwrap();

    // Saved from a follower: it catches up first, so the last acknowledged write is in it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coffer.backup");
    let path = file.to_str().unwrap();
    let saved = cluster.cli_json(follower, &["snapshot", "save", path]);
    assert!(saved["applied_index"].as_u64().unwrap() >= last.log_index, "{saved}");
    assert_eq!(saved["regions"].as_array().unwrap().len(), 3);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let inspected = cluster.cli_json(follower, &["snapshot", "inspect", path]);
    for k in ["cluster_id", "applied_index", "pairs", "bytes", "sha256"] {
        assert_eq!(inspected[k], saved[k], "{k}");
    }
    // What the state is made of: every pair under one key space, the secrets among them.
    let spaces = inspected["key_spaces"].as_object().expect("key spaces");
    let records: u64 = spaces.values().map(|s| s["records"].as_u64().unwrap()).sum();
    assert_eq!(records, inspected["pairs"].as_u64().unwrap(), "{inspected}");
    assert!(spaces["secrets"]["records"].as_u64().unwrap() >= 4, "{inspected}");
    assert!(spaces["versions"]["bytes_per_record"].as_u64().unwrap() > 0);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "no partial file is left"
    );
    // No value in the clear: values are sealed under the regions' KMS keys.
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(10).any(|w| w == b"fake-db-v2"));
    assert!(!bytes.windows(9).any(|w| w == b"fake-last"));

    // A flipped byte, and a file that is no backup, are refused and say why.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let bad = dir.path().join("flipped.backup");
    std::fs::write(&bad, &flipped).unwrap();
    let (code, _, err) = cluster.cli(follower, &["snapshot", "inspect", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("corrupt backup") && err.contains("byte offset"), "{err}");
    let foreign = dir.path().join("foreign.backup");
    std::fs::write(&foreign, b"{\"not\": \"a backup\"}").unwrap();
    let (code, _, err) = cluster.cli(follower, &["snapshot", "inspect", foreign.to_str().unwrap()]);
    assert!(code != 0 && err.contains("not a Coffer backup"), "{err}");
    let (code, _, err) = cluster.cli(follower, &["snapshot", "save", "/nonexistent-dir/x.backup"]);
    assert!(
        code != 0 && err.contains("/nonexistent-dir is not a directory"),
        "{err}"
    );

    // Never over a node that holds data, and only into the bootstrap node.
    cluster.stop_all();
    let config = |i: usize| cluster.node_dir(i).join("coffer.toml").to_str().unwrap().to_string();
    let (code, _, err) = cluster.cli(0, &["snapshot", "restore", path, "--config", &config(0)]);
    assert!(code != 0 && err.contains("is not empty"), "{err}");
    for i in 0..3 {
        std::fs::remove_dir_all(cluster.data_dir(i)).unwrap();
    }
    let (code, _, err) = cluster.cli(1, &["snapshot", "restore", path, "--config", &config(1)]);
    assert!(code != 0 && err.contains("bootstrap node"), "{err}");
    let (code, _, err) = cluster.cli(
        0,
        &["snapshot", "restore", bad.to_str().unwrap(), "--config", &config(0)],
    );
    assert!(code != 0 && err.contains("corrupt backup"), "{err}");
    let restored = cluster.cli_json(0, &["snapshot", "restore", path, "--config", &config(0)]);
    assert_eq!(restored["applied_index"], saved["applied_index"]);

    // The fresh cluster: node 0 holds the state, the others start empty and receive it.
    for i in 0..3 {
        cluster.restart(i);
    }
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let root = cluster.client(leader).await;
    let fresh = put(&root, "acme/app/after-restore", b"fake-after").await.unwrap();
    for i in 0..3 {
        let c = cluster.client(i).await;
        let read = |name: &'static str, version: Option<u64>| {
            let c = c.clone();
            async move { get(&c, name, version).await }
        };
        eventually(Duration::from_secs(20), "the restored state on every node", || async {
            let r = read("acme/app/after-restore", None).await.ok()?;
            (r.value == b"fake-after").then_some(())
        })
        .await;
        for v in 1..=3u64 {
            assert_eq!(
                read("acme/app/db", Some(v)).await.unwrap().value,
                format!("fake-db-v{v}").as_bytes()
            );
        }
        let stable = c
            .secrets
            .clone()
            .get_secret_value(coffer::pb::GetSecretValueRequest {
                name: "acme/app/db".into(),
                selector: Some(coffer::pb::get_secret_value_request::Selector::Alias("stable".into())),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((stable.version, stable.value.as_slice()), (2, &b"fake-db-v2"[..]));
        assert_eq!(read("acme/app/api-key", None).await.unwrap().value, b"fake-api-key-v2");
        let destroyed = read("acme/app/api-key", Some(1)).await.unwrap_err();
        assert!(destroyed.message().contains("destroyed"), "node {i}: {destroyed:?}");
        assert_eq!(read("acme/app/last", None).await.unwrap().value, b"fake-last-write");
    }
    assert!(fresh.log_index > saved["applied_index"].as_u64().unwrap());
    // The token made before the backup works, within its policy only.
    let app = cluster.client_with(follower, Some(&token)).await;
    assert_eq!(get(&app, "acme/app/db", None).await.unwrap().value, b"fake-db-v3");
    let denied = get(&app, "acme/other/secret", None).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}

/// The scheduled backups in a node's `[backup] dir`, oldest first.
fn scheduled(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "backup") && !p.file_name().unwrap().to_string_lossy().starts_with('.')
    });
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_saves_a_backup_every_interval_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let node_dir = |i: usize| dir.path().join(format!("node-{i}"));
    let mut spec = ClusterSpec::new(&REGIONS, FAST_RAFT);
    spec.metrics = true;
    for i in 0..3 {
        spec.node_extra.insert(
            i,
            format!(
                "[backup]\ndir = \"{}\"\ninterval_ms = 1000\nkeep = 2\n",
                node_dir(i).display()
            ),
        );
    }
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    let w = put(&root, "acme/app/scheduled", b"fake-scheduled").await.unwrap();

    // A backup that holds the write, then two more taken after it: only the newest 2 stay.
    let first = eventually(
        Duration::from_secs(20),
        "a scheduled backup holding the write",
        || async {
            let newest = scheduled(&node_dir(leader)).pop()?;
            let v = cluster.cli_json(leader, &["snapshot", "inspect", newest.to_str()?]);
            (v["applied_index"].as_u64()? >= w.log_index).then_some(newest)
        },
    )
    .await;
    eventually(Duration::from_secs(20), "two more scheduled backups", || async {
        let files = scheduled(&node_dir(leader));
        (files.iter().filter(|f| **f > first).count() >= 2).then_some(())
    })
    .await;
    let files = scheduled(&node_dir(leader));
    assert!(files.len() <= 2 && !files.contains(&first), "{files:?}");
    for f in &files {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(f).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
        cluster.cli_json(leader, &["snapshot", "inspect", f.to_str().unwrap()]);
    }
    // Followers take none.
    for i in (0..3).filter(|i| *i != leader) {
        assert_eq!(scheduled(&node_dir(i)), Vec::<PathBuf>::new(), "node {i}");
    }
    let m = cluster.metrics(leader).await;
    assert!(
        metric(&m, "coffer_backup_last_success_timestamp_seconds", &[]) > 1.7e9,
        "{m}"
    );
    assert_eq!(metric(&m, "coffer_backup_interval_seconds", &[]), 1.0);
    assert!(metric(&m, "coffer_backup_bytes", &[]) > 0.0);
    assert_eq!(metric(&m, "coffer_backup_failures_total", &[]), 0.0);
}
