//! deploy/compose.yaml without Docker (there is no daemon here): its parts run as processes on
//! loopback, as the compose services would run them. `init.sh` makes the certificates,
//! keyrings and root token (twice: the rerun keeps everything); the three deploy/config node
//! configs start a TLS cluster with only paths and addresses rewritten (each rewrite must find
//! its text, so the configs and this test cannot drift apart unnoticed); `setup.sh` waits for
//! the nodes with `coffer cluster health --wait`, adds the demo policy, secret and the agent's
//! token (twice: the rerun adds nothing); the compose agent config renders the secret; the
//! `cli` service's wrapper runs a command with the root token; the image's health check
//! command answers ready. scripts/check_compose.py checks that compose.yaml wires these same
//! files and paths.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Output;
use std::process::Stdio;

use common::*;

const NODES: [&str; 3] = ["us-east-1", "eu-west-1", "ap-south-1"];

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command with `coffer` (this build) first on PATH and no COFFER_* settings inherited.
fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("COFFER_") {
            c.env_remove(k);
        }
    }
    let bin_dir = Path::new(BIN).parent().unwrap();
    c.env(
        "PATH",
        format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()),
    );
    c
}

fn script(name: &str, state: &Path, env: &[(&str, String)]) -> Output {
    let mut c = command("bash");
    c.arg(repo().join("deploy/compose").join(name))
        .env("COFFER_COMPOSE_STATE", state)
        .env("COFFER_COMPOSE_OWNER", "");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `text` with each `(from, to)` replaced; every `from` must be there.
fn rewrite(text: &str, what: &str, pairs: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        assert!(
            out.contains(from.as_str()),
            "{what} no longer holds {from:?}: update tests/compose.rs"
        );
        out = out.replace(from.as_str(), to);
    }
    out
}

struct Ports {
    api: u16,
    raft: u16,
    http: u16,
    metrics: u16,
}

