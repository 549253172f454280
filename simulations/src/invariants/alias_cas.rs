//! No lost update through alias compare-and-swap: two promotes of CURRENT that expected the
//! same version cannot both move it, unless CURRENT was moved back to that version between
//! them. In commit order, each successful promote expected the version CURRENT held.

use super::evidence::Violation;
use crate::history::History;
use crate::history::Kind;

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for secret in h.secrets() {
        let ops = h.on(&secret);
        // Ops that set CURRENT, with the version they set it to and their log index (acked).
        let mut moves: Vec<(u64, u64, Option<u64>, usize)> = Vec::new(); // (index, to, expect, id)
        let mut unsure = false;
        for o in &ops {
            match (&o.kind, o.ok()) {
                (Kind::Put { .. }, Some(r)) => moves.push((r.log_index, r.version, None, o.id)),
                (Kind::Promote { version, expect }, Some(r)) if version != expect => {
                    moves.push((r.log_index, *version, Some(*expect), o.id))
                }
                (Kind::Put { .. } | Kind::Promote { .. } | Kind::Destroy { .. }, None) if o.unknown() => unsure = true,
                _ => {}
            }
        }
        moves.sort();
        // Pairwise: same expectation, both moved, nothing moved CURRENT back in between.
        for (i, a) in moves.iter().enumerate() {
            let Some(ea) = a.2 else { continue };
            for b in &moves[i + 1..] {
                if b.2 != Some(ea) {
                    continue;
                }
                let restored = moves.iter().any(|m| m.0 > a.0 && m.0 < b.0 && m.1 == ea)
                    || ops
                        .iter()
                        .any(|o| o.unknown() && matches!(o.kind, Kind::Promote { version, .. } if version == ea));
                if !restored {
                    out.push(Violation::new(
                        "alias_cas",
                        format!(
                            "{secret}: promotes #{} (index {}) and #{} (index {}) both moved CURRENT expecting {ea}",
                            a.3, a.0, b.3, b.0
                        ),
                    ));
                }
            }
        }
        // Sequential walk when every CURRENT change is known.
        if !unsure {
            let mut current = 0;
            for (index, to, expect, id) in &moves {
                if let Some(e) = expect {
                    if *e != current {
                        out.push(Violation::new(
                            "alias_cas",
                            format!("{secret}: promote #{id} at index {index} expected {e} but CURRENT was {current}"),
                        ));
                    }
                }
                current = *to;
            }
        }
    }
    out
}
