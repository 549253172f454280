//! [`CliError`]: the one line a failed command prints, and the exit code.

/// A failed command: the one line to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
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
        CliError::new(format!("{msg}{hint}"))
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
        CliError::new(line.replace('\n', " "))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(e.to_string())
    }
}
