//! The node-local audit log: an append-only, hash-chained file written by one dedicated thread
//! with batched fsync, failing closed.
//!
//! The file is a sequence of length-delimited [`pb::AuditRecord`]s. Record i has `format = 1`,
//! `seq = i` (1, 2, 3, … with no gaps), `prev_hash` = the `hash` of record i-1 (32 zero bytes
//! for the first), `event` = the encoded [`pb::AuditEvent`] (hashed exactly as stored) and
//! `hash` = SHA-256("coffer-audit-v1" || seq as u64 big-endian || prev_hash || event).
//!
//! [`AuditFile::append`] queues an event and waits (at most `write_timeout`) for the writer
//! thread, which writes everything queued as one batch with one `write_all`, and then, by the
//! [`SyncMode`]:
//! - `Batch` (the default): one `sync_data` per batch before it acknowledges. A request never
//!   gets `Ok` before its record is durable.
//! - `Interval(n)`: it acknowledges once the batch is written (in the page cache) and syncs at
//!   most `n` after the first unsynced write, also when no more requests come. A power failure
//!   can lose the records of the last `n` (never a process crash: the kernel has them).
//!
//! Either way it fails closed: on any I/O error (a write, or a sync) the batch is truncated
//! away (best effort), the file is reopened for the next batch and every event of the batch is
//! refused; no request waits longer than `write_timeout`. [`AuditSink::head`] (what anchors
//! name) is only ever a synced record.
//!
//! On (re)open the writer recovers the chain tail from the file. A torn last record (a crash in
//! the middle of a write, never acknowledged) is truncated away; corruption before the end is
//! never rewritten: the chain continues after the last record that decodes, and
//! [`verify_file`](super::rotation::verify_file) (`coffer audit verify`) reports the damage.
//!
//! Before a batch, a live file of `max_file_bytes` or more is rotated: renamed for its first
//! record's sequence number, the directory synced, a new live file created, and rotated files
//! past the newest `retain_files` removed ([`super::rotation`]). The chain runs on across
//! files; a failed rotation is logged and the live file keeps growing (a record is never
//! refused for want of rotation). When the live file holds no record (just rotated, or a crash
//! right after the rename), the chain continues after the newest rotated file's last record.
//!
//! Events carry metadata only, never secret values; nothing here logs event contents.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::oneshot;

use super::chain::{chain_hash, contains_record, Anchors, Frame, Frames, TailEntry, VerifyReport, FORMAT};
use super::rotation;
use super::sink::{AuditError, AuditSink};
use crate::pb;

/// Recovery only considers truncating a damaged tail shorter than this.
const MAX_TORN: u64 = 64 << 20;

/// Default size at which the live file is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 20;
/// Default number of rotated files kept.
pub const DEFAULT_RETAIN_FILES: usize = 16;

/// When the writer makes records durable (`[audit] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `sync_data` before acknowledging each batch: a record is durable before its answer.
    Batch,
    /// Acknowledge once written; `sync_data` at most this long after the first unsynced write.
    Interval(Duration),
}

/// Tuning of [`AuditFile`].
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// When records are made durable (default [`SyncMode::Batch`]).
    pub sync: SyncMode,
    /// A request whose record is not durable within this bound fails (default 2 s).
    pub write_timeout: Duration,
    /// Most events written with one `write_all` + `sync_data` (default 512).
    pub max_batch: usize,
    /// Most events waiting for the writer; beyond it requests fail at once (default 8192).
    pub queue: usize,
    /// The live file is rotated once it holds this many bytes (default 256 MiB).
    pub max_file_bytes: u64,
    /// Rotated files kept; older ones are removed (default 16, at least 1).
    pub retain_files: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            sync: SyncMode::Batch,
            write_timeout: Duration::from_secs(2),
            max_batch: 512,
            queue: 8192,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            retain_files: DEFAULT_RETAIN_FILES,
        }
    }
}

/// One queued event and the request waiting for it.
struct Request {
    event: Vec<u8>,
    ack: oneshot::Sender<Result<(), String>>,
}

/// State shared by the handle and the writer thread.
#[derive(Default)]
struct Shared {
    syncs: AtomicU64,
    /// Events queued and not yet written (or refused): `coffer_audit_queue_depth`.
    /// Signed: the writer may count an event out before its sender counted it in.
    pending: std::sync::atomic::AtomicI64,
    /// The newest durable record (recovered on open, then after each synced batch).
    head: Mutex<Option<(u64, [u8; 32])>>,
    #[cfg(test)]
    stalled: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    queued: AtomicU64,
}

/// The node-local audit log. See the module documentation.
pub struct AuditFile {
    path: PathBuf,
    opts: AuditOptions,
    tx: Option<SyncSender<Request>>,
    shared: Arc<Shared>,
    /// Disconnects when the writer thread exits.
    writer_done: Mutex<Option<Receiver<()>>>,
}

