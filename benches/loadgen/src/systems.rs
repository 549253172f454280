//! Starting what is measured, on loopback, each member in its own process: a 3-member etcd, a
//! 3-node Coffer (testkit: `coffer server` processes, RocksDB, audit log on) and the echo
//! service. Data lives on the real disk (never tmpfs) so both stores pay for their fsyncs.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use anyhow::bail;
use anyhow::Context;
use coffer::pb;
use coffer_testkit::free_port;
use coffer_testkit::ClusterSpec;
use coffer_testkit::TestCluster;

use crate::target::Conn;

/// Kills its processes when dropped.
pub(crate) struct Procs(pub(crate) Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A 3-member etcd cluster with default durability (every WAL write fsynced).
pub struct Etcd {
    pub client_urls: Vec<String>,
    pub version: String,
    _procs: Procs,
}

impl Etcd {
    pub async fn start(bin: &Path, dir: &Path) -> anyhow::Result<Etcd> {
        let version = etcd_version(bin)?;
        let members: Vec<(String, u16, u16)> = (1..=3)
            .map(|i| (format!("etcd-{i}"), free_port(), free_port()))
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|(n, _, peer)| format!("{n}=http://127.0.0.1:{peer}"))
            .collect();
        let mut procs = Procs(vec![]);
        for (name, client, peer) in &members {
            let data = dir.join(name);
            std::fs::create_dir_all(&data)?;
            let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let child = Command::new(bin)
                .args(["--name", name])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &initial.join(",")])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "coffer-bench",
                ])
                .args(["--logger", "zap", "--log-level", "warn"])
                // Debian's 3.4 build refuses to start on some architectures without this; it is
                // a no-op on amd64.
                .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            procs.0.push(child);
        }
        let client_urls: Vec<String> = members
            .iter()
            .map(|(_, c, _)| format!("http://127.0.0.1:{c}"))
            .collect();
        // Ready when every member answers a linearizable read (a leader exists and all joined).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for url in &client_urls {
            loop {
                let ok = async {
                    let mut c = etcd_client::Client::connect([url.as_str()], None).await.ok()?;
                    c.get("coffer-bench-ready", None).await.ok()
                }
                .await
                .is_some();
                if ok {
                    break;
                }
                for c in &mut procs.0 {
                    if let Some(status) = c.try_wait()? {
                        bail!("etcd exited with {status}; see the logs in {}", dir.display());
                    }
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("etcd at {url} not ready after 60 s; see the logs in {}", dir.display());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(Etcd {
            client_urls,
            version,
            _procs: procs,
        })
    }

    /// The member that leads, by client URL index.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        for (i, url) in self.client_urls.iter().enumerate() {
            let mut c = etcd_client::Client::connect([url.as_str()], None).await?;
            let s = c.status().await?;
            if s.leader() == s.header().map(|h| h.member_id()).unwrap_or(0) {
                return Ok(i);
            }
        }
        bail!("no etcd member says it leads")
    }

    /// (Raft entries committed, WAL fsyncs) from member `i`'s metrics.
    pub async fn log_counters(&self, i: usize) -> anyhow::Result<(f64, f64)> {
        let addr = self.client_urls[i].trim_start_matches("http://").parse()?;
        let text = coffer_testkit::http_get(addr, "/metrics").await?;
        Ok((
            coffer_testkit::metric(&text, "etcd_server_proposals_committed_total", &[]),
            coffer_testkit::metric(&text, "etcd_disk_wal_fsync_duration_seconds_count", &[]),
        ))
    }
}

fn etcd_version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} (make bench-compare installs etcd)", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .context("etcd --version printed no version")?
        .trim()
        .to_string();
    if !v.starts_with("3.4.") && !v.starts_with("3.5.") {
        bail!(
            "{} is etcd {v}; the comparison is set up for 3.4 (Debian's etcd-server)",
            bin.display()
        );
    }
    Ok(v)
}

/// A 3-node Coffer: one node per region, production Raft timings, authorization and the audit
/// log on (every request waits for its audit record's fsync, batched).
pub struct Coffer {
    pub cluster: TestCluster,
    /// API addresses, one per node.
    pub apis: Vec<String>,
    /// HTTP/JSON API addresses, one per node.
    pub https: Vec<String>,
    /// A non-root token allowed `secrets:read` and `secrets:write` on `bench/*`.
    pub token: String,
}

pub const BENCH_POLICY: &str = r#"{"name":"bench","description":"load generator","statements":[
  {"sid":"bench-rw","effect":"allow","principals":["service:bench:loadgen"],
   "actions":["secrets:read","secrets:write"],"resources":["bench/*"]}]}"#;

impl Coffer {
    pub async fn start(bin: &Path) -> anyhow::Result<Coffer> {
        let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], "");
        spec.metrics = true;
        spec.log_filter = Some("warn".into());
        let cluster = TestCluster::launch(bin.to_str().context("coffer path is not UTF-8")?, spec).await;
        let root = cluster.client(0).await;
        coffer_testkit::wait_token_key(&root).await;
        let mut access = root.access.clone();
        access
            .put_policy(pb::PutPolicyRequest {
                document: BENCH_POLICY.into(),
            })
            .await
            .context("installing the bench policy")?;
        let token = access
            .create_token(pb::CreateTokenRequest {
                principal: "service:bench:loadgen".into(),
                tenant: "bench".into(),
                groups: vec![],
                policies: vec!["bench".into()],
                ttl_ms: 24 * 3600 * 1000,
            })
            .await
            .context("creating the bench token")?
            .into_inner()
            .token;
        let apis = cluster.file.nodes.iter().map(|n| n.api.clone()).collect();
        let https = cluster.file.nodes.iter().map(|n| n.http.clone()).collect();
        Ok(Coffer {
            cluster,
            apis,
            https,
            token,
        })
    }

    /// (Raft entries appended, WAL fsyncs) from node `i`'s metrics.
    pub async fn log_counters(&self, i: usize) -> (f64, f64) {
        let text = self.cluster.metrics(i).await;
        (
            coffer_testkit::metric(&text, "coffer_raft_log_entries_appended_total", &[]),
            coffer_testkit::metric(&text, "coffer_raft_wal_fsyncs_total", &[]),
        )
    }

    pub fn data_dir(&self) -> PathBuf {
        self.cluster.dir.path().to_path_buf()
    }
}

/// The echo service in a child process of this binary.
pub struct EchoServer {
    pub addr: String,
    _procs: Procs,
}

impl EchoServer {
    pub async fn start() -> anyhow::Result<EchoServer> {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(std::env::current_exe()?)
            .args(["echo-server", "--listen", &addr])
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the echo server")?;
        let procs = Procs(vec![child]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Conn::echo(&addr).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!("the echo server at {addr} did not come up");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(EchoServer { addr, _procs: procs })
    }
}

/// Connections to a system, `n` of them spread round-robin over its members.
pub async fn connect(n: usize, make: impl AsyncFn(usize) -> anyhow::Result<Conn>) -> anyhow::Result<Vec<Conn>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(make(i).await?);
    }
    Ok(v)
}
