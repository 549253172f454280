//! Every step of a rotation happens once, in order: each run seen on any node went through a
//! prefix of create-pending, promote, then overlap, retired, done (or straight to done when there
//! was nothing to retire, or ended failed or rolled back), no step twice, and every node's
//! record of a run agrees with every other's. A run wrote one version at most (no double
//! version after a retry or a leader change), the one it promoted; a finished run's old
//! version was retired no sooner than the overlap after the promotion and destroyed no sooner
//! than the retention after that.

use coffer::pb;
use pb::RotationStep as Step;

use super::evidence::Evidence;
use super::evidence::Violation;
use crate::rotation_log;

/// Whether `steps` is a legal path (or the start of one).
fn legal(steps: &[Step]) -> bool {
    use Step::*;
    let full: [&[Step]; 4] = [
        &[CreatePending, Promote, Overlap, Retired, Done],
        &[CreatePending, Promote, Done],
        &[CreatePending, Promote, Failed],
        &[CreatePending, Promote, Overlap, RolledBack],
    ];
    full.iter()
        .any(|path| steps.len() <= path.len() && path[..steps.len()] == *steps)
}

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    check_log(&e.history.rotations)
}

fn check_log(log: &rotation_log::RotationLog) -> Vec<Violation> {
    let bad = |d: String| Violation::new("rotation_steps", d);
    let mut out: Vec<Violation> = log.diverged.iter().cloned().map(bad).collect();
    for ((name, n), run) in &log.runs {
        let steps: Vec<Step> = run
            .events
            .iter()
            .map(|ev| Step::try_from(ev.step).unwrap_or_default())
            .collect();
        if !legal(&steps) {
            out.push(bad(format!("run {n} of {name} went {:?}", rotation_log::steps(run))));
        }
        if run.events.windows(2).any(|w| w[0].at_ms > w[1].at_ms) {
            out.push(bad(format!("run {n} of {name} has steps out of time order")));
        }
        let at = |s: Step| run.events.iter().find(|ev| ev.step == s as i32).map(|ev| ev.at_ms);
        // A run reaches OVERLAP when CURRENT moves to its version: the overlap starts then.
        if let (Some(promoted), Some(retired)) = (at(Step::Overlap), at(Step::Retired)) {
            if retired < promoted + rotation_log::OVERLAP_MS {
                out.push(bad(format!(
                    "run {n} of {name} retired version {} {} ms after promoting, before the {} ms overlap",
                    run.old_version,
                    retired - promoted,
                    rotation_log::OVERLAP_MS
                )));
            }
        }
        if let (Some(retired), Some(done)) = (at(Step::Retired), at(Step::Done)) {
            if run.old_version != 0 && done < retired + rotation_log::RETENTION_MS {
                out.push(bad(format!(
                    "run {n} of {name} destroyed version {} {} ms after retiring it, before the {} ms retention",
                    run.old_version,
                    done - retired,
                    rotation_log::RETENTION_MS
                )));
            }
        }
    }
    // On every node: one version per run at most, the one the run names.
    for (node, secrets) in &log.last {
        for (name, h) in secrets {
            let mut by_run: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
            for v in h.versions.iter().filter(|v| v.rotation_run != 0) {
                by_run.entry(v.rotation_run).or_default().push(v.version);
            }
            for (n, versions) in by_run {
                if versions.len() > 1 {
                    out.push(bad(format!("{node}: run {n} of {name} wrote versions {versions:?}")));
                }
                let named = log.runs.get(&(name.clone(), n)).map(|r| r.new_version);
                if named.is_some_and(|v| v != versions[0]) {
                    out.push(bad(format!(
                        "{node}: run {n} of {name} wrote version {} but names version {}",
                        versions[0],
                        named.unwrap_or(0)
                    )));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation_log::Held;
    use crate::rotation_log::RotationLog;

    fn event(step: Step, at_ms: u64) -> pb::RotationEvent {
        pb::RotationEvent {
            step: step as i32,
            at_ms,
            by: "system:rotation".into(),
            version: 0,
            forced: false,
            ..Default::default()
        }
    }

    fn run(n: u64, steps: &[(Step, u64)]) -> pb::RotationRun {
        pb::RotationRun {
            run: n,
            old_version: n - 1,
            new_version: n,
            events: steps.iter().map(|(s, at)| event(*s, *at)).collect(),
            ..Default::default()
        }
    }

    fn log_with(r: pb::RotationRun) -> RotationLog {
        let mut log = RotationLog::default();
        log.runs.insert(("acme/rot0".into(), r.run), r);
        log
    }

    #[test]
    fn a_whole_run_passes_and_a_repeated_or_early_step_is_caught() {
        use Step::*;
        let good = run(
            2,
            &[
                (CreatePending, 0),
                (Promote, 10),
                (Overlap, 20),
                (Retired, 1100),
                (Done, 2200),
            ],
        );
        assert!(check_log(&log_with(good)).is_empty());
        let twice = run(2, &[(CreatePending, 0), (Promote, 10), (Promote, 20)]);
        assert!(check_log(&log_with(twice))[0].detail.contains("went"));
        let early = run(2, &[(CreatePending, 0), (Promote, 10), (Overlap, 20), (Retired, 500)]);
        assert!(check_log(&log_with(early))[0]
            .detail
            .contains("before the 1000 ms overlap"));
        let hasty = run(
            2,
            &[
                (CreatePending, 0),
                (Promote, 10),
                (Overlap, 20),
                (Retired, 1100),
                (Done, 1200),
            ],
        );
        assert!(check_log(&log_with(hasty))[0].detail.contains("retention"));
    }

    #[test]
    fn two_versions_of_one_run_are_caught() {
        use Step::*;
        let mut log = log_with(run(2, &[(CreatePending, 0), (Promote, 10)]));
        let version = |v: u64| pb::SecretVersion {
            version: v,
            rotation_run: 2,
            ..Default::default()
        };
        log.last.entry("n1".into()).or_default().insert(
            "acme/rot0".into(),
            Held {
                secret: pb::Secret::default(),
                versions: vec![version(2), version(3)],
            },
        );
        let v = check_log(&log);
        assert!(v.iter().any(|v| v.detail.contains("wrote versions [2, 3]")), "{v:?}");
    }
}