impl AuditFile {
    /// Starts the writer thread (`coffer-audit`) for `path`. Never fails: when the file cannot be
    /// opened or written, [`AuditFile::append`] says why, and the writer retries on every batch.
    pub fn open(path: PathBuf, opts: AuditOptions) -> AuditFile {
        let opts = AuditOptions {
            max_batch: opts.max_batch.max(1),
            queue: opts.queue.max(1),
            retain_files: opts.retain_files.max(1),
            ..opts
        };
        let (tx, rx) = mpsc::sync_channel(opts.queue);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            path: path.clone(),
            file: None,
            tail: Tail::first(),
            truncate_to: None,
            need_dir_sync: false,
            failing: false,
            max_file_bytes: opts.max_file_bytes,
            retain_files: opts.retain_files,
            rotation_failing: false,
            sync: opts.sync,
            unsynced_since: None,
            shared: shared.clone(),
        };
        let max_batch = opts.max_batch;
        let spawned = std::thread::Builder::new().name("coffer-audit".into()).spawn(move || {
            let _done = done_tx;
            writer.run(rx, max_batch);
        });
        if let Err(e) = spawned {
            // `rx` is gone with the closure, so every append fails with "writer has stopped".
            tracing::error!(path = %path.display(), error = %e, "cannot start the audit writer thread");
        }
        AuditFile {
            path,
            opts,
            tx: Some(tx),
            shared,
            writer_done: Mutex::new(Some(done_rx)),
        }
    }

    /// The file this log writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of successful `sync_data` calls (one per written batch with `SyncMode::Batch`).
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Records `event`: returns `Ok` only after its record is written (and, with
    /// `SyncMode::Batch`, fsynced), and an error when the queue is full, the file cannot be
    /// written, or `write_timeout` passes.
    pub async fn append(&self, event: pb::AuditEvent) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        let request = Request {
            event: event.encode_to_vec(),
            ack,
        };
        let Some(tx) = &self.tx else {
            return Err(self.refused("the audit writer has stopped"));
        };
        match tx.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(self.refused(&format!("backlog of {} events is full", self.opts.queue)));
            }
            Err(TrySendError::Disconnected(_)) => return Err(self.refused("the audit writer has stopped")),
        }
        let depth = self.shared.pending.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("coffer_audit_queue_depth").set(depth.max(0) as f64);
        #[cfg(test)]
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        match tokio::time::timeout(self.opts.write_timeout, done).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(what))) => Err(self.refused(&what)),
            Ok(Err(_)) => Err(self.refused("the audit writer has stopped")),
            Err(_) => Err(self.refused(&format!(
                "not written within {} ms",
                self.opts.write_timeout.as_millis()
            ))),
        }
    }

    /// Counted as `coffer_audit_write_failures_total`: a request failed for its record.
    fn refused(&self, what: &str) -> AuditError {
        metrics::counter!("coffer_audit_write_failures_total").increment(1);
        refused(&self.path, what)
    }

    /// Test hook: while stalled, the writer holds the first event of its next batch unwritten.
    #[cfg(test)]
    fn stall(&self, on: bool) {
        self.shared.stalled.store(on, Ordering::SeqCst);
    }
}

impl Drop for AuditFile {
    /// Closes the queue; the writer drains what is queued and exits. Waits for that at most
    /// `write_timeout` (no wait at all when the queue is empty and the disk is healthy).
    fn drop(&mut self) {
        drop(self.tx.take());
        let done = self.writer_done.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done {
            let _ = done.recv_timeout(self.opts.write_timeout);
        }
    }
}

#[async_trait::async_trait]
impl AuditSink for AuditFile {
    async fn record(&self, event: pb::AuditEvent) -> Result<(), AuditError> {
        self.append(event).await
    }

    fn tail(&self, count: usize) -> io::Result<Vec<TailEntry>> {
        rotation::tail_log(&self.path, count)
    }

    /// Verifies the log across its files, the live one up to its length when read (a record
    /// being written at the same time may be cut there; a cut last record is not reported).
    fn verify(&self, anchors: &Anchors) -> io::Result<VerifyReport> {
        rotation::verify_anchored(&self.path, true, anchors)
    }

    fn head(&self) -> Option<(u64, [u8; 32])> {
        *self.shared.head.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn refused(path: &Path, what: &str) -> AuditError {
    AuditError(format!("audit log {}: {what}; the request was refused", path.display()))
}

/// The last durable record: the chain continues after it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tail {
    seq: u64,
    hash: [u8; 32],
}

impl Tail {
    fn first() -> Self {
        Tail { seq: 0, hash: [0; 32] }
    }
}

struct OpenFile {
    file: File,
    /// Only regular files are read (recovery) and truncated; `/dev/full` and friends are not.
    regular: bool,
}

/// Owned by the writer thread.
struct Writer {
    path: PathBuf,
    /// `None` until opened, and again after any I/O error.
    file: Option<OpenFile>,
    tail: Tail,
    /// A failed batch that could not be truncated away: retried when the file is reopened.
    truncate_to: Option<u64>,
    /// The file was created and its directory entry is not known to be durable yet.
    need_dir_sync: bool,
    /// The last batch failed (errors are logged once per outage, not once per batch).
    failing: bool,
    max_file_bytes: u64,
    retain_files: usize,
    /// The last rotation failed (logged once until one succeeds).
    rotation_failing: bool,
    sync: SyncMode,
    /// `SyncMode::Interval`: when the oldest record written and not yet synced was written.
    unsynced_since: Option<std::time::Instant>,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>, max_batch: usize) {
        if let Err(what) = self.ensure_open() {
            tracing::error!(
                path = %self.path.display(),
                "audit log {}: {what}; requests are refused until it can be written",
                self.path.display()
            );
            self.failing = true;
        }
        while let Some(first) = self.next_request(&rx) {
            #[cfg(test)]
            while self.shared.stalled.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut events = vec![first.event];
            let mut acks = vec![first.ack];
            while events.len() < max_batch {
                let Ok(r) = rx.try_recv() else { break };
                events.push(r.event);
                acks.push(r.ack);
            }
            let count = events.len();
            let result = self.write_batch(events);
            let depth = self.shared.pending.fetch_sub(count as i64, Ordering::Relaxed) - count as i64;
            metrics::gauge!("coffer_audit_queue_depth").set(depth.max(0) as f64);
            match &result {
                Err(what) if !self.failing => {
                    self.failing = true;
                    tracing::error!(
                        path = %self.path.display(),
                        "audit log {}: {what}; {count} request(s) refused, requests are refused until it can be \
                         written",
                        self.path.display()
                    );
                }
                Err(what) => tracing::debug!(path = %self.path.display(), "audit batch of {count} refused: {what}"),
                Ok(()) if self.failing => {
                    self.failing = false;
                    tracing::info!(path = %self.path.display(), "audit log is writable again");
                }
                Ok(()) => {}
            }
            for ack in acks {
                // The request may have timed out already; its event was still written (or not).
                let _ = ack.send(result.clone());
            }
        }
    }

