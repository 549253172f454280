//! Shredding: when the application says an applied command made bytes unreachable that must
//! not outlive it ([`coffer_kv::Application::shreds`], a destroyed version), this node rewrites
//! its storage without them, within a bound: a snapshot that includes the command, the log
//! purged through it (the entries that carried the bytes), then the storage files themselves
//! rewritten ([`SmBackend::shred`]: memtables flushed, the log and state compacted, obsolete
//! WAL and SST files removed). An installed snapshot asks for the same, since the state it
//! replaced may have held such bytes.
//!
//! Requests are coalesced: one pass covers every request up to the index it started for.
//! [`Shredding::through`] says how far the passes got, for status and tests; the state machine
//! also tells the layers above ([`crate::shred_signals::ShredEvent`]), so they drop what they
//! cache (data keys).

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;

use crate::shred_signals::Shredding;
use crate::state_machine::Raft;
use crate::storage::SmBackend;

/// How long one step (a snapshot, a purge) may take before the pass starts over.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Snapshot builds and shredding passes take turns. A pass asks openraft to purge the log
/// through its snapshot; openraft may carry that purge out later (while a replication stream
/// still reads those entries), and a snapshot built meanwhile would schedule its own purge
/// below the pending one, which openraft asserts never happens. So every snapshot this node
/// asks for is built within a turn, and a pass keeps its turn until its purge is done.
#[derive(Clone, Default)]
pub(crate) struct SnapshotGate(Arc<tokio::sync::Mutex<()>>);

impl SnapshotGate {
    pub(crate) async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// Waits (within [`STEP_TIMEOUT`]) until this node's snapshot includes `index`.
pub(crate) async fn wait_snapshot(raft: &Raft, index: u64) {
    let _ = wait(
        raft,
        |m| m.snapshot.map_or(0, |l| l.index) >= index,
        "a scheduled snapshot",
    )
    .await;
}

/// Runs shredding passes on this node until Raft stops.
pub(crate) fn spawn(raft: Raft, backend: Arc<dyn SmBackend>, shredding: Shredding, gate: SnapshotGate) {
    tokio::spawn(async move {
        let mut requests = shredding.requested.subscribe();
        loop {
            let want = *requests.borrow_and_update();
            if want > shredding.through() {
                match pass(&raft, &backend, want, &gate).await {
                    Ok(()) => {
                        shredding.done.send_replace(want);
                        tracing::info!(index = want, "storage shredded: destroyed data is gone from every file");
                        continue;
                    }
                    Err(Stop::Raft) => return,
                    Err(Stop::Retry(why)) => {
                        tracing::warn!(index = want, "shredding pass did not finish ({why}); retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            if requests.changed().await.is_err() {
                return;
            }
        }
    });
}

enum Stop {
    /// Raft has stopped: so does shredding.
    Raft,
    /// A step failed or timed out: start over.
    Retry(String),
}

/// One pass: a snapshot through `want`, the log purged through it (both within one turn of the
/// gate), the files rewritten.
async fn pass(raft: &Raft, backend: &Arc<dyn SmBackend>, want: u64, gate: &SnapshotGate) -> Result<(), Stop> {
    let turn = gate.turn().await;
    let snapshot_at = |m: &openraft::RaftMetrics<crate::TypeConfig>| m.snapshot.map_or(0, |l| l.index);
    if snapshot_at(&raft.metrics().borrow_watched()) < want {
        raft.trigger().snapshot().await.map_err(|_| Stop::Raft)?;
        wait(raft, |m| snapshot_at(m) >= want, "a snapshot through the destroy").await?;
    }
    if coffer_kv::bugs::active(coffer_kv::bugs::Bug::ShredSkipsPurge) {
        return Ok(());
    }
    // Purge through `want`, not through the snapshot: the pass then waits for exactly what it
    // asked, so no purge of ours is pending when the turn ends (an earlier purge may already
    // have passed `want` while a purge through the snapshot still waited on a replication
    // stream). Keep the turn until it is done, however long a stream holds it up: a snapshot
    // built while it is pending would break openraft's purge order.
    loop {
        raft.trigger().purge_log(want).await.map_err(|_| Stop::Raft)?;
        match wait(
            raft,
            |m| m.purged.map_or(0, |l| l.index) >= want,
            "the log purged through the destroy",
        )
        .await
        {
            Ok(()) => break,
            Err(Stop::Raft) => return Err(Stop::Raft),
            Err(Stop::Retry(why)) => tracing::info!(index = want, "shredding waits for the log purge: {why}"),
        }
    }
    drop(turn);
    // Rewriting files takes seconds on disk: off the async workers (inline in memory, so a
    // simulation stays on its one thread).
    let result = if backend.waits_on_disk() {
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || backend.shred())
            .await
            .map_err(|e| Stop::Retry(e.to_string()))?
    } else {
        backend.shred()
    };
    result.map_err(|e| Stop::Retry(format!("rewriting the storage files: {e}")))
}

async fn wait(
    raft: &Raft,
    done: impl Fn(&openraft::RaftMetrics<crate::TypeConfig>) -> bool + Send,
    what: &str,
) -> Result<(), Stop> {
    match raft.wait(Some(STEP_TIMEOUT)).metrics(done, what).await {
        Ok(_) => Ok(()),
        Err(openraft::metrics::WaitError::ShuttingDown) => Err(Stop::Raft),
        Err(e) => Err(Stop::Retry(e.to_string())),
    }
}
