//! The replicated state machine: applies committed entries and builds/installs snapshots.
//!
//! Durability contract (openraft `RaftStateMachine`):
//! - A batch of committed entries is applied in ONE atomic backend write (one RocksDB
//!   `WriteBatch`), together with the last-applied log id and membership. Responses are sent only
//!   after that write, so a client never sees a result that reads cannot see.
//! - The state-machine write is not fsynced on its own: it shares the RocksDB WAL with the log
//!   store, whose durable writes (vote, purge, the next append flush) sync it. Before logs are
//!   purged the purge's synced write has made every earlier apply durable, so a restart never
//!   needs a purged entry. After a crash the state may be behind the log; openraft re-applies
//!   from the last applied id up to the saved committed id.
//! - The key space is the snapshot. A build makes the applied state durable (one WAL sync) and
//!   reports the log id that state holds; nothing is copied. When a peer needs the snapshot,
//!   [`RaftStateMachine::get_current_snapshot`] encodes one consistent view of the key space,
//!   with the meta read from that same view, so meta and pairs always agree. The current
//!   snapshot is therefore the applied state, never older than the last one built or
//!   installed, and the state is on disk once (a snapshot file beside it doubled the bytes on
//!   disk and rewrote the whole state at every build).
//! - A snapshot install replaces the key space atomically and durably; that is all it stores.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::TryStreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use prost::Message;
use tokio::sync::mpsc;
use tokio::sync::watch;

use coffer_kv::Application;
use coffer_kv::KvView;
use coffer_kv::Overlay;

use crate::change_feed::ChangeFeed;
use crate::codec;
use crate::pb;
use crate::shred_signals::ShredEvent;
use crate::shred_signals::Shredding;
use crate::snapshot_schedule::SnapshotSchedule;
use crate::storage::SmBackend;
use crate::LogId;
use crate::SnapshotMeta;
use crate::StoredMembership;
use crate::TypeConfig;

pub const SNAPSHOT_FORMAT: u32 = 1;

/// The state machine's own keys in the key space (the application never writes them): the
/// last applied log id and the last applied membership, written in the same batch as the
/// entries' effects.
pub const LAST_APPLIED_KEY: &[u8] = b"m/last_applied";
pub const MEMBERSHIP_KEY: &[u8] = b"m/membership";

/// A snapshot's encoding (a `SnapshotFile`) as openraft moves it around.
///
/// openraft reads only the meta of a snapshot the state machine just built, and asks
/// [`RaftStateMachine::get_current_snapshot`] for the bytes whenever it sends one; so a build
/// hands back [`SnapshotData::InState`], and the state is encoded only to be sent.
pub enum SnapshotData {
    /// The encoding, in memory: received from a peer, or encoded to be sent to one.
    Bytes(Vec<u8>),
    /// A snapshot this node built: its state machine's own durable key space.
    InState,
}

impl SnapshotData {
    /// The encoding. A built snapshot was never encoded: that is an error, not a panic, in case
    /// an openraft upgrade starts using its bytes.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self {
            SnapshotData::Bytes(b) => Ok(b),
            SnapshotData::InState => Err(io::Error::other(
                "a freshly built snapshot is the state itself; ask for the current snapshot",
            )),
        }
    }
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotData::Bytes(b) => write!(f, "SnapshotData::Bytes({} bytes)", b.len()),
            SnapshotData::InState => f.write_str("SnapshotData::InState"),
        }
    }
}
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// The Raft core over this state machine.
pub type Raft = openraft::Raft<TypeConfig, StateMachineStore>;

/// Read access to the local replica for the API layer: consistent views plus the applied index.
#[derive(Clone)]
pub struct StateReader {
    backend: Arc<dyn SmBackend>,
    app: Arc<dyn Application>,
    applied: watch::Receiver<u64>,
    access_epoch: Arc<AtomicU64>,
    shredding: Shredding,
    feed: ChangeFeed,
}

