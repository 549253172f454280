//! `coffer kms …`: each region's KMS health and missing wraps, rewrap, and local key rotation.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use serde_json::Value;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum KmsCmd {
    /// Every region's KMS as the answering node sees it (probed now), and how many versions
    /// still lack that region's wrap.
    Status,
    /// Add missing wraps and re-wrap data keys under each region's current key (after a KMS
    /// outage or a key rotation). Ciphertext is never touched. Safe to run any time.
    Rewrap {
        /// Only this region.
        #[arg(long)]
        region: Option<String>,
    },
    /// Rotate a `local` provider keyring: add a fresh key version and make it current (runs
    /// on this machine, no server needed). Then run `coffer kms rewrap --region R`.
    AddLocalKey {
        /// The nodes' kms.local_keyring_dir (with `coffer dev`: DIR/keyring).
        #[arg(long)]
        keyring_dir: PathBuf,
        #[arg(long)]
        region: String,
    },
    /// Create a `local` provider keyring with one fresh key, unless the region has one
    /// already (then it is kept: safe to run on every start). Runs on this machine.
    CreateLocalKeyring {
        /// Where the keyrings live (the nodes' kms.local_keyring_dir).
        #[arg(long)]
        keyring_dir: PathBuf,
        #[arg(long)]
        region: String,
    },
}

fn region_json(r: &pb::KmsRegionStatus) -> Value {
    json!({
        "region": r.region,
        "provider": r.provider,
        "key": r.key,
        "healthy": r.healthy,
        "last_error": (!r.last_error.is_empty()).then_some(&r.last_error),
        "unhealthy_since": (r.unhealthy_since_ms > 0).then(|| crate::time::rfc3339_ms(r.unhealthy_since_ms)),
        "versions_missing_wrap": r.versions_missing_wrap,
    })
}

fn print_regions(regions: &[pb::KmsRegionStatus]) {
    let rows: Vec<Vec<String>> = regions
        .iter()
        .map(|r| {
            vec![
                r.region.clone(),
                r.provider.clone(),
                r.key.clone(),
                if r.healthy {
                    "healthy".into()
                } else {
                    "UNHEALTHY".into()
                },
                if r.unhealthy_since_ms > 0 {
                    crate::time::rfc3339_ms(r.unhealthy_since_ms)
                } else {
                    "-".into()
                },
                r.versions_missing_wrap.to_string(),
                if r.last_error.is_empty() {
                    "-".into()
                } else {
                    r.last_error.clone()
                },
            ]
        })
        .collect();
    output::print_table(
        &[
            "REGION",
            "PROVIDER",
            "KEY",
            "HEALTH",
            "UNHEALTHY SINCE",
            "MISSING WRAPS",
            "LAST ERROR",
        ],
        &rows,
    );
}

pub async fn run(g: &Global, cmd: KmsCmd) -> Result<(), CliError> {
    match cmd {
        KmsCmd::AddLocalKey { keyring_dir, region } => {
            let v = crate::crypto::kms::local::add_key_version(&keyring_dir, &region)
                .map_err(|e| CliError::new(e.to_string()))?;
            match g.output {
                Output::Json => output::print_json(&json!({"region": region, "key_version": v})),
                Output::Table => output::say(format!(
                    "{region}: key version {v} is now current; run `coffer kms rewrap --region {region}` to move existing wraps to it"
                )),
            }
            Ok(())
        }
        KmsCmd::CreateLocalKeyring { keyring_dir, region } => {
            let made = crate::crypto::kms::local::ensure_keyring(&keyring_dir, &region)
                .map_err(|e| CliError::new(e.to_string()))?;
            let path = crate::crypto::kms::local::keyring_path(&keyring_dir, &region);
            match g.output {
                Output::Json => output::print_json(&json!({
                    "region": region, "path": path.display().to_string(), "made": made,
                })),
                Output::Table => output::say(format!("{} {}", if made { "made" } else { "kept" }, path.display())),
            }
            Ok(())
        }
        KmsCmd::Status => {
            let r = connect(g)
                .await?
                .kms
                .status(pb::KmsStatusRequest {})
                .await?
                .into_inner();
            match g.output {
                Output::Json => output::print_json(&json!({
                    "regions": r.regions.iter().map(region_json).collect::<Vec<_>>(),
                })),
                Output::Table => print_regions(&r.regions),
            }
            Ok(())
        }
        KmsCmd::Rewrap { region } => {
            let r = connect(g)
                .await?
                .kms
                .rewrap(pb::RewrapRequest {
                    region: region.unwrap_or_default(),
                })
                .await?
                .into_inner();
            match g.output {
                Output::Json => output::print_json(&json!({
                    "checked": r.checked,
                    "added": r.added,
                    "replaced": r.replaced,
                    "stale_after": r.stale_after,
                    "failures": r.failures,
                    "regions": r.regions.iter().map(region_json).collect::<Vec<_>>(),
                })),
                Output::Table => {
                    output::say(format!(
                        "checked {} data keys: {} wraps added, {} re-wrapped under the current key; {} still under an older key",
                        r.checked, r.added, r.replaced, r.stale_after
                    ));
                    for f in &r.failures {
                        output::say(format!("failed: {f}"));
                    }
                    print_regions(&r.regions);
                }
            }
            if r.failures.is_empty() {
                Ok(())
            } else {
                Err(CliError::new(format!(
                    "rewrap incomplete: {} failures (first: {}); run it again once the KMS answers",
                    r.failures.len(),
                    r.failures[0]
                )))
            }
        }
    }
}
