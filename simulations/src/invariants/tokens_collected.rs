//! Token records do not outlive their retention: on every node, no token revoked or expired
//! more than [`crate::shape::SIM_TOKEN_RETENTION_MS`] before the last command it applied still
//! has a record (each command deletes up to 16 due records, more than a run ever has due at
//! once). That a live token's record is never deleted is the linearizable model's part.

use super::evidence::Evidence;
use super::evidence::Violation;

pub fn check(e: &Evidence<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for n in &e.tokens {
        for t in &n.records {
            let stopped = match t.revoked_at_ms {
                0 => t.expires_at_ms,
                r => r.min(t.expires_at_ms),
            };
            let due = stopped + crate::shape::SIM_TOKEN_RETENTION_MS;
            if due <= n.clock_ms {
                out.push(Violation::new(
                    "tokens_collected",
                    format!(
                        "{} still holds the record of token {} ({}), due for deletion at {due} ms; \
                         its last command ran at {} ms",
                        n.node, t.accessor, t.principal, n.clock_ms
                    ),
                ));
            }
        }
    }
    out
}
