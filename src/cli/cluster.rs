//! `coffer cluster …`

use clap::Subcommand;
use serde_json::json;

use super::connect;
use super::output;
use super::CliError;
use super::Global;
use super::Output;
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Leader, term, commit index and every node with its region and role.
    Status,
}

pub async fn run(g: &Global, cmd: ClusterCmd) -> Result<(), CliError> {
    match cmd {
        ClusterCmd::Status => {
            let client = connect(g).await?;
            let r = client
                .cluster
                .clone()
                .status(pb::ClusterStatusRequest {})
                .await?
                .into_inner();
            let leader = r
                .nodes
                .iter()
                .filter_map(|n| n.node.as_ref())
                .find(|n| n.id == r.leader_id);
            match g.output {
                Output::Json => output::print_json(&json!({
                    "cluster_id": r.cluster_id,
                    "leader": leader.map(|l| json!({"id": l.id, "name": l.name, "region": l.region})),
                    "term": r.term,
                    "commit_index": r.commit_index,
                    "applied_index": r.applied_index,
                    "served_by": r.served_by.as_ref().map(|s| json!({"node": s.node, "region": s.region, "role": s.role})),
                    "nodes": r.nodes.iter().map(|n| {
                        let i = n.node.clone().unwrap_or_default();
                        json!({"id": i.id, "name": i.name, "region": i.region, "zone": i.zone,
                               "role": n.role, "api": i.api_addr, "matched_index": n.matched_index})
                    }).collect::<Vec<_>>(),
                })),
                Output::Table => {
                    println!(
                        "cluster {}  leader {}  term {}  commit {}  (answered by {})",
                        r.cluster_id,
                        leader
                            .map(|l| format!("{} ({})", l.name, l.region))
                            .unwrap_or_else(|| "none".into()),
                        r.term,
                        r.commit_index,
                        r.served_by.map(|s| s.node).unwrap_or_default(),
                    );
                    output::print_table(
                        &["ID", "NAME", "REGION", "ZONE", "ROLE", "API"],
                        &r.nodes
                            .iter()
                            .map(|n| {
                                let i = n.node.clone().unwrap_or_default();
                                vec![i.id.to_string(), i.name, i.region, i.zone, n.role.clone(), i.api_addr]
                            })
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
    }
    Ok(())
}
