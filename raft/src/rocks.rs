//! RocksDB storage: one database per node with three column families.
//!
//! ```text
//! <data_dir>/db/          RocksDB: `log` (u64 BE index -> LogEntry), `raft_meta` (vote,
//!                         committed, last purged), `sm` (state machine, see `keys`)
//! ```
//! All column families share one WAL, so a synced write makes every earlier write durable,
//! whatever its column family. Log appends are made durable by a flusher thread that fsyncs the
//! WAL once for every append queued since its last fsync (group commit).
//!
//! The `sm` family is also the snapshot: nothing else holds a copy of the state (see
//! [`crate::state_machine`]). Versions before that kept one in `<data_dir>/snapshots/`; opening
//! removes that folder.

use std::fs;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use rocksdb::ColumnFamily;
use rocksdb::ColumnFamilyDescriptor;
use rocksdb::Direction;
use rocksdb::IteratorMode;
use rocksdb::Options;
use rocksdb::SnapshotWithThreadMode;
use rocksdb::WriteBatch;
use rocksdb::WriteOptions;
use rocksdb::DB;

use crate::storage::FlushDone;
use crate::storage::LogBackend;
use crate::storage::SmBackend;
use coffer_kv::KvView;
use coffer_kv::PairVisitor;
use coffer_kv::WriteSet;

const CF_LOG: &str = "log";
const CF_RAFT_META: &str = "raft_meta";
const CF_SM: &str = "sm";
/// Where earlier versions kept a full copy of the state; removed at open.
const LEGACY_SNAPSHOT_DIR: &str = "snapshots";

fn rerr(e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("rocksdb: {e}"))
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    // Every column family is created at open; a missing one is a programming error.
    db.cf_handle(name).expect("column family created at open")
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

/// Group-commit counters: how many log records were appended and how many WAL fsyncs made them
/// durable.
#[derive(Debug, Default)]
pub struct LogStats {
    pub records: AtomicU64,
    pub appends: AtomicU64,
    pub wal_syncs: AtomicU64,
}

/// The smallest memtable of the `log` and `sm` column families; see [`memtable_bytes`].
pub const MEMTABLE_BASE_BYTES: u64 = 48 << 20;

/// Memtable size of the `log` and `sm` column families on node `id`: from 1x to 2x
/// [`MEMTABLE_BASE_BYTES`] (nodes 1, 2, 3: 78, 59, 89 MiB), spread by id like the snapshot points.
///
/// Every replica applies the same writes, so with one size for all, the three nodes flushed
/// their memtables and ran the compactions that follow within 50 ms of each other (RocksDB's
/// LOG on the loopback bench). A flush or compaction fsyncs its SST files, up to hundreds of
/// MB, and the WAL fsyncs of the quorum queued behind all three at once. With sizes that differ,
/// the nodes' flushes drift apart after the first.
pub fn memtable_bytes(id: crate::NodeId) -> usize {
    (MEMTABLE_BASE_BYTES + crate::snapshot_schedule::spread(id, MEMTABLE_BASE_BYTES)) as usize
}

/// RocksDB's default memtable size.
const DEFAULT_MEMTABLE_BYTES: usize = 64 << 20;

/// Opens (or creates) a RocksDB with RocksDB's default memtable size (64 MiB) and returns its
/// two backends. For tools and tests; a server opens with [`open_for_node`].
pub fn open(data_dir: &Path) -> io::Result<(RocksLogBackend, RocksSmBackend)> {
    open_with(data_dir, None)
}

/// Opens (or creates) node `id`'s RocksDB, its memtables sized by [`memtable_bytes`].
pub fn open_for_node(data_dir: &Path, id: crate::NodeId) -> io::Result<(RocksLogBackend, RocksSmBackend)> {
    open_with(data_dir, Some(memtable_bytes(id)))
}

