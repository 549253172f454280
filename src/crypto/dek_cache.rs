//! In-memory cache of unwrapped data keys, so steady-state reads make zero KMS calls.
//!
//! Bounded by a TTL and a capacity; evicted keys are zeroized (their [`DataKey`] drops). An
//! entry is keyed by (secret name, version) and remembers the envelope nonce, so a key cached
//! for one envelope is never used for another.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use super::DataKey;

struct Entry {
    key: DataKey,
    nonce: Vec<u8>,
    inserted: Instant,
}

pub struct DekCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<BTreeMap<(String, u64), Entry>>,
}

impl DekCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn get(&self, name: &str, version: u64, nonce: &[u8]) -> Option<DataKey> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let k = (name.to_string(), version);
        match entries.get(&k) {
            Some(e) if e.nonce == nonce && e.inserted.elapsed() < self.ttl => Some(e.key.clone()),
            Some(_) => {
                entries.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, name: &str, version: u64, nonce: &[u8], key: DataKey) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, e| e.inserted.elapsed() < ttl);
        }
        if entries.len() >= self.capacity {
            if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.inserted).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            (name.to_string(), version),
            Entry {
                key,
                nonce: nonce.to_vec(),
                inserted: Instant::now(),
            },
        );
    }

    pub fn remove(&self, name: &str, version: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&(name.to_string(), version));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
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
        let expired = DekCache::new(Duration::from_nanos(1), 10);
        expired.insert("a/b", 1, b"n", key(1));
        std::thread::yield_now();
        assert!(expired.get("a/b", 1, b"n").is_none());
    }
}
