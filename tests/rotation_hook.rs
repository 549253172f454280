//! The hook strategy (docs/architecture.md: Rotation) against a real HTTPS rotator the test
//! starts: Coffer calls it with the secret, the run and the run's token; it puts the value with
//! the `coffer` CLI. A rotator that answers late, answers without writing, replays an old
//! run's token or writes CURRENT directly fails the attempt with its reason, CURRENT stays, and
//! the run is retried until a good answer lands it, once.

mod common;

use std::time::Duration;

use coffer_testkit::rotator::value_of_run;
use coffer_testkit::rotator::Behaviour;
use coffer_testkit::rotator::Rotator;
use common::*;

fn run_of(d: &serde_json::Value) -> (u64, String, u64) {
    let r = &d["rotation_run"];
    (
        r["run"].as_u64().unwrap_or(0),
        r["step"].as_str().unwrap_or("none").to_string(),
        r["attempts"].as_u64().unwrap_or(0),
    )
}

/// Polls until the rotator has seen `n` calls.
async fn wait_calls(rotator: &Rotator, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rotator.calls().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotator saw {} calls, not {n}",
            rotator.calls().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn current(d: &serde_json::Value) -> u64 {
    d["aliases"]["CURRENT"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotator_over_https_writes_each_run_once_and_its_failures_leave_current_and_are_retried() {
    // The nodes trust the rotator's CA, so the rotator comes first.
    let rotator = Rotator::start().await;
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], FAST_RAFT);
    for i in 0..3 {
        spec.node_extra.insert(
            i,
            format!(
                "[rotation]\ntick_ms = 100\nhook_timeout_ms = 1000\nhook_ca_file = {:?}\n",
                rotator.ca_file.display().to_string()
            ),
        );
    }
    let cluster = TestCluster::launch(BIN, spec).await;
    rotator.put_through(&cluster, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let name = "acme/hook/db-password";
    let (code, _, err) = cluster.cli(
        leader,
        &[
            "secret",
            "create",
            name,
            "--owner-team",
            "platform",
            "--rotation-period",
            "1h",
            "--overlap",
            "1s",
            "--retention",
            "1s",
            "--strategy",
            "hook",
            "--hook-url",
            &rotator.url,
        ],
    );
    assert_eq!(code, 0, "{err}");

    // Run 1 (the secret has no value yet): the rotator is called over HTTPS and writes it.
    let d = cluster
        .wait_describe(name, 20, "run 1 done", |d| run_of(d).0 == 1 && run_of(d).1 == "done")
        .await;
    assert_eq!(current(&d), 1, "{d:#}");
    let calls = rotator.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0].secret.as_str(), calls[0].run), (name, 1));
    assert!(calls[0].token.starts_with("rot1_"), "the call carries the run's token");
    assert_eq!(calls[0].put.as_ref().map(|p| p.0), Some(0), "{calls:?}");
    let (code, value, err) = cluster.cli(1, &["secret", "get", name, "--consistency", "linearizable"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(value.trim(), value_of_run(1));
    let token_of_run_1 = calls[0].token.clone();

    // Run 2: the rotator answers after the timeout. The attempt fails with that reason,
    // CURRENT stays, and the run is retried once the rotator is back.
    rotator.set(Behaviour::Slow(Duration::from_millis(2500)));
    let (code, _, err) = cluster.cli(leader, &["secret", "rotate", name]);
    assert_eq!(code, 0, "{err}");
    let d = cluster
        .wait_describe(name, 20, "run 2 failed an attempt", |d| {
            run_of(d).0 == 2 && run_of(d).2 >= 1
        })
        .await;
    let why = d["rotation_run"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("no answer within 1000 ms"), "{why}");
    assert_eq!(current(&d), 1, "CURRENT stays while the rotator fails");
    let failed = cluster.cli_json(leader, &["rotation", "status", "--prefix", "acme/hook/", "--failed"]);
    assert_eq!(failed["secrets"][0]["name"], name, "{failed:#}");
    rotator.set(Behaviour::Write);
    let d = cluster
        .wait_describe(name, 30, "run 2 done", |d| run_of(d).0 == 2 && run_of(d).1 == "done")
        .await;
    assert_eq!(current(&d), 2);
    let (_, value, _) = cluster.cli(1, &["secret", "get", name, "--consistency", "linearizable"]);
    assert_eq!(value.trim(), value_of_run(2));

    // Run 3: a rotator that replays run 1's token, one that writes CURRENT directly, and one
    // that answers without writing are each refused or found out; CURRENT stays at 2.
    rotator.set(Behaviour::Replay);
    let (code, _, err) = cluster.cli(leader, &["secret", "rotate", name]);
    assert_eq!(code, 0, "{err}");
    let d = cluster
        .wait_describe(name, 20, "run 3 refused a replayed write", |d| {
            run_of(d).0 == 3 && run_of(d).2 >= 1
        })
        .await;
    let why = d["rotation_run"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("answered 500"), "{why}");
    let last = rotator.calls().last().cloned().unwrap();
    assert_eq!((last.run, last.behaviour), (3, Behaviour::Replay));
    let (put_code, put_err) = last.put.clone().unwrap();
    assert_ne!(put_code, 0, "a replay of run 1 is refused: {put_err}");
    assert_eq!(current(&d), 2);

    rotator.set(Behaviour::AsCurrent);
    let seen = rotator.calls().len();
    wait_calls(&rotator, seen + 1).await;
    let last = rotator.calls().last().cloned().unwrap();
    let (put_code, put_err) = last.put.clone().unwrap();
    assert_ne!(put_code, 0);
    assert!(put_err.contains("PENDING"), "{put_err}");

    rotator.set(Behaviour::AnswerOnly);
    let d = cluster
        .wait_describe(name, 30, "run 3 found no value after a 200", |d| {
            d["rotation_run"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("no PENDING value of run 3 landed"))
        })
        .await;
    assert_eq!(current(&d), 2);

    // Nobody else can answer for run 3: another run's token, or a token without its run.
    let forged = cluster.cli_env(
        0,
        &["secret", "put", name, "--value", "fake-forged", "--rotation-run", "3"],
        &[("COFFER_ROTATION_TOKEN", Some(&token_of_run_1))],
    );
    assert_ne!(forged.0, 0);
    assert!(forged.2.contains("rotation token is not the one"), "{}", forged.2);
    let (code, _, err) = cluster.cli(
        0,
        &[
            "secret",
            "put",
            name,
            "--value",
            "fake-x",
            "--rotation-token",
            "rot1_00",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--rotation-run"), "{err}");

    // A good answer lands run 3, once: versions 1, 2, 3 and nothing else.
    rotator.set(Behaviour::Write);
    let d = cluster
        .wait_describe(name, 30, "run 3 promoted", |d| current(d) == 3)
        .await;
    assert_eq!(run_of(&d).0, 3);
    let (_, value, _) = cluster.cli(1, &["secret", "get", name, "--consistency", "linearizable"]);
    assert_eq!(value.trim(), value_of_run(3));
    let c = cluster.client(0).await;
    let numbers: Vec<u64> = versions(&c, name).await.unwrap().iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 2, 3]);
    // The pending step of each run names who wrote it: the rotator's principal, not the
    // scheduler.
    let events = d["rotation_run"]["events"].as_array().unwrap();
    let pending: Vec<_> = events.iter().filter(|e| e["step"] == "promote").collect();
    assert_eq!(pending.len(), 1, "{events:?}");
    assert_eq!(pending[0]["version"], 3);
    assert_ne!(pending[0]["by"], "system:rotation", "{events:?}");
}
