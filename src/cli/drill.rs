//! `coffer drill run|history|lift`: failover drills against a live cluster
//! (docs/architecture.md: Drills; README: Running a failover drill).
//!
//! `run` needs `drill:run`, and `secrets:write` and `secrets:read` on `drill/*` (its probe
//! secrets and the stored report). It exits non-zero when the drill finds a lost write or a
//! stale linearizable read, naming each.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use serde_json::Value;

use super::error::CliError;
use super::global::connect;
use super::global::connect_to;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::drill::plan;
use crate::drill::plan::Member;
use crate::drill::plan::Scenario;
use crate::drill::report::Report;
use crate::drill::run::Fleet;
use crate::pb;

/// The range a drill's fault may last.
pub const DURATION: std::ops::RangeInclusive<Duration> = Duration::from_secs(3)..=Duration::from_secs(600);
/// The range of the warm-up before the fault.
pub const WARMUP: std::ops::RangeInclusive<Duration> = Duration::from_millis(500)..=Duration::from_secs(60);
/// Stored reports `history` reads at most.
pub const MAX_HISTORY: usize = 200;

#[derive(Debug, Subcommand)]
pub enum DrillCmd {
    /// Run a drill: leader-loss, region-loss REGION, kms-outage REGION or partition 'A|B'
    /// (A and B comma-separated regions). Probes every region while the fault lasts, then
    /// checks every acknowledged write on every node and reports RTO and RPO.
    Run {
        scenario: String,
        /// The scenario's region (region-loss, kms-outage) or region sets (partition).
        arg: Option<String>,
        /// How long the fault lasts (3s to 10m).
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        duration: Duration,
        /// Probing before the fault, for a baseline (500ms to 60s).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        warmup: Duration,
        /// Run even when the fault leaves no quorum (writes stop everywhere meanwhile).
        #[arg(long)]
        force: bool,
        /// Show the plan, the preflight and the expected outcome; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where to write report.json, report.md and timeline.svg (default: ./drill-<id>).
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// Test hook (nodes must run with COFFER_DRILL_TEST_HOOKS=1): one probe write is
        /// answered without being applied, so the drill must catch a lost write.
        #[arg(long, hide = true)]
        test_lose_a_write: bool,
    },
    /// Earlier drills, from the reports stored in the cluster (drill/<id>/report).
    History,
    /// Lift every drill fault on every member at once (a drill's faults also end by themselves).
    Lift {
        /// Only this drill's faults.
        #[arg(long)]
        drill: Option<String>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 15s, 2m)"))
}

