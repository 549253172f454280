//! The rotation scheduler (docs/architecture.md: Rotation): every tick, the leader looks at the
//! secrets whose rotation queue entry has come (`q/a`, [`query::rotation_due`]) and proposes
//! each one's next step ([`rotation::next`]). Every step is a replicated command that names
//! its run and the step it leaves, so a retry, a deposed leader still ticking, or a new leader
//! picking the work up changes nothing twice: the state machine refuses a step already made.
//! A leader that crashes mid-step leaves the run where the log says; the next leader's first
//! tick continues it.
//!
//! Strategies: `generate` seals a value from the secret's spec ([`super::generate`]) as the
//! run's PENDING version; `manual` runs wait for a person to put that value; `hook` calls the
//! owner's rotator ([`super::hook`]), which puts it. Hook calls run beside the tick, at most
//! one per secret and [`MAX_HOOK_CALLS`] in all, so a slow rotator holds up nothing else. Each
//! step made or failed is an audit record on the leader (principal `system:rotation`, action
//! `rotation:<step>`).
//!
//! Retirement is decided by use ([`crate::usage`]): after the overlap, PREVIOUS is retired only
//! when no member has served a read of it since its quiet window began, and the command
//! carries that window as evidence; until then the secret is looked at again every second; at
//! the retire deadline it is retired by force (a critical audit record and a metric).

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use coffer_model::names;
use coffer_model::query;
use coffer_model::rotation;
use coffer_model::rotation::Next;
use coffer_model::rotation_policy;
use tokio::sync::watch;

use super::hook::HookCall;
use super::hook::Rotators;
use crate::error::ApiError;
use crate::pb;
use crate::pb::command::Op;
use crate::pb::RotationStep as Step;
use crate::pb::RotationStrategy;
use crate::service::put::PutValue;
use crate::service::Service;
use crate::usage::cluster::Retirable;
use crate::usage::verdict::Verdict;

/// Who proposes the scheduler's steps (the commands' principal, the audit records').
pub const PRINCIPAL: &str = "system:rotation";
/// Secrets looked at per tick (the rest wait for the next one).
const PER_TICK: usize = 64;
/// `coffer_secrets_past_rotation_due` is counted every this many ticks (a scan of the queue).
const GAUGE_EVERY_TICKS: u64 = 10;

/// Secrets whose PREVIOUS is still read are looked at again after this long (not every tick).
const IN_USE_RECHECK_MS: u64 = 1000;
/// Secrets remembered as waiting for their PREVIOUS to go unused (more are not skipped).
const MAX_WAITING: usize = 4096;
/// Hook calls in flight at once (a secret due beyond them waits for a later tick).
pub const MAX_HOOK_CALLS: usize = 16;

/// What the scheduler works with: the node's service and how it calls rotators.
#[derive(Clone)]
pub struct Scheduler {
    pub service: Arc<Service>,
    pub rotators: Arc<dyn Rotators>,
    /// Secrets whose rotator is being called (by this node).
    calling: Arc<Mutex<HashSet<String>>>,
}

impl Scheduler {
    pub fn new(service: Arc<Service>, rotators: Arc<dyn Rotators>) -> Self {
        Self {
            service,
            rotators,
            calling: Arc::default(),
        }
    }

    fn calling(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.calling.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs until `stop`: each `tick`, on the leader, one step for each secret that is due.
pub async fn run(scheduler: Scheduler, tick: Duration, mut stop: watch::Receiver<bool>) {
    let service = scheduler.service.clone();
    let mut ticks: u64 = 0;
    // Secrets waiting for their PREVIOUS to go unused, and when to ask again: they stay due in
    // the queue, so without this they would take every tick's places from the others.
    let mut waiting: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        ticks += 1;
        if ticks % GAUGE_EVERY_TICKS == 1 {
            // Every node, from its replica: the gauge reads alike whichever node is scraped.
            if let Ok(r) = service.rotation_status("", "", true, false) {
                metrics::gauge!("coffer_secrets_past_rotation_due").set(r.entries.len() as f64);
            }
        }
        let status = service.raft.status();
        if status.leader != Some(status.id) {
            continue;
        }
        let now = crate::time::now_ms();
        waiting.retain(|_, at| *at > now);
        let due = {
            let view = service.raft.reader().view();
            query::rotation_due(&*view, now, PER_TICK + waiting.len())
        };
        let due = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rotation queue");
                continue;
            }
        };
        let due: Vec<String> = {
            let calling = scheduler.calling();
            due.into_iter()
                .filter(|n| !waiting.contains_key(n) && !calling.contains(n))
                .take(PER_TICK)
                .collect()
        };
        for name in due {
            match step(&scheduler, &name, now).await {
                Ok(Stepped::Made) => {}
                Ok(Stepped::InUse) => {
                    if waiting.len() < MAX_WAITING {
                        waiting.insert(name, now + IN_USE_RECHECK_MS);
                    }
                }
                Err(e) => tracing::info!(secret = %name, error = %e, "rotation step not made; retrying next tick"),
            }
        }
    }
}

