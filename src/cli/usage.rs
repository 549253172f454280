//! `coffer secret usage NAME`: each version's reads per region (merged from every member by the
//! serving node), who read it, and whether it is safe to retire.

use serde_json::json;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;

#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    name: String,
}

pub async fn usage(g: &Global, a: UsageArgs) -> Result<(), CliError> {
    let client = connect(g).await?;
    let r = client
        .secrets
        .clone()
        .secret_usage(pb::SecretUsageRequest { name: a.name })
        .await?
        .into_inner();
    match g.output {
        Output::Json => output::print_json(&json!({
            "name": r.name,
            "at": output::time(r.now_ms),
            "versions": r.versions.iter().map(|v| json!({
                "version": v.version,
                "state": v.state,
                "aliases": v.aliases,
                "regions": v.regions.iter().map(|g| json!({
                    "region": g.region,
                    "reads_last_hour": g.reads_last_hour,
                    "reads_last_day": g.reads_last_day,
                    "last_read": (g.last_read_ms != 0).then(|| output::time(g.last_read_ms)),
                    "last_read_ms": g.last_read_ms,
                })).collect::<Vec<_>>(),
                "last_read": (v.last_read_ms != 0).then(|| output::time(v.last_read_ms)),
                "last_read_ms": v.last_read_ms,
                "principals": v.principals,
                "principals_truncated": v.principals_truncated,
                "safe_to_retire": v.safe_to_retire,
                "reason": v.reason,
                "quiet_since_ms": v.quiet_since_ms,
            })).collect::<Vec<_>>(),
            "nodes": r.nodes.iter().map(|n| {
                let node = n.node.clone().unwrap_or_default();
                json!({
                    "node": node.name,
                    "region": node.region,
                    "counting_since": output::time(n.since_ms),
                    "unreachable": (!n.unreachable.is_empty()).then_some(&n.unreachable),
                })
            }).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let regions: Vec<String> = r
                .versions
                .first()
                .map(|v| v.regions.iter().map(|g| g.region.clone()).collect())
                .unwrap_or_default();
            let mut head = vec!["VERSION".to_string(), "STATE".into(), "ALIASES".into()];
            head.extend(regions.iter().map(|g| format!("{g} 1H/1D")));
            head.extend(["LAST READ".into(), "READERS".into(), "SAFE TO RETIRE".into()]);
            let rows: Vec<Vec<String>> = r
                .versions
                .iter()
                .map(|v| {
                    let mut row = vec![v.version.to_string(), v.state.clone(), v.aliases.join(" ")];
                    row.extend(
                        v.regions
                            .iter()
                            .map(|g| format!("{}/{}", g.reads_last_hour, g.reads_last_day)),
                    );
                    let mut readers = v.principals.join(" ");
                    if v.principals_truncated {
                        readers.push_str(" …");
                    }
                    row.push(output::time(v.last_read_ms));
                    row.push(readers);
                    row.push(format!(
                        "{} ({})",
                        if v.safe_to_retire { "yes" } else { "no" },
                        v.reason
                    ));
                    row
                })
                .collect();
            let head: Vec<&str> = head.iter().map(String::as_str).collect();
            output::print_table(&head, &rows);
            for n in r.nodes.iter().filter(|n| !n.unreachable.is_empty()) {
                let name = n.node.as_ref().map_or("?", |n| n.name.as_str());
                output::say(format!("(no answer from {name}: {})", n.unreachable));
            }
        }
    }
    Ok(())
}
