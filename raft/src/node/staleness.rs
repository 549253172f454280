//! The staleness bound of this replica: freshness proofs a follower gathers from the leader
//! (a read index every heartbeat period), and the proof a leader has of its own commit.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use tokio::time::Instant;

use crate::leader_contact::LeaderContact;

use super::facade::*;
use super::state::*;

impl RaftNode {
    /// On a follower or learner, asks the leader for a read index every `every`, timed on this
    /// node's clock: the proofs behind its staleness bound (see [`LeaderContact`]). Stops when
    /// the node is dropped, shut down or removed.
    pub(super) fn spawn_freshness_probe(&self, every: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let timeout = (every * 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let node = RaftNode { inner };
                match node.role_and_membership() {
                    (Role::Shutdown, _) | (_, MemberState::Removed) => return,
                    (Role::Leader, _) | (_, MemberState::NotJoined) => continue,
                    _ => {}
                }
                let sent = Instant::now();
                if let Ok(index) = node.read_index(timeout).await {
                    let applied = node.inner.reader.applied_index();
                    node.inner.contact.confirmed(index, sent, applied);
                }
            }
        });
    }

    /// Upper bound, in ms, on how stale this replica may be; never zero.
    ///
    /// Every bound comes from a freshness proof in [`LeaderContact`]: "every entry the cluster
    /// had committed at instant t is at or below index i", which holds for this replica once it
    /// has applied i. A follower gets its proofs from read-index probes; a leader also proves
    /// its own freshness from its commit index (see [`leader_proof`]) each time it is asked.
    pub fn staleness_bound_ms(&self) -> u64 {
        let applied = self.inner.reader.applied_index();
        let proof = {
            let rx = self.inner.raft.metrics();
            let m = rx.borrow_watched();
            let lease = self.inner.raft.config().election_timeout_min;
            (m.state == ServerState::Leader)
                .then(|| leader_proof(m.current_term, m.local_committed.as_ref(), quorum_ack_age_ms(&m), lease))
                .flatten()
        };
        staleness_with(&self.inner.contact, proof, applied)
    }
}

/// What a leader knows of the cluster's commit, as a freshness proof for [`LeaderContact`]:
/// `(index, ms_ago)` means every entry the cluster had committed `ms_ago` ms ago is at or below
/// `index`.
///
/// Raft's rule: a new leader does not know what is committed until an entry of its own term is.
/// Until then its commit index may be behind what the previous leader committed (and answered
/// clients for), so it proves nothing (`None`) and the node reports what its proofs as a
/// follower say. Once one is: within the lease (a quorum acknowledged it less than `lease_ms`
/// ago, so no other leader can exist yet), its commit index holds now; past the lease, as of
/// that acknowledgement.
pub(super) fn leader_proof(
    current_term: u64,
    local_committed: Option<&crate::LogId>,
    quorum_ack_age_ms: Option<u64>,
    lease_ms: u64,
) -> Option<(u64, u64)> {
    let committed = local_committed?;
    if committed.leader_id.term != current_term {
        return None;
    }
    let ago = quorum_ack_age_ms?;
    Some((committed.index, if ago < lease_ms { 0 } else { ago }))
}

/// The bound of a replica that has applied `applied`: `contact`'s, after adding the leader's
/// own proof when it has one.
pub(super) fn staleness_with(contact: &LeaderContact, leader_proof: Option<(u64, u64)>, applied: u64) -> u64 {
    if let Some((index, ago_ms)) = leader_proof {
        if let Some(as_of) = Instant::now().checked_sub(Duration::from_millis(ago_ms)) {
            contact.confirmed(index, as_of, applied);
        }
    }
    contact.staleness_bound_ms(applied)
}

/// Milliseconds since a quorum last acknowledged this leader.
pub(super) fn quorum_ack_age_ms(m: &crate::RaftMetrics) -> Option<u64> {
    m.last_quorum_acked
        .as_ref()
        .map(|t| openraft::Instant::elapsed(&**t).as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;

    fn log_id(term: u64, index: u64) -> crate::LogId {
        crate::LogId::new(LeaderId { term, node_id: 3 }, index)
    }

    #[test]
    fn a_leader_proves_its_commit_only_once_an_entry_of_its_term_is_committed() {
        // Just elected in term 3, it knows of the term-2 commit (2, 20) only.
        assert_eq!(leader_proof(3, Some(&log_id(2, 20)), Some(100), 1000), None);
        assert_eq!(leader_proof(3, None, Some(100), 1000), None);
        // Its blank entry is committed: within the lease the commit holds now; past it, as of
        // the last quorum acknowledgement; with none, nothing.
        assert_eq!(leader_proof(3, Some(&log_id(3, 23)), Some(100), 1000), Some((23, 0)));
        assert_eq!(
            leader_proof(3, Some(&log_id(3, 23)), Some(1500), 1000),
            Some((23, 1500))
        );
        assert_eq!(leader_proof(3, Some(&log_id(3, 23)), None, 1000), None);
    }

    /// Seed 297 of the simulations: n3 was last proven fresh as a follower 6.4 s ago (index 20),
    /// then won term 3 while the term-2 leader had committed and acknowledged index 21. Until its
    /// own blank entry (23) commits, it must not answer "1 ms".
    #[tokio::test(start_paused = true)]
    async fn a_new_leader_reports_its_follower_bound_until_its_term_commits() {
        let contact = LeaderContact::default();
        tokio::time::advance(Duration::from_millis(500)).await;
        contact.confirmed(20, Instant::now(), 20);
        tokio::time::advance(Duration::from_millis(6_400)).await;
        let proof = leader_proof(3, Some(&log_id(2, 20)), Some(100), 1000);
        assert_eq!(staleness_with(&contact, proof, 20), 6_400);
        // Its term's entry committed but not yet applied here: still the old proof.
        let proof = leader_proof(3, Some(&log_id(3, 23)), Some(100), 1000);
        assert_eq!(staleness_with(&contact, proof, 22), 6_400);
        // Applied: fresh now.
        assert_eq!(staleness_with(&contact, proof, 23), 1);
        // Past its lease, as of the last quorum acknowledgement (and never younger than a
        // proof it already has).
        tokio::time::advance(Duration::from_millis(3_000)).await;
        let proof = leader_proof(3, Some(&log_id(3, 23)), Some(1_500), 1000);
        assert_eq!(staleness_with(&contact, proof, 23), 1_500);
    }
}
