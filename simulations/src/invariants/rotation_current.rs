//! CURRENT never points at a disabled or destroyed version: on every node, at every sample of
//! the run and at the end, each rotating secret's CURRENT names an enabled version (rotations
//! retire PREVIOUS, never CURRENT; a rollback moves CURRENT only to an enabled version).

use super::evidence::Evidence;
use super::evidence::Violation;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    let log = &e.history.rotations;
    let mut out: Vec<Violation> = log
        .bad_current
        .iter()
        .map(|d| Violation::new("rotation_current", d.clone()))
        .collect();
    if log.bad_current_seen > log.bad_current.len() {
        out.push(Violation::new(
            "rotation_current",
            format!(
                "... and {} more sightings",
                log.bad_current_seen - log.bad_current.len()
            ),
        ));
    }
    out
}
