//! Linearizability of every object's writes and `linearizable` reads, decided in polynomial
//! time (never "inconclusive").
//!
//! Coffer answers every write with the log index where it took effect, and the request table
//! records that index (and the outcome) even for a write whose client never heard back
//! ([`super::resolve`]). So each object's writes are totally ordered by known indexes, and a
//! `linearizable` read names the exact state it read (the applied index of the view that
//! answered). The history is linearizable in that order if:
//! 1. replaying the writes in index order through the sequential model ([`model`]) gives every
//!    write the outcome the cluster recorded for it, and every read the answer it returned;
//! 2. real time allows that order ([`order`]): no write takes effect before one that began
//!    after it completed, no read misses a write that completed before it began or sees one
//!    that began after it ended, reads in real-time order never go back;
//! 3. each node's final records are the model's state at the index that node had applied.
//!
//! If all hold, the order is a linearization, so this never accepts a bad history. It can
//! reject a history that another order would explain, but only when the cluster's own records
//! (its indexes and outcomes) contradict what clients saw, which is a bug too. A violation names
//! the operations that contradict each other.

mod model;
mod order;

use std::collections::BTreeMap;

use model::Answer;
use model::Model;

use super::evidence::Violation;
use super::resolve;
use super::resolve::Recorded;
use crate::history::History;
use crate::history::Kind;
use crate::history::Mode;
use crate::history::Op;
use crate::history::Outcome;

/// A write placed at the index where it took effect.
struct Placed<'a> {
    op: &'a Op,
    index: u64,
    recorded: Recorded,
}

fn span(o: &Op) -> order::Span {
    order::Span {
        start: o.invoked_us,
        end: if o.unknown() {
            u64::MAX
        } else {
            o.completed_us.unwrap_or(u64::MAX)
        },
    }
}

fn matches(answer: &Answer, recorded: &Recorded) -> bool {
    match (answer, recorded) {
        (Answer::Ok { version: a }, Recorded::Ok { version: b }) => a == b,
        (Answer::Refused(a), Recorded::Refused(b)) => a == b,
        _ => false,
    }
}

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for object in h.objects() {
        if let Err(detail) = check_object(h, &object) {
            out.push(Violation::new("linearizable", format!("{object}: {detail}")));
        }
    }
    out
}