    /// The next request; meanwhile, with `SyncMode::Interval`, syncs what is written when its
    /// interval is up. `None` once the queue is closed (after a last sync).
    fn next_request(&mut self, rx: &Receiver<Request>) -> Option<Request> {
        loop {
            let wait = match (self.sync, self.unsynced_since) {
                (SyncMode::Interval(every), Some(since)) => every.saturating_sub(since.elapsed()),
                _ => return rx.recv().ok(),
            };
            match rx.recv_timeout(wait) {
                Ok(r) => return Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => self.sync_written(),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.sync_written();
                    return None;
                }
            }
        }
    }

    /// `SyncMode::Interval`: makes the records written so far durable. A failure is logged,
    /// and the file reopened before the next batch (which is refused if it cannot be written).
    fn sync_written(&mut self) {
        if self.unsynced_since.take().is_none() {
            return;
        }
        let Some(open) = self.file.as_mut() else { return };
        match open.file.sync_data() {
            Ok(()) => {
                self.publish_head();
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Records already acknowledged may be lost with the page cache (a power
                // failure, or this error): say so loudly, and start over from what the file holds.
                tracing::error!(
                    path = %self.path.display(),
                    "audit log {}: cannot sync written records: {e}; records of the last interval may be lost",
                    self.path.display()
                );
                metrics::counter!("coffer_audit_write_failures_total").increment(1);
                self.file = None;
                self.failing = true;
            }
        }
    }

    /// Opens the file if it is not open, recovering the chain tail. Errors say what failed.
    fn ensure_open(&mut self) -> Result<(), String> {
        if self.file.is_some() {
            return Ok(());
        }
        let missing = matches!(fs::symlink_metadata(&self.path), Err(e) if e.kind() == io::ErrorKind::NotFound);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| format!("cannot open: {e}"))?;
        if missing {
            self.need_dir_sync = true;
        }
        let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        let regular = meta.is_file();
        if regular {
            if let Some(len) = self.truncate_to {
                if meta.len() > len {
                    file.set_len(len)
                        .map_err(|e| format!("cannot truncate a failed batch away: {e}"))?;
                }
                self.truncate_to = None;
            }
            let mut recovered =
                recover(&file, &self.path).map_err(|e| format!("cannot read it to recover the chain: {e}"))?;
            if recovered == Tail::first() {
                recovered = rotated_tail(&self.path)
                    .map_err(|e| format!("cannot read the newest rotated file to recover the chain: {e}"))?;
            }
            self.tail = recovered;
            self.publish_head();
        }
        if self.need_dir_sync {
            sync_parent(&self.path).map_err(|e| format!("cannot sync its directory: {e}"))?;
            self.need_dir_sync = false;
        }
        self.file = Some(OpenFile { file, regular });
        Ok(())
    }

    /// Makes the tail, which is durable, the head [`AuditSink::head`] reports.
    fn publish_head(&self) {
        let head = (self.tail.seq > 0).then_some((self.tail.seq, self.tail.hash));
        *self.shared.head.lock().unwrap_or_else(|e| e.into_inner()) = head;
    }

    /// Writes `events` as the next records with one `write_all` and one `sync_data`.
    fn write_batch(&mut self, events: Vec<Vec<u8>>) -> Result<(), String> {
        self.ensure_open()?;
        self.rotate_if_full();
        self.ensure_open()?;
        let Some(open) = self.file.as_mut() else {
            return Err("cannot open".into());
        };
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.len() + 96).sum());
        let mut tail = self.tail.clone();
        for event in events {
            let seq = tail.seq + 1;
            let hash = chain_hash(seq, &tail.hash, &event);
            let record = pb::AuditRecord {
                format: FORMAT,
                seq,
                prev_hash: tail.hash.to_vec(),
                event,
                hash: hash.to_vec(),
            };
            record
                .encode_length_delimited(&mut buf)
                .map_err(|e| format!("cannot encode a record: {e}"))?;
            tail = Tail { seq, hash };
        }
        let before = if open.regular {
            match open.file.metadata() {
                Ok(m) => Some(m.len()),
                Err(e) => {
                    self.file = None;
                    return Err(e.to_string());
                }
            }
        } else {
            None
        };
        let written = match self.sync {
            SyncMode::Batch => open.file.write_all(&buf).and_then(|()| open.file.sync_data()),
            SyncMode::Interval(_) => open.file.write_all(&buf),
        };
        match written {
            Ok(()) => {
                self.tail = tail;
                match self.sync {
                    SyncMode::Batch => {
                        self.publish_head();
                        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    SyncMode::Interval(every) => {
                        let since = *self.unsynced_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= every {
                            self.sync_written();
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Nothing of the batch was acknowledged: cut it away and reopen next time (after
                // a failed fsync the page cache cannot be trusted).
                if let Some(len) = before {
                    if open.file.set_len(len).is_err() {
                        self.truncate_to = Some(len);
                    }
                }
                self.file = None;
                Err(e.to_string())
            }
        }
    }
}

impl Writer {
    /// Rotates the live file when it has reached `max_file_bytes` (see the module
    /// documentation); a failure is logged once and writing goes on in the live file.
    fn rotate_if_full(&mut self) {
        let Some(open) = &self.file else { return };
        if !open.regular || self.tail.seq == 0 {
            return;
        }
        match open.file.metadata() {
            Ok(m) if m.len() >= self.max_file_bytes => {}
            _ => return,
        }
        // A rotated file holds only synced records.
        self.sync_written();
        if self.file.is_none() {
            return;
        }
        match self.rotate() {
            Ok((to, removed)) => {
                self.rotation_failing = false;
                tracing::info!(
                    path = %self.path.display(),
                    "audit log rotated to {}; {removed} old file(s) removed past the newest {}",
                    to.display(),
                    self.retain_files
                );
            }
            Err(e) if !self.rotation_failing => {
                self.rotation_failing = true;
                tracing::error!(
                    path = %self.path.display(),
                    "audit log {} cannot be rotated: {e}; records go on into the live file",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }

    /// Renames the live file for its first record, starts a new one, and applies retention.
    fn rotate(&mut self) -> io::Result<(PathBuf, usize)> {
        let first = first_seq(&self.path)?;
        let to = rotation::rotated_path(&self.path, first);
        if fs::symlink_metadata(&to).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", to.display()),
            ));
        }
        fs::rename(&self.path, &to)?;
        // The live name is free: whatever happens next, the next record starts a new file, and
        // a reopen finds the chain's tail in the file just rotated.
        self.file = None;
        self.need_dir_sync = true;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)?;
        sync_parent(&self.path)?;
        self.need_dir_sync = false;
        self.file = Some(OpenFile { file, regular: true });
        let removed = rotation::prune(&self.path, self.retain_files)?;
        if removed > 0 {
            sync_parent(&self.path)?;
        }
        Ok((to, removed))
    }
}

/// The sequence number of the first record of the file at `path`.
fn first_seq(path: &Path) -> io::Result<u64> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    match Frames::new(BufReader::new(file), len).next()? {
        Frame::Whole { body, .. } => pb::AuditRecord::decode(body.as_slice())
            .map(|r| r.seq)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("its first record: {e}"))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "its first record cannot be read",
        )),
    }
}

