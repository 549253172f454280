//! Test harness: a real Coffer cluster of `coffer server` processes on loopback.
//!
//! Every node is a separate OS process with its own RocksDB, talking real gRPC over TCP. The
//! harness picks free ports, writes configs and keyrings into a temporary folder, and kills
//! every node when dropped.

#![allow(dead_code)]

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use coffer::client::Client;
use coffer::dev::ClusterFile;
use coffer::dev::DevNode;
use coffer::pb;

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// Raft settings for tests: fast elections on loopback, frequent snapshots.
pub const FAST_RAFT: &str = "heartbeat_ms = 50\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 800\n";

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub file: ClusterFile,
    children: Vec<Option<Child>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl TestCluster {
    /// Starts one node per region and waits until the cluster is bootstrapped with a leader.
    pub async fn start(regions: &[&str], raft: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = coffer::authz::new_token().unwrap();
        let file = ClusterFile {
            cluster_id: "test-cluster".into(),
            root_token: token,
            nodes: regions
                .iter()
                .enumerate()
                .map(|(i, r)| DevNode {
                    id: i as u64 + 1,
                    name: format!("{r}-1"),
                    region: r.to_string(),
                    api: format!("127.0.0.1:{}", free_port()),
                    raft: format!("127.0.0.1:{}", free_port()),
                    pid: 0,
                })
                .collect(),
        };
        for n in &file.nodes {
            coffer::crypto::kms::local::create_keyring(&dir.path().join("keyring"), &n.region).unwrap();
            let node_dir = dir.path().join(&n.name);
            std::fs::create_dir_all(&node_dir).unwrap();
            std::fs::write(
                node_dir.join("coffer.toml"),
                coffer::dev::node_config(&file, n, dir.path(), raft),
            )
            .unwrap();
        }
        let mut c = TestCluster {
            dir,
            file,
            children: vec![],
        };
        for i in 0..c.file.nodes.len() {
            let child = c.spawn(i);
            c.children.push(Some(child));
        }
        c.wait_ready(Duration::from_secs(30)).await;
        c
    }

    fn spawn(&self, i: usize) -> Child {
        let n = &self.file.nodes[i];
        let node_dir = self.dir.path().join(&n.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("coffer.log"))
            .unwrap();
        Command::new(BIN)
            .arg("server")
            .arg("--config")
            .arg(node_dir.join("coffer.toml"))
            .env("RUST_LOG", "info,openraft=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn coffer server")
    }

    pub fn token(&self) -> &str {
        &self.file.root_token
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.file.nodes[i].name)
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("data")
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("coffer.log")).unwrap_or_default()
    }

    pub async fn client(&self, i: usize) -> Client {
        self.client_with(i, Some(self.token())).await
    }

    pub async fn client_with(&self, i: usize, token: Option<&str>) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Client::connect(&self.file.nodes[i].api, token).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to node {i}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Cluster status as seen by node `i`, if it answers.
    pub async fn status(&self, i: usize) -> Option<pb::ClusterStatusResponse> {
        let c = Client::connect(&self.file.nodes[i].api, Some(self.token()))
            .await
            .ok()?;
        c.cluster
            .clone()
            .status(pb::ClusterStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits until every running node agrees on a leader and the cluster is bootstrapped.
    /// Returns the leader's index.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for i in 0..self.file.nodes.len() {
                if self.children[i].is_none() {
                    continue;
                }
                match self.status(i).await {
                    Some(s) if s.leader_id != 0 && !s.cluster_id.is_empty() => leaders.push(s.leader_id),
                    _ => leaders.push(0),
                }
            }
            if let Some(&l) = leaders.first() {
                let alive = |id: u64| self.children[(id - 1) as usize].is_some();
                if l != 0 && leaders.iter().all(|x| *x == l) && alive(l) {
                    return (l - 1) as usize;
                }
            }
            if Instant::now() > deadline {
                panic!("no agreed leader within {timeout:?}: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(&self, timeout: Duration) {
        self.wait_leader(timeout).await;
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait: a graceful stop that flushes storage.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("node {i} did not stop within 15s after SIGTERM");
        }
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.children.len() {
            self.stop(i);
        }
    }

    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is running");
        self.children[i] = Some(self.spawn(i));
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Retries `f` until it returns Some or the timeout passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn put(c: &Client, name: &str, value: &[u8]) -> Result<pb::WriteResponse, tonic::Status> {
    c.secrets
        .clone()
        .put_secret_value(pb::PutSecretValueRequest {
            name: name.into(),
            value: value.to_vec(),
            alias: String::new(),
            must_exist: false,
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn get(c: &Client, name: &str, version: Option<u64>) -> Result<pb::GetSecretValueResponse, tonic::Status> {
    c.secrets
        .clone()
        .get_secret_value(pb::GetSecretValueRequest {
            name: name.into(),
            selector: version.map(pb::get_secret_value_request::Selector::Version),
            consistency: None,
        })
        .await
        .map(|r| r.into_inner())
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
