//! What each write did, from the request records the cluster kept (the [`RequestLog`]).
//!
//! Every write reaches the state machine under the request id its client sent; the record under
//! that id says whether it took effect, at which log index, and with which outcome. This is
//! how the checkers learn the fate of a write whose client never heard back, and the order in
//! which writes took effect. They trust none of it blindly: what a record says must agree with
//! what the client was told ([`super::exactly_once`]), with the model replayed in that order and
//! with real time ([`super::linearizable`]).
//!
//! [`RequestLog`]: crate::request_log::RequestLog

use coffer::pb;

use crate::history::History;
use crate::history::Kind;
use crate::history::Op;
use crate::workload::logged_request_id;

/// A write's recorded outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Applied; `version` is what the command answered (the new version of a put, the target of
    /// a promote, disable or destroy; 0 otherwise).
    Ok { version: u64 },
    /// Refused by the state machine, with the gRPC code its client is given.
    Refused(&'static str),
}

/// Where and how a write took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub index: u64,
    pub recorded: Recorded,
}

/// The gRPC code a client gets for a state machine refusal (coffer's `ApiError` mapping).
pub fn code_name(code: i32) -> &'static str {
    use pb::ErrorCode as E;
    match E::try_from(code).unwrap_or(E::Unspecified) {
        E::InvalidArgument => "InvalidArgument",
        E::NotFound => "NotFound",
        E::AlreadyExists => "AlreadyExists",
        E::FailedPrecondition | E::VersionDisabled | E::VersionDestroyed => "FailedPrecondition",
        E::CasFailed | E::VersionConflict | E::EtagMismatch => "Aborted",
        E::NotBootstrapped => "Unavailable",
        E::Internal | E::Unspecified => "Internal",
    }
}

fn recorded(r: &pb::RequestRecord) -> Option<Effect> {
    let result = r.result.as_ref()?;
    let recorded = match result.outcome.as_ref()? {
        pb::command_result::Outcome::Ok(ok) => Recorded::Ok { version: ok.version },
        pb::command_result::Outcome::Error(e) => Recorded::Refused(code_name(e.code)),
    };
    Some(Effect {
        index: result.log_index,
        recorded,
    })
}

/// One line for a record.
pub fn describe(r: &pb::RequestRecord) -> String {
    match recorded(r) {
        Some(e) => format!("{:?} at index {}", e.recorded, e.index),
        None => "a record without a result".into(),
    }
}

/// The log ids of `op`'s commands: one, or for a put one per attempt at a version number.
fn logged_ids(op: &Op) -> Vec<String> {
    let base = logged_request_id(&op.request_id);
    match op.kind {
        Kind::Put { .. } => (0..coffer::service::put::MAX_VERSION_RACES)
            .map(|n| coffer::request_ids::attempt(&base, n))
            .collect(),
        _ => vec![base],
    }
}

/// Every record held for `op`'s commands, with its request id.
pub fn records_of<'a>(h: &'a History, op: &Op) -> Vec<(String, &'a pb::RequestRecord)> {
    if !op.kind.is_write() {
        return Vec::new();
    }
    logged_ids(op)
        .into_iter()
        .filter_map(|id| h.requests.get(&id).map(|r| (id, r)))
        .collect()
}

/// Where `op` took effect: `Ok(None)` if no command of it was applied (it never reached the
/// log, or for a put every attempt lost its version race); an error if its records contradict
/// each other (two attempts of one put both applied).
pub fn effect(h: &History, op: &Op) -> Result<Option<Effect>, String> {
    let records = records_of(h, op);
    if let Kind::Put { .. } = op.kind {
        let applied: Vec<(String, Effect)> = records
            .iter()
            .filter_map(|(id, r)| recorded(r).map(|e| (id.clone(), e)))
            .filter(|(_, e)| matches!(e.recorded, Recorded::Ok { .. }))
            .collect();
        return match &applied[..] {
            [] => Ok(None),
            [(_, e)] => Ok(Some(e.clone())),
            more => Err(format!(
                "put #{} was applied {} times: {}",
                op.id,
                more.len(),
                more.iter()
                    .map(|(id, e)| format!("{id} at index {}", e.index))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    match records.first() {
        None => Ok(None),
        Some((id, r)) => recorded(r)
            .map(Some)
            .ok_or_else(|| format!("the record of {id} (op #{}) has no result", op.id)),
    }
}

#[cfg(test)]
mod tests {
    use coffer::error::ApiError;
    use coffer_model::error::ModelError;

    use super::*;

    #[test]
    fn code_names_agree_with_the_api_mapping_for_every_model_code() {
        for code in 0..=10 {
            let Ok(e) = pb::ErrorCode::try_from(code) else { continue };
            let status = tonic::Status::from(ApiError::from(ModelError::new(e, "m")));
            assert_eq!(code_name(code), format!("{:?}", status.code()), "{e:?}");
        }
    }
}
