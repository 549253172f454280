//! `coffer cluster …`: status, and membership changes with their failure-tolerance check.

use clap::Subcommand;
use serde_json::json;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;
use crate::pb::membership_change_request::Change;

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Leader, term, commit index, failure tolerance, and every node's own report.
    Status,
    /// Whether the node at --addr serves (ready, as /health/ready says): exits 0 when it
    /// does, 1 with its state when not. No token needed. For health checks and scripts that
    /// wait for a cluster to come up (--wait).
    Health {
        /// Ask again every half second until the node serves or this much time has passed
        /// (e.g. 60s; at most 1h).
        #[arg(long, value_parser = parse_wait)]
        wait: Option<std::time::Duration>,
    },
    /// Add a running, empty node as a learner (a non-voting read replica).
    AddLearner {
        /// The new node's API address; its identity (id, name, region) is read from it.
        #[arg(long)]
        node_api: String,
        #[arg(long)]
        force: bool,
    },
    /// Make a learner a voter.
    Promote {
        /// Node id or name.
        node: String,
        #[arg(long)]
        force: bool,
    },
    /// Make a voter a learner.
    Demote {
        node: String,
        #[arg(long)]
        force: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        node: String,
        #[arg(long)]
        force: bool,
    },
    /// Hand leadership to a voter.
    TransferLeader { node: String },
}

fn tolerance_line(t: &pb::Tolerance) -> String {
    coffer_raft::membership::line(t)
}

fn tolerance_json(t: &pb::Tolerance) -> serde_json::Value {
    json!({
        "voters": t.voters,
        "quorum": t.quorum,
        "nodes": t.nodes,
        "regions": t.regions,
        "voters_per_region": t.voters_per_region,
        "learners_per_region": t.learners_per_region,
    })
}

fn ms(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1}s", v as f64 / 1000.0)
    } else {
        format!("{v}ms")
    }
}

/// Finds a member by id or name.
fn resolve(status: &pb::ClusterStatusResponse, node: &str) -> Result<u64, CliError> {
    let nodes: Vec<pb::NodeInfo> = status.nodes.iter().filter_map(|n| n.node.clone()).collect();
    if let Ok(id) = node.parse::<u64>() {
        if nodes.iter().any(|n| n.id == id) {
            return Ok(id);
        }
    }
    nodes.iter().find(|n| n.name == node).map(|n| n.id).ok_or_else(|| {
        let known: Vec<String> = nodes.iter().map(|n| format!("{} ({})", n.name, n.id)).collect();
        CliError::new(format!("no member is called {node:?}; members: {}", known.join(", ")))
    })
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 2m)"))?;
    if d > std::time::Duration::from_secs(3600) {
        return Err("at most 1h".into());
    }
    Ok(d)
}

/// The node's health status, once.
async fn health_once(g: &Global) -> Result<String, CliError> {
    let client = connect(g).await?;
    Ok(client
        .cluster
        .clone()
        .health(pb::HealthRequest {})
        .await?
        .into_inner()
        .status)
}

