//! `at_least` reads see the token's write: the replica that answered had applied at least the
//! index the token names (the client's own last write).

use super::evidence::Violation;
use crate::history::History;
use crate::history::Kind;
use crate::history::Mode;

pub fn check(h: &History) -> Vec<Violation> {
    h.ops
        .iter()
        .filter_map(|o| match (&o.kind, o.ok()) {
            (
                Kind::Get {
                    mode: Mode::AtLeast(index),
                },
                Some(r),
            ) if r.applied_index < *index => Some(Violation::new(
                "at_least",
                format!(
                    "read #{} by {} from {} was served at index {} but its token needs {index}",
                    o.id, o.client, r.served_by, r.applied_index
                ),
            )),
            _ => None,
        })
        .collect()
}
