//! Rotation commands as the state machine applies them: the run's step
//! ([`crate::rotation`]), then what the step does to the secret's versions (the old one
//! disabled or destroyed), the version cap, and the save (with the secret's queue entry).

use crate::context::At;
use crate::error::fail;
use crate::error::Result;
use crate::pb;
use crate::pb::ErrorCode;
use crate::rotation;
use crate::secrets;
use crate::version_cap;
use coffer_kv::Txn;

fn enabled(tx: &Txn<'_, '_>, name: &str, version: u64) -> Result<bool> {
    Ok(secrets::load_version(tx, name, version)?.is_some_and(|v| v.state == pb::VersionState::Enabled as i32))
}

/// Applies a rotation command to the secret `name` names: the run's step, then what it does to
/// versions (disable or destroy the old one), the cap, and the save with the queue entry.
pub(crate) fn apply(
    tx: &mut Txn<'_, '_>,
    secret: Option<pb::Secret>,
    op: &pb::command::Op,
    at: &At<'_>,
) -> Result<pb::CommandOk> {
    use pb::command::Op;
    let name = match op {
        Op::StartRotation(c) => &c.name,
        Op::AdvanceRotation(c) => &c.name,
        Op::RotationFailed(c) => &c.name,
        Op::RollbackRotation(c) => &c.name,
        _ => return fail(ErrorCode::Internal, "not a rotation command"),
    };
    let mut secret = secrets::require_secret(secret, name)?;
    let mut destroyed = Vec::new();
    let version = match op {
        Op::StartRotation(c) => {
            rotation::start(&mut secret, c, at)?;
            0
        }
        Op::AdvanceRotation(c) => match rotation::advance(&mut secret, c, at, |v| enabled(tx, name, v))? {
            rotation::Retire::Nothing => secret.rotation_run.as_ref().map_or(0, |r| r.new_version),
            rotation::Retire::Disable(v) => {
                // Injected bug (simulations only): retire the new version, CURRENT.
                let v = if coffer_kv::bugs::active(coffer_kv::bugs::Bug::RotationRetiresCurrent) {
                    secret.rotation_run.as_ref().map_or(v, |r| r.new_version)
                } else {
                    v
                };
                // Someone may have disabled or destroyed it by hand meanwhile: nothing to do then.
                match secrets::load_version(tx, name, v)? {
                    Some(rec) if rec.state == pb::VersionState::Enabled as i32 => {
                        secrets::set_state(tx, rec, false, at)
                    }
                    _ => {}
                }
                v
            }
            rotation::Retire::Destroy(v) => {
                match secrets::load_version(tx, name, v)? {
                    Some(rec) if rec.state != pb::VersionState::Destroyed as i32 => {
                        secrets::destroy(tx, &mut secret, rec, at);
                        destroyed.push(v);
                    }
                    _ => {}
                }
                v
            }
        },
        Op::RotationFailed(c) => {
            rotation::failed(&mut secret, c, at)?;
            0
        }
        Op::RollbackRotation(c) => rotation::rollback(&mut secret, c, at, |v| enabled(tx, name, v))?,
        _ => unreachable!("matched above"),
    };
    let pruned = version_cap::prune(tx, &mut secret)?;
    secrets::save_secret(tx, &mut secret, at);
    Ok(pb::CommandOk {
        pruned,
        destroyed,
        ..secrets::ok(&secret, version)
    })
}

#[cfg(test)]
mod tests {
    use crate::error::ModelError;
    use crate::keys;
    use crate::pb;
    use crate::pb::command::Op;
    use crate::pb::ErrorCode;
    use crate::pb::RotationStep as Step;
    use crate::test_sm::add;
    use crate::test_sm::Sm;

    const NAME: &str = "acme/db";
    const PERIOD: u64 = 10_000;
    const OVERLAP: u64 = 1_000;
    const RETENTION: u64 = 2_000;
    const DEADLINE: u64 = 5_000;

    fn policy(strategy: pb::RotationStrategy) -> pb::RotationPolicy {
        pb::RotationPolicy {
            period_ms: PERIOD,
            overlap_ms: OVERLAP,
            strategy: strategy as i32,
            retention_ms: RETENTION,
            retire_deadline_ms: DEADLINE,
            ..Default::default()
        }
    }

