//! TLS on the client API and between nodes: rustls (ring) through tonic.
//!
//! - API port: the node's certificate. Client certificates are optional and, when presented,
//!   must be signed by the cluster CA (they carry mTLS identities; see [`cert_principal`]).
//! - Peer (Raft) port: the handshake requires a client certificate signed by the cluster CA,
//!   and [`NodeCertGuard`] then admits node certificates only (`coffer://node/<name>`). So a
//!   certificate from another CA never completes a handshake, and a principal's certificate
//!   from the right CA gets `PERMISSION_DENIED` on every peer RPC.
//! - Peers dial each other with [`TlsConnector`]: https, the server verified against the
//!   cluster CA and the host of the address dialled (node certificates carry DNS/IP SANs for
//!   their addresses, and the serverAuth usage, which principal certificates lack), presenting
//!   the node's own certificate.
//!
//! Key material is read into [`Zeroizing`] buffers and never printed: Debug output of the types
//! here shows no key bytes.

pub mod bundle;
pub mod identity;
pub mod issue;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_raft::error::AddressError;
use coffer_raft::network::Connector;
use serde::Deserialize;
use tonic::service::Interceptor;
use tonic::transport::Certificate;
use tonic::transport::Channel;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Identity;
use tonic::transport::ServerTlsConfig;
use tonic::Request;
use tonic::Status;
use zeroize::Zeroizing;

/// TLS files (PEM), checked at load. The API port presents `cert` and accepts optional client
/// certificates signed by `ca_cert` (mTLS identities: URI SAN `coffer://principal/<id>`); the
/// peer port requires a node certificate signed by `ca_cert`. See deploy/README.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate(s): they sign every node and client certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate (intermediates may follow it): URI SAN
    /// `coffer://node/<node.name>`, DNS or IP SANs for the addresses peers and clients dial,
    /// extended key usages serverAuth and clientAuth.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, SEC1 or PKCS#1 PEM), readable by the node's user only (0600).
    pub key: PathBuf,
}

pub use identity::cert_identity;
pub use identity::cert_node_name;
pub use identity::cert_principal;
pub use identity::CertIdentity;

