//! Certificates for `coffer dev --tls` and tests: a throwaway CA that issues node and client
//! certificates (rcgen with ring, ECDSA P-256). Production clusters bring their own PKI; see
//! deploy/README.md.
//!
//! Invariants:
//! - Node certificates carry `coffer://node/<name>` plus a DNS or IP SAN per host, and both
//!   serverAuth and clientAuth extended key usages (a node serves, and dials its peers).
//! - Client certificates carry `coffer://principal/<id>` and clientAuth only, so one can never
//!   pass as a server (rustls checks the extended key usage).
//! - Private keys live in [`Zeroizing`] strings and never appear in Debug output.

use std::net::IpAddr;

use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::DistinguishedName;
use rcgen::DnType;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::Issuer;
use rcgen::KeyPair;
use rcgen::KeyUsagePurpose;
use rcgen::SanType;
use rcgen::SerialNumber;
use zeroize::Zeroizing;

use super::identity;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A PEM certificate and its PEM private key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &format_args!("[{} bytes]", self.cert_pem.len()))
            .field("key_pem", &format_args!("[redacted]"))
            .finish()
    }
}

/// A certificate authority for dev clusters and tests.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// The calendar year now (close enough for validity windows that start a year back).
fn this_year() -> i32 {
    1970 + (crate::time::now_ms() / 1000 / 31_556_952) as i32
}

/// A random positive 128-bit serial.
fn serial() -> Result<SerialNumber, IssueError> {
    let mut b = crate::crypto::random_bytes::<16>().map_err(|e| IssueError::Invalid(e.to_string()))?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl DevCa {
    /// A fresh self-signed CA valid from last year for ten years.
    pub fn generate(common_name: &str) -> Result<Self, IssueError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(common_name);
        let year = this_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
        params.serial_number = Some(serial()?);
        let cert = params.self_signed(&key)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    /// A CA made by [`DevCa::generate`], loaded back from its PEM files. Only such CAs load:
    /// the issuer name is rebuilt from the common name, which is how `generate` wrote it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IssueError> {
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| IssueError::Invalid(format!("the CA key does not load: {e}")))?;
        let der = super::pem_certs(cert_pem.as_bytes())
            .into_iter()
            .next()
            .ok_or_else(|| IssueError::Invalid("the CA file holds no certificate".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| IssueError::Invalid(format!("the CA certificate does not parse: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(IssueError::Invalid(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or_else(|| IssueError::Invalid("the CA certificate has no common name".into()))?
            .to_string();
        Ok(Self {
            issuer: Issuer::new(ca_params(&cn), key),
            cert_pem: cert_pem.to_string(),
            key_pem: Zeroizing::new(key_pem.to_string()),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A node certificate: `coffer://node/<name>` and one DNS or IP SAN per host.
    pub fn issue_node(&self, name: &str, hosts: &[&str]) -> Result<Issued, IssueError> {
        if !coffer_model::names::is_valid_segment(name) {
            return Err(IssueError::Invalid(format!(
                "node name {name:?} must match [a-z0-9][a-z0-9._-]{{0,62}}"
            )));
        }
        let mut sans = vec![SanType::URI(identity::node_uri(name).try_into()?)];
        for h in hosts {
            sans.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*h).try_into()?),
            });
        }
        self.issue(
            name,
            sans,
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A client certificate for `principal` (a principal id, e.g. `user:dev-admin`).
    pub fn issue_client(&self, principal: &str) -> Result<Issued, IssueError> {
        let uri = identity::principal_uri(principal);
        let sans = vec![SanType::URI(uri.as_str().try_into()?)];
        self.issue(principal, sans, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A certificate with arbitrary SANs and usages (tests of odd certificates).
    pub fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Issued, IssueError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        let year = this_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 5, 1, 1);
        params.serial_number = Some(serial()?);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}
