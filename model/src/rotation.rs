//! The rotation state machine (docs/architecture.md: Rotation): one run at a time per secret,
//! through steps every replica applies alike, whichever leader proposed them.
//!
//! ```text
//! StartRotation ──> CREATE_PENDING ──AddVersion(PENDING, run)──> PROMOTE
//!   ──AdvanceRotation──> OVERLAP (CURRENT = new by compare-and-swap, PREVIOUS = old)
//!   ──AdvanceRotation, overlap over (and unused, or forced at the deadline)──> RETIRED (old disabled)
//!   ──AdvanceRotation, retention over──> DONE (old destroyed)
//! ```
//!
//! Invariants:
//! - A secret has at most one run in flight (`CREATE_PENDING` to `RETIRED`); a run starts only
//!   as the next number after the last one, so two schedulers (an old leader and a new one)
//!   cannot both start one.
//! - Every step names the run and the step it leaves: a command for another run or step is
//!   refused and changes nothing, so each step of a run is applied once, whoever retries it.
//!   The run's `events` hold each step reached, once, with who and when.
//! - A run promotes only its own new version, and only while CURRENT is still the version it
//!   started from: if CURRENT moved under it, the run ends FAILED and CURRENT stays.
//! - CURRENT never points at a disabled or destroyed version: retiring disables PREVIOUS, which
//!   is not CURRENT, and a rollback moves CURRENT only to an enabled PREVIOUS.
//! - Time checks use the command's `proposed_at_ms` (no clock here), so every replica agrees.
//! - Every secret with a policy has one entry in the rotation queue (`q/`), at the time the
//!   scheduler should look at it next ([`requeue`], run by every save of a secret).

use crate::aliases::point_alias;
use crate::context::At;
use crate::error::fail;
use crate::error::Result;
use crate::keys;
use crate::names;
use crate::pb;
use crate::pb::ErrorCode;
use crate::pb::RotationStep as Step;
use crate::pb::RotationStrategy;
use crate::rotation_policy;
use coffer_kv::Txn;

/// Steps a run keeps in `events` (each of the five at most once, and an end).
pub const MAX_EVENTS: usize = 8;
/// Longest failure reason kept (a hook's answer is cut to it).
pub const MAX_ERROR_BYTES: usize = 256;
/// The wait before the next attempt after the first failure, doubling up to
/// [`max_backoff_ms`] of the period, and never more than [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u64 = 1000;
pub const MAX_BACKOFF_MS: u64 = 3_600_000;

/// The quiet window of a version outside a rotation's overlap, when the secret has no
/// rotation policy: a day.
pub const DEFAULT_QUIET_MS: u64 = 86_400_000;
/// The shortest quiet window (an overlap of 0 still waits this long after the last read).
pub const MIN_QUIET_MS: u64 = 1000;

/// Reads at or after this time keep `version` of `secret` in use at `now`: one quiet window
/// (the policy's overlap) back from `now`, and never before the overlap of the rotation that
/// made it PREVIOUS began. At the overlap's end that is "no read since the overlap began".
/// Never decreases as `now` grows.
pub fn quiet_since(secret: &pb::Secret, version: u64, now: u64) -> u64 {
    let window = secret
        .rotation
        .as_ref()
        .map_or(DEFAULT_QUIET_MS, |p| p.overlap_ms)
        .max(MIN_QUIET_MS);
    let back = now.saturating_sub(window);
    match running(secret) {
        Some(run) if step_of(run) == Step::Overlap && run.old_version == version => back.max(run.step_at_ms),
        _ => back,
    }
}

/// Whether `step` is one a run is in flight at.
pub fn in_flight(step: Step) -> bool {
    matches!(
        step,
        Step::CreatePending | Step::Promote | Step::Overlap | Step::Retired
    )
}

pub fn step_of(run: &pb::RotationRun) -> Step {
    Step::try_from(run.step).unwrap_or(Step::Unspecified)
}

pub fn step_name(step: Step) -> &'static str {
    match step {
        Step::Unspecified => "none",
        Step::CreatePending => "create-pending",
        Step::Promote => "promote",
        Step::Overlap => "overlap",
        Step::Retired => "retired",
        Step::Done => "done",
        Step::Failed => "failed",
        Step::RolledBack => "rolled-back",
    }
}

