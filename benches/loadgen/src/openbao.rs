//! A 3-node OpenBao (the open-source Vault fork: the system a secrets-store user would put beside
//! Coffer) on loopback, each node its own `bao server` process: integrated Raft storage, a file
//! audit device declared in each node's config (OpenBao 2.x refuses to enable one through the
//! API), KV v2 at `secret/`, and a non-root token whose policy allows reading and writing
//! `secret/data/bench/*`, like Coffer's bench token. Initialized with one unseal key share; the
//! key and the root token stay in this process's memory.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use anyhow::bail;
use anyhow::Context;
use coffer_testkit::free_port;
use hyper::body::Bytes;
use hyper::Method;
use hyper::StatusCode;
use serde_json::json;
use serde_json::Value;

use crate::http::HttpConn;
use crate::systems::Procs;

const NODES: usize = 3;
/// Startup, unseal, join and autopilot's promotion of the standbys to voters.
const READY_WITHIN: Duration = Duration::from_secs(120);

pub const BENCH_POLICY: &str = r#"path "secret/data/bench/*" { capabilities = ["create", "read", "update"] }"#;

pub struct OpenBao {
    /// API addresses (`host:port`), one per node.
    pub apis: Vec<String>,
    /// The node that is active (the Raft leader), by index into `apis`.
    pub active: usize,
    /// A non-root token with [`BENCH_POLICY`].
    pub token: String,
    pub version: String,
    pub dir: PathBuf,
    _procs: Procs,
}

