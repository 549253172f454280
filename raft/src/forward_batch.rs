//! Coalesces the writes a follower forwards to the leader into batched calls.
//!
//! A write that reaches a follower must be proposed by the leader. One unary call per write
//! pays an HTTP/2 request on both ends for every write; instead, writes that arrive while this
//! node's forwarding calls are busy wait and leave together in one `ProposeBatch`, which the
//! leader hands to its Raft core as one message (like etcd, whose followers forward proposals
//! over their peer stream). An idle node sends a write at once: batching never adds a wait, it
//! only takes what queued up behind calls already in flight.
//!
//! Invariants:
//! - At most [`MAX_IN_FLIGHT`] calls per node; each runs in its own task, so a caller that gives
//!   up (timeout, dropped request) never strands the others.
//! - A batch goes to one leader and holds at most [`MAX_BATCH`] commands and about
//!   [`MAX_BATCH_BYTES`]; commands for another leader wait for the next call.
//! - Every waiter gets its own command's outcome, or its own timeout. A reply whose outcomes do
//!   not match the batch one to one fails every command of it (retrying is safe: commands carry
//!   a request id and the state machine answers a replay instead of applying it twice).
//! - A leader without `ProposeBatch` (an older version during a rolling upgrade) answers
//!   `UNIMPLEMENTED` before proposing anything; the batch fails as unavailable, the callers
//!   retry, and from then on that leader gets one unary `Propose` per write.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use prost::Message;
use std::future::Future;
use tokio::sync::oneshot;

use tokio::time::Instant;

use crate::error::PeerError;
use crate::pb;
use crate::NodeId;

/// Most commands in one forwarded batch (the leader refuses more).
pub const MAX_BATCH: usize = 1024;
/// A batch stops growing once its commands' encoded size passes this (far below
/// [`crate::network::MAX_PEER_MESSAGE_BYTES`]; one command is always taken).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Forwarding calls one node keeps in flight. Two keep a leader's pipeline busy while the
/// previous batch commits, without splitting load into many small batches.
pub const MAX_IN_FLIGHT: usize = 2;

/// What a forwarded command came to: the leader's answer, or a transport or leader error as
/// `(code, message)`.
pub(crate) type Outcome = Result<pb::propose_response::Result, PeerError>;

struct Pending {
    leader: pb::NodeInfo,
    command: pb::Command,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
pub(crate) struct ForwardBatcher {
    state: Mutex<State>,
    writes: AtomicU64,
    calls: AtomicU64,
    /// Leaders that answered `ProposeBatch` with `UNIMPLEMENTED`.
    unbatched: Mutex<BTreeSet<NodeId>>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Pending>,
    in_flight: usize,
}

/// Counters for tests and metrics: writes forwarded and calls that carried them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    pub writes: u64,
    pub calls: u64,
}

/// What the batcher needs from its node: the two forwarding calls, and the batcher itself (a
/// spawned call task finds it through a clone of the node).
pub(crate) trait ForwardTarget: Clone + Send + Sync + 'static {
    fn forwarder(&self) -> &ForwardBatcher;

    /// Sends `commands` to `leader` in one `ProposeBatch` call: one outcome per command, in order.
    fn propose_batch_remote(
        &self,
        leader: &pb::NodeInfo,
        commands: Vec<pb::Command>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Outcome>, PeerError>> + Send;

    /// Sends one write to `leader` in a unary `Propose` call (a leader without `ProposeBatch`).
    fn propose_remote(
        &self,
        leader: &pb::NodeInfo,
        command: pb::Command,
        deadline: Instant,
    ) -> impl Future<Output = Outcome> + Send;
}

