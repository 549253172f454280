//! The `coffer` command line (DESIGN.md: Command line). Scripts and tests rely on this shape.
//!
//! Every command takes `--output table|json`; the server comes from `--addr` / `COFFER_ADDR`
//! and the token from `--token` / `COFFER_TOKEN`. Errors are one line on stderr with a
//! non-zero exit.

pub mod audit;
pub mod cluster;
pub mod kms;
pub mod output;
pub mod policy;
pub mod secret;
pub mod token;

use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;
use clap::ValueEnum;

/// No scheme: plaintext, or TLS when a CA is given (`--ca-cert` / `COFFER_CACERT`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7400";

#[derive(Debug, Parser)]
#[command(name = "coffer", version, about = "Coffer: a replicated, multi-region secrets store")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// API address of any node: https://HOST:PORT (TLS), http://HOST:PORT (plaintext), or
    /// HOST:PORT (TLS when a CA is given, else plaintext).
    #[arg(long, global = true, env = "COFFER_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// CA certificate (PEM) that signs the cluster's certificates; turns TLS on.
    #[arg(long, global = true, env = "COFFER_CACERT")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for an mTLS identity (URI SAN coffer://principal/ID).
    #[arg(long, global = true, env = "COFFER_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "COFFER_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// Bearer token.
    #[arg(long, global = true, env = "COFFER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Request id of this command's write (1-64 of A-Z a-z 0-9 . _ : -). Run a write that
    /// timed out again with the same id and it is answered with its first outcome, never
    /// applied twice (within the cluster's request retention, 10 minutes by default).
    #[arg(long, global = true, env = "COFFER_REQUEST_ID")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local cluster: one node per region as separate processes on loopback.
    Dev(DevArgs),
    /// Run one node.
    Server {
        /// Server config file (TOML); see deploy/ for examples.
        #[arg(long)]
        config: PathBuf,
    },
    /// Read and write secrets.
    #[command(subcommand)]
    Secret(secret::SecretCmd),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Each region's KMS: health, missing wraps, rewrap after an outage or a key rotation.
    #[command(subcommand)]
    Kms(kms::KmsCmd),
    /// Create, list and revoke tokens (identities for services and people).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Manage the policies that decide who may do what.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Read and verify a node's hash-chained audit log.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Regions, one node each.
    #[arg(long, value_delimiter = ',', default_value = "us-east,eu-west,ap-south")]
    pub regions: Vec<String>,
    /// Where the nodes keep their data, keyrings, logs and cluster.json.
    #[arg(long, default_value = ".coffer-dev")]
    pub data_dir: PathBuf,
    /// First API port; node N listens on BASE+N-1 (API) and BASE+100+N-1 (Raft).
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// KMS provider of every region: the file keyrings under DIR (local) or an AWS KMS API
    /// (aws, with --kms-endpoint).
    #[arg(long, value_enum, default_value_t = DevKms::Local)]
    pub kms: DevKms,
    /// With --kms aws: the KMS endpoint (e.g. a moto server at http://127.0.0.1:5000). Keys
    /// alias/coffer-dev-<region> are created there when missing. Credentials come from the
    /// AWS environment variables, or obviously fake ones when those are unset.
    #[arg(long)]
    pub kms_endpoint: Option<String>,
    /// Serve TLS (mutual TLS between nodes) with a throwaway CA and certificates made in
    /// DIR/tls/, plus a client certificate for the principal user:dev-admin. Without it the
    /// nodes talk plaintext on loopback.
    #[arg(long)]
    pub tls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DevKms {
    Local,
    Aws,
}

/// A failed command: the one line to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

