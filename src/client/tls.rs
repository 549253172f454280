//! TLS settings of the SDK and the CLI, and the one-line explanation of a failed handshake.
//!
//! Invariants: a client that was given a CA verifies the server against that CA only (no
//! system roots); the client key is held in a [`Zeroizing`] buffer and never printed.

use std::path::Path;

use tonic::transport::Certificate;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Identity;
use zeroize::Zeroizing;

use super::error::ClientError;

/// How a client speaks TLS to Coffer: the CA that signs the servers' certificates and,
/// optionally, a client certificate (an mTLS identity: URI SAN `coffer://principal/<id>`).
#[derive(Clone, Default)]
pub struct ClientTls {
    /// PEM of the CA certificate(s).
    pub ca_cert_pem: Vec<u8>,
    /// PEM client certificate and key.
    pub identity: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
    /// Verify the server's certificate for this name instead of the host dialled.
    pub domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_cert_pem", &format_args!("[{} bytes]", self.ca_cert_pem.len()))
            .field(
                "identity",
                &self.identity.as_ref().map(|_| "[client certificate, key redacted]"),
            )
            .field("domain", &self.domain)
            .finish()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| ClientError::TlsFile {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

impl ClientTls {
    /// Trusts the CA(s) in `ca_cert_pem`.
    pub fn new(ca_cert_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_cert_pem: ca_cert_pem.into(),
            ..Self::default()
        }
    }

    /// Presents this client certificate.
    pub fn with_identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), Zeroizing::new(key_pem.into())));
        self
    }

    /// Reads PEM files: the CA, and a client certificate and key (both or neither).
    pub fn from_files(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Self, ClientError> {
        let ca_pem = read("CA certificate", ca)?;
        if crate::tls::pem_certs(&ca_pem).is_empty() {
            return Err(ClientError::TlsFile {
                what: "CA certificate",
                path: ca.display().to_string(),
                reason: "it holds no PEM certificate (BEGIN CERTIFICATE)".into(),
            });
        }
        let mut tls = Self::new(ca_pem.to_vec());
        match (cert, key) {
            (Some(c), Some(k)) => {
                let cert_pem = read("client certificate", c)?;
                let key_pem = read("client key", k)?;
                tls.identity = Some((cert_pem.to_vec(), key_pem));
            }
            (None, None) => {}
            _ => return Err(ClientError::IncompleteIdentity),
        }
        Ok(tls)
    }

    /// tonic's settings (never Debug-print them: they hold the key).
    pub(crate) fn tonic_config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_cert_pem))
            .timeout(crate::tls::HANDSHAKE_TIMEOUT);
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, &**key));
        }
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        c
    }
}
