//! In-memory storage backends for simulations and tests.
//!
//! A backend is an `Arc` the harness keeps across a simulated crash: dropping the node and
//! building a new one over the same backend is a restart with everything durable intact.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;

use crate::storage::FlushDone;
use crate::storage::LogBackend;
use crate::storage::SmBackend;
use coffer_kv::KvView;
use coffer_kv::PairVisitor;
use coffer_kv::WriteSet;

fn poisoned() -> io::Error {
    io::Error::other("storage lock poisoned")
}

#[derive(Default)]
struct MemLogInner {
    meta: BTreeMap<String, Vec<u8>>,
    logs: BTreeMap<u64, Vec<u8>>,
}

/// Memory log backend; every write is durable when it returns.
#[derive(Default, Clone)]
pub struct MemLogBackend {
    inner: Arc<Mutex<MemLogInner>>,
}

impl MemLogBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored byte (metadata and records), for "no plaintext in storage" checks.
    pub fn dump(&self) -> Vec<Vec<u8>> {
        let g = self.inner.lock().expect("lock");
        g.meta.values().chain(g.logs.values()).cloned().collect()
    }
}

impl LogBackend for MemLogBackend {
    fn get_meta(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.inner.lock().map_err(|_| poisoned())?.meta.get(key).cloned())
    }

    fn put_meta_durable(&self, key: &str, value: &[u8]) -> io::Result<()> {
        self.put_meta(key, value)
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> io::Result<()> {
        let mut g = self.inner.lock().map_err(|_| poisoned())?;
        g.meta.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn append(&self, records: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let mut g = self.inner.lock().map_err(|_| poisoned())?;
        g.logs.extend(records);
        Ok(())
    }

    fn flush(&self, done: FlushDone) {
        done(Ok(()))
    }

    fn range(&self, start: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        if start >= end {
            return Ok(vec![]);
        }
        let g = self.inner.lock().map_err(|_| poisoned())?;
        Ok(g.logs.range(start..end).map(|(k, v)| (*k, v.clone())).collect())
    }

    fn last(&self) -> io::Result<Option<(u64, Vec<u8>)>> {
        let g = self.inner.lock().map_err(|_| poisoned())?;
        Ok(g.logs.last_key_value().map(|(k, v)| (*k, v.clone())))
    }

    fn delete_range(&self, start: u64, end: u64) -> io::Result<()> {
        let mut g = self.inner.lock().map_err(|_| poisoned())?;
        let doomed: Vec<u64> = g.logs.range(start..end).map(|(k, _)| *k).collect();
        for k in doomed {
            g.logs.remove(&k);
        }
        Ok(())
    }
}

#[derive(Default)]
struct MemSmInner {
    kv: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Free bytes of a simulated disk (`None`: no disk, never out of space).
    disk: Option<std::sync::atomic::AtomicU64>,
}

/// Memory state-machine backend.
#[derive(Default, Clone)]
pub struct MemSmBackend {
    inner: Arc<MemSmInner>,
}

impl MemSmBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend on a simulated disk, which has plenty of space until
    /// [`MemSmBackend::set_free_disk_bytes`] says otherwise (simulated disk-full faults).
    pub fn with_simulated_disk() -> Self {
        Self {
            inner: Arc::new(MemSmInner {
                disk: Some(std::sync::atomic::AtomicU64::new(u64::MAX)),
                ..Default::default()
            }),
        }
    }

    /// Sets the simulated disk's free bytes (no effect without one).
    pub fn set_free_disk_bytes(&self, free: u64) {
        if let Some(d) = &self.inner.disk {
            d.store(free, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every stored byte (the key space, which is also the snapshot), for "no plaintext in
    /// storage" checks.
    pub fn dump(&self) -> Vec<Vec<u8>> {
        self.inner.kv.read().expect("lock").values().cloned().collect()
    }
}

struct MemView<'a>(RwLockReadGuard<'a, BTreeMap<Vec<u8>, Vec<u8>>>);

impl KvView for MemView<'_> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        KvView::get(&*self.0, key)
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.0.scan(prefix, start, limit)
    }

    fn for_each(&self, f: &mut PairVisitor<'_>) -> io::Result<()> {
        self.0.for_each(f)
    }

    fn scan_each(&self, prefix: &[u8], start: &[u8], limit: usize, f: &mut PairVisitor<'_>) -> io::Result<usize> {
        self.0.scan_each(prefix, start, limit, f)
    }
}

impl SmBackend for MemSmBackend {
    fn free_disk_bytes(&self) -> Option<io::Result<u64>> {
        let d = self.inner.disk.as_ref()?;
        Some(Ok(d.load(std::sync::atomic::Ordering::Relaxed)))
    }

    fn view(&self) -> Box<dyn KvView + '_> {
        // A poisoned lock means a panic mid-write elsewhere; reading the map is still safe
        // because every write replaces whole values.
        let guard = self.inner.kv.read().unwrap_or_else(|e| e.into_inner());
        Box::new(MemView(guard))
    }

    fn commit(&self, writes: WriteSet) -> io::Result<()> {
        let mut kv = self.inner.kv.write().map_err(|_| poisoned())?;
        coffer_kv::commit_to(&mut kv, writes);
        Ok(())
    }

    fn replace_all(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
        let mut kv = self.inner.kv.write().map_err(|_| poisoned())?;
        *kv = pairs.into_iter().collect();
        Ok(())
    }
}
