//! `max_versions` keeps what it must and no more: on every node, each secret holds its newest
//! `max_versions` versions, every version an alias points at, and nothing else.

use std::collections::BTreeSet;

use super::evidence::Evidence;
use super::evidence::Violation;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for k in &e.kept {
        let held: BTreeSet<u64> = k.versions.iter().copied().collect();
        let mut fail = |what: String| {
            out.push(Violation::new(
                "versions_kept",
                format!("{} on {}: {what}", k.secret, k.node),
            ))
        };
        for (alias, v) in &k.aliases {
            if !held.contains(v) {
                fail(format!("alias {alias} points at version {v}, which has no record"));
            }
        }
        let newest = k.next_version.saturating_sub(k.max_versions).max(1)..k.next_version;
        for v in newest {
            if !held.contains(&v) {
                fail(format!(
                    "version {v} is among the newest {} but has no record",
                    k.max_versions
                ));
            }
        }
        let aliased: BTreeSet<u64> = k.aliases.iter().map(|(_, v)| *v).collect();
        let allowed = k.max_versions + aliased.len() as u64;
        if held.len() as u64 > allowed {
            fail(format!(
                "{} version records kept; max_versions {} and {} aliased versions allow {allowed}",
                held.len(),
                k.max_versions,
                aliased.len()
            ));
        }
    }
    out
}
