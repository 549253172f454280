//! A per-source limit on unauthenticated requests (no token, a bad token, a bad certificate):
//! every such request costs an fsynced audit record, so a source without credentials may only
//! spend a bounded rate of them. Authenticated requests are never limited here.
//!
//! Each source IP has a token bucket (`per_sec` refill, `burst` capacity). At most
//! [`MAX_SOURCES`] buckets are kept; past that, idle buckets (full again) are dropped, and when
//! none is idle every new source shares one overflow bucket, so many addresses cannot grow
//! memory or escape the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Unauthenticated requests a second per source unless configured
/// (`limits.anonymous_requests_per_sec`): plenty for a load balancer's health probes.
pub const DEFAULT_PER_SEC: u32 = 20;
/// Burst per source unless configured (`limits.anonymous_burst`).
pub const DEFAULT_BURST: u32 = 100;
/// Most sources with a bucket of their own.
pub const MAX_SOURCES: usize = 4096;
/// How often a full table is swept for idle buckets (a sweep is O(MAX_SOURCES)).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The verdict on one unauthenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: decide and audit it as usual.
    Admit,
    /// Over the limit. `first` is true for the first refusal since the source was last
    /// admitted: that one is audited, the rest only counted, so refusals cannot grow the audit
    /// log faster than admissions do.
    Refuse { first: bool, retry_after: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    refusing: bool,
}

/// See the module documentation.
pub struct AnonymousLimit {
    per_sec: f64,
    burst: f64,
    table: Mutex<Table>,
}

struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
    last_sweep: Option<Instant>,
}

/// The IP of a `host:port` source; requests without a parsable source share one key.
fn source_ip(source: &str) -> IpAddr {
    source
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| source.parse::<IpAddr>())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

impl AnonymousLimit {
    /// `per_sec` requests a second, bursts of `burst`, per source (both at least 1).
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: None,
                last_sweep: None,
            }),
        }
    }

    /// Charges one unauthenticated request from `source` (`ip:port`) at `now`.
    pub fn charge(&self, source: &str, now: Instant) -> Verdict {
        let ip = source_ip(source);
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !t.buckets.contains_key(&ip) && t.buckets.len() >= MAX_SOURCES {
            self.sweep(&mut t, now);
        }
        let full = Bucket {
            tokens: self.burst,
            at: now,
            refusing: false,
        };
        let bucket = if t.buckets.len() < MAX_SOURCES || t.buckets.contains_key(&ip) {
            t.buckets.entry(ip).or_insert(full)
        } else {
            t.overflow.get_or_insert(full)
        };
        self.take(bucket, now)
    }

    fn take(&self, b: &mut Bucket, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.refusing = false;
            return Verdict::Admit;
        }
        let first = !b.refusing;
        b.refusing = true;
        Verdict::Refuse {
            first,
            retry_after: Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec),
        }
    }

    /// Drops the buckets that would be full again by `now` (at most once per [`SWEEP_EVERY`]).
    fn sweep(&self, t: &mut Table, now: Instant) {
        if t.last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        t.last_sweep = Some(now);
        let (per_sec, burst) = (self.per_sec, self.burst);
        t.buckets
            .retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst);
    }

    #[cfg(test)]
    fn sources(&self) -> usize {
        self.table.lock().unwrap().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(l: &AnonymousLimit, source: &str, n: usize, now: Instant) -> usize {
        (0..n).filter(|_| l.charge(source, now) == Verdict::Admit).count()
    }

    #[test]
    fn a_burst_then_the_rate_per_source() {
        let l = AnonymousLimit::new(10, 20);
        let t0 = Instant::now();
        assert_eq!(admitted(&l, "10.0.0.1:1000", 100, t0), 20);
        // Another port of the same host shares the bucket; another host has its own.
        assert!(matches!(
            l.charge("10.0.0.1:2000", t0),
            Verdict::Refuse { first: false, .. }
        ));
        assert_eq!(admitted(&l, "10.0.0.2:1000", 100, t0), 20);
        // One second later, ten more.
        assert_eq!(admitted(&l, "10.0.0.1:1000", 100, t0 + Duration::from_secs(1)), 10);
    }

    #[test]
    fn only_the_first_refusal_after_an_admission_is_audited() {
        let l = AnonymousLimit::new(1, 1);
        let t0 = Instant::now();
        assert_eq!(l.charge("[::1]:9", t0), Verdict::Admit);
        let Verdict::Refuse { first, retry_after } = l.charge("[::1]:9", t0) else {
            panic!("admitted past the burst");
        };
        assert!(first);
        assert_eq!(retry_after, Duration::from_secs(1));
        assert!(matches!(l.charge("[::1]:9", t0), Verdict::Refuse { first: false, .. }));
        assert_eq!(l.charge("[::1]:9", t0 + Duration::from_secs(1)), Verdict::Admit);
        assert!(matches!(
            l.charge("[::1]:9", t0 + Duration::from_secs(1)),
            Verdict::Refuse { first: true, .. }
        ));
    }

    #[test]
    fn many_sources_stay_bounded_and_limited() {
        let l = AnonymousLimit::new(1, 2);
        let t0 = Instant::now();
        let mut admitted_total = 0;
        for i in 0..(MAX_SOURCES as u32 + 5000) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            admitted_total += admitted(&l, &format!("{ip}:1"), 3, t0);
        }
        assert_eq!(l.sources(), MAX_SOURCES);
        // Every tracked source got its burst; the rest shared one overflow bucket of 2.
        assert_eq!(admitted_total, MAX_SOURCES * 2 + 2);
        // Once the tracked buckets are idle (full again) a sweep makes room for new sources.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(admitted(&l, "192.0.2.1:1", 3, later), 2);
        assert_eq!(l.sources(), 1);
    }

    #[test]
    fn sources_without_an_address_share_one_bucket() {
        let l = AnonymousLimit::new(1, 3);
        let t0 = Instant::now();
        assert_eq!(admitted(&l, "", 2, t0) + admitted(&l, "not an address", 2, t0), 3);
    }
}
