//! [`Cache`]: values by name and alias (CURRENT unless a caller asks for another), each fresh
//! for its TTL, served stale only while refreshes fail and only up to `max_stale`, and dropped
//! for good the moment a change revokes its version.
//!
//! Invariants:
//! - A revoked entry holds no value and is never served again: only a new fetch replaces it.
//! - An entry made stale by a change at index `i` is not fresh again until a fetch from a
//!   replica that applied `i` (one from a replica behind it is served once, not kept).
//! - One fetch per name and alias at a time: callers that find no fresh value queue on its lock
//!   and take the value the first one fetched (request coalescing).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::value::Secret;

/// What the cache holds for a name and alias.
pub enum Lookup {
    Fresh(Secret),
    /// Past its TTL (or made stale by a change): serve only if a refresh fails, within max_stale.
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

impl Entry {
    fn stale_from(&mut self, index: u64, now: Instant) {
        self.fresh_until = self.fresh_until.min(now);
        self.needs_index = self.needs_index.max(index);
    }
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

/// Entries by secret name, then by alias.
type Entries = HashMap<String, HashMap<String, Entry>>;

#[derive(Default)]
pub struct Cache {
    entries: Mutex<Entries>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: Stats,
}

impl Cache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every update below leaves the map consistent before it could panic.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lookup(&self, name: &str, alias: &str, now: Instant) -> Lookup {
        match self.entries().get(name).and_then(|a| a.get(alias)) {
            None => Lookup::Missing,
            Some(Entry { secret: None, .. }) => Lookup::Revoked,
            Some(Entry {
                secret: Some(s),
                fresh_until,
                ..
            }) if now < *fresh_until => Lookup::Fresh(s.clone()),
            Some(Entry {
                secret: Some(s),
                fetched_at,
                ..
            }) => Lookup::Stale {
                secret: s.clone(),
                fetched_at: *fetched_at,
            },
        }
    }

    /// The lock a fetch of `name`'s `alias` holds.
    pub fn lock_for(&self, name: &str, alias: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{name}@{alias}"))
            .or_default()
            .clone()
    }

    /// Keeps `secret` as `alias`, fresh for `ttl` unless a change it has not seen made it stale.
    pub fn store(&self, alias: &str, secret: Secret, ttl: Duration, now: Instant) {
        let mut entries = self.entries();
        let by_alias = entries.entry(secret.name.clone()).or_default();
        let needs = by_alias.get(alias).map_or(0, |e| e.needs_index);
        let fresh = secret.applied_index >= needs;
        by_alias.insert(
            alias.to_string(),
            Entry {
                fetched_at: now,
                fresh_until: if fresh { now + ttl } else { now },
                needs_index: if fresh { 0 } else { needs },
                secret: Some(secret),
            },
        );
    }

    /// Applies a change at `index` to `name`'s entries: a value whose version is in `revoked`
    /// is dropped for good; one whose alias now points elsewhere (per `aliases`, the secret's
    /// aliases after the change) is stale until a fetch that applied `index`. Returns how many
    /// values were revoked.
    pub fn changed(
        &self,
        name: &str,
        index: u64,
        aliases: &BTreeMap<String, u64>,
        revoked: &[u64],
        now: Instant,
    ) -> usize {
        let mut entries = self.entries();
        let Some(by_alias) = entries.get_mut(name) else {
            return 0;
        };
        let mut dropped = 0;
        for (alias, e) in by_alias.iter_mut() {
            let Some(version) = e.secret.as_ref().map(|s| s.version) else {
                continue;
            };
            if revoked.contains(&version) {
                e.secret = None;
                dropped += 1;
                count(&self.stats.revocations, "coffer_sdk_cache_revocations_total");
            } else if aliases.get(alias) != Some(&version) {
                e.stale_from(index, now);
                count(&self.stats.invalidations, "coffer_sdk_cache_invalidations_total");
            }
        }
        dropped
    }

    /// Every entry of `name` is stale (a resync, or a write of it): the next read fetches.
    pub fn invalidate(&self, name: &str, index: u64, now: Instant) {
        if let Some(by_alias) = self.entries().get_mut(name) {
            for e in by_alias.values_mut() {
                e.stale_from(index, now);
                count(&self.stats.invalidations, "coffer_sdk_cache_invalidations_total");
            }
        }
    }

    /// Drops every value (the token was revoked: nothing it read may be served).
    pub fn revoke_all(&self) {
        for e in self.entries().values_mut().flat_map(|a| a.values_mut()) {
            if e.secret.take().is_some() {
                count(&self.stats.revocations, "coffer_sdk_cache_revocations_total");
            }
        }
    }

    /// Forgets `name` (the server said it is gone or not readable), or one alias of it.
    pub fn remove(&self, name: &str, alias: Option<&str>) {
        let mut entries = self.entries();
        match alias {
            None => {
                entries.remove(name);
            }
            Some(a) => {
                if let Some(by_alias) = entries.get_mut(name) {
                    by_alias.remove(a);
                }
            }
        }
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
            stale: false,
        }
    }

    fn current(v: u64) -> BTreeMap<String, u64> {
        BTreeMap::from([("CURRENT".to_string(), v), ("PREVIOUS".to_string(), v - 1)])
    }

    #[test]
    fn fresh_then_stale_then_revoked_for_good_and_a_moved_alias_is_stale() {
        let c = Cache::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert!(matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Missing));
        c.store("CURRENT", secret(2, 5), ttl, t0);
        c.store("PREVIOUS", secret(1, 5), ttl, t0);
        assert!(matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Fresh(s) if s.version == 2));
        assert!(matches!(c.lookup("acme/db", "CURRENT", t0 + ttl), Lookup::Stale { .. }));
        assert_eq!(
            c.changed("acme/db", 6, &current(2), &[7], t0),
            0,
            "another version's revocation"
        );
        assert!(matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Fresh(_)));
        assert_eq!(c.changed("acme/db", 7, &current(3), &[1], t0), 1);
        assert!(matches!(c.lookup("acme/db", "PREVIOUS", t0), Lookup::Revoked));
        assert!(
            matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Stale { .. }),
            "CURRENT moved on"
        );
        assert_eq!(c.stats.snapshot().revocations, 1);
    }

    #[test]
    fn a_stale_entry_is_fresh_again_only_from_a_replica_that_applied_the_change() {
        let c = Cache::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        c.store("CURRENT", secret(1, 5), ttl, t0);
        c.changed("acme/db", 9, &current(2), &[], t0);
        assert!(matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Stale { .. }));
        c.store("CURRENT", secret(1, 8), ttl, t0);
        assert!(
            matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Stale { .. }),
            "a replica behind the change"
        );
        c.store("CURRENT", secret(2, 9), ttl, t0);
        assert!(matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Fresh(s) if s.version == 2));
        c.revoke_all();
        assert!(matches!(c.lookup("acme/db", "CURRENT", t0), Lookup::Revoked));
    }
}
