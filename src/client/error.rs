//! What can go wrong on the client side before the server answers, in words a user can act on.

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("the token contains characters that cannot be sent; check COFFER_TOKEN")]
    BadToken,
    #[error("cannot reach coffer at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("TLS with {addr} failed: {problem}")]
    Tls { addr: String, problem: TlsProblem },
    #[error("{addr} is an https:// address but no CA certificate was given to verify the server")]
    NoCa { addr: String },
    #[error("cannot read the {what} {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("give both a client certificate and its key, or neither")]
    IncompleteIdentity,
    #[error("invalid request id: {0}")]
    BadRequestId(String),
}

/// Why a TLS connection failed, as the user can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    /// The server's certificate does not chain to the CA the client trusts.
    UntrustedServer,
    /// The certificate is not valid for the host dialled.
    WrongName,
    /// The certificate has expired or is not valid yet.
    Expired,
    /// The server refused the client certificate (or required one and got none).
    ClientCertRefused,
    /// The server does not speak TLS.
    NotTls,
    /// Anything else, in rustls' words.
    Other(String),
}

impl std::fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsProblem::UntrustedServer => f.write_str("the server certificate is not signed by the given CA"),
            TlsProblem::WrongName => f.write_str("the server certificate is not valid for the address dialled"),
            TlsProblem::Expired => f.write_str("the server certificate has expired or is not valid yet"),
            TlsProblem::ClientCertRefused => f.write_str("the server refused the client certificate"),
            TlsProblem::NotTls => f.write_str("the server did not answer in TLS (a plaintext server?)"),
            TlsProblem::Other(m) => f.write_str(m),
        }
    }
}

/// Recognises a TLS failure in a one-line error chain (rustls' error names).
pub fn classify(chain: &str) -> Option<TlsProblem> {
    let has = |s: &str| chain.contains(s);
    Some(
        if has("UnknownIssuer") || has("BadSignature") || (has("UnknownCA") && !has("received fatal alert")) {
            TlsProblem::UntrustedServer
        } else if has("NotValidForName") || has("not valid for name") {
            TlsProblem::WrongName
        } else if has("Expired") || has("expired") || has("NotValidYet") {
            TlsProblem::Expired
        } else if has("CertificateRequired")
            || (has("received fatal alert") && (has("UnknownCA") || has("BadCertificate")))
        {
            TlsProblem::ClientCertRefused
        } else if has("InvalidContentType") || has("corrupt message") || has("HTTP/2 was not negotiated") {
            TlsProblem::NotTls
        } else if has("invalid peer certificate") || has("tls handshake") || has("TLS handshake") {
            TlsProblem::Other(chain.to_string())
        } else {
            return None;
        },
    )
}
/// `e: cause: cause` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
