//! The state machine's key space out of a running node and into an empty one: what backups
//! (`coffer snapshot save|restore`, the service layer's file format) are made of.
//!
//! Out: [`applied`] says which entry one consistent view holds, [`for_each_pair`] visits its
//! application pairs. Raft's own bookkeeping (the applied log id, the membership) is not
//! exported: a restored cluster has its own members.
//!
//! In: [`seed`] turns empty storage into a node that holds the pairs as a snapshot at the
//! backup's applied log id, with a new membership, as if it had installed that snapshot from a
//! leader: the state written, the log purged through that id (durable before the
//! state, per the purge rule), and a vote of that id's term so the node's next election is at a
//! later term than any entry it holds. The other members start empty and receive the snapshot
//! from the leader like any new member.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io;

use prost::Message;

use crate::codec;
use crate::pb;
use crate::state_machine::install;
use crate::state_machine::read_applied;
use crate::state_machine::LAST_APPLIED_KEY;
use crate::state_machine::MEMBERSHIP_KEY;
use crate::storage::LogBackend;
use crate::storage::SmBackend;
use crate::LogId;
use crate::Membership;
use crate::NodeId;
use crate::SnapshotMeta;
use crate::StoredMembership;
use crate::Vote;

/// Whether a key is Raft's own, never part of a backup.
pub fn is_raft_key(key: &[u8]) -> bool {
    key == LAST_APPLIED_KEY || key == MEMBERSHIP_KEY
}

/// The log id of the last entry applied to `view` (`None`: nothing applied yet).
pub fn applied(view: &dyn coffer_kv::KvView) -> io::Result<Option<pb::LogId>> {
    Ok(read_applied(view)?.as_ref().map(codec::log_id_to_pb))
}

/// Visits every application pair of `view` in key order (Raft's own keys left out).
pub fn for_each_pair(view: &dyn coffer_kv::KvView, each: &mut coffer_kv::PairVisitor<'_>) -> io::Result<()> {
    view.for_each(&mut |k, v| if is_raft_key(k) { Ok(()) } else { each(k, v) })
}

/// Whether storage holds nothing: no vote, no log, no state.
pub fn is_empty(log: &dyn LogBackend, sm: &dyn SmBackend) -> io::Result<bool> {
    let mut any_state = false;
    sm.view().scan_each(b"", b"", 1, &mut |_, _| {
        any_state = true;
        Ok(())
    })?;
    Ok(!any_state && log.last()?.is_none() && log.get_meta(crate::log_store::META_VOTE)?.is_none())
}