    /// A secret with a `strategy` policy and no version yet.
    fn created(strategy: pb::RotationStrategy) -> Sm {
        let mut sm = Sm::new();
        sm.run(Op::CreateSecret(pb::CreateSecret {
            name: NAME.into(),
            spec: Some(pb::SecretSpec {
                rotation: Some(policy(strategy)),
                ..Default::default()
            }),
        }))
        .unwrap();
        sm
    }

    /// A secret with a generate policy and version 1 CURRENT.
    fn setup() -> Sm {
        let mut sm = created(pb::RotationStrategy::Generate);
        sm.put(NAME, 1, "CURRENT").unwrap();
        sm
    }

    fn secret(sm: &Sm) -> pb::Secret {
        crate::query::secret(&*sm.backend.view(), NAME).unwrap()
    }

    fn run_of(sm: &Sm) -> pb::RotationRun {
        secret(sm).rotation_run.unwrap()
    }

    fn step(sm: &Sm) -> Step {
        crate::rotation::step_of(&run_of(sm))
    }

    fn start(run: u64) -> Op {
        Op::StartRotation(pb::StartRotation { name: NAME.into(), run })
    }

    fn pending(run: u64, version: u64) -> Op {
        let mut op = add(NAME, version, "PENDING");
        if let Op::AddVersion(a) = &mut op {
            a.rotation_run = run;
        }
        op
    }

    fn advance(run: u64, from: Step, forced: bool) -> Op {
        Op::AdvanceRotation(pb::AdvanceRotation {
            name: NAME.into(),
            run,
            from: from as i32,
            forced,
            ..Default::default()
        })
    }

    /// An unforced retire of run `run` that shows the old version unread from `from` to `until`.
    fn retire_quiet(run: u64, from: u64, until: u64) -> Op {
        Op::AdvanceRotation(pb::AdvanceRotation {
            name: NAME.into(),
            run,
            from: Step::Overlap as i32,
            forced: false,
            quiet_from_ms: from,
            quiet_until_ms: until,
        })
    }

    fn rollback(expected_current: u64) -> Op {
        Op::RollbackRotation(pb::RollbackRotation {
            name: NAME.into(),
            expected_current,
        })
    }

    fn refused(r: Result<pb::CommandOk, ModelError>) -> ErrorCode {
        r.expect_err("refused").code
    }

    /// The rotation queue: (time, manual, name) of every entry.
    fn queue(sm: &Sm) -> Vec<(u64, bool, String)> {
        let mut out = vec![];
        sm.backend
            .view()
            .for_each(&mut |k, _| {
                if let Some((at, manual, name)) = keys::parse_rotation_queue(k) {
                    out.push((at, manual, name.to_string()));
                }
                Ok(())
            })
            .unwrap();
        out
    }

    fn version_state(sm: &Sm, v: u64) -> pb::VersionState {
        let view = sm.backend.view();
        let b = view.get(&keys::version(NAME, v)).unwrap().unwrap();
        let rec: pb::SecretVersion = prost::Message::decode(&*b).unwrap();
        pb::VersionState::try_from(rec.state).unwrap()
    }

    /// Runs `sm` through start, pending and promote: CURRENT 2, PREVIOUS 1, at OVERLAP.
    fn to_overlap(sm: &mut Sm) {
        sm.run(start(1)).unwrap();
        sm.run(pending(1, 2)).unwrap();
        sm.run(advance(1, Step::Promote, false)).unwrap();
        assert_eq!(step(sm), Step::Overlap);
    }

