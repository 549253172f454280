//! Destroyed means gone: a node that reports its storage shredded through the last destroy it
//! applied holds no log entry at or before that destroy (the entries that carried the
//! destroyed version's ciphertext and wrapped keys were purged). That every node gets there
//! after healing is a liveness check (`crate::liveness`).

use super::evidence::Evidence;
use super::evidence::Violation;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    let mut out = vec![];
    for s in &e.shreds {
        if s.requested == 0 || s.through < s.requested {
            continue;
        }
        if let Some(first) = s.first_log_index.filter(|i| *i <= s.requested) {
            out.push(Violation::new(
                "destroyed_gone",
                format!(
                    "{} reports its storage shredded through index {} but its log still starts at entry {first}: \
                     the destroyed bytes survive",
                    s.node, s.requested
                ),
            ));
        }
    }
    out
}