impl ForwardBatcher {
    /// Forwards `command` to `leader` and waits until `deadline` for its outcome.
    pub(crate) async fn forward<N: ForwardTarget>(
        &self,
        node: &N,
        leader: pb::NodeInfo,
        command: pb::Command,
        deadline: Instant,
    ) -> Outcome {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if self
            .unbatched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&leader.id)
        {
            self.calls.fetch_add(1, Ordering::Relaxed);
            return node.propose_remote(&leader, command, deadline).await;
        }
        let name = leader.name.clone();
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.waiting.push(Pending {
                leader,
                command,
                deadline,
                reply: tx,
            });
            let start = s.in_flight < MAX_IN_FLIGHT;
            if start {
                s.in_flight += 1;
            }
            start
        };
        if start {
            let node = node.clone();
            tokio::spawn(async move { node.forwarder().send_batches(&node).await });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(PeerError::new(
                tonic::Code::Unavailable,
                "the forwarding call was dropped",
            )),
            Err(_) => Err(PeerError::new(
                tonic::Code::DeadlineExceeded,
                format!("{name} did not answer in time"),
            )),
        }
    }

    /// One in-flight slot: sends batches until nothing waits.
    async fn send_batches<N: ForwardTarget>(&self, node: &N) {
        let mut slot = SlotGuard {
            batcher: self,
            released: false,
        };
        loop {
            let batch = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.waiting.retain(|p| !p.reply.is_closed());
                if s.waiting.is_empty() {
                    s.in_flight -= 1;
                    slot.released = true;
                    return;
                }
                take_batch(&mut s.waiting)
            };
            self.calls.fetch_add(1, Ordering::Relaxed);
            let leader = batch[0].leader.clone();
            let deadline = batch.iter().map(|p| p.deadline).max().unwrap_or_else(Instant::now);
            let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            let n = commands.len();
            let outcomes = match node.propose_batch_remote(&leader, commands, deadline).await {
                Ok(outcomes) => outcomes,
                Err(PeerError {
                    code: tonic::Code::Unimplemented,
                    ..
                }) => {
                    self.unbatched
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(leader.id);
                    let msg = format!("{} does not take batched writes; retrying one by one", leader.name);
                    vec![Err(PeerError::new(tonic::Code::Unavailable, msg)); n]
                }
                Err(e) => vec![Err(e); n],
            };
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
    }

    pub(crate) fn stats(&self) -> ForwardStats {
        ForwardStats {
            writes: self.writes.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }
}

/// Takes the next batch from `waiting`, oldest first: commands for the oldest one's leader, up
/// to [`MAX_BATCH`] commands and [`MAX_BATCH_BYTES`]. The rest stay queued in order.
fn take_batch(waiting: &mut Vec<Pending>) -> Vec<Pending> {
    let leader = waiting[0].leader.id;
    let (mut batch, mut rest) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for p in waiting.drain(..) {
        let len = p.command.encoded_len();
        let fits = batch.is_empty() || (batch.len() < MAX_BATCH && bytes + len <= MAX_BATCH_BYTES);
        if p.leader.id == leader && fits {
            bytes += len;
            batch.push(p);
        } else {
            rest.push(p);
        }
    }
    *waiting = rest;
    batch
}

/// Matches a leader's reply to the `n` commands of a batch: one outcome each, in order. A reply
/// of any other length, or with an empty outcome, fails the commands it cannot answer.
pub(crate) fn outcomes_from_reply(leader: &pb::NodeInfo, n: usize, reply: pb::ProposeBatchResponse) -> Vec<Outcome> {
    use pb::propose_outcome::Result as O;
    use pb::propose_response::Result as R;
    if reply.outcomes.len() != n {
        let msg = format!(
            "{}: answered {} outcomes for {n} forwarded writes; they may or may not have been applied",
            leader.name,
            reply.outcomes.len()
        );
        return vec![Err(PeerError::new(tonic::Code::Internal, msg)); n];
    }
    reply
        .outcomes
        .into_iter()
        .map(|o| match o.result {
            Some(O::Applied(a)) => Ok(R::Applied(a)),
            Some(O::NotLeader(nl)) => Ok(R::NotLeader(nl)),
            Some(O::Error(e)) => Err(PeerError::new(
                tonic::Code::from(e.code),
                format!("{}: {}", leader.name, e.message),
            )),
            None => Err(PeerError::new(
                tonic::Code::Internal,
                format!("{}: an empty outcome", leader.name),
            )),
        })
        .collect()
}