    #[test]
    fn a_run_goes_through_every_step_once_and_no_step_applies_twice() {
        let mut sm = setup();
        let created = secret(&sm);
        assert_eq!(
            queue(&sm),
            [(created.current_since_ms + PERIOD, false, NAME.to_string())],
            "due a period after CURRENT moved"
        );
        sm.run(start(1)).unwrap();
        assert_eq!((step(&sm), run_of(&sm).old_version), (Step::CreatePending, 1));
        // One at a time, and only the next run number.
        assert_eq!(refused(sm.run(start(2))), ErrorCode::FailedPrecondition);
        assert_eq!(refused(sm.run(start(1))), ErrorCode::FailedPrecondition);
        // The new value lands as PENDING, once: a second value for the run is refused.
        let w = sm.run(pending(1, 2)).unwrap();
        assert_eq!((w.version, w.aliases.get("PENDING")), (2, Some(&2)));
        assert_eq!(refused(sm.run(pending(1, 3))), ErrorCode::FailedPrecondition);
        assert_eq!(secret(&sm).next_version, 3, "no second version");
        assert_eq!(
            refused(sm.run(advance(1, Step::CreatePending, false))),
            ErrorCode::FailedPrecondition
        );
        // Promote: CURRENT by compare-and-swap, PREVIOUS the old one.
        let p = sm.run(advance(1, Step::Promote, false)).unwrap();
        assert_eq!(
            (
                p.aliases.get("CURRENT"),
                p.aliases.get("PREVIOUS"),
                p.aliases.get("PENDING")
            ),
            (Some(&2), Some(&1), None)
        );
        assert_eq!(
            refused(sm.run(advance(1, Step::Promote, false))),
            ErrorCode::FailedPrecondition
        );
        // Retire: not before the overlap is over; then PREVIOUS is disabled, CURRENT untouched.
        let promoted = run_of(&sm).step_at_ms;
        assert_eq!(queue(&sm), [(promoted + OVERLAP, false, NAME.to_string())]);
        assert_eq!(
            refused(sm.run(advance(1, Step::Overlap, false))),
            ErrorCode::FailedPrecondition
        );
        sm.clock_ms = promoted + OVERLAP;
        sm.run(retire_quiet(1, promoted, promoted + OVERLAP - 10)).unwrap();
        assert_eq!(step(&sm), Step::Retired);
        assert_eq!(version_state(&sm, 1), pb::VersionState::Disabled);
        assert_eq!(version_state(&sm, 2), pb::VersionState::Enabled);
        // Destroy: not before the retention; then the old version's value is gone.
        let retired = run_of(&sm).step_at_ms;
        assert_eq!(
            refused(sm.run(advance(1, Step::Retired, false))),
            ErrorCode::FailedPrecondition
        );
        sm.clock_ms = retired + RETENTION;
        let d = sm.run(advance(1, Step::Retired, false)).unwrap();
        assert_eq!(d.destroyed, vec![1]);
        assert_eq!(version_state(&sm, 1), pb::VersionState::Destroyed);
        assert_eq!(
            refused(sm.run(advance(1, Step::Retired, false))),
            ErrorCode::FailedPrecondition
        );
        let run = run_of(&sm);
        let steps: Vec<Step> = run.events.iter().map(|e| Step::try_from(e.step).unwrap()).collect();
        assert_eq!(
            steps,
            [
                Step::CreatePending,
                Step::Promote,
                Step::Overlap,
                Step::Retired,
                Step::Done
            ]
        );
        assert_eq!((run.old_version, run.new_version), (1, 2));
        let s = secret(&sm);
        assert_eq!(s.aliases.get("CURRENT"), Some(&2));
        assert_eq!(s.aliases.get("PREVIOUS"), None, "the destroyed version keeps no alias");
        assert_eq!(queue(&sm), [(promoted + PERIOD, false, NAME.to_string())], "next due");
        // The next run may start.
        sm.run(start(2)).unwrap();
        assert_eq!(run_of(&sm).old_version, 2);
    }

    #[test]
    fn a_version_still_read_is_retired_by_force_only_at_the_deadline() {
        let mut sm = setup();
        to_overlap(&mut sm);
        let promoted = run_of(&sm).step_at_ms;
        sm.clock_ms = promoted + OVERLAP;
        assert_eq!(
            refused(sm.run(advance(1, Step::Overlap, true))),
            ErrorCode::FailedPrecondition
        );
        sm.clock_ms = promoted + OVERLAP + DEADLINE;
        sm.run(advance(1, Step::Overlap, true)).unwrap();
        let run = run_of(&sm);
        assert!(run.events.last().unwrap().forced, "the forced retirement is on record");
        assert_eq!(version_state(&sm, 1), pb::VersionState::Disabled);
    }

