//! Leader-only work from any node: find the leader, run the attempt there (here, or over the
//! peer port), follow `NotLeader` hints, retry with backoff until the deadline.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use tokio::time::Instant;

use crate::error::PeerError;
use crate::error::ProposeError;
use crate::pb;
use crate::NodeId;

use super::facade::*;

/// The outcome of one attempt at leader-only work on some node.
pub enum Routed<T> {
    Done(T),
    /// That node is not the leader; it may know who is.
    NotLeader(Option<pb::NodeInfo>),
}

/// How long a write waits for another leader after the leader said it was out of disk.
const OUT_OF_DISK_PATIENCE: Duration = Duration::from_secs(2);

pub(super) type Attempt<'a, T> = Pin<Box<dyn Future<Output = Result<Routed<T>, PeerError>> + Send + 'a>>;

impl RaftNode {
    /// Waits until some node is known as leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.inner.raft.metrics();
        let deadline = Instant::now() + timeout;
        loop {
            // borrow_and_update: the next changed() waits for a change after this look.
            let leader = rx.borrow_and_update().current_leader;
            if let Some(l) = leader {
                return Some(l);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or Raft stopped (no more changes will come).
                _ => return None,
            }
        }
    }

    pub(super) fn leader_node(&self) -> Option<pb::NodeInfo> {
        let s = self.status();
        s.leader.and_then(|id| s.node(id).cloned())
    }

    /// Runs `attempt` against the leader until it is done or `timeout` passes, following
    /// redirects and waiting out elections. `attempt` gets the node to try; it runs the work
    /// locally when that node is this one.
    pub(super) async fn on_leader<'a, T>(
        &'a self,
        timeout: Duration,
        what: &str,
        mut attempt: impl FnMut(pb::NodeInfo) -> Attempt<'a, T>,
    ) -> Result<T, ProposeError> {
        let deadline = Instant::now() + timeout;
        let mut hint: Option<pb::NodeInfo> = None;
        let mut backoff = Duration::from_millis(20);
        let mut last_error;
        // When a leader first said it was out of disk, and what it said: it hands leadership on,
        // so wait a little for another leader before giving the caller that answer.
        let mut out_of_disk: Option<(Instant, String)> = None;
        loop {
            let target = hint.take().or_else(|| self.leader_node());
            // The leader this attempt went to (or, with no address for it, the one reported).
            let tried = target.as_ref().map(|n| n.id).or_else(|| self.status().leader);
            let outcome = match target {
                Some(node) => attempt(node).await,
                None => Err(PeerError::new(tonic::Code::Unavailable, "no leader is known")),
            };
            match outcome {
                Ok(Routed::Done(v)) => return Ok(v),
                Ok(Routed::NotLeader(h)) => {
                    last_error = "the node asked was not the leader".to_string();
                    hint = h;
                }
                Err(PeerError { code, message: msg }) => {
                    if matches!(code, tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) {
                        return Err(ProposeError::Rejected(msg));
                    }
                    if code == tonic::Code::ResourceExhausted {
                        let since = out_of_disk.as_ref().map_or_else(Instant::now, |(t, _)| *t);
                        out_of_disk = Some((since, msg.clone()));
                    }
                    last_error = msg;
                }
            }
            if let Some((since, why)) = &out_of_disk {
                if since.elapsed() >= OUT_OF_DISK_PATIENCE || Instant::now() + backoff >= deadline {
                    return Err(ProposeError::OutOfDisk(why.clone()));
                }
            }
            if Instant::now() + backoff >= deadline {
                return Err(ProposeError::Unavailable(format!(
                    "no leader answered the {what} within {} ms ({last_error})",
                    timeout.as_millis()
                )));
            }
            if hint.is_some() {
                // Follow the redirect promptly, but never spin if nodes point at each other.
                tokio::time::sleep(Duration::from_millis(5)).await;
            } else {
                // Wake early only when the leader differs from the one just tried. Metrics change
                // on every message the Raft core handles (our own attempt included), so waking on
                // any change would let two callers on a deposed leader wake each other forever
                // without time passing.
                let mut rx = self.inner.raft.metrics();
                let _ = tokio::time::timeout(backoff, async {
                    loop {
                        if rx.borrow_and_update().current_leader != tried {
                            return;
                        }
                        if rx.changed().await.is_err() {
                            // Raft stopped: nothing will change; wait out the backoff.
                            std::future::pending::<()>().await;
                        }
                    }
                })
                .await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    /// The credentialed channel to `node`'s peer port, for a service the application serves
    /// there (the peer guard admits members only).
    pub fn peer_channel(&self, node: &pb::NodeInfo) -> Result<crate::network::PeerChannel, PeerError> {
        self.inner
            .channels
            .channel(node.id, &node.raft_addr)
            .map_err(|e| PeerError::new(tonic::Code::Unavailable, e.to_string()))
    }

    pub(super) fn peer(&self, node: &pb::NodeInfo) -> Result<crate::network::PeerRpcClient, PeerError> {
        self.inner
            .channels
            .client(node.id, &node.raft_addr)
            .map_err(|e| PeerError::new(tonic::Code::Unavailable, e.to_string()))
    }
}

pub(super) fn empty_reply() -> PeerError {
    PeerError::new(tonic::Code::Internal, "empty reply from a peer")
}

pub(super) fn with_deadline<T>(msg: T, deadline: Instant) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(remaining(deadline));
    r
}

/// Time left until `deadline`, at most 5 s per attempt and never zero.
pub(super) fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(5))
        .max(Duration::from_millis(1))
}

/// One unary peer call bounded by `deadline`.
pub(super) async fn unary<T>(
    node: &pb::NodeInfo,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    deadline: Instant,
) -> Result<T, PeerError> {
    match tokio::time::timeout(remaining(deadline), call).await {
        Err(_) => Err(PeerError::new(
            tonic::Code::DeadlineExceeded,
            format!("{} did not answer in time", node.name),
        )),
        Ok(Err(s)) => Err(PeerError::new(s.code(), format!("{}: {}", node.name, s.message()))),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}
