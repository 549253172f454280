//! Unit tests: URI SAN parsing, certificate generation, and the checks of `[tls]` material.

use rcgen::ExtendedKeyUsagePurpose;
use rcgen::SanType;

use super::identity::cert_identity;
use super::issue::DevCa;
use super::*;

fn der(pem: &str) -> Vec<u8> {
    pem_certs(pem.as_bytes()).into_iter().next().expect("a certificate")
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().expect("ia5"))
}

fn with_sans(ca: &DevCa, sans: Vec<SanType>) -> Vec<u8> {
    der(&ca
        .issue("odd", sans, vec![ExtendedKeyUsagePurpose::ClientAuth])
        .unwrap()
        .cert_pem)
}

#[test]
fn node_and_client_certificates_name_their_identity() {
    let ca = DevCa::generate("test CA").unwrap();
    let node = ca.issue_node("us-east-1", &["127.0.0.1", "node1.internal"]).unwrap();
    let client = ca.issue_client("service:acme:api").unwrap();
    assert_eq!(cert_node_name(&der(&node.cert_pem)).as_deref(), Some("us-east-1"));
    assert_eq!(cert_principal(&der(&node.cert_pem)), None);
    assert_eq!(
        cert_principal(&der(&client.cert_pem)).as_deref(),
        Some("service:acme:api")
    );
    assert_eq!(cert_node_name(&der(&client.cert_pem)), None);
    assert_eq!(
        cert_identity(&der(&ca.issue_client("user:dev-admin").unwrap().cert_pem)),
        Some(CertIdentity::Principal("user:dev-admin".into()))
    );
}

#[test]
fn malformed_or_ambiguous_identities_name_nobody() {
    let ca = DevCa::generate("test CA").unwrap();
    for sans in [
        vec![],
        vec![SanType::DnsName("example.com".try_into().unwrap())],
        vec![uri("coffer://principal/")],
        vec![uri("coffer://principal/nocolon")],
        vec![uri("coffer://principal/service:acme:api/extra")],
        vec![uri("coffer://principal/service:acme:a%20b")],
        vec![uri("coffer://principal/service:*:api")],
        vec![uri("coffer://node/")],
        vec![uri("coffer://node/Upper")],
        vec![uri("coffer://node/a/b")],
        vec![uri("COFFER://node/x")],
        vec![uri("coffer://other/x")],
        vec![uri("coffer://node/a"), uri("coffer://node/b")],
        vec![uri("coffer://node/a"), uri("coffer://principal/user:bob")],
        vec![uri("coffer://principal/user:bob"), uri("coffer://principal/user:bob")],
    ] {
        let shown = format!("{sans:?}");
        let d = with_sans(&ca, sans);
        assert_eq!(cert_identity(&d), None, "{shown}");
        assert_eq!(cert_principal(&d), None, "{shown}");
        assert_eq!(cert_node_name(&d), None, "{shown}");
    }
    // Foreign URIs are ignored next to a Coffer one.
    let d = with_sans(
        &ca,
        vec![uri("spiffe://acme/api"), uri("coffer://principal/service:acme:api")],
    );
    assert_eq!(cert_principal(&d).as_deref(), Some("service:acme:api"));
}