/// Gives the slot back should its task end any other way than finding the queue empty (a
/// panic, or its runtime dropping it); the waiters it held see their senders dropped.
struct SlotGuard<'a> {
    batcher: &'a ForwardBatcher,
    released: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let mut s = self.batcher.state.lock().unwrap_or_else(|p| p.into_inner());
            s.in_flight -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> pb::NodeInfo {
        pb::NodeInfo {
            id,
            name: format!("node-{id}"),
            ..Default::default()
        }
    }

    fn pending(leader: u64, request_id: &str, pad: usize) -> (Pending, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let command = pb::Command {
            request_id: format!("{request_id}{}", "x".repeat(pad)),
            ..Default::default()
        };
        let p = Pending {
            leader: node(leader),
            command,
            deadline: Instant::now(),
            reply: tx,
        };
        (p, rx)
    }

    fn ids(batch: &[Pending]) -> Vec<String> {
        batch.iter().map(|p| p.command.request_id[..2].to_string()).collect()
    }

    #[test]
    fn a_batch_takes_the_oldest_leaders_commands_and_leaves_the_rest_in_order() {
        let mut waiting: Vec<Pending> = [(1, "a1"), (2, "b1"), (1, "a2"), (2, "b2"), (1, "a3")]
            .into_iter()
            .map(|(l, r)| pending(l, r, 0).0)
            .collect();
        let batch = take_batch(&mut waiting);
        assert_eq!(ids(&batch), ["a1", "a2", "a3"]);
        assert_eq!(ids(&waiting), ["b1", "b2"]);
        assert_eq!(ids(&take_batch(&mut waiting)), ["b1", "b2"]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_batch_stops_at_its_count_and_byte_limits_but_always_takes_one() {
        let mut waiting: Vec<Pending> = (0..MAX_BATCH + 5).map(|_| pending(1, "c0", 0).0).collect();
        assert_eq!(take_batch(&mut waiting).len(), MAX_BATCH);
        assert_eq!(waiting.len(), 5);

        // Each command a bit over a third of the byte limit: two fit, the third waits.
        let third = MAX_BATCH_BYTES / 3 + 1;
        let mut waiting: Vec<Pending> = (0..3).map(|_| pending(1, "d0", third).0).collect();
        assert_eq!(take_batch(&mut waiting).len(), 2);
        assert_eq!(waiting.len(), 1);
        // One command over the limit still goes, alone.
        let mut waiting = vec![pending(1, "e0", MAX_BATCH_BYTES + 1).0, pending(1, "e1", 0).0];
        assert_eq!(take_batch(&mut waiting).len(), 1);
        assert_eq!(waiting.len(), 1);
    }

    #[test]
    fn a_reply_is_matched_in_order_and_a_short_reply_fails_every_command() {
        use pb::propose_outcome::Result as O;
        use pb::propose_response::Result as R;
        let applied = |index| pb::ProposeOutcome {
            result: Some(O::Applied(pb::CommandResult {
                log_index: index,
                ..Default::default()
            })),
        };
        let reply = pb::ProposeBatchResponse {
            outcomes: vec![
                applied(7),
                pb::ProposeOutcome {
                    result: Some(O::Error(pb::PeerError {
                        code: tonic::Code::Aborted as i32,
                        message: "leader changed".into(),
                    })),
                },
                pb::ProposeOutcome { result: None },
                applied(9),
            ],
        };
        let out = outcomes_from_reply(&node(1), 4, reply.clone());
        assert!(matches!(&out[0], Ok(R::Applied(a)) if a.log_index == 7));
        assert_eq!(
            out[1],
            Err(PeerError::new(tonic::Code::Aborted, "node-1: leader changed"))
        );
        assert!(matches!(
            &out[2],
            Err(PeerError {
                code: tonic::Code::Internal,
                ..
            })
        ));
        assert!(matches!(&out[3], Ok(R::Applied(a)) if a.log_index == 9));

        let out = outcomes_from_reply(&node(1), 5, reply);
        assert_eq!(out.len(), 5);
        assert!(out
            .iter()
            .all(|o| matches!(o, Err(PeerError { code: tonic::Code::Internal, message }) if message.contains("4 outcomes for 5"))));
    }
}
