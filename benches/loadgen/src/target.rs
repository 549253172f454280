//! What a request is: the systems under load, the workloads, and one connection's call.
//!
//! Every workload has a counterpart on each system, so a run of one is comparable with the
//! other: Coffer's `local` read against etcd's serializable Range (both answered from the
//! receiving member's replica), Coffer's `linearizable` read against etcd's linearizable Range
//! (both confirm the leader's commit index with a quorum), Coffer's write against etcd's Put
//! (both a Raft entry fsynced on a majority). The echo service answers a read with a payload of
//! the same size and does nothing else: the limit a read path on this machine can approach.
//! `coffer_http` is Coffer's reads again through the HTTP/JSON API, beside gRPC. Every gRPC call
//! of every system goes through the same cheap client ([`crate::wire`]), its reads encoded once.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use coffer::pb;
use coffer::pb::read_consistency::Mode;
use prost::Message;
use serde::Serialize;

use crate::echo::pb as echo_pb;
use crate::etcd_pb;
use crate::http::HttpConn;
use crate::wire::frame;
use crate::wire::H2Conn;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum System {
    Coffer,
    Etcd,
    Echo,
    /// Coffer's reads through its HTTP/JSON API (HTTP/1.1 keep-alive), on the same nodes.
    CofferHttp,
    /// OpenBao's KV v2 through its active node (HTTP/1.1 keep-alive, JSON).
    #[serde(rename = "openbao")]
    #[value(name = "openbao")]
    OpenBao,
    /// OpenBao's KV v2 reads through its standby nodes (which forward them to the active one).
    #[serde(rename = "openbao_standby")]
    #[value(name = "openbao-standby")]
    OpenBaoStandby,
}

impl System {
    /// Whether the system runs `workload` (echo answers one read; HTTP is measured for reads;
    /// OpenBao has no read that confirms its leadership with a quorum, and its standbys are
    /// measured for reads).
    pub fn runs(self, workload: Workload) -> bool {
        match self {
            System::Coffer | System::Etcd => true,
            System::Echo | System::OpenBaoStandby => workload == Workload::LocalRead,
            System::CofferHttp => workload.is_read(),
            System::OpenBao => workload != Workload::LinearizableRead,
        }
    }

    /// The stores whose Raft log the open-loop and group-commit runs read (Coffer and etcd).
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
            System::OpenBao => "openbao",
            System::OpenBaoStandby => "openbao_standby",
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
            (System::OpenBao, Workload::Write) => "KV v2 write",
            (System::OpenBao, _) => "KV v2 read (active node)",
            (System::OpenBaoStandby, _) => "KV v2 read (standby, forwarded)",
        }
    }

    pub fn is_read(self) -> bool {
        self != Workload::Write
    }
}

/// The preloaded keys of one value size, the value written to them, and every read request
/// already encoded (one gRPC frame per key and read kind).
#[derive(Clone)]
pub struct Keyspace {
    pub size: usize,
    pub names: Arc<Vec<String>>,
    /// An obviously fake payload of `size` bytes (never a real secret).
    pub value: Arc<Vec<u8>>,
    reads: Arc<ReadFrames>,
}

/// Read requests encoded once, so a read costs the client no encoding.
struct ReadFrames {
    coffer_local: Vec<Bytes>,
    coffer_linearizable: Vec<Bytes>,
    etcd_serializable: Vec<Bytes>,
    etcd_linearizable: Vec<Bytes>,
    echo: Vec<Bytes>,
}

impl ReadFrames {
    fn new(names: &[String], size: usize) -> Self {
        let coffer = |mode: Mode| -> Vec<Bytes> {
            names
                .iter()
                .map(|n| {
                    frame(&pb::GetSecretValueRequest {
                        name: n.clone(),
                        selector: None,
                        consistency: Some(pb::ReadConsistency {
                            mode: Some(mode.clone()),
                        }),
                        break_glass: None,
                    })
                })
                .collect()
        };
        let etcd = |serializable: bool| -> Vec<Bytes> {
            names
                .iter()
                .map(|n| {
                    frame(&etcd_pb::RangeRequest {
                        key: n.as_bytes().to_vec(),
                        serializable,
                    })
                })
                .collect()
        };
        Self {
            coffer_local: coffer(Mode::Local(pb::LocalRead {})),
            coffer_linearizable: coffer(Mode::Linearizable(pb::LinearizableRead {})),
            etcd_serializable: etcd(true),
            etcd_linearizable: etcd(false),
            echo: names
                .iter()
                .map(|n| {
                    frame(&echo_pb::EchoRequest {
                        name: n.clone(),
                        size: size as u32,
                    })
                })
                .collect(),
        }
    }
}

impl Keyspace {
    /// The gRPC method and encoded request of a read of key `key` on `system` (for a reference
    /// client that sends the same bytes, h2load); `None` for a write or the HTTP API.
    pub fn read_request(&self, system: System, workload: Workload, key: usize) -> Option<(&'static str, Bytes)> {
        let r = &self.reads;
        let (path, frames) = match (system, workload) {
            (System::Coffer, Workload::LocalRead) => (COFFER_GET, &r.coffer_local),
            (System::Coffer, Workload::LinearizableRead) => (COFFER_GET, &r.coffer_linearizable),
            (System::Etcd, Workload::LocalRead) => (etcd_pb::RANGE, &r.etcd_serializable),
            (System::Etcd, Workload::LinearizableRead) => (etcd_pb::RANGE, &r.etcd_linearizable),
            (System::Echo, Workload::LocalRead) => (ECHO_GET, &r.echo),
            _ => return None,
        };
        Some((path, frames.get(key)?.clone()))
    }

