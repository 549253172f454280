//! One node's read telemetry: reads served per (secret, version), counted in memory with no
//! write anywhere (docs/architecture.md: Rotation). Bounded: at most [`MAX_VERSIONS`] versions,
//! each with a fixed set of counters and at most [`MAX_PRINCIPALS`] principal names; when full,
//! the least recently read sixteenth is forgotten in one scan (the read that finds the book full
//! pays it, the next ones nothing) and `NodeUsage.forgotten_through_ms` says how far back reads
//! may be missing, so no one reads a forgotten version as unused.
//!
//! Counts are kept per minute for the last hour and per hour for the last day (ring buffers
//! stamped with the period they hold, so a stale slot is never counted).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::pb;

/// Versions remembered at most (about 1 KiB each).
pub const MAX_VERSIONS: usize = 20_000;
/// Principal names kept per version (more are counted as `principals_truncated`).
pub const MAX_PRINCIPALS: usize = 16;
/// A full book forgets this fraction of its versions at once (1/16), the least recently read.
const EVICT_DIVISOR: usize = 16;
/// Longest principal name kept (longer ones are cut).
const MAX_PRINCIPAL_BYTES: usize = 128;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

/// `N` counters for the last `N` periods of `period_ms`.
#[derive(Clone)]
struct Ring<const N: usize> {
    /// (period number, reads in it)
    slots: [(u64, u32); N],
}

impl<const N: usize> Ring<N> {
    fn new() -> Self {
        Self {
            slots: [(u64::MAX, 0); N],
        }
    }

    fn add(&mut self, period: u64) {
        let slot = &mut self.slots[(period % N as u64) as usize];
        if slot.0 != period {
            *slot = (period, 0);
        }
        slot.1 = slot.1.saturating_add(1);
    }

    /// Reads in the `N` periods up to and including `period`.
    fn sum(&self, period: u64) -> u64 {
        self.slots
            .iter()
            .filter(|(p, _)| *p != u64::MAX && *p <= period && period - *p < N as u64)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

#[derive(Clone)]
struct VersionUse {
    minutes: Ring<60>,
    hours: Ring<24>,
    last_read_ms: u64,
    principals: Vec<String>,
    principals_truncated: bool,
}

impl VersionUse {
    fn new() -> Self {
        Self {
            minutes: Ring::new(),
            hours: Ring::new(),
            last_read_ms: 0,
            principals: Vec::new(),
            principals_truncated: false,
        }
    }

    fn record(&mut self, principal: &str, now_ms: u64) {
        self.minutes.add(now_ms / MINUTE_MS);
        self.hours.add(now_ms / HOUR_MS);
        self.last_read_ms = self.last_read_ms.max(now_ms);
        let principal = cut(principal);
        if !self.principals.iter().any(|p| p == principal) {
            if self.principals.len() < MAX_PRINCIPALS {
                self.principals.push(principal.to_string());
            } else {
                self.principals_truncated = true;
            }
        }
    }

    fn report(&self, version: u64, now_ms: u64) -> pb::VersionUsage {
        let mut principals = self.principals.clone();
        principals.sort();
        pb::VersionUsage {
            version,
            reads_last_hour: self.minutes.sum(now_ms / MINUTE_MS),
            reads_last_day: self.hours.sum(now_ms / HOUR_MS),
            last_read_ms: self.last_read_ms,
            principals,
            principals_truncated: self.principals_truncated,
        }
    }
}

/// `s` cut to [`MAX_PRINCIPAL_BYTES`] at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_PRINCIPAL_BYTES {
        return s;
    }
    let mut end = MAX_PRINCIPAL_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Default)]
struct Inner {
    secrets: HashMap<String, HashMap<u64, VersionUse>>,
    versions: usize,
    forgotten_through_ms: u64,
}

