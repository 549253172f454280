//! The node processes: start, wait until ready, restart the ones that die, stop them all.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use crate::cli::CliError;
use crate::client::Client;
use crate::pb;

use super::plan::*;

pub(super) fn spawn(node: &DevNode, dir: &Path) -> Result<Child, CliError> {
    let exe = std::env::current_exe()?;
    let node_dir = dir.join(&node.name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node_dir.join("coffer.log"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("server")
        .arg("--config")
        .arg(node_dir.join("coffer.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to stop the node if this
    // process dies, so no node outlives `coffer dev`.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| err(format!("cannot start node {}: {e}", node.name)))
}

pub(super) fn log_tail(dir: &Path, node: &DevNode) -> String {
    let text = std::fs::read_to_string(dir.join(&node.name).join("coffer.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n    ")
}

pub(super) fn stop_all(children: &mut [(DevNode, Child)]) {
    for (_, c) in children.iter_mut() {
        // A reaped child's pid may belong to someone else by now: signal live children only.
        if let Ok(None) = c.try_wait() {
            // SAFETY: plain kill(2) on a live child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, c) in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Polls until the cluster has a leader and is bootstrapped, or a node dies.
pub(super) async fn wait_ready(
    file: &ClusterFile,
    children: &mut [(DevNode, Child)],
    dir: &Path,
) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let tls = match &file.ca_cert {
        Some(ca) => Some(crate::client::ClientTls::new(std::fs::read(ca)?)),
        None => None,
    };
    loop {
        for (n, c) in children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(err(format!(
                    "node {} exited ({status}) while starting; its log says:\n    {}",
                    n.name,
                    log_tail(dir, n)
                )));
            }
        }
        if let Ok(client) = Client::connect_with(&file.nodes[0].api, Some(&file.root_token), tls.as_ref()).await {
            if let Ok(r) = client.cluster.clone().status(pb::ClusterStatusRequest {}).await {
                let r = r.into_inner();
                if r.leader_id != 0 && !r.cluster_id.is_empty() {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "the cluster did not become ready within 60s; see the logs in {}",
                dir.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Notices dead nodes and restarts each [`RESTART_DELAY`] after it died.
pub(super) fn restart_dead(
    children: &mut [(DevNode, Child)],
    file: &mut ClusterFile,
    dir: &Path,
    started: &mut [Instant],
    died: &mut [Option<Instant>],
    quick_deaths: &mut [u32],
) -> Result<(), CliError> {
    for i in 0..children.len() {
        let n = children[i].0.clone();
        match died[i] {
            None => {
                let Ok(Some(status)) = children[i].1.try_wait() else {
                    continue;
                };
                quick_deaths[i] = if started[i].elapsed() < Duration::from_secs(5) {
                    quick_deaths[i] + 1
                } else {
                    0
                };
                if quick_deaths[i] >= 3 {
                    return Err(err(format!(
                        "node {} keeps exiting ({status}); its log says:\n    {}",
                        n.name,
                        log_tail(dir, &n)
                    )));
                }
                println!(
                    "node {} exited ({status}); restarting it in {}s",
                    n.name,
                    RESTART_DELAY.as_secs()
                );
                died[i] = Some(Instant::now());
            }
            Some(at) if at.elapsed() >= RESTART_DELAY => {
                let c = spawn(&n, dir)?;
                println!("node {} restarted (pid {})", n.name, c.id());
                if let Some(f) = file.nodes.iter_mut().find(|x| x.id == n.id) {
                    f.pid = c.id();
                }
                children[i].1 = c;
                started[i] = Instant::now();
                died[i] = None;
                write_private(
                    &dir.join("cluster.json"),
                    serde_json::to_string_pretty(&*file).unwrap_or_default().as_bytes(),
                )?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// How long a dead node stays down before `coffer dev` restarts it.
pub(super) const RESTART_DELAY: Duration = Duration::from_secs(3);