fn check_object(h: &History, object: &str) -> Result<(), String> {
    let ops = h.on(object);
    // 1. The writes in the order the log gave them.
    let mut writes: Vec<Placed<'_>> = Vec::new();
    for o in ops.iter().filter(|o| o.kind.is_write()) {
        // Contradictory records are reported by exactly_once; here they only leave the op out.
        if let Ok(Some(e)) = resolve::effect(h, o) {
            writes.push(Placed {
                op: o,
                index: e.index,
                recorded: e.recorded,
            });
        }
    }
    writes.sort_by_key(|w| w.index);
    if let Some(pair) = writes.windows(2).find(|p| p[0].index == p[1].index) {
        return Err(format!(
            "two operations took effect at one index {}:\n    {}\n    {}",
            pair[0].index,
            pair[0].op.line(),
            pair[1].op.line()
        ));
    }
    // The model's state after each prefix of the writes; every write must get its recorded
    // outcome there.
    let mut states = vec![Model::of(object)];
    for (j, w) in writes.iter().enumerate() {
        let Some((answer, next)) = states[j].step(&w.op.kind) else {
            return Err(format!("operation does not apply to this object: {}", w.op.line()));
        };
        if !matches(&answer, &w.recorded) {
            return Err(format!(
                "#{} took effect at index {} as {:?}, but replaying this object's writes in index order it should be \
                 {answer:?}:\n    {}{}",
                w.op.id,
                w.index,
                w.recorded,
                w.op.line(),
                history_before(&writes, j, &states)
            ));
        }
        states.push(next);
    }
    // 2. Reads: the state each one saw.
    let mut reads: Vec<(&Op, order::Read)> = Vec::new();
    for o in ops.iter().filter(|o| {
        matches!(
            o.kind,
            Kind::Get {
                mode: Mode::Linearizable
            }
        )
    }) {
        let answer = match &o.outcome {
            Outcome::Ok(r) => Answer::Read {
                version: r.version,
                value: r.value,
            },
            Outcome::Failed(c) if c == "NotFound" => Answer::Refused("NotFound"),
            _ => continue,
        };
        let (from, to) = match &o.outcome {
            Outcome::Ok(r) => {
                // The state of the view that answered: every write up to its applied index.
                let p = writes.partition_point(|w| w.index <= r.applied_index);
                let seen = states[p].step(&o.kind).map(|(a, _)| a);
                if seen.as_ref() != Some(&answer) {
                    return Err(format!(
                        "read #{} at index {} returned {answer:?}, but the state after this object's writes up to that \
                         index gives {seen:?}:\n    {}{}",
                        o.id,
                        r.applied_index,
                        o.line(),
                        history_before(&writes, p, &states)
                    ));
                }
                (p, p)
            }
            _ => {
                // No index: any state that answers the same.
                let fits: Vec<usize> = (0..states.len())
                    .filter(|&p| states[p].step(&o.kind).map(|(a, _)| a).as_ref() == Some(&answer))
                    .collect();
                match (fits.first(), fits.last()) {
                    (Some(&a), Some(&b)) if b - a + 1 == fits.len() => (a, b),
                    (None, _) => {
                        return Err(format!(
                            "read #{} returned {answer:?}, which no state of this object gives:\n    {}",
                            o.id,
                            o.line()
                        ))
                    }
                    _ => return Err(format!("read #{} fits states {fits:?}, not one run of them", o.id)),
                }
            }
        };
        reads.push((
            o,
            order::Read {
                span: span(o),
                from,
                to,
            },
        ));
    }
    let spans: Vec<order::Span> = writes.iter().map(|w| span(w.op)).collect();
    let read_spans: Vec<order::Read> = reads.iter().map(|(_, r)| *r).collect();
    if let Err(c) = order::check(&spans, &read_spans) {
        let describe = |who: order::Who| match who {
            order::Who::Write(j) => (writes[j].op, format!("took effect at index {}", writes[j].index)),
            order::Who::Read(r) => {
                let (o, read) = reads[r];
                let seen = match read.from {
                    0 => "the state before any write".to_string(),
                    p => format!("the state after index {}", writes[p - 1].index),
                };
                (o, format!("read {seen}"))
            }
        };
        let (first, first_what) = describe(c.first);
        let (then, then_what) = describe(c.then);
        return Err(format!(
            "#{} {first_what} and #{} {then_what}, so #{} must come first; but #{} began at {} us, after #{} had \
             completed at {} us:\n    {}\n    {}",
            first.id,
            then.id,
            first.id,
            first.id,
            first.invoked_us,
            then.id,
            then.completed_us.unwrap_or(u64::MAX),
            first.line(),
            then.line()
        ));
    }
    // 3. Each node's final records against the state at the index it had applied.
    final_states(h, object, &writes, &states)
}