    #[test]
    fn retiring_before_the_deadline_needs_a_window_without_reads_back_to_the_quiet_start() {
        let mut sm = setup();
        to_overlap(&mut sm);
        let promoted = run_of(&sm).step_at_ms;
        // Well after the overlap: the quiet window is the last overlap's length.
        sm.clock_ms = promoted + 3 * OVERLAP;
        let now = sm.clock_ms;
        assert_eq!(
            refused(sm.run(advance(1, Step::Overlap, false))),
            ErrorCode::InvalidArgument,
            "no evidence"
        );
        let now = now + 1;
        assert_eq!(
            refused(sm.run(retire_quiet(1, now - OVERLAP, now + 500))),
            ErrorCode::InvalidArgument,
            "a window reaching past the command's time"
        );
        let now = now + 1;
        assert_eq!(
            refused(sm.run(retire_quiet(1, now - OVERLAP + 100, now))),
            ErrorCode::FailedPrecondition,
            "unread for less than the quiet window"
        );
        assert_eq!(step(&sm), Step::Overlap, "nothing changed");
        assert_eq!(version_state(&sm, 1), pb::VersionState::Enabled);
        let now = now + 1;
        sm.run(retire_quiet(1, now - OVERLAP, now - 5)).unwrap();
        let e = run_of(&sm).events.last().cloned().unwrap();
        assert_eq!(
            (e.step, e.forced, e.quiet_from_ms, e.quiet_until_ms),
            (Step::Retired as i32, false, now - OVERLAP, now - 5)
        );
        assert_eq!(version_state(&sm, 1), pb::VersionState::Disabled);
    }

    #[test]
    fn the_quiet_window_is_the_overlap_and_starts_no_earlier_than_the_overlap() {
        use crate::rotation::quiet_since;
        let mut sm = setup();
        let now = sm.clock_ms + 100_000;
        assert_eq!(quiet_since(&secret(&sm), 1, now), now - OVERLAP);
        to_overlap(&mut sm);
        let promoted = run_of(&sm).step_at_ms;
        // In its overlap: reads since the overlap began count, then one overlap back.
        assert_eq!(quiet_since(&secret(&sm), 1, promoted + 10), promoted);
        assert_eq!(
            quiet_since(&secret(&sm), 1, promoted + 5 * OVERLAP),
            promoted + 4 * OVERLAP
        );
        // Another version: one window back.
        assert_eq!(
            quiet_since(&secret(&sm), 2, promoted + 10),
            (promoted + 10).saturating_sub(OVERLAP)
        );
        let mut s = secret(&sm);
        s.rotation = None;
        s.rotation_run = None;
        let later = now + crate::rotation::DEFAULT_QUIET_MS;
        assert_eq!(quiet_since(&s, 1, later), now);
    }

    #[test]
    fn a_run_whose_current_moved_underneath_fails_and_leaves_current_alone() {
        let mut sm = setup();
        sm.run(start(1)).unwrap();
        sm.run(pending(1, 2)).unwrap();
        sm.put(NAME, 3, "CURRENT").unwrap(); // a person rotated by hand meanwhile
        sm.run(advance(1, Step::Promote, false)).unwrap();
        let run = run_of(&sm);
        assert_eq!(crate::rotation::step_of(&run), Step::Failed);
        assert!(
            run.last_error.contains("CURRENT moved to version 3"),
            "{}",
            run.last_error
        );
        assert_eq!(secret(&sm).aliases.get("CURRENT"), Some(&3));
        // Not in flight any more: the next run may start.
        sm.run(start(2)).unwrap();
    }