impl StateReader {
    pub fn view(&self) -> Box<dyn KvView + '_> {
        self.backend.view()
    }

    /// What this state machine applies (and answers forwarded reads with).
    pub fn app(&self) -> &dyn Application {
        &*self.app
    }

    /// Index of the last entry applied to this replica.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// A counter that moves whenever this replica's cluster record, a policy or a token
    /// changed (applied batch or installed snapshot). It moves only after the change is
    /// visible in views, so whatever is read from a view taken after reading epoch `e` is at
    /// least as new as `e`: caches of access data keyed by the epoch are never staler than it.
    pub fn access_epoch(&self) -> u64 {
        self.access_epoch.load(Ordering::Acquire)
    }

    /// Shredding requests made by applies and installs, and how far this node got with them.
    pub fn shredding(&self) -> &Shredding {
        &self.shredding
    }

    /// The recent changes this replica applied, for watchers ([`crate::change_feed`]).
    pub fn changes(&self) -> &ChangeFeed {
        &self.feed
    }

    /// A receiver that changes whenever the applied index moves.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Waits until this replica has applied `index`, up to `timeout`. Returns whether it has.
    pub async fn wait_applied(&self, index: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

pub struct StateMachineStore {
    backend: Arc<dyn SmBackend>,
    app: Arc<dyn Application>,
    applied: Arc<watch::Sender<u64>>,
    access_epoch: Arc<AtomicU64>,
    /// When set, an apply that passes one of this node's snapshot points sends on the channel
    /// (see [`crate::snapshot_schedule`]); the receiver asks openraft to build.
    snapshots: Option<(SnapshotSchedule, mpsc::Sender<()>)>,
    /// Where applies and installs ask for shredding ([`crate::shredder`]).
    shredding: Shredding,
    /// The application's events of recent applies ([`crate::change_feed`]).
    feed: ChangeFeed,
}

impl StateMachineStore {
    pub fn new(backend: Arc<dyn SmBackend>, app: Arc<dyn Application>) -> io::Result<Self> {
        let applied = {
            let view = backend.view();
            applied_index_in(&*view)?
        };
        Ok(Self {
            backend,
            app,
            applied: Arc::new(watch::channel(applied).0),
            access_epoch: Arc::new(AtomicU64::new(0)),
            snapshots: None,
            shredding: Shredding::default(),
            feed: ChangeFeed::new(applied),
        })
    }

    /// Asks for a snapshot on the returned channel whenever an apply passes one of `schedule`'s
    /// points. A request is dropped while the previous one is still queued.
    pub fn schedule_snapshots(&mut self, schedule: SnapshotSchedule) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        self.snapshots = Some((schedule, tx));
        rx
    }

    /// Where this state machine asks for shredding ([`crate::shredder::spawn`] serves it).
    pub fn shredding(&self) -> Shredding {
        self.shredding.clone()
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            backend: self.backend.clone(),
            app: self.app.clone(),
            applied: self.applied.subscribe(),
            access_epoch: self.access_epoch.clone(),
            shredding: self.shredding.clone(),
            feed: self.feed.clone(),
        }
    }

    /// See [`StateReader::access_epoch`]; called after the change is committed.
    fn access_changed(&self) {
        self.access_epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn publish_applied(&self, index: u64) {
        self.applied.send_replace(index);
    }
}

/// The index of the last entry applied to the state `view` shows: exactly the state an answer
/// read from the same view comes from (the index is written in the same batch as its effects).
pub fn applied_index_in(view: &dyn KvView) -> io::Result<u64> {
    Ok(read_applied(view)?.map_or(0, |l| l.index))
}

pub(crate) fn read_applied(view: &dyn KvView) -> io::Result<Option<LogId>> {
    match view.get(LAST_APPLIED_KEY)? {
        Some(b) => Ok(Some(codec::log_id_from_pb(
            &pb::LogId::decode(&*b).map_err(codec::CodecError::from)?,
        ))),
        None => Ok(None),
    }
}

