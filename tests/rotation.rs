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
    // It has no value yet, so it is due at once: the scheduler gives it version 1 (and then
    // leaves it alone for 30 days).
    let d = cluster
        .wait_describe(name, 20, "the first generated value", |d| {
            d["rotation_run"]["step"] == "done" && d["aliases"]["CURRENT"] == 1
        })
        .await;
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
    assert_eq!(kept, [4, 5], "the newest two (CURRENT and PREVIOUS)");
    assert_eq!(describe(&cluster, via, name)["max_versions"], 2);
}

/// The cluster every scheduled-rotation test runs: the scheduler ticks every 100 ms.
async fn rotating_cluster() -> TestCluster {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], FAST_RAFT);
    for i in 0..3 {
        spec.node_extra.insert(i, "[rotation]\ntick_ms = 100\n".into());
    }
    TestCluster::launch(BIN, spec).await
}

fn run_of(d: &serde_json::Value) -> (u64, String) {
    let r = &d["rotation_run"];
    (
        r["run"].as_u64().unwrap_or(0),
        r["step"].as_str().unwrap_or("none").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotations_make_every_step_once_and_a_new_leader_finishes_the_one_in_flight() {
    let mut cluster = rotating_cluster().await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let name = "acme/rot/api-key";
    let (code, _, err) = cluster.cli(
        leader,
        &[
            "secret",
            "create",
            name,
            "--rotation-period",
            "2s",
            "--overlap",
            "1s",
            "--retention",
            "1s",
            // The killed node cannot say whether it reads PREVIOUS: retired by force a second
            // after the overlap.
            "--retire-deadline",
            "1s",
            "--strategy",
            "generate",
            "--generate-spec",
            "bytes=32,encoding=hex",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // Run 1 gives the new secret its first value (nothing to retire), run 2 rotates it.
    let d = cluster
        .wait_describe(name, 20, "run 2 in its overlap", |d| run_of(d) == (2, "overlap".into()))
        .await;
    assert_eq!(d["aliases"]["CURRENT"], 2);
    assert_eq!(d["aliases"]["PREVIOUS"], 1);
    // Kill the leader in the middle of run 2: another one finishes it.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.kill(leader);
    let d = cluster
        .wait_describe(name, 30, "run 2 done and run 4 under way", |d| run_of(d).0 >= 4)
        .await;
    cluster.restart(leader);
    let latest = run_of(&d).0;
    // Every run made one version, and only one: the versions are 1..=N, N the newest run's.
    // Through a node that stayed up: the restarted one may not have loaded its membership yet.
    let c = cluster.client((0..3).find(|i| *i != leader).unwrap()).await;
    let versions = versions(&c, name).await.unwrap();
    let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    assert!(numbers.iter().copied().eq(1..=numbers.len() as u64), "{numbers:?}");
    assert!(
        numbers.len() as u64 >= latest - 1 && numbers.len() as u64 <= latest,
        "{numbers:?} for {latest} runs"
    );
    assert!(versions.iter().all(|v| v.created_by == "system:rotation"));
    // No step skipped: every version two rotations old was disabled after its successor's
    // overlap and destroyed after the retention, in that order.
    for pair in versions.windows(2).take(versions.len().saturating_sub(2)) {
        let (old, new) = (&pair[0], &pair[1]);
        assert_eq!(old.state, pb::VersionState::Destroyed as i32, "version {}", old.version);
        assert!(
            old.disabled_at_ms >= new.created_at_ms + 1000,
            "v{} retired after the overlap",
            old.version
        );
        assert!(
            old.destroyed_at_ms >= old.disabled_at_ms + 1000,
            "v{} destroyed after the retention",
            old.version
        );
    }
    let current = d["aliases"]["CURRENT"].as_u64().unwrap();
    let cur = versions.iter().find(|v| v.version == current).unwrap();
    assert_eq!(cur.state, pb::VersionState::Enabled as i32, "CURRENT is enabled");
    let value = get(&c, name, None).await.unwrap();
    assert_eq!(value.value.len(), 64, "32 random bytes in hex");
    assert!(hex::decode(&value.value).is_ok());
    // With a member down nobody could tell PREVIOUS was unused: run 3 retired it by force at
    // the deadline, on the record at critical severity.
    let forced = (0..3).filter(|i| cluster.is_running(*i)).any(|i| {
        let tail = cluster.cli_json(i, &["audit", "tail", "--count", "200"]);
        tail.as_array().into_iter().flatten().any(|e| {
            e["action"] == "rotation:retire-forced"
                && e["severity"] == "critical"
                && e["resource"] == name
                && e["outcome"].as_str().is_some_and(|o| o.contains("did not answer"))
        })
    });
    assert!(forced, "no critical rotation:retire-forced record");
}

async fn read_alias(
    c: &coffer::client::Client,
    name: &str,
    alias: &str,
) -> Result<pb::GetSecretValueResponse, tonic::Status> {
    c.secrets
        .clone()
        .get_secret_value(pb::GetSecretValueRequest {
            name: name.into(),
            selector: Some(pb::get_secret_value_request::Selector::Alias(alias.into())),
            consistency: None,
            break_glass: None,
        })
        .await
        .map(|r| r.into_inner())
}

fn usage_of(u: &serde_json::Value, version: u64) -> serde_json::Value {
    u["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .cloned()
        .unwrap_or_else(|| panic!("no version {version} in {u:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_previous_holds_it_past_the_overlap_and_usage_counts_its_reads_per_region() {
    let cluster = rotating_cluster().await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let name = "acme/rot/db-password";
    let (code, _, err) = cluster.cli(
        leader,
        &[
            "secret",
            "create",
            name,
            "--rotation-period",
            "1s",
            "--overlap",
            "1s",
            "--retention",
            "1s",
            "--retire-deadline",
            "1m",
            "--strategy",
            "generate",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let d = cluster
        .wait_describe(name, 20, "run 2 in its overlap", |d| run_of(d) == (2, "overlap".into()))
        .await;
    assert_eq!(d["aliases"]["PREVIOUS"], 1);
    let overlap_began = d["rotation_run"]["step_at"].as_str().unwrap().to_string();
    let overlap_began_ms = d["rotation_run"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "overlap")
        .and_then(|e| e["at_ms"].as_u64())
        .unwrap_or_else(|| panic!("no overlap event ({overlap_began})"));
    // A service keeps reading PREVIOUS in eu-west (and now and then in ap-south) for three
    // times the overlap.
    let (eu, ap) = (cluster.client(1).await, cluster.client(2).await);
    let mut reads = [0u64; 3];
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut i = 0;
    while std::time::Instant::now() < until {
        let (node, c) = if i % 3 == 2 { (2, &ap) } else { (1, &eu) };
        let r = read_alias(c, name, "PREVIOUS")
            .await
            .expect("PREVIOUS stays enabled while it is read");
        assert_eq!(r.version, 1);
        reads[node] += 1;
        i += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Past the overlap, still in it: held by its use.
    let d = describe(&cluster, 0, name);
    assert_eq!(run_of(&d), (2, "overlap".into()), "{d:#}");
    let u = cluster.cli_json(0, &["secret", "usage", name]);
    let v1 = usage_of(&u, 1);
    assert_eq!(v1["state"], "enabled");
    assert_eq!(v1["aliases"], serde_json::json!(["PREVIOUS"]));
    assert_eq!(v1["safe_to_retire"], false);
    assert!(v1["reason"].as_str().unwrap().starts_with("in use: read"), "{v1:#}");
    let per_region: Vec<(String, u64)> = v1["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["region"].as_str().unwrap().to_string(),
                r["reads_last_hour"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_region,
        vec![
            ("ap-south".to_string(), reads[2]),
            ("eu-west".to_string(), reads[1]),
            ("us-east".to_string(), 0),
        ],
        "{v1:#}"
    );
    assert_eq!(v1["principals"], serde_json::json!(["root"]), "{v1:#}");
    let last_read_ms = v1["last_read_ms"].as_u64().unwrap();
    assert!(last_read_ms > overlap_began_ms + 2000);
    let v2 = usage_of(&u, 2);
    assert_eq!(
        (v2["safe_to_retire"].clone(), v2["reason"].clone()),
        (false.into(), "it is CURRENT".into())
    );
    // The table says the same.
    let (code, out, _) = cluster.cli(0, &["secret", "usage", name]);
    assert_eq!(code, 0);
    assert!(
        out.contains("eu-west 1H/1D") && out.contains("no (in use: read"),
        "{out}"
    );

    // Once the reads stop, PREVIOUS is retired a quiet window after the last read (not by
    // force: the deadline is a minute away), then destroyed after the retention.
    let c = cluster.client(0).await;
    let v1 = eventually(Duration::from_secs(20), "version 1 destroyed", || async {
        let versions = c
            .secrets
            .clone()
            .list_versions(pb::ListVersionsRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .versions;
        versions
            .into_iter()
            .find(|v| v.version == 1 && v.state == pb::VersionState::Destroyed as i32)
    })
    .await;
    assert!(
        v1.disabled_at_ms >= last_read_ms + 1000,
        "retired at {} only a quiet window after the last read at {last_read_ms}",
        v1.disabled_at_ms
    );
    assert!(v1.disabled_at_ms < overlap_began_ms + 60_000, "not by force");
    assert!(v1.destroyed_at_ms >= v1.disabled_at_ms + 1000);
    // Reads of a retired version fail, and are not counted.
    let u = cluster.cli_json(1, &["secret", "usage", name]);
    let v1 = usage_of(&u, 1);
    assert_eq!(v1["state"], "destroyed");
    assert_eq!(v1["reason"], "already destroyed");
    let eu_reads: u64 = v1["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["region"] == "eu-west")
        .map(|r| r["reads_last_day"].as_u64().unwrap())
        .sum();
    assert_eq!(eu_reads, reads[1]);
    // An unknown secret is a clear not-found, a bad name a clear refusal.
    let (code, _, err) = cluster.cli(0, &["secret", "usage", "acme/rot/nope"]);
    assert!(code != 0 && err.starts_with("error[not_found]"), "{err}");
    let (code, _, err) = cluster.cli(0, &["secret", "usage", "Bad Name"]);
    assert!(code != 0 && err.starts_with("error[invalid_argument]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_previous_by_cas_and_of_two_concurrent_ones_exactly_one_wins() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let other = (leader + 1) % 3;
    let name = "acme/rot/rollback";
    let c = cluster.client(leader).await;
    put(&c, name, b"fake-v1").await.unwrap();
    put(&c, name, b"fake-v2").await.unwrap();
    // Both read CURRENT = 2; one moves it back to 1, the other's compare-and-swap fails.
    let rollback = |via: usize| {
        let mut cmd = cluster.cli_command(via, &["secret", "rotate", name, "--rollback", "--expect", "2"]);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    let (a, b) = (rollback(leader), rollback(other));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let won: Vec<bool> = [&a, &b].iter().map(|o| o.status.success()).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{a:?}\n{b:?}");
    let loser = if won[0] { &b } else { &a };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(
        err.starts_with("error[alias_cas_failed]:") && err.contains("expected 2"),
        "{err}"
    );
    let d = describe(&cluster, other, name);
    assert_eq!(
        (d["aliases"]["CURRENT"].as_u64(), d["aliases"]["PREVIOUS"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(get(&c, name, None).await.unwrap().value, b"fake-v1");
    // Rolling back again swaps back (PREVIOUS 2 is enabled); once PREVIOUS is disabled, no.
    let (code, out, err) = cluster.cli(other, &["secret", "rotate", name, "--rollback"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CURRENT is version 2 again"), "{out}");
    let (code, _, err) = cluster.cli(other, &["secret", "disable", name, "--version", "1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cluster.cli(other, &["secret", "rotate", name, "--rollback"]);
    assert_ne!(code, 0);
    assert!(
        err.starts_with("error[failed_precondition]:") && err.contains("retired"),
        "{err}"
    );
    // A secret without a rotation policy cannot start one.
    let (code, _, err) = cluster.cli(other, &["secret", "rotate", name]);
    assert_ne!(code, 0);
    assert!(err.contains("no rotation policy"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_status_lists_due_in_flight_and_failing_secrets() {
    let cluster = rotating_cluster().await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let create = |name: &str, owner: &str, extra: &[&str]| {
        let mut args = vec![
            "secret",
            "create",
            name,
            "--owner-team",
            owner,
            "--rotation-period",
            "1s",
        ];
        args.extend(extra);
        let (code, _, err) = cluster.cli(leader, &args);
        assert_eq!(code, 0, "{err}");
    };
    // Manual: due a second after it was created, and nobody rotates it.
    create("acme/st/manual", "payments", &["--strategy", "manual"]);
    // Hook: nobody listens at its rotator's address, so its runs fail at the value step and
    // back off.
    create(
        "acme/st/hook",
        "platform",
        &["--hook-url", "https://127.0.0.1:1/rotate"],
    );
    // Generate, with a long period: its first value at once (no CURRENT yet), then fine for an
    // hour.
    let (code, _, err) = cluster.cli(
        leader,
        &[
            "secret",
            "create",
            "acme/st/fine",
            "--owner-team",
            "payments",
            "--rotation-period",
            "1h",
            "--strategy",
            "generate",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let standing = |args: &[&str]| -> Vec<(String, String)> {
        let mut all = vec!["rotation", "status"];
        all.extend(args);
        let v = cluster.cli_json(leader, &all);
        v["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["standing"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let expected = vec![
        ("acme/st/fine".to_string(), "ok".to_string()),
        ("acme/st/hook".to_string(), "failed".to_string()),
        ("acme/st/manual".to_string(), "due".to_string()),
    ];
    while standing(&["--prefix", "acme/st/"]) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "standings never became {expected:?}: {:?}",
            standing(&["--prefix", "acme/st/"])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every tenant at once is the platform's view.
    let all = standing(&[]);
    assert!(all.iter().any(|(n, _)| n == "acme/st/hook"), "{all:?}");
    // The generate secret got its first value at once (it had none), not a period later.
    let v = cluster.cli_json(leader, &["rotation", "status", "--prefix", "acme/st/fine"]);
    assert_eq!(v["secrets"][0]["current_version"], 1, "{v}");
    let due: Vec<String> = standing(&["--prefix", "acme/st/", "--due"])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        due.contains(&"acme/st/manual".to_string()) && !due.contains(&"acme/st/fine".to_string()),
        "{due:?}"
    );
    assert_eq!(
        standing(&["--prefix", "acme/st/", "--failed"]),
        [("acme/st/hook".to_string(), "failed".to_string())]
    );
    assert_eq!(
        standing(&["--prefix", "acme/st/", "--owner-team", "platform"]),
        [("acme/st/hook".to_string(), "failed".to_string())]
    );
    // The failing run says why, and the table names the step.
    let v = cluster.cli_json(leader, &["rotation", "status", "--prefix", "acme/st/", "--failed"]);
    let err = v["secrets"][0]["run"]["last_error"].as_str().unwrap();
    assert!(err.contains("hook https://127.0.0.1:1/rotate: cannot connect"), "{err}");
    let (code, out, _) = cluster.cli(leader, &["rotation", "status", "--prefix", "acme/st/"]);
    assert_eq!(code, 0);
    assert!(out.contains("#1 create-pending"), "{out}");
}
