//! The example configs in deploy/ load and validate (with the placeholder hash replaced), and
//! the placeholder itself is refused.

use std::path::Path;

use coffer::config::ServerConfig;

#[test]
fn deploy_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config");
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let fixed = text.replace(&"0".repeat(64), &"ab".repeat(32));
        let copy = tmp.path().join(path.file_name().unwrap());
        std::fs::write(&copy, &fixed).unwrap();
        let cfg = ServerConfig::load(&copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(cfg.regions.len(), 3);
        if cfg.cluster.bootstrap {
            std::fs::write(&copy, &text).unwrap();
            let err = ServerConfig::load(&copy).unwrap_err().to_string();
            assert!(err.contains("placeholder"), "{err}");
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn bad_configs_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/eu-west-1.toml")).unwrap();
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
    ] {
        assert!(base.contains(from), "{from}");
        let p = tmp.path().join("c.toml");
        std::fs::write(&p, base.replacen(from, to, 1)).unwrap();
        let err = ServerConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}