/// The run in flight on `secret`, if any.
pub fn running(secret: &pb::Secret) -> Option<&pb::RotationRun> {
    secret.rotation_run.as_ref().filter(|r| in_flight(step_of(r)))
}

/// When `secret` is due for its next rotation (its CURRENT older than the period), if it has a
/// policy. A secret without CURRENT is due from its creation: it has no value to serve yet.
pub fn due_at(secret: &pb::Secret) -> Option<u64> {
    let p = secret.rotation.as_ref()?;
    if !secret.aliases.contains_key(names::CURRENT) {
        return Some(secret.created_at_ms);
    }
    let since = if secret.current_since_ms != 0 {
        secret.current_since_ms
    } else {
        secret.created_at_ms
    };
    Some(since.saturating_add(p.period_ms))
}

/// When the scheduler should look at `secret` next, and whether only to report it (a manual
/// secret that is due: people rotate it) rather than act. `None`: never (no policy).
pub fn wake(secret: &pb::Secret) -> Option<(u64, bool)> {
    let p = secret.rotation.as_ref()?;
    let manual = rotation_policy::strategy(p) == RotationStrategy::Manual;
    if let Some(run) = running(secret) {
        let at = match step_of(run) {
            Step::Overlap => run.step_at_ms.saturating_add(p.overlap_ms),
            Step::Retired => run.step_at_ms.saturating_add(rotation_policy::retention_ms(p)),
            // A manual run waits for a person's value: reported, not acted on.
            Step::CreatePending if manual => return Some((run.retry_at_ms, true)),
            _ => run.retry_at_ms,
        };
        return Some((at, false));
    }
    Some((due_at(secret)?, manual))
}

/// Moves `secret`'s queue entry to where [`wake`] says (the caller saves `secret`).
pub(crate) fn requeue(tx: &mut Txn<'_, '_>, secret: &mut pb::Secret) {
    let now = wake(secret);
    let was = (secret.rotation_wake_ms != 0).then_some((secret.rotation_wake_ms, secret.rotation_wake_manual));
    if now == was {
        return;
    }
    if let Some((at, manual)) = was {
        tx.delete(keys::rotation_queue(manual, at, &secret.name));
    }
    match now {
        Some((at, manual)) => {
            // 0 means "not queued" in the record; a wake at 0 is the same as at 1.
            let at = at.max(1);
            tx.put(keys::rotation_queue(manual, at, &secret.name), Vec::new());
            secret.rotation_wake_ms = at;
            secret.rotation_wake_manual = manual;
        }
        None => {
            secret.rotation_wake_ms = 0;
            secret.rotation_wake_manual = false;
        }
    }
}

fn event(step: Step, at: &At<'_>, version: u64, forced: bool) -> pb::RotationEvent {
    pb::RotationEvent {
        step: step as i32,
        at_ms: at.now,
        by: at.principal.to_string(),
        version,
        forced,
        ..Default::default()
    }
}

/// Moves `run` to `step`, recording it.
fn reach(run: &mut pb::RotationRun, step: Step, at: &At<'_>, version: u64, forced: bool) {
    run.step = step as i32;
    run.step_at_ms = at.now;
    run.attempts = 0;
    run.last_error.clear();
    run.retry_at_ms = at.now;
    if run.events.len() < MAX_EVENTS {
        run.events.push(event(step, at, version, forced));
    }
}

/// The run `c_run` at `step`, or the refusal naming what it is instead.
fn expect_run(secret: &mut pb::Secret, c_run: u64, step: Step) -> Result<&mut pb::RotationRun> {
    let name = secret.name.clone();
    match secret.rotation_run.as_mut() {
        Some(r) if r.run == c_run && step_of(r) == step => Ok(r),
        Some(r) => fail(
            ErrorCode::FailedPrecondition,
            format!(
                "rotation {} of {name} is at step {}, not rotation {c_run} at step {}",
                r.run,
                step_name(step_of(r)),
                step_name(step)
            ),
        ),
        None => fail(ErrorCode::FailedPrecondition, format!("{name} has no rotation {c_run}")),
    }
}