/// Seeds empty storage with `pairs` (application keys, sorted or not) applied through
/// `applied`, and `members` as the voters. Refuses storage that is not empty, Raft keys among
/// the pairs, and an applied index of 0.
pub fn seed(
    log: &dyn LogBackend,
    sm: &dyn SmBackend,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    applied: &pb::LogId,
    members: Vec<pb::NodeInfo>,
) -> io::Result<()> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    if !is_empty(log, sm)? {
        return Err(invalid("the storage is not empty".into()));
    }
    if applied.index == 0 {
        return Err(invalid("a backup of nothing applied cannot be restored".into()));
    }
    if members.is_empty() {
        return Err(invalid("a restored cluster needs at least one member".into()));
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| is_raft_key(k)) {
        return Err(invalid(format!(
            "the backup holds Raft's own key {:?}",
            String::from_utf8_lossy(k)
        )));
    }
    let last: LogId = codec::log_id_from_pb(applied);
    let voters: BTreeSet<NodeId> = members.iter().map(|n| n.id).collect();
    let nodes: BTreeMap<NodeId, pb::NodeInfo> = members.into_iter().map(|n| (n.id, n)).collect();
    let membership = Membership::new(vec![voters], nodes).map_err(|e| invalid(format!("membership: {e}")))?;
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), membership),
    };

    // The snapshot a leader would send, made from the pairs.
    let view: BTreeMap<Vec<u8>, Vec<u8>> = pairs.into_iter().collect();
    let mut bytes = Vec::new();
    crate::state_machine::write_snapshot(&meta, &view, &mut bytes)?;
    drop(view);

    // Purge rule: the log is purged through `last` durably before the state says it applied it.
    log.put_meta_durable(
        crate::log_store::META_LAST_PURGED,
        &codec::log_id_to_pb(&last).encode_to_vec(),
    )?;
    let vote = Vote::new(last.leader_id.term, last.leader_id.node_id);
    log.put_meta_durable(crate::log_store::META_VOTE, &codec::vote_to_pb(&vote).encode_to_vec())?;
    // Then installed as a follower installs a leader's snapshot: verified, the state replaced,
    // Raft's keys from the meta (the state is the node's snapshot from then on).
    install(sm, &meta, &bytes)?;
    sm.flush_at_shutdown()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemLogBackend;
    use crate::mem::MemSmBackend;

    fn node(id: u64) -> pb::NodeInfo {
        pb::NodeInfo {
            id,
            name: format!("n{id}"),
            ..Default::default()
        }
    }

    fn applied() -> pb::LogId {
        pb::LogId {
            term: 7,
            node_id: 2,
            index: 120,
        }
    }

    fn pairs() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(b"s/b".to_vec(), b"2".to_vec()), (b"s/a".to_vec(), b"1".to_vec())]
    }

    #[test]
    fn seeded_storage_holds_the_pairs_as_a_snapshot_at_the_applied_id_with_the_new_members() {
        let (log, sm) = (MemLogBackend::new(), MemSmBackend::new());
        assert!(is_empty(&log, &sm).unwrap());
        seed(&log, &sm, pairs(), &applied(), vec![node(1), node(2), node(3)]).unwrap();
        let view = sm.view();
        assert_eq!(super::applied(&*view).unwrap(), Some(applied()));
        let mut seen = Vec::new();
        for_each_pair(&*view, &mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        let mut want = pairs();
        want.sort();
        assert_eq!(seen, want, "the application pairs, in key order, and no Raft key");
        // The snapshot the node would send: the applied id, the new members, the pairs.
        let (meta, bytes) = crate::state_machine::current_snapshot(&sm).unwrap().unwrap();
        let file = crate::state_machine::decode_snapshot(&bytes).unwrap();
        assert_eq!(file.meta, Some(codec::snapshot_meta_to_pb(&meta)));
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(120));
        assert_eq!(
            meta.last_membership.membership().voter_ids().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let app_pairs: Vec<_> = file.pairs.iter().filter(|p| !is_raft_key(&p.key)).collect();
        assert_eq!(app_pairs.len(), 2);
        // Purged through the applied id; the vote is of its term, so elections go above it.
        let purged = pb::LogId::decode(&*log.get_meta(crate::log_store::META_LAST_PURGED).unwrap().unwrap()).unwrap();
        assert_eq!(purged, applied());
        let vote = pb::Vote::decode(&*log.get_meta(crate::log_store::META_VOTE).unwrap().unwrap()).unwrap();
        assert_eq!((vote.term, vote.committed), (7, false));
        // Once seeded, never again.
        let e = seed(&log, &sm, pairs(), &applied(), vec![node(1)]).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
    }

    #[test]
    fn raft_keys_an_empty_backup_and_no_members_are_refused_before_anything_is_written() {
        let (log, sm) = (MemLogBackend::new(), MemSmBackend::new());
        let mut with_raft_key = pairs();
        with_raft_key.push((MEMBERSHIP_KEY.to_vec(), vec![]));
        for (p, a, m, what) in [
            (with_raft_key, applied(), vec![node(1)], "Raft's own key"),
            (pairs(), pb::LogId::default(), vec![node(1)], "nothing applied"),
            (pairs(), applied(), vec![], "at least one member"),
        ] {
            let e = seed(&log, &sm, p, &a, m).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
            assert!(is_empty(&log, &sm).unwrap(), "{what}: nothing written");
        }
    }
}
