//! Audit records that say what a request did, not only what it asked for: the version a read
//! by alias returned and the version a put wrote, which the request cannot know before it runs.
//!
//! - A read's only effect is its answer, so its one record waits for the outcome
//!   ([`Seam::check_deferred`], then [`Seam::settle`]) and the answer leaves only once that
//!   record is durable (still fail closed).
//! - A write changes state, so its decision is recorded before it runs, as for every request,
//!   and a second record with the same request id says what it did ([`Seam::check_with_outcome`],
//!   then [`Seam::record_outcome`]).

use tonic::metadata::MetadataMap;

use super::{Ask, Grant, RequestInfo, Seam};
use crate::error::ApiError;
use crate::pb;

/// An allowed request whose audit record is not written yet. Whatever it reads must not be
/// answered before [`Seam::settle`] has written the record.
#[must_use = "an allowed request is audited only once settled"]
pub struct Deferred {
    event: pb::AuditEvent,
}

impl Deferred {
    /// Who the read is for.
    pub fn principal(&self) -> &str {
        &self.event.principal
    }
}

/// The decision record of an allowed write, kept to record its outcome once it ran.
#[must_use = "a write's outcome is recorded with it"]
pub struct Outcome {
    event: pb::AuditEvent,
}

/// `event` as written once its request ran: at `now`, with the version read or written and
/// "ok", or with the error's code.
fn with_outcome(mut event: pb::AuditEvent, outcome: Result<u64, &ApiError>) -> pb::AuditEvent {
    event.time_ms = crate::time::now_ms();
    match outcome {
        Ok(version) => {
            event.version = version;
            event.outcome = "ok".into();
        }
        Err(e) => event.outcome = e.code().into(),
    }
    event
}

impl Seam {
    /// Like [`Seam::check`], but an allowed request's record is written by [`Seam::settle`],
    /// with its outcome. A denial is recorded at once. For reads only: nothing they do before
    /// the answer needs a record.
    pub async fn check_deferred(
        &self,
        meta: &MetadataMap,
        info: &RequestInfo,
        ask: Ask<'_>,
    ) -> Result<Deferred, ApiError> {
        let (_, event) = self.decide(meta, info, ask).await?;
        Ok(Deferred { event })
    }

    /// Records what a deferred read did (`Ok((answer, version read))` or its error) and returns
    /// the answer only once that record is durable; when it cannot be written the read fails.
    pub async fn settle<T>(&self, pending: Deferred, result: Result<(T, u64), ApiError>) -> Result<T, ApiError> {
        let outcome = result.as_ref().map(|(_, version)| *version);
        self.record(with_outcome(pending.event, outcome)).await?;
        result.map(|(answer, _)| answer)
    }

    /// Like [`Seam::check`] (the decision is durable before the request runs), and keeps the
    /// record for [`Seam::record_outcome`].
    pub async fn check_with_outcome(
        &self,
        meta: &MetadataMap,
        info: &RequestInfo,
        ask: Ask<'_>,
    ) -> Result<(Grant, Outcome), ApiError> {
        let (grant, event) = self.decide(meta, info, ask).await?;
        self.record(event.clone()).await?;
        Ok((grant, Outcome { event }))
    }

    /// Records what a write did: "ok" and the version it wrote, or its error. The write has
    /// happened (or not) whatever becomes of this record and its decision is on record
    /// already, so a failure here is logged and counted, never answered in place of the real
    /// outcome.
    pub async fn record_outcome(&self, pending: Outcome, outcome: Result<u64, &ApiError>) {
        let event = with_outcome(pending.event, outcome);
        let request_id = event.request_id.clone();
        if let Err(e) = self.record(event).await {
            metrics::counter!("coffer_audit_outcome_failures_total").increment(1);
            tracing::error!(request_id = %request_id, error = %e, "could not record a write's outcome");
        }
    }
}