#[test]
fn the_compose_cluster_comes_up_from_its_scripts_and_configs_and_the_agent_renders_the_demo_secret() {
    let dir = TempDir::new().unwrap();
    let state = dir.path().join("state");

    // init, then init again: the rerun keeps the CA, certificates, keyrings and root token.
    let first = ok("init.sh", &script("init.sh", &state, &[]));
    assert!(
        first.contains(&format!("made {}", state.join("pki/ca").display())),
        "{first}"
    );
    for n in NODES {
        assert!(state.join(format!("pki/{n}/node.pem")).exists(), "{n}");
        let key = state.join(format!("pki/{n}/node-key.pem"));
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    for r in ["us-east", "eu-west", "ap-south"] {
        assert!(state.join(format!("keyring/{r}.keyring")).exists(), "{r}");
    }
    let token = std::fs::read_to_string(state.join("admin/root-token")).unwrap();
    assert!(token.starts_with("cft_") && token.len() == 68, "a fresh random token");
    let hash = std::fs::read_to_string(state.join("root/root-token.sha256")).unwrap();
    assert_eq!(
        hash.trim(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))
    );
    let ca = std::fs::read(state.join("pki/ca/ca.pem")).unwrap();
    let again = ok("init.sh again", &script("init.sh", &state, &[]));
    assert!(!again.contains("made"), "a rerun makes nothing: {again}");
    assert_eq!(std::fs::read_to_string(state.join("admin/root-token")).unwrap(), token);
    assert_eq!(std::fs::read(state.join("pki/ca/ca.pem")).unwrap(), ca);

    // The three nodes, from deploy/config with paths and addresses made local.
    let ports: BTreeMap<&str, Ports> = NODES
        .iter()
        .map(|n| {
            (
                *n,
                Ports {
                    api: free_port(),
                    raft: free_port(),
                    http: free_port(),
                    metrics: free_port(),
                },
            )
        })
        .collect();
    let peer_pairs = || {
        let mut v = Vec::new();
        for (n, p) in &ports {
            v.push((format!("coffer-{n}.internal:7400"), format!("127.0.0.1:{}", p.api)));
            v.push((format!("coffer-{n}.internal:7500"), format!("127.0.0.1:{}", p.raft)));
        }
        v
    };
    let mut nodes = Vec::new();
    for n in NODES {
        let p = &ports[n];
        let node_dir = dir.path().join(n);
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut pairs = vec![
            (
                "/etc/coffer/tls/".into(),
                format!("{}/", state.join("pki").join(n).display()),
            ),
            (
                "/etc/coffer/keyring".into(),
                state.join("keyring").display().to_string(),
            ),
            ("/var/lib/coffer".into(), node_dir.join("data").display().to_string()),
            (
                "/var/backups/coffer".into(),
                node_dir.join("backups").display().to_string(),
            ),
            ("0.0.0.0:7400".into(), format!("127.0.0.1:{}", p.api)),
            ("0.0.0.0:7500".into(), format!("127.0.0.1:{}", p.raft)),
            ("0.0.0.0:7600".into(), format!("127.0.0.1:{}", p.http)),
            ("0.0.0.0:9464".into(), format!("127.0.0.1:{}", p.metrics)),
        ];
        if n == "us-east-1" {
            pairs.push(("/etc/coffer/root/".into(), format!("{}/", state.join("root").display())));
        }
        pairs.extend(peer_pairs());
        let text = std::fs::read_to_string(repo().join(format!("deploy/config/{n}.toml"))).unwrap();
        let config = node_dir.join("coffer.toml");
        std::fs::write(&config, rewrite(&text, n, &pairs)).unwrap();
        let log = std::fs::File::create(node_dir.join("node.log")).unwrap();
        let child = command(BIN)
            .args(["server", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        nodes.push(KillOnDrop(child));
    }
    let addr = |n: &str| format!("https://127.0.0.1:{}", ports[n].api);
    let node_addrs = NODES.map(addr).join(" ");
    let setup_env = [
        ("COFFER_COMPOSE_NODES", node_addrs.clone()),
        ("COFFER_ADDR", addr("us-east-1")),
    ];
    let out = script("setup.sh", &state, &setup_env);
    let logs = || {
        NODES
            .map(|n| std::fs::read_to_string(dir.path().join(n).join("node.log")).unwrap_or_default())
            .join("\n---\n")
    };
    assert!(out.status.success(), "setup.sh: {out:?}\nnode logs:\n{}", logs());
    let setup = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        setup.contains(&format!("made {}", state.join("agent/token").display())),
        "{setup}"
    );
    let agent_token = std::fs::read(state.join("agent/token")).unwrap();

    // The `cli` service's wrapper: the root token from the state folder.
    let as_admin = |args: &[&str]| {
        command("bash")
            .arg(repo().join("deploy/compose/as-admin.sh"))
            .args(args)
            .env("COFFER_COMPOSE_STATE", &state)
            .env("COFFER_ADDR", addr("eu-west-1"))
            .env("COFFER_CACERT", state.join("pki/ca/ca.pem"))
            .output()
            .unwrap()
    };
    let value = ok("cli secret get", &as_admin(&["secret", "get", "demo/app/db-password"]));
    let value = value.trim().to_string();
    assert_eq!(value.len(), 32, "a generated 32-character value");
    let status = ok(
        "cli cluster status",
        &as_admin(&["cluster", "status", "--output", "json"]),
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3), "{status}");

    // setup again: nothing new (the secret keeps one version, the agent its token).
    let again = ok("setup.sh again", &script("setup.sh", &state, &setup_env));
    assert!(again.contains("kept demo/app/db-password"), "{again}");
    assert_eq!(std::fs::read(state.join("agent/token")).unwrap(), agent_token);
    let versions = ok(
        "cli secret versions",
        &as_admin(&["secret", "versions", "demo/app/db-password", "--output", "json"]),
    );
    let versions: serde_json::Value = serde_json::from_str(&versions).unwrap();
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1), "{versions}");

    // The agent, with the compose agent config, renders the secret with the agent's token.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let mut agent_pairs = vec![
        (
            "/run/coffer/agent/token".to_string(),
            state.join("agent/token").display().to_string(),
        ),
        (
            "/etc/coffer/tls/ca.pem".into(),
            state.join("pki/ca/ca.pem").display().to_string(),
        ),
        ("/run/coffer/secrets".into(), secrets.display().to_string()),
    ];
    agent_pairs.extend(peer_pairs().into_iter().filter(|(from, _)| from.ends_with(":7400")));
    let agent_text = std::fs::read_to_string(repo().join("deploy/compose/agent.toml")).unwrap();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(&agent_config, rewrite(&agent_text, "agent.toml", &agent_pairs)).unwrap();
    ok(
        "agent --once",
        &command(BIN)
            .args(["agent", "--once", "--config"])
            .arg(&agent_config)
            .output()
            .unwrap(),
    );
    let rendered = std::fs::read_to_string(secrets.join("db.env")).unwrap();
    assert_eq!(rendered.trim(), format!("DB_PASSWORD={value}"));
    assert_eq!(
        std::fs::metadata(secrets.join("db.env")).unwrap().permissions().mode() & 0o777,
        0o400
    );

    // Bad input to the setup commands: one line naming what is wrong, nothing written.
    let spare = dir.path().join("spare");
    for (args, needle) in [
        (
            vec!["tls", "issue", "--dir", "D", "--node", "us-east-1"],
            "expected NAME=HOST",
        ),
        (
            vec!["tls", "issue", "--dir", "D", "--node", "a=h", "--client", "a=user:x"],
            "named twice",
        ),
        (vec!["tls", "issue", "--dir", "D"], "nothing to issue"),
        (
            vec!["kms", "create-local-keyring", "--keyring-dir", "D", "--region", "../x"],
            "region \"../x\"",
        ),
    ] {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace('D', &spare.display().to_string()))
            .collect();
        let out = command(BIN).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert!(!spare.exists(), "a refused command writes nothing");

    // The image's HEALTHCHECK command: ready over TLS at localhost (the certificates name it),
    // and not ready, with a non-zero exit, once the node is gone.
    let health = |n: &str| {
        command(BIN)
            .args([
                "cluster",
                "health",
                "--addr",
                &format!("https://localhost:{}", ports[n].api),
            ])
            .arg("--ca-cert")
            .arg(state.join(format!("pki/{n}/ca.pem")))
            .output()
            .unwrap()
    };
    assert_eq!(ok("cluster health", &health("ap-south-1")).trim(), "serving");
    drop(nodes.pop());
    assert!(!health("ap-south-1").status.success(), "a stopped node is not healthy");
}
