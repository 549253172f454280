//! How aliases move on a secret record (docs/architecture.md: Data model): the one place that
//! keeps PREVIOUS, PENDING and the rotation period in step with CURRENT.

use crate::names;
use crate::pb;

/// Points `alias` at `version`. Moving CURRENT to another version moves PREVIOUS to the old
/// CURRENT and restarts the rotation period (`current_since_ms`); a PENDING alias on the
/// version that becomes CURRENT is cleared (the pending version was promoted).
pub(crate) fn point_alias(secret: &mut pb::Secret, alias: &str, version: u64, now: u64) {
    if alias == names::CURRENT {
        if let Some(old) = secret.aliases.get(names::CURRENT).copied() {
            if old != version {
                secret.aliases.insert(names::PREVIOUS.to_string(), old);
            }
        }
        if secret.aliases.get(names::CURRENT) != Some(&version) {
            secret.current_since_ms = now;
        }
        if secret.aliases.get(names::PENDING) == Some(&version) {
            secret.aliases.remove(names::PENDING);
        }
    }
    secret.aliases.insert(alias.to_string(), version);
}