/// Whether this process dialled a plaintext (`http://`) address: a connection torn down at the
/// HTTP/2 level then most likely hit a TLS port.
static DIALLED_PLAINTEXT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Transport failures (not answers from the server).
const TRANSPORT_FAILURES: [&str; 6] = [
    "transport error",
    "h2 protocol error",
    "operation was canceled",
    "connection reset",
    "connection closed",
    "broken pipe",
];

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        let transport = TRANSPORT_FAILURES.iter().any(|m| s.message().contains(m));
        let hint = match s.code() {
            tonic::Code::Unauthenticated => "",
            _ if transport && DIALLED_PLAINTEXT.load(std::sync::atomic::Ordering::Relaxed) => {
                " (a plaintext connection was cut: if the server uses TLS, use an https:// address and set \
                 COFFER_CACERT to the cluster's CA file; else is the cluster running? check COFFER_ADDR)"
            }
            tonic::Code::Unavailable if s.message().contains("transport") || s.message().contains("connect") => {
                " (is the cluster running? check COFFER_ADDR)"
            }
            _ => "",
        };
        // One line, whatever the server sent.
        let msg = s.message().replace('\n', " ");
        CliError::new(format!("{msg}{hint}"))
    }
}

impl From<crate::client::ClientError> for CliError {
    fn from(e: crate::client::ClientError) -> Self {
        use crate::client::ClientError as E;
        use crate::client::TlsProblem as P;
        let line = match &e {
            E::Connect { .. } => format!("{e}; is the cluster running (make dev)? set COFFER_ADDR"),
            E::Tls { addr, problem } => match problem {
                P::UntrustedServer => format!(
                    "TLS: the server certificate of {addr} is not signed by the CA in COFFER_CACERT (--ca-cert); \
                     point it at the cluster's CA file"
                ),
                P::WrongName => format!(
                    "TLS: the server certificate of {addr} does not name that host; use an address its certificate \
                     names (DNS or IP SAN)"
                ),
                P::Expired => format!("TLS: the server certificate of {addr} has expired or is not valid yet"),
                P::ClientCertRefused => format!(
                    "TLS: {addr} refused the client certificate in COFFER_CLIENT_CERT (--client-cert); use one \
                     signed by the cluster CA"
                ),
                P::NotTls => format!(
                    "TLS: {addr} does not speak TLS; use an http:// address (or unset COFFER_CACERT) for a plaintext \
                     server"
                ),
                P::Other(m) => format!("TLS with {addr} failed: {m}"),
            },
            E::NoCa { addr } => format!(
                "TLS: {addr} is an https:// address but no CA is given; set COFFER_CACERT (--ca-cert) to the \
                 cluster's CA file"
            ),
            E::IncompleteIdentity => {
                "give both --client-cert and --client-key (COFFER_CLIENT_CERT, COFFER_CLIENT_KEY), or neither".into()
            }
            E::BadRequestId(m) => format!("--request-id (COFFER_REQUEST_ID): {m}"),
            _ => e.to_string(),
        };
        CliError::new(line.replace('\n', " "))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(e.to_string())
    }
}

pub async fn connect(g: &Global) -> Result<crate::client::Client, CliError> {
    // An empty COFFER_TOKEN means none (a client certificate may be the identity).
    connect_to(g, &g.addr, g.token.as_deref().filter(|t| !t.is_empty())).await
}

/// Connects to `addr` with the TLS settings of `g` (another node's API, say).
pub async fn connect_to(g: &Global, addr: &str, token: Option<&str>) -> Result<crate::client::Client, CliError> {
    let tls = client_tls(g)?;
    if crate::client::url_for(addr, tls.is_some()).starts_with("http://") {
        DIALLED_PLAINTEXT.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let client = crate::client::Client::connect_with(addr, token, tls.as_ref()).await?;
    Ok(match g.request_id.as_deref() {
        Some(id) => client.with_request_id(id)?,
        None => client,
    })
}

/// The client's TLS settings from `--ca-cert`, `--client-cert` and `--client-key` (None
/// without a CA).
pub fn client_tls(g: &Global) -> Result<Option<crate::client::ClientTls>, CliError> {
    match &g.ca_cert {
        Some(ca) => Ok(Some(crate::client::ClientTls::from_files(
            ca,
            g.client_cert.as_deref(),
            g.client_key.as_deref(),
        )?)),
        None if g.client_cert.is_some() || g.client_key.is_some() => Err(CliError::new(
            "a client certificate needs TLS: set COFFER_CACERT (--ca-cert) to the cluster's CA file too",
        )),
        None => Ok(None),
    }
}