/// The chain tail in the newest rotated file of `live` (the first tail when there is none).
fn rotated_tail(live: &Path) -> io::Result<Tail> {
    let Some((_, newest)) = rotation::rotated_files(live)?.pop() else {
        return Ok(Tail::first());
    };
    let Some(last) = rotation::tail_file(&newest, 1)?.pop_back() else {
        return Ok(Tail::first());
    };
    let mut hash = [0; 32];
    hex::decode_to_slice(&last.hash, &mut hash)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", newest.display())))?;
    Ok(Tail { seq: last.seq, hash })
}

/// Makes a newly created file's directory entry durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// Reads the chain tail of an open regular file. Truncates a torn last record; leaves damage
/// before the end alone (logging it) and continues after the last record that decodes.
fn recover(file: &File, path: &Path) -> io::Result<Tail> {
    let limit = file.metadata()?.len();
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut frames = Frames::new(BufReader::with_capacity(1 << 16, reader), limit);
    let mut tail = Tail::first();
    let mut position = 0u64;
    let mut damage: Option<String> = None;
    loop {
        let frame = frames.next()?;
        let (offset, partial) = match frame {
            Frame::End => break,
            Frame::Whole { offset, body } => {
                position += 1;
                match pb::AuditRecord::decode(body.as_slice()) {
                    Ok(r) if r.format == FORMAT && r.hash.len() == 32 => {
                        let mut hash = [0; 32];
                        hash.copy_from_slice(&r.hash);
                        tail = Tail { seq: r.seq, hash };
                        continue;
                    }
                    _ => (offset, false),
                }
            }
            Frame::Cut { offset, .. } | Frame::BadLength { offset, .. } => {
                position += 1;
                (offset, true)
            }
        };
        // Only the first problem can be a torn tail: after damage, nothing is cut.
        if damage.is_none() && is_torn(file, offset, limit, partial)? {
            tracing::warn!(
                path = %path.display(),
                "audit log {} ends with a partial record at byte {offset} (a write cut short by a crash, never \
                 acknowledged); truncated {} byte(s)",
                path.display(),
                limit - offset
            );
            file.set_len(offset)?;
            break;
        }
        damage.get_or_insert_with(|| format!("record {position} (byte {offset}) cannot be read"));
        if partial {
            break;
        }
    }
    if let Some(damage) = damage {
        tracing::error!(
            path = %path.display(),
            "audit log {} is damaged: {damage}; it is left as it is and new records continue the chain after \
             record {}; `coffer audit verify --file {}` reports the damage",
            path.display(),
            tail.seq,
            path.display()
        );
    }
    Ok(tail)
}

