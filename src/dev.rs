//! `coffer dev`: a local cluster with one node per region, each a separate OS process on
//! loopback, using the local KMS and plaintext transport, or TLS with `--tls`.
//!
//! DIR holds everything: `cluster.json` (cluster id, root token, nodes, CA path with TLS; mode
//! 0600), `env` (shell exports), `keyring/` (one local KMS keyring per region), `tls/` (with
//! `--tls`: a throwaway CA, one certificate per node, one client certificate; keys 0600) and
//! one folder per node with its config, data and log. Running again with the same DIR reuses
//! it: same cluster, token, data and certificates. Ctrl-C stops every node.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use serde::Deserialize;
use serde::Serialize;

use crate::authz;
use crate::cli::CliError;
use crate::cli::DevArgs;
use crate::client::Client;
use crate::crypto::kms::local;
use crate::pb;
use crate::tls::issue::DevCa;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub cluster_id: String,
    pub root_token: String,
    pub nodes: Vec<DevNode>,
    /// The CA certificate of a TLS cluster (its nodes' configs then use the certificates in
    /// [`tls_dir`]); absent for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevNode {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub api: String,
    pub raft: String,
    pub pid: u32,
}

fn err(msg: impl Into<String>) -> CliError {
    CliError::new(msg)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(format!("cannot write {}: {e}", tmp.display())))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Loads DIR/cluster.json or makes a new cluster description.
pub fn plan(args: &DevArgs, dir: &Path) -> Result<ClusterFile, CliError> {
    if args.regions.is_empty() {
        return Err(err("--regions needs at least one region"));
    }
    for r in &args.regions {
        if !coffer_model::names::is_valid_segment(r) {
            return Err(err(format!("region {r:?} must match [a-z0-9][a-z0-9._-]{{0,62}}")));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = args.regions.iter().find(|r| !seen.insert(*r)) {
        return Err(err(format!("region {dup} is listed twice")));
    }
    if args.base_port as usize + 100 + args.regions.len() > u16::MAX as usize {
        return Err(err("--base-port is too high"));
    }
    let path = dir.join("cluster.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        let file: ClusterFile = serde_json::from_str(&text).map_err(|e| {
            err(format!(
                "{} is not a coffer dev cluster file ({e}); use another --data-dir",
                path.display()
            ))
        })?;
        let regions: Vec<&str> = file.nodes.iter().map(|n| n.region.as_str()).collect();
        let wanted: Vec<&str> = args.regions.iter().map(String::as_str).collect();
        if regions != wanted {
            return Err(err(format!(
                "{} holds a cluster in regions {} but --regions asks for {}; use another --data-dir or delete it",
                dir.display(),
                regions.join(","),
                wanted.join(",")
            )));
        }
        // The membership records each node's address, so a reused cluster keeps its ports.
        let recorded = file.nodes.first().map(|n| n.api.clone()).unwrap_or_default();
        if recorded != format!("127.0.0.1:{}", args.base_port) {
            return Err(err(format!(
                "{} holds a cluster whose first node listens on {recorded}; pass the --base-port it \
                 was made with, or use another --data-dir",
                dir.display()
            )));
        }
        return Ok(file);
    }
    let token = authz::new_token().map_err(|e| err(e.to_string()))?;
    let id = crate::crypto::random_bytes::<4>().map_err(|e| err(e.to_string()))?;
    Ok(ClusterFile {
        cluster_id: format!("dev-{}", hex::encode(id)),
        ca_cert: None,
        root_token: token,
        nodes: args
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| DevNode {
                id: i as u64 + 1,
                name: format!("{r}-1"),
                region: r.clone(),
                api: format!("127.0.0.1:{}", args.base_port as usize + i),
                raft: format!("127.0.0.1:{}", args.base_port as usize + 100 + i),
                pid: 0,
            })
            .collect(),
    })
}

/// Raft timing for loopback clusters.
pub const LOOPBACK_RAFT: &str = "heartbeat_ms = 100\nelection_timeout_min_ms = 800\nelection_timeout_max_ms = 1600\n";

/// The KMS every region of a dev or test cluster uses.
#[derive(Debug, Clone, Default)]
pub enum DevKmsConfig {
    /// File keyrings in DIR/keyring.
    #[default]
    Local,
    /// An AWS KMS API (moto in tests): alias `alias/coffer-dev-<region>` in each region.
    Aws(AwsDev),
}