fn read_membership(view: &dyn KvView) -> io::Result<StoredMembership> {
    match view.get(MEMBERSHIP_KEY)? {
        Some(b) => {
            let m = pb::StoredMembership::decode(&*b).map_err(codec::CodecError::from)?;
            Ok(codec::stored_membership_from_pb(&m)?)
        }
        None => Ok(StoredMembership::default()),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let view = self.backend.view();
        Ok((read_applied(&*view)?, read_membership(&*view)?))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Collect first: a read view may not be held across an await point.
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut shreds = Vec::new();
        let mut events = Vec::new();
        let mut last_index = 0;
        let writes = {
            let view = self.backend.view();
            let mut ov = Overlay::new(&*view);
            for (entry, responder) in batch {
                let log_id = entry.log_id();
                last_index = log_id.index;
                let result = match &entry.payload {
                    EntryPayload::Blank => pb::CommandResult {
                        log_index: log_id.index,
                        ..Default::default()
                    },
                    EntryPayload::Normal(cmd) => {
                        let result = self.app.apply(&mut ov, cmd, log_id.index)?;
                        events.extend(self.app.events(&ov, cmd, &result)?);
                        if self.app.shreds(cmd, &result) {
                            shreds.push(ShredEvent::Applied {
                                index: log_id.index,
                                cmd: Arc::new(cmd.clone()),
                                result: Arc::new(result.clone()),
                            });
                        }
                        result
                    }
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembership::new(Some(log_id), m.clone());
                        ov.put(
                            MEMBERSHIP_KEY.to_vec(),
                            codec::stored_membership_to_pb(&stored).encode_to_vec(),
                        );
                        pb::CommandResult {
                            log_index: log_id.index,
                            ..Default::default()
                        }
                    }
                };
                ov.put(LAST_APPLIED_KEY.to_vec(), codec::log_id_to_pb(&log_id).encode_to_vec());
                replies.push((responder, result));
            }
            ov.into_writes()
        };
        let access = writes.keys().any(|k| self.app.is_access_key(k));
        self.backend.commit(writes)?;
        if access {
            self.access_changed();
        }
        let before = *self.applied.borrow();
        // Events before the applied index: a watcher woken by the index finds them.
        self.feed.publish(last_index, events);
        self.publish_applied(last_index);
        // After the commit: the state already lacks what the requests are about.
        for event in shreds {
            self.shredding.request(event);
        }
        if let Some((schedule, tx)) = &self.snapshots {
            if schedule.crosses(before, last_index) {
                let _ = tx.try_send(());
            }
        }
        for (responder, result) in replies {
            if let Some(r) = responder {
                r.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            backend: self.backend.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let bytes = snapshot.into_bytes()?;
        let owned_meta = meta.clone();
        off_worker(&self.backend, move |backend| install(backend, &owned_meta, &bytes)).await?;
        self.access_changed();
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        tracing::info!(index, "installed a snapshot");
        self.feed.reset(index);
        self.publish_applied(index);
        // The replaced state may have held what a destroy removed: shred after installs too.
        self.shredding.request(ShredEvent::Installed { index });
        Ok(())
    }

    /// The applied state, encoded from one view (see the module's doc); `None` before anything
    /// was applied or installed.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let encoded = off_worker(&self.backend, current_snapshot).await?;
        Ok(encoded.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: SnapshotData::Bytes(bytes),
        }))
    }
}

/// Runs `f` on a blocking thread when `backend` waits on disk, and inline otherwise (memory,
/// so a simulation stays on its one deterministic thread). Whole-state work (encoding or
/// installing a snapshot of hundreds of MB) takes seconds; on an async worker it would hold
/// up whatever that worker was to run next: a replication stream, an RPC, the apply loop.
async fn off_worker<T, F>(backend: &Arc<dyn SmBackend>, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn SmBackend) -> io::Result<T> + Send + 'static,
{
    if !backend.waits_on_disk() {
        return f(&**backend);
    }
    let backend = backend.clone();
    tokio::task::spawn_blocking(move || f(&*backend))
        .await
        .map_err(|e| io::Error::other(format!("a snapshot task on the storage thread did not finish: {e}")))?
}