fn open_with(data_dir: &Path, memtable: Option<usize>) -> io::Result<(RocksLogBackend, RocksSmBackend)> {
    fs::create_dir_all(data_dir)?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_keep_log_file_num(4);
    // A WAL file lives until every family with writes in it has flushed them. `raft_meta`
    // takes a few small writes a second and fills its memtable almost never, so without a
    // bound it kept every WAL file until RocksDB's default one (4x all memtables, ~1.7 GB a
    // node) forced a flush. Four of the busy families' memtables hold what they have not
    // flushed yet; past that the families holding the oldest file flush.
    opts.set_max_total_wal_size(4 * memtable.unwrap_or(DEFAULT_MEMTABLE_BYTES) as u64);
    let cfs = [CF_LOG, CF_RAFT_META, CF_SM].map(|name| {
        let mut o = Options::default();
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        if let Some(bytes) = memtable.filter(|_| name != CF_RAFT_META) {
            o.set_write_buffer_size(bytes);
        }
        if name == CF_SM {
            // Point lookups that miss are common in apply (every command asks the request
            // table for its id, a new secret for its record): a bloom filter per SST file
            // answers them without reading each file's index and data blocks. Files written
            // before it simply have none.
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&table);
        }
        ColumnFamilyDescriptor::new(name, o)
    });
    let db = Arc::new(DB::open_cf_descriptors(&opts, data_dir.join("db"), cfs).map_err(rerr)?);
    // The state is in `sm`; an earlier version's snapshot file only duplicated it.
    match fs::remove_dir_all(data_dir.join(LEGACY_SNAPSHOT_DIR)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }

    let stats = Arc::new(LogStats::default());
    let (tx, rx) = mpsc::channel::<FlushDone>();
    let flusher_db = db.clone();
    let flusher_stats = stats.clone();
    let flusher = std::thread::Builder::new()
        .name("coffer-wal-sync".into())
        .spawn(move || flusher(flusher_db, flusher_stats, rx))?;

    Ok((
        RocksLogBackend {
            db: db.clone(),
            flush_tx: Some(tx),
            flusher: Some(flusher),
            stats,
        },
        RocksSmBackend {
            db,
            data_dir: data_dir.to_path_buf(),
        },
    ))
}

/// Fsyncs the WAL once per wake-up and completes every flush queued before it.
fn flusher(db: Arc<DB>, stats: Arc<LogStats>, rx: mpsc::Receiver<FlushDone>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = db.flush_wal(true).map_err(|e| e.to_string());
        stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
        for done in waiting {
            done(
                result
                    .clone()
                    .map_err(|e| io::Error::other(format!("rocksdb WAL sync: {e}"))),
            );
        }
    }
}

pub struct RocksLogBackend {
    db: Arc<DB>,
    flush_tx: Option<mpsc::Sender<FlushDone>>,
    flusher: Option<std::thread::JoinHandle<()>>,
    stats: Arc<LogStats>,
}