/// How long a TLS handshake may take before the connection is dropped (server and client).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A `[tls]` file is missing, unreadable or wrong; `field` names the config field.
    #[error("{field} {path}: {problem}")]
    File {
        field: &'static str,
        path: String,
        problem: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The DER certificates of a PEM buffer, in order (other PEM blocks are skipped).
pub fn pem_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .map_while(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// A node's TLS material: the cluster CA, its certificate and its key, as PEM, checked.
pub struct TlsMaterial {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Zeroizing<Vec<u8>>,
    node_name: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("node_name", &self.node_name)
            .field("key_pem", &format_args!("[redacted]"))
            .finish_non_exhaustive()
    }
}

fn read_file(field: &'static str, path: &Path, private: bool) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    let fail = |problem: String| TlsError::File {
        field,
        path: path.display().to_string(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(fail("is not a file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if private && mode & 0o077 != 0 {
        return Err(fail(format!(
            "is readable by group or others (mode {mode:o}); run chmod 600 on it"
        )));
    }
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| fail(format!("cannot read: {e}")))
}

impl TlsMaterial {
    /// Reads and checks the `[tls]` files of node `node_name`. Errors name the field and file.
    pub fn load(files: &TlsConfig, node_name: &str) -> Result<Self, TlsError> {
        let ca = read_file("tls.ca_cert", &files.ca_cert, false)?;
        let cert = read_file("tls.cert", &files.cert, false)?;
        let key = read_file("tls.key", &files.key, true)?;
        Self::from_pem(&ca, &cert, &key, node_name).map_err(|(field, problem)| {
            let path = match field {
                "tls.ca_cert" => &files.ca_cert,
                "tls.cert" => &files.cert,
                _ => &files.key,
            };
            TlsError::File {
                field,
                path: path.display().to_string(),
                problem,
            }
        })
    }

    /// Checks PEM material: the CA file holds CA certificates; the certificate is a node
    /// certificate for `node_name`, current, issued by one of those CAs; the key is a private
    /// key that belongs to it. Errors are (field, problem).
    pub fn from_pem(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        node_name: &str,
    ) -> Result<Self, (&'static str, String)> {
        let cas = pem_certs(ca_pem);
        if cas.is_empty() {
            return Err(("tls.ca_cert", "holds no PEM certificate (BEGIN CERTIFICATE)".into()));
        }
        let mut ca_subjects = Vec::new();
        for der in &cas {
            let (_, c) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| ("tls.ca_cert", format!("holds a certificate that does not parse: {e}")))?;
            if !c.is_ca() {
                return Err((
                    "tls.ca_cert",
                    format!("{} is not a CA certificate (basicConstraints CA:TRUE)", c.subject()),
                ));
            }
            ca_subjects.push(c.subject().as_raw().to_vec());
        }
        let leaf = pem_certs(cert_pem)
            .into_iter()
            .next()
            .ok_or(("tls.cert", "holds no PEM certificate (BEGIN CERTIFICATE)".to_string()))?;
        let (_, c) = x509_parser::parse_x509_certificate(&leaf)
            .map_err(|e| ("tls.cert", format!("does not parse as a certificate: {e}")))?;
        if !c.validity().is_valid() {
            return Err((
                "tls.cert",
                format!(
                    "is not valid now (valid from {} to {})",
                    c.validity().not_before,
                    c.validity().not_after
                ),
            ));
        }
        if !ca_subjects.iter().any(|s| s.as_slice() == c.issuer().as_raw()) {
            return Err((
                "tls.cert",
                format!("is issued by {}, which is not a CA in tls.ca_cert", c.issuer()),
            ));
        }
        match cert_identity(&leaf) {
            Some(CertIdentity::Node(n)) if n == node_name => {}
            Some(CertIdentity::Node(n)) => {
                return Err((
                    "tls.cert",
                    format!("is the certificate of node {n}, but node.name is {node_name}"),
                ))
            }
            _ => {
                return Err((
                    "tls.cert",
                    format!("is not a node certificate: it needs the URI SAN coffer://node/{node_name}"),
                ))
            }
        }
        let has_key = x509_parser::pem::Pem::iter_from_buffer(key_pem)
            .map_while(Result::ok)
            .any(|p| p.label.ends_with("PRIVATE KEY"));
        if !has_key {
            return Err(("tls.key", "holds no PEM private key (BEGIN PRIVATE KEY)".into()));
        }
        let m = Self {
            ca_pem: ca_pem.to_vec(),
            cert_pem: cert_pem.to_vec(),
            key_pem: Zeroizing::new(key_pem.to_vec()),
            node_name: node_name.to_string(),
        };
        // rustls checks that the key loads and matches the certificate.
        if let Err(e) = tonic::transport::Server::builder().tls_config(m.peer_server()) {
            let chain = crate::client::error::error_chain(&e);
            let problem = if chain.contains("KeyMismatch") || chain.contains("nconsistent") {
                "is not the private key of the certificate in tls.cert".to_string()
            } else {
                format!("does not load with tls.cert: {chain}")
            };
            return Err(("tls.key", problem));
        }
        Ok(m)
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &*self.key_pem)
    }

    /// The HTTP API port: the node's certificate; callers authenticate with tokens.
    pub fn http_server(&self) -> Result<std::sync::Arc<tokio_rustls::rustls::ServerConfig>, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let bad = |field: &'static str, problem: String| TlsError::File {
            field,
            path: format!("(node {})", self.node_name),
            problem,
        };
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("tls.cert", format!("{e:?}")))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| bad("tls.key", format!("not a private key in PEM ({e:?})")))?;
        let mut cfg =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| bad("tls.cert", e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| bad("tls.cert", e.to_string()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(std::sync::Arc::new(cfg))
    }

    /// The API port: client certificates optional, verified against the CA when given.
    pub fn api_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(true)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The peer port: a client certificate signed by the CA is required.
    pub fn peer_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// How this node dials its peers.
    pub fn connector(&self) -> TlsConnector {
        TlsConnector {
            tls: ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&self.ca_pem))
                .identity(self.identity())
                .timeout(HANDSHAKE_TIMEOUT),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Peer channels over mutual TLS: https to `addr`, the server's certificate verified against
/// the cluster CA and `addr`'s host, this node's certificate as client identity.
#[derive(Clone)]
pub struct TlsConnector {
    tls: ClientTlsConfig,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // ClientTlsConfig's own Debug would print the key.
        f.debug_struct("TlsConnector")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector for TlsConnector {
    fn channel(&self, addr: &str) -> Result<Channel, AddressError> {
        let ep = coffer_raft::network::peer_endpoint("https", addr, self.connect_timeout)?
            .tls_config(self.tls.clone())
            .map_err(|e| AddressError {
                addr: addr.to_string(),
                reason: format!("TLS settings: {e}"),
            })?;
        Ok(ep.connect_lazy())
    }

    fn credential(&self) -> coffer_raft::peer_auth::PeerCredential {
        // The client certificate proves membership (see NodeCertGuard).
        coffer_raft::peer_auth::PeerCredential::none()
    }
}

/// The name of the node whose certificate sent a peer request (a request extension set by
/// [`NodeCertGuard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode(pub String);

/// Interceptor of the peer (Raft) service with TLS on: it admits only requests whose verified
/// client certificate is a node certificate (plaintext peers prove membership with the
/// cluster's peer key instead: see the `peer_guard` module).
///
/// It reads the certificate through [`tonic::Request::peer_certs`], which sees connections
/// accepted by tonic's TLS over TCP streams (what [`crate::node::run`] serves).
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeCertGuard;

impl Interceptor for NodeCertGuard {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let leaf = req.peer_certs().and_then(|c| c.first().map(|d| d.as_ref().to_vec()));
        let Some(leaf) = leaf else {
            metrics::counter!("coffer_peer_rpc_refused_total", "reason" => "no_certificate").increment(1);
            return Err(Status::unauthenticated(
                "peer RPCs need a node certificate signed by the cluster CA",
            ));
        };
        match cert_identity(&leaf) {
            Some(CertIdentity::Node(name)) => {
                req.extensions_mut().insert(PeerNode(name));
                Ok(req)
            }
            other => {
                metrics::counter!("coffer_peer_rpc_refused_total", "reason" => "not_a_node").increment(1);
                let who = match other {
                    Some(CertIdentity::Principal(p)) => format!("principal {p}"),
                    _ => "no Coffer identity".to_string(),
                };
                tracing::warn!("refused a peer RPC from a certificate that is not a node's ({who})");
                Err(Status::permission_denied(format!(
                    "the peer port admits node certificates (URI SAN coffer://node/<name>) only; this one names {who}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests;
