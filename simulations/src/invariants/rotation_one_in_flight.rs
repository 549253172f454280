//! At most one rotation of a secret is in flight: a run starts only after the one before it
//! ended (done, failed or rolled back), whichever leader started each. Liveness: every rotating
//! secret finished a rotation that retired and destroyed an old version (the scheduler
//! survives the run's faults and carries on).

use coffer::pb;
use pb::RotationStep as Step;

use super::evidence::Evidence;
use super::evidence::Violation;
use crate::rotation_log;

fn ended_at(run: &pb::RotationRun) -> Option<u64> {
    run.events
        .iter()
        .find(|e| matches!(Step::try_from(e.step), Ok(Step::Done | Step::Failed | Step::RolledBack)))
        .map(|e| e.at_ms)
}

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    check_log(&e.history.rotations)
}

fn check_log(log: &rotation_log::RotationLog) -> Vec<Violation> {
    let bad = |d: String| Violation::new("rotation_one_in_flight", d);
    let mut out = Vec::new();
    for ((name, n), run) in &log.runs {
        let Some(before) = log.runs.get(&(name.clone(), n - 1)) else {
            continue;
        };
        match ended_at(before) {
            Some(end) if end <= run.started_at_ms => {}
            Some(end) => out.push(bad(format!(
                "run {n} of {name} started at {} ms, before run {} ended at {end} ms",
                run.started_at_ms,
                n - 1
            ))),
            None => out.push(bad(format!(
                "run {n} of {name} started while run {} was at {:?}",
                n - 1,
                rotation_log::steps(before)
            ))),
        }
    }
    for name in rotation_log::ROTATING {
        let finished = log.runs.iter().any(|((s, _), r)| {
            s == name && r.old_version != 0 && r.events.iter().any(|ev| ev.step == Step::Done as i32)
        });
        if !finished {
            out.push(bad(format!(
                "{name} never finished a rotation that retired a version in the whole run"
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u64, old: u64, started: u64, steps: &[(Step, u64)]) -> pb::RotationRun {
        pb::RotationRun {
            run: n,
            old_version: old,
            started_at_ms: started,
            events: steps
                .iter()
                .map(|(s, at)| pb::RotationEvent {
                    step: *s as i32,
                    at_ms: *at,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_run_started_before_the_one_before_it_ended_is_caught() {
        use Step::*;
        let mut log = rotation_log::RotationLog::default();
        for name in rotation_log::ROTATING {
            log.runs.insert(
                (name.into(), 1),
                run(1, 0, 0, &[(CreatePending, 0), (Promote, 5), (Done, 6)]),
            );
            log.runs.insert(
                (name.into(), 2),
                run(
                    2,
                    1,
                    10,
                    &[
                        (CreatePending, 10),
                        (Promote, 20),
                        (Overlap, 20),
                        (Retired, 30),
                        (Done, 40),
                    ],
                ),
            );
        }
        assert!(check_log(&log).is_empty(), "{:?}", check_log(&log));
        // Run 3 of rot0 starts while run 2 is still at its overlap.
        log.runs.insert(
            (rotation_log::ROTATING[0].into(), 2),
            run(2, 1, 10, &[(CreatePending, 10), (Promote, 20), (Overlap, 20)]),
        );
        log.runs.insert(
            (rotation_log::ROTATING[0].into(), 3),
            run(3, 2, 25, &[(CreatePending, 25)]),
        );
        let v = check_log(&log);
        assert!(v.iter().any(|v| v.detail.contains("started while run 2")), "{v:?}");
        // Liveness: a secret that never finished a rotation retiring a version.
        let mut idle = rotation_log::RotationLog::default();
        idle.runs.insert(
            (rotation_log::ROTATING[1].into(), 1),
            run(1, 0, 0, &[(CreatePending, 0), (Promote, 5), (Done, 6)]),
        );
        assert!(check_log(&idle).iter().any(|v| v.detail.contains("never finished")));
    }
}