#[test]
fn garbage_never_panics() {
    let ca = DevCa::generate("test CA").unwrap();
    let good = der(&ca.issue_client("user:bob").unwrap().cert_pem);
    for n in [0, 1, 10, good.len() / 2, good.len() - 1] {
        assert_eq!(cert_identity(&good[..n]), None);
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(cert_identity(&trailing), None);
    let mut flipped = good.clone();
    for i in (0..flipped.len()).step_by(7) {
        flipped[i] ^= 0x5a;
        let _ = cert_identity(&flipped);
    }
}

#[test]
fn a_dev_ca_reloads_from_pem_and_keeps_issuing() {
    let ca = DevCa::generate("Coffer dev CA x").unwrap();
    let again = DevCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    let node = again.issue_node("eu-west-1", &["127.0.0.1"]).unwrap();
    // The reloaded CA's certificates pass the same checks as the original's.
    TlsMaterial::from_pem(
        ca.cert_pem().as_bytes(),
        node.cert_pem.as_bytes(),
        node.key_pem.as_bytes(),
        "eu-west-1",
    )
    .unwrap();
    let other = DevCa::generate("other").unwrap();
    let err = DevCa::from_pem(ca.cert_pem(), other.key_pem()).unwrap_err().to_string();
    assert!(err.contains("does not belong"), "{err}");
}

#[test]
fn material_checks_name_the_field_and_the_problem() {
    let ca = DevCa::generate("CA one").unwrap();
    let other = DevCa::generate("CA two").unwrap();
    let node = ca.issue_node("n1", &["127.0.0.1"]).unwrap();
    let node2 = ca.issue_node("n2", &["127.0.0.1"]).unwrap();
    let client = ca.issue_client("user:bob").unwrap();
    let foreign = other.issue_node("n1", &["127.0.0.1"]).unwrap();
    let check = |ca_pem: &str, cert: &str, key: &str, name: &str| {
        TlsMaterial::from_pem(ca_pem.as_bytes(), cert.as_bytes(), key.as_bytes(), name)
            .map(|m| m.node_name().to_string())
    };
    assert_eq!(check(ca.cert_pem(), &node.cert_pem, &node.key_pem, "n1").unwrap(), "n1");
    let cases = [
        (
            check("", &node.cert_pem, &node.key_pem, "n1"),
            "tls.ca_cert",
            "no PEM certificate",
        ),
        (
            check(&node.cert_pem, &node.cert_pem, &node.key_pem, "n1"),
            "tls.ca_cert",
            "not a CA",
        ),
        (
            check(ca.cert_pem(), "", &node.key_pem, "n1"),
            "tls.cert",
            "no PEM certificate",
        ),
        (
            check(ca.cert_pem(), &foreign.cert_pem, &foreign.key_pem, "n1"),
            "tls.cert",
            "not a CA in tls.ca_cert",
        ),
        (
            check(ca.cert_pem(), &node.cert_pem, &node.key_pem, "n2"),
            "tls.cert",
            "node n1, but node.name is n2",
        ),
        (
            check(ca.cert_pem(), &client.cert_pem, &client.key_pem, "n1"),
            "tls.cert",
            "not a node certificate",
        ),
        (
            check(ca.cert_pem(), &node.cert_pem, &node.cert_pem, "n1"),
            "tls.key",
            "no PEM private key",
        ),
        (
            check(ca.cert_pem(), &node.cert_pem, &node2.key_pem, "n1"),
            "tls.key",
            "not the private key",
        ),
    ];
    for (i, (r, field, needle)) in cases.into_iter().enumerate() {
        let (f, problem) = r.expect_err(&format!("case {i} must fail"));
        assert_eq!(f, field, "case {i}: {problem}");
        assert!(problem.contains(needle), "case {i}: {problem}");
    }
}

#[test]
fn load_reads_files_and_refuses_a_shared_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::generate("CA").unwrap();
    let node = ca.issue_node("n1", &["127.0.0.1"]).unwrap();
    let files = crate::tls::TlsConfig {
        ca_cert: dir.path().join("ca.pem"),
        cert: dir.path().join("n1.pem"),
        key: dir.path().join("n1-key.pem"),
    };
    let missing = TlsMaterial::load(&files, "n1").unwrap_err().to_string();
    assert!(
        missing.starts_with("tls.ca_cert ") && missing.contains("cannot read"),
        "{missing}"
    );
    std::fs::write(&files.ca_cert, ca.cert_pem()).unwrap();
    std::fs::write(&files.cert, &node.cert_pem).unwrap();
    std::fs::write(&files.key, node.key_pem.as_bytes()).unwrap();
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shared = TlsMaterial::load(&files, "n1").unwrap_err().to_string();
    assert!(shared.contains("tls.key") && shared.contains("chmod 600"), "{shared}");
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = TlsMaterial::load(&files, "n1").unwrap();
    let shown = format!("{m:?} {:?} {node:?}", m.connector());
    assert!(!shown.contains("PRIVATE KEY") && shown.contains("redacted"), "{shown}");
}

#[test]
fn the_peer_guard_admits_node_certificates_only() {
    // Without a TLS connection there is no certificate: refused.
    let s = NodeCertGuard.call(Request::new(())).unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated);
}