    #[test]
    fn a_failed_attempt_keeps_its_reason_and_backs_off() {
        let mut sm = setup();
        sm.run(start(1)).unwrap();
        let fail = |error: &str, step: Step| {
            Op::RotationFailed(pb::RotationFailed {
                name: NAME.into(),
                run: 1,
                step: step as i32,
                error: error.into(),
            })
        };
        sm.run(fail("the rotator timed out after 5s", Step::CreatePending))
            .unwrap();
        let r = run_of(&sm);
        let at = sm.clock_ms - 1; // the command's proposed_at_ms
        assert_eq!((r.attempts, r.retry_at_ms), (1, at + 1000));
        assert_eq!(queue(&sm), [(at + 1000, false, NAME.to_string())]);
        let long = format!("\u{1b}[2J{}", "x".repeat(1000));
        sm.run(fail(&long, Step::CreatePending)).unwrap();
        let r = run_of(&sm);
        assert_eq!((r.attempts, r.retry_at_ms), (2, sm.clock_ms - 1 + 2000));
        assert!(r.last_error.len() <= 256 && !r.last_error.contains('\u{1b}'));
        // Never longer than a quarter of the period (10 s here).
        for _ in 0..6 {
            sm.run(fail("still down", Step::CreatePending)).unwrap();
        }
        let r = run_of(&sm);
        assert_eq!(r.retry_at_ms, sm.clock_ms - 1 + PERIOD / 4);
        assert_eq!(
            refused(sm.run(fail("late", Step::Promote))),
            ErrorCode::FailedPrecondition
        );
        // The step, reached, clears the failures.
        sm.run(pending(1, 2)).unwrap();
        let r = run_of(&sm);
        assert_eq!((r.attempts, r.last_error.as_str()), (0, ""));
    }

    #[test]
    fn rollback_is_compare_and_swap_on_current_and_ends_the_run() {
        let mut sm = setup();
        to_overlap(&mut sm);
        let first = sm.run(rollback(2)).unwrap();
        assert_eq!(first.version, 1);
        assert_eq!(
            (first.aliases.get("CURRENT"), first.aliases.get("PREVIOUS")),
            (Some(&1), Some(&2))
        );
        assert_eq!(step(&sm), Step::RolledBack);
        // A second rollback that read CURRENT 2 loses.
        let e = sm.run(rollback(2)).unwrap_err();
        assert_eq!((e.code, e.actual_version), (ErrorCode::CasFailed, 1));
        // A rolled-back run advances no more.
        assert_eq!(
            refused(sm.run(advance(1, Step::Overlap, false))),
            ErrorCode::FailedPrecondition
        );
    }

    #[test]
    fn no_rollback_to_a_retired_version() {
        let mut sm = setup();
        to_overlap(&mut sm);
        let promoted = run_of(&sm).step_at_ms;
        sm.clock_ms = promoted + OVERLAP;
        sm.run(retire_quiet(1, promoted, promoted + OVERLAP)).unwrap();
        assert_eq!(refused(sm.run(rollback(2))), ErrorCode::FailedPrecondition);
        assert_eq!(secret(&sm).aliases.get("CURRENT"), Some(&2));
    }

    #[test]
    fn only_a_pending_value_for_a_waiting_run_lands() {
        let mut sm = setup();
        assert_eq!(refused(sm.run(pending(1, 2))), ErrorCode::FailedPrecondition, "no run");
        sm.run(start(1)).unwrap();
        let mut op = pending(1, 2);
        if let Op::AddVersion(a) = &mut op {
            a.alias = "CURRENT".into();
        }
        assert_eq!(refused(sm.run(op)), ErrorCode::InvalidArgument);
        assert_eq!(refused(sm.run(pending(7, 2))), ErrorCode::FailedPrecondition);
        assert_eq!(secret(&sm).next_version, 2, "nothing written");
    }