impl Inner {
    /// Forgets the `k` least recently read versions in one scan (run only when the book is
    /// full, so the scan's cost is shared by the next `k` new versions).
    fn evict_oldest(&mut self, k: usize) {
        let mut all: Vec<(u64, &String, u64)> = self
            .secrets
            .iter()
            .flat_map(|(name, vs)| vs.iter().map(move |(v, u)| (u.last_read_ms, name, *v)))
            .collect();
        let k = k.clamp(1, all.len().max(1));
        if all.is_empty() {
            return;
        }
        if k < all.len() {
            all.select_nth_unstable(k - 1);
        }
        let gone: Vec<(u64, String, u64)> = all[..k].iter().map(|(l, n, v)| (*l, (*n).clone(), *v)).collect();
        for (last, name, version) in gone {
            if let Some(vs) = self.secrets.get_mut(&name) {
                vs.remove(&version);
                if vs.is_empty() {
                    self.secrets.remove(&name);
                }
            }
            self.versions -= 1;
            self.forgotten_through_ms = self.forgotten_through_ms.max(last);
        }
    }
}

/// The node's read telemetry (one per node, shared by every read).
pub struct UsageBook {
    since_ms: u64,
    max_versions: usize,
    inner: Mutex<Inner>,
}

impl UsageBook {
    /// An empty book counting reads from `since_ms` on.
    pub fn new(since_ms: u64) -> Self {
        Self::with_bound(since_ms, MAX_VERSIONS)
    }

