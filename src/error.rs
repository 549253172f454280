//! Coffer's API errors with stable codes, mapped to `tonic::Status` in one place.
//!
//! Every error has a fine-grained code (the table below, docs/architecture.md: Errors) that
//! scripts match on: the `coffer-error-code` metadata of the status, `error[code]: …` on the
//! CLI's stderr, `"code"` in its JSON errors. Codes are stable: a new condition gets a new
//! code, an old code never changes meaning. The gRPC status code is the coarse class.
//!
//! Messages say what went wrong and what to do; they never contain secret values.

use coffer_model::error::ModelError;
use coffer_model::query::QueryError;
use coffer_raft::error::ProposeError;
use tonic::Code;
use tonic::Status;

use crate::pb::ErrorCode;

/// Metadata key carrying the stable error code on error responses.
pub const ERROR_CODE_KEY: &str = "coffer-error-code";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The version asked for is disabled (enable it or read another).
    #[error("{0}")]
    VersionDisabled(String),
    /// The version asked for is destroyed: its value is gone for good.
    #[error("{0}")]
    VersionDestroyed(String),
    /// An alias compare-and-swap failed: the alias moved since it was read; re-read and retry.
    #[error("{0}")]
    AliasCasFailed(String),
    /// A put kept losing the race for the next version number to concurrent writers.
    #[error("{0}")]
    VersionRace(String),
    /// A metadata update's etag is not the secret's any more: re-read and retry.
    #[error("{0}")]
    EtagMismatch(String),
    /// The cluster has not been bootstrapped yet.
    #[error("{0}")]
    NotBootstrapped(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// No KMS region could wrap or unwrap the data key.
    #[error("{0}")]
    KmsUnavailable(String),
    /// The audit record could not be made durable, so the request was refused (fail closed).
    #[error("{0}")]
    AuditUnavailable(String),
    /// No leader answered in time (a write may still be applied: retrying is safe).
    #[error("{0}")]
    NoLeader(String),
    /// A bounded read: this replica's staleness bound stayed above the one asked for.
    #[error("{0}")]
    StalenessUnmet(String),
    /// A linearizable or at-least read: this replica did not apply the index it needed in time.
    #[error("{0}")]
    NotCaughtUp(String),
    /// This node has not joined the cluster (yet).
    #[error("{0}")]
    NotAMember(String),
    /// This node was removed from the cluster.
    #[error("{0}")]
    NodeRemoved(String),
    /// A source without credentials sent more requests than its limit allows.
    #[error("{0}")]
    RateLimited(String),
    /// The leader (named in the message) is out of disk: nothing was written.
    #[error("{0}")]
    OutOfDisk(String),
    /// A watch asked for changes this node no longer holds: read the state and watch anew.
    #[error("{0}")]
    ResyncNeeded(String),
    /// This node serves as many watch streams as it may.
    #[error("{0}")]
    TooManyWatches(String),
    /// A failover drill fenced this node: it refuses clients until the drill ends.
    #[error("{0}")]
    DrillInProgress(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every code, its gRPC class and when it happens: the table scripts and docs rely on.
pub const CODES: &[(&str, Code, &str)] = &[
    (
        "invalid_argument",
        Code::InvalidArgument,
        "a name, value, size, encoding, wait or TTL is not valid",
    ),
    (
        "not_found",
        Code::NotFound,
        "no such secret, version, alias, policy or token",
    ),
    (
        "already_exists",
        Code::AlreadyExists,
        "the secret, policy or cluster already exists",
    ),
    (
        "failed_precondition",
        Code::FailedPrecondition,
        "the state does not allow it (e.g. disabling CURRENT)",
    ),
    ("version_disabled", Code::FailedPrecondition, "the version is disabled"),
    (
        "version_destroyed",
        Code::FailedPrecondition,
        "the version is destroyed",
    ),
    (
        "alias_cas_failed",
        Code::Aborted,
        "an alias moved since it was read (compare-and-swap)",
    ),
    (
        "version_race",
        Code::Aborted,
        "concurrent writers kept taking the next version number",
    ),
    (
        "etag_mismatch",
        Code::Aborted,
        "the secret changed since its etag was read; describe it again and retry",
    ),
    (
        "not_bootstrapped",
        Code::Unavailable,
        "the cluster is not bootstrapped yet",
    ),
    (
        "unauthenticated",
        Code::Unauthenticated,
        "no valid token or client certificate",
    ),
    (
        "permission_denied",
        Code::PermissionDenied,
        "no policy allows it, or tenant isolation forbids it",
    ),
    (
        "kms_unavailable",
        Code::Unavailable,
        "no KMS region could wrap or unwrap the data key",
    ),
    (
        "audit_unavailable",
        Code::Unavailable,
        "the audit record could not be written (fail closed)",
    ),
    (
        "no_leader",
        Code::Unavailable,
        "no leader answered in time; a write may still apply, retry",
    ),
    (
        "staleness_unmet",
        Code::FailedPrecondition,
        "a bounded read's staleness bound was not met",
    ),
    (
        "not_caught_up",
        Code::DeadlineExceeded,
        "the replica did not apply the index a read needs in time",
    ),
    (
        "not_a_member",
        Code::Unavailable,
        "this node has not joined the cluster (yet)",
    ),
    (
        "node_removed",
        Code::FailedPrecondition,
        "this node was removed from the cluster",
    ),
    (
        "rate_limited",
        Code::ResourceExhausted,
        "too many unauthenticated requests from one address; retry later or authenticate",
    ),
    (
        "out_of_disk",
        Code::ResourceExhausted,
        "the leader has too little free disk to take writes; nothing was written; free space on the node named",
    ),
    (
        "resync_needed",
        Code::OutOfRange,
        "a watch asked for changes the node no longer holds; read the current state, then watch from now",
    ),
    (
        "too_many_watches",
        Code::ResourceExhausted,
        "the node serves as many watch streams as it may; retry on another node or later",
    ),
    (
        "drill_in_progress",
        Code::Unavailable,
        "a failover drill fenced this node; retry on another node, or after the drill (it ends by itself)",
    ),
    ("unavailable", Code::Unavailable, "a dependency is down; retry"),
    (
        "deadline_exceeded",
        Code::DeadlineExceeded,
        "the request did not finish in time",
    ),
    (
        "unimplemented",
        Code::Unimplemented,
        "the server does not offer this call",
    ),
    (
        "internal",
        Code::Internal,
        "a bug or storage failure; see the node's log",
    ),
];

impl ApiError {
    /// Stable, documented code for scripts (`coffer-error-code` metadata and CLI errors).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::AlreadyExists(_) => "already_exists",
            ApiError::FailedPrecondition(_) => "failed_precondition",
            ApiError::VersionDisabled(_) => "version_disabled",
            ApiError::VersionDestroyed(_) => "version_destroyed",
            ApiError::AliasCasFailed(_) => "alias_cas_failed",
            ApiError::VersionRace(_) => "version_race",
            ApiError::EtagMismatch(_) => "etag_mismatch",
            ApiError::NotBootstrapped(_) => "not_bootstrapped",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::KmsUnavailable(_) => "kms_unavailable",
            ApiError::AuditUnavailable(_) => "audit_unavailable",
            ApiError::NoLeader(_) => "no_leader",
            ApiError::StalenessUnmet(_) => "staleness_unmet",
            ApiError::NotCaughtUp(_) => "not_caught_up",
            ApiError::NotAMember(_) => "not_a_member",
            ApiError::NodeRemoved(_) => "node_removed",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::OutOfDisk(_) => "out_of_disk",
            ApiError::ResyncNeeded(_) => "resync_needed",
            ApiError::TooManyWatches(_) => "too_many_watches",
            ApiError::DrillInProgress(_) => "drill_in_progress",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DeadlineExceeded(_) => "deadline_exceeded",
            ApiError::Unimplemented(_) => "unimplemented",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The gRPC class of [`ApiError::code`], from [`CODES`].
    fn grpc_code(&self) -> Code {
        let code = self.code();
        CODES
            .iter()
            .find(|(c, _, _)| *c == code)
            .map_or(Code::Internal, |(_, g, _)| *g)
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidArgument(msg.into())
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The longest status message sent: a message may quote a client's input, and a header of
/// tens of KiB breaks the HTTP/2 connection instead of carrying an error.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 2048;

impl From<ApiError> for Status {
    /// The status a client gets: its message one line of bounded size, with any terminal
    /// control it quotes escaped ([`crate::safe_text::message`]).
    fn from(e: ApiError) -> Status {
        let message = crate::safe_text::message(&e.to_string(), MAX_STATUS_MESSAGE_BYTES);
        let mut status = Status::new(e.grpc_code(), message);
        if let Ok(v) = e.code().parse() {
            status.metadata_mut().insert(ERROR_CODE_KEY, v);
        }
        status
    }
}

/// The stable code of an error status from a Coffer server, if it carries one.
pub fn code_of(status: &Status) -> Option<&str> {
    status.metadata().get(ERROR_CODE_KEY).and_then(|v| v.to_str().ok())
}

/// A proposal the Raft layer could not get applied: refused by the leader, no leader in time,
/// or the leader out of disk.
impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Rejected(m) => ApiError::FailedPrecondition(m),
            ProposeError::Unavailable(m) => ApiError::NoLeader(m),
            ProposeError::OutOfDisk(m) => ApiError::OutOfDisk(m),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e.code {
            ErrorCode::InvalidArgument => ApiError::InvalidArgument(e.message),
            ErrorCode::NotFound => ApiError::NotFound(e.message),
            ErrorCode::AlreadyExists => ApiError::AlreadyExists(e.message),
            ErrorCode::FailedPrecondition => ApiError::FailedPrecondition(e.message),
            ErrorCode::VersionDisabled => ApiError::VersionDisabled(e.message),
            ErrorCode::VersionDestroyed => ApiError::VersionDestroyed(e.message),
            ErrorCode::CasFailed => ApiError::AliasCasFailed(e.message),
            ErrorCode::VersionConflict => ApiError::VersionRace(e.message),
            ErrorCode::EtagMismatch => ApiError::EtagMismatch(e.message),
            ErrorCode::NotBootstrapped => {
                ApiError::NotBootstrapped(format!("{}; wait for the bootstrap node", e.message))
            }
            ErrorCode::Internal | ErrorCode::Unspecified => ApiError::Internal(e.message),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Model(m) => m.into(),
            QueryError::Io(io) => ApiError::Internal(format!("local replica: {io}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant: a new variant that is not added here (and to [`CODES`]) fails
    /// `every_variant_has_one_documented_code`.
    fn one_of_each() -> Vec<ApiError> {
        let m = || String::from("m");
        vec![
            ApiError::InvalidArgument(m()),
            ApiError::NotFound(m()),
            ApiError::AlreadyExists(m()),
            ApiError::FailedPrecondition(m()),
            ApiError::VersionDisabled(m()),
            ApiError::VersionDestroyed(m()),
            ApiError::AliasCasFailed(m()),
            ApiError::VersionRace(m()),
            ApiError::EtagMismatch(m()),
            ApiError::NotBootstrapped(m()),
            ApiError::Unauthenticated(m()),
            ApiError::PermissionDenied(m()),
            ApiError::KmsUnavailable(m()),
            ApiError::AuditUnavailable(m()),
            ApiError::NoLeader(m()),
            ApiError::StalenessUnmet(m()),
            ApiError::NotCaughtUp(m()),
            ApiError::NotAMember(m()),
            ApiError::NodeRemoved(m()),
            ApiError::RateLimited(m()),
            ApiError::OutOfDisk(m()),
            ApiError::ResyncNeeded(m()),
            ApiError::TooManyWatches(m()),
            ApiError::Unavailable(m()),
            ApiError::DeadlineExceeded(m()),
            ApiError::DrillInProgress(m()),
            ApiError::Unimplemented(m()),
            ApiError::Internal(m()),
        ]
    }

    #[test]
    fn statuses_carry_stable_codes() {
        let s: Status = ApiError::NotFound("secret acme/x not found".into()).into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(code_of(&s), Some("not_found"));
        let s: Status = ApiError::from(ModelError::new(ErrorCode::CasFailed, "moved")).into();
        assert_eq!(s.code(), Code::Aborted);
        assert_eq!(code_of(&s), Some("alias_cas_failed"));
        let s: Status = ApiError::from(ModelError::new(ErrorCode::VersionConflict, "raced")).into();
        assert_eq!((s.code(), code_of(&s)), (Code::Aborted, Some("version_race")));
        let s: Status = ApiError::from(ModelError::new(ErrorCode::VersionDestroyed, "gone")).into();
        assert_eq!(
            (s.code(), code_of(&s)),
            (Code::FailedPrecondition, Some("version_destroyed"))
        );
        let s: Status = ApiError::from(ModelError::new(ErrorCode::NotBootstrapped, "not yet")).into();
        assert_eq!((s.code(), code_of(&s)), (Code::Unavailable, Some("not_bootstrapped")));
        assert_eq!(code_of(&Status::internal("not from coffer")), None);
    }

    #[test]
    fn every_variant_has_one_documented_code() {
        let errors = one_of_each();
        let codes: std::collections::BTreeSet<&str> = errors.iter().map(ApiError::code).collect();
        assert_eq!(codes.len(), errors.len(), "two variants share a code");
        assert_eq!(
            codes.len(),
            CODES.len(),
            "CODES lists a code no variant has, or misses one"
        );
        for e in &errors {
            assert!(
                CODES.iter().any(|(c, _, _)| *c == e.code()),
                "{} is not in CODES",
                e.code()
            );
        }
        // The table in docs/architecture.md is the one users read.
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/architecture.md")).unwrap();
        for (code, grpc, _) in CODES {
            let row = format!("| `{code}` | {grpc:?} |");
            assert!(doc.contains(&row), "docs/architecture.md has no row {row}");
        }
    }

    #[test]
    fn every_model_code_maps_to_its_own_api_code() {
        let all = [
            (ErrorCode::InvalidArgument, "invalid_argument"),
            (ErrorCode::NotFound, "not_found"),
            (ErrorCode::AlreadyExists, "already_exists"),
            (ErrorCode::FailedPrecondition, "failed_precondition"),
            (ErrorCode::CasFailed, "alias_cas_failed"),
            (ErrorCode::VersionConflict, "version_race"),
            (ErrorCode::NotBootstrapped, "not_bootstrapped"),
            (ErrorCode::Internal, "internal"),
            (ErrorCode::VersionDisabled, "version_disabled"),
            (ErrorCode::VersionDestroyed, "version_destroyed"),
            (ErrorCode::EtagMismatch, "etag_mismatch"),
        ];
        for (model, api) in all {
            assert_eq!(ApiError::from(ModelError::new(model, "m")).code(), api, "{model:?}");
        }
    }
}
