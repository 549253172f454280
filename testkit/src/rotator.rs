//! An owner's rotator for tests of the hook strategy: a real HTTPS server (certificate from a
//! CA of its own, written to `ca_file` for `[rotation] hook_ca_file`) that answers Coffer's
//! hook calls by putting a value with the `coffer` CLI, as a shell rotator would, or
//! misbehaves as its [`Behaviour`] says.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::cluster::TestCluster;
use crate::fs::TempDir;

/// How the rotator answers the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Puts `fake-hook-value-run-N` with the call's run and token, answers 200.
    Write,
    /// Answers 200 after this long, having written nothing.
    Slow(Duration),
    /// Answers 200 at once, having written nothing.
    AnswerOnly,
    /// Puts with the run and token of the first call it wrote for (a stale rotator).
    Replay,
    /// Puts with the call's run and token, but as CURRENT.
    AsCurrent,
}

/// One hook call as the rotator saw it, and what its put got.
#[derive(Debug, Clone)]
pub struct Call {
    pub secret: String,
    pub run: u64,
    pub token: String,
    pub behaviour: Behaviour,
    /// The put's exit code and its stderr (none when the behaviour writes nothing).
    pub put: Option<(i32, String)>,
}

/// The value [`Behaviour::Write`] puts for run `run`.
pub fn value_of_run(run: u64) -> String {
    format!("fake-hook-value-run-{run}")
}

struct Shared {
    behaviour: Behaviour,
    calls: Vec<Call>,
    /// How its puts reach the cluster (set once the cluster is up).
    cli: Option<Cli>,
}

/// The `coffer` command line of the cluster (program and environment), to run from the server.
#[derive(Clone)]
struct Cli {
    program: OsString,
    envs: Vec<(OsString, Option<OsString>)>,
}

pub struct Rotator {
    /// `https://localhost:PORT/rotate`.
    pub url: String,
    /// The PEM of the rotator's CA.
    pub ca_file: PathBuf,
    shared: Arc<Mutex<Shared>>,
    server: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for Rotator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Rotator {
    /// Listens on a free loopback port (before the cluster starts: its nodes need `ca_file`);
    /// [`Rotator::put_through`] says where its puts go.
    pub async fn start() -> Self {
        let dir = TempDir::new().expect("rotator temp dir");
        let ca = coffer::tls::issue::DevCa::generate("test rotator CA").expect("rotator CA");
        let leaf = ca
            .issue_node("rotator", &["localhost", "127.0.0.1"])
            .expect("rotator cert");
        let ca_file = dir.path().join("rotator-ca.pem");
        std::fs::write(&ca_file, ca.cert_pem()).expect("write rotator CA");
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("rotator cert PEM");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("rotator key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("rotator TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind rotator");
        let addr: SocketAddr = listener.local_addr().expect("rotator addr");
        let shared = Arc::new(Mutex::new(Shared {
            behaviour: Behaviour::Write,
            calls: Vec::new(),
            cli: None,
        }));
        let state = shared.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| answer(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("https://localhost:{}/rotate", addr.port()),
            ca_file,
            shared,
            server,
            _dir: dir,
        }
    }

    /// Its puts go through node `via` of `cluster`, as the cluster's root token.
    pub fn put_through(&self, cluster: &TestCluster, via: usize) {
        let base = cluster.cli_command(via, &[]);
        self.shared.lock().unwrap().cli = Some(Cli {
            program: base.get_program().to_owned(),
            envs: base
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
                .collect(),
        });
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.shared.lock().unwrap().behaviour = behaviour;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().unwrap().calls.clone()
    }
}

/// Answers one hook call as the current behaviour says, and records it.
async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    state: Arc<Mutex<Shared>>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status: u16, text: String| {
        let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        Ok(r)
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/rotate" {
        return reply(404, "not here".into());
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(400, format!("unreadable body: {e}")),
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return reply(400, "not JSON".into());
    };
    let secret = json["secret"].as_str().unwrap_or_default().to_string();
    let run = json["run"].as_u64().unwrap_or(0);
    let token = json["token"].as_str().unwrap_or_default().to_string();
    let (behaviour, first_written, cli) = {
        let s = state.lock().unwrap();
        let first = s
            .calls
            .iter()
            .find(|c| c.put.as_ref().is_some_and(|p| p.0 == 0))
            .cloned();
        (s.behaviour, first, s.cli.clone())
    };
    let Some(cli) = cli else {
        return reply(503, "the rotator does not know the cluster yet".into());
    };
    let put_as = match behaviour {
        Behaviour::Write => Some((run, token.clone(), "pending")),
        Behaviour::AsCurrent => Some((run, token.clone(), "current")),
        Behaviour::Replay => first_written.map(|c| (c.run, c.token, "pending")),
        Behaviour::Slow(wait) => {
            tokio::time::sleep(wait).await;
            None
        }
        Behaviour::AnswerOnly => None,
    };
    let put = match put_as {
        Some((r, t, alias)) => {
            let mut cmd = tokio::process::Command::new(&cli.program);
            for (k, v) in &cli.envs {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
            let r_text = r.to_string();
            cmd.args([
                "secret",
                "put",
                &secret,
                "--value",
                &value_of_run(run),
                "--alias",
                alias,
                "--rotation-run",
                &r_text,
            ])
            .env("COFFER_ROTATION_TOKEN", &t)
            .stdin(std::process::Stdio::null());
            match cmd.output().await {
                Ok(out) => Some((
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )),
                Err(e) => Some((-1, format!("cannot run coffer: {e}"))),
            }
        }
        None => None,
    };
    let refused = put
        .as_ref()
        .filter(|p| p.0 != 0)
        .map(|p| p.1.lines().next().unwrap_or("").to_string());
    state.lock().unwrap().calls.push(Call {
        secret,
        run,
        token,
        behaviour,
        put,
    });
    match refused {
        Some(why) => reply(500, format!("put refused: {why}")),
        None => reply(200, "ok".into()),
    }
}