/// The writes before position `j` that changed the state, newest last (at most three), as lines.
fn history_before(writes: &[Placed<'_>], j: usize, states: &[Model]) -> String {
    let changes: Vec<String> = (0..j)
        .filter(|&k| states[k + 1] != states[k])
        .map(|k| {
            format!(
                "\n    after #{} at index {}: {}",
                writes[k].op.id,
                writes[k].index,
                writes[k].op.line()
            )
        })
        .collect();
    let shown = &changes[changes.len().saturating_sub(3)..];
    if shown.is_empty() {
        "\n    (no earlier write changed it)".into()
    } else {
        shown.concat()
    }
}

fn final_states(h: &History, object: &str, writes: &[Placed<'_>], states: &[Model]) -> Result<(), String> {
    let at = |index: u64| &states[writes.partition_point(|w| w.index <= index)];
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    for (node, secrets) in &h.finals {
        if let Some(f) = secrets.get(object) {
            if let Some(d) = at(f.index).differs_from_final_secret(f) {
                problems.insert(node.clone(), format!("at index {}: {d}", f.index));
            }
        }
    }
    for (node, f) in &h.final_access {
        if let Some(d) = at(f.index).differs_from_final_access(object, f) {
            problems.insert(node.clone(), format!("at index {}: {d}", f.index));
        }
    }
    match problems.into_iter().next() {
        None => Ok(()),
        Some((node, d)) => Err(format!(
            "{node}'s final records differ from the writes replayed in index order {d}{}",
            history_before(writes, writes.len(), states)
        )),
    }
}

#[cfg(test)]
mod tests {
    use coffer::pb;

    use super::*;
    use crate::history::Reply;

    fn op(id: usize, kind: Kind, call: u64, ret: u64, outcome: Outcome) -> Op {
        Op {
            id,
            client: "c".into(),
            node: "n".into(),
            object: "acme/a".into(),
            kind,
            request_id: format!("c.{id}"),
            attempts: 1,
            invoked_us: call,
            completed_us: Some(ret),
            outcome,
        }
    }

    fn ok(version: u64, log_index: u64) -> Outcome {
        Outcome::Ok(Reply {
            version,
            log_index,
            ..Default::default()
        })
    }

    fn get(id: usize, version: u64, value: u64, applied: u64, call: u64, ret: u64) -> Op {
        let r = Reply {
            version,
            value: Some(value),
            applied_index: applied,
            ..Default::default()
        };
        let kind = Kind::Get {
            mode: Mode::Linearizable,
        };
        op(id, kind, call, ret, Outcome::Ok(r))
    }

    /// A history whose writes the cluster recorded as `records` (op id -> outcome, index).
    fn history(ops: Vec<Op>, records: &[(usize, Result<u64, pb::ErrorCode>, u64)]) -> History {
        let mut h = History {
            ops,
            ..Default::default()
        };
        for (id, outcome, index) in records {
            let o = &h.ops[*id];
            let outcome = match outcome {
                Ok(version) => pb::command_result::Outcome::Ok(pb::CommandOk {
                    version: *version,
                    ..Default::default()
                }),
                Err(code) => pb::command_result::Outcome::Error(pb::CommandError {
                    code: *code as i32,
                    ..Default::default()
                }),
            };
            let record = pb::RequestRecord {
                result: Some(pb::CommandResult {
                    log_index: *index,
                    outcome: Some(outcome),
                    replayed: false,
                }),
                ..Default::default()
            };
            let id = crate::workload::logged_request_id(&o.request_id);
            h.requests.insert_for_test(&id, record);
        }
        h
    }

    fn run(h: &History) -> Vec<String> {
        check(h).into_iter().map(|v| v.detail).collect()
    }

    #[test]
    fn accepts_concurrent_puts_in_the_order_the_log_gave_them() {
        let h = history(
            vec![
                op(0, Kind::Put { value: 10 }, 0, 10, ok(2, 6)),
                op(1, Kind::Put { value: 11 }, 1, 9, ok(1, 5)),
                get(2, 2, 10, 6, 20, 30),
            ],
            &[(0, Ok(2), 6), (1, Ok(1), 5)],
        );
        assert_eq!(run(&h), Vec::<String>::new());
    }

    #[test]
    fn catches_a_stale_read_and_names_the_write_it_missed() {
        let h = history(
            vec![
                op(0, Kind::Put { value: 10 }, 0, 10, ok(1, 5)),
                op(1, Kind::Put { value: 11 }, 11, 20, ok(2, 6)),
                get(2, 1, 10, 5, 21, 30),
            ],
            &[(0, Ok(1), 5), (1, Ok(2), 6)],
        );
        let v = run(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("#2 read the state after index 5 and #1 took effect at index 6"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn an_unknown_put_is_placed_where_the_cluster_recorded_it_or_nowhere() {
        let unknown = |id| op(id, Kind::Put { value: 11 }, 11, 12, Outcome::Unknown("timeout".into()));
        // Recorded at index 6: a later read sees it.
        let h = history(
            vec![
                op(0, Kind::Put { value: 10 }, 0, 10, ok(1, 5)),
                unknown(1),
                get(2, 2, 11, 6, 21, 30),
            ],
            &[(0, Ok(1), 5), (1, Ok(2), 6)],
        );
        assert_eq!(run(&h), Vec::<String>::new());
        // Never recorded: a read that saw it is a violation.
        let h = history(
            vec![
                op(0, Kind::Put { value: 10 }, 0, 10, ok(1, 5)),
                unknown(1),
                get(2, 2, 11, 6, 21, 30),
            ],
            &[(0, Ok(1), 5)],
        );
        assert_eq!(run(&h).len(), 1);
    }

    /// Simulation seed 10: a promote applied twice, the second time refused by its own CAS.
    /// The record (overwritten by the second application) says Aborted at index 9; replayed in
    /// index order the promote must succeed there.
    #[test]
    fn catches_a_promote_refused_by_its_own_earlier_application() {
        let h = history(
            vec![
                op(0, Kind::Put { value: 10 }, 0, 10, ok(1, 5)),
                op(1, Kind::Put { value: 11 }, 11, 20, ok(2, 6)),
                op(
                    2,
                    Kind::Promote { version: 1, expect: 2 },
                    30,
                    60,
                    Outcome::Failed("Aborted".into()),
                ),
                op(
                    3,
                    Kind::Disable { version: 2 },
                    40,
                    50,
                    Outcome::Failed("FailedPrecondition".into()),
                ),
            ],
            &[
                (0, Ok(1), 5),
                (1, Ok(2), 6),
                (2, Err(pb::ErrorCode::CasFailed), 9),
                (3, Err(pb::ErrorCode::FailedPrecondition), 8),
            ],
        );
        let v = run(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("#2 took effect at index 9 as Refused(\"Aborted\")"),
            "{}",
            v[0]
        );
        assert!(
            v[0].contains("after #1 at index 6"),
            "names the write that set CURRENT: {}",
            v[0]
        );
    }

    #[test]
    fn catches_two_successful_promotes_on_one_expectation() {
        let promote = |id, version, at| op(id, Kind::Promote { version, expect: 2 }, 30, 40, ok(version, at));
        let h = history(
            vec![
                op(0, Kind::Put { value: 10 }, 0, 10, ok(1, 5)),
                op(1, Kind::Put { value: 11 }, 11, 20, ok(2, 6)),
                promote(2, 1, 7),
                promote(3, 1, 8),
            ],
            &[(0, Ok(1), 5), (1, Ok(2), 6), (2, Ok(1), 7), (3, Ok(1), 8)],
        );
        let v = run(&h);
        assert!(v[0].contains("#3 took effect at index 8"), "{v:?}");
    }

    #[test]
    fn a_read_of_nothing_fits_only_before_the_first_put() {
        let nothing = |call, ret| {
            op(
                1,
                Kind::Get {
                    mode: Mode::Linearizable,
                },
                call,
                ret,
                Outcome::Failed("NotFound".into()),
            )
        };
        let put = || op(0, Kind::Put { value: 10 }, 0, 10, ok(1, 5));
        assert!(run(&history(vec![put(), nothing(5, 20)], &[(0, Ok(1), 5)])).is_empty());
        assert_eq!(run(&history(vec![put(), nothing(11, 20)], &[(0, Ok(1), 5)])).len(), 1);
    }

    #[test]
    fn final_records_must_match_the_replayed_writes() {
        let mut h = history(vec![op(0, Kind::Put { value: 10 }, 0, 10, ok(1, 5))], &[(0, Ok(1), 5)]);
        let mut f = crate::history::FinalSecret {
            index: 5,
            current: 1,
            ..Default::default()
        };
        f.versions.insert(1, (Some(10), "enabled".into()));
        h.finals.insert("n1".into(), [("acme/a".to_string(), f.clone())].into());
        assert!(run(&h).is_empty());
        // A second version nobody wrote (a put applied twice).
        f.versions.insert(2, (Some(10), "enabled".into()));
        h.finals.insert("n1".into(), [("acme/a".to_string(), f)].into());
        let v = run(&h);
        assert!(v[0].contains("n1's final records differ"), "{v:?}");
    }
}
