//! In-memory cache of unwrapped data keys, so steady-state reads make zero KMS calls.
//!
//! Bounded by a TTL and a capacity; evicted keys are zeroized (their [`DataKey`] drops). An
//! entry is keyed by (secret name, version) and remembers the envelope nonce, so a key cached
//! for one envelope is never used for another.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
// tokio's clock: real time in production, simulated time under turmoil.
use tokio::time::Instant;

use super::DataKey;

struct Entry {
    key: DataKey,
    nonce: Vec<u8>,
    inserted: Instant,
    /// Position in the insertion queue; a queue item with another `seq` is stale.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<(String, u64), Entry>,
    /// Insertion order (oldest first), which is also expiry order: every entry has the same TTL.
    queue: VecDeque<((String, u64), u64)>,
    next_seq: u64,
}

impl Inner {
    /// Drops the oldest live entry; returns false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((k, seq)) = self.queue.pop_front() {
            if self.entries.get(&k).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&k);
                return true;
            }
        }
        false
    }
}

pub struct DekCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl DekCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str, version: u64, nonce: &[u8]) -> Option<DataKey> {
        let mut inner = self.lock();
        let k = (name.to_string(), version);
        match inner.entries.get(&k) {
            Some(e) if e.nonce == nonce && e.inserted.elapsed() < self.ttl => Some(e.key.clone()),
            Some(_) => {
                inner.entries.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, name: &str, version: u64, nonce: &[u8], key: DataKey) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        // Expired entries first (they are at the front), then the oldest while full.
        while let Some((k, seq)) = inner.queue.front().cloned() {
            match inner
                .entries
                .get(&k)
                .map(|e| (e.seq == seq, e.inserted.elapsed() < self.ttl))
            {
                Some((true, true)) => break,
                Some((true, false)) => {
                    inner.entries.remove(&k);
                }
                _ => {}
            }
            inner.queue.pop_front();
        }
        let k = (name.to_string(), version);
        while !inner.entries.contains_key(&k) && inner.entries.len() >= self.capacity {
            if !inner.evict_oldest() {
                break;
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.entries.insert(
            k.clone(),
            Entry {
                key,
                nonce: nonce.to_vec(),
                inserted: Instant::now(),
                seq,
            },
        );
        inner.queue.push_back((k, seq));
        // Re-inserting live keys leaves stale queue items behind; keep the queue bounded.
        if inner.queue.len() > 2 * self.capacity.max(16) {
            let Inner { entries, queue, .. } = &mut *inner;
            queue.retain(|(k, seq)| entries.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    pub fn remove(&self, name: &str, version: u64) {
        self.lock().entries.remove(&(name.to_string(), version));
    }

    /// Drops every key.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.queue.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> DataKey {
        DataKey::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn hit_miss_and_nonce_check() {
        let c = DekCache::new(Duration::from_secs(60), 10);
        assert!(c.get("a/b", 1, b"n1").is_none());
        c.insert("a/b", 1, b"n1", key(1));
        assert_eq!(c.get("a/b", 1, b"n1").unwrap().expose(), &[1; 32]);
        assert!(
            c.get("a/b", 1, b"n2").is_none(),
            "another envelope never uses the cached key"
        );
        assert!(c.get("a/b", 2, b"n1").is_none());
    }

    #[test]
    fn capacity_and_ttl_bound_the_cache() {
        let c = DekCache::new(Duration::from_secs(60), 2);
        c.insert("a/b", 1, b"n", key(1));
        c.insert("a/b", 2, b"n", key(2));
        c.insert("a/b", 3, b"n", key(3));
        assert_eq!(c.len(), 2);
        assert!(c.get("a/b", 1, b"n").is_none(), "oldest evicted");
        // Re-inserting a key refreshes it: the other one is now the oldest.
        c.insert("a/b", 2, b"n", key(2));
        c.insert("a/b", 4, b"n", key(4));
        assert!(c.get("a/b", 2, b"n").is_some());
        assert!(c.get("a/b", 3, b"n").is_none());
        for v in 10..200 {
            c.insert("a/b", v, b"n", key(1));
        }
        assert_eq!(c.len(), 2);
        let expired = DekCache::new(Duration::from_nanos(1), 10);
        expired.insert("a/b", 1, b"n", key(1));
        std::thread::yield_now();
        assert!(expired.get("a/b", 1, b"n").is_none());
    }
}
