//! Invariants over a run's history, one per file. Each returns what it found wrong; an empty
//! list means the property held. Unknown outcomes are maybe-committed throughout.

pub mod acked_not_lost;
pub mod alias_cas;
pub mod at_least;
pub mod audit_anchored;
pub mod bounded;
pub mod destroyed_gone;
pub mod election_safety;
pub mod evidence;
pub mod exactly_once;
pub mod fenced_refuses;
pub mod linearizable;
pub mod local_monotonic;
pub mod no_plaintext;
pub mod resolve;
pub mod rotation_current;
pub mod rotation_hook_writes;
pub mod rotation_one_in_flight;
pub mod rotation_retire_unused;
pub mod rotation_steps;
pub mod tokens_collected;
pub mod versions;
pub mod versions_kept;
pub mod watch_gapless;

pub use evidence::{Evidence, Violation};

pub fn check_all(e: &Evidence<'_>) -> Vec<Violation> {
    let h = e.history;
    let mut v = Vec::new();
    v.extend(exactly_once::check(h, &e.tables));
    v.extend(linearizable::check(h));
    v.extend(at_least::check(h));
    v.extend(bounded::check(h));
    v.extend(local_monotonic::check(h));
    v.extend(acked_not_lost::check(h));
    v.extend(versions::check(h));
    v.extend(versions_kept::check(e));
    v.extend(alias_cas::check(h));
    v.extend(no_plaintext::check(e));
    v.extend(destroyed_gone::check(e));
    v.extend(tokens_collected::check(e));
    v.extend(audit_anchored::check(e));
    v.extend(rotation_current::check(e));
    v.extend(rotation_steps::check(e));
    v.extend(rotation_one_in_flight::check(e));
    v.extend(rotation_retire_unused::check(e));
    v.extend(rotation_hook_writes::check(e));
    v.extend(watch_gapless::check(h));
    v.extend(election_safety::check(h));
    v.extend(fenced_refuses::check(h));
    v.extend(h.liveness.iter().map(|l| Violation::new("liveness", l.clone())));
    v
}