    fn with_bound(since_ms: u64, max_versions: usize) -> Self {
        Self {
            since_ms,
            max_versions: max_versions.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one read of `version` of `name` by `principal` at `now_ms`.
    pub fn record(&self, name: &str, version: u64, principal: &str, now_ms: u64) {
        let mut inner = self.lock();
        let known = inner.secrets.get(name).is_some_and(|vs| vs.contains_key(&version));
        if !known {
            if inner.versions >= self.max_versions {
                inner.evict_oldest(self.max_versions / EVICT_DIVISOR);
            }
            inner.versions += 1;
        }
        let versions = match inner.secrets.get_mut(name) {
            Some(vs) => vs,
            None => inner.secrets.entry(name.to_string()).or_default(),
        };
        versions
            .entry(version)
            .or_insert_with(VersionUse::new)
            .record(principal, now_ms);
    }

    /// What this node counted for each of `names` (those it has read), at `now_ms`.
    pub fn report(&self, names: &[String], now_ms: u64) -> pb::NodeUsage {
        let inner = self.lock();
        let secrets = names
            .iter()
            .filter_map(|name| {
                let vs = inner.secrets.get(name)?;
                let mut versions: Vec<pb::VersionUsage> = vs.iter().map(|(v, u)| u.report(*v, now_ms)).collect();
                versions.sort_by_key(|v| std::cmp::Reverse(v.version));
                Some(pb::SecretReads {
                    name: name.clone(),
                    versions,
                })
            })
            .collect();
        pb::NodeUsage {
            since_ms: self.since_ms,
            forgotten_through_ms: inner.forgotten_through_ms,
            now_ms,
            secrets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn one(book: &UsageBook, name: &str, now: u64) -> Vec<pb::VersionUsage> {
        let r = book.report(&[name.to_string()], now);
        r.secrets.into_iter().next().map(|s| s.versions).unwrap_or_default()
    }

    #[test]
    fn counts_reads_per_version_over_the_last_hour_and_day() {
        let book = UsageBook::new(T0);
        for i in 0..5 {
            book.record("acme/db", 1, "svc/a", T0 + i);
        }
        book.record("acme/db", 2, "svc/b", T0 + 10);
        // Two hours later: gone from the hour, still in the day.
        book.record("acme/db", 1, "svc/a", T0 + 2 * HOUR_MS);
        let vs = one(&book, "acme/db", T0 + 2 * HOUR_MS + 1);
        assert_eq!(vs.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
        let v1 = &vs[1];
        assert_eq!((v1.reads_last_hour, v1.reads_last_day), (1, 6));
        assert_eq!(v1.last_read_ms, T0 + 2 * HOUR_MS);
        assert_eq!(v1.principals, vec!["svc/a".to_string()]);
        let v2 = &vs[0];
        assert_eq!((v2.reads_last_hour, v2.reads_last_day), (0, 1));
        // A day and more later: nothing counted, the last read kept.
        let later = one(&book, "acme/db", T0 + 30 * HOUR_MS);
        assert_eq!((later[1].reads_last_hour, later[1].reads_last_day), (0, 0));
        assert_eq!(later[1].last_read_ms, T0 + 2 * HOUR_MS);
        // A slot reused a day later holds only the new period's reads.
        book.record("acme/db", 1, "svc/a", T0 + 24 * HOUR_MS);
        let again = one(&book, "acme/db", T0 + 24 * HOUR_MS);
        assert_eq!((again[1].reads_last_hour, again[1].reads_last_day), (1, 2));
    }

    #[test]
    fn principals_are_bounded_and_cut() {
        let book = UsageBook::new(T0);
        for i in 0..(MAX_PRINCIPALS + 4) {
            book.record("acme/db", 1, &format!("svc/{i:02}"), T0);
        }
        book.record("acme/db", 1, &"x".repeat(1000), T0);
        let v = &one(&book, "acme/db", T0)[0];
        assert_eq!(v.principals.len(), MAX_PRINCIPALS);
        assert!(v.principals_truncated);
        assert_eq!(v.reads_last_hour, MAX_PRINCIPALS as u64 + 5);
        let book = UsageBook::new(T0);
        book.record("acme/db", 1, &"é".repeat(100), T0);
        let v = &one(&book, "acme/db", T0)[0];
        assert!(v.principals[0].len() <= MAX_PRINCIPAL_BYTES);
    }

    #[test]
    fn a_full_book_forgets_the_least_recently_read_and_says_how_far_back() {
        let book = UsageBook::with_bound(T0, 3);
        book.record("acme/a", 1, "p", T0 + 1);
        book.record("acme/b", 1, "p", T0 + 2);
        book.record("acme/b", 2, "p", T0 + 3);
        book.record("acme/a", 1, "p", T0 + 4);
        // Full: a new version forgets acme/b v1 (last read at T0 + 2).
        book.record("acme/c", 1, "p", T0 + 5);
        let r = book.report(&["acme/a".into(), "acme/b".into(), "acme/c".into()], T0 + 6);
        assert_eq!(r.forgotten_through_ms, T0 + 2);
        let versions: Vec<(String, u64)> = r
            .secrets
            .iter()
            .flat_map(|s| s.versions.iter().map(move |v| (s.name.clone(), v.version)))
            .collect();
        assert_eq!(
            versions,
            vec![("acme/a".into(), 1), ("acme/b".into(), 2), ("acme/c".into(), 1)]
        );
        assert_eq!(book.lock().versions, 3);
        // A larger full book forgets its oldest sixteenth at once.
        let book = UsageBook::with_bound(T0, 32);
        for i in 0..32 {
            book.record(&format!("acme/s{i:02}"), 1, "p", T0 + i);
        }
        book.record("acme/new", 1, "p", T0 + 100);
        assert_eq!(book.lock().versions, 31);
        let names: Vec<String> = (0..32).map(|i| format!("acme/s{i:02}")).collect();
        let kept: Vec<String> = book
            .report(&names, T0 + 100)
            .secrets
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(kept, names[2..].to_vec(), "the two least recently read went");
        assert_eq!(book.report(&[], T0).forgotten_through_ms, T0 + 1);
        // Names not asked for or never read are not reported.
        assert!(book.report(&["acme/z".into()], T0).secrets.is_empty());
        assert_eq!(book.report(&[], T0).since_ms, T0);
    }
}