/// The current snapshot of `backend`: the meta and the encoding of one view of its key space
/// (`None` while nothing was applied).
pub(crate) fn current_snapshot(backend: &dyn SmBackend) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let view = backend.view();
    let Some(meta) = view_meta(&*view)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    write_snapshot(&meta, &*view, &mut bytes)?;
    Ok(Some((meta, bytes)))
}

/// The snapshot meta of the state `view` shows (`None` while nothing was applied).
fn view_meta(view: &dyn KvView) -> io::Result<Option<SnapshotMeta>> {
    let Some(last) = read_applied(view)? else {
        return Ok(None);
    };
    Ok(Some(SnapshotMeta {
        last_log_id: Some(last),
        last_membership: read_membership(view)?,
    }))
}

/// Replaces the key space with a received snapshot's, Raft's own keys from `meta`.
pub(crate) fn install(backend: &dyn SmBackend, meta: &SnapshotMeta, bytes: &[u8]) -> io::Result<()> {
    let file = decode_snapshot(bytes)?;
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = file
        .pairs
        .into_iter()
        .filter(|p| p.key != LAST_APPLIED_KEY && p.key != MEMBERSHIP_KEY)
        .map(|p| (p.key, p.value))
        .collect();
    // The meta openraft hands us is authoritative for the Raft bookkeeping keys.
    if let Some(last) = &meta.last_log_id {
        pairs.push((LAST_APPLIED_KEY.to_vec(), codec::log_id_to_pb(last).encode_to_vec()));
    }
    pairs.push((
        MEMBERSHIP_KEY.to_vec(),
        codec::stored_membership_to_pb(&meta.last_membership).encode_to_vec(),
    ));
    pairs.sort();
    backend.replace_all(pairs)
}

/// Builds a snapshot: the applied state, made durable.
pub struct SnapshotBuilder {
    backend: Arc<dyn SmBackend>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    /// Syncs the state to disk and reports the log id it holds: once this returns, openraft
    /// may purge the log through that id, and a restart finds the state there. Nothing is
    /// copied; [`RaftStateMachine::get_current_snapshot`] encodes the state when a peer needs
    /// it. The sync waits on the disk, so it runs [`off_worker`].
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = tokio::time::Instant::now();
        let meta = off_worker(&self.backend, |backend| {
            // The view first: everything it shows was committed before the sync.
            let view = backend.view();
            let meta = view_meta(&*view)?.unwrap_or_default();
            backend.sync()?;
            Ok(meta)
        })
        .await?;
        tracing::info!(
            index = meta.last_log_id.map(|l| l.index).unwrap_or(0),
            took_ms = started.elapsed().as_millis() as u64,
            "built a snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData::InState,
        })
    }
}

/// Extends the snapshot checksum with one pair: both lengths (8 bytes, big endian) and bytes.
fn pair_crc(crc: u32, key: &[u8], value: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(crc, &(key.len() as u64).to_be_bytes());
    let crc = crc32c::crc32c_append(crc, key);
    let crc = crc32c::crc32c_append(crc, &(value.len() as u64).to_be_bytes());
    crc32c::crc32c_append(crc, value)
}

fn pairs_crc(pairs: &[pb::KvPair]) -> u32 {
    pairs.iter().fold(0, |crc, p| pair_crc(crc, &p.key, &p.value))
}

/// Bytes a snapshot write gathers before handing them to the sink.
const WRITE_CHUNK: usize = 256 * 1024;

