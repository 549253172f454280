//! Raft election safety, as it matters for reads: at no sampled instant do two nodes both
//! lead with a valid lease (the state in which a leader answers reads as current without
//! asking anyone), and no node's term ever goes back, restarts included.
//!
//! openraft's leader ids are (term, node), so two leaders in one term are legal there; what
//! must never happen is two leaders that both believe no other leader can exist.

use std::collections::BTreeMap;

use super::evidence::Violation;
use crate::history::History;

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_instant: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut term: BTreeMap<u64, u64> = BTreeMap::new();
    for s in &h.samples {
        if s.leader && s.lease {
            by_instant.entry(s.at_us).or_default().push(s.node);
        }
        let t = term.entry(s.node).or_default();
        if s.term < *t {
            out.push(Violation::new(
                "election_safety",
                format!(
                    "node {} went back from term {} to {} at {} us",
                    s.node, t, s.term, s.at_us
                ),
            ));
        }
        *t = s.term;
    }
    for (at, leaders) in by_instant {
        if leaders.len() > 1 {
            out.push(Violation::new(
                "election_safety",
                format!("at {at} us nodes {leaders:?} all led with a valid lease"),
            ));
            break;
        }
    }
    out
}
