//! `coffer drill run`: one drill from the preflight to the report.
//!
//! 1. The membership and the leader from `Cluster.Status`; the plan and its preflight (no
//!    quorum left: refused unless forced).
//! 2. A probe secret per region (`drill/<id>/<region>`, keeping every version, with a first
//!    value), the probes and the node watcher started; a warm-up.
//! 3. The faults raised on their nodes (`Cluster.DrillFault`), each with a deadline a little
//!    past the fault's length, so the nodes heal by themselves if this runner dies.
//! 4. The faults lifted after their length; the probes go on until the fenced nodes applied
//!    every acknowledged write (or a bound passes).
//! 5. Every acknowledged write read back from every node; the report computed, written as
//!    JSON, Markdown and SVG, and stored in the cluster as the secret `drill/<id>/report`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::plan::Member;
use super::plan::NodeFault;
use super::plan::Plan;
use super::probe::Recorder;
use super::probe::Target;
use super::report::Report;
use super::report::Window;
use crate::client::Client;
use crate::pb;
use crate::pb::DrillFaultAction;
use crate::pb::DrillFaultKind;

/// A fault's deadline on its node: the drill's length plus this, so the runner's lift is what
/// normally ends it and the deadline only when the runner is gone.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(2);
/// How long after the fault the probes wait for the fenced nodes to catch up.
pub const MAX_CATCH_UP: Duration = Duration::from_secs(60);
/// How long the runner retries the rewrap after a KMS outage (the region rests a few seconds
/// after its last failure).
pub const REWRAP_WITHIN: Duration = Duration::from_secs(30);
/// Probes go on this long once everyone caught up, so the timeline shows the healed state.
pub const TAIL: Duration = Duration::from_secs(1);

/// How a drill runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub drill_id: String,
    pub duration: Duration,
    pub warmup: Duration,
    /// Test hook: make one probe write be answered without being applied.
    pub lose_a_write: bool,
}

/// What a finished drill hands back: the report and what it was computed from.
pub struct Outcome {
    pub report: Report,
    pub samples: Vec<super::probe::Sample>,
}

/// A connection per member, by member.
pub struct Fleet {
    pub members: Vec<(Member, Client)>,
}

impl Fleet {
    fn targets(&self, f: impl Fn(&Member) -> bool) -> Vec<Target> {
        self.members
            .iter()
            .filter(|(m, _)| f(m))
            .map(|(m, c)| Target {
                name: m.name.clone(),
                region: m.region.clone(),
                client: c.clone(),
            })
            .collect()
    }

    fn client(&self, id: u64) -> Option<&Client> {
        self.members.iter().find(|(m, _)| m.id == id).map(|(_, c)| c)
    }
}

/// The request that raises `fault` for `opts`.
fn raise(opts: &Options, fault: &NodeFault) -> pb::DrillFaultRequest {
    let (kind, region, peers) = match fault {
        NodeFault::Fence => (DrillFaultKind::Fence, String::new(), vec![]),
        NodeFault::KmsOutage(r) => (DrillFaultKind::KmsOutage, r.clone(), vec![]),
        NodeFault::CutFrom(p) => (DrillFaultKind::Partition, String::new(), p.clone()),
    };
    pb::DrillFaultRequest {
        drill_id: opts.drill_id.clone(),
        kind: kind as i32,
        region,
        duration_ms: (opts.duration + DEADLINE_GRACE).as_millis() as u64,
        action: DrillFaultAction::Raise as i32,
        peers,
    }
}

/// What lifting a drill's faults everywhere found.
#[derive(Debug, Default)]
pub struct Lifted {
    /// The members that could not be reached.
    pub unreached: Vec<String>,
    /// Each reached member's KMS usage reading, by node id.
    pub usage: BTreeMap<u64, pb::KmsUsage>,
}

/// Lifts `drill_id`'s faults on every member.
pub async fn lift_everywhere(fleet: &Fleet, drill_id: &str) -> Lifted {
    let lifts = fleet.members.iter().map(|(m, c)| async move {
        let req = pb::DrillFaultRequest {
            drill_id: drill_id.to_string(),
            action: DrillFaultAction::Lift as i32,
            ..Default::default()
        };
        match c.cluster.clone().drill_fault(req).await {
            Ok(r) => Ok((m.id, r.into_inner().kms_usage)),
            Err(e) => Err(format!("{}: {}", m.name, e.message())),
        }
    });
    let mut out = Lifted::default();
    for r in futures::future::join_all(lifts).await {
        match r {
            Ok((id, usage)) => {
                if let Some(u) = usage {
                    out.usage.insert(id, u);
                }
            }
            Err(e) => out.unreached.push(e),
        }
    }
    out
}

