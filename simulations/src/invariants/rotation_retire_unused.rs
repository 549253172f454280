//! PREVIOUS is retired before its deadline only when nobody reads it. An unforced retire step
//! carries the window in which the scheduler found no read of the old version on any member
//! (`RotationEvent.quiet_from_ms..quiet_until_ms`). Checked against what clients saw: no read of
//! that version the rotation reader made (invoked and answered) lies wholly inside the window,
//! and the window reaches back to the version's quiet start (one overlap before the retire,
//! never before the overlap began). A retire without a window is unforced only by mistake.

use coffer::pb;
use pb::RotationStep as Step;

use super::evidence::Evidence;
use super::evidence::Violation;
use crate::rotation_log;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    check_log(&e.history.rotations)
}

fn check_log(log: &rotation_log::RotationLog) -> Vec<Violation> {
    let bad = |d: String| Violation::new("rotation_retire_unused", d);
    let mut out = Vec::new();
    for ((name, n), run) in &log.runs {
        let overlap_at = run
            .events
            .iter()
            .find(|ev| ev.step == Step::Overlap as i32)
            .map_or(0, |ev| ev.at_ms);
        for ev in run
            .events
            .iter()
            .filter(|ev| ev.step == Step::Retired as i32 && !ev.forced)
        {
            let (from, until) = (ev.quiet_from_ms, ev.quiet_until_ms);
            if until == 0 {
                out.push(bad(format!(
                    "run {n} of {name} retired version {} before its deadline without a window unread",
                    run.old_version
                )));
                continue;
            }
            let window = rotation_log::OVERLAP_MS.max(coffer_model::rotation::MIN_QUIET_MS);
            let must = overlap_at.max(ev.at_ms.saturating_sub(window));
            if from > must {
                out.push(bad(format!(
                    "run {n} of {name} retired version {} at {} shown unread only from {from}, not from {must}",
                    run.old_version, ev.at_ms
                )));
            }
            if let Some(r) = log.previous_reads.iter().find(|r| {
                r.name == *name && r.version == run.old_version && r.invoked_ms >= from && r.completed_ms <= until
            }) {
                out.push(bad(format!(
                    "run {n} of {name} retired version {} as unread from {from} to {until}, but {} served a read of it in [{}, {}]",
                    run.old_version, r.node, r.invoked_ms, r.completed_ms
                )));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[(Step, u64, bool, u64, u64)]) -> pb::RotationRun {
        pb::RotationRun {
            run: 2,
            old_version: 1,
            new_version: 2,
            events: events
                .iter()
                .map(|&(s, at, forced, from, until)| pb::RotationEvent {
                    step: s as i32,
                    at_ms: at,
                    forced,
                    quiet_from_ms: from,
                    quiet_until_ms: until,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn read(version: u64, invoked_ms: u64, completed_ms: u64) -> rotation_log::PreviousRead {
        rotation_log::PreviousRead {
            node: "n1".into(),
            name: rotation_log::ROTATING[0].into(),
            version,
            invoked_ms,
            completed_ms,
        }
    }

    #[test]
    fn a_retire_over_a_read_or_without_a_window_is_caught() {
        use Step::*;
        let name = rotation_log::ROTATING[0].to_string();
        let mut log = rotation_log::RotationLog::default();
        // Overlap from 10_000; retired at 12_500 as unread from 11_500 to 12_400.
        let ok = run(&[
            (CreatePending, 9_000, false, 0, 0),
            (Promote, 9_500, false, 0, 0),
            (Overlap, 10_000, false, 0, 0),
            (Retired, 12_500, false, 11_500, 12_400),
        ]);
        log.runs.insert((name.clone(), 2), ok.clone());
        // Reads before the window, of another version, or straddling its edge are fine.
        log.previous_reads.push(read(1, 11_000, 11_400));
        log.previous_reads.push(read(2, 11_600, 11_700));
        log.previous_reads.push(read(1, 12_350, 12_450));
        assert!(check_log(&log).is_empty(), "{:?}", check_log(&log));
        // A read wholly inside the window: the scheduler missed it.
        log.previous_reads.push(read(1, 11_900, 11_950));
        let v = check_log(&log);
        assert!(v.iter().any(|v| v.detail.contains("served a read of it")), "{v:?}");
        log.previous_reads.pop();
        // A window that does not reach back one overlap from the retire.
        let mut late = ok.clone();
        late.events[3].quiet_from_ms = 11_800;
        log.runs.insert((name.clone(), 2), late);
        assert!(check_log(&log).iter().any(|v| v.detail.contains("not from 11500")));
        // An unforced retire with no window; a forced one needs none.
        let mut none = ok.clone();
        none.events[3].quiet_until_ms = 0;
        log.runs.insert((name.clone(), 2), none.clone());
        assert!(check_log(&log).iter().any(|v| v.detail.contains("without a window")));
        none.events[3].forced = true;
        log.runs.insert((name, 2), none);
        assert!(check_log(&log).is_empty());
    }
}
