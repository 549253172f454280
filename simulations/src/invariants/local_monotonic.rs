//! `local` reads are monotonic per client session: a client that keeps reading from its node
//! never sees that replica go back to an older applied index, crashes and restarts included.

use std::collections::BTreeMap;

use super::evidence::Violation;
use crate::history::History;
use crate::history::Kind;
use crate::history::Mode;

pub fn check(h: &History) -> Vec<Violation> {
    let mut last: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    let mut out = Vec::new();
    // A client runs one operation at a time, so invocation order is its session order.
    for o in &h.ops {
        let (Kind::Get { mode: Mode::Local }, Some(r)) = (&o.kind, o.ok()) else {
            continue;
        };
        if let Some((prev, id)) = last.get(o.client.as_str()) {
            if r.applied_index < *prev {
                out.push(Violation::new(
                    "local_monotonic",
                    format!(
                        "{}: read #{} at index {} after read #{id} at index {prev} (from {})",
                        o.client, o.id, r.applied_index, r.served_by
                    ),
                ));
            }
        }
        last.insert(&o.client, (r.applied_index, o.id));
    }
    out
}
