//! `coffer agent`: a sidecar that renders secrets to files for services that do not link the
//! SDK (docs/architecture.md: Delivery). Built on `coffer-sdk`: its cache, failover, watch
//! stream and revocation decide what a file may hold.
//!
//! - [`config`]: the TOML config (nodes, token, files) and its checks;
//! - [`render`]: raw, env, JSON and template files from the values;
//! - [`template`]: the `{{ name }}` template syntax, parsed in one place;
//! - [`files`]: atomic replace (write, fsync, rename, directory fsync) with mode and owner;
//! - [`run`]: the loop: render, replace what changed, reload once, remove what may not stay.

pub mod config;
pub mod files;
pub mod render;
pub mod run;
pub mod template;

use std::path::PathBuf;
use std::time::Duration;

use coffer_sdk::Coffer;

use config::AgentConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The agent's config (TOML); see deploy/k8s/ and README.md for examples.
    #[arg(long)]
    pub config: PathBuf,
    /// Render every file once and exit (an init container): non-zero if a critical secret
    /// cannot be read.
    #[arg(long)]
    pub once: bool,
}

/// The SDK client `cfg` describes (token from `token_file`, else `COFFER_TOKEN`).
pub fn client(cfg: &AgentConfig) -> Result<Coffer, String> {
    let token = match &cfg.token_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read token_file {}: {e}", p.display()))?
            .trim()
            .to_string(),
        None => std::env::var("COFFER_TOKEN").map_err(|_| "no token: set token_file or COFFER_TOKEN".to_string())?,
    };
    let endpoints = cfg
        .endpoints
        .iter()
        .map(|e| coffer_sdk::Endpoint {
            addr: e.addr.clone(),
            region: e.region.clone(),
        })
        .collect();
    let mut sdk = coffer_sdk::Config::new(cfg.region.clone(), token, endpoints);
    if let Some(ca) = &cfg.ca_file {
        sdk.ca_pem = Some(std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?);
    }
    sdk.ttl = Duration::from_secs(cfg.ttl_secs.max(1));
    sdk.max_stale = Duration::from_secs(cfg.max_stale_secs);
    Coffer::new(sdk).map_err(|e| e.to_string())
}

/// `coffer agent`: loads the config, renders, and keeps the files current until `shutdown`.
pub async fn main(args: AgentArgs, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let cfg = AgentConfig::load(&args.config)?;
    let sdk = client(&cfg)?;
    run::run(cfg, sdk, args.once, shutdown).await
}