impl OpenBao {
    pub async fn start(bin: &Path, dir: &Path) -> anyhow::Result<OpenBao> {
        let version = bao_version(bin)?;
        let ports: Vec<(u16, u16)> = (0..NODES).map(|_| (free_port(), free_port())).collect();
        let mut procs = Procs(vec![]);
        for (i, (api, cluster)) in ports.iter().enumerate() {
            let config = dir.join(format!("openbao-n{i}.hcl"));
            std::fs::create_dir_all(dir.join(format!("openbao-n{i}")))?;
            std::fs::write(&config, node_config(dir, i, *api, *cluster, &ports))?;
            let log = std::fs::File::create(dir.join(format!("openbao-n{i}.log")))?;
            let child = Command::new(bin)
                .arg("server")
                .arg(format!("-config={}", config.display()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            procs.0.push(child);
        }
        let apis: Vec<String> = ports.iter().map(|(a, _)| format!("127.0.0.1:{a}")).collect();
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        let anon: Vec<HttpConn> = apis.iter().map(|a| HttpConn::openbao(a, "")).collect();
        let wait = async |what: &str, procs: &mut Procs| -> anyhow::Result<()> {
            for c in &mut procs.0 {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "an OpenBao node exited with {status}; see the logs in {}",
                        dir.display()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "OpenBao: {what} not within {READY_WITHIN:?}; see the logs in {}",
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        };

        // Every node listens (sys/health answers 501 while uninitialized).
        for c in &anon {
            while c.request(Method::GET, "/v1/sys/health", None).await.is_err() {
                wait("every node listening", &mut procs).await?;
            }
        }
        let init = call(
            &anon[0],
            Method::PUT,
            "/v1/sys/init",
            json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await
        .context("initializing OpenBao")?;
        let key = init["keys_base64"][0]
            .as_str()
            .context("init returned no key")?
            .to_string();
        let root = init["root_token"]
            .as_str()
            .context("init returned no root token")?
            .to_string();

        // Node 0 unsealed becomes active; the others join it (retry_join) and are unsealed
        // with the same key (sent again until they have joined).
        let unseal = json!({ "key": key });
        call(&anon[0], Method::PUT, "/v1/sys/unseal", unseal.clone()).await?;
        while health(&anon[0]).await != Some(StatusCode::OK) {
            wait("node 0 active", &mut procs).await?;
        }
        for c in &anon[1..] {
            loop {
                match health(c).await {
                    Some(StatusCode::TOO_MANY_REQUESTS) => break,
                    Some(StatusCode::SERVICE_UNAVAILABLE) => {
                        let _ = call(c, Method::PUT, "/v1/sys/unseal", unseal.clone()).await;
                    }
                    _ => {}
                }
                wait("the standbys unsealed", &mut procs).await?;
            }
        }
        let active = 0;
        let admin = HttpConn::openbao(&apis[active], &root);
        call(
            &admin,
            Method::POST,
            "/v1/sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await
        .context("mounting KV v2")?;
        call(
            &admin,
            Method::PUT,
            "/v1/sys/policies/acl/bench",
            json!({ "policy": BENCH_POLICY }),
        )
        .await
        .context("writing the bench policy")?;
        let created = call(
            &admin,
            Method::POST,
            "/v1/auth/token/create",
            json!({"policies": ["bench"], "ttl": "24h", "display_name": "bench-loadgen"}),
        )
        .await
        .context("creating the bench token")?;
        let token = created["auth"]["client_token"]
            .as_str()
            .context("no client token")?
            .to_string();
        // A standby joins as a non-voter; autopilot promotes it once it is stable.
        loop {
            let conf = call(&admin, Method::GET, "/v1/sys/storage/raft/configuration", Value::Null).await?;
            let servers = conf["data"]["config"]["servers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if servers.len() == NODES && servers.iter().all(|s| s["voter"] == json!(true)) {
                break;
            }
            wait("three Raft voters", &mut procs).await?;
        }
        Ok(OpenBao {
            apis,
            active,
            token,
            version,
            dir: dir.to_path_buf(),
            _procs: procs,
        })
    }

    /// The standbys' API addresses.
    pub fn standbys(&self) -> Vec<String> {
        (0..self.apis.len())
            .filter(|&i| i != self.active)
            .map(|i| self.apis[i].clone())
            .collect()
    }
}

/// One node's server config (HCL).
fn node_config(dir: &Path, i: usize, api: u16, cluster: u16, all: &[(u16, u16)]) -> String {
    let joins: String = all
        .iter()
        .map(|(a, _)| format!("  retry_join {{ leader_api_addr = \"http://127.0.0.1:{a}\" }}\n"))
        .collect();
    format!(
        r#"# A benchmark node on loopback: no TLS, throwaway data.
storage "raft" {{
  path = "{data}"
  node_id = "n{i}"
{joins}}}
listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api}"
cluster_addr = "http://127.0.0.1:{cluster}"
disable_mlock = true
log_level = "warn"
audit "file" "file" {{
  options {{
    file_path = "{audit}"
  }}
}}
"#,
        data = dir.join(format!("openbao-n{i}")).display(),
        audit = dir.join(format!("openbao-n{i}-audit.log")).display(),
    )
}

/// `sys/health`'s status: 200 active, 429 standby, 503 sealed, 501 not initialized.
async fn health(c: &HttpConn) -> Option<StatusCode> {
    c.request(Method::GET, "/v1/sys/health", None)
        .await
        .ok()
        .map(|(s, _)| s)
}

/// One API call with a JSON body (none for `Value::Null`); a non-2xx answer is an error.
async fn call(c: &HttpConn, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
    let body = (!body.is_null()).then(|| Bytes::from(body.to_string()));
    let (status, answer) = c.request(method, path, body).await.map_err(anyhow::Error::msg)?;
    if !status.is_success() {
        bail!("OpenBao {path}: HTTP {status}: {}", String::from_utf8_lossy(&answer));
    }
    if answer.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&answer)?)
}

fn bao_version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("version")
        .output()
        .with_context(|| format!("cannot run {} (make bench-compare installs OpenBao)", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.strip_prefix('v'))
        .with_context(|| format!("{} version printed {text:?}", bin.display()))?
        .to_string();
    if !v.starts_with("2.") {
        bail!("{} is OpenBao {v}; the comparison is set up for 2.x", bin.display());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_declares_its_audit_file_and_joins_every_node() {
        let ports = [(1, 2), (3, 4), (5, 6)];
        let c = node_config(Path::new("/w"), 1, 3, 4, &ports);
        assert!(c.contains("file_path = \"/w/openbao-n1-audit.log\""), "{c}");
        assert!(
            c.contains("path = \"/w/openbao-n1\"") && c.contains("node_id = \"n1\""),
            "{c}"
        );
        for a in [1, 3, 5] {
            assert!(
                c.contains(&format!("leader_api_addr = \"http://127.0.0.1:{a}\"")),
                "{c}"
            );
        }
        assert!(c.contains("address = \"127.0.0.1:3\"") && c.contains("cluster_address = \"127.0.0.1:4\""));
    }
}
