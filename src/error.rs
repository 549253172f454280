//! Coffer's API errors with stable codes, mapped to `tonic::Status` in one place.
//!
//! Error messages say what went wrong and what to do; they never contain secret values.

use coffer_raft::model_error::ModelError;
use coffer_raft::query::QueryError;
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
    /// An alias compare-and-swap or version race failed; re-read and retry.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Stable, documented code for scripts (`coffer-error-code` metadata and CLI JSON errors).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::AlreadyExists(_) => "already_exists",
            ApiError::FailedPrecondition(_) => "failed_precondition",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DeadlineExceeded(_) => "deadline_exceeded",
            ApiError::Unimplemented(_) => "unimplemented",
            ApiError::Internal(_) => "internal",
        }
    }

    fn grpc_code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Conflict(_) => Code::Aborted,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ApiError::Unimplemented(_) => Code::Unimplemented,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidArgument(msg.into())
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let mut status = Status::new(e.grpc_code(), e.to_string());
        if let Ok(v) = e.code().parse() {
            status.metadata_mut().insert(ERROR_CODE_KEY, v);
        }
        status
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e.code {
            ErrorCode::InvalidArgument => ApiError::InvalidArgument(e.message),
            ErrorCode::NotFound => ApiError::NotFound(e.message),
            ErrorCode::AlreadyExists => ApiError::AlreadyExists(e.message),
            ErrorCode::FailedPrecondition => ApiError::FailedPrecondition(e.message),
            ErrorCode::CasFailed | ErrorCode::VersionConflict => ApiError::Conflict(e.message),
            ErrorCode::NotBootstrapped => ApiError::Unavailable(format!("{}; wait for the bootstrap node", e.message)),
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

    #[test]
    fn statuses_carry_stable_codes() {
        let s: Status = ApiError::NotFound("secret acme/x not found".into()).into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.metadata().get(ERROR_CODE_KEY).unwrap(), "not_found");
        let s: Status = ApiError::from(ModelError::new(ErrorCode::CasFailed, "moved")).into();
        assert_eq!(s.code(), Code::Aborted);
        assert_eq!(s.metadata().get(ERROR_CODE_KEY).unwrap(), "conflict");
    }
}
