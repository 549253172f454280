//! Coalesces concurrent read-index requests on one node into one round to the leader.
//!
//! A linearizable read needs a read index obtained *after* the read began: the leader's commit
//! index at a moment it confirmed, with a quorum, that it still leads. Every request waiting when
//! a round starts was issued before that round, so one round answers all of them; requests that
//! arrive while a round is in flight wait for the next one (etcd's read loop does the same).
//!
//! Invariants:
//! - A waiter is answered only by a round that started after it was queued: a round takes the
//!   queue first and only then asks the leader.
//! - At most one round is in flight per node; a round runs in its own task, so a caller that
//!   gives up (timeout, dropped request) never strands the others.
//! - Every waiter gets an answer or its own timeout; a failed round fails its whole batch with
//!   the same error (each caller may retry).

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::ProposeError;

type Reply = oneshot::Sender<Result<u64, ProposeError>>;

#[derive(Default)]
pub(crate) struct ReadIndexBatcher {
    state: Mutex<State>,
    requests: AtomicU64,
    rounds: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Queued waiters with the deadline each asked for.
    waiting: Vec<(Instant, Reply)>,
    /// A round task exists; it drains `waiting` until it finds it empty.
    running: bool,
}

/// Counters for tests and metrics: how many read indexes were asked for and how many rounds
/// answered them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadBatchStats {
    pub requests: u64,
    pub rounds: u64,
}

/// What the batcher needs from its node: one round to the leader, and the batcher itself (the
/// round task finds it through a clone of the node).
pub(crate) trait ReadIndexSource: Clone + Send + Sync + 'static {
    fn batcher(&self) -> &ReadIndexBatcher;

    /// One read-index round: the leader confirms its leadership with a quorum and returns its
    /// commit index.
    fn read_index_round(&self, timeout: Duration) -> impl Future<Output = Result<u64, ProposeError>> + Send;
}

impl ReadIndexBatcher {
    /// Queues a request for a read index and waits at most `timeout` for the round that answers
    /// it. `node` runs the rounds (see [`ReadIndexSource::read_index_round`]).
    pub(crate) async fn read_index<N: ReadIndexSource>(
        &self,
        node: &N,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = oneshot::channel();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.waiting.push((deadline, tx));
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            let node = node.clone();
            tokio::spawn(async move { node.batcher().run_rounds(&node).await });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ProposeError::Unavailable("the read-index round was dropped".into())),
            Err(_) => Err(ProposeError::Unavailable(format!(
                "no read index within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Runs rounds until the queue is empty. Each round serves the waiters queued before it began,
    /// bounded by the latest of their deadlines.
    async fn run_rounds<N: ReadIndexSource>(&self, node: &N) {
        let mut exit = ResetOnExit {
            batcher: self,
            finished: false,
        };
        loop {
            let batch = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                // Waiters that already gave up need no round.
                s.waiting.retain(|(_, tx)| !tx.is_closed());
                if s.waiting.is_empty() {
                    s.running = false;
                    exit.finished = true;
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            let deadline = batch.iter().map(|(d, _)| *d).max().unwrap_or_else(Instant::now);
            let timeout = deadline.saturating_duration_since(Instant::now());
            let result = node.read_index_round(timeout).await;
            self.rounds.fetch_add(1, Ordering::Relaxed);
            for (_, tx) in batch {
                let _ = tx.send(result.clone());
            }
        }
    }

    pub(crate) fn stats(&self) -> ReadBatchStats {
        ReadBatchStats {
            requests: self.requests.load(Ordering::Relaxed),
            rounds: self.rounds.load(Ordering::Relaxed),
        }
    }
}

/// Should the round task end any other way than finding the queue empty (a panic, or its runtime
/// dropping it), lets the next request start a fresh round instead of queueing behind a task
/// that no longer exists (the waiters it held see their senders dropped).
struct ResetOnExit<'a> {
    batcher: &'a ReadIndexBatcher,
    finished: bool,
}

impl Drop for ResetOnExit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut s = self.batcher.state.lock().unwrap_or_else(|p| p.into_inner());
            s.waiting.clear();
            s.running = false;
        }
    }
}
