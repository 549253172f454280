//! Test and benchmark kit: a real Coffer cluster of `coffer server` processes on loopback,
//! with a delaying, cuttable proxy on every peer link.
//!
//! Every node is a separate OS process with its own RocksDB, talking real gRPC over TCP. Node
//! i reaches node j through its own [`DelayProxy`] (configured with
//! `network.peer_addr_override`), so each direction of each link has its own latency and can
//! be cut. The kit picks free ports, writes configs and keyrings into a temporary folder, and
//! kills every node when dropped. Used by `tests/` and `benches/` (dev-dependency only): never
//! linked into the server.

pub mod moto;
pub mod proxy;

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

pub use proxy::DelayProxy;

use coffer::client::Client;
use coffer::dev::ClusterFile;
use coffer::dev::DevNode;
use coffer::pb;

/// Raft settings for tests: fast elections on loopback.
pub const FAST_RAFT: &str = "heartbeat_ms = 50\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 800\n";

/// What to start.
#[derive(Clone)]
pub struct ClusterSpec {
    /// One initial voter per entry (its region).
    pub regions: Vec<String>,
    /// Nodes that exist but are not members yet (added later as learners), by region.
    pub spare_regions: Vec<String>,
    /// Body of every node's `[raft]` section.
    pub raft: String,
    /// Round trip between two regions in ms; `None` = direct connections, no proxies.
    pub rtt_ms: Option<fn(&str, &str) -> u64>,
    /// Extra lines for every node's `[cluster]` section.
    pub cluster_extra: String,
    /// The KMS of every region.
    pub kms: coffer::dev::DevKmsConfig,
    /// Extra lines for every node's `[kms]` section, and for single nodes' (by index).
    pub kms_extra: String,
    pub node_kms_extra: BTreeMap<usize, String>,
    /// Give every node a Prometheus metrics listener ([`TestCluster::metrics`]).
    pub metrics: bool,
    /// Serve TLS (mutual TLS between nodes) with certificates from a throwaway CA made in
    /// `<dir>/tls` (see [`coffer::dev::ensure_dev_tls`]); the kit's clients then trust that CA.
    pub tls: bool,
    /// Extra config sections for single nodes (by index), appended to their config file,
    /// e.g. an `[audit]` section.
    pub node_extra: BTreeMap<usize, String>,
    /// `RUST_LOG` of the nodes (default: `COFFER_TEST_LOG` or `info,openraft=info`).
    pub log_filter: Option<String>,
}

impl ClusterSpec {
    pub fn new(regions: &[&str], raft: &str) -> Self {
        Self {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            spare_regions: vec![],
            raft: raft.to_string(),
            rtt_ms: None,
            cluster_extra: String::new(),
            kms: coffer::dev::DevKmsConfig::Local,
            kms_extra: String::new(),
            node_kms_extra: BTreeMap::new(),
            metrics: false,
            tls: false,
            node_extra: BTreeMap::new(),
            log_filter: None,
        }
    }
}

/// The inter-region round trips the WAN tests use: us-east <-> eu-west 70 ms, every other pair
/// of regions 200 ms, 0 inside a region.
pub fn wan_rtt(a: &str, b: &str) -> u64 {
    match (a, b) {
        _ if a == b => 0,
        ("us-east", "eu-west") | ("eu-west", "us-east") => 70,
        _ => 200,
    }
}

/// A temporary folder removed on drop (kept when `COFFER_KEEP_TEST_DIRS` is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> std::io::Result<Self> {
        let suffix =
            hex::encode(coffer::crypto::random_bytes::<6>().map_err(|e| std::io::Error::other(e.to_string()))?);
        let p = std::env::temp_dir().join(format!("coffer-test-{suffix}"));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("COFFER_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub struct TestCluster {
    pub dir: TempDir,
    pub file: ClusterFile,
    pub bin: PathBuf,
    /// Number of initial voters; nodes after them are spares.
    pub initial: usize,
    children: Vec<Option<Child>>,
    /// (from, to) -> proxy of that link direction.
    proxies: BTreeMap<(usize, usize), DelayProxy>,
    /// Node index -> metrics listen address.
    metrics: BTreeMap<usize, String>,
    log_filter: Option<String>,
}

