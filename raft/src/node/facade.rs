//! [`RaftNode`]: the Raft side of a Coffer node behind one facade, so the rest of Coffer never
//! names openraft. This file holds the node itself: starting it over the given storage,
//! application and connector, and stopping it. Leader-only work is routed in `routing`;
//! writes, reads, status, freshness and membership changes each have a file of their own.

use std::sync::Arc;
use std::time::Duration;

use coffer_kv::Application;
use openraft::async_runtime::watch::WatchReceiver;

use crate::disk_space::DiskSpace;
use crate::error::StartError;
use crate::fence::Fence;
use crate::forward_batch::ForwardBatcher;
use crate::forward_batch::ForwardStats;
use crate::leader_contact::LeaderContact;
use crate::log_store::LogStore;
use crate::network::Connector;
use crate::network::NetworkFactory;
use crate::network::PeerChannels;
use crate::pb;
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
    /// Free space under the data folder, and whether this node is out of disk.
    pub(super) disk: DiskSpace,
    /// A drill's fence: while it stands this node has no peer traffic either way.
    pub(super) fence: Arc<Fence>,
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
        let fence = Arc::new(Fence::default());
        let channels = Arc::new(PeerChannels::new(
            connector,
            settings.peer_addr_override.clone(),
            fence.clone(),
        ));
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
        crate::shredder::spawn(raft.clone(), sm_backend.clone(), shredding, gate);
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
                disk: DiskSpace::new(settings.node_name.clone(), settings.min_free_disk_bytes),
                fence,
            }),
        };
        node.spawn_freshness_probe(Duration::from_millis(settings.heartbeat_ms.max(10)));
        if settings.min_free_disk_bytes > 0 && sm_backend.free_disk_bytes().is_some() {
            node.spawn_disk_watch(sm_backend);
        }
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

    /// A drill's fence on this node (the peer port's guard and the API refuse calls while it
    /// stands; outbound peer calls fail by themselves).
    pub fn fence(&self) -> &Arc<Fence> {
        &self.inner.fence
    }

    /// This node's free space, and whether it is out of disk.
    pub fn disk(&self) -> &DiskSpace {
        &self.inner.disk
    }

    /// Reads the free space under the data folder every [`crate::disk_space::POLL`]; while this
    /// node is out of disk and leads, hands leadership to the most caught-up voter that
    /// answers (at most once a second). Ends when Raft stops.
    fn spawn_disk_watch(&self, backend: Arc<dyn SmBackend>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut last_handoff: Option<tokio::time::Instant> = None;
            let mut warned = false;
            loop {
                tokio::time::sleep(crate::disk_space::POLL).await;
                if node.inner.raft.metrics().borrow_watched().running_state.is_err() {
                    return;
                }
                let free = match backend.free_disk_bytes() {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        if !std::mem::replace(&mut warned, true) {
                            tracing::warn!(error = %e, "cannot read the free space under the data folder");
                        }
                        continue;
                    }
                    None => return,
                };
                match node.inner.disk.observe(free) {
                    crate::disk_space::Change::BecameLow => {
                        tracing::error!("{}", node.inner.disk.refusal().unwrap_or_default());
                    }
                    crate::disk_space::Change::Recovered => {
                        tracing::info!(free_mib = free >> 20, "disk space is back: taking writes again");
                    }
                    crate::disk_space::Change::None => {}
                }
                let recent = last_handoff.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                if node.inner.disk.is_low() && !recent {
                    last_handoff = Some(tokio::time::Instant::now());
                    if let Some(to) = node.handoff_target().await {
                        tracing::warn!(to, "out of disk: handing leadership on");
                        let _ = node.transfer_leader(to).await;
                    }
                }
            }
        });
    }

    /// While leading: of the voters that answered lately, the one that matched the most of the
    /// log and says it has disk space (handing over to a node as full as this one only moves
    /// the refusals around).
    async fn handoff_target(&self) -> Option<NodeId> {
        let s = self.status();
        if s.role != super::state::Role::Leader {
            return None;
        }
        let healthy_ms = 3_000;
        let mut voters: Vec<&pb::NodeInfo> = s
            .voters
            .iter()
            .filter(|v| v.id != s.id)
            .filter(|v| s.acked_ms_ago.get(&v.id).is_some_and(|ms| *ms <= healthy_ms))
            .collect();
        voters.sort_by_key(|v| (std::cmp::Reverse(s.matched.get(&v.id).copied().unwrap_or(0)), v.id));
        for v in voters {
            match self.node_status(v, Duration::from_millis(500)).await {
                Ok(st) if st.out_of_disk.is_empty() => return Some(v.id),
                _ => continue,
            }
        }
        None
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
