//! [`SecretsModel`]: the [`Application`] every Coffer node's state machine applies.

use std::io;

use coffer_kv::AnswerError;
use coffer_kv::Application;
use coffer_kv::KvView;
use coffer_kv::Overlay;

use crate::keys;
use crate::pb;
use crate::query;
use crate::query::QueryError;

/// The secrets model behind the Raft state machine: commands go to [`crate::apply::apply`],
/// forwarded reads to [`query::answer`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SecretsModel;

impl Application for SecretsModel {
    fn apply(&self, batch: &mut Overlay<'_>, cmd: &pb::Command, log_index: u64) -> io::Result<pb::CommandResult> {
        crate::apply::apply(batch, cmd, log_index)
    }

    /// The cluster record (root token, token key), policies, tokens and the token-hash index.
    fn is_access_key(&self, k: &[u8]) -> bool {
        k == keys::CLUSTER
            || k.starts_with(keys::POLICY_PREFIX)
            || k.starts_with(keys::TOKEN_PREFIX)
            || k.starts_with(keys::TOKEN_HASH_PREFIX)
    }

    /// A version destroyed (by a DestroyVersion or a rotation's last step), or pruned by
    /// `max_versions`, by this command (not a replay of an earlier one).
    fn shreds(&self, cmd: &pb::Command, result: &pb::CommandResult) -> bool {
        let Some(pb::command_result::Outcome::Ok(ok)) = &result.outcome else {
            return false;
        };
        !result.replayed
            && (matches!(cmd.op, Some(pb::command::Op::DestroyVersion(_)))
                || !ok.pruned.is_empty()
                || !ok.destroyed.is_empty())
    }

    fn events(
        &self,
        batch: &Overlay<'_>,
        cmd: &pb::Command,
        result: &pb::CommandResult,
    ) -> io::Result<Vec<pb::SecretEvent>> {
        crate::changes::events(batch, cmd, result)
    }

    fn answer(&self, view: &dyn KvView, q: &pb::ReadQuery) -> Result<pb::ReadAnswer, AnswerError> {
        query::answer(view, q).map_err(|e| match e {
            QueryError::Model(e) => AnswerError::Refused(e.to_pb()),
            QueryError::Io(e) => AnswerError::Io(e),
        })
    }
}
