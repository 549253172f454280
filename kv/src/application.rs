//! [`Application`]: the state machine's one way into the replicated application.

use std::io;

use coffer_proto as pb;

use crate::overlay::Overlay;
use crate::view::KvView;

/// Why a read was not answered: the application refused it (not found, disabled, …) or the
/// storage under it failed.
#[derive(Debug)]
pub enum AnswerError {
    Refused(pb::CommandError),
    Io(io::Error),
}

/// What the Raft state machine applies, and answers reads with.
///
/// Invariants an implementation keeps (the state machine and the simulations rely on them):
/// - [`Application::apply`] is deterministic: its result and its writes depend only on the
///   state it reads through `batch`, the command and `log_index` (no clock, RNG, network or
///   file I/O). Every replica applying the same log reaches the same state.
/// - A refused command is an error *result* with no writes; only a storage failure is an `Err`
///   (fatal to the Raft core, which stops rather than diverge).
/// - Keys starting with `m/last_applied` and `m/membership` belong to the state machine; the
///   application never writes them.
pub trait Application: Send + Sync + 'static {
    /// Applies `cmd`, the entry at `log_index`, writing through `batch`.
    fn apply(&self, batch: &mut Overlay<'_>, cmd: &pb::Command, log_index: u64) -> io::Result<pb::CommandResult>;

    /// Whether a write to `key` changes who may do what: caches of access decisions keyed on
    /// the state machine's access epoch are dropped when such a key is applied.
    fn is_access_key(&self, key: &[u8]) -> bool;

    /// Answers `query` from `view` alone (a leader serving a follower's forwarded read).
    fn answer(&self, view: &dyn KvView, query: &pb::ReadQuery) -> Result<pb::ReadAnswer, AnswerError>;

    /// Whether applying `cmd` with `result` left bytes that must not outlive it on any disk
    /// (a destroyed version's ciphertext and wrapped keys, still in the log, older storage
    /// files and the last snapshot): the node then rewrites its storage without them. Pure,
    /// like `apply`.
    fn shreds(&self, _cmd: &pb::Command, _result: &pb::CommandResult) -> bool {
        false
    }

    /// The changes applying `cmd` made, as watchers see them (`Secrets.Watch`), read from
    /// `batch` right after the command applied. Deterministic like `apply`; a refused command
    /// or a replayed request made none.
    fn events(
        &self,
        _batch: &Overlay<'_>,
        _cmd: &pb::Command,
        _result: &pb::CommandResult,
    ) -> io::Result<Vec<pb::SecretEvent>> {
        Ok(Vec::new())
    }
}
