//! The `coffer` command line (DESIGN.md: Command line). Scripts and tests rely on this shape.
//!
//! Every command takes `--output table|json`; the server comes from `--addr` / `COFFER_ADDR`
//! and the token from `--token` / `COFFER_TOKEN`. Errors are one line on stderr with a
//! non-zero exit.

pub mod cluster;
pub mod kms;
pub mod output;
pub mod secret;

use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;
use clap::ValueEnum;

pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7400";

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
    /// API address of any node.
    #[arg(long, global = true, env = "COFFER_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// Bearer token.
    #[arg(long, global = true, env = "COFFER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
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

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        let hint = match s.code() {
            tonic::Code::Unauthenticated => "",
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
        let hint = match e {
            crate::client::ClientError::Connect { .. } => "; is the cluster running (make dev)? set COFFER_ADDR",
            _ => "",
        };
        CliError::new(format!("{e}{hint}"))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(e.to_string())
    }
}

pub async fn connect(g: &Global) -> Result<crate::client::Client, CliError> {
    Ok(crate::client::Client::connect(&g.addr, g.token.as_deref()).await?)
}
