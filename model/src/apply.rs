//! The one entry point of the state machine into the secrets model: [`apply`] a command.
//!
//! `apply` is deterministic: it depends only on the state it reads and the command (which
//! carries `proposed_at_ms`). No clock, no RNG, no KMS, no I/O beyond the state machine.
//! A command that fails a check returns an error result and leaves the state unchanged: its
//! writes go through a [`Txn`] that is committed only on success.

use crate::access_records;
use crate::audit_anchors;
use crate::cluster_records;
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

/// Applies `cmd` at `log_index`.
fn apply_op(tx: &mut Txn<'_, '_>, cmd: &pb::Command, log_index: u64) -> Result<pb::CommandOk> {
    use pb::command::Op;
    let Some(op) = &cmd.op else {
        return fail(ErrorCode::InvalidArgument, "command without an operation");
    };
    if let Op::Bootstrap(b) = op {
        return cluster_records::bootstrap(tx, b);
    }
    if !tx.contains(keys::CLUSTER)? {
        return fail(ErrorCode::NotBootstrapped, "the cluster is not bootstrapped yet");
    }
    let now = cmd.proposed_at_ms;
    let name = match op {
        Op::Bootstrap(_) => unreachable!("handled above"),
        Op::SetTokenKey(k) => return cluster_records::set_token_key(tx, k),
        Op::SetWraps(w) => return cluster_records::set_wraps(tx, w),
        Op::PutPolicy(c) => return access_records::put_policy(tx, c, now, &cmd.principal),
        Op::DeletePolicy(c) => return access_records::delete_policy(tx, c),
        Op::CreateToken(c) => return access_records::create_token(tx, c),
        Op::RevokeToken(c) => return access_records::revoke_token(tx, c, now),
        Op::AnchorAudit(c) => return audit_anchors::anchor(tx, c, now),
        Op::CreateSecret(c) => &c.name,
        Op::AddVersion(c) => &c.name,
        Op::MoveAlias(c) => &c.name,
        Op::SetVersionState(c) => &c.name,
        Op::DestroyVersion(c) => &c.name,
        Op::UpdateSecret(c) => &c.name,
        Op::StartRotation(c) => &c.name,
        Op::AdvanceRotation(c) => &c.name,
        Op::RotationFailed(c) => &c.name,
        Op::RollbackRotation(c) => &c.name,
    };
    names::validate_name(name).map_err(ModelError::from)?;
    let secret = secrets::load_secret(tx, name)?;
    let at = crate::context::At {
        now,
        log_index,
        principal: &cmd.principal,
        request_id: &cmd.request_id,
    };
    match op {
        Op::Bootstrap(_)
        | Op::SetTokenKey(_)
        | Op::SetWraps(_)
        | Op::PutPolicy(_)
        | Op::DeletePolicy(_)
        | Op::CreateToken(_)
        | Op::RevokeToken(_)
        | Op::AnchorAudit(_) => unreachable!("handled above"),
        Op::CreateSecret(c) => secrets::create_secret(tx, secret, c, &at),
        Op::AddVersion(c) => secrets::add_version(tx, secret, c, &at),
        Op::MoveAlias(c) => secrets::move_alias(tx, secret, c, &at),
        Op::SetVersionState(c) => secrets::set_version_state(tx, secret, c, &at),
        Op::DestroyVersion(c) => secrets::destroy_version(tx, secret, c, &at),
        Op::UpdateSecret(c) => secrets::update_secret(tx, secret, c, &at),
        Op::StartRotation(_) | Op::AdvanceRotation(_) | Op::RotationFailed(_) | Op::RollbackRotation(_) => {
            rotation_commands::apply(tx, secret, op, &at)
        }
    }
}
