//! A rotator's writes land once per run, and only with the run's own token. Checked against
//! what the simulated rotator was told ([`crate::rotator`]): no write with a replayed earlier
//! run's token or a forged token is acknowledged; of a run's writes with its token (a first
//! write and its duplicate) at most one is acknowledged; and an acknowledged write is the
//! version the run took as its new value.

use super::evidence::Evidence;
use super::evidence::Violation;
use crate::rotation_log::RotationLog;
use crate::rotator::WriteKind;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    check_log(&e.history.rotations)
}

fn check_log(log: &RotationLog) -> Vec<Violation> {
    let bad = |d: String| Violation::new("rotation_hook_writes", d);
    let mut out = Vec::new();
    let mut acked: std::collections::BTreeMap<(&str, u64), Vec<u64>> = Default::default();
    for w in &log.hook_writes {
        let Some(version) = w.acked else { continue };
        match w.kind {
            WriteKind::Replay | WriteKind::Forged => out.push(bad(format!(
                "{} took a {:?} write through {} (run {} named, called for run {}) as version {version}",
                w.name, w.kind, w.node, w.used_run, w.called_run
            ))),
            WriteKind::Answer | WriteKind::Duplicate => {
                acked.entry((w.name.as_str(), w.used_run)).or_default().push(version);
            }
        }
    }
    for ((name, run), versions) in acked {
        if versions.len() > 1 {
            out.push(bad(format!(
                "run {run} of {name} acknowledged writes as versions {versions:?}"
            )));
        }
        let taken = log.runs.get(&(name.to_string(), run)).map(|r| r.new_version);
        if let Some(taken) = taken.filter(|t| *t != 0 && *t != versions[0]) {
            out.push(bad(format!(
                "run {run} of {name} acknowledged version {} but took version {taken}",
                versions[0]
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotator::HookWrite;

    fn write(kind: WriteKind, used_run: u64, acked: Option<u64>) -> HookWrite {
        HookWrite {
            name: "acme/rot2".into(),
            called_run: 3,
            used_run,
            kind,
            node: "n1".into(),
            acked,
        }
    }

    #[test]
    fn a_replayed_forged_or_second_write_that_landed_is_a_violation() {
        let mut log = RotationLog::default();
        log.runs.insert(
            ("acme/rot2".into(), 3),
            coffer::pb::RotationRun {
                run: 3,
                new_version: 7,
                ..Default::default()
            },
        );
        log.hook_writes = vec![
            write(WriteKind::Answer, 3, Some(7)),
            write(WriteKind::Duplicate, 3, None),
            write(WriteKind::Replay, 2, None),
            write(WriteKind::Forged, 3, None),
        ];
        assert!(check_log(&log).is_empty(), "{:?}", check_log(&log));
        for (i, acked) in [(1, 8), (2, 8), (3, 8)] {
            let mut bad = RotationLog {
                runs: log.runs.clone(),
                hook_writes: log.hook_writes.clone(),
                ..Default::default()
            };
            bad.hook_writes[i].acked = Some(acked);
            assert_eq!(check_log(&bad).len(), 1, "write {i}: {:?}", check_log(&bad));
        }
        // The run took another version than the one acknowledged.
        let mut other = RotationLog {
            runs: log.runs.clone(),
            hook_writes: log.hook_writes.clone(),
            ..Default::default()
        };
        other.hook_writes[0].acked = Some(6);
        assert_eq!(check_log(&other).len(), 1);
    }
}
