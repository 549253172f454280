//! Watchers see every change once, in log order, across hops between nodes: within each
//! [`Segment`] (a watcher's view from a stream's start through every resumed stream after it),
//! `through_index` never goes back, event indexes only grow and never repeat one already
//! covered, every acknowledged write to a secret whose index the segment covers is there (at
//! its index, for its secret, a put with its version), and every watcher that saw an index saw
//! the same change there (every node applies the same log).
//!
//! [`Segment`]: crate::watch_log::Segment

use std::collections::BTreeMap;

use super::evidence::Violation;
use crate::history::is_secret;
use crate::history::History;
use crate::history::Kind;
use crate::watch_log::Seen;

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let bad = |detail: String| Violation::new("watch_gapless", detail);
    // The acknowledged writes to secrets, by log index: (secret, a put's version, op id).
    let mut acked: BTreeMap<u64, (&str, Option<u64>, usize)> = BTreeMap::new();
    for o in &h.ops {
        let Some(r) = o.ok() else { continue };
        if !o.kind.is_write() || !is_secret(&o.object) || r.log_index == 0 {
            continue;
        }
        let version = matches!(o.kind, Kind::Put { .. }).then_some(r.version);
        acked.insert(r.log_index, (o.object.as_str(), version, o.id));
    }
    let mut agreed: BTreeMap<u64, (&Seen, &str)> = BTreeMap::new();
    for seg in &h.watches.segments {
        let who = format!("watcher {} (segment from {})", seg.watcher, seg.start);
        let mut through = seg.start;
        let mut last = seg.start;
        let mut got: BTreeMap<u64, &Seen> = BTreeMap::new();
        for r in &seg.responses {
            if r.through_index < through {
                out.push(bad(format!(
                    "{who}: {} answered through {} after {through}",
                    r.node, r.through_index
                )));
            }
            for e in &r.events {
                if e.index <= last || e.index <= through {
                    out.push(bad(format!(
                        "{who}: {} sent index {} ({}) after {} was already seen or covered (through {through})",
                        r.node, e.index, e.name, last
                    )));
                }
                if e.index > r.through_index {
                    out.push(bad(format!(
                        "{who}: {} sent index {} in a response through {}",
                        r.node, e.index, r.through_index
                    )));
                }
                last = last.max(e.index);
                got.insert(e.index, e);
                match agreed.get(&e.index) {
                    Some((other, node)) if *other != e => out.push(bad(format!(
                        "at index {}, {} sent {e:?} but {node} sent {other:?}",
                        e.index, r.node
                    ))),
                    Some(_) => {}
                    None => {
                        agreed.insert(e.index, (e, r.node.as_str()));
                    }
                }
            }
            through = through.max(r.through_index);
        }
        // The writes this segment covers (none when it never got past its start).
        let covered = if through > seg.start {
            acked.range(seg.start + 1..=through)
        } else {
            acked.range(0..0)
        };
        for (index, (name, version, op)) in covered {
            match got.get(index) {
                None => out.push(bad(format!(
                    "{who}: through {through} without write #{op} to {name} at index {index} (hops: {})",
                    seg.hops.join("; ")
                ))),
                Some(e) if e.name != *name || version.is_some_and(|v| v != e.version) => out.push(bad(format!(
                    "{who}: index {index} is {e:?}, but write #{op} there was to {name} (version {version:?})"
                ))),
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use crate::history::Outcome;
    use crate::history::Reply;
    use crate::watch_log::Response;
    use crate::watch_log::Segment;

    fn put(id: usize, name: &str, index: u64, version: u64) -> Op {
        Op {
            id,
            client: "c0".into(),
            node: "n0".into(),
            object: name.into(),
            kind: Kind::Put { value: id as u64 },
            request_id: format!("c0.{id}"),
            attempts: 1,
            invoked_us: 0,
            completed_us: Some(1),
            outcome: Outcome::Ok(Reply {
                version,
                log_index: index,
                ..Default::default()
            }),
        }
    }

    fn seen(index: u64, name: &str, version: u64) -> Seen {
        Seen {
            index,
            name: name.into(),
            kind: coffer::pb::SecretEventKind::Put as i32,
            version,
        }
    }

    fn history(responses: Vec<(u64, Vec<Seen>)>) -> History {
        let mut h = History {
            ops: vec![
                put(0, "acme/s0", 11, 1),
                put(1, "acme/s1", 12, 1),
                put(2, "acme/s0", 15, 2),
            ],
            ..Default::default()
        };
        h.watches.segments.push(Segment {
            watcher: "w0".into(),
            start: 10,
            responses: responses
                .into_iter()
                .map(|(through_index, events)| Response {
                    node: "n1".into(),
                    through_index,
                    events,
                })
                .collect(),
            hops: vec![],
        });
        h
    }

    #[test]
    fn a_complete_ordered_view_passes_and_a_gap_a_repeat_or_a_wrong_change_is_caught() {
        let whole = || {
            vec![
                (10, vec![]),
                (12, vec![seen(11, "acme/s0", 1), seen(12, "acme/s1", 1)]),
                (12, vec![]), // a resumed stream's first response
                (16, vec![seen(15, "acme/s0", 2)]),
            ]
        };
        assert!(check(&history(whole())).is_empty());
        let mut gap = whole();
        gap[3].1.clear();
        assert!(check(&history(gap))[0].detail.contains("without write #2"));
        let mut repeat = whole();
        repeat[3].1.insert(0, seen(12, "acme/s1", 1));
        assert!(check(&history(repeat))[0].detail.contains("already seen"));
        let mut wrong = whole();
        wrong[3].1[0].version = 3;
        assert!(check(&history(wrong))[0].detail.contains("version"));
        let mut back = whole();
        back[2].0 = 11;
        assert!(check(&history(back))[0].detail.contains("answered through 11"));
        // A segment that ends before a write owes nothing for it, nor one that never moved.
        let mut short = whole();
        short.truncate(2);
        assert!(check(&history(short)).is_empty());
        assert!(check(&history(vec![(10, vec![])])).is_empty());
        assert!(check(&history(vec![])).is_empty());
    }
}
