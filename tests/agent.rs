//! `coffer agent` (docs/architecture.md: Delivery) as a separate process against a real
//! cluster: files rendered with their mode and owner, a rotation rewriting a file atomically
//! (a reader loop never sees a part) and reloading once, a destroyed version's file removed,
//! stale files kept through an outage up to max_stale and then removed, and a missing critical
//! secret failing startup with one line.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use coffer::pb;
use common::*;

/// A child process (the agent, a fake service), killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(cluster: &TestCluster, dir: &Path, local: usize, files: &str) -> std::path::PathBuf {
    config_with(cluster, dir, local, "", files)
}

/// [`config`] with `extra` top-level settings.
fn config_with(cluster: &TestCluster, dir: &Path, local: usize, extra: &str, files: &str) -> std::path::PathBuf {
    let token = dir.join("token");
    std::fs::write(&token, cluster.token()).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let endpoints: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "{{ addr = \"http://{}\", region = \"{}\" }}",
                cluster.node(i).api,
                cluster.node(i).region
            )
        })
        .collect();
    let text = format!(
        "region = \"{}\"\nendpoints = [{}]\ntoken_file = \"{}\"\ninterval_ms = 100\nttl_secs = 1\nmax_stale_secs = 4\n\
         status_file = \"{}\"\n{extra}\n{files}",
        cluster.node(local).region,
        endpoints.join(", "),
        token.display(),
        dir.join("status.json").display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn status(dir: &Path) -> serde_json::Value {
    std::fs::read(dir.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_files_current_atomically_reloads_once_and_removes_what_may_not_stay() {
    let mut cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put(&root, "acme/agent/db", b"fake-agent-one").await.unwrap();
    put(&root, "acme/agent/db", b"fake-agent-two").await.unwrap();
    put(&root, "acme/agent/api-key", b"fake-agent-key").await.unwrap();
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let reloads = d.join("reloads.log");
    let files = format!(
        r#"
[[file]]
path = "{d}/db-password"
format = "raw"
secrets = ["acme/agent/db"]
mode = "0400"
owner = "65534:65534"
reload_command = ["/bin/sh", "-c", "echo reloaded >> {reloads}"]

[[file]]
path = "{d}/app.env"
format = "env"
secrets = ["acme/agent/db", "acme/agent/api-key"]
mode = "0600"

[[file]]
path = "{d}/dsn"
format = "template"
template = "postgres://app:{{{{ acme/agent/db }}}}@db:5432/app"
signal_pid_file = "{d}/service.pid"
signal = "USR1"

[[file]]
path = "{d}/db-password.previous"
format = "raw"
secrets = ["acme/agent/db"]
alias = "PREVIOUS"
critical = false
"#,
        d = d.display(),
        reloads = reloads.display()
    );
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = config_with(
        &cluster,
        d,
        (leader + 1) % 3,
        &format!("metrics_addr = \"{metrics}\""),
        &files,
    );
    let scrape = || async move { http_get(metrics, "/metrics").await.unwrap_or_default() };
    // The service the dsn file is for: it logs each USR1 it gets.
    let signals = d.join("signals.log");
    let _service = KillOnDrop(
        Command::new("/bin/sh")
            .args([
                "-c",
                &format!(
                    "trap 'echo usr1 >> {}' USR1; echo $$ > {}; while :; do sleep 0.05; done",
                    signals.display(),
                    d.join("service.pid").display()
                ),
            ])
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(5), "the service's pid file", || async {
        d.join("service.pid").exists().then_some(())
    })
    .await;
    let _agent = KillOnDrop(
        Command::new(BIN)
            .args(["agent", "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pw = d.join("db-password");
    // The status is written after each pass: the first one rendered every file.
    eventually(Duration::from_secs(10), "the agent's first pass", || async {
        let s = status(d);
        let files = s["files"].as_array()?;
        (files.len() == 4 && files.iter().all(|f| f["state"] == "fresh")).then_some(())
    })
    .await;
    assert_eq!(std::fs::read(&pw).unwrap(), b"fake-agent-two");
    let meta = std::fs::metadata(&pw).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid(), meta.gid()), (0o400, 65534, 65534));
    assert_eq!(std::fs::metadata(d.join("app.env")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(d.join("app.env")).unwrap(),
        "DB=fake-agent-two\nAPI_KEY=fake-agent-key\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("dsn")).unwrap(),
        "postgres://app:fake-agent-two@db:5432/app"
    );
    assert_eq!(
        std::fs::read(d.join("db-password.previous")).unwrap(),
        b"fake-agent-one"
    );
    assert!(!reloads.exists() && !signals.exists(), "the first render is no change");

    // A rotation while a reader loops over the file: it sees one whole value or the other.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, pw) = (stop.clone(), pw.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let bytes = std::fs::read(&pw).expect("the file is always there");
                assert!(
                    bytes == b"fake-agent-two" || bytes == b"fake-agent-three",
                    "a partial file: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
                reads += 1;
            }
            reads
        })
    };
    put(&root, "acme/agent/db", b"fake-agent-three").await.unwrap();
    eventually(Duration::from_secs(5), "the rotated value on disk", || async {
        (std::fs::read(&pw).ok()? == b"fake-agent-three").then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), "the reload", || async {
        reloads.exists().then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 10);
    eventually(
        Duration::from_secs(5),
        "PREVIOUS's file to follow the rotation",
        || async { (std::fs::read(d.join("db-password.previous")).ok()? == b"fake-agent-two").then_some(()) },
    )
    .await;

    // Version 2 (PREVIOUS now) is destroyed: its file goes.
    root.secrets
        .clone()
        .destroy_version(pb::DestroyVersionRequest {
            name: "acme/agent/db".into(),
            version: 2,
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the destroyed version's file removed",
        || async { (!d.join("db-password.previous").exists()).then_some(()) },
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&reloads).unwrap().lines().count(),
        1,
        "one reload per change"
    );
    let signalled = eventually(Duration::from_secs(5), "the service signalled", || async {
        std::fs::read_to_string(&signals).ok()
    })
    .await;
    assert_eq!(signalled, "usr1\n", "one signal for the dsn's one change");
    // Its metrics: four first renders and three after the rotation (the PREVIOUS file's move
    // included), one reload command and one signal, one removal. The removal is counted once
    // the file is gone and its folder synced, a moment after a reader sees it gone.
    let m = eventually(Duration::from_secs(5), "the removal counted", || async {
        let m = scrape().await;
        (metric(&m, "coffer_agent_removals_total", &[]) > 0.0).then_some(m)
    })
    .await;
    assert_eq!(
        (
            metric(&m, "coffer_agent_renders_total", &[]),
            metric(&m, "coffer_agent_reloads_total", &[]),
            metric(&m, "coffer_agent_reload_failures_total", &[]),
            metric(&m, "coffer_agent_removals_total", &[]),
        ),
        (8.0, 2.0, 0.0, 1.0),
        "{m}"
    );

    // Every node down: the files stay, marked stale, until max_stale; then they go.
    cluster.stop_all();
    eventually(Duration::from_secs(5), "the status to say stale", || async {
        let s = status(d);
        (s["files"][0]["state"] == "stale").then_some(())
    })
    .await;
    assert_eq!(std::fs::read(&pw).unwrap(), b"fake-agent-three");
    assert!(metric(&scrape().await, "coffer_agent_stale_files", &[]) >= 1.0);
    eventually(Duration::from_secs(10), "the files removed past max_stale", || async {
        (!pw.exists() && status(d)["files"][0]["state"] == "removed").then_some(())
    })
    .await;
    let reason = status(d)["files"][0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("max_stale"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_renders_and_exits_and_a_missing_critical_secret_fails_startup_with_one_line() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put(&root, "acme/init/db", b"fake-init").await.unwrap();
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let ok = config(
        &cluster,
        d,
        leader,
        &format!(
            "[[file]]\npath = \"{}/db\"\nformat = \"raw\"\nsecrets = [\"acme/init/db\"]\n",
            d.display()
        ),
    );
    let out = Command::new(BIN)
        .args(["agent", "--once", "--config", ok.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(d.join("db")).unwrap(), b"fake-init");

    // --check reads the config only: a good one passes without a node, a bad one says why.
    std::fs::remove_file(d.join("db")).unwrap();
    let check = |path: &Path| {
        Command::new(BIN)
            .args(["agent", "--check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = check(&ok);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!d.join("db").exists(), "--check wrote a file");
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&ok)
            .unwrap()
            .replace("acme/init/db", "acme//db"),
    )
    .unwrap();
    let out = check(&bad);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.trim().lines().count() == 1 && err.contains("acme//db"),
        "{err}"
    );

    // A token file others may read is refused before anything is rendered.
    std::fs::set_permissions(d.join("token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .args(["agent", "--once", "--config", ok.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains("others"), "{err}");
    assert!(!err.contains(cluster.token()), "{err}");
    assert!(!d.join("db").exists());

    let missing = config(
        &cluster,
        d,
        leader,
        &format!(
            "[[file]]\npath = \"{}/gone\"\nformat = \"raw\"\nsecrets = [\"acme/init/nothing\"]\n",
            d.display()
        ),
    );
    let out = Command::new(BIN)
        .args(["agent", "--config", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("acme/init/nothing") && err.contains("not_found"), "{err}");
    assert!(!d.join("gone").exists());
}
