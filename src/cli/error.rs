//! [`CliError`]: the one line a failed command prints, and the exit code.

/// A failed command: the one line to print, its stable error code and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    /// The stable code (docs/architecture.md: Errors): the server's `coffer-error-code`, the
    /// gRPC class of a transport failure, or the client's own (`unreachable`, `tls_failed`,
    /// `invalid_argument`). `None` for local errors (a file that cannot be read, a bad flag).
    pub kind: Option<String>,
    /// Process exit code.
    pub code: i32,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: None,
            code: 1,
        }
    }

    /// Input the command refuses before sending it (a bad flag value): `invalid_argument`,
    /// like the server's refusal of the same input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(message).with_kind("invalid_argument")
    }

    fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// What goes to stderr: `error[code]: message` (or `error: message` without a code), or
    /// with `--output json` one JSON object `{"error": {"code": …, "message": …}}`.
    pub fn render(&self, json: bool) -> String {
        if json {
            return super::output::json_escape(
                serde_json::json!({"error": {"code": self.kind, "message": self.message}}).to_string(),
            );
        }
        let message = crate::safe_text::text(&self.message).replace('\n', "\n  ");
        match &self.kind {
            Some(kind) => format!("error[{kind}]: {message}"),
            None => format!("error: {message}"),
        }
    }
}

/// A gRPC code as a stable snake_case code (for statuses that carry none of Coffer's own).
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::Cancelled => "cancelled",
        C::Unknown => "unknown",
        C::InvalidArgument => "invalid_argument",
        C::DeadlineExceeded => "deadline_exceeded",
        C::NotFound => "not_found",
        C::AlreadyExists => "already_exists",
        C::PermissionDenied => "permission_denied",
        C::ResourceExhausted => "resource_exhausted",
        C::FailedPrecondition => "failed_precondition",
        C::Aborted => "aborted",
        C::OutOfRange => "out_of_range",
        C::Unimplemented => "unimplemented",
        C::Internal => "internal",
        C::Unavailable => "unavailable",
        C::DataLoss => "data_loss",
        C::Unauthenticated => "unauthenticated",
    }
}

/// Whether this process dialled a plaintext (`http://`) address: a connection torn down at the
/// HTTP/2 level then most likely hit a TLS port.
pub(super) static DIALLED_PLAINTEXT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Transport failures (not answers from the server).
const TRANSPORT_FAILURES: [&str; 6] = [
    "transport error",
    "h2 protocol error",
    "operation was canceled",
    "connection reset",
    "connection closed",
    "broken pipe",
];

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        let transport = TRANSPORT_FAILURES.iter().any(|m| s.message().contains(m));
        let hint = match s.code() {
            tonic::Code::Unauthenticated => "",
            _ if transport && DIALLED_PLAINTEXT.load(std::sync::atomic::Ordering::Relaxed) => {
                " (a plaintext connection was cut: if the server uses TLS, use an https:// address and set \
                 COFFER_CACERT to the cluster's CA file; else is the cluster running? check COFFER_ADDR)"
            }
            tonic::Code::Unavailable if s.message().contains("transport") || s.message().contains("connect") => {
                " (is the cluster running? check COFFER_ADDR)"
            }
            _ => "",
        };
        // One line, whatever the server sent.
        let msg = s.message().replace('\n', " ");
        let kind = crate::error::code_of(&s)
            .unwrap_or(grpc_code_name(s.code()))
            .to_string();
        CliError::new(format!("{msg}{hint}")).with_kind(kind)
    }
}

impl From<crate::client::ClientError> for CliError {
    fn from(e: crate::client::ClientError) -> Self {
        use crate::client::ClientError as E;
        use crate::client::TlsProblem as P;
        let line = match &e {
            E::Connect { .. } => format!("{e}; is the cluster running (make dev)? set COFFER_ADDR"),
            E::Tls { addr, problem } => match problem {
                P::UntrustedServer => format!(
                    "TLS: the server certificate of {addr} is not signed by the CA in COFFER_CACERT (--ca-cert); \
                     point it at the cluster's CA file"
                ),
                P::WrongName => format!(
                    "TLS: the server certificate of {addr} does not name that host; use an address its certificate \
                     names (DNS or IP SAN)"
                ),
                P::Expired => format!("TLS: the server certificate of {addr} has expired or is not valid yet"),
                P::ClientCertRefused => format!(
                    "TLS: {addr} refused the client certificate in COFFER_CLIENT_CERT (--client-cert); use one \
                     signed by the cluster CA"
                ),
                P::NotTls => format!(
                    "TLS: {addr} does not speak TLS; use an http:// address (or unset COFFER_CACERT) for a plaintext \
                     server"
                ),
                P::Other(m) => format!("TLS with {addr} failed: {m}"),
            },
            E::NoCa { addr } => format!(
                "TLS: {addr} is an https:// address but no CA is given; set COFFER_CACERT (--ca-cert) to the \
                 cluster's CA file"
            ),
            E::IncompleteIdentity => {
                "give both --client-cert and --client-key (COFFER_CLIENT_CERT, COFFER_CLIENT_KEY), or neither".into()
            }
            E::BadRequestId(m) => format!("--request-id (COFFER_REQUEST_ID): {m}"),
            _ => e.to_string(),
        };
        let kind = match &e {
            E::Connect { .. } => "unreachable",
            E::Tls { .. } => "tls_failed",
            _ => "invalid_argument",
        };
        CliError::new(line.replace('\n', " ")).with_kind(kind)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_shows_its_code_in_both_outputs() {
        let status: tonic::Status =
            crate::error::ApiError::AliasCasFailed("alias CURRENT of acme/db points at version 3".into()).into();
        let e = CliError::from(status);
        assert_eq!(
            e.render(false),
            "error[alias_cas_failed]: alias CURRENT of acme/db points at version 3"
        );
        let json: serde_json::Value = serde_json::from_str(&e.render(true)).unwrap();
        assert_eq!(json["error"]["code"], "alias_cas_failed");
        assert_eq!(json["error"]["message"], "alias CURRENT of acme/db points at version 3");
    }

    #[test]
    fn a_status_without_a_code_is_named_by_its_grpc_class_and_local_errors_have_none() {
        let e = CliError::from(tonic::Status::unavailable("transport error"));
        assert!(
            e.render(false).starts_with("error[unavailable]: transport error"),
            "{}",
            e.render(false)
        );
        let e = CliError::new("cannot read value.txt: no such file");
        assert_eq!(e.render(false), "error: cannot read value.txt: no such file");
        let json: serde_json::Value = serde_json::from_str(&e.render(true)).unwrap();
        assert!(json["error"]["code"].is_null());
    }
}