/// The KMS usage of `region`'s nodes between the raise and the lift (`None` unless every one
/// of them answered both, without a restart in between).
fn region_usage(
    fleet: &Fleet,
    region: &str,
    at_raise: &BTreeMap<u64, pb::KmsUsage>,
    at_lift: &BTreeMap<u64, pb::KmsUsage>,
) -> Option<pb::KmsUsage> {
    let diffs = fleet
        .members
        .iter()
        .filter(|(m, _)| m.region == region)
        .map(|(m, _)| crate::crypto::kms::usage::between(at_raise.get(&m.id)?, at_lift.get(&m.id)?))
        .collect::<Option<Vec<_>>>()?;
    Some(crate::crypto::kms::usage::sum(&diffs))
}

/// Runs the drill `plan` on `fleet`. Errors only before any fault was raised; afterwards
/// problems go into the report.
pub async fn run(plan: &Plan, fleet: &Fleet, opts: &Options, say: &dyn Fn(&str)) -> Result<Outcome, String> {
    let first = &fleet.members.first().ok_or("the cluster has no members")?.1;
    let regions: std::collections::BTreeSet<String> = fleet.members.iter().map(|(m, _)| m.region.clone()).collect();
    for r in &regions {
        let name = super::probe::probe_secret(&opts.drill_id, r);
        first
            .secrets
            .clone()
            .create_secret(pb::CreateSecretRequest {
                name: name.clone(),
                spec: Some(pb::SecretSpec {
                    description: format!("probe of drill {} in {r}", opts.drill_id),
                    max_versions: super::probe::PROBE_MAX_VERSIONS,
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| format!("cannot create the probe secret {name}: {}", e.message()))?;
        // A first version, so the readers have something to read from the start.
        first
            .secrets
            .clone()
            .put_secret_value(pb::PutSecretValueRequest {
                name: name.clone(),
                value: super::probe::probe_value(&opts.drill_id, r, 0),
                must_exist: true,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot write the probe secret {name}: {}", e.message()))?;
    }
    let started = crate::time::rfc3339_ms(crate::time::now_ms());
    let t0 = Instant::now();
    let rec = Arc::new(Recorder::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for r in &regions {
        let targets = fleet.targets(|m| m.region == *r);
        tasks.push(tokio::spawn(super::probe::run_region(
            opts.drill_id.clone(),
            r.clone(),
            targets,
            t0,
            rec.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(super::probe::watch_nodes(
        fleet.targets(|_| true),
        t0,
        rec.clone(),
        stop.clone(),
    )));
    say(&format!(
        "probing every region for {} ms before the fault",
        opts.warmup.as_millis()
    ));
    tokio::time::sleep(opts.warmup).await;

    // The fault.
    let start_ms = t0.elapsed().as_millis() as u64;
    let mut notes = Vec::new();
    let raises = plan.faults.iter().map(|(m, f)| {
        let req = raise(opts, f);
        let client = fleet.client(m.id).cloned();
        async move {
            let Some(c) = client else {
                return Err(format!("{}: no connection", m.name));
            };
            c.cluster
                .clone()
                .drill_fault(req)
                .await
                .map(|r| (m.id, r.into_inner().kms_usage))
                .map_err(|e| format!("{}: {}", m.name, e.message()))
        }
    });
    let raised = futures::future::join_all(raises).await;
    let usage_at_raise: BTreeMap<u64, pb::KmsUsage> = raised
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter_map(|(id, u)| Some((*id, (*u)?)))
        .collect();
    let failed: Vec<String> = raised.into_iter().filter_map(Result::err).collect();
    if !failed.is_empty() {
        notes.push(format!(
            "UNVERIFIED: some faults were not raised: {}",
            failed.join("; ")
        ));
    }
    if opts.lose_a_write {
        // On a node whose clients are served, so the probe's next write there is "acknowledged".
        let fenced: Vec<u64> = plan.fenced().iter().map(|m| m.id).collect();
        if let Some((m, c)) = fleet.members.iter().find(|(m, _)| !fenced.contains(&m.id)) {
            let req = pb::DrillFaultRequest {
                drill_id: opts.drill_id.clone(),
                kind: DrillFaultKind::LoseNextWrite as i32,
                duration_ms: (opts.duration + DEADLINE_GRACE).as_millis() as u64,
                ..Default::default()
            };
            if let Err(e) = c.cluster.clone().drill_fault(req).await {
                notes.push(format!(
                    "UNVERIFIED: the lose-a-write hook was refused by {}: {}",
                    m.name,
                    e.message()
                ));
            }
        }
    }
    say(&format!(
        "faults raised at +{start_ms} ms; they last {} ms",
        opts.duration.as_millis()
    ));
    tokio::time::sleep(opts.duration).await;
    let lifted = lift_everywhere(fleet, &opts.drill_id).await;
    let end_ms = t0.elapsed().as_millis() as u64;
    if !lifted.unreached.is_empty() {
        say(&format!(
            "could not lift on {} (those faults end by themselves at their deadline)",
            lifted.unreached.join("; ")
        ));
    }
    say(&format!(
        "faults lifted at +{end_ms} ms; waiting for the fenced nodes to catch up"
    ));

    // Catch-up: the fenced nodes' own reports show the newest acknowledged write applied.
    let fenced: Vec<String> = plan.fenced().iter().map(|m| m.name.clone()).collect();
    let newest_at_heal = rec.newest().0;
    let caught_up = |rec: &Recorder| {
        let nodes = rec.nodes.lock().unwrap_or_else(|e| e.into_inner());
        fenced.iter().all(|f| {
            nodes
                .iter()
                .any(|n| n.node == *f && n.at_ms >= end_ms && n.applied_index >= newest_at_heal)
        })
    };
    let deadline = Instant::now() + MAX_CATCH_UP;
    while !caught_up(&rec) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(TAIL).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }

    // After a KMS outage, versions written meanwhile lack the region's wrap until the rewrap
    // job's next pass: rewrap now, as an operator would, so every node can read them back.
    let kms_region = match &plan.scenario {
        super::plan::Scenario::KmsOutage(r) => Some(r.clone()),
        _ => None,
    };
    let mut missing_wrap_after = None;
    if let Some(r) = &kms_region {
        missing_wrap_after = first
            .kms
            .clone()
            .status(pb::KmsStatusRequest {})
            .await
            .ok()
            .and_then(|s| s.into_inner().regions.into_iter().find(|x| x.region == *r))
            .map(|x| x.versions_missing_wrap);
        say(&format!(
            "adding the wraps for {r} the outage left out (coffer kms rewrap --region {r})"
        ));
        let deadline = Instant::now() + REWRAP_WITHIN;
        loop {
            let req = pb::RewrapRequest { region: r.clone() };
            let why = match first.kms.clone().rewrap(req).await {
                Ok(done) if done.get_ref().failures.is_empty() => break,
                Ok(done) => done.into_inner().failures.join("; "),
                Err(e) => e.message().to_string(),
            };
            if Instant::now() >= deadline {
                notes.push(format!(
                    "UNVERIFIED: the rewrap of {r} after the outage did not finish: {why}"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    say("verifying every acknowledged write on every node");
    let samples = rec.samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let nodes = rec.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (lost, mut unverified) =
        super::verify::verify(&opts.drill_id, &fleet.targets(|_| true), &samples, &rec.newest().1).await;
    unverified.extend(notes);
    let report = super::report::compute(super::report::Inputs {
        drill_id: &opts.drill_id,
        scenario: plan.scenario.name(),
        argument: &plan.scenario.argument(),
        started,
        fault: Window { start_ms, end_ms },
        faults: plan
            .faults
            .iter()
            .map(|(m, f)| format!("{f} on {} ({})", m.name, m.region))
            .collect(),
        fenced,
        samples: &samples,
        nodes: &nodes,
        lost,
        unverified,
        expected: plan.expected.clone(),
        kms_usage: kms_region
            .as_deref()
            .and_then(|r| region_usage(fleet, r, &usage_at_raise, &lifted.usage)),
        kms_region,
        missing_wrap_after,
    });
    Ok(Outcome { report, samples })
}