/// What a look at one secret came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Stepped {
    /// A step was proposed (or none was due, or another proposal made it).
    Made,
    /// The overlap is over but PREVIOUS is still read (or its use is unknown) and the
    /// deadline has not come: ask again later.
    InUse,
}

/// Proposes `secret`'s next step, if one is due at `now` (a hook run's call is started, not
/// awaited).
pub async fn step(scheduler: &Scheduler, name: &str, now: u64) -> Result<Stepped, ApiError> {
    let service = &*scheduler.service;
    let secret = service.secret_here(name)?;
    let Some(policy) = secret.rotation.clone() else {
        return Ok(Stepped::Made);
    };
    match rotation::next(&secret, now) {
        Next::Retire { run, deadline_passed } => retire(service, &secret, run, deadline_passed).await,
        Next::Value(run) if rotation_policy::strategy(&policy) == RotationStrategy::Hook => {
            start_hook_call(scheduler, name, run, policy.hook_url);
            Ok(Stepped::Made)
        }
        next => step_other(service, name, &policy, next).await.map(|()| Stepped::Made),
    }
}

/// Calls `name`'s rotator for run `run` in a task of its own, unless one is being called
/// already or [`MAX_HOOK_CALLS`] are.
fn start_hook_call(scheduler: &Scheduler, name: &str, run: u64, url: String) {
    {
        let mut calling = scheduler.calling();
        if calling.contains(name) || calling.len() >= MAX_HOOK_CALLS {
            return;
        }
        calling.insert(name.to_string());
    }
    let scheduler = scheduler.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = call_hook(&scheduler, &name, run, &url).await {
            tracing::info!(secret = %name, run, error = %e, "rotation hook attempt not recorded; retrying next tick");
        }
        scheduler.calling().remove(&name);
    });
}

/// One hook call for run `run`, and its outcome on the run: the value landed (audited), or a
/// failed attempt with the reason.
async fn call_hook(scheduler: &Scheduler, name: &str, run: u64, url: &str) -> Result<(), ApiError> {
    let service = &*scheduler.service;
    let call = HookCall {
        secret: name.to_string(),
        run,
        token: service.rotation_token(name, run).await?,
    };
    let started = std::time::Instant::now();
    let answer = scheduler.rotators.call(url, &call).await;
    metrics::histogram!("coffer_rotation_hook_seconds").record(started.elapsed().as_secs_f64());
    let landed = service
        .secret_here(name)
        .ok()
        .and_then(|s| s.rotation_run)
        .filter(|r| r.run == run && r.new_version != 0)
        .map(|r| r.new_version);
    // A rotator that wrote and then failed to answer (in time) still gave the run its value.
    if let Some(version) = landed {
        audit(service, name, "pending", version, "ok", false).await;
        return Ok(());
    }
    let e = match answer {
        Ok(()) => ApiError::FailedPrecondition(format!(
            "hook {url} answered, but no PENDING value of run {run} landed (the rotator puts it with the call's run and token before it answers)"
        )),
        Err(e) => ApiError::Unavailable(e.to_string()),
    };
    failed(service, name, run, Step::CreatePending, &e).await
}

/// Retires PREVIOUS once no member has read it since its quiet window began, or by force at
/// the deadline: a critical audit record and `coffer_rotation_forced_retirements_total` say
/// it may still have been in use.
async fn retire(service: &Service, secret: &pb::Secret, run: u64, deadline_passed: bool) -> Result<Stepped, ApiError> {
    let name = secret.name.as_str();
    let old = secret.rotation_run.as_ref().map_or(0, |r| r.old_version);
    let Retirable {
        verdict,
        reason,
        quiet_from_ms,
        quiet_until_ms,
    } = service.safe_to_retire(secret, old).await;
    if verdict == Verdict::Safe {
        let op = Op::AdvanceRotation(pb::AdvanceRotation {
            quiet_from_ms,
            quiet_until_ms,
            ..advance_command(name, run, Step::Overlap, false)
        });
        made(service, name, "retire", op).await?;
        return Ok(Stepped::Made);
    }
    if !deadline_passed {
        tracing::debug!(secret = %name, version = old, %reason, "PREVIOUS not retired yet");
        return Ok(Stepped::InUse);
    }
    if made(service, name, "retire", advance(name, run, Step::Overlap, true)).await? {
        let why = if verdict == Verdict::InUse { "in-use" } else { "unknown" };
        metrics::counter!("coffer_rotation_forced_retirements_total", "reason" => why).increment(1);
        tracing::warn!(secret = %name, version = old, %reason, "retired PREVIOUS by force at the deadline");
        audit(
            service,
            name,
            "retire-forced",
            old,
            &crate::safe_text::line(&reason),
            true,
        )
        .await;
    }
    Ok(Stepped::Made)
}

