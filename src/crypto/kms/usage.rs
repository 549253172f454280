//! Where this node's reads got their data keys, counted since it started: the data key cache,
//! or another region's KMS (fallback); and KMS calls that failed as unavailable. A drill asks
//! each node for these before and after a KMS outage (`Cluster.DrillFault` answers with them),
//! so its report says how the region kept serving reads. The same events are in the metrics
//! (`coffer_dek_cache_lookups_total`, `coffer_kms_fallback_total`, `coffer_kms_calls_total`).
//!
//! Invariant: the counters only grow (a drill subtracts a reading from a later one).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use crate::pb;

#[derive(Debug, Default)]
pub struct KmsUsage {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    fallbacks: AtomicU64,
    unavailable: AtomicU64,
}

impl KmsUsage {
    /// A read looked its data key up in the cache.
    pub fn cache_lookup(&self, hit: bool) {
        let c = if hit { &self.cache_hits } else { &self.cache_misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A read's data key was unwrapped by another region's KMS.
    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// A KMS call failed as unavailable (down, too slow, or a drill's outage).
    pub fn unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }

    pub fn to_pb(&self) -> pb::KmsUsage {
        pb::KmsUsage {
            dek_cache_hits: self.cache_hits.load(Ordering::Relaxed),
            dek_cache_misses: self.cache_misses.load(Ordering::Relaxed),
            kms_fallbacks: self.fallbacks.load(Ordering::Relaxed),
            kms_unavailable: self.unavailable.load(Ordering::Relaxed),
        }
    }
}

/// What happened between two readings of one node (`None` if a counter went back: the node
/// restarted in between, so the difference means nothing).
pub fn between(before: &pb::KmsUsage, after: &pb::KmsUsage) -> Option<pb::KmsUsage> {
    Some(pb::KmsUsage {
        dek_cache_hits: after.dek_cache_hits.checked_sub(before.dek_cache_hits)?,
        dek_cache_misses: after.dek_cache_misses.checked_sub(before.dek_cache_misses)?,
        kms_fallbacks: after.kms_fallbacks.checked_sub(before.kms_fallbacks)?,
        kms_unavailable: after.kms_unavailable.checked_sub(before.kms_unavailable)?,
    })
}

/// The sum of several nodes' usage.
pub fn sum<'a>(all: impl IntoIterator<Item = &'a pb::KmsUsage>) -> pb::KmsUsage {
    all.into_iter().fold(pb::KmsUsage::default(), |a, u| pb::KmsUsage {
        dek_cache_hits: a.dek_cache_hits + u.dek_cache_hits,
        dek_cache_misses: a.dek_cache_misses + u.dek_cache_misses,
        kms_fallbacks: a.kms_fallbacks + u.kms_fallbacks,
        kms_unavailable: a.kms_unavailable + u.kms_unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_and_a_difference_across_a_restart_is_none() {
        let u = KmsUsage::default();
        let before = u.to_pb();
        u.cache_lookup(true);
        u.cache_lookup(true);
        u.cache_lookup(false);
        u.fallback();
        u.unavailable();
        let after = u.to_pb();
        let d = between(&before, &after).unwrap();
        assert_eq!(
            (d.dek_cache_hits, d.dek_cache_misses, d.kms_fallbacks, d.kms_unavailable),
            (2, 1, 1, 1)
        );
        assert_eq!(between(&after, &before), None, "a counter went back: a restart");
        assert_eq!(sum([&d, &d]).dek_cache_hits, 4);
    }
}
