//! [`SdkError`]: what a call can fail with, with the server's stable code when it gave one.

/// A failed call. `code()` is the server's stable code (docs/architecture.md: Errors) or one of
/// the SDK's own: `unreachable` (no node answered), `max_stale_exceeded`, `revoked`,
/// `invalid_config`.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The server refused the call or failed it.
    #[error("{code}: {message}")]
    Server { code: String, message: String },
    /// No endpoint answered (every one tried, with retries).
    #[error("unreachable: no Coffer node answered ({0})")]
    Unreachable(String),
    /// The cached value is older than `max_stale` and no refresh succeeded.
    #[error("max_stale_exceeded: {name}: no node answered for {age_ms} ms, longer than max_stale ({max_stale_ms} ms); last error: {last}")]
    MaxStaleExceeded {
        name: String,
        age_ms: u64,
        max_stale_ms: u64,
        last: String,
    },
    /// A critical secret could not be read at startup.
    #[error("critical secret {name} cannot be read: {source}")]
    Critical {
        name: String,
        #[source]
        source: Box<SdkError>,
    },
    #[error("invalid_config: {0}")]
    InvalidConfig(String),
}

impl SdkError {
    /// The stable code of this error.
    pub fn code(&self) -> &str {
        match self {
            SdkError::Server { code, .. } => code,
            SdkError::Unreachable(_) => "unreachable",
            SdkError::MaxStaleExceeded { .. } => "max_stale_exceeded",
            SdkError::Critical { source, .. } => source.code(),
            SdkError::InvalidConfig(_) => "invalid_config",
        }
    }

    /// From a gRPC status: the server's stable code (`coffer-error-code`) when it sent one.
    pub fn from_status(s: &tonic::Status) -> Self {
        let code = s
            .metadata()
            .get("coffer-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match code {
            Some(code) => SdkError::Server {
                code,
                message: s.message().to_string(),
            },
            None if is_transport(s) => SdkError::Unreachable(s.message().to_string()),
            None => SdkError::Server {
                code: format!("{:?}", s.code()).to_lowercase(),
                message: s.message().to_string(),
            },
        }
    }

    /// Whether another attempt (on this node later, or another node) may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            SdkError::Unreachable(_) => true,
            SdkError::Server { code, .. } => matches!(
                code.as_str(),
                "unavailable"
                    | "no_leader"
                    | "not_caught_up"
                    | "not_a_member"
                    | "node_removed"
                    | "kms_unavailable"
                    | "audit_unavailable"
                    | "deadline_exceeded"
                    | "staleness_unmet"
                    | "too_many_watches"
                    | "out_of_disk"
                    | "unknown"
                    | "cancelled"
            ),
            _ => false,
        }
    }
}

/// A status tonic made up because the connection failed (no server code).
fn is_transport(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    )
}