/// `coffer cluster health [--wait D]`.
async fn health(g: &Global, wait: Option<std::time::Duration>) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    let last = loop {
        let got = health_once(g).await;
        if matches!(&got, Ok(s) if s == "serving") || tokio::time::Instant::now() >= deadline {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let status = last?;
    match g.output {
        Output::Json => output::print_json(&json!({"addr": g.addr, "status": status, "ready": status == "serving"})),
        Output::Table => output::say(&status),
    }
    if status == "serving" {
        Ok(())
    } else {
        Err(CliError::new(format!("{} is {status}: not ready", g.addr)))
    }
}

pub async fn run(g: &Global, cmd: ClusterCmd) -> Result<(), CliError> {
    if let ClusterCmd::Health { wait } = cmd {
        return health(g, wait).await;
    }
    let client = connect(g).await?;
    let mut cluster = client.cluster.clone();
    let change = match cmd {
        ClusterCmd::Health { .. } => unreachable!("answered above"),
        ClusterCmd::Status => {
            let r = cluster.status(pb::ClusterStatusRequest {}).await?.into_inner();
            print_status(g, &r);
            return Ok(());
        }
        ClusterCmd::AddLearner { node_api, force } => {
            let target = super::global::connect_to(g, &node_api, None).await?;
            let health = target.cluster.clone().health(pb::HealthRequest {}).await?.into_inner();
            let node = health
                .node
                .ok_or_else(|| CliError::new(format!("{node_api} did not say who it is")))?;
            if health.status != "not_joined" {
                return Err(CliError::new(format!(
                    "{} at {node_api} is {} (a node must be empty to join)",
                    node.name, health.status
                )));
            }
            (Change::AddLearner(node), force)
        }
        ClusterCmd::Promote { ref node, force }
        | ClusterCmd::Demote { ref node, force }
        | ClusterCmd::Remove { ref node, force } => {
            let status = cluster.status(pb::ClusterStatusRequest {}).await?.into_inner();
            let id = resolve(&status, node)?;
            let change = match cmd {
                ClusterCmd::Promote { .. } => Change::Promote(id),
                ClusterCmd::Demote { .. } => Change::Demote(id),
                _ => Change::Remove(id),
            };
            (change, force)
        }
        ClusterCmd::TransferLeader { node } => {
            let status = cluster.status(pb::ClusterStatusRequest {}).await?.into_inner();
            (Change::TransferLeader(resolve(&status, &node)?), false)
        }
    };
    let (change, force) = change;
    let r = cluster
        .change_membership(pb::MembershipChangeRequest {
            change: Some(change),
            force,
        })
        .await?
        .into_inner();
    let before = r.before.unwrap_or_default();
    let after = r.after.unwrap_or_default();
    match g.output {
        Output::Json => output::print_json(&json!({
            "summary": r.summary,
            "before": tolerance_json(&before),
            "after": tolerance_json(&after),
        })),
        Output::Table => {
            output::say(format!("before: {}", tolerance_line(&before)));
            output::say(format!("after:  {}", tolerance_line(&after)));
            output::say(r.summary);
        }
    }
    Ok(())
}

fn print_status(g: &Global, r: &pb::ClusterStatusResponse) {
    let leader = r
        .nodes
        .iter()
        .filter_map(|n| n.node.as_ref())
        .find(|n| n.id == r.leader_id);
    let tolerance = r.tolerance.clone().unwrap_or_default();
    match g.output {
        Output::Json => output::print_json(&json!({
            "cluster_id": r.cluster_id,
            "leader": leader.map(|l| json!({"id": l.id, "name": l.name, "region": l.region})),
            "term": r.term,
            "commit_index": r.commit_index,
            "applied_index": r.applied_index,
            "tolerance": tolerance_json(&tolerance),
            "served_by": r.served_by.as_ref().map(|s| json!({"node": s.node, "region": s.region, "role": s.role})),
            "nodes": r.nodes.iter().map(|n| {
                let i = n.node.clone().unwrap_or_default();
                let mut v = json!({"id": i.id, "name": i.name, "region": i.region, "zone": i.zone,
                       "role": n.role, "api": i.api_addr, "matched_index": n.matched_index});
                match &n.local {
                    Some(l) => {
                        v["state"] = json!(l.state);
                        v["applied_index"] = json!(l.applied_index);
                        v["lag"] = json!(l.lag);
                        v["last_contact_ms"] = json!(l.last_contact_ms);
                        v["staleness_upper_bound_ms"] = json!(l.staleness_upper_bound_ms);
                        v["shredded_through"] = json!(l.shredded_through);
                        v["out_of_disk"] = json!(l.out_of_disk);
                    }
                    None => v["unreachable"] = json!(n.unreachable),
                }
                v
            }).collect::<Vec<_>>(),
        })),
        Output::Table => {
            output::say(format!(
                "cluster {}  leader {}  term {}  commit {}  (answered by {})",
                r.cluster_id,
                leader
                    .map(|l| format!("{} ({})", l.name, l.region))
                    .unwrap_or_else(|| "none".into()),
                r.term,
                r.commit_index,
                r.served_by.as_ref().map(|s| s.node.clone()).unwrap_or_default(),
            ));
            output::say(format!("tolerance: {}\n", tolerance_line(&tolerance)));
            output::print_table(
                &[
                    "ID",
                    "NAME",
                    "REGION",
                    "ROLE",
                    "STATE",
                    "APPLIED",
                    "LAG",
                    "LAST CONTACT",
                    "STALENESS",
                    "API",
                ],
                &r.nodes
                    .iter()
                    .map(|n| {
                        let i = n.node.clone().unwrap_or_default();
                        let mut row = vec![i.id.to_string(), i.name, i.region, n.role.clone()];
                        match &n.local {
                            Some(l) => row.extend([
                                l.state.clone(),
                                l.applied_index.to_string(),
                                l.lag.to_string(),
                                if n.role == "leader" {
                                    "-".into()
                                } else {
                                    ms(l.last_contact_ms)
                                },
                                ms(l.staleness_upper_bound_ms),
                            ]),
                            None => row.extend(["unreachable".into(), "-".into(), "-".into(), "-".into(), "-".into()]),
                        }
                        row.push(i.api_addr);
                        row
                    })
                    .collect::<Vec<_>>(),
            );
            for l in r.nodes.iter().filter_map(|n| n.local.as_ref()) {
                if !l.out_of_disk.is_empty() {
                    output::say(format!("warning: {}", l.out_of_disk));
                }
            }
            let mut regions: std::collections::BTreeSet<&String> = tolerance.voters_per_region.keys().collect();
            regions.extend(tolerance.learners_per_region.keys());
            println!();
            output::print_table(
                &["REGION", "VOTERS", "LEARNERS"],
                &regions
                    .into_iter()
                    .map(|reg| {
                        vec![
                            reg.clone(),
                            tolerance.voters_per_region.get(reg).copied().unwrap_or(0).to_string(),
                            tolerance.learners_per_region.get(reg).copied().unwrap_or(0).to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
}
