//! [`KvView`]: a consistent read view of the state machine's key space, and the memory one.

use std::collections::BTreeMap;
use std::io;

/// Visitor of key/value pairs for [`KvView::for_each`].
pub type PairVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> io::Result<()> + 'a;

/// A consistent read view of the state machine's key space.
pub trait KvView {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>>;
    /// Up to `limit` pairs with keys `>= start` that begin with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Every pair, in key order (used to build snapshots).
    fn for_each(&self, f: &mut PairVisitor<'_>) -> io::Result<()>;
    /// Visits up to `limit` pairs with keys `>= start` that begin with `prefix`, in key order,
    /// without copying them and without filling the block cache (for scans over the whole
    /// state). Returns how many it visited.
    fn scan_each(&self, prefix: &[u8], start: &[u8], limit: usize, f: &mut PairVisitor<'_>) -> io::Result<usize>;
}

/// A set of writes applied atomically: `None` deletes the key.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The key space in memory (the memory backend's view, and tests').
impl KvView for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let from = if start > prefix { start } else { prefix };
        Ok(self
            .range(from.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn for_each(&self, f: &mut PairVisitor<'_>) -> io::Result<()> {
        for (k, v) in self.iter() {
            f(k, v)?;
        }
        Ok(())
    }

    fn scan_each(&self, prefix: &[u8], start: &[u8], limit: usize, f: &mut PairVisitor<'_>) -> io::Result<usize> {
        let from = if start > prefix { start } else { prefix };
        let mut visited = 0;
        for (k, v) in self
            .range(from.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
        {
            f(k, v)?;
            visited += 1;
        }
        Ok(visited)
    }
}

/// Applies `writes` to a key space in memory.
pub fn commit_to(kv: &mut BTreeMap<Vec<u8>, Vec<u8>>, writes: WriteSet) {
    for (k, v) in writes {
        match v {
            Some(v) => kv.insert(k, v),
            None => kv.remove(&k),
        };
    }
}