pub async fn run(g: &Global, cmd: DrillCmd) -> Result<(), CliError> {
    match cmd {
        DrillCmd::Run {
            scenario,
            arg,
            duration,
            warmup,
            force,
            dry_run,
            report_dir,
            test_lose_a_write,
        } => {
            if !DURATION.contains(&duration) {
                return Err(CliError::invalid("--duration must be within 3s..=10m"));
            }
            if !WARMUP.contains(&warmup) {
                return Err(CliError::invalid("--warmup must be within 500ms..=60s"));
            }
            let scenario = Scenario::parse(&scenario, arg.as_deref()).map_err(CliError::invalid)?;
            let (members, leader) = membership(g).await?;
            let plan = plan::plan(scenario, &members, leader).map_err(CliError::invalid)?;
            show_plan(g, &plan, dry_run);
            if !plan.quorum_kept && !force {
                return Err(CliError::new(format!(
                    "refused: {} would leave {} of {} voters in touch, no quorum; writes would stop everywhere. \
                     Pass --force to run it anyway",
                    plan.scenario,
                    plan.surviving_voters.len(),
                    plan.voters
                )));
            }
            if dry_run {
                return Ok(());
            }
            let fleet = fleet(g, &members).await?;
            let opts = crate::drill::run::Options {
                drill_id: new_drill_id(),
                duration,
                warmup,
                lose_a_write: test_lose_a_write,
            };
            let say = |s: &str| {
                if g.output == Output::Table {
                    output::say(format!("drill {}: {s}", opts.drill_id));
                }
            };
            let outcome = crate::drill::run::run(&plan, &fleet, &opts, &say)
                .await
                .map_err(CliError::new)?;
            let dir = report_dir.unwrap_or_else(|| PathBuf::from(format!("drill-{}", opts.drill_id)));
            write_files(&dir, &outcome)?;
            store(&fleet, &outcome.report).await;
            match g.output {
                Output::Json => output::print_json(&serde_json::to_value(&outcome.report).unwrap_or_default()),
                Output::Table => {
                    println!("{}", outcome.report.markdown());
                    output::say(format!("report: {}", dir.display()));
                }
            }
            if outcome.report.passed {
                Ok(())
            } else {
                Err(CliError::new(format!(
                    "drill {} FAILED: {}",
                    outcome.report.drill_id,
                    outcome.report.failures.join("; ")
                )))
            }
        }
        DrillCmd::History => history(g).await,
        DrillCmd::Lift { drill } => {
            if let Some(d) = &drill {
                crate::drill::faults::check_drill_id(d).map_err(|e| CliError::invalid(e.to_string()))?;
            }
            let (members, _) = membership(g).await?;
            let fleet = fleet(g, &members).await?;
            let mut lifted = Vec::new();
            for (m, c) in &fleet.members {
                let req = pb::DrillFaultRequest {
                    drill_id: drill.clone().unwrap_or_else(|| "any".into()),
                    action: if drill.is_some() {
                        pb::DrillFaultAction::Lift
                    } else {
                        pb::DrillFaultAction::LiftAll
                    } as i32,
                    ..Default::default()
                };
                let r = c.cluster.clone().drill_fault(req).await?.into_inner();
                lifted.push(json!({"node": m.name, "lifted": r.lifted}));
            }
            match g.output {
                Output::Json => output::print_json(&json!(lifted)),
                Output::Table => {
                    for l in &lifted {
                        println!("{}: {} fault(s) lifted", l["node"].as_str().unwrap_or(""), l["lifted"]);
                    }
                }
            }
            Ok(())
        }
    }
}

/// A new drill id: the UTC time to the second and 4 random hex digits.
fn new_drill_id() -> String {
    let now = crate::time::rfc3339_ms(crate::time::now_ms());
    let digits: String = now.chars().filter(char::is_ascii_digit).take(14).collect();
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    format!("{digits}-{:02x}{:02x}", b[0], b[1])
}

async fn membership(g: &Global) -> Result<(Vec<Member>, Option<u64>), CliError> {
    let c = connect(g).await?;
    let s = c
        .cluster
        .clone()
        .status(pb::ClusterStatusRequest {})
        .await?
        .into_inner();
    let members = s
        .nodes
        .iter()
        .filter_map(|n| {
            let info = n.node.as_ref()?;
            Some(Member {
                id: info.id,
                name: info.name.clone(),
                region: info.region.clone(),
                api_addr: info.api_addr.clone(),
                voter: n.role != "learner",
            })
        })
        .collect();
    Ok((members, (s.leader_id != 0).then_some(s.leader_id)))
}

async fn fleet(g: &Global, members: &[Member]) -> Result<Fleet, CliError> {
    let token = g.token.as_deref().filter(|t| !t.is_empty());
    let mut out = Vec::new();
    for m in members {
        let c = connect_to(g, &m.api_addr, token)
            .await
            .map_err(|e| CliError::new(format!("cannot reach {} at {}: {}", m.name, m.api_addr, e.message)))?;
        out.push((m.clone(), c));
    }
    Ok(Fleet { members: out })
}

fn show_plan(g: &Global, plan: &plan::Plan, dry_run: bool) {
    if g.output == Output::Json {
        if dry_run {
            output::print_json(&json!({
                "scenario": plan.scenario.name(),
                "argument": plan.scenario.argument(),
                "faults": plan.faults.iter().map(|(m, f)| json!({"node": m.name, "region": m.region, "fault": f.to_json()})).collect::<Vec<_>>(),
                "voters": plan.voters,
                "surviving_voters": plan.surviving_voters,
                "quorum_kept": plan.quorum_kept,
                "expected": plan.expected,
            }));
        }
        return;
    }
    println!("drill plan: {}", plan.scenario);
    for (m, f) in &plan.faults {
        println!("  {} ({}): {f}", m.name, m.region);
    }
    println!(
        "preflight: {} of {} voters stay in touch: {}",
        plan.surviving_voters.len(),
        plan.voters,
        if plan.quorum_kept { "a quorum" } else { "NO QUORUM" }
    );
    println!("expected:");
    for e in &plan.expected {
        println!("  - {e}");
    }
}

