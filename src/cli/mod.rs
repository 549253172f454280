//! The `coffer` command line (docs/architecture.md: Command line). Scripts and tests rely on this shape.
//!
//! Every command takes `--output table|json`; the server comes from `--addr` / `COFFER_ADDR`
//! and the token from `--token` / `COFFER_TOKEN`. Errors are one line on stderr with a
//! non-zero exit.

pub mod audit;
pub mod cluster;
pub mod drill;
pub mod error;
pub mod global;
pub mod kms;
pub mod output;
pub mod policy;
pub mod rotation;
pub mod secret;
pub mod secret_spec;
pub mod snapshot;
pub mod tls;
pub mod token;
pub mod usage;
pub mod watch;

pub use error::CliError;
pub use global::{client_tls, connect, connect_to, Global, Output, DEFAULT_ADDR};

use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;
use clap::ValueEnum;

#[derive(Debug, Parser)]
#[command(name = "coffer", version, about = "Coffer: a replicated, multi-region secrets store")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
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
    /// Backups: save the cluster's state to a file, check one, restore one into a new cluster.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Failover drills: break the cluster on purpose and measure RTO and RPO.
    #[command(subcommand)]
    Drill(drill::DrillCmd),
    /// Where secrets' rotations stand: past due, in flight, failing.
    #[command(subcommand)]
    Rotation(rotation::RotationCmd),
    /// Render secrets to files and keep them current (a sidecar), or once (--once).
    Agent(crate::agent::AgentArgs),
    /// Certificates for test and demo clusters (a throwaway CA).
    #[command(subcommand)]
    Tls(tls::TlsCmd),
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