    #[test]
    fn the_scheduler_is_told_each_step_when_it_is_due() {
        use crate::rotation::next;
        use crate::rotation::Next;
        let mut sm = setup();
        let s = secret(&sm);
        let due = s.current_since_ms + PERIOD;
        assert_eq!(next(&s, due - 1), Next::Wait);
        assert_eq!(next(&s, due), Next::Start(1));
        sm.run(start(1)).unwrap();
        let now = sm.clock_ms;
        assert_eq!(next(&secret(&sm), now), Next::Value(1));
        sm.run(Op::RotationFailed(pb::RotationFailed {
            name: NAME.into(),
            run: 1,
            step: Step::CreatePending as i32,
            error: "kms down".into(),
        }))
        .unwrap();
        let retry = run_of(&sm).retry_at_ms;
        assert_eq!(next(&secret(&sm), retry - 1), Next::Wait, "backing off");
        assert_eq!(next(&secret(&sm), retry), Next::Value(1));
        sm.run(pending(1, 2)).unwrap();
        assert_eq!(next(&secret(&sm), sm.clock_ms), Next::Promote(1));
        sm.run(advance(1, Step::Promote, false)).unwrap();
        let promoted = run_of(&sm).step_at_ms;
        assert_eq!(next(&secret(&sm), promoted + OVERLAP - 1), Next::Wait);
        assert_eq!(
            next(&secret(&sm), promoted + OVERLAP),
            Next::Retire {
                run: 1,
                deadline_passed: false
            }
        );
        assert_eq!(
            next(&secret(&sm), promoted + OVERLAP + DEADLINE),
            Next::Retire {
                run: 1,
                deadline_passed: true
            }
        );
        sm.clock_ms = promoted + OVERLAP;
        sm.run(retire_quiet(1, promoted, promoted + OVERLAP)).unwrap();
        let retired = run_of(&sm).step_at_ms;
        assert_eq!(next(&secret(&sm), retired + RETENTION - 1), Next::Wait);
        assert_eq!(next(&secret(&sm), retired + RETENTION), Next::Destroy(1));
        sm.clock_ms = retired + RETENTION;
        sm.run(advance(1, Step::Retired, false)).unwrap();
        assert_eq!(next(&secret(&sm), promoted + PERIOD), Next::Start(2));
    }

    #[test]
    fn a_pending_put_while_a_run_waits_is_its_value_and_a_manual_run_waits_for_one() {
        use crate::rotation::next;
        use crate::rotation::Next;
        let mut sm = created(pb::RotationStrategy::Manual);
        sm.put(NAME, 1, "CURRENT").unwrap();
        let due = secret(&sm).current_since_ms + PERIOD;
        assert_eq!(next(&secret(&sm), due), Next::Wait, "people rotate manual secrets");
        // A person starts one (`coffer secret rotate`: the next run, whichever it is).
        sm.run(start(0)).unwrap();
        assert_eq!(run_of(&sm).run, 1);
        assert!(
            queue(&sm).iter().all(|(_, manual, _)| *manual),
            "waiting on a person: reported only"
        );
        // Their PENDING put is the run's value; the scheduler takes it from there.
        sm.put(NAME, 2, "pending").unwrap();
        assert_eq!((step(&sm), run_of(&sm).new_version), (Step::Promote, 2));
        assert_eq!(next(&secret(&sm), sm.clock_ms), Next::Promote(1));
        // A PENDING put with no run waiting is only a PENDING put.
        sm.run(advance(1, Step::Promote, false)).unwrap();
        sm.put(NAME, 3, "pending").unwrap();
        assert_eq!((step(&sm), run_of(&sm).new_version), (Step::Overlap, 2));
    }

    #[test]
    fn manual_secrets_are_queued_as_due_and_a_secret_without_a_policy_not_at_all() {
        let mut sm = created(pb::RotationStrategy::Manual);
        let created = secret(&sm).created_at_ms;
        assert_eq!(
            queue(&sm),
            [(created, true, NAME.to_string())],
            "no value yet: due at once"
        );
        sm.put(NAME, 1, "CURRENT").unwrap();
        let since = secret(&sm).current_since_ms;
        assert_eq!(
            queue(&sm),
            [(since + PERIOD, true, NAME.to_string())],
            "a new CURRENT restarts the period"
        );
        let etag = secret(&sm).etag;
        sm.run(Op::UpdateSecret(pb::UpdateSecret {
            name: NAME.into(),
            expected_etag: etag,
            spec: Some(pb::SecretSpec::default()),
        }))
        .unwrap();
        assert!(queue(&sm).is_empty());
        assert_eq!(refused(sm.run(start(1))), ErrorCode::FailedPrecondition);
    }
}
