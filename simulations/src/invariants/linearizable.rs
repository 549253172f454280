//! Linearizability of writes and `linearizable` reads, per secret (a Wing–Gong search with
//! memoization, as in Porcupine). Linearizability is local, so each secret is checked alone.
//!
//! The model is one secret: its versions (value, enabled/disabled/destroyed) and CURRENT. An
//! operation that completed must take effect between its invocation and its completion and
//! return what the model returns; an `Unknown` one may take effect any time after its
//! invocation, or never (placing it after everything else), and matches any reply. Reads that
//! failed and writes refused for reasons the model does not track are left out.

use super::Violation;
use crate::history::History;
use crate::history::Kind;
use crate::history::Mode;
use crate::history::Op;
use crate::history::Outcome;

/// Search steps per secret before giving up (reported, never counted as a pass of a bad run).
const BUDGET: u64 = 300_000;
/// Memoized states kept before giving up (bounds memory as BUDGET bounds time).
const MAX_SEEN: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum VState {
    Enabled,
    Disabled,
    Destroyed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
struct Model {
    versions: Vec<(u64, VState)>,
    current: u64,
}

enum Out<'a> {
    Ok(&'a crate::history::Reply),
    Failed(&'a str),
    Any,
}

impl Model {
    fn version(&self, v: u64) -> Option<VState> {
        (v >= 1)
            .then(|| self.versions.get(v as usize - 1).map(|x| x.1))
            .flatten()
    }

    /// The state after `kind` if it can return `out` here, else None.
    fn step(&self, kind: &Kind, out: &Out<'_>) -> Option<Model> {
        let mut next = self.clone();
        match kind {
            Kind::Put { value } => {
                let v = self.versions.len() as u64 + 1;
                match out {
                    Out::Ok(r) if r.version != v => return None,
                    Out::Failed(_) => return None,
                    _ => {}
                }
                next.versions.push((*value, VState::Enabled));
                next.current = v;
            }
            Kind::Get { .. } => match out {
                Out::Ok(r) => {
                    let (value, _) = self.versions.get((self.current as usize).checked_sub(1)?)?;
                    if r.version != self.current || r.value != Some(*value) {
                        return None;
                    }
                }
                Out::Failed(code) if *code == "NotFound" && self.current != 0 => return None,
                _ => {}
            },
            Kind::Promote { version, expect } => {
                let result = match self.version(*version) {
                    None => Err("NotFound"),
                    Some(VState::Enabled) if self.current != *expect => Err("Aborted"),
                    Some(VState::Enabled) => Ok(()),
                    Some(_) => Err("FailedPrecondition"),
                };
                if !matches_result(&result, out) {
                    return None;
                }
                if result.is_ok() {
                    next.current = *version;
                }
            }
            Kind::Disable { version } => {
                let result = match self.version(*version) {
                    None => Err("NotFound"),
                    Some(VState::Destroyed) => Err("FailedPrecondition"),
                    Some(VState::Disabled) => Ok(()),
                    Some(VState::Enabled) if self.current == *version => Err("FailedPrecondition"),
                    Some(VState::Enabled) => Ok(()),
                };
                if !matches_result(&result, out) {
                    return None;
                }
                if result.is_ok() {
                    next.versions[*version as usize - 1].1 = VState::Disabled;
                }
            }
            Kind::Destroy { version } => {
                let result = match self.version(*version) {
                    None => Err("NotFound"),
                    Some(VState::Destroyed) => Ok(()),
                    Some(_) if self.current == *version => Err("FailedPrecondition"),
                    Some(_) => Ok(()),
                };
                if !matches_result(&result, out) {
                    return None;
                }
                if result.is_ok() {
                    next.versions[*version as usize - 1].1 = VState::Destroyed;
                }
            }
        }
        Some(next)
    }
}

fn matches_result(result: &Result<(), &str>, out: &Out<'_>) -> bool {
    match (result, out) {
        (_, Out::Any) => true,
        (Ok(()), Out::Ok(_)) => true,
        (Err(e), Out::Failed(code)) => e == code,
        _ => false,
    }
}

struct Entry<'a> {
    op: &'a Op,
    call: u64,
    ret: u64,
}

impl Entry<'_> {
    fn out(&self) -> Out<'_> {
        match &self.op.outcome {
            Outcome::Ok(r) => Out::Ok(r),
            Outcome::Failed(c) => Out::Failed(c),
            Outcome::Unknown(_) => Out::Any,
        }
    }
}

