//! What a request is: the systems under load, the workloads, and one connection's call.
//!
//! Every workload has a counterpart on each system, so a run of one is comparable with the
//! other: Coffer's `local` read against etcd's serializable Range (both answered from the
//! receiving member's replica), Coffer's `linearizable` read against etcd's linearizable Range
//! (both confirm the leader's commit index with a quorum), Coffer's write against etcd's Put
//! (both a Raft entry fsynced on a majority). The echo service answers a read with a payload of
//! the same size and does nothing else: the limit a read path on this machine can approach.
//! `coffer_http` is Coffer's reads again through the HTTP/JSON API, beside gRPC.

use std::fmt;
use std::sync::Arc;

use coffer::pb;
use coffer::pb::read_consistency::Mode;
use serde::Serialize;

use crate::echo::pb as echo_pb;
use crate::http::HttpConn;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum System {
    Coffer,
    Etcd,
    Echo,
    /// Coffer's reads through its HTTP/JSON API (HTTP/1.1 keep-alive), on the same nodes.
    CofferHttp,
}

impl System {
    /// Whether the system runs `workload` (echo answers one read; HTTP is measured for reads).
    pub fn runs(self, workload: Workload) -> bool {
        match self {
            System::Coffer | System::Etcd => true,
            System::Echo => workload == Workload::LocalRead,
            System::CofferHttp => workload.is_read(),
        }
    }

    /// A store with its own write path and Raft log (not the echo, not a second encoding).
    pub fn is_store(self) -> bool {
        matches!(self, System::Coffer | System::Etcd)
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Coffer => "coffer",
            System::Etcd => "etcd",
            System::Echo => "echo",
            System::CofferHttp => "coffer_http",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    LocalRead,
    LinearizableRead,
    Write,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::LocalRead, Workload::LinearizableRead, Workload::Write];

    pub fn name(self) -> &'static str {
        match self {
            Workload::LocalRead => "local_read",
            Workload::LinearizableRead => "linearizable_read",
            Workload::Write => "write",
        }
    }

    /// What the workload is called on `system` (for tables).
    pub fn label(self, system: System) -> &'static str {
        match (system, self) {
            (System::Coffer, Workload::LocalRead) => "local read",
            (System::Coffer, Workload::LinearizableRead) => "linearizable read",
            (System::Coffer, Workload::Write) => "write (new version)",
            (System::Etcd, Workload::LocalRead) => "serializable Range",
            (System::Etcd, Workload::LinearizableRead) => "linearizable Range",
            (System::Etcd, Workload::Write) => "Put",
            (System::Echo, _) => "bare tonic echo",
            (System::CofferHttp, Workload::LocalRead) => "local read over HTTP",
            (System::CofferHttp, _) => "linearizable read over HTTP",
        }
    }

    pub fn is_read(self) -> bool {
        self != Workload::Write
    }
}

/// The preloaded keys of one value size and the value written to them.
#[derive(Clone)]
pub struct Keyspace {
    pub size: usize,
    pub names: Arc<Vec<String>>,
    /// An obviously fake payload of `size` bytes (never a real secret).
    pub value: Arc<Vec<u8>>,
}

impl Keyspace {
    pub fn new(size: usize, keys: usize) -> Self {
        Self {
            size,
            names: Arc::new((0..keys).map(|i| format!("bench/v{size}/k{i:05}")).collect()),
            value: Arc::new((0..size).map(|i| b"fake-bench-value-"[i % 17]).collect()),
        }
    }
}

/// One client connection (one HTTP/2 connection); clones share it.
#[derive(Clone)]
pub enum Conn {
    Coffer(coffer::client::SecretsClient),
    Etcd(etcd_client::KvClient),
    Echo(echo_pb::echo_client::EchoClient<tonic::transport::Channel>),
    Http(HttpConn),
}

impl Conn {
    pub async fn coffer(addr: &str, token: &str) -> anyhow::Result<Conn> {
        let c = coffer::client::Client::connect(addr, Some(token)).await?;
        Ok(Conn::Coffer(c.secrets))
    }

    pub fn http(addr: &str, token: &str) -> Conn {
        Conn::Http(HttpConn::new(addr, token))
    }

    pub async fn etcd(url: &str) -> anyhow::Result<Conn> {
        let c = etcd_client::Client::connect([url], None).await?;
        Ok(Conn::Etcd(c.kv_client()))
    }

    pub async fn echo(addr: &str) -> anyhow::Result<Conn> {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Conn::Echo(echo_pb::echo_client::EchoClient::new(ch)))
    }

    /// One request of `workload` on key `key` of `ks`. Reads check that the whole value came
    /// back, so an error path can never pass for a fast read.
    pub async fn call(&mut self, workload: Workload, ks: &Keyspace, key: usize) -> Result<(), String> {
        let name = &ks.names[key];
        let got = match (self, workload) {
            (Conn::Coffer(c), Workload::Write) => {
                c.put_secret_value(pb::PutSecretValueRequest {
                    name: name.clone(),
                    value: ks.value.to_vec(),
                    alias: String::new(),
                    must_exist: false,
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
                return Ok(());
            }
            (Conn::Coffer(c), read) => {
                let mode = match read {
                    Workload::LocalRead => Mode::Local(pb::LocalRead {}),
                    _ => Mode::Linearizable(pb::LinearizableRead {}),
                };
                c.get_secret_value(pb::GetSecretValueRequest {
                    name: name.clone(),
                    selector: None,
                    consistency: Some(pb::ReadConsistency { mode: Some(mode) }),
                    break_glass: None,
                })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner()
                .value
                .len()
            }
            (Conn::Etcd(c), Workload::Write) => {
                c.put(name.as_str(), ks.value.to_vec(), None)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            (Conn::Etcd(c), read) => {
                let opts = (read == Workload::LocalRead).then(|| etcd_client::GetOptions::new().with_serializable());
                let r = c.get(name.as_str(), opts).await.map_err(|e| e.to_string())?;
                r.kvs().first().map(|kv| kv.value().len()).unwrap_or(0)
            }
            (Conn::Http(_), Workload::Write) => return Err("writes are not measured over HTTP".into()),
            (Conn::Http(c), Workload::LocalRead) => c.read("local", name).await?,
            (Conn::Http(c), Workload::LinearizableRead) => c.read("linearizable", name).await?,
            (Conn::Echo(c), _) => c
                .get(echo_pb::EchoRequest {
                    name: name.clone(),
                    size: ks.size as u32,
                })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner()
                .value
                .len(),
        };
        if got != ks.size {
            return Err(format!("{name}: got {got} bytes, expected {}", ks.size));
        }
        Ok(())
    }
}