    pub fn new(size: usize, keys: usize) -> Self {
        let names: Vec<String> = (0..keys).map(|i| format!("bench/v{size}/k{i:05}")).collect();
        Self {
            size,
            reads: Arc::new(ReadFrames::new(&names, size)),
            names: Arc::new(names),
            value: Arc::new((0..size).map(|i| b"fake-bench-value-"[i % 17]).collect()),
        }
    }
}

const COFFER_GET: &str = "/coffer.v1.Secrets/GetSecretValue";
const COFFER_PUT: &str = "/coffer.v1.Secrets/PutSecretValue";
const ECHO_GET: &str = "/coffer.bench.v1.Echo/Get";

/// One client connection (one HTTP/2 connection, or a small HTTP/1.1 pool); clones share it.
#[derive(Clone)]
pub enum Conn {
    Coffer(H2Conn),
    Etcd(H2Conn),
    Echo(H2Conn),
    Http(HttpConn),
    OpenBao(HttpConn),
}

impl Conn {
    pub async fn coffer(addr: &str, token: &str) -> anyhow::Result<Conn> {
        Ok(Conn::Coffer(H2Conn::connect(addr, Some(token)).await?))
    }

    pub fn http(addr: &str, token: &str) -> Conn {
        Conn::Http(HttpConn::new(addr, token))
    }

    pub fn openbao(addr: &str, token: &str) -> Conn {
        Conn::OpenBao(HttpConn::openbao(addr, token))
    }

    pub async fn etcd(url: &str) -> anyhow::Result<Conn> {
        Ok(Conn::Etcd(H2Conn::connect(url, None).await?))
    }

    pub async fn echo(addr: &str) -> anyhow::Result<Conn> {
        Ok(Conn::Echo(H2Conn::connect(addr, None).await?))
    }

    /// One request of `workload` on key `key` of `ks`. Reads check that the whole value came
    /// back, so an error path can never pass for a fast read.
    pub async fn call(&mut self, workload: Workload, ks: &Keyspace, key: usize) -> Result<(), String> {
        let name = &ks.names[key];
        let reads = &ks.reads;
        let decode_err = |e: prost::DecodeError| format!("{name}: undecodable answer: {e}");
        let got = match (self, workload) {
            (Conn::Coffer(c), Workload::Write) => {
                let f = frame(&pb::PutSecretValueRequest {
                    name: name.clone(),
                    value: ks.value.to_vec(),
                    ..Default::default()
                });
                c.unary(COFFER_PUT, f).await?;
                return Ok(());
            }
            (Conn::Coffer(c), read) => {
                let f = match read {
                    Workload::LocalRead => &reads.coffer_local[key],
                    _ => &reads.coffer_linearizable[key],
                };
                let answer = c.unary(COFFER_GET, f.clone()).await?;
                pb::GetSecretValueResponse::decode(answer)
                    .map_err(decode_err)?
                    .value
                    .len()
            }
            (Conn::Etcd(c), Workload::Write) => {
                let f = frame(&etcd_pb::PutRequest {
                    key: name.as_bytes().to_vec(),
                    value: ks.value.to_vec(),
                });
                c.unary(etcd_pb::PUT, f).await?;
                return Ok(());
            }
            (Conn::Etcd(c), read) => {
                let f = match read {
                    Workload::LocalRead => &reads.etcd_serializable[key],
                    _ => &reads.etcd_linearizable[key],
                };
                let answer = c.unary(etcd_pb::RANGE, f.clone()).await?;
                let r = etcd_pb::RangeResponse::decode(answer).map_err(decode_err)?;
                r.kvs.first().map(|kv| kv.value.len()).unwrap_or(0)
            }
            (Conn::Http(_), Workload::Write) => return Err("writes are not measured over HTTP".into()),
            (Conn::Http(c), Workload::LocalRead) => c.read("local", name).await?,
            (Conn::Http(c), Workload::LinearizableRead) => c.read("linearizable", name).await?,
            (Conn::OpenBao(c), Workload::Write) => {
                let value = std::str::from_utf8(&ks.value).map_err(|_| "the bench value is not UTF-8".to_string())?;
                c.kv2_write(name, value).await?;
                return Ok(());
            }
            (Conn::OpenBao(c), Workload::LocalRead) => c.kv2_read(name).await?,
            (Conn::OpenBao(_), Workload::LinearizableRead) => {
                return Err("OpenBao has no linearizable read to measure".into())
            }
            (Conn::Echo(c), _) => {
                let answer = c.unary(ECHO_GET, reads.echo[key].clone()).await?;
                echo_pb::EchoResponse::decode(answer).map_err(decode_err)?.value.len()
            }
        };
        if got != ks.size {
            return Err(format!("{name}: got {got} bytes, expected {}", ks.size));
        }
        Ok(())
    }
}
