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
    /// Check the config and exit: nothing is read from Coffer, nothing written.
    #[arg(long, conflicts_with = "once")]
    pub check: bool,
}

/// The SDK client `cfg` describes (token from `token_file`, else `COFFER_TOKEN`).
pub fn client(cfg: &AgentConfig) -> Result<Coffer, String> {
    let token = match &cfg.token_file {
        Some(p) => read_token(p)?,
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

/// The token in `path`, refused if others may read the file (group may: a Kubernetes fsGroup).
fn read_token(path: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let at = |e: std::io::Error| format!("cannot read token_file {}: {e}", path.display());
    let mode = std::fs::metadata(path).map_err(at)?.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(format!(
            "token_file {} may be read by others (mode {:04o}); chmod o-rwx it",
            path.display(),
            mode & 0o7777
        ));
    }
    let token = std::fs::read_to_string(path).map_err(at)?.trim().to_string();
    if token.is_empty() {
        return Err(format!("token_file {} is empty", path.display()));
    }
    Ok(token)
}

/// `coffer agent`: loads the config, renders, and keeps the files current until `shutdown`.
pub async fn main(args: AgentArgs, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let cfg = AgentConfig::load(&args.config)?;
    if args.check {
        println!("{}: {} files, config ok", args.config.display(), cfg.files.len());
        return Ok(());
    }
    if let Some(addr) = cfg.metrics_addr.filter(|_| !args.once) {
        crate::node_metrics::start(addr, &[]).map_err(|e| format!("{e:#}"))?;
    }
    let sdk = client(&cfg)?;
    run::run(cfg, sdk, args.once, shutdown).await
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::read_token;

    #[test]
    fn a_token_file_others_may_read_or_an_empty_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("coffer-agent-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "fake-agent-token\n").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o400, true),
            (0o644, false),
            (0o606, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match read_token(&path) {
                Ok(t) => assert!(ok && t == "fake-agent-token", "{mode:o}"),
                Err(e) => assert!(
                    !ok && e.contains("others") && !e.contains("fake-agent-token"),
                    "{mode:o}: {e}"
                ),
            }
        }
        std::fs::write(&path, "  \n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_token(&path).unwrap_err().contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
