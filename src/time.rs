//! Wall-clock time for the non-replicated parts of a node (stamping proposals, audit, token
//! expiry). Replicated code never calls this: it reads `Command.proposed_at_ms`.
//!
//! A simulation replaces the clock for its thread with [`set_thread_clock`], so that the time a
//! node stamps on its proposals (which drives the request table's expiry, token lifetimes and
//! every recorded time) is simulated time: a seed then replays the same whatever the host.

use std::cell::Cell;

thread_local! {
    static CLOCK: Cell<Option<fn() -> u64>> = const { Cell::new(None) };
}

/// Makes [`now_ms`] on this thread answer `clock()` (milliseconds since the Unix epoch), or the
/// system clock again with `None`. For simulations, whose hosts all run on one thread.
pub fn set_thread_clock(clock: Option<fn() -> u64>) {
    CLOCK.with(|c| c.set(clock));
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    if let Some(clock) = CLOCK.with(|c| c.get()) {
        return clock();
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T03:04:05.678Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }

    #[test]
    fn a_thread_clock_replaces_the_system_clock_on_its_thread_only() {
        super::set_thread_clock(Some(|| 42));
        assert_eq!(super::now_ms(), 42);
        let elsewhere = std::thread::spawn(super::now_ms).join().unwrap();
        assert!(elsewhere > 1_700_000_000_000, "another thread keeps the system clock");
        super::set_thread_clock(None);
        assert!(super::now_ms() > 1_700_000_000_000);
    }
}
