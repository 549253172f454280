//! [`Cache`]: values by name, each fresh for its TTL, served stale only while refreshes fail
//! and only up to `max_stale`, and dropped for good the moment a change revokes its version.
//!
//! Invariants:
//! - A revoked entry holds no value and is never served again: only a new fetch replaces it.
//! - An entry invalidated by a change at index `i` is not fresh again until a fetch from a
//!   replica that applied `i` (one from a replica behind it is served once, not kept).
//! - One fetch per name at a time: callers that find no fresh value queue on the name's lock
//!   and take the value the first one fetched (request coalescing).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::value::Secret;

/// What the cache holds for a name.
pub enum Lookup {
    Fresh(Secret),
    /// Past its TTL (or invalidated): serve only if a refresh fails, within max_stale.
    Stale {
        secret: Secret,
        fetched_at: Instant,
    },
    Revoked,
    Missing,
}

struct Entry {
    secret: Option<Secret>,
    fetched_at: Instant,
    fresh_until: Instant,
    /// A change at this index made the value stale: a fetch must have applied it.
    needs_index: u64,
}

/// Counters of what the cache did (also exported as `coffer_sdk_*` metrics).
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub fetches: AtomicU64,
    pub stale_serves: AtomicU64,
    pub refresh_failures: AtomicU64,
    pub revocations: AtomicU64,
    pub invalidations: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub fetches: u64,
    pub stale_serves: u64,
    pub refresh_failures: u64,
    pub revocations: u64,
    pub invalidations: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            hits: l(&self.hits),
            misses: l(&self.misses),
            fetches: l(&self.fetches),
            stale_serves: l(&self.stale_serves),
            refresh_failures: l(&self.refresh_failures),
            revocations: l(&self.revocations),
            invalidations: l(&self.invalidations),
        }
    }
}

pub(crate) fn count(a: &AtomicU64, metric: &'static str) {
    a.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric).increment(1);
}

#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, Entry>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: Stats,
}

impl Cache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every update below leaves the map consistent before it could panic.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lookup(&self, name: &str, now: Instant) -> Lookup {
        match self.entries().get(name) {
            None => Lookup::Missing,
            Some(Entry { secret: None, .. }) => Lookup::Revoked,
            Some(e) if now < e.fresh_until => Lookup::Fresh(e.secret.clone().expect("checked above")),
            Some(e) => Lookup::Stale {
                secret: e.secret.clone().expect("checked above"),
                fetched_at: e.fetched_at,
            },
        }
    }

    /// The lock a fetch of `name` holds.
    pub fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Keeps `secret`, fresh for `ttl` unless a change it has not seen made the name stale.
    pub fn store(&self, secret: Secret, ttl: Duration, now: Instant) {
        let mut entries = self.entries();
        let needs = entries.get(&secret.name).map_or(0, |e| e.needs_index);
        let fresh = secret.applied_index >= needs;
        entries.insert(
            secret.name.clone(),
            Entry {
                fetched_at: now,
                fresh_until: if fresh { now + ttl } else { now },
                needs_index: if fresh { 0 } else { needs },
                secret: Some(secret),
            },
        );
    }

    /// A change at `index` moved `name`'s CURRENT off the cached version: refresh on next use.
    pub fn invalidate(&self, name: &str, index: u64, now: Instant) {
        if let Some(e) = self.entries().get_mut(name) {
            e.fresh_until = e.fresh_until.min(now);
            e.needs_index = e.needs_index.max(index);
            count(&self.stats.invalidations, "coffer_sdk_cache_invalidations_total");
        }
    }

    /// The cached version of `name`, if any value is held.
    pub fn version_of(&self, name: &str) -> Option<u64> {
        self.entries()
            .get(name)
            .and_then(|e| e.secret.as_ref().map(|s| s.version))
    }

    /// Drops `name`'s value if it is one of `versions`; it is never served again.
    pub fn revoke(&self, name: &str, versions: &[u64]) -> bool {
        let mut entries = self.entries();
        let Some(e) = entries.get_mut(name) else {
            return false;
        };
        if !e.secret.as_ref().is_some_and(|s| versions.contains(&s.version)) {
            return false;
        }
        e.secret = None;
        count(&self.stats.revocations, "coffer_sdk_cache_revocations_total");
        true
    }

    /// Drops every value (the token was revoked: nothing it read may be served).
    pub fn revoke_all(&self) {
        for e in self.entries().values_mut() {
            if e.secret.take().is_some() {
                count(&self.stats.revocations, "coffer_sdk_cache_revocations_total");
            }
        }
    }

    /// Forgets `name` (the server said it is gone or not readable).
    pub fn remove(&self, name: &str) {
        self.entries().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::SecretValue;

    fn secret(version: u64, applied_index: u64) -> Secret {
        Secret {
            name: "acme/db".into(),
            version,
            value: Arc::new(SecretValue::new(b"fake".to_vec())),
            applied_index,
        }
    }

    #[test]
    fn fresh_then_stale_then_revoked_for_good() {
        let c = Cache::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert!(matches!(c.lookup("acme/db", t0), Lookup::Missing));
        c.store(secret(1, 5), ttl, t0);
        assert!(matches!(c.lookup("acme/db", t0), Lookup::Fresh(s) if s.version == 1));
        assert!(matches!(c.lookup("acme/db", t0 + ttl), Lookup::Stale { .. }));
        assert!(!c.revoke("acme/db", &[2]), "another version's revocation leaves it");
        assert!(c.revoke("acme/db", &[1]));
        assert!(matches!(c.lookup("acme/db", t0), Lookup::Revoked));
        assert_eq!(c.stats.snapshot().revocations, 1);
    }

    #[test]
    fn an_invalidated_name_is_fresh_again_only_from_a_replica_that_applied_the_change() {
        let c = Cache::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        c.store(secret(1, 5), ttl, t0);
        c.invalidate("acme/db", 9, t0);
        assert!(matches!(c.lookup("acme/db", t0), Lookup::Stale { .. }));
        c.store(secret(1, 8), ttl, t0);
        assert!(
            matches!(c.lookup("acme/db", t0), Lookup::Stale { .. }),
            "a replica behind the change"
        );
        c.store(secret(2, 9), ttl, t0);
        assert!(matches!(c.lookup("acme/db", t0), Lookup::Fresh(s) if s.version == 2));
        c.revoke_all();
        assert!(matches!(c.lookup("acme/db", t0), Lookup::Revoked));
    }
}