fn write_files(dir: &std::path::Path, o: &crate::drill::run::Outcome) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    let json = serde_json::json!({"report": o.report, "samples": o.samples});
    let files = [
        ("report.json", serde_json::to_string_pretty(&json).unwrap_or_default()),
        ("report.md", o.report.markdown()),
        ("timeline.svg", crate::drill::timeline::svg(&o.report, &o.samples)),
    ];
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| CliError::new(format!("{}: {e}", p.display())))?;
    }
    Ok(())
}

/// The report's secret in the cluster.
pub fn report_secret(drill_id: &str) -> String {
    format!("drill/{drill_id}/report")
}

/// Stores the report in the cluster (any member that answers); a warning when none does.
async fn store(fleet: &Fleet, r: &Report) {
    let value = serde_json::to_vec(r).unwrap_or_default();
    for (_, c) in &fleet.members {
        let req = pb::PutSecretValueRequest {
            name: report_secret(&r.drill_id),
            value: value.clone(),
            ..Default::default()
        };
        if c.secrets.clone().put_secret_value(req).await.is_ok() {
            return;
        }
    }
    output::say("warning: the report could not be stored in the cluster (drill history will not list it)");
}

async fn history(g: &Global) -> Result<(), CliError> {
    let c = connect(g).await?;
    let mut names = Vec::new();
    let mut page = String::new();
    loop {
        let r = c
            .secrets
            .clone()
            .list_secrets(pb::ListSecretsRequest {
                prefix: "drill/".into(),
                page_token: page.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        names.extend(r.names.into_iter().filter(|n| n.ends_with("/report")));
        if r.next_page_token.is_empty() || names.len() >= MAX_HISTORY {
            break;
        }
        page = r.next_page_token;
    }
    let mut reports: Vec<Report> = Vec::new();
    for n in names.iter().take(MAX_HISTORY) {
        let v = c
            .secrets
            .clone()
            .get_secret_value(pb::GetSecretValueRequest {
                name: n.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        match serde_json::from_slice::<Report>(&v.value) {
            Ok(r) => reports.push(r),
            Err(e) => output::say(format!("warning: {n} is not a drill report ({e})")),
        }
    }
    reports.sort_by(|a, b| b.started.cmp(&a.started));
    let rows: Vec<Value> = reports
        .iter()
        .map(|r| {
            json!({
                "drill_id": r.drill_id,
                "scenario": r.scenario,
                "argument": r.argument,
                "started": r.started,
                "passed": r.passed,
                "rto_ms": r.rto_ms,
                "rpo": {"acked_writes": r.rpo.acked_writes, "lost_writes": r.rpo.lost_writes},
            })
        })
        .collect();
    match g.output {
        Output::Json => output::print_json(&json!(rows)),
        Output::Table => {
            let table: Vec<Vec<String>> = reports
                .iter()
                .map(|r| {
                    vec![
                        r.drill_id.clone(),
                        format!("{} {}", r.scenario, r.argument).trim().to_string(),
                        r.started.clone(),
                        if r.passed { "passed" } else { "FAILED" }.into(),
                        r.rto_ms
                            .get("writes")
                            .copied()
                            .flatten()
                            .map_or("—".into(), |v| format!("{v} ms")),
                        format!("{}/{}", r.rpo.lost_writes, r.rpo.acked_writes),
                    ]
                })
                .collect();
            output::print_table(
                &["DRILL", "SCENARIO", "STARTED", "RESULT", "WRITE RTO", "LOST/ACKED"],
                &table,
            );
        }
    }
    Ok(())
}
