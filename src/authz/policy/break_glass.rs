//! Break-glass requests: the reason and ticket a `secrets:read-break-glass` read must carry.

use super::error::*;

/// Checks the reason and ticket a break-glass read must carry: a reason of 8 to 512 characters
/// (at least 8 that are not blank) without control characters, and a ticket of 1 to 64 of
/// `[A-Za-z0-9._:-]` (e.g. `INC-123`).
pub fn check_break_glass(reason: &str, ticket: &str) -> Result<(), PolicyError> {
    let n = reason.chars().count();
    if !(8..=512).contains(&n) || reason.trim().chars().count() < 8 {
        return Err(PolicyError::BreakGlass(format!(
            "the reason has {n} characters; say why in 8 to 512 characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(PolicyError::BreakGlass(
            "the reason contains control characters; use one line of plain text".into(),
        ));
    }
    let ok = !ticket.is_empty()
        && ticket.len() <= 64
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !ok {
        return Err(PolicyError::BreakGlass(format!(
            "ticket {} must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', ':', '-' (e.g. INC-123)",
            shown(ticket)
        )));
    }
    Ok(())
}
