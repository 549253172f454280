//! The Raft log store, written once over a [`LogBackend`].
//!
//! Durability contract (openraft `RaftLogStorage`), kept to the letter:
//! - `append`: entries are readable when the call returns; `IOFlushed` is signalled only after
//!   the backend reports them durable (RocksDB: WAL fsynced; group commit may cover several
//!   appends with one fsync).
//! - `save_vote`: the vote is durable before the call returns.
//! - `save_committed`: stored (made durable by the next synced write); it lets a restarted node
//!   re-apply up to the committed index.
//! - `purge`: the last-purged log id is written durably BEFORE any entry is deleted, so a crash
//!   in between leaves entries openraft ignores, never a hole.
//! - `truncate_after`: removes a suffix in one atomic delete, so no hole appears.
//! - All writes are issued in call order on one backend, so no later write overtakes an
//!   earlier one.

use std::fmt::Debug;
use std::io;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use prost::Message;

use crate::codec;
use crate::pb;
use crate::storage::LogBackend;
use crate::Entry;
use crate::LogId;
use crate::TypeConfig;
use crate::Vote;

pub(crate) const META_VOTE: &str = "vote";
const META_COMMITTED: &str = "committed";
pub(crate) const META_LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    backend: Arc<dyn LogBackend>,
}

impl LogStore {
    pub fn new(backend: Arc<dyn LogBackend>) -> Self {
        Self { backend }
    }

    fn read_log_id(&self, key: &str) -> io::Result<Option<LogId>> {
        match self.backend.get_meta(key)? {
            Some(b) => Ok(Some(codec::log_id_from_pb(
                &pb::LogId::decode(&*b).map_err(codec::CodecError::from)?,
            ))),
            None => Ok(None),
        }
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(x) => x.saturating_add(1),
        Bound::Excluded(x) => *x,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        let records = self.backend.range(start, end)?;
        let mut out = Vec::with_capacity(records.len());
        for (index, bytes) in records {
            let entry = codec::decode_entry(&bytes)?;
            if entry.index() != index {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("log record at {index} holds entry {}", entry.index()),
                ));
            }
            if let Some(prev) = out.last().map(|e: &Entry| e.index()) {
                if index != prev + 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("hole in the log between {prev} and {index}"),
                    ));
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        match self.backend.get_meta(META_VOTE)? {
            Some(b) => Ok(Some(codec::vote_from_pb(
                &pb::Vote::decode(&*b).map_err(codec::CodecError::from)?,
            ))),
            None => Ok(None),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = self.read_log_id(META_LAST_PURGED)?;
        let last_in_log = match self.backend.last()? {
            Some((_, bytes)) => Some(codec::decode_entry(&bytes)?.log_id()),
            None => None,
        };
        // Entries at or below last-purged may survive a crash mid-purge; they do not count.
        let last_log_id = match (last_in_log, last_purged_log_id) {
            (Some(l), Some(p)) if l.index <= p.index => Some(p),
            (Some(l), _) => Some(l),
            (None, p) => p,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.backend
            .put_meta_durable(META_VOTE, &codec::vote_to_pb(vote).encode_to_vec())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        match committed {
            Some(c) => self
                .backend
                .put_meta(META_COMMITTED, &codec::log_id_to_pb(&c).encode_to_vec()),
            None => Ok(()),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.read_log_id(META_COMMITTED)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.index(), codec::encode_entry(&e)))
            .collect();
        if !records.is_empty() {
            self.backend.append(records)?;
        }
        self.backend.flush(Box::new(move |r| callback.io_completed(r)));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        self.backend.delete_range(from, u64::MAX)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Last-purged first, durably; only then delete.
        self.backend
            .put_meta_durable(META_LAST_PURGED, &codec::log_id_to_pb(&log_id).encode_to_vec())?;
        self.backend.delete_range(0, log_id.index + 1)
    }
}
