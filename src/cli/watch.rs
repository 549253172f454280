//! `coffer secret watch NAME | --prefix P`: the changes to a secret or a folder as the serving
//! node applies them, one line each (JSON lines with `--output json`), until interrupted or
//! `--count` changes were seen.

use serde_json::json;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["name", "prefix"])))]
pub struct WatchArgs {
    /// The secret to watch.
    name: Option<String>,
    /// Watch every secret under this folder instead (e.g. `acme/` or `acme/prod`).
    #[arg(long)]
    prefix: Option<String>,
    /// Start after this log index (the last `through` seen, to resume without a gap); 0 = now.
    #[arg(long, default_value_t = 0)]
    after_index: u64,
    /// Exit after this many changes (0 = never).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

/// A change as the CLI prints it (never a value: events carry none).
pub fn event_json(e: &pb::SecretEvent) -> serde_json::Value {
    let kind = pb::SecretEventKind::try_from(e.kind)
        .map(|k| k.as_str_name().trim_start_matches("SECRET_EVENT_KIND_").to_lowercase())
        .unwrap_or_else(|_| e.kind.to_string());
    let mut v = json!({
        "index": e.index,
        "name": e.name,
        "kind": kind,
        "version": e.version,
        "aliases": e.aliases,
        "revoked": e.revoked,
        "at": output::time(e.at_ms),
    });
    if !e.alias.is_empty() {
        v["alias"] = json!(e.alias);
    }
    if e.rotation_run != 0 {
        let step = pb::RotationStep::try_from(e.rotation_step)
            .map(|s| s.as_str_name().trim_start_matches("ROTATION_STEP_").to_lowercase())
            .unwrap_or_default();
        v["rotation"] = json!({"run": e.rotation_run, "step": step, "failed": e.rotation_failed});
    }
    v
}

/// `INDEX  NAME  KIND  [vN]  [alias]  [run N STEP (failed)]  [revoked …]`.
fn table_line(e: &pb::SecretEvent, v: &serde_json::Value) -> String {
    let mut line = format!("{:>8}  {}  {}", e.index, e.name, v["kind"].as_str().unwrap_or(""));
    if e.version != 0 {
        line.push_str(&format!("  v{}", e.version));
    }
    if !e.alias.is_empty() {
        line.push_str(&format!("  {}", e.alias));
    }
    if let Some(r) = v.get("rotation") {
        line.push_str(&format!("  run {} {}", r["run"], r["step"].as_str().unwrap_or("")));
        if e.rotation_failed {
            line.push_str(" (failed)");
        }
    }
    if !e.revoked.is_empty() {
        let revoked: Vec<String> = e.revoked.iter().map(|v| format!("v{v}")).collect();
        line.push_str(&format!("  revoked {}", revoked.join(",")));
    }
    line
}

pub async fn watch(g: &Global, a: WatchArgs) -> Result<(), CliError> {
    if let Some(n) = a.name.as_deref().filter(|n| n.ends_with('/')) {
        return Err(CliError::new(format!("{n:?} is a folder: watch it with --prefix {n}")));
    }
    let client = connect(g).await?;
    let mut stream = client
        .secrets
        .clone()
        .watch(pb::WatchRequest {
            name: a.name.unwrap_or_default(),
            prefix: a.prefix.unwrap_or_default(),
            after_index: a.after_index,
        })
        .await?
        .into_inner();
    let mut seen = 0u64;
    while let Some(r) = stream.message().await? {
        for e in &r.events {
            let v = event_json(e);
            match g.output {
                Output::Json => println!("{v}"),
                Output::Table => println!("{}", table_line(e, &v)),
            }
            seen += 1;
            if a.count != 0 && seen >= a.count {
                return Ok(());
            }
        }
    }
    Err(CliError::new(
        "the watch stream ended (the node stopped); resume with --after-index",
    ))
}
