//! The options every command takes (`--addr`, `--token`, TLS, `--output`, `--request-id`) and
//! the connection they describe.

use std::path::PathBuf;

use clap::ValueEnum;

use super::error::CliError;
use super::error::DIALLED_PLAINTEXT;

/// No scheme: plaintext, or TLS when a CA is given (`--ca-cert` / `COFFER_CACERT`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7400";

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