pub(crate) fn start(secret: &mut pb::Secret, c: &pb::StartRotation, at: &At<'_>) -> Result<()> {
    if secret.rotation.is_none() {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "{} has no rotation policy; give it one (coffer secret update --rotation-period)",
                secret.name
            ),
        );
    }
    if let Some(r) = running(secret) {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "rotation {} of {} is in flight (step {}); one at a time",
                r.run,
                secret.name,
                step_name(step_of(r))
            ),
        );
    }
    let last = secret.rotation_run.as_ref().map_or(0, |r| r.run);
    // 0: whichever is next (a person's `coffer secret rotate`); the scheduler names it, so two
    // schedulers cannot both start one.
    if c.run != 0 && c.run != last + 1 {
        return fail(
            ErrorCode::FailedPrecondition,
            format!("the next rotation of {} is {}, not {}", secret.name, last + 1, c.run),
        );
    }
    let old = secret.aliases.get(names::CURRENT).copied().unwrap_or(0);
    let mut run = pb::RotationRun {
        run: last + 1,
        old_version: old,
        started_at_ms: at.now,
        ..Default::default()
    };
    reach(&mut run, Step::CreatePending, at, old, false);
    secret.rotation_run = Some(run);
    Ok(())
}

/// Checks that an AddVersion for run `c_run` may land (as PENDING, while the run waits for its
/// value), before anything is written.
pub(crate) fn check_pending(secret: &mut pb::Secret, c_run: u64, alias: Option<&str>) -> Result<()> {
    if alias != Some(names::PENDING) {
        return fail(
            ErrorCode::InvalidArgument,
            "a rotation's new version goes in as PENDING",
        );
    }
    expect_run(secret, c_run, Step::CreatePending).map(|_| ())
}

/// The run waiting for its new value, if any.
pub fn waiting_run(secret: &pb::Secret) -> Option<u64> {
    running(secret)
        .filter(|r| step_of(r) == Step::CreatePending)
        .map(|r| r.run)
}

/// Records that run `c_run`'s new value landed as `version` (checked by [`check_pending`]).
pub(crate) fn pending_written(secret: &mut pb::Secret, c_run: u64, version: u64, at: &At<'_>) -> Result<()> {
    let run = expect_run(secret, c_run, Step::CreatePending)?;
    run.new_version = version;
    reach(run, Step::Promote, at, version, false);
    Ok(())
}

/// What an advance did to versions, for the caller to write: nothing, disable or destroy the
/// old version.
pub(crate) enum Retire {
    Nothing,
    Disable(u64),
    Destroy(u64),
}

/// One step forward from `c.from`; the caller applies what it returns to the versions.
/// `enabled` says whether a version of the secret is enabled.
pub(crate) fn advance(
    secret: &mut pb::Secret,
    c: &pb::AdvanceRotation,
    at: &At<'_>,
    enabled: impl Fn(u64) -> Result<bool>,
) -> Result<Retire> {
    let from = Step::try_from(c.from).unwrap_or(Step::Unspecified);
    let policy = secret.rotation.clone().unwrap_or_default();
    let current = secret.aliases.get(names::CURRENT).copied().unwrap_or(0);
    let name = secret.name.clone();
    let must_be_quiet_from = secret
        .rotation_run
        .as_ref()
        .map_or(0, |r| quiet_since(secret, r.old_version, at.now));
    let run = expect_run(secret, c.run, from)?;
    match from {
        Step::Promote => {
            let usable = enabled(run.new_version)?;
            let why = if current != run.old_version {
                Some(format!(
                    "CURRENT moved to version {current} during the rotation (it started from {})",
                    run.old_version
                ))
            } else if !usable {
                Some(format!("the new version {} is no longer enabled", run.new_version))
            } else {
                None
            };
            if let Some(why) = why {
                let new = run.new_version;
                reach(run, Step::Failed, at, new, false);
                run.last_error = cut(&why);
                return Ok(Retire::Nothing);
            }
            let (old, new) = (run.old_version, run.new_version);
            reach(run, if old == 0 { Step::Done } else { Step::Overlap }, at, new, false);
            point_alias(secret, names::CURRENT, new, at.now);
            Ok(Retire::Nothing)
        }
        Step::Overlap => {
            let over = run.step_at_ms.saturating_add(policy.overlap_ms);
            let deadline = over.saturating_add(rotation_policy::retire_deadline_ms(&policy));
            let due = if c.forced { deadline } else { over };
            if at.now < due {
                return fail(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "version {} of {name} may be retired {} from {due} (ms since the epoch), not at {}",
                        run.old_version,
                        if c.forced { "by force" } else { "" },
                        at.now
                    ),
                );
            }
            if !c.forced {
                check_quiet(c, must_be_quiet_from, at.now, &name, run.old_version)?;
            }
            let old = run.old_version;
            reach(run, Step::Retired, at, old, c.forced);
            if !c.forced {
                if let Some(e) = run.events.last_mut().filter(|e| e.step == Step::Retired as i32) {
                    e.quiet_from_ms = c.quiet_from_ms;
                    e.quiet_until_ms = c.quiet_until_ms;
                }
            }
            Ok(Retire::Disable(old))
        }
        Step::Retired => {
            let due = run.step_at_ms.saturating_add(rotation_policy::retention_ms(&policy));
            if at.now < due {
                return fail(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "version {} of {name} is kept until {due} (ms since the epoch)",
                        run.old_version
                    ),
                );
            }
            let old = run.old_version;
            reach(run, Step::Done, at, old, false);
            Ok(Retire::Destroy(old))
        }
        _ => fail(
            ErrorCode::InvalidArgument,
            format!("a rotation does not advance from step {}", step_name(from)),
        ),
    }
}

