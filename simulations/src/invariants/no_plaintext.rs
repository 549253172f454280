//! No plaintext in simulated storage or peer messages: no byte a node stores (log, state
//! machine, snapshots, metadata) and no byte sent between nodes contains a written value.

use super::evidence::Evidence;
use super::evidence::Violation;
use crate::net::VALUE_MARKER;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    let mut out: Vec<Violation> = e
        .leaks
        .iter()
        .map(|l| Violation::new("no_plaintext", l.clone()))
        .collect();
    for (node, records) in &e.storage {
        let n = records
            .iter()
            .filter(|r| r.windows(VALUE_MARKER.len()).any(|w| w == VALUE_MARKER))
            .count();
        if n > 0 {
            out.push(Violation::new(
                "no_plaintext",
                format!("{n} records in {node}'s storage contain secret plaintext"),
            ));
        }
    }
    out
}
