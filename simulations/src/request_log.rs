//! Every request record any node's state machine held, sampled as the run goes.
//!
//! The request table expires records (`cluster.request_retention_ms`), so the harness reads each
//! node's storage every [`SAMPLE_EVERY`] of simulated time and keeps what it finds: for each
//! request id, the record first seen and every different one seen later. A record is written
//! once and never changed (raft `requests`), and the simulation's retention is longer than any
//! retry of its clients, so a second, different record for one id means the command was applied
//! twice. The checkers resolve each operation's effect from here: whether it reached the log,
//! at which index, with which outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer::pb;
use coffer_kv::KvView;
use coffer_model::keys;
use coffer_raft::storage::SmBackend;
use prost::Message;

/// How often the harness reads every node's request table (well under the retention).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// A record as one node held it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub record: pb::RequestRecord,
    pub node: String,
    pub at_us: u64,
}

#[derive(Debug, Default)]
pub struct RequestLog {
    /// request id -> the first record seen.
    first: BTreeMap<String, Seen>,
    /// Records that differ from the first seen for their id.
    pub changed: Vec<(String, Seen, Seen)>,
    /// node -> the queue position read up to.
    cursor: BTreeMap<String, u64>,
}

impl RequestLog {
    /// The first record seen for `request_id`.
    pub fn get(&self, request_id: &str) -> Option<&pb::RequestRecord> {
        self.first.get(request_id).map(|s| &s.record)
    }

    pub fn len(&self) -> usize {
        self.first.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// Records `record` as seen for `request_id` (for checker tests).
    pub fn insert_for_test(&mut self, request_id: &str, record: pb::RequestRecord) {
        let seen = Seen {
            record,
            node: "test".into(),
            at_us: 0,
        };
        self.first.insert(request_id.to_string(), seen);
    }

    /// Reads the records `node` wrote since the last sample (its expiry queue from where the
    /// last sample stopped), and checks them against what was seen before.
    pub fn sample(&mut self, node: &str, sm: &dyn SmBackend, at_us: u64) {
        let view = sm.view();
        let Some(meta) = read::<pb::RequestTableMeta>(&*view, keys::REQUESTS_META) else {
            return;
        };
        let cursor = self.cursor.entry(node.to_string()).or_default();
        // A snapshot install can move a lagging node's queue past the cursor, or (after a crash
        // that lost nothing durable) it can restart behind it: read what is there now.
        let from = (*cursor).max(meta.head).min(meta.tail);
        for seq in from..meta.tail {
            let Some(entry) = read::<pb::RequestQueueEntry>(&*view, &keys::request_queue(seq)) else {
                continue;
            };
            let Some(record) = read::<pb::RequestRecord>(&*view, &keys::request(&entry.request_id)) else {
                continue;
            };
            let rewritten = record.applied_at_ms != entry.applied_at_ms;
            let seen = Seen {
                record,
                node: node.to_string(),
                at_us,
            };
            if rewritten {
                // The queue remembers when the id was first recorded; the record says later:
                // it was written again (both writes fell between two samples).
                let mut first = seen.clone();
                first.record.applied_at_ms = entry.applied_at_ms;
                first.record.result = None;
                self.changed.push((entry.request_id.clone(), first, seen.clone()));
            }
            match self.first.get(&entry.request_id) {
                None => {
                    self.first.insert(entry.request_id, seen);
                }
                Some(first) if first.record != seen.record => {
                    self.changed.push((entry.request_id, first.clone(), seen));
                }
                Some(_) => {}
            }
        }
        *cursor = meta.tail;
    }
}

fn read<M: Message + Default>(view: &dyn KvView, key: &[u8]) -> Option<M> {
    let bytes = view.get(key).ok()??;
    M::decode(&*bytes).ok()
}

#[cfg(test)]
mod tests {
    use coffer_kv::WriteSet;
    use coffer_raft::mem::MemSmBackend;

    use super::*;

    fn record(index: u64, applied_at_ms: u64) -> pb::RequestRecord {
        pb::RequestRecord {
            result: Some(pb::CommandResult {
                log_index: index,
                ..Default::default()
            }),
            principal: "root".into(),
            op: "move_alias".into(),
            target: "acme/a".into(),
            applied_at_ms,
            params_sha256: Vec::new(),
            value_mac: Vec::new(),
        }
    }

    /// Writes `id`'s record at queue position `seq` and moves the queue's tail past it.
    fn write(sm: &MemSmBackend, seq: u64, id: &str, rec: pb::RequestRecord) {
        let mut w = WriteSet::new();
        let entry = pb::RequestQueueEntry {
            request_id: id.into(),
            applied_at_ms: rec.applied_at_ms,
        };
        let meta = pb::RequestTableMeta {
            head: 0,
            tail: seq + 1,
            ..Default::default()
        };
        w.insert(keys::request(id), Some(rec.encode_to_vec()));
        w.insert(keys::request_queue(seq), Some(entry.encode_to_vec()));
        w.insert(keys::REQUESTS_META.to_vec(), Some(meta.encode_to_vec()));
        sm.commit(w).unwrap();
    }

    #[test]
    fn a_record_written_again_is_caught_across_samples_and_nodes() {
        let (a, b) = (MemSmBackend::new(), MemSmBackend::new());
        let mut log = RequestLog::default();
        write(&a, 0, "r1", record(5, 100));
        write(&b, 0, "r1", record(5, 100));
        log.sample("a", &a, 1);
        log.sample("b", &b, 1);
        assert!(log.changed.is_empty(), "the same record on two nodes is one record");
        assert_eq!(log.get("r1").unwrap().result.as_ref().unwrap().log_index, 5);
        // The command applied again later: a new queue entry, the record overwritten.
        write(&a, 1, "r1", record(9, 200));
        log.sample("a", &a, 2);
        assert_eq!(log.changed.len(), 1);
        assert_eq!(log.changed[0].2.record.result.as_ref().unwrap().log_index, 9);
    }

    #[test]
    fn a_record_written_twice_between_two_samples_is_caught_by_its_queue_entry() {
        let sm = MemSmBackend::new();
        let mut log = RequestLog::default();
        write(&sm, 0, "r1", record(5, 100));
        write(&sm, 1, "r1", record(9, 200));
        log.sample("a", &sm, 1);
        assert!(
            !log.changed.is_empty(),
            "queue entry 0 says 100 ms, the record says 200 ms"
        );
    }
}
