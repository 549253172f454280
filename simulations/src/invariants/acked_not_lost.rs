//! Acknowledged writes are never lost: after the cluster heals, every node holds every
//! acknowledged put at the version it was acknowledged with and with its value (unless a
//! destroy removed the value, or `max_versions` pruned the version: it is older than the newest
//! [`crate::shape::SIM_MAX_VERSIONS`], and `versions_kept` checks that pruning spared what it
//! must), and all nodes hold the same versions.

use super::evidence::Violation;
use crate::history::History;
use crate::history::Kind;

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for (node, secrets) in &h.finals {
        for o in &h.ops {
            let (Kind::Put { value }, Some(r)) = (&o.kind, o.ok()) else {
                continue;
            };
            let held = secrets.get(&o.object);
            let newest = held.and_then(|s| s.versions.keys().next_back().copied()).unwrap_or(0);
            match held.and_then(|s| s.versions.get(&r.version)) {
                None if r.version + crate::shape::SIM_MAX_VERSIONS <= newest => {}
                None => out.push(Violation::new(
                    "acked_not_lost",
                    format!(
                        "{node} has no version {} of {} acknowledged to put #{}",
                        r.version, o.object, o.id
                    ),
                )),
                Some((Some(v), _)) if v != value => out.push(Violation::new(
                    "acked_not_lost",
                    format!(
                        "{node} holds value {v} at version {} of {}, but put #{} was acknowledged with value {value}",
                        r.version, o.object, o.id
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    // What each node holds, without the index it was read at.
    let held = |secrets: &std::collections::BTreeMap<String, crate::history::FinalSecret>| {
        secrets
            .iter()
            .map(|(name, f)| (name.clone(), f.versions.clone(), f.current))
            .collect::<Vec<_>>()
    };
    let mut nodes = h.finals.iter();
    if let Some((first, reference)) = nodes.next() {
        for (node, secrets) in nodes {
            if held(secrets) != held(reference) {
                out.push(Violation::new(
                    "acked_not_lost",
                    format!("after healing, {node} and {first} hold different secrets or versions"),
                ));
            }
        }
    }
    out
}