/// Every step but retire: `next` as [`rotation::next`] said.
async fn step_other(service: &Service, name: &str, policy: &pb::RotationPolicy, next: Next) -> Result<(), ApiError> {
    match next {
        Next::Wait => Ok(()),
        Next::Start(run) => {
            let op = Op::StartRotation(pb::StartRotation { name: name.into(), run });
            made(service, name, "start", op).await.map(drop)
        }
        Next::Value(run) => match rotation_policy::strategy(policy) {
            RotationStrategy::Generate => {
                let spec = policy.generate.clone().unwrap_or_default();
                let written = async {
                    let value = super::generate::generate(&spec).map_err(|e| ApiError::Unavailable(e.to_string()))?;
                    let id = fresh_id()?;
                    service
                        .put_value(
                            PRINCIPAL,
                            &id,
                            PutValue {
                                name: name.into(),
                                value,
                                alias: names::PENDING.into(),
                                must_exist: true,
                                rotation_run: run,
                            },
                        )
                        .await
                }
                .await;
                match written {
                    Ok(c) => {
                        audit(service, name, "pending", c.ok.version, "ok", false).await;
                        Ok(())
                    }
                    // Another scheduler wrote it first, or the run moved on: nothing to record.
                    Err(ApiError::FailedPrecondition(_)) => Ok(()),
                    Err(e) => failed(service, name, run, Step::CreatePending, &e).await,
                }
            }
            // Called beside the tick (`start_hook_call`).
            RotationStrategy::Hook => Ok(()),
            // People write a manual run's value (coffer secret put --alias pending).
            RotationStrategy::Manual | RotationStrategy::Unspecified => Ok(()),
        },
        Next::Promote(run) => made(service, name, "promote", advance(name, run, Step::Promote, false))
            .await
            .map(drop),
        // Answered by `retire`.
        Next::Retire { .. } => Ok(()),
        Next::Destroy(run) => made(service, name, "destroy", advance(name, run, Step::Retired, false))
            .await
            .map(drop),
    }
}

fn advance(name: &str, run: u64, from: Step, forced: bool) -> Op {
    Op::AdvanceRotation(advance_command(name, run, from, forced))
}

/// The step of `run` from `from` (no quiet window: see `retire`).
fn advance_command(name: &str, run: u64, from: Step, forced: bool) -> pb::AdvanceRotation {
    pb::AdvanceRotation {
        name: name.into(),
        run,
        from: from as i32,
        forced,
        ..Default::default()
    }
}

fn fresh_id() -> Result<String, ApiError> {
    crate::request_ids::fresh().map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// Proposes one step and records it; whether it was applied. A step the state machine refuses
/// was made (or made moot) by another proposal: nothing to record.
async fn made(service: &Service, name: &str, what: &str, op: Op) -> Result<bool, ApiError> {
    let started = std::time::Instant::now();
    match service.propose_as(PRINCIPAL, &fresh_id()?, op).await? {
        Ok(c) => {
            metrics::histogram!("coffer_rotation_step_seconds", "step" => what.to_string())
                .record(started.elapsed().as_secs_f64());
            let end = service
                .secret_here(name)
                .ok()
                .and_then(|s| s.rotation_run)
                .map(|r| rotation::step_of(&r));
            let result = match end {
                Some(Step::Done) => Some("done"),
                Some(Step::Failed) => Some("failed"),
                _ => None,
            };
            if let Some(result) = result {
                metrics::counter!("coffer_rotations_total", "result" => result).increment(1);
            }
            audit(service, name, what, c.ok.version, result.unwrap_or("ok"), false).await;
            Ok(true)
        }
        Err(e) if e.code == pb::ErrorCode::FailedPrecondition => {
            tracing::debug!(secret = %name, step = what, reason = %e.message, "rotation step already made");
            Ok(false)
        }
        Err(e) => Err(ApiError::from(e)),
    }
}

/// Records a failed attempt at `step` of `run` (the run backs off) and audits it.
async fn failed(service: &Service, name: &str, run: u64, step: Step, e: &ApiError) -> Result<(), ApiError> {
    let reason = format!("{}: {e}", e.code());
    let op = Op::RotationFailed(pb::RotationFailed {
        name: name.into(),
        run,
        step: step as i32,
        error: reason,
    });
    metrics::counter!("coffer_rotation_failures_total", "step" => rotation::step_name(step)).increment(1);
    audit(service, name, "failed", 0, e.code(), false).await;
    match service.propose_as(PRINCIPAL, &fresh_id()?, op).await? {
        Ok(_) => Ok(()),
        Err(refused) if refused.code == pb::ErrorCode::FailedPrecondition => Ok(()),
        Err(refused) => Err(ApiError::from(refused)),
    }
}

/// One audit record of a step (never a value: names, versions, outcomes).
async fn audit(service: &Service, name: &str, what: &str, version: u64, outcome: &str, critical: bool) {
    let event = pb::AuditEvent {
        time_ms: crate::time::now_ms(),
        node: service.me.name.clone(),
        region: service.me.region.clone(),
        principal: PRINCIPAL.into(),
        action: format!("rotation:{what}"),
        resource: name.into(),
        version,
        decision: "allow".into(),
        severity: if critical { "critical" } else { "info" }.into(),
        outcome: outcome.into(),
        ..Default::default()
    };
    if let Err(e) = service.audit.record(event).await {
        metrics::counter!("coffer_audit_outcome_failures_total").increment(1);
        tracing::warn!(secret = %name, step = what, error = %e, "the audit record of a rotation step was not written");
    }
}
