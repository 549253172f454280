//! The example configs in deploy/ load and validate (with their TLS files made by a test CA
//! and the bootstrap node's root token hash file written), and a missing hash file, one
//! holding no hash or the all-zero placeholder are refused.

use std::path::Path;

use coffer::config::ServerConfig;
use coffer::tls::issue::DevCa;

/// Makes a CA and `node`'s certificate in `dir` and points the config's `/etc/coffer/tls/`
/// paths there.
fn with_test_tls(text: &str, dir: &Path, node: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let ca = DevCa::generate(&format!("deploy test CA {}", dir.display())).unwrap();
    let cert = ca.issue_node(node, &[&format!("coffer-{node}.internal")]).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("node.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("node-key.pem"), cert.key_pem.as_bytes()).unwrap();
    std::fs::set_permissions(dir.join("node-key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(text.contains("/etc/coffer/tls/"), "the deploy configs use TLS");
    text.replace("/etc/coffer/tls/", &format!("{}/", dir.display()))
}

#[test]
fn deploy_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config");
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let text = with_test_tls(
            &std::fs::read_to_string(&path).unwrap(),
            &tmp.path().join(format!("{stem}-tls")),
            &stem,
        );
        let root_dir = tmp.path().join(format!("{stem}-root"));
        std::fs::create_dir_all(&root_dir).unwrap();
        let hash_file = root_dir.join("root-token.sha256");
        let text = text.replace("/etc/coffer/root/", &format!("{}/", root_dir.display()));
        // The form `sha256sum` writes: the hash, then the file name.
        std::fs::write(&hash_file, format!("{}  -\n", "ab".repeat(32))).unwrap();
        let copy = tmp.path().join(path.file_name().unwrap());
        std::fs::write(&copy, &text).unwrap();
        let cfg = ServerConfig::load(&copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(cfg.regions.len(), 3);
        assert!(cfg.tls.is_some() && !cfg.network.plaintext, "{}: TLS", path.display());
        assert!(cfg.tls_material().unwrap().is_some());
        if cfg.cluster.bootstrap {
            assert_eq!(cfg.cluster.root_token_sha256.as_deref(), Some("ab".repeat(32).as_str()));
            for (content, needle) in [
                (Some("0".repeat(64)), "placeholder"),
                (Some("not a hash".to_string()), "must start with a SHA-256"),
                (None, "root_token_sha256_file"),
            ] {
                match content {
                    Some(c) => std::fs::write(&hash_file, c).unwrap(),
                    None => std::fs::remove_file(&hash_file).unwrap(),
                }
                let err = ServerConfig::load(&copy).unwrap_err().to_string();
                assert!(err.contains(needle), "{needle}: {err}");
            }
            std::fs::write(&hash_file, "ab".repeat(32)).unwrap();
            let both = text.replace(
                "root_token_sha256_file",
                &format!("root_token_sha256 = \"{}\"\nroot_token_sha256_file", "cd".repeat(32)),
            );
            std::fs::write(&copy, both).unwrap();
            let err = ServerConfig::load(&copy).unwrap_err().to_string();
            assert!(err.contains("both set"), "{err}");
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn bad_configs_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let base = with_test_tls(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/eu-west-1.toml")).unwrap(),
        &tmp.path().join("tls"),
        "eu-west-1",
    );
    let tls_dir = tmp.path().join("tls").display().to_string();
    let other = tmp.path().join("other");
    with_test_tls("/etc/coffer/tls/", &other, "us-east-1");
    let no_tls = {
        let start = base.find("[tls]").unwrap();
        let end = base[start..].find("\n\n").unwrap() + start;
        format!("{}{}", &base[..start], &base[end..])
    };
    let swap = |field: &str, file: &str| {
        (
            format!("{field} = \"{tls_dir}/{file}\""),
            format!("{field} = \"{}/{file}\"", other.display()),
        )
    };
    let (cert_from, cert_to) = swap("cert", "node.pem");
    let (ca_from, ca_to) = swap("ca_cert", "ca.pem");
    let (key_from, key_to) = swap("key", "node-key.pem");
    let not_pem = tmp.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let not_pem_ca = format!("hook_ca_file = {:?}\n#", not_pem.display().to_string());
    let p = tmp.path().join("no-tls.toml");
    std::fs::write(&p, &no_tls).unwrap();
    let err = ServerConfig::load(&p).unwrap_err().to_string();
    assert!(
        err.contains("no [tls] section") && err.contains("network.plaintext"),
        "{err}"
    );
    std::fs::write(&p, format!("{no_tls}\n[network]\nplaintext = true\n")).unwrap();
    let err = ServerConfig::load(&p).unwrap_err().to_string();
    assert!(err.contains("needs network.peer_key_file"), "{err}");
    std::fs::write(
        &p,
        format!("{no_tls}\n[network]\nplaintext = true\npeer_key_file = \"/etc/coffer/peer.key\"\n"),
    )
    .unwrap();
    ServerConfig::load(&p).unwrap();
    for (from, to, needle) in [
        (
            "id = 2\nname = \"eu-west-1\"\nregion",
            "id = 0\nname = \"eu-west-1\"\nregion",
            "node.id",
        ),
        (
            "region = \"eu-west\"\nzone",
            "region = \"EU West\"\nzone",
            "node.region",
        ),
        ("heartbeat_ms = 300", "heartbeat_ms = 5000", "election_timeout_min_ms"),
        (
            "api_addr = \"0.0.0.0:7400\"",
            "api_addr = \"not an address\"",
            "api_addr",
        ),
        ("[kms]", "[kms]\nbogus = 1", "bogus"),
        (
            "[cluster]\nid = \"prod-1\"",
            "[cluster]\nid = \"prod-1\"\nrequest_retention_ms = 1000",
            "cluster.request_retention_ms 1000 must be between 30000",
        ),
        (
            "[cluster]\nid = \"prod-1\"",
            "[cluster]\nid = \"prod-1\"\ndefault_max_versions = 0",
            "cluster.default_max_versions 0 must be between 1 and 10000",
        ),
        (
            "[cluster]\nid = \"prod-1\"",
            "[cluster]\nid = \"prod-1\"\ntoken_record_retention_ms = 10",
            "cluster.token_record_retention_ms 10 must be between 1000",
        ),
        (
            "[kms]",
            "[limits]\nwrite_timeout_ms = 0\n\n[kms]",
            "limits.write_timeout_ms",
        ),
        ("[kms]", "[network]\nplaintext = true\n\n[kms]", "both set"),
        (
            "[kms]",
            "[limits]\nanonymous_requests_per_sec = 0\n\n[kms]",
            "limits.anonymous_requests_per_sec 0 must be between 1",
        ),
        (
            "[kms]",
            "[audit]\nmax_file_bytes = 10\n\n[kms]",
            "audit.max_file_bytes 10 must be between 4096",
        ),
        (
            "[kms]",
            "[audit]\nretain_files = 0\n\n[kms]",
            "audit.retain_files 0 must be between 1",
        ),
        (
            "[kms]",
            "[audit]\nsync = \"never\"\n\n[kms]",
            "audit.sync \"never\" must be",
        ),
        (
            "[kms]",
            "[audit]\nsync = \"interval\"\nsync_interval_ms = 0\n\n[kms]",
            "audit.sync_interval_ms 0 must be between 1 and 10000",
        ),
        (
            "[kms]",
            "[audit]\nsync_interval_ms = 50\n\n[kms]",
            "audit.sync_interval_ms needs audit.sync = \"interval\"",
        ),
        (
            "[kms]",
            "[network]\npeer_key_file = \"/etc/coffer/peer.key\"\n\n[kms]",
            "peer_key_file is for plaintext",
        ),
        (
            "hook_timeout_ms = 30000",
            "hook_timeout_ms = 10",
            "rotation.hook_timeout_ms 10 must be between 100 and 300000",
        ),
        (
            "# hook_ca_file",
            "hook_ca_file = \"/nonexistent/rotators.pem\"\n#",
            "rotation.hook_ca_file /nonexistent/rotators.pem",
        ),
        ("# hook_ca_file", not_pem_ca.as_str(), "holds no PEM certificate"),
        (
            "interval_ms = 3600000",
            "interval_ms = 10",
            "backup.interval_ms 10 must be between 1000 and 604800000",
        ),
        ("keep = 24", "keep = 0", "backup.keep 0 must be between 1 and 10000"),
        (
            "dir = \"/var/backups/coffer\"",
            "dir = \"\"",
            "backup.dir must name a folder",
        ),
        (
            "ready_max_staleness_ms = 5000",
            "ready_max_staleness_ms = 5",
            "health.ready_max_staleness_ms 5 must be between 100 and 3600000",
        ),
        ("[tls]", "[tls]\nbogus = 1", "bogus"),
        ("/node.pem\"", "/missing.pem\"", "tls.cert"),
        (cert_from.as_str(), cert_to.as_str(), "is issued by CN=deploy test CA"),
        (ca_from.as_str(), ca_to.as_str(), "not a CA in tls.ca_cert"),
        (key_from.as_str(), key_to.as_str(), "not the private key"),
    ] {
        assert!(base.contains(from), "{from}");
        let p = tmp.path().join("c.toml");
        std::fs::write(&p, base.replacen(from, to, 1)).unwrap();
        let err = ServerConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}
