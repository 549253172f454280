//! Wall-clock time for the non-replicated parts of a node (stamping proposals, audit).
//! Replicated code never calls this: it reads `Command.proposed_at_ms`.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
