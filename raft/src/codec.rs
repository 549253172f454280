//! The one versioned codec between openraft's types and Coffer's protobuf records.
//!
//! Everything openraft hands us that must reach disk or the wire passes through here: log
//! entries, votes, log ids, memberships and snapshot metadata. Records carry a `format` number;
//! a decoder refuses formats it does not know rather than guessing.
//!
//! Decoding never panics on bad input (a corrupt record or a hostile peer): it returns
//! [`CodecError`].

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::EntryPayload;
use prost::Message;

use crate::pb;
use crate::Entry;
use crate::LogId;
use crate::Membership;
use crate::SnapshotMeta;
use crate::StoredMembership;
use crate::Vote;

/// Format of `LogEntry` records written by this version.
pub const LOG_ENTRY_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("corrupt record: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

fn invalid(msg: impl Into<String>) -> CodecError {
    CodecError::Invalid(msg.into())
}

// --- LogId ---------------------------------------------------------------------------------

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(
        LeaderId {
            term: id.term,
            node_id: id.node_id,
        },
        id.index,
    )
}

pub fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

pub fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> Option<LogId> {
    id.map(log_id_from_pb)
}

// --- Vote ----------------------------------------------------------------------------------

pub fn vote_to_pb(v: &Vote) -> pb::Vote {
    pb::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

pub fn vote_from_pb(v: &pb::Vote) -> Vote {
    Vote {
        leader_id: LeaderId {
            term: v.term,
            node_id: v.node_id,
        },
        committed: v.committed,
    }
}

pub fn vote_from_opt_pb(v: Option<&pb::Vote>) -> Result<Vote, CodecError> {
    v.map(vote_from_pb).ok_or_else(|| invalid("missing vote"))
}

// --- Membership ----------------------------------------------------------------------------

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::NodeIdSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m.nodes().map(|(id, n)| (*id, n.clone())).collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<u64>> = m.configs.iter().map(|c| c.ids.iter().copied().collect()).collect();
    let nodes: BTreeMap<u64, pb::NodeInfo> = m.nodes.clone();
    Membership::new(configs, nodes).map_err(|e| invalid(format!("membership: {e}")))
}

pub fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_to_pb(m.log_id().as_ref()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub fn stored_membership_from_pb(m: &pb::StoredMembership) -> Result<StoredMembership, CodecError> {
    let membership = match &m.membership {
        Some(mm) => membership_from_pb(mm)?,
        None => Membership::default(),
    };
    Ok(StoredMembership::new(opt_log_id_from_pb(m.log_id.as_ref()), membership))
}

// --- Entry ---------------------------------------------------------------------------------

pub fn entry_to_pb(e: &Entry) -> pb::LogEntry {
    use pb::log_entry::Payload;
    let payload = match &e.payload {
        EntryPayload::Blank => Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(cmd) => Payload::Command(cmd.clone()),
        EntryPayload::Membership(m) => Payload::Membership(membership_to_pb(m)),
    };
    pb::LogEntry {
        format: LOG_ENTRY_FORMAT,
        log_id: Some(log_id_to_pb(&e.log_id())),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(e: pb::LogEntry) -> Result<Entry, CodecError> {
    use pb::log_entry::Payload;
    if e.format != LOG_ENTRY_FORMAT {
        return Err(invalid(format!("unknown log entry format {}", e.format)));
    }
    let log_id = log_id_from_pb(e.log_id.as_ref().ok_or_else(|| invalid("entry without log id"))?);
    let payload = match e.payload {
        Some(Payload::Blank(_)) => EntryPayload::Blank,
        Some(Payload::Command(c)) => EntryPayload::Normal(c),
        Some(Payload::Membership(m)) => EntryPayload::Membership(membership_from_pb(&m)?),
        None => return Err(invalid("entry without payload")),
    };
    Ok(Entry::new(log_id, payload))
}

pub fn encode_entry(e: &Entry) -> Vec<u8> {
    entry_to_pb(e).encode_to_vec()
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    entry_from_pb(pb::LogEntry::decode(bytes)?)
}

// --- Snapshot meta -------------------------------------------------------------------------

pub fn snapshot_meta_to_pb(m: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: opt_log_id_to_pb(m.last_log_id.as_ref()),
        last_membership: Some(stored_membership_to_pb(&m.last_membership)),
    }
}

pub fn snapshot_meta_from_pb(m: &pb::SnapshotMeta) -> Result<SnapshotMeta, CodecError> {
    let last_membership = match &m.last_membership {
        Some(sm) => stored_membership_from_pb(sm)?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_pb(m.last_log_id.as_ref()),
        last_membership,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> pb::NodeInfo {
        pb::NodeInfo {
            id,
            name: format!("n{id}"),
            region: "us-east".into(),
            zone: "a".into(),
            raft_addr: "127.0.0.1:1".into(),
            api_addr: "127.0.0.1:2".into(),
        }
    }

    #[test]
    fn entries_round_trip() {
        let id = LogId::new(LeaderId { term: 3, node_id: 2 }, 17);
        let m = Membership::new(
            vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])],
            BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]),
        )
        .unwrap();
        let cmd = pb::Command {
            proposed_at_ms: 5,
            principal: "root".into(),
            ..Default::default()
        };
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(cmd),
            EntryPayload::Membership(m),
        ] {
            let e = Entry::new(id, payload);
            let back = decode_entry(&encode_entry(&e)).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn vote_and_meta_round_trip() {
        let v = Vote {
            leader_id: LeaderId { term: 9, node_id: 4 },
            committed: true,
        };
        assert_eq!(vote_from_pb(&vote_to_pb(&v)), v);
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(LeaderId { term: 2, node_id: 1 }, 40)),
            last_membership: StoredMembership::new(
                Some(LogId::new(LeaderId { term: 1, node_id: 1 }, 1)),
                Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, node(1))])).unwrap(),
            ),
        };
        assert_eq!(snapshot_meta_from_pb(&snapshot_meta_to_pb(&meta)).unwrap(), meta);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_entry(&[0xff, 0xff, 0xff]).is_err());
        let unknown = pb::LogEntry {
            format: 99,
            ..Default::default()
        };
        assert!(decode_entry(&unknown.encode_to_vec()).is_err());
        let no_payload = pb::LogEntry {
            format: LOG_ENTRY_FORMAT,
            log_id: Some(pb::LogId::default()),
            payload: None,
        };
        assert!(decode_entry(&no_payload.encode_to_vec()).is_err());
        // A membership whose voter is not among the nodes is rejected, not unwrapped.
        let bad = pb::Membership {
            configs: vec![pb::NodeIdSet { ids: vec![7] }],
            nodes: BTreeMap::new(),
        };
        // openraft fills missing voter nodes with defaults; either way decoding must not panic.
        let _ = membership_from_pb(&bad);
    }
}