#[derive(Clone)]
pub struct AwsDev {
    /// Endpoint per Coffer region (tests put a proxy in front of one to cut it).
    pub endpoints: std::collections::BTreeMap<String, String>,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AwsDev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsDev")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// The alias of a dev cluster's key for `region`.
pub fn dev_alias(region: &str) -> String {
    format!("alias/coffer-dev-{region}")
}

/// The AWS region a dev cluster uses for Coffer region `region`: `us-east` -> `us-east-1`;
/// a name that already ends in a digit is used as is; anything else -> `us-east-1`.
pub fn dev_aws_region(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    let alpha = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    if region.ends_with(|c: char| c.is_ascii_digit()) && parts.len() == 3 {
        region.to_string()
    } else if parts.len() == 2 && parts.iter().all(|p| alpha(p)) {
        format!("{region}-1")
    } else {
        "us-east-1".into()
    }
}

impl AwsDev {
    pub fn settings(&self, region: &str) -> crate::crypto::kms::aws::AwsSettings {
        crate::crypto::kms::aws::AwsSettings {
            aws_region: dev_aws_region(region),
            endpoint: self.endpoints.get(region).cloned(),
            static_credentials: Some((self.access_key_id.clone(), self.secret_access_key.clone())),
            call_timeout: Duration::from_secs(3),
        }
    }

    /// Creates each region's key and alias where missing.
    pub async fn ensure_keys(&self, regions: &[String]) -> Result<(), String> {
        for r in regions {
            crate::crypto::kms::aws::ensure_alias(&self.settings(r), &dev_alias(r))
                .await
                .map_err(|e| format!("KMS for region {r}: {e}"))?;
        }
        Ok(())
    }
}

/// Renders one node's config; `raft` is the body of its `[raft]` section.
pub fn node_config(file: &ClusterFile, node: &DevNode, dir: &Path, raft: &str, kms: &DevKmsConfig) -> String {
    let members: String = file
        .nodes
        .iter()
        .map(|m| {
            format!(
                "[[cluster.members]]\nid = {}\nname = \"{}\"\nregion = \"{}\"\nzone = \"{}-a\"\nraft_addr = \"{}\"\napi_addr = \"{}\"\n\n",
                m.id, m.name, m.region, m.region, m.raft, m.api
            )
        })
        .collect();
    let regions: String = file.nodes.iter().map(|m| region_section(&m.region, kms)).collect();
    let (comment, transport) = match file.ca_cert {
        Some(_) => {
            let tls = tls_dir(dir);
            (
                "TLS with a throwaway CA: for local use only.",
                format!(
                    "[tls]\nca_cert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                    tls.join("ca.pem").display(),
                    tls.join(format!("{}.pem", node.name)).display(),
                    tls.join(format!("{}-key.pem", node.name)).display()
                ),
            )
        }
        None => (
            "Plaintext transport on loopback: for local use only.",
            "[network]\nplaintext = true\n".to_string(),
        ),
    };
    format!(
        r#"# Generated by `coffer dev`. {comment}
[node]
id = {id}
name = "{name}"
region = "{region}"
zone = "{region}-a"
data_dir = "{data}"
api_addr = "{api}"
raft_addr = "{raft}"

[cluster]
id = "{cluster}"
bootstrap = {bootstrap}
root_token_sha256 = "{hash}"

{members}{regions}[kms]
local_keyring_dir = "{keyring}"

{transport}
[raft]
{raft_section}"#,
        id = node.id,
        name = node.name,
        region = node.region,
        data = dir.join(&node.name).join("data").display(),
        api = node.api,
        raft = node.raft,
        cluster = file.cluster_id,
        bootstrap = node.id == 1,
        hash = hex::encode(authz::token_hash(&file.root_token)),
        keyring = dir.join("keyring").display(),
        raft_section = raft,
    )
}

/// One `[[regions]]` entry.
pub fn region_section(region: &str, kms: &DevKmsConfig) -> String {
    match kms {
        DevKmsConfig::Local => format!("[[regions]]\nname = \"{region}\"\nkms_provider = \"local\"\n\n"),
        DevKmsConfig::Aws(a) => {
            let s = a.settings(region);
            let endpoint = s.endpoint.map(|e| format!("endpoint = \"{e}\"\n")).unwrap_or_default();
            format!(
                "[[regions]]\nname = \"{region}\"\nkms_provider = \"aws\"\nkey_id = \"{}\"\naws_region = \"{}\"\n{endpoint}\
                 access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\n",
                dev_alias(region),
                s.aws_region,
                a.access_key_id,
                a.secret_access_key
            )
        }
    }
}

/// Where a dev or test cluster keeps its TLS files: `ca.pem`, `ca-key.pem`, `<node>.pem`,
/// `<node>-key.pem`, `client.pem`, `client-key.pem`.
pub fn tls_dir(dir: &Path) -> PathBuf {
    dir.join("tls")
}

/// The principal of the client certificate `coffer dev --tls` makes.
pub const DEV_CLIENT_PRINCIPAL: &str = "user:dev-admin";

/// Makes what is missing in [`tls_dir`]: a CA, a certificate per node (for 127.0.0.1 and
/// localhost) and a client certificate for [`DEV_CLIENT_PRINCIPAL`]. Existing files are kept,
/// so a rerun reuses them. Returns the CA certificate's path.
pub fn ensure_dev_tls(dir: &Path, file: &ClusterFile) -> Result<PathBuf, String> {
    let tls = tls_dir(dir);
    std::fs::create_dir_all(&tls).map_err(|e| format!("cannot create {}: {e}", tls.display()))?;
    let _ = std::fs::set_permissions(&tls, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let (ca_path, ca_key_path) = (tls.join("ca.pem"), tls.join("ca-key.pem"));
    let write = |path: &Path, text: &str| write_private(path, text.as_bytes()).map_err(|e| e.message);
    // No CA yet: make one, and (below) every certificate anew, since old ones would not chain.
    let fresh = !ca_path.exists() && !ca_key_path.exists();
    let mut ca = None;
    if fresh {
        let made = DevCa::generate(&format!("Coffer dev CA {}", file.cluster_id)).map_err(|e| e.to_string())?;
        write(&ca_key_path, made.key_pem())?;
        write(&ca_path, made.cert_pem())?;
        ca = Some(made);
    }
    let mut wanted: Vec<(String, Option<&str>)> = file
        .nodes
        .iter()
        .map(|n| (n.name.clone(), Some(n.name.as_str())))
        .collect();
    wanted.push(("client".into(), None));
    for (stem, node) in wanted {
        let (cert, key) = (tls.join(format!("{stem}.pem")), tls.join(format!("{stem}-key.pem")));
        if !fresh && cert.exists() && key.exists() {
            continue;
        }
        if ca.is_none() {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|e| {
                    format!(
                        "cannot read {}: {e}; delete {} to make new certificates",
                        p.display(),
                        tls.display()
                    )
                })
            };
            let loaded = DevCa::from_pem(&read(&ca_path)?, &read(&ca_key_path)?).map_err(|e| {
                format!(
                    "{}: {e}; delete {} to make new certificates",
                    ca_path.display(),
                    tls.display()
                )
            })?;
            ca = Some(loaded);
        }
        let Some(ca) = ca.as_ref() else {
            return Err("no CA to issue certificates with".into());
        };
        let issued = match node {
            Some(name) => ca.issue_node(name, &["127.0.0.1", "localhost"]),
            None => ca.issue_client(DEV_CLIENT_PRINCIPAL),
        }
        .map_err(|e| e.to_string())?;
        write(&key, &issued.key_pem)?;
        write(&cert, &issued.cert_pem)?;
    }
    if !ca_path.exists() {
        return Err(format!(
            "{} is missing; delete {} to make new certificates",
            ca_path.display(),
            tls.display()
        ));
    }
    Ok(ca_path)
}

