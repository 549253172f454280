//! Storage backends behind the log store and the state machine.
//!
//! Two implementations exist: [`crate::rocks`] (RocksDB, production) and [`crate::mem`]
//! (memory that survives a simulated crash). The Raft logic in [`crate::log_store`] and
//! [`crate::state_machine`] is written once against these traits.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;

/// Completion callback of [`LogBackend::flush`].
pub type FlushDone = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// Raw storage of Raft log records and Raft metadata (vote, committed, last purged).
///
/// Invariants the implementations keep:
/// - Writes are applied in call order (a later call never overtakes an earlier one).
/// - What a write stored is readable as soon as the call returns, durable or not.
/// - [`LogBackend::flush`] calls `done` only once every write issued before it is durable.
/// - [`LogBackend::put_meta_durable`] returns only once the value is durable.
pub trait LogBackend: Send + Sync + 'static {
    fn get_meta(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    /// Stores a metadata value and makes it (and every earlier write) durable before returning.
    fn put_meta_durable(&self, key: &str, value: &[u8]) -> io::Result<()>;
    /// Stores a metadata value; durability comes with the next durable write or flush.
    fn put_meta(&self, key: &str, value: &[u8]) -> io::Result<()>;
    /// Stores log records atomically; durability comes with [`LogBackend::flush`].
    fn append(&self, records: Vec<(u64, Vec<u8>)>) -> io::Result<()>;
    /// Calls `done` once every write issued so far is durable (group commit is allowed).
    fn flush(&self, done: FlushDone);
    /// Records with `start <= index < end`, in index order.
    fn range(&self, start: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>>;
    /// The record with the highest index.
    fn last(&self) -> io::Result<Option<(u64, Vec<u8>)>>;
    /// Removes records with `start <= index < end`.
    fn delete_range(&self, start: u64, end: u64) -> io::Result<()>;
}

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

/// Writes a snapshot's encoding into the sink it is given (see [`SmBackend::save_snapshot_with`]).
pub type SnapshotFill<'a> = dyn FnMut(&mut dyn io::Write) -> io::Result<()> + 'a;

/// A set of writes applied atomically: `None` deletes the key.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Raw storage of the state machine: its key space and its current snapshot.
pub trait SmBackend: Send + Sync + 'static {
    fn view(&self) -> Box<dyn KvView + '_>;
    /// Applies `writes` atomically. Durability comes with the log store's next durable write
    /// (one RocksDB WAL) or, for memory, immediately.
    fn commit(&self, writes: WriteSet) -> io::Result<()>;
    /// Replaces the whole key space with `pairs`, atomically and durably (snapshot install).
    fn replace_all(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()>;
    /// Stores a new current snapshot durably: `fill` writes its encoding, in order. The previous
    /// snapshot is replaced only once the new one is complete and durable; if `fill` or the
    /// write fails, the previous one stays current.
    fn save_snapshot_with(&self, fill: &mut SnapshotFill<'_>) -> io::Result<()>;
    /// [`SmBackend::save_snapshot_with`] for an encoding already in memory.
    fn save_snapshot(&self, bytes: &[u8]) -> io::Result<()> {
        self.save_snapshot_with(&mut |out| out.write_all(bytes))
    }
    fn load_snapshot(&self) -> io::Result<Option<Vec<u8>>>;
    /// Makes everything written so far durable before a clean stop (memory: nothing to do).
    fn flush_at_shutdown(&self) -> io::Result<()> {
        Ok(())
    }
    /// Whether reading the whole key space and saving a snapshot waits on a disk. Snapshot
    /// builds, loads and installs over such a backend run on a blocking thread, never on an
    /// async worker (memory: no, so a simulation keeps its single deterministic thread).
    fn waits_on_disk(&self) -> bool {
        false
    }
}

/// Pending writes layered over a read view, so that later commands of one applied batch see the
/// writes of earlier ones before the batch is committed in one atomic write.
pub struct Overlay<'a> {
    base: &'a dyn KvView,
    writes: WriteSet,
    /// Whether keys asked about with [`Overlay::contains`] exist in `base`. The base view never
    /// changes, so an answer stays true for the whole batch (the cluster record is asked about
    /// once per command, and read from storage once per batch).
    in_base: RefCell<BTreeMap<Vec<u8>, bool>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn KvView) -> Self {
        Self {
            base,
            writes: WriteSet::new(),
            in_base: RefCell::new(BTreeMap::new()),
        }
    }

    /// Whether `key` has a value, as [`Overlay::get`] would see it.
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.is_some());
        }
        if let Some(known) = self.in_base.borrow().get(key) {
            return Ok(*known);
        }
        let found = self.base.get(key)?.is_some();
        self.in_base.borrow_mut().insert(key.to_vec(), found);
        Ok(found)
    }

    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Starts a nested transaction: writes made through the returned overlay reach this one only
    /// if [`Txn::commit`] is called (a failed command leaves no partial writes).
    pub fn txn(&mut self) -> Txn<'_, 'a> {
        Txn {
            parent: self,
            writes: WriteSet::new(),
        }
    }

    pub fn into_writes(self) -> WriteSet {
        self.writes
    }
}

/// Writes of one command, discarded unless committed.
pub struct Txn<'p, 'a> {
    parent: &'p mut Overlay<'a>,
    writes: WriteSet,
}

impl Txn<'_, '_> {
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.parent.get(key),
        }
    }

    /// Whether `key` has a value, as [`Txn::get`] would see it.
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        match self.writes.get(key) {
            Some(v) => Ok(v.is_some()),
            None => self.parent.contains(key),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    pub fn commit(self) {
        self.parent.writes.extend(self.writes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemSmBackend;

    #[test]
    fn contains_sees_the_batch_and_the_command_writes_over_the_base() {
        let backend = MemSmBackend::new();
        let mut base = WriteSet::new();
        base.insert(b"in-base".to_vec(), Some(b"v".to_vec()));
        backend.commit(base).unwrap();
        let view = backend.view();
        let mut ov = Overlay::new(&*view);

        assert!(ov.contains(b"in-base").unwrap());
        assert!(
            !ov.contains(b"new").unwrap(),
            "asked once: now remembered as absent in base"
        );
        {
            let mut tx = ov.txn();
            tx.put(b"new".to_vec(), b"x".to_vec());
            tx.delete(b"in-base".to_vec());
            assert!(tx.contains(b"new").unwrap());
            assert!(!tx.contains(b"in-base").unwrap());
            // Not committed: the batch does not see it.
        }
        assert!(!ov.contains(b"new").unwrap());
        assert!(ov.contains(b"in-base").unwrap());
        let mut tx = ov.txn();
        tx.put(b"new".to_vec(), b"x".to_vec());
        tx.commit();
        assert!(
            ov.contains(b"new").unwrap(),
            "a committed write wins over the remembered answer"
        );
        assert_eq!(ov.get(b"new").unwrap(), Some(b"x".to_vec()));
    }
}