/// Refuses an unforced retire whose evidence window (no read of the old version on any member)
/// is malformed, lies in the future, or does not reach back to `must_be_quiet_from`.
fn check_quiet(c: &pb::AdvanceRotation, must_be_quiet_from: u64, now: u64, name: &str, old: u64) -> Result<()> {
    let (from, until) = (c.quiet_from_ms, c.quiet_until_ms);
    if until == 0 || from > until || until > now {
        return fail(
            ErrorCode::InvalidArgument,
            format!("retiring version {old} of {name} before its deadline needs a window [quiet_from_ms, quiet_until_ms] up to the command's time; got [{from}, {until}]"),
        );
    }
    if from > must_be_quiet_from {
        return fail(
            ErrorCode::FailedPrecondition,
            format!("version {old} of {name} must be unread from {must_be_quiet_from} (ms since the epoch) to be retired, and was shown unread only from {from}"),
        );
    }
    Ok(())
}

/// A failed attempt at run `c.run`'s step `c.step`: counted, its reason kept, the next attempt
/// after a backoff that doubles per failure.
pub(crate) fn failed(secret: &mut pb::Secret, c: &pb::RotationFailed, at: &At<'_>) -> Result<()> {
    let step = Step::try_from(c.step).unwrap_or(Step::Unspecified);
    let cap = max_backoff_ms(secret.rotation.as_ref().map_or(0, |p| p.period_ms));
    let run = expect_run(secret, c.run, step)?;
    run.attempts = run.attempts.saturating_add(1);
    run.last_error = cut(&c.error);
    let shift = (run.attempts - 1).min(20);
    run.retry_at_ms = at.now.saturating_add((FIRST_BACKOFF_MS << shift).min(cap));
    Ok(())
}

/// The longest wait between attempts: a quarter of the period, 1 s to [`MAX_BACKOFF_MS`] (a
/// secret rotated every few seconds must not wait an hour once its KMS is back).
pub fn max_backoff_ms(period_ms: u64) -> u64 {
    (period_ms / 4).clamp(FIRST_BACKOFF_MS, MAX_BACKOFF_MS)
}