fn spawn(node: &DevNode, dir: &Path) -> Result<Child, CliError> {
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

fn log_tail(dir: &Path, node: &DevNode) -> String {
    let text = std::fs::read_to_string(dir.join(&node.name).join("coffer.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n    ")
}

fn stop_all(children: &mut [(DevNode, Child)]) {
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
async fn wait_ready(file: &ClusterFile, children: &mut [(DevNode, Child)], dir: &Path) -> Result<(), CliError> {
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
fn restart_dead(
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
const RESTART_DELAY: Duration = Duration::from_secs(3);

/// The KMS of a dev cluster. A DIR keeps the KMS it was made with: data wrapped by one
/// provider cannot be read through another.
async fn dev_kms(args: &DevArgs, dir: &Path) -> Result<DevKmsConfig, CliError> {
    let (mode, kms) = match (args.kms, &args.kms_endpoint) {
        (crate::cli::DevKms::Local, None) => ("local".to_string(), DevKmsConfig::Local),
        (crate::cli::DevKms::Local, Some(_)) => return Err(err("--kms-endpoint needs --kms aws")),
        (crate::cli::DevKms::Aws, None) => {
            return Err(err(
                "--kms aws needs --kms-endpoint URL (an AWS KMS endpoint or a KMS-compatible service such as moto)",
            ))
        }
        (crate::cli::DevKms::Aws, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(err(format!(
                    "--kms-endpoint {url:?} must start with http:// or https://"
                )));
            }
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let (id, secret) = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => (id, secret),
                _ => (
                    "coffer-dev-fake-access-key".to_string(),
                    "coffer-dev-fake-secret-key".to_string(),
                ),
            };
            let a = AwsDev {
                endpoints: args.regions.iter().map(|r| (r.clone(), url.clone())).collect(),
                access_key_id: id,
                secret_access_key: secret,
            };
            a.ensure_keys(&args.regions)
                .await
                .map_err(|e| err(format!("cannot prepare the dev keys at {url}: {e}")))?;
            (format!("aws {url}"), DevKmsConfig::Aws(a))
        }
    };
    let marker = dir.join("kms");
    match std::fs::read_to_string(&marker) {
        Ok(before) if before.trim() != mode => Err(err(format!(
            "{} was made with --kms {}; use another --data-dir for --kms {mode}",
            dir.display(),
            before.trim()
        ))),
        Ok(_) => Ok(kms),
        Err(_) => {
            write_private(&marker, mode.as_bytes())?;
            Ok(kms)
        }
    }
}

pub async fn run(args: DevArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| err(format!("cannot create {}: {e}", args.data_dir.display())))?;
    let dir: PathBuf = args.data_dir.canonicalize()?;
    let mut file = plan(&args, &dir)?;
    file.ca_cert = match args.tls {
        true => Some(ensure_dev_tls(&dir, &file).map_err(err)?.display().to_string()),
        false => None,
    };
    let kms = dev_kms(&args, &dir).await?;
    for n in &file.nodes {
        local::create_keyring(&dir.join("keyring"), &n.region).map_err(|e| err(e.to_string()))?;
    }
    for n in &file.nodes {
        let node_dir = dir.join(&n.name);
        std::fs::create_dir_all(&node_dir)?;
        write_private(
            &node_dir.join("coffer.toml"),
            node_config(&file, n, &dir, LOOPBACK_RAFT, &kms).as_bytes(),
        )?;
    }

    let mut children = Vec::new();
    for n in &file.nodes {
        match spawn(n, &dir) {
            Ok(c) => children.push((n.clone(), c)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    for (n, c) in &children {
        if let Some(f) = file.nodes.iter_mut().find(|x| x.id == n.id) {
            f.pid = c.id();
        }
    }
    write_private(
        &dir.join("cluster.json"),
        serde_json::to_string_pretty(&file).unwrap_or_default().as_bytes(),
    )?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let connection = match &file.ca_cert {
        Some(ca) => format!("export COFFER_ADDR=https://{} COFFER_CACERT={ca}", file.nodes[0].api),
        None => format!("export COFFER_ADDR=http://{}", file.nodes[0].api),
    };
    let env = format!(
        "{connection}\nexport COFFER_TOKEN={}\nexport PATH=\"{}:$PATH\"\n",
        file.root_token,
        exe_dir.display()
    );
    write_private(&dir.join("env"), env.as_bytes())?;

    if let Err(e) = wait_ready(&file, &mut children, &dir).await {
        stop_all(&mut children);
        return Err(e);
    }

    let shown = args.data_dir.display();
    println!(
        "Coffer dev cluster {} is up: {} nodes in {}.\n",
        file.cluster_id,
        file.nodes.len(),
        args.regions.join(", ")
    );
    for n in &file.nodes {
        println!(
            "  {:<14} region {:<10} api {:<16} log {shown}/{}/coffer.log",
            n.name, n.region, n.api, n.name
        );
    }
    if file.ca_cert.is_some() {
        let tls = tls_dir(&args.data_dir);
        println!(
            "\nTLS is on (mutual TLS between nodes). Clients need the CA:\n  {connection}\n\
             An mTLS identity for the principal {DEV_CLIENT_PRINCIPAL} (give it a policy before use):\n  \
             export COFFER_CLIENT_CERT={} COFFER_CLIENT_KEY={}",
            tls.join("client.pem").display(),
            tls.join("client-key.pem").display()
        );
    }
    println!(
        "\nIn another terminal:\n  source {shown}/env\n  coffer secret put acme/demo/db-password --generate 24\n  \
         coffer secret get acme/demo/db-password\n  coffer cluster status\n\n\
         The root token is in {shown}/cluster.json. A node that dies is restarted. Ctrl-C stops all nodes;\n\
         running this again reuses {shown}."
    );

    // A node that dies (say, `kill -9` in a failover drill) is restarted after a pause long
    // enough for the others to elect a new leader; it rejoins and catches up. One that keeps
    // dying right after start is given up on.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut started: Vec<Instant> = vec![Instant::now(); children.len()];
    let mut died: Vec<Option<Instant>> = vec![None; children.len()];
    let mut quick_deaths: Vec<u32> = vec![0; children.len()];
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                match restart_dead(&mut children, &mut file, &dir, &mut started, &mut died, &mut quick_deaths) {
                    Ok(()) => {}
                    Err(e) => break Err(e),
                }
            }
        }
    };
    println!("\nstopping {} nodes…", children.len());
    stop_all(&mut children);
    outcome
}