/// Whether the bytes from `offset` to `limit` are what a write cut short by a crash leaves: zeros
/// (the size grew, the data never landed), or, when the frame there is `partial` (the file ends
/// before the length its prefix promises), bytes that hold no complete record. A length prefix
/// edited to point past the end is followed by a complete record, so it is damage, not a torn
/// tail; so is a whole last record that does not decode.
fn is_torn(file: &File, offset: u64, limit: u64, partial: bool) -> io::Result<bool> {
    let len = limit - offset;
    if len == 0 || len > MAX_TORN {
        return Ok(false);
    }
    let mut rest = vec![0; len as usize];
    file.read_exact_at(&mut rest, offset)?;
    if rest.iter().all(|&b| b == 0) {
        return Ok(true);
    }
    Ok(partial && !contains_record(&rest))
}
#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    use super::*;
    use crate::audit::chain::{read_varint, Anchor, Broken};
    use crate::audit::rotation::{tail_log as tail, verify_file};

    fn event(i: usize) -> pb::AuditEvent {
        pb::AuditEvent {
            time_ms: 1_700_000_000_000 + i as u64,
            node: "n1".into(),
            region: "us-east".into(),
            principal: format!("token:p{i}"),
            action: "secrets:read".into(),
            resource: format!("acme/db/password-{i:04}"),
            decision: "allow".into(),
            statement: "ops#0".into(),
            request_id: format!("req-{i}"),
            severity: "info".into(),
            ..Default::default()
        }
    }

    fn opts() -> AuditOptions {
        AuditOptions {
            write_timeout: Duration::from_secs(10),
            ..AuditOptions::default()
        }
    }

    async fn write_log(path: &Path, n: usize) {
        let log = AuditFile::open(path.to_path_buf(), opts());
        for i in 1..=n {
            log.append(event(i)).await.unwrap();
        }
    }

    /// (offset of the length prefix, offset of the body, body length) of each frame.
    fn frames(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let (len, n) = read_varint(&bytes[i..]).unwrap();
            out.push((i, i + n, len as usize));
            i += n + len as usize;
        }
        out
    }

    fn broken(path: &Path) -> Broken {
        let report = verify_file(path).unwrap();
        let records = report.records;
        report
            .broken
            .unwrap_or_else(|| panic!("verify passed over {records} records"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_chain_verify_and_reopen_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditFile::open(path.clone(), opts()));
        let mut tasks = Vec::new();
        for t in 0..20 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    log.append(event(t * 10 + i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let report = verify_file(&path).unwrap();
        assert_eq!(
            report,
            VerifyReport {
                records: 200,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
        assert_eq!(AuditSink::verify(&*log, &Anchors::default()).unwrap(), report);
        let entries = tail(&path, 1000).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=200).collect::<Vec<_>>()
        );
        let mut principals: Vec<_> = entries.iter().map(|e| e.event.principal.clone()).collect();
        principals.sort();
        principals.dedup();
        assert_eq!(principals.len(), 200, "every event is recorded once");
        assert!(
            log.syncs() < 200,
            "a concurrent burst shares fsyncs: {} syncs",
            log.syncs()
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(Arc::try_unwrap(log).ok().unwrap());

        // A second open continues the chain.
        let log = AuditFile::open(path.clone(), opts());
        for i in 0..5 {
            log.append(event(1000 + i)).await.unwrap();
        }
        let entries = tail(&path, 5).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![201, 202, 203, 204, 205]
        );
        assert_eq!(entries[4].event, event(1004));
        assert_eq!(entries[4].hash.len(), 64);
        assert_eq!(
            verify_file(&path).unwrap(),
            VerifyReport {
                records: 205,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_events_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditFile::open(path.clone(), opts()));
        log.stall(true);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(event(i)).await })
            })
            .collect();
        let start = Instant::now();
        while log.shared.queued.load(Ordering::SeqCst) < 50 {
            assert!(start.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(log.syncs(), 0, "nothing is acknowledged while the writer is stalled");
        log.stall(false);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(log.syncs(), 1, "50 queued events are written with one fsync");
        assert_eq!(verify_file(&path).unwrap().records, 50);
    }

    #[tokio::test]
    async fn max_batch_bounds_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditFile::open(path.clone(), AuditOptions { max_batch: 4, ..opts() }));
        log.stall(true);
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(event(i)).await })
            })
            .collect();
        while log.shared.queued.load(Ordering::SeqCst) < 12 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        log.stall(false);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(log.syncs(), 3);
        assert_eq!(verify_file(&path).unwrap().records, 12);
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 3).await;
        let good = fs::read(&path).unwrap();

        // A length prefix that promises more bytes than follow.
        let mut torn = good.clone();
        torn.extend_from_slice(&[0x50, 0x08, 0x01]);
        fs::write(&path, &torn).unwrap();
        assert!(verify_file(&path).unwrap().broken.is_some());
        let log = AuditFile::open(path.clone(), opts());
        log.append(event(4)).await.unwrap();
        drop(log);
        let after = fs::read(&path).unwrap();
        assert_eq!(&after[..good.len()], &good[..], "whole records are kept");
        assert_eq!(
            verify_file(&path).unwrap(),
            VerifyReport {
                records: 4,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );

        // A real record cut in half (a crash in the middle of a batch write).
        let full = fs::read(&path).unwrap();
        let last = *frames(&full).last().unwrap();
        fs::write(&path, &full[..last.1 + last.2 / 2]).unwrap();
        let log = AuditFile::open(path.clone(), opts());
        log.append(event(5)).await.unwrap();
        drop(log);
        assert_eq!(
            verify_file(&path).unwrap(),
            VerifyReport {
                records: 4,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
        assert_eq!(tail(&path, 1).unwrap()[0].event, event(5));

        // Zeros left by a crash after the file size grew but before the data was written.
        let mut zeros = fs::read(&path).unwrap();
        let len = zeros.len();
        zeros.extend_from_slice(&[0; 700]);
        fs::write(&path, &zeros).unwrap();
        let log = AuditFile::open(path.clone(), opts());
        log.append(event(6)).await.unwrap();
        drop(log);
        assert_eq!(fs::read(&path).unwrap()[..len], zeros[..len]);
        assert_eq!(
            verify_file(&path).unwrap(),
            VerifyReport {
                records: 5,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn damage_before_the_end_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 3).await;
        let mut bytes = fs::read(&path).unwrap();
        // Edit a character inside record 2's event: it still decodes, its hash no longer matches.
        let at = bytes.windows(13).position(|w| w == b"password-0002").unwrap();
        bytes[at + 12] = b'9';
        fs::write(&path, &bytes).unwrap();
        let log = AuditFile::open(path.clone(), opts());
        log.append(event(4)).await.unwrap();
        drop(log);
        let after = fs::read(&path).unwrap();
        assert_eq!(&after[..bytes.len()], &bytes[..], "the damaged file is not rewritten");
        let entries = tail(&path, 10).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(broken(&path).position, 2);

        // A length prefix edited to point past the end is damage, not a torn tail: nothing is cut.
        let mut bytes = fs::read(&path).unwrap();
        let f = frames(&bytes);
        bytes[f[3].0 + 1] += 1;
        fs::write(&path, &bytes).unwrap();
        let log = AuditFile::open(path.clone(), opts());
        log.append(event(5)).await.unwrap();
        drop(log);
        let after = fs::read(&path).unwrap();
        assert_eq!(
            &after[..bytes.len()],
            &bytes[..],
            "records after a damaged length are kept"
        );
        assert!(after.len() > bytes.len());
    }

    #[tokio::test]
    async fn verify_catches_edits_deletions_swaps_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let edited = dir.path().join("edited.log");
        write_log(&path, 8).await;
        let good = fs::read(&path).unwrap();
        let f = frames(&good);
        assert_eq!(f.len(), 8);
        assert_eq!(
            verify_file(&path).unwrap(),
            VerifyReport {
                records: 8,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
        let check = |bytes: &[u8], position: u64, contains: &str| {
            fs::write(&edited, bytes).unwrap();
            let b = broken(&edited);
            assert_eq!(b.position, position, "{b:?}");
            assert!(
                b.problem.contains(contains),
                "{:?} does not contain {contains:?}",
                b.problem
            );
            assert_eq!(verify_file(&edited).unwrap().records, position - 1);
        };
        let record = |i: usize| pb::AuditRecord::decode(&good[f[i].1..f[i].1 + f[i].2]).unwrap();
        let event_at = |i: usize| {
            let body = &good[f[i].1..f[i].1 + f[i].2];
            let ev = record(i).event;
            f[i].1 + body.windows(ev.len()).position(|w| w == ev.as_slice()).unwrap()
        };

        // One byte in the middle of record 5's event, still a valid event: the hash detects it.
        let mut b = good.clone();
        let e5 = event_at(4);
        let at = e5 + b[e5..].windows(13).position(|w| w == b"password-0005").unwrap();
        b[at + 4] ^= 0x20;
        check(&b, 5, "record 5 (byte ");
        check(&b, 5, "hash does not match its contents (edited?)");
        fs::write(&edited, &b).unwrap();
        assert!(!broken(&edited).problem.contains("event does not decode"));
        // One byte of the event that makes it undecodable (a tag with wire type 7).
        let mut b = good.clone();
        b[e5] |= 0x07;
        check(
            &b,
            5,
            "hash does not match its contents (edited?); its event does not decode either",
        );
        // One byte of the record's own framing (the `format` tag): the record does not decode.
        let mut b = good.clone();
        b[f[4].1] |= 0x07;
        check(&b, 5, "record 5 (byte ");
        check(&b, 5, "does not decode as an audit record");
        // A byte of the stored hash, and of prev_hash.
        let mut b = good.clone();
        b[f[5].1 + f[5].2 - 3] ^= 0x01;
        check(&b, 6, "hash does not match");
        let mut b = good.clone();
        b[event_at(6) - 10] ^= 0x01;
        check(&b, 7, "prev_hash does not match record 6's hash");
        // The length prefix of record 3.
        let mut b = good.clone();
        b[f[2].0] ^= 0x01;
        check(&b, 3, "record 3");
        let mut b = good.clone();
        b[f[7].0] ^= 0x04;
        check(&b, 8, "record 8");
        // A deleted record.
        let mut b = good[..f[3].0].to_vec();
        b.extend_from_slice(&good[f[4].0..]);
        check(
            &b,
            4,
            "record 4: sequence number 5, expected 4 (a record was deleted or moved)",
        );
        // The last record deleted is undetectable from the file alone; the first is not.
        check(&good[f[1].0..], 1, "sequence number 2, expected 1");
        // A swapped pair.
        let mut b = good[..f[4].0].to_vec();
        b.extend_from_slice(&good[f[5].0..f[6].0]);
        b.extend_from_slice(&good[f[4].0..f[5].0]);
        b.extend_from_slice(&good[f[6].0..]);
        check(&b, 5, "sequence number 6, expected 5");
        // Truncated inside the last record, and inside its length prefix.
        check(&good[..good.len() - 10], 8, "truncated");
        // Garbage appended.
        let mut b = good.clone();
        b.extend_from_slice(b"garbage");
        check(&b, 9, "record 9");
        let mut b = good.clone();
        b.extend_from_slice(&[0x02, 0x08, 0x02]);
        check(&b, 9, "format 2, expected 1");
        let mut b = good.clone();
        b.push(0);
        check(&b, 9, "format 0, expected 1");

        // A forged record whose hash is right but whose event is not an AuditEvent.
        let mut b = good.clone();
        let prev = record(7).hash;
        let junk = vec![0xff, 0xff, 0xff];
        pb::AuditRecord {
            format: 1,
            seq: 9,
            hash: chain_hash(9, &prev, &junk).to_vec(),
            prev_hash: prev,
            event: junk,
        }
        .encode_length_delimited(&mut b)
        .unwrap();
        check(&b, 9, "record 9 (byte ");
        check(&b, 9, "its event does not decode");
        assert!(!broken(&edited).problem.contains("hash does not match"));
    }

    #[tokio::test]
    async fn tail_returns_the_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 7).await;
        let entries = tail(&path, 3).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(entries[2].event, event(7));
        assert!(tail(&path, 0).unwrap().is_empty());
        assert_eq!(tail(&path, 100).unwrap().len(), 7);
    }

    #[tokio::test]
    async fn full_device_fails_closed() {
        let path = PathBuf::from("/dev/full");
        if !path.exists() {
            eprintln!("no /dev/full here; skipped");
            return;
        }
        let log = AuditFile::open(path, opts());
        let start = Instant::now();
        for i in 0..3 {
            let err = log.append(event(i)).await.unwrap_err().to_string();
            assert!(err.contains("No space left"), "{err}");
            assert!(err.starts_with("audit log /dev/full: "), "{err}");
            assert!(err.ends_with("; the request was refused"), "{err}");
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(log.syncs(), 0);
    }

    /// With `SyncMode::Interval`, a request is answered once its record is written, before it
    /// is synced; the sync follows within the interval with no further request, and only then
    /// is the record the head anchors may name.
    #[tokio::test]
    async fn interval_sync_answers_once_written_and_syncs_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let slow = AuditFile::open(
            path.clone(),
            AuditOptions {
                sync: SyncMode::Interval(Duration::from_secs(3600)),
                ..opts()
            },
        );
        for i in 1..=3 {
            slow.append(event(i)).await.unwrap();
        }
        assert_eq!(slow.syncs(), 0, "answered before any sync");
        assert_eq!(AuditSink::head(&slow), None, "nothing synced yet for anchors to name");
        assert_eq!(verify_file(&path).unwrap().records, 3, "written before the answers");
        drop(slow); // the writer syncs what it wrote before it exits

        let log = AuditFile::open(
            path.clone(),
            AuditOptions {
                sync: SyncMode::Interval(Duration::from_millis(50)),
                ..opts()
            },
        );
        log.append(event(4)).await.unwrap();
        let start = Instant::now();
        while log.syncs() == 0 && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(log.syncs(), 1, "synced by the interval, with no request after it");
        assert_eq!(AuditSink::head(&log).map(|(seq, _)| seq), Some(4));
        let report = verify_file(&path).unwrap();
        assert_eq!((report.records, report.broken.is_none()), (4, true));
    }

    #[tokio::test]
    async fn interval_sync_fails_closed_on_a_write_error() {
        let path = PathBuf::from("/dev/full");
        assert!(path.exists(), "this test needs /dev/full");
        let log = AuditFile::open(
            path,
            AuditOptions {
                sync: SyncMode::Interval(Duration::from_millis(50)),
                ..opts()
            },
        );
        for i in 0..3 {
            let err = log.append(event(i)).await.unwrap_err().to_string();
            assert!(err.contains("No space left"), "{err}");
        }
    }

    #[tokio::test]
    async fn missing_directory_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("audit.log");
        let log = AuditFile::open(path.clone(), opts());
        let start = Instant::now();
        let err = log.append(event(1)).await.unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("cannot open: No such file or directory"), "{err}");
        // Once the directory exists, the next request succeeds (the writer reopens lazily).
        fs::create_dir(path.parent().unwrap()).unwrap();
        log.append(event(2)).await.unwrap();
        assert_eq!(
            verify_file(&path).unwrap(),
            VerifyReport {
                records: 1,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn write_timeout_holds_when_the_writer_is_stuck() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditFile::open(
            path.clone(),
            AuditOptions {
                write_timeout: Duration::from_millis(200),
                ..AuditOptions::default()
            },
        );
        log.stall(true);
        let start = Instant::now();
        let err = log.append(event(1)).await.unwrap_err().to_string();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(
            err.contains("not written within 200 ms; the request was refused"),
            "{err}"
        );
        assert_eq!(log.syncs(), 0);
        // Unstuck, the writer catches up; a timed-out event may still be recorded.
        log.stall(false);
        log.append(event(2)).await.unwrap();
        assert_eq!(verify_file(&path).unwrap().records, 2);
    }

    #[tokio::test]
    async fn full_backlog_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditFile::open(
            path.clone(),
            AuditOptions {
                write_timeout: Duration::from_secs(10),
                queue: 2,
                ..AuditOptions::default()
            },
        ));
        log.stall(true);
        // One event held by the stalled writer, two in the queue.
        let mut tasks = Vec::new();
        for i in 0..3 {
            let l = log.clone();
            tasks.push(tokio::spawn(async move { l.append(event(i)).await }));
            let start = Instant::now();
            while log.shared.queued.load(Ordering::SeqCst) < i as u64 + 1 {
                assert!(start.elapsed() < Duration::from_secs(5));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if i == 0 {
                // Let the writer take the first event off the queue.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let start = Instant::now();
        let err = log.append(event(9)).await.unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_millis(100));
        assert!(
            err.contains("backlog of 2 events is full; the request was refused"),
            "{err}"
        );
        log.stall(false);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(verify_file(&path).unwrap().records, 3);
    }

    #[tokio::test]
    async fn drop_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditFile::open(
            path.clone(),
            AuditOptions {
                write_timeout: Duration::from_millis(50),
                ..AuditOptions::default()
            },
        ));
        log.stall(true);
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(event(i)).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_err(), "not acknowledged while stalled");
        }
        log.stall(false);
        drop(Arc::try_unwrap(log).ok().unwrap());
        // Drop waits at most `write_timeout`; the writer still drains what was queued.
        let start = Instant::now();
        while verify_file(&path).unwrap().records < 5 {
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            verify_file(&path).unwrap(),
            VerifyReport {
                records: 5,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn works_as_an_audit_sink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink: Arc<dyn AuditSink> = Arc::new(AuditFile::open(path.clone(), opts()));
        sink.record(event(1)).await.unwrap();
        sink.record(event(2)).await.unwrap();
        assert_eq!(
            sink.verify(&Anchors::default()).unwrap(),
            VerifyReport {
                records: 2,
                broken: None,
                first_seq: 1,
                files: 1,
                ..Default::default()
            }
        );
        let newest = &sink.tail(1).unwrap()[0];
        assert_eq!(newest.seq, 2);
        let (seq, hash) = sink.head().expect("a head after two records");
        assert_eq!((seq, hex::encode(hash)), (2, newest.hash.clone()));
    }

    /// The heads anchored through Raft catch what the chain alone cannot: a cut at a record
    /// boundary and a log rewritten (and re-hashed) from some record on.
    #[tokio::test]
    async fn anchors_catch_a_cut_and_a_rewrite_the_chain_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditFile::open(path.clone(), opts());
        let mut heads = vec![];
        for i in 0..6 {
            log.append(event(i)).await.unwrap();
            heads.push(log.head().unwrap());
        }
        drop(log);
        let anchor = |(seq, hash): (u64, [u8; 32])| Anchor { seq, hash, at_ms: 1 };
        let anchors = Anchors {
            heads: vec![anchor(heads[1]), anchor(heads[4])],
            started_over: vec![],
        };
        let r = rotation::verify_anchored(&path, false, &anchors).unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert_eq!((r.anchors_checked, r.anchored_through), (2, 5));

        // Cut after record 4, at a record boundary: the chain verifies, the anchor of 5 does not.
        let bytes = std::fs::read(&path).unwrap();
        let mut cut = Vec::new();
        let mut at = 0;
        for _ in 0..4 {
            let (len, n) = read_varint(&bytes[at..]).unwrap();
            at += n + len as usize;
        }
        cut.extend_from_slice(&bytes[..at]);
        std::fs::write(&path, &cut).unwrap();
        assert!(
            verify_file(&path).unwrap().is_ok(),
            "the chain alone cannot see a clean cut"
        );
        let r = rotation::verify_anchored(&path, false, &anchors).unwrap();
        let b = r.broken.expect("the cut must be caught");
        assert_eq!(b.position, 5);
        assert!(b.problem.contains("cut from its end"), "{}", b.problem);

        // Rewritten from record 3 on, chain re-hashed: every link holds, the anchor of 5 differs.
        std::fs::write(&path, &bytes[..0]).unwrap();
        let forged = AuditFile::open(path.clone(), opts());
        for i in 0..6 {
            forged.append(event(if i < 2 { i } else { 100 + i })).await.unwrap();
        }
        drop(forged);
        assert!(verify_file(&path).unwrap().is_ok());
        let r = rotation::verify_anchored(&path, false, &anchors).unwrap();
        let b = r.broken.expect("the rewrite must be caught");
        assert_eq!((b.position, r.anchors_checked), (5, 1), "{}", b.problem);
        assert!(b.problem.contains("rewritten"), "{}", b.problem);

        // The untouched log, but the cluster saw this node go back below an anchor.
        std::fs::write(&path, &bytes).unwrap();
        let went_back = Anchors {
            started_over: vec![anchor(heads[5])],
            ..anchors
        };
        let b = rotation::verify_anchored(&path, false, &went_back)
            .unwrap()
            .broken
            .unwrap();
        assert!(b.problem.contains("cut, replaced or rewritten"), "{}", b.problem);
    }
}