/// Writes a `SnapshotFile` of `view` to `out` pair by pair, computing the checksum on the way.
/// The fields go out in field-number order (format, meta, every pair, checksum), as prost
/// writes them; the only difference is that an empty key or value is written explicitly where
/// prost would omit it, which decodes the same. The file format is unchanged.
pub fn write_snapshot(meta: &SnapshotMeta, view: &dyn KvView, out: &mut dyn io::Write) -> io::Result<()> {
    use prost::encoding::encode_key;
    use prost::encoding::encode_varint;
    use prost::encoding::encoded_len_varint;
    use prost::encoding::WireType;

    fn bytes_field(tag: u32, b: &[u8], buf: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(b.len() as u64, buf);
        buf.extend_from_slice(b);
    }
    fn bytes_field_len(tag: u32, b: &[u8]) -> usize {
        prost::encoding::key_len(tag) + encoded_len_varint(b.len() as u64) + b.len()
    }

    let mut buf = Vec::with_capacity(WRITE_CHUNK + 4096);
    encode_key(1, WireType::Varint, &mut buf);
    encode_varint(u64::from(SNAPSHOT_FORMAT), &mut buf);
    prost::encoding::message::encode(2, &codec::snapshot_meta_to_pb(meta), &mut buf);
    let mut crc = 0;
    view.for_each(&mut |k, v| {
        crc = pair_crc(crc, k, v);
        encode_key(3, WireType::LengthDelimited, &mut buf);
        encode_varint((bytes_field_len(1, k) + bytes_field_len(2, v)) as u64, &mut buf);
        bytes_field(1, k, &mut buf);
        bytes_field(2, v, &mut buf);
        if buf.len() >= WRITE_CHUNK {
            out.write_all(&buf)?;
            buf.clear();
        }
        Ok(())
    })?;
    encode_key(4, WireType::Varint, &mut buf);
    encode_varint(u64::from(crc), &mut buf);
    out.write_all(&buf)
}

