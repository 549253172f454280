//! The one entry point of the state machine into the secrets model: [`apply`] a command.
//!
//! `apply` is deterministic: it depends only on the state it reads and the command (which
//! carries `proposed_at_ms`). No clock, no RNG, no KMS, no I/O beyond the state machine.
//! A command that fails a check returns an error result and leaves the state unchanged: its
//! writes go through a [`Txn`] that is committed only on success.

use crate::access_records;
use crate::audit_anchors;
use crate::cluster_records;
use crate::context::At;
use crate::error::fail;
use crate::error::ApplyError;
use crate::error::ModelError;
use crate::error::Result;
use crate::keys;
use crate::names;
use crate::pb;
use crate::pb::ErrorCode;
use crate::requests;
use crate::rotation_commands;
use crate::secrets;
use crate::token_gc;
use coffer_kv::Overlay;
use coffer_kv::Txn;

/// Applies one command at `log_index`. Domain failures come back as an error result.
///
/// Every command but the bootstrap goes through the request table ([`requests`]): a request id
/// applied before is answered with its first outcome and that first entry's index, and is not
/// evaluated again; a new one is evaluated and its outcome recorded in the same write. Every
/// one first lets [`token_gc`] delete token records past their retention.
pub fn apply(ov: &mut Overlay<'_>, cmd: &pb::Command, log_index: u64) -> std::io::Result<pb::CommandResult> {
    if let Some(pb::command::Op::Bootstrap(b)) = &cmd.op {
        let result = evaluate(ov, cmd, log_index)?;
        if matches!(result.outcome, Some(pb::command_result::Outcome::Ok(_))) {
            requests::set_retention(ov, b.request_retention_ms)?;
        }
        return Ok(result);
    }
    if ov.contains(keys::CLUSTER)? {
        let clock_ms = requests::meta(ov)?.clock_ms.max(cmd.proposed_at_ms);
        token_gc::collect(ov, clock_ms)?;
    }
    let id = cmd.request_id.as_str();
    let refuse = |e: ModelError| pb::CommandResult {
        log_index,
        outcome: Some(pb::command_result::Outcome::Error(e.to_pb())),
        replayed: false,
    };
    let fp = requests::Fingerprint::of(cmd);
    if id.len() > requests::MAX_REQUEST_ID_BYTES {
        requests::advance(ov, cmd.proposed_at_ms, None)?;
        return Ok(refuse(ModelError::new(
            ErrorCode::InvalidArgument,
            format!("a request id has at most {} bytes", requests::MAX_REQUEST_ID_BYTES),
        )));
    }
    if !id.is_empty() {
        match requests::lookup(ov, cmd, &fp)? {
            requests::Lookup::Fresh => {}
            requests::Lookup::Replay(first) => {
                requests::advance(ov, cmd.proposed_at_ms, None)?;
                return Ok(first);
            }
            requests::Lookup::Reused(e) => {
                requests::advance(ov, cmd.proposed_at_ms, None)?;
                return Ok(refuse(e));
            }
        }
    }
    let result = evaluate(ov, cmd, log_index)?;
    let record = (!id.is_empty() && requests::is_recorded(&result)).then_some((id, &fp, cmd, &result));
    requests::advance(ov, cmd.proposed_at_ms, record)?;
    Ok(result)
}

/// Evaluates `cmd` against the state: its writes reach `ov` only if it succeeds.
fn evaluate(ov: &mut Overlay<'_>, cmd: &pb::Command, log_index: u64) -> std::io::Result<pb::CommandResult> {
    let mut tx = ov.txn();
    let outcome = match apply_op(&mut tx, cmd, log_index) {
        Ok(ok) => {
            tx.commit();
            pb::command_result::Outcome::Ok(ok)
        }
        Err(ApplyError::Model(e)) => pb::command_result::Outcome::Error(e.to_pb()),
        Err(ApplyError::Io(e)) => return Err(e),
    };
    Ok(pb::CommandResult {
        log_index,
        outcome: Some(outcome),
        replayed: false,
    })
}

/// Applies `cmd` at `log_index`: one arm per operation (a new one must say what it does).
fn apply_op(tx: &mut Txn<'_, '_>, cmd: &pb::Command, log_index: u64) -> Result<pb::CommandOk> {
    use pb::command::Op;
    let Some(op) = &cmd.op else {
        return fail(ErrorCode::InvalidArgument, "command without an operation");
    };
    if !matches!(op, Op::Bootstrap(_)) && !tx.contains(keys::CLUSTER)? {
        return fail(ErrorCode::NotBootstrapped, "the cluster is not bootstrapped yet");
    }
    let now = cmd.proposed_at_ms;
    let at = At {
        now,
        log_index,
        principal: &cmd.principal,
        request_id: &cmd.request_id,
    };
    match op {
        Op::Bootstrap(b) => cluster_records::bootstrap(tx, b),
        Op::SetTokenKey(k) => cluster_records::set_token_key(tx, k),
        Op::SetWraps(w) => cluster_records::set_wraps(tx, w),
        Op::PutPolicy(c) => access_records::put_policy(tx, c, now, &cmd.principal),
        Op::DeletePolicy(c) => access_records::delete_policy(tx, c),
        Op::CreateToken(c) => access_records::create_token(tx, c),
        Op::RevokeToken(c) => access_records::revoke_token(tx, c, now),
        Op::AnchorAudit(c) => audit_anchors::anchor(tx, c, now),
        Op::CreateSecret(c) => on_secret(tx, &c.name, |tx, s| secrets::create_secret(tx, s, c, &at)),
        Op::AddVersion(c) => on_secret(tx, &c.name, |tx, s| secrets::add_version(tx, s, c, &at)),
        Op::MoveAlias(c) => on_secret(tx, &c.name, |tx, s| secrets::move_alias(tx, s, c, &at)),
        Op::SetVersionState(c) => on_secret(tx, &c.name, |tx, s| secrets::set_version_state(tx, s, c, &at)),
        Op::DestroyVersion(c) => on_secret(tx, &c.name, |tx, s| secrets::destroy_version(tx, s, c, &at)),
        Op::UpdateSecret(c) => on_secret(tx, &c.name, |tx, s| secrets::update_secret(tx, s, c, &at)),
        Op::StartRotation(c) => on_secret(tx, &c.name, |tx, s| rotation_commands::apply(tx, s, op, &at)),
        Op::AdvanceRotation(c) => on_secret(tx, &c.name, |tx, s| rotation_commands::apply(tx, s, op, &at)),
        Op::RotationFailed(c) => on_secret(tx, &c.name, |tx, s| rotation_commands::apply(tx, s, op, &at)),
        Op::RollbackRotation(c) => on_secret(tx, &c.name, |tx, s| rotation_commands::apply(tx, s, op, &at)),
    }
}

/// Runs `f` on the secret `name` names (None if there is none yet), once the name is valid.
fn on_secret<F>(tx: &mut Txn<'_, '_>, name: &str, f: F) -> Result<pb::CommandOk>
where
    F: FnOnce(&mut Txn<'_, '_>, Option<pb::Secret>) -> Result<pb::CommandOk>,
{
    names::validate_name(name).map_err(ModelError::from)?;
    let secret = secrets::load_secret(tx, name)?;
    f(tx, secret)
}
