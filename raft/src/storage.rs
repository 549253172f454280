//! Storage backends behind the log store and the state machine.
//!
//! Two implementations exist: [`crate::rocks`] (RocksDB, production) and [`crate::mem`]
//! (memory that survives a simulated crash). The Raft logic in [`crate::log_store`] and
//! [`crate::state_machine`] is written once against these traits.

use std::io;

use coffer_kv::KvView;
use coffer_kv::WriteSet;

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

/// Raw storage of the state machine: its key space, which is also its snapshot.
///
/// There is no snapshot file: the key space is durable (RocksDB) and openraft's snapshot of it
/// is encoded from one consistent [`SmBackend::view`] when a peer needs it (see
/// [`crate::state_machine`]), so the state is on disk once.
pub trait SmBackend: Send + Sync + 'static {
    fn view(&self) -> Box<dyn KvView + '_>;
    /// Applies `writes` atomically. Durability comes with the log store's next durable write
    /// (one RocksDB WAL) or, for memory, immediately.
    fn commit(&self, writes: WriteSet) -> io::Result<()>;
    /// Replaces the whole key space with `pairs`, atomically and durably (snapshot install).
    fn replace_all(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()>;
    /// Makes every commit so far durable (RocksDB: fsyncs the WAL the state shares with the
    /// log; memory: nothing to do). A snapshot build calls it, so the state it reports as its
    /// snapshot is on disk before openraft purges the log behind it.
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    /// Makes everything written so far durable before a clean stop (memory: nothing to do).
    fn flush_at_shutdown(&self) -> io::Result<()> {
        Ok(())
    }
    /// Whether reading the whole key space waits on a disk. Snapshot builds, encodings and
    /// installs over such a backend run on a blocking thread, never on an async worker
    /// (memory: no, so a simulation keeps its single deterministic thread).
    fn waits_on_disk(&self) -> bool {
        false
    }

    /// Free bytes on the filesystem that holds this storage; `None` when it has no disk
    /// (memory), which is never out of disk.
    fn free_disk_bytes(&self) -> Option<io::Result<u64>> {
        None
    }

    /// Rewrites the stored files so that nothing deleted or overwritten before this call (log
    /// entries purged, state values replaced) survives in any of them: memtables flushed, the
    /// log and the state compacted to the last level, WAL and SST files they made obsolete
    /// removed. Called by [`crate::shredder`] after the log is purged through a destroy.
    /// Nothing to do in memory.
    fn shred(&self) -> io::Result<()> {
        Ok(())
    }
}
