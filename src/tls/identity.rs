//! Who a certificate says it is: the `coffer://` URI SAN.
//!
//! Invariants:
//! - A certificate names at most one Coffer identity. Two `coffer://` URIs, or one that does not
//!   parse, make the whole certificate name nobody (never "the first one wins").
//! - Node certificates carry `coffer://node/<node-name>` (a valid name segment); client
//!   certificates carry `coffer://principal/<principal-id>` (a principal id as policies spell
//!   it, e.g. `service:acme:api`). Other URI SANs (SPIFFE ids, say) are ignored.
//! - Parsing never panics: the bytes come from a TLS peer.

use x509_parser::extensions::GeneralName;

/// URI SAN prefix of node certificates.
pub const NODE_URI_PREFIX: &str = "coffer://node/";
/// URI SAN prefix of client (principal) certificates.
pub const PRINCIPAL_URI_PREFIX: &str = "coffer://principal/";
const SCHEME: &str = "coffer://";

/// The Coffer identity of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    /// A cluster node, by name.
    Node(String),
    /// A client principal id.
    Principal(String),
}

/// The identity a DER certificate claims in its URI SANs, or None when it claims none, claims
/// two, or the claim (or the certificate) is malformed. Says nothing about who signed it: only
/// call this on certificates the TLS layer has already verified.
pub fn cert_identity(der: &[u8]) -> Option<CertIdentity> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let is_coffer = uri.get(..SCHEME.len()).is_some_and(|s| s.eq_ignore_ascii_case(SCHEME));
        if !is_coffer {
            continue;
        }
        let id = parse_uri(uri)?;
        if found.replace(id).is_some() {
            return None;
        }
    }
    found
}

/// The principal of a client certificate (`coffer://principal/<id>`), None if it has no such
/// SAN or it is malformed.
pub fn cert_principal(der: &[u8]) -> Option<String> {
    match cert_identity(der)? {
        CertIdentity::Principal(p) => Some(p),
        CertIdentity::Node(_) => None,
    }
}

/// The node name of a node certificate (`coffer://node/<name>`), None if it has no such SAN or
/// it is malformed.
pub fn cert_node_name(der: &[u8]) -> Option<String> {
    match cert_identity(der)? {
        CertIdentity::Node(n) => Some(n),
        CertIdentity::Principal(_) => None,
    }
}

/// `coffer://node/NAME` or `coffer://principal/ID`, exactly (no query, fragment, percent
/// escapes or trailing slash).
fn parse_uri(uri: &str) -> Option<CertIdentity> {
    if let Some(name) = uri.strip_prefix(NODE_URI_PREFIX) {
        return coffer_model::names::is_valid_segment(name).then(|| CertIdentity::Node(name.to_string()));
    }
    let id = uri.strip_prefix(PRINCIPAL_URI_PREFIX)?;
    let plain = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.' | b'@'));
    (plain && crate::authz::policy::parse_principal(id).is_ok()).then(|| CertIdentity::Principal(id.to_string()))
}

/// The node URI SAN for `name`.
pub fn node_uri(name: &str) -> String {
    format!("{NODE_URI_PREFIX}{name}")
}

/// The principal URI SAN for `principal`.
pub fn principal_uri(principal: &str) -> String {
    format!("{PRINCIPAL_URI_PREFIX}{principal}")
}
