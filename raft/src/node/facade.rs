//! [`RaftNode`]: the Raft side of a Coffer node behind one facade, so the rest of Coffer never
//! names openraft. This file holds the node itself: starting it over the given storage,
//! application and connector, and stopping it. Leader-only work is routed in `routing`;
//! writes, reads, status, freshness and membership changes each have a file of their own.

use std::sync::Arc;
use std::time::Duration;

use coffer_kv::Application;

use crate::error::StartError;
use crate::forward_batch::ForwardBatcher;
use crate::forward_batch::ForwardStats;
use crate::leader_contact::LeaderContact;
use crate::log_store::LogStore;
use crate::network::Connector;
use crate::network::NetworkFactory;
use crate::network::PeerChannels;
use crate::read_batch::ReadBatchStats;
use crate::read_batch::ReadIndexBatcher;
use crate::snapshot_schedule::SnapshotSchedule;
use crate::state_machine::Raft;
use crate::state_machine::StateMachineStore;
use crate::state_machine::StateReader;
use crate::storage::LogBackend;
use crate::storage::SmBackend;
use crate::NodeId;

use super::settings::RaftSettings;

#[derive(Clone)]
pub struct RaftNode {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) id: NodeId,
    pub(super) raft: Raft,
    pub(super) reader: StateReader,
    pub(super) channels: Arc<PeerChannels>,
    pub(super) contact: Arc<LeaderContact>,
    pub(super) min_voters: u32,
    pub(super) log: Arc<dyn LogBackend>,
    /// Set once a leader said this node was removed; persisted under [`REMOVED_META_KEY`].
    pub(super) removed: std::sync::atomic::AtomicBool,
    /// Concurrent read-index requests share one round to the leader.
    pub(super) read_batch: ReadIndexBatcher,
    /// Writes forwarded to the leader at about the same time share one call.
    pub(super) forward: ForwardBatcher,
}

/// Log-store metadata key holding the [`pb::RemovedNotice`] of a node removed from the cluster.
pub(super) const REMOVED_META_KEY: &str = "removed";

impl RaftNode {
    pub async fn start(
        id: NodeId,
        settings: &RaftSettings,
        log: Arc<dyn LogBackend>,
        sm: Arc<dyn SmBackend>,
        app: Arc<dyn Application>,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, StartError> {
        let config = Arc::new(settings.to_openraft()?);
        let sm_backend = sm.clone();
        let mut sm = StateMachineStore::new(sm, app)?;
        let shredding = sm.shredding();
        let snapshot_points = sm.schedule_snapshots(SnapshotSchedule::new(id, settings.snapshot_every_entries));
        let reader = sm.reader();
        let channels = Arc::new(PeerChannels::new(connector, settings.peer_addr_override.clone()));
        let network = NetworkFactory {
            self_id: id,
            channels: channels.clone(),
        };
        let removed = log.get_meta(REMOVED_META_KEY).map_err(StartError::Storage)?.is_some();
        let raft = Raft::new(id, config, network, LogStore::new(log.clone()), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if removed {
            // A removed node keeps its data for inspection but takes no part in Raft.
            let _ = raft.shutdown().await;
        }
        // Scheduled snapshot builds and shredding passes take turns (see `SnapshotGate`).
        let gate = crate::shredder::SnapshotGate::default();
        spawn_snapshot_trigger(raft.clone(), snapshot_points, gate.clone(), reader.clone());
        crate::shredder::spawn(raft.clone(), sm_backend, shredding, gate);
        let node = Self {
            inner: Arc::new(Inner {
                id,
                raft,
                reader,
                channels,
                contact: Arc::new(LeaderContact::default()),
                min_voters: settings.min_voters,
                log,
                removed: std::sync::atomic::AtomicBool::new(removed),
                read_batch: ReadIndexBatcher::default(),
                forward: ForwardBatcher::default(),
            }),
        };
        node.spawn_freshness_probe(Duration::from_millis(settings.heartbeat_ms.max(10)));
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn reader(&self) -> &StateReader {
        &self.inner.reader
    }

    pub(crate) fn contact(&self) -> &LeaderContact {
        &self.inner.contact
    }

    /// How many writes this node forwarded to the leader and how many calls carried them.
    pub fn forward_stats(&self) -> ForwardStats {
        self.inner.forward.stats()
    }

    /// How many read indexes this node was asked for and how many rounds to the leader served them.
    pub fn read_batch_stats(&self) -> ReadBatchStats {
        self.inner.read_batch.stats()
    }

    /// Stops Raft. Storage is flushed by its owner afterwards.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }

    /// The underlying openraft handle, for code inside this crate.
    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }
}

/// Asks openraft for a snapshot at each of this node's snapshot points, and waits for it to be
/// built before the next turn of the gate. Ends when the state machine is dropped (the channel
/// closes) or Raft has stopped.
fn spawn_snapshot_trigger(
    raft: Raft,
    mut points: tokio::sync::mpsc::Receiver<()>,
    gate: crate::shredder::SnapshotGate,
    reader: StateReader,
) {
    tokio::spawn(async move {
        while points.recv().await.is_some() {
            let _turn = gate.turn().await;
            let target = reader.applied_index();
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::debug!(error = %e, "snapshot trigger stops: Raft has stopped");
                return;
            }
            crate::shredder::wait_snapshot(&raft, target).await;
        }
    });
}
