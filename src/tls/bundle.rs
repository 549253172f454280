//! `coffer tls issue`: a throwaway CA and the certificates of a whole cluster, laid out one
//! folder per node or client so each can be mounted on its own (deploy/compose.yaml does).
//!
//! Layout under the bundle folder:
//! - `ca/ca.pem`: the CA certificate alone (what clients mount); `ca-key.pem`: its key, needed
//!   only to issue more;
//! - `<node>/ca.pem`, `<node>/node.pem`, `<node>/node-key.pem`;
//! - `<client>/ca.pem`, `<client>/client.pem`, `<client>/client-key.pem`.
//!
//! Invariants: a rerun keeps every file that exists (certificates are only made for what is
//! missing, by the CA already there), so running it on every start is safe; private keys are
//! written mode 0600 through a temporary file and a rename, so a key is never seen half
//! written nor readable by others.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::issue::DevCa;
use super::issue::Issued;

/// A node to certify: its name (`coffer://node/<name>`) and the hosts it is dialled at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub hosts: Vec<String>,
}

/// A client identity: the folder it goes in and its principal (`coffer://principal/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub folder: String,
    pub principal: String,
}

/// What a run did with one folder of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub folder: String,
    pub made: bool,
}

impl NodeSpec {
    /// `NAME=HOST[,HOST...]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, hosts) = s
            .split_once('=')
            .ok_or_else(|| format!("--node {s:?}: expected NAME=HOST[,HOST...]"))?;
        let hosts: Vec<String> = hosts.split(',').map(str::trim).map(String::from).collect();
        if hosts.iter().any(String::is_empty) {
            return Err(format!("--node {s:?}: a host is empty"));
        }
        check_folder("node name", name)?;
        Ok(Self {
            name: name.to_string(),
            hosts,
        })
    }
}

impl ClientSpec {
    /// `FOLDER=PRINCIPAL`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (folder, principal) = s
            .split_once('=')
            .ok_or_else(|| format!("--client {s:?}: expected FOLDER=PRINCIPAL (e.g. admin=user:ops-admin)"))?;
        check_folder("client folder", folder)?;
        if principal.is_empty() || principal.len() > 256 || principal.chars().any(|c| c.is_control() || c == '/') {
            return Err(format!(
                "--client {s:?}: the principal must be 1-256 characters without '/' or control characters"
            ));
        }
        Ok(Self {
            folder: folder.to_string(),
            principal: principal.to_string(),
        })
    }
}

fn check_folder(what: &str, name: &str) -> Result<(), String> {
    if !coffer_model::names::is_valid_segment(name) || name == "ca" || name == "ca-key.pem" {
        return Err(format!(
            "{what} {name:?} must match [a-z0-9][a-z0-9._-]{{0,62}} and not be \"ca\" or \"ca-key.pem\""
        ));
    }
    Ok(())
}

/// Makes what is missing of the bundle in `dir` (see the module doc) and says, per folder,
/// whether it was made or kept. Folders must be distinct.
pub fn ensure(dir: &Path, ca_name: &str, nodes: &[NodeSpec], clients: &[ClientSpec]) -> Result<Vec<Outcome>, String> {
    let mut folders: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    folders.extend(clients.iter().map(|c| c.folder.as_str()));
    let mut sorted = folders.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "{:?} is named twice: every node and client needs its own folder",
            w[0]
        ));
    }
    let ca_dir = dir.join("ca");
    let (ca_cert, ca_key) = (ca_dir.join("ca.pem"), dir.join("ca-key.pem"));
    let mut out = Vec::new();
    let ca = if ca_cert.exists() || ca_key.exists() {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let ca =
            DevCa::from_pem(&read(&ca_cert)?, &read(&ca_key)?).map_err(|e| format!("{}: {e}", ca_dir.display()))?;
        out.push(Outcome {
            folder: "ca".into(),
            made: false,
        });
        ca
    } else {
        let ca = DevCa::generate(ca_name).map_err(|e| e.to_string())?;
        make_dir(dir, 0o755)?;
        make_dir(&ca_dir, 0o755)?;
        write_file(&ca_key, ca.key_pem().as_bytes(), 0o600)?;
        write_file(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
        out.push(Outcome {
            folder: "ca".into(),
            made: true,
        });
        ca
    };
    let node_jobs = nodes.iter().map(|n| (n.name.as_str(), "node", Some(n), None));
    let client_jobs = clients.iter().map(|c| (c.folder.as_str(), "client", None, Some(c)));
    for (folder, stem, node, client) in node_jobs.chain(client_jobs) {
        let here = dir.join(folder);
        let (cert, key) = (here.join(format!("{stem}.pem")), here.join(format!("{stem}-key.pem")));
        if cert.exists() && key.exists() {
            out.push(Outcome {
                folder: folder.into(),
                made: false,
            });
            continue;
        }
        let issued: Issued = match (node, client) {
            (Some(n), _) => {
                let hosts: Vec<&str> = n.hosts.iter().map(String::as_str).collect();
                ca.issue_node(&n.name, &hosts)
            }
            (_, Some(c)) => ca.issue_client(&c.principal),
            _ => unreachable!("every job is a node or a client"),
        }
        .map_err(|e| format!("{folder}: {e}"))?;
        make_dir(&here, 0o755)?;
        write_file(&here.join("ca.pem"), ca.cert_pem().as_bytes(), 0o644)?;
        write_file(&key, issued.key_pem.as_bytes(), 0o600)?;
        write_file(&cert, issued.cert_pem.as_bytes(), 0o644)?;
        out.push(Outcome {
            folder: folder.into(),
            made: true,
        });
    }
    Ok(out)
}