/// Whether an operation belongs in the search.
fn relevant(o: &Op) -> bool {
    match (&o.kind, &o.outcome) {
        (Kind::Get { mode }, outcome) => {
            *mode == Mode::Linearizable
                && match outcome {
                    Outcome::Ok(_) => true,
                    Outcome::Failed(c) => c == "NotFound",
                    Outcome::Unknown(_) => false,
                }
        }
        // Refusals the model explains; anything else refused had no effect.
        (_, Outcome::Failed(c)) => {
            matches!(c.as_str(), "NotFound" | "FailedPrecondition" | "Aborted") && !matches!(o.kind, Kind::Put { .. })
        }
        _ => true,
    }
}

/// Unknown puts resolved from the healed cluster's records: the value is there at version v
/// (the put took effect, with v) or every version's value is readable and the value is
/// nowhere (it never took effect, and cannot any more once the cluster has healed). Disabled
/// and destroyed versions hide their values, so while one exists an unknown put stays unknown.
fn resolve_puts(h: &History, secret: &str) -> Vec<Op> {
    let Some(versions) = h.finals.values().next().and_then(|f| f.get(secret)) else {
        return h.on(secret).into_iter().cloned().collect();
    };
    let any_hidden = versions.values().any(|(value, _)| value.is_none());
    h.on(secret)
        .into_iter()
        .filter_map(|o| match (&o.kind, o.unknown()) {
            (Kind::Put { value }, true) => {
                match versions.iter().find(|(_, (v, _))| *v == Some(*value)) {
                    Some((version, _)) => {
                        let mut resolved = o.clone();
                        resolved.outcome = Outcome::Ok(crate::history::Reply {
                            version: *version,
                            ..Default::default()
                        });
                        // Took effect at some point after its invocation; when is unknown.
                        resolved.completed_us = None;
                        Some(resolved)
                    }
                    None if !any_hidden => None,
                    None => Some(o.clone()),
                }
            }
            _ => Some(o.clone()),
        })
        .collect()
}

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for secret in h.secrets() {
        let ops = resolve_puts(h, &secret);
        let entries: Vec<Entry<'_>> = ops
            .iter()
            .filter(|o| relevant(o))
            .map(|o| Entry {
                op: o,
                call: o.invoked_us,
                ret: if o.unknown() {
                    u64::MAX
                } else {
                    o.completed_us.unwrap_or(u64::MAX)
                },
            })
            .collect();
        match search(&entries) {
            Search::Ok => {}
            Search::Violation(stuck) => out.push(Violation::new(
                "linearizable",
                format!(
                    "{secret}: no linearization of {} operations; none of these can go next after the longest \
                     valid prefix:\n    {}",
                    entries.len(),
                    stuck.join("\n    ")
                ),
            )),
            Search::Budget => out.push(Violation::new(
                super::INCONCLUSIVE,
                format!(
                    "{secret}: search gave up after {BUDGET} steps ({} operations)",
                    entries.len()
                ),
            )),
        }
    }
    out
}

enum Search {
    Ok,
    Violation(Vec<String>),
    Budget,
}