/// Moves CURRENT back to PREVIOUS (compare-and-swap on CURRENT), while PREVIOUS is enabled. A
/// run in flight ends ROLLED_BACK.
pub(crate) fn rollback(
    secret: &mut pb::Secret,
    c: &pb::RollbackRotation,
    at: &At<'_>,
    enabled: impl Fn(u64) -> Result<bool>,
) -> Result<u64> {
    let name = secret.name.clone();
    let current = secret.aliases.get(names::CURRENT).copied().unwrap_or(0);
    if current != c.expected_current {
        return Err(crate::error::ModelError {
            code: ErrorCode::CasFailed,
            message: format!(
                "alias CURRENT of {name} points at version {current}, not the expected {}",
                c.expected_current
            ),
            next_version: 0,
            actual_version: current,
        }
        .into());
    }
    let Some(previous) = secret.aliases.get(names::PREVIOUS).copied() else {
        return fail(
            ErrorCode::FailedPrecondition,
            format!("{name} has no PREVIOUS version to roll back to"),
        );
    };
    if !enabled(previous)? {
        return fail(
            ErrorCode::FailedPrecondition,
            format!("PREVIOUS (version {previous}) of {name} is retired; there is nothing to roll back to"),
        );
    }
    point_alias(secret, names::CURRENT, previous, at.now);
    if let Some(run) = secret.rotation_run.as_mut().filter(|r| in_flight(step_of(r))) {
        reach(run, Step::RolledBack, at, previous, false);
    }
    Ok(previous)
}

/// `s` cut to [`MAX_ERROR_BYTES`] at a character boundary, control characters dropped.
fn cut(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars().filter(|c| !c.is_control()) {
        if out.len() + ch.len_utf8() > MAX_ERROR_BYTES {
            break;
        }
        out.push(ch);
    }
    out
}

/// What the scheduler should do for a secret at `now` (the leader's clock), from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing now: not due, backing off, or waiting for a person (a manual secret).
    Wait,
    /// Start run `.0` (due, an automatic strategy, none in flight).
    Start(u64),
    /// Run `.0` waits for its new value, by its strategy.
    Value(u64),
    /// Promote run `.0`'s new value.
    Promote(u64),
    /// The overlap of `run` is over: retire the old version if it is no longer read, or by
    /// force once `deadline_passed`.
    Retire { run: u64, deadline_passed: bool },
    /// The retention of run `.0` is over: destroy the old version.
    Destroy(u64),
}

/// The step [`Next`] says `secret` is ready for at `now`.
pub fn next(secret: &pb::Secret, now: u64) -> Next {
    let Some(p) = &secret.rotation else {
        return Next::Wait;
    };
    if let Some(run) = running(secret) {
        let r = run.run;
        return match step_of(run) {
            Step::CreatePending if now >= run.retry_at_ms => Next::Value(r),
            Step::Promote if now >= run.retry_at_ms => Next::Promote(r),
            Step::Overlap => {
                let over = run.step_at_ms.saturating_add(p.overlap_ms);
                if now < over {
                    Next::Wait
                } else {
                    Next::Retire {
                        run: r,
                        deadline_passed: now >= over.saturating_add(rotation_policy::retire_deadline_ms(p)),
                    }
                }
            }
            Step::Retired if now >= run.step_at_ms.saturating_add(rotation_policy::retention_ms(p)) => Next::Destroy(r),
            _ => Next::Wait,
        };
    }
    if rotation_policy::strategy(p) == RotationStrategy::Manual {
        return Next::Wait;
    }
    match due_at(secret) {
        Some(due) if now >= due => Next::Start(secret.rotation_run.as_ref().map_or(0, |r| r.run) + 1),
        _ => Next::Wait,
    }
}

/// Where a secret's rotation stands (`coffer rotation status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Rotated within its period, nothing in flight.
    Ok,
    /// Its CURRENT is older than its period and no run is in flight (people rotate manual
    /// secrets; an automatic one is about to start).
    Due,
    /// A run is in flight and has not failed its step.
    InFlight,
    /// A run is failing its step (it backs off and retries), or the last run ended failed.
    Failed,
}

impl Standing {
    pub fn name(self) -> &'static str {
        match self {
            Standing::Ok => "ok",
            Standing::Due => "due",
            Standing::InFlight => "in-flight",
            Standing::Failed => "failed",
        }
    }
}

/// How `secret` stands at `now`; `None` without a rotation policy.
pub fn standing(secret: &pb::Secret, now: u64) -> Option<Standing> {
    secret.rotation.as_ref()?;
    if let Some(run) = running(secret) {
        return Some(if run.attempts > 0 {
            Standing::Failed
        } else {
            Standing::InFlight
        });
    }
    if secret.rotation_run.as_ref().is_some_and(|r| step_of(r) == Step::Failed) {
        return Some(Standing::Failed);
    }
    Some(match due_at(secret) {
        Some(due) if now >= due => Standing::Due,
        _ => Standing::Ok,
    })
}