fn make_dir(dir: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

/// Writes `bytes` to `path` with `mode` through a fresh temporary file, synced, then renamed.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let at = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at)?;
    f.write_all(bytes).map_err(at)?;
    f.sync_all().map_err(at)?;
    std::fs::rename(&tmp, path).map_err(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        let n = NodeSpec::parse("us-east-1=coffer-us-east-1,localhost,127.0.0.1").unwrap();
        assert_eq!(n.name, "us-east-1");
        assert_eq!(n.hosts, ["coffer-us-east-1", "localhost", "127.0.0.1"]);
        for bad in ["us-east-1", "US=host", "ca=host", "a=host,,b", "../x=host"] {
            assert!(NodeSpec::parse(bad).is_err(), "{bad}");
        }
        let c = ClientSpec::parse("admin=user:ops-admin").unwrap();
        assert_eq!((c.folder.as_str(), c.principal.as_str()), ("admin", "user:ops-admin"));
        for bad in ["admin", "admin=", "ad/min=user:x", "admin=user/x"] {
            assert!(ClientSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rerun_keeps_what_exists_and_makes_what_is_missing_with_the_same_ca() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = NodeSpec::parse("a=host-a,127.0.0.1").unwrap();
        let b = NodeSpec::parse("b=host-b").unwrap();
        let admin = ClientSpec::parse("admin=user:ops-admin").unwrap();
        let first = ensure(
            dir.path(),
            "test CA",
            std::slice::from_ref(&a),
            std::slice::from_ref(&admin),
        )
        .unwrap();
        assert!(first.iter().all(|o| o.made), "{first:?}");
        let node_a = std::fs::read(dir.path().join("a/node.pem")).unwrap();
        let second = ensure(dir.path(), "test CA", &[a, b], &[admin]).unwrap();
        let made: Vec<(&str, bool)> = second.iter().map(|o| (o.folder.as_str(), o.made)).collect();
        assert_eq!(made, [("ca", false), ("a", false), ("b", true), ("admin", false)]);
        assert_eq!(std::fs::read(dir.path().join("a/node.pem")).unwrap(), node_a, "kept");
        // b's certificate chains to the CA that made a's: one CA for the cluster.
        let ca = std::fs::read(dir.path().join("ca/ca.pem")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b/ca.pem")).unwrap(), ca);
        let roots = super::super::pem_certs(&ca);
        let b_cert = super::super::pem_certs(&std::fs::read(dir.path().join("b/node.pem")).unwrap());
        let (_, parsed) = x509_parser::parse_x509_certificate(&b_cert[0]).unwrap();
        let (_, root) = x509_parser::parse_x509_certificate(&roots[0]).unwrap();
        assert_eq!(parsed.issuer(), root.subject());
        let ca_files: Vec<_> = std::fs::read_dir(dir.path().join("ca"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(ca_files, ["ca.pem"], "the CA's folder holds no key");
        for key in ["ca-key.pem", "a/node-key.pem", "b/node-key.pem", "admin/client-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        let twice = ensure(
            dir.path(),
            "test CA",
            &[NodeSpec::parse("x=h").unwrap()],
            &[ClientSpec::parse("x=user:y").unwrap()],
        );
        assert!(twice.unwrap_err().contains("named twice"));
    }
}
