//! Version numbers are unique and increasing: no two acknowledged puts of a secret got the same
//! version, and a put that began after another had been acknowledged got a higher version.
//!
//! (A write's reply carries the log index of the entry that answered it; for a retried request
//! that is the replay's index, not the version's creation, so order is judged by real time.)

use super::evidence::Violation;
use crate::history::History;
use crate::history::Kind;

pub fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for secret in h.secrets() {
        // (invoked, completed, version, id) of acknowledged puts.
        let puts: Vec<(u64, u64, u64, usize)> = h
            .on(&secret)
            .into_iter()
            .filter(|o| matches!(o.kind, Kind::Put { .. }))
            .filter_map(|o| Some((o.invoked_us, o.completed_us?, o.ok()?.version, o.id)))
            .collect();
        for (i, a) in puts.iter().enumerate() {
            for b in &puts[i + 1..] {
                if a.2 == b.2 {
                    out.push(Violation::new(
                        "versions",
                        format!(
                            "{secret}: puts #{} and #{} were both acknowledged with version {}",
                            a.3, b.3, a.2
                        ),
                    ));
                }
                for (first, then) in [(a, b), (b, a)] {
                    if first.1 < then.0 && first.2 >= then.2 {
                        out.push(Violation::new(
                            "versions",
                            format!(
                                "{secret}: put #{} got version {} after put #{} had been acknowledged with version {}",
                                then.3, then.2, first.3, first.2
                            ),
                        ));
                    }
                }
            }
        }
    }
    out
}