/// `GET path` over plain HTTP/1.0; the body of a 200 answer.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(head.lines().next().unwrap_or("").to_string()));
    }
    Ok(body.to_string())
}

/// The value of one Prometheus sample: `name` with every label in `labels` (others ignored);
/// summed over the matching series; 0 when there is none.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            let ok = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A port for a test node to listen on, from below the kernel's ephemeral range.
///
/// Asking the kernel for port 0 and releasing it races: until the node binds it, any
/// outgoing connection (the delay proxies make many) may be given that same port, and the
/// node then fails to start. Ports below the ephemeral range are never handed out for
/// outgoing connections, so only another explicit listener could take one; a process-wide
/// counter (offset by the pid) keeps this process's picks apart, and each pick is checked
/// to be free right now.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    use std::sync::atomic::Ordering;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (ephemeral_low.saturating_sub(12_000).max(1024), ephemeral_low);
    if high <= low + 1000 {
        // An unusual ephemeral range: fall back to the kernel's pick.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
    }
    let span = high - low;
    let offset = (std::process::id() * 251) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (offset + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

impl TestCluster {
    /// Starts one voter per region (direct links) and waits for a bootstrapped leader.
    pub async fn start(bin: &str, regions: &[&str], raft: &str) -> Self {
        Self::launch(bin, ClusterSpec::new(regions, raft)).await
    }

    pub async fn launch(bin: &str, spec: ClusterSpec) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let all: Vec<String> = spec.regions.iter().chain(spec.spare_regions.iter()).cloned().collect();
        let mut per_region: BTreeMap<String, usize> = BTreeMap::new();
        let nodes: Vec<DevNode> = all
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let k = per_region.entry(r.clone()).or_default();
                *k += 1;
                DevNode {
                    id: i as u64 + 1,
                    name: format!("{r}-{k}"),
                    region: r.clone(),
                    api: format!("127.0.0.1:{}", free_port()),
                    raft: format!("127.0.0.1:{}", free_port()),
                    pid: 0,
                }
            })
            .collect();
        let mut members = ClusterFile {
            cluster_id: "test-cluster".into(),
            root_token: coffer::authz::new_token().unwrap(),
            nodes: nodes[..spec.regions.len()].to_vec(),
            ca_cert: None,
        };
        if spec.tls {
            // Certificates for spares too, so they can join.
            let all = ClusterFile {
                nodes: nodes.clone(),
                ..members.clone()
            };
            let ca = coffer::dev::ensure_dev_tls(dir.path(), &all).expect("test certificates");
            members.ca_cert = Some(ca.display().to_string());
        }
        let mut proxies = BTreeMap::new();
        if let Some(rtt) = spec.rtt_ms {
            for (i, a) in nodes.iter().enumerate() {
                for (j, b) in nodes.iter().enumerate() {
                    if i != j {
                        let one_way = Duration::from_millis(rtt(&a.region, &b.region) / 2);
                        let p = DelayProxy::start(b.raft.parse().unwrap(), one_way)
                            .await
                            .expect("proxy");
                        proxies.insert((i, j), p);
                    }
                }
            }
        }
        let mut metrics = BTreeMap::new();
        let mut regions_seen = std::collections::BTreeSet::new();
        for n in &nodes {
            if regions_seen.insert(n.region.clone()) {
                coffer::crypto::kms::local::create_keyring(&dir.path().join("keyring"), &n.region).unwrap();
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            let node_dir = dir.path().join(&n.name);
            std::fs::create_dir_all(&node_dir).unwrap();
            let mut cfg = coffer::dev::node_config(&members, n, dir.path(), &spec.raft, &spec.kms);
            let kms_extra = format!(
                "{}\n{}\n",
                spec.kms_extra,
                spec.node_kms_extra.get(&i).map(String::as_str).unwrap_or("")
            );
            cfg = cfg.replacen("[kms]\n", &format!("[kms]\n{kms_extra}"), 1);
            if spec.metrics {
                let addr = format!("127.0.0.1:{}", free_port());
                cfg = cfg.replacen("[node]\n", &format!("[node]\nmetrics_addr = \"{addr}\"\n"), 1);
                metrics.insert(i, addr);
            }
            // Spares never bootstrap; every node knows every region's KMS key.
            if i >= spec.regions.len() {
                cfg = cfg.replace("bootstrap = true", "bootstrap = false");
            }
            let known: Vec<&str> = members.nodes.iter().map(|m| m.region.as_str()).collect();
            for r in regions_seen.iter().filter(|r| !known.contains(&r.as_str())) {
                cfg = cfg.replacen(
                    "[kms]",
                    &format!("{}[kms]", coffer::dev::region_section(r, &spec.kms)),
                    1,
                );
            }
            if !spec.cluster_extra.is_empty() {
                cfg = cfg.replace("[cluster]\n", &format!("[cluster]\n{}\n", spec.cluster_extra));
            }
            let overrides: Vec<String> = proxies
                .iter()
                .filter(|((from, _), _)| *from == i)
                .map(|((_, to), p)| format!("\"{}\" = \"{}\"", to + 1, p.addr()))
                .collect();
            if !overrides.is_empty() {
                cfg.push_str(&format!("\n[network.peer_addr_override]\n{}\n", overrides.join("\n")));
            }
            if let Some(extra) = spec.node_extra.get(&i) {
                cfg.push_str(&format!("\n{extra}\n"));
            }
            std::fs::write(node_dir.join("coffer.toml"), cfg).unwrap();
        }
        let file = ClusterFile { nodes, ..members };
        let mut c = TestCluster {
            dir,
            file,
            bin: PathBuf::from(bin),
            initial: spec.regions.len(),
            children: vec![],
            proxies,
            metrics,
            log_filter: spec.log_filter.clone(),
        };
        for i in 0..c.file.nodes.len() {
            let child = if i < c.initial { Some(c.spawn(i)) } else { None };
            c.children.push(child);
        }
        c.wait_leader(Duration::from_secs(30)).await;
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
        Command::new(&self.bin)
            .arg("server")
            .arg("--config")
            .arg(node_dir.join("coffer.toml"))
            .env(
                "RUST_LOG",
                self.log_filter
                    .clone()
                    .or_else(|| std::env::var("COFFER_TEST_LOG").ok())
                    .unwrap_or_else(|| "info,openraft=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn coffer server")
    }

    /// Node `i`'s Prometheus metrics text (the spec must ask for metrics).
    pub async fn metrics(&self, i: usize) -> String {
        let addr = self.metrics.get(&i).expect("ClusterSpec.metrics is off");
        http_get(addr.parse().expect("addr"), "/metrics")
            .await
            .unwrap_or_else(|e| panic!("metrics of node {i}: {e}"))
    }

    /// Runs the `coffer` CLI against node `via`; returns (exit code, stdout, stderr).
    pub fn cli(&self, via: usize, args: &[&str]) -> (i32, String, String) {
        self.cli_env(via, args, &[])
    }

    /// Like [`TestCluster::cli`], with environment changes applied last (`None` removes the
    /// variable). With TLS on, `COFFER_CACERT` is the cluster's CA unless changed here.
    pub fn cli_env(&self, via: usize, args: &[&str], env: &[(&str, Option<&str>)]) -> (i32, String, String) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("COFFER_ADDR", &self.file.nodes[via].api)
            .env("COFFER_TOKEN", self.token())
            .env_remove("COFFER_CACERT")
            .env_remove("COFFER_CLIENT_CERT")
            .env_remove("COFFER_CLIENT_KEY")
            .stdin(Stdio::null());
        if let Some(ca) = &self.file.ca_cert {
            cmd.env("COFFER_CACERT", ca);
        }
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.output().expect("run coffer");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `coffer ARGS --output json` against node `via`, which must succeed.
    pub fn cli_json(&self, via: usize, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let (code, out, err) = self.cli(via, &all);
        assert_eq!(code, 0, "coffer {all:?} failed: {err}{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("coffer {all:?} printed no JSON ({e}): {out}"))
    }

    pub fn token(&self) -> &str {
        &self.file.root_token
    }

    /// The folder of a TLS cluster's certificates (see [`coffer::dev::tls_dir`]).
    pub fn tls_dir(&self) -> PathBuf {
        coffer::dev::tls_dir(self.dir.path())
    }

    /// What the kit's clients use with TLS on: trust the cluster CA (no client certificate).
    pub fn client_tls(&self) -> Option<coffer::client::ClientTls> {
        let ca = self.file.ca_cert.as_ref()?;
        Some(coffer::client::ClientTls::new(
            std::fs::read(ca).expect("read the test CA"),
        ))
    }

    pub fn node(&self, i: usize) -> &DevNode {
        &self.file.nodes[i]
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
            match Client::connect_with(&self.file.nodes[i].api, token, self.client_tls().as_ref()).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to node {i}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Node `i`'s health report (no token needed), if it answers.
    pub async fn health(&self, i: usize) -> Option<pb::HealthResponse> {
        let c = Client::connect_with(&self.file.nodes[i].api, None, self.client_tls().as_ref())
            .await
            .ok()?;
        c.cluster
            .clone()
            .health(pb::HealthRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Cluster status as seen by node `i`, if it answers.
    pub async fn status(&self, i: usize) -> Option<pb::ClusterStatusResponse> {
        let c = Client::connect_with(&self.file.nodes[i].api, Some(self.token()), self.client_tls().as_ref())
            .await
            .ok()?;
        c.cluster
            .clone()
            .status(pb::ClusterStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits until every running member agrees on a live leader and the cluster is
    /// bootstrapped. Returns the leader's index.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for i in 0..self.file.nodes.len() {
                if self.children[i].is_none() {
                    continue;
                }
                match self.status(i).await {
                    Some(s) if !s.cluster_id.is_empty() => leaders.push(s.leader_id),
                    // A spare that has not joined has no cluster to report.
                    Some(_) if i >= self.initial => {}
                    _ => leaders.push(0),
                }
            }
            if let Some(&l) = leaders.first() {
                let alive = |id: u64| self.children.get((id - 1) as usize).is_some_and(|c| c.is_some());
                if l != 0 && leaders.iter().all(|x| *x == l) && alive(l) {
                    return (l - 1) as usize;
                }
            }
            if Instant::now() > deadline {
                let tails: String = (0..self.file.nodes.len())
                    .filter(|i| self.children[*i].is_some())
                    .map(|i| {
                        let log = self.log(i);
                        let lines: Vec<&str> = log.lines().collect();
                        let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
                        format!("\n  node {} log tail:\n    {tail}", i + 1)
                    })
                    .collect();
                panic!("no agreed leader within {timeout:?}: {leaders:?}{tails}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
            // SAFETY: kill(2) on our own, unreaped child.
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

    /// Starts node `i` (again, or for the first time if it is a spare).
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is running");
        self.children[i] = Some(self.spawn(i));
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    fn proxy(&self, from: usize, to: usize) -> &DelayProxy {
        self.proxies
            .get(&(from, to))
            .expect("the cluster was started without proxies (set ClusterSpec::rtt_ms)")
    }

    /// Cuts the link `from` -> `to` (what `from` sends to `to`, and the replies).
    pub fn cut(&self, from: usize, to: usize) {
        self.proxy(from, to).cut();
    }

    pub fn heal(&self, from: usize, to: usize) {
        self.proxy(from, to).heal();
    }

    /// Cuts every link to and from node `i`.
    pub fn isolate(&self, i: usize) {
        for j in 0..self.file.nodes.len() {
            if i != j {
                self.cut(i, j);
                self.cut(j, i);
            }
        }
    }

    pub fn heal_all(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
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

/// Waits until the cluster's token key exists (writes then carry consistency tokens): it is
/// sealed for every region, so KMS tests that count wraps start after it.
pub async fn wait_token_key(c: &Client) {
    eventually(Duration::from_secs(15), "the cluster token key", || async {
        let w = put(c, "acme/warmup/token-key", b"fake-warmup").await.ok()?;
        (!w.token.is_empty()).then_some(())
    })
    .await;
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
    get_with(c, name, version, None).await
}

pub async fn get_with(
    c: &Client,
    name: &str,
    version: Option<u64>,
    consistency: Option<pb::read_consistency::Mode>,
) -> Result<pb::GetSecretValueResponse, tonic::Status> {
    c.secrets
        .clone()
        .get_secret_value(pb::GetSecretValueRequest {
            name: name.into(),
            selector: version.map(pb::get_secret_value_request::Selector::Version),
            consistency: consistency.map(|m| pb::ReadConsistency { mode: Some(m) }),
            break_glass: None,
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