impl Drop for RocksLogBackend {
    /// Stops the WAL sync thread and waits for it, so the database is never closed by a
    /// detached thread racing process exit.
    fn drop(&mut self) {
        drop(self.flush_tx.take());
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

impl RocksLogBackend {
    pub fn stats(&self) -> Arc<LogStats> {
        self.stats.clone()
    }
}

impl LogBackend for RocksLogBackend {
    fn get_meta(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        self.db.get_cf(cf(&self.db, CF_RAFT_META), key).map_err(rerr)
    }

    fn put_meta_durable(&self, key: &str, value: &[u8]) -> io::Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(cf(&self.db, CF_RAFT_META), key, value);
        self.db.write_opt(b, &synced()).map_err(rerr)
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> io::Result<()> {
        self.db.put_cf(cf(&self.db, CF_RAFT_META), key, value).map_err(rerr)
    }

    fn append(&self, records: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let n = records.len() as u64;
        let mut b = WriteBatch::default();
        let log = cf(&self.db, CF_LOG);
        for (index, bytes) in records {
            b.put_cf(log, index.to_be_bytes(), bytes);
        }
        self.db.write(b).map_err(rerr)?;
        self.stats.records.fetch_add(n, Ordering::Relaxed);
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&self, done: FlushDone) {
        let Some(tx) = &self.flush_tx else {
            return done(Err(io::Error::other("the WAL sync thread has stopped")));
        };
        if let Err(mpsc::SendError(done)) = tx.send(done) {
            done(Err(io::Error::other("the WAL sync thread has stopped")));
        }
    }

    fn range(&self, start: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let from = start.to_be_bytes();
        let it = self
            .db
            .iterator_cf(cf(&self.db, CF_LOG), IteratorMode::From(&from, Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(rerr)?;
            let index = index_of(&k)?;
            if index >= end {
                break;
            }
            out.push((index, v.to_vec()));
        }
        Ok(out)
    }

    fn last(&self) -> io::Result<Option<(u64, Vec<u8>)>> {
        match self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End).next() {
            Some(item) => {
                let (k, v) = item.map_err(rerr)?;
                Ok(Some((index_of(&k)?, v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// One range tombstone hides the records at once; the SST files that hold nothing but
    /// records of the range are then dropped whole, so a purge gives its space back without
    /// waiting for a compaction to reach them (the log's keys only grow, so most of its files
    /// fall entirely below a purge point). What a file shares with live records goes when a
    /// compaction rewrites it.
    fn delete_range(&self, start: u64, end: u64) -> io::Result<()> {
        if start >= end {
            return Ok(());
        }
        let log = cf(&self.db, CF_LOG);
        let mut b = WriteBatch::default();
        b.delete_range_cf(log, start.to_be_bytes(), end.to_be_bytes());
        self.db.write(b).map_err(rerr)?;
        // `to` is inclusive here: the last purged index, never a live record.
        self.db
            .delete_file_in_range_cf(log, start.to_be_bytes(), (end - 1).to_be_bytes())
            .map_err(rerr)
    }
}

fn index_of(key: &[u8]) -> io::Result<u64> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "log key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

pub struct RocksSmBackend {
    db: Arc<DB>,
    data_dir: PathBuf,
}

impl RocksSmBackend {
    /// Flushes memtables to SST files (used at shutdown so the WAL can be dropped).
    pub fn flush(&self) -> io::Result<()> {
        for name in [CF_LOG, CF_RAFT_META, CF_SM] {
            self.db.flush_cf(cf(&self.db, name)).map_err(rerr)?;
        }
        Ok(())
    }

    /// Flushes every memtable (the WAL files that held their writes become obsolete), then
    /// rewrites the log and state key spaces down to the last level, dropping what was deleted
    /// or overwritten, and removes the files this made obsolete. See [`SmBackend::shred`].
    fn shred_files(&self) -> io::Result<()> {
        let all: Vec<&ColumnFamily> = [CF_LOG, CF_RAFT_META, CF_SM].iter().map(|n| cf(&self.db, n)).collect();
        let mut flush = rocksdb::FlushOptions::default();
        flush.set_wait(true);
        self.db.flush_wal(true).map_err(rerr)?;
        self.db.flush_cfs_opt(&all, &flush).map_err(rerr)?;
        let mut compact = rocksdb::CompactOptions::default();
        compact.set_exclusive_manual_compaction(true);
        compact.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in [CF_LOG, CF_SM] {
            self.db
                .compact_range_cf_opt::<&[u8], &[u8]>(cf(&self.db, name), None, None, &compact);
        }
        // A compaction deletes its inputs in the background; ask for it now.
        self.db.flush_cfs_opt(&all, &flush).map_err(rerr)?;
        Ok(())
    }
}

struct RocksView<'a> {
    db: &'a DB,
    snap: SnapshotWithThreadMode<'a, DB>,
}

impl KvView for RocksView<'_> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.snap.get_cf(cf(self.db, CF_SM), key).map_err(rerr)
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let from = if start > prefix { start } else { prefix };
        let mut out = Vec::new();
        let it = self
            .snap
            .iterator_cf(cf(self.db, CF_SM), IteratorMode::From(from, Direction::Forward));
        for item in it {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(rerr)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Borrows each pair from the iterator (no copy per pair) and keeps the scan out of the
    /// block cache, so a snapshot build does not evict the blocks reads are using.
    fn for_each(&self, f: &mut PairVisitor<'_>) -> io::Result<()> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        let mut it = self.snap.raw_iterator_cf_opt(cf(self.db, CF_SM), opts);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            f(k, v)?;
            it.next();
        }
        it.status().map_err(rerr)
    }

    fn scan_each(&self, prefix: &[u8], start: &[u8], limit: usize, f: &mut PairVisitor<'_>) -> io::Result<usize> {
        let from = if start > prefix { start } else { prefix };
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        let mut it = self.snap.raw_iterator_cf_opt(cf(self.db, CF_SM), opts);
        it.seek(from);
        let mut visited = 0;
        while visited < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v)?;
            visited += 1;
            it.next();
        }
        it.status().map_err(rerr)?;
        Ok(visited)
    }
}

impl SmBackend for RocksSmBackend {
    fn flush_at_shutdown(&self) -> io::Result<()> {
        self.flush()
    }

    fn shred(&self) -> io::Result<()> {
        self.shred_files()
    }

    fn waits_on_disk(&self) -> bool {
        true
    }

    fn free_disk_bytes(&self) -> Option<io::Result<u64>> {
        Some(crate::disk_space::free_bytes_at(&self.data_dir))
    }

    fn view(&self) -> Box<dyn KvView + '_> {
        Box::new(RocksView {
            db: &self.db,
            snap: self.db.snapshot(),
        })
    }

    fn commit(&self, writes: WriteSet) -> io::Result<()> {
        let sm = cf(&self.db, CF_SM);
        let mut b = WriteBatch::default();
        for (k, v) in writes {
            match v {
                Some(v) => b.put_cf(sm, k, v),
                None => b.delete_cf(sm, k),
            }
        }
        self.db.write(b).map_err(rerr)
    }

    fn replace_all(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
        let sm = cf(&self.db, CF_SM);
        let mut b = WriteBatch::default();
        b.delete_range_cf(sm, [0x00u8], [0xffu8]);
        for (k, v) in pairs {
            b.put_cf(sm, k, v);
        }
        self.db.write_opt(b, &synced()).map_err(rerr)
    }

    fn sync(&self) -> io::Result<()> {
        self.db.flush_wal(true).map_err(rerr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_memtables_of_different_sizes_and_the_database_uses_them() {
        let mib = |id| memtable_bytes(id) as f64 / f64::from(1 << 20);
        let sizes: Vec<f64> = (1..=3).map(mib).collect();
        assert_eq!(sizes.iter().map(|m| m.round() as u64).collect::<Vec<_>>(), [78, 59, 89]);
        for id in 1..=50 {
            let b = memtable_bytes(id) as u64;
            assert!(
                (MEMTABLE_BASE_BYTES..2 * MEMTABLE_BASE_BYTES).contains(&b),
                "node {id}: {b}"
            );
        }
        // Any two of the first three flush at least 10% of a memtable apart per flush.
        for a in 0..3 {
            for b in a + 1..3 {
                let (lo, hi) = (sizes[a].min(sizes[b]), sizes[a].max(sizes[b]));
                assert!(hi / lo >= 1.1, "nodes {} and {}: {sizes:?}", a + 1, b + 1);
            }
        }
        // RocksDB records the options it opened with: the log and sm families carry node 3's
        // size, the Raft metadata family keeps the default.
        let dir = tempfile::tempdir().unwrap();
        drop(open_for_node(dir.path(), 3).unwrap());
        let options = fs::read_dir(dir.path().join("db"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
            .max()
            .unwrap();
        let text = fs::read_to_string(options).unwrap();
        let per_family: Vec<(String, String)> = text
            .split("[CFOptions \"")
            .skip(1)
            .map(|section| {
                let name = section.split('"').next().unwrap().to_string();
                let size = section
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("write_buffer_size="))
                    .unwrap()
                    .to_string();
                (name, size)
            })
            .collect();
        let want = memtable_bytes(3).to_string();
        for (family, size) in &per_family {
            match family.as_str() {
                CF_LOG | CF_SM => assert_eq!(size, &want, "{family}"),
                _ => assert_eq!(size, "67108864", "{family} keeps RocksDB's default"),
            }
        }
        assert!(per_family.iter().any(|(f, _)| f == CF_SM) && per_family.iter().any(|(f, _)| f == CF_LOG));
    }
}