/// Decodes and verifies a snapshot; corrupt or foreign data is an error, never a panic.
pub fn decode_snapshot(bytes: &[u8]) -> io::Result<pb::SnapshotFile> {
    let file = pb::SnapshotFile::decode(bytes).map_err(codec::CodecError::from)?;
    if file.format != SNAPSHOT_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown snapshot format {}", file.format),
        ));
    }
    if pairs_crc(&file.pairs) != file.pairs_crc32c {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "snapshot checksum mismatch"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {

    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;

    /// A state machine over `backend` that applies the secrets model.
    fn store(backend: Arc<dyn SmBackend>) -> StateMachineStore {
        StateMachineStore::new(backend, Arc::new(coffer_model::app::SecretsModel)).unwrap()
    }
    use crate::mem::MemSmBackend;
    use coffer_kv::WriteSet;

    /// A key space with an empty value and values larger than a write chunk, so the streamed
    /// encoding crosses chunk boundaries mid-pair.
    fn sample_writes() -> WriteSet {
        let mut w = WriteSet::new();
        w.insert(
            LAST_APPLIED_KEY.to_vec(),
            Some(codec::log_id_to_pb(&LogId::new(LeaderId { term: 3, node_id: 1 }, 42)).encode_to_vec()),
        );
        w.insert(b"a/empty".to_vec(), Some(Vec::new()));
        for i in 0..40u32 {
            let len = if i % 10 == 9 {
                WRITE_CHUNK + 17
            } else {
                100 + i as usize
            };
            w.insert(format!("s/t/key-{i:03}").into_bytes(), Some(vec![i as u8; len]));
        }
        w
    }

    fn expected_pairs(w: &WriteSet) -> Vec<pb::KvPair> {
        w.iter()
            .map(|(k, v)| pb::KvPair {
                key: k.clone(),
                value: v.clone().unwrap_or_default(),
            })
            .collect()
    }

    #[test]
    fn a_streamed_snapshot_decodes_to_every_pair_in_order_and_checks_its_checksum() {
        let backend = MemSmBackend::new();
        let writes = sample_writes();
        backend.commit(writes.clone()).unwrap();
        let meta = SnapshotMeta::default();
        let mut bytes = Vec::new();
        write_snapshot(&meta, &*backend.view(), &mut bytes).unwrap();

        let file = decode_snapshot(&bytes).unwrap();
        assert_eq!(file.format, SNAPSHOT_FORMAT);
        assert_eq!(file.meta, Some(codec::snapshot_meta_to_pb(&meta)));
        assert_eq!(file.pairs, expected_pairs(&writes));
        // The same message prost would encode.
        let prost_encoded = pb::SnapshotFile {
            format: SNAPSHOT_FORMAT,
            meta: Some(codec::snapshot_meta_to_pb(&meta)),
            pairs_crc32c: pairs_crc(&file.pairs),
            pairs: file.pairs.clone(),
        };
        assert_eq!(file, prost_encoded);

        // One flipped byte inside a value: refused, never installed.
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        assert!(decode_snapshot(&bytes).is_err());
    }

    #[tokio::test]
    async fn applies_that_pass_a_snapshot_point_ask_for_a_snapshot() {
        let mut store = store(Arc::new(MemSmBackend::new()));
        let schedule = SnapshotSchedule::new(3, 10);
        let mut asks = store.schedule_snapshots(schedule);
        let mut asked_at = Vec::new();
        for index in 1..=35u64 {
            let entry = crate::Entry::new_blank(LogId::new(LeaderId { term: 1, node_id: 1 }, index));
            store.apply(futures::stream::iter([Ok((entry, None))])).await.unwrap();
            if asks.try_recv().is_ok() {
                asked_at.push(index);
            }
        }
        let expected: Vec<u64> = (1..=35u64).filter(|i| schedule.crosses(i - 1, *i)).collect();
        assert_eq!(asked_at, expected);
        assert_eq!(
            asked_at,
            vec![2, 12, 22, 32],
            "one ask per 10 entries, at node 3's phase"
        );
    }

    /// A backend that waits on disk: its full scan tells the test it has started, then blocks
    /// its thread until the test lets it go (an error after 10 s). Like a RocksDB snapshot, a
    /// view is a copy: later writes neither change it nor wait for it.
    struct SlowDisk {
        inner: MemSmBackend,
        scanning: tokio::sync::Notify,
        gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    struct SlowView<'a> {
        copy: MemSmBackend,
        disk: &'a SlowDisk,
    }

    impl KvView for SlowView<'_> {
        fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
            self.copy.view().get(key)
        }
        fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
            self.copy.view().scan(prefix, start, limit)
        }
        fn for_each(&self, f: &mut coffer_kv::PairVisitor<'_>) -> io::Result<()> {
            self.disk.scanning.notify_one();
            let gate = self.disk.gate.lock().unwrap();
            gate.recv_timeout(std::time::Duration::from_secs(10))
                .map_err(|_| io::Error::other("the test never let the scan go on"))?;
            self.copy.view().for_each(f)
        }
        fn scan_each(
            &self,
            prefix: &[u8],
            start: &[u8],
            limit: usize,
            f: &mut coffer_kv::PairVisitor<'_>,
        ) -> io::Result<usize> {
            self.copy.view().scan_each(prefix, start, limit, f)
        }
    }

    impl SmBackend for SlowDisk {
        fn view(&self) -> Box<dyn KvView + '_> {
            let mut pairs = WriteSet::new();
            self.inner
                .view()
                .for_each(&mut |k, v| {
                    pairs.insert(k.to_vec(), Some(v.to_vec()));
                    Ok(())
                })
                .unwrap();
            let copy = MemSmBackend::new();
            copy.commit(pairs).unwrap();
            Box::new(SlowView { copy, disk: self })
        }
        fn commit(&self, writes: WriteSet) -> io::Result<()> {
            self.inner.commit(writes)
        }
        fn replace_all(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
            self.inner.replace_all(pairs)
        }
        fn waits_on_disk(&self) -> bool {
            true
        }
    }

    /// On a runtime with one worker, the test's own task runs while the encoding of the
    /// current snapshot is stuck in the middle of its scan: it waits on a blocking thread, not
    /// on the worker. Encoded inline, it would hold the worker until its scan gave up, and
    /// finish first.
    #[tokio::test]
    async fn encoding_the_current_snapshot_waits_on_the_disk_without_holding_an_async_worker() {
        let (release, gate) = std::sync::mpsc::channel();
        let disk = Arc::new(SlowDisk {
            inner: MemSmBackend::new(),
            scanning: tokio::sync::Notify::new(),
            gate: std::sync::Mutex::new(gate),
        });
        let writes = sample_writes();
        disk.commit(writes.clone()).unwrap();
        let mut store = store(disk.clone());
        let current = tokio::spawn(async move { store.get_current_snapshot().await });

        disk.scanning.notified().await;
        assert!(
            !current.is_finished(),
            "the worker ran this task only after the encoding was over"
        );
        release.send(()).unwrap();
        let current = current.await.unwrap().unwrap().expect("a current snapshot");
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(42));
        let file = decode_snapshot(&current.snapshot.into_bytes().unwrap()).unwrap();
        assert_eq!(file.pairs, expected_pairs(&writes));
    }

    fn applied_at(index: u64) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            LAST_APPLIED_KEY.to_vec(),
            Some(codec::log_id_to_pb(&LogId::new(LeaderId { term: 3, node_id: 1 }, index)).encode_to_vec()),
        )
    }

    /// The current snapshot is the applied state, meta and pairs from one view: after a build it
    /// is the built one, after more applies the newer state, after an install the installed one
    /// (and nothing the replaced state held).
    #[tokio::test]
    async fn the_current_snapshot_is_the_applied_state_and_an_install_replaces_it() {
        let backend = Arc::new(MemSmBackend::new());
        let mut store = store(backend.clone());
        assert!(
            store.get_current_snapshot().await.unwrap().is_none(),
            "nothing applied yet"
        );
        backend.commit(sample_writes()).unwrap();

        let built = store.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(42));
        assert!(built.snapshot.into_bytes().is_err(), "a build copies nothing");
        let current = store.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);

        let mut later = WriteSet::from([applied_at(43)]);
        later.insert(b"s/t/applied-after-the-build".to_vec(), Some(b"fake".to_vec()));
        backend.commit(later).unwrap();
        let current = store.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(43));
        let file = decode_snapshot(&current.snapshot.into_bytes().unwrap()).unwrap();
        assert_eq!(file.meta, Some(codec::snapshot_meta_to_pb(&current.meta)));
        assert!(file.pairs.iter().any(|p| p.key == b"s/t/applied-after-the-build"));

        // A newer snapshot from the leader, with a pair of its own.
        let newer_meta = SnapshotMeta {
            last_log_id: Some(LogId::new(LeaderId { term: 4, node_id: 2 }, 50)),
            last_membership: StoredMembership::default(),
        };
        let newer = {
            let leader = MemSmBackend::new();
            let mut w = sample_writes();
            w.insert(b"s/t/only-in-the-newer".to_vec(), Some(b"fake".to_vec()));
            leader.commit(w).unwrap();
            let mut bytes = Vec::new();
            write_snapshot(&newer_meta, &*leader.view(), &mut bytes).unwrap();
            bytes
        };
        store
            .install_snapshot(&newer_meta, SnapshotData::Bytes(newer))
            .await
            .unwrap();
        let current = store.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, newer_meta);
        let file = decode_snapshot(&current.snapshot.into_bytes().unwrap()).unwrap();
        assert!(file.pairs.iter().any(|p| p.key == b"s/t/only-in-the-newer"));
        assert!(!file.pairs.iter().any(|p| p.key == b"s/t/applied-after-the-build"));
        assert_eq!(store.reader().applied_index(), 50);
    }

    /// On RocksDB the snapshot is the `sm` column family, nothing else: the data folder holds
    /// the database only (an earlier version's snapshot folder is removed at open), and the
    /// built state is there after a reopen.
    #[tokio::test]
    async fn a_built_snapshot_is_the_state_on_disk_and_no_copy_of_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
        std::fs::write(dir.path().join("snapshots/current.snap"), b"an earlier version's copy").unwrap();
        let writes = sample_writes();
        let built = {
            let (_log, sm) = crate::rocks::open(dir.path()).unwrap();
            let backend: Arc<dyn SmBackend> = Arc::new(sm);
            backend.commit(writes.clone()).unwrap();
            let mut store = store(backend);
            store.get_snapshot_builder().await.build_snapshot().await.unwrap()
        };
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(42));
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("db")]);

        let (_log, sm) = crate::rocks::open(dir.path()).unwrap();
        let mut store = store(Arc::new(sm));
        let current = store.get_current_snapshot().await.unwrap().expect("a current snapshot");
        assert_eq!(current.meta, built.meta);
        let file = decode_snapshot(&current.snapshot.into_bytes().unwrap()).unwrap();
        assert_eq!(file.pairs, expected_pairs(&writes));
    }

    /// The request table lives in the state machine's key space, so a snapshot carries it: a
    /// node that caught up by snapshot install answers a retry of a request it never applied
    /// itself with the first outcome and index, instead of applying it again.
    #[tokio::test]
    async fn a_snapshot_carries_the_request_table_to_the_node_that_installs_it() {
        let cmd = |request_id: &str, op: pb::command::Op| pb::Command {
            proposed_at_ms: 1_000,
            principal: "root".into(),
            request_id: request_id.into(),
            op: Some(op),
        };
        let bootstrap = cmd(
            "",
            pb::command::Op::Bootstrap(pb::Bootstrap {
                cluster: Some(pb::ClusterInfo {
                    cluster_id: "test".into(),
                    root_token_sha256: vec![0; 32],
                    ..Default::default()
                }),
                request_retention_ms: 0,
            }),
        );
        let put = cmd(
            "r-1",
            pb::command::Op::AddVersion(pb::AddVersion {
                name: "acme/s0".into(),
                version: 1,
                envelope: Some(pb::Envelope {
                    format: 1,
                    nonce: vec![1; 12],
                    ciphertext: vec![2; 20],
                    wrapped_keys: vec![pb::WrappedKey {
                        region: "r".into(),
                        ..Default::default()
                    }],
                }),
                size: 4,
                alias: "CURRENT".into(),
                create_if_missing: Some(pb::SecretSpec::default()),
                ..Default::default()
            }),
        );
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_log_a, sm_a) = crate::rocks::open(dir_a.path()).unwrap();
        let mut a = store(Arc::new(sm_a));
        for (index, c) in [(1, bootstrap), (2, put.clone())] {
            let entry = crate::Entry::new(
                LogId::new(LeaderId { term: 1, node_id: 1 }, index),
                EntryPayload::Normal(c),
            );
            a.apply(futures::stream::iter([Ok((entry, None))])).await.unwrap();
        }
        a.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let snapshot = a.get_current_snapshot().await.unwrap().expect("a snapshot");

        let (_log_b, sm_b) = crate::rocks::open(dir_b.path()).unwrap();
        let backend_b: Arc<dyn SmBackend> = Arc::new(sm_b);
        let mut b = store(backend_b.clone());
        b.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        let view = backend_b.view();
        let mut ov = Overlay::new(&*view);
        let retry = coffer_model::apply::apply(&mut ov, &put, 3).unwrap();
        assert!(retry.replayed, "answered from the installed table");
        assert_eq!(retry.log_index, 2, "with the index where node A applied it");
        let ok = match retry.outcome {
            Some(pb::command_result::Outcome::Ok(ok)) => ok,
            other => panic!("{other:?}"),
        };
        assert_eq!(ok.version, 1);
    }
}