/// Depth-first search over linearization orders with memoization on (placed set, model).
///
/// Two prunings keep it small. An operation that leaves the model unchanged where it fits (a
/// read, a refusal) is placed at the first point it fits, without trying it later: holding
/// it back never helps. An unknown operation is only placed where it changes the model;
/// placing it where it does nothing is the same as it never having happened.
fn search(entries: &[Entry<'_>]) -> Search {
    let n = entries.len();
    let known: Vec<usize> = (0..n).filter(|&i| !entries[i].op.unknown()).collect();
    let mut seen: std::collections::HashSet<(Vec<u64>, Model)> = std::collections::HashSet::new();
    let mut steps = 0u64;
    let mut best: (usize, Vec<String>) = (0, Vec::new());
    let mut done = vec![0u64; n.div_ceil(64)];
    // (placed op, model before it, placed without alternatives)
    let mut stack: Vec<(usize, Model, bool)> = Vec::new();
    let mut model = Model::default();
    let mut next_from = 0usize;
    let is_done = |d: &Vec<u64>, i: usize| d[i / 64] & (1 << (i % 64)) != 0;
    loop {
        steps += 1;
        if steps > BUDGET || seen.len() > MAX_SEEN {
            return Search::Budget;
        }
        if known.iter().all(|&i| is_done(&done, i)) {
            return Search::Ok;
        }
        // An op may go next only if no pending known op completed before it was invoked.
        let min_ret = (0..n)
            .filter(|&i| !is_done(&done, i))
            .map(|i| entries[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        let mut chosen: Option<(usize, Model, bool)> = None;
        // A no-change known op that fits: place it, no branching.
        if next_from == 0 {
            for (i, e) in entries.iter().enumerate() {
                if is_done(&done, i) || e.call > min_ret || e.op.unknown() {
                    continue;
                }
                if let Some(m) = model.step(&e.op.kind, &e.out()) {
                    if m == model {
                        chosen = Some((i, m, true));
                        break;
                    }
                }
            }
        }
        if chosen.is_none() {
            let mut i = next_from;
            while i < n {
                if !is_done(&done, i) && entries[i].call <= min_ret {
                    if let Some(m) = model.step(&entries[i].op.kind, &entries[i].out()) {
                        let useless = entries[i].op.unknown() && m == model;
                        if !useless {
                            let mut d = done.clone();
                            d[i / 64] |= 1 << (i % 64);
                            if seen.insert((d, m.clone())) {
                                chosen = Some((i, m, false));
                                break;
                            }
                        }
                    }
                }
                i += 1;
            }
        }
        if let Some((i, m, forced)) = chosen {
            done[i / 64] |= 1 << (i % 64);
            stack.push((i, std::mem::replace(&mut model, m), forced));
            next_from = 0;
            continue;
        }
        if stack.len() > best.0 || best.1.is_empty() {
            let pending: Vec<String> = (0..n)
                .filter(|&i| !is_done(&done, i) && entries[i].call <= min_ret && !entries[i].op.unknown())
                .map(|i| entries[i].op.line())
                .collect();
            best = (stack.len(), pending);
        }
        // Backtrack past forced placements: they had no alternatives.
        loop {
            let Some((last, prev, forced)) = stack.pop() else {
                return Search::Violation(best.1);
            };
            done[last / 64] &= !(1 << (last % 64));
            model = prev;
            if !forced {
                next_from = last + 1;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Reply;

    fn op(id: usize, kind: Kind, call: u64, ret: u64, outcome: Outcome) -> Op {
        Op {
            id,
            client: "c".into(),
            node: "n".into(),
            secret: "acme/a".into(),
            kind,
            invoked_us: call,
            completed_us: Some(ret),
            outcome,
        }
    }

    fn put_ok(id: usize, value: u64, version: u64, call: u64, ret: u64) -> Op {
        let r = Reply {
            version,
            ..Default::default()
        };
        op(id, Kind::Put { value }, call, ret, Outcome::Ok(r))
    }

    fn get_ok(id: usize, version: u64, value: u64, call: u64, ret: u64) -> Op {
        let r = Reply {
            version,
            value: Some(value),
            ..Default::default()
        };
        op(
            id,
            Kind::Get {
                mode: Mode::Linearizable,
            },
            call,
            ret,
            Outcome::Ok(r),
        )
    }

    fn run(ops: Vec<Op>) -> usize {
        let h = History {
            ops,
            ..Default::default()
        };
        check(&h).len()
    }

    #[test]
    fn accepts_concurrent_puts_in_either_order() {
        assert_eq!(
            run(vec![
                put_ok(0, 10, 2, 0, 10),
                put_ok(1, 11, 1, 1, 9),
                get_ok(2, 2, 10, 20, 30)
            ]),
            0
        );
    }

    #[test]
    fn catches_a_stale_read() {
        assert_eq!(
            run(vec![
                put_ok(0, 10, 1, 0, 10),
                put_ok(1, 11, 2, 11, 20),
                get_ok(2, 1, 10, 21, 30)
            ]),
            1
        );
    }

    #[test]
    fn an_unknown_put_may_or_may_not_have_happened() {
        let unknown = op(1, Kind::Put { value: 11 }, 11, 0, Outcome::Unknown("timeout".into()));
        assert_eq!(
            run(vec![put_ok(0, 10, 1, 0, 10), unknown.clone(), get_ok(2, 1, 10, 21, 30)]),
            0
        );
        assert_eq!(run(vec![put_ok(0, 10, 1, 0, 10), unknown, get_ok(2, 2, 11, 21, 30)]), 0);
    }

    #[test]
    fn catches_two_successful_cas_on_one_expectation() {
        let promote = |id, version| {
            op(
                id,
                Kind::Promote { version, expect: 2 },
                30,
                40,
                Outcome::Ok(Reply::default()),
            )
        };
        let mut ops = vec![
            put_ok(0, 10, 1, 0, 10),
            put_ok(1, 11, 2, 11, 20),
            put_ok(2, 12, 3, 21, 29),
        ];
        ops.push(promote(3, 1));
        assert_eq!(run(ops.clone()), 1, "CURRENT is 3, a promote expecting 2 must fail");
    }
}
