//! `coffer dev --tls`: a throwaway CA, one certificate per node and one client certificate.

use std::path::Path;
use std::path::PathBuf;

use crate::tls::issue::DevCa;

use super::plan::*;

/// Where a dev or test cluster keeps its TLS files: `ca.pem`, `ca-key.pem`, `<node>.pem`,
/// `<node>-key.pem`, `client.pem`, `client-key.pem`.
pub fn tls_dir(dir: &Path) -> PathBuf {
    dir.join("tls")
}

/// The principal of the client certificate `coffer dev --tls` makes.
pub const DEV_CLIENT_PRINCIPAL: &str = "user:dev-admin";

/// Makes what is missing in [`tls_dir`]: a CA, a certificate per node (for 127.0.0.1 and
/// localhost) and a client certificate for [`DEV_CLIENT_PRINCIPAL`]. Existing files are kept,
/// so a rerun reuses them. Returns the CA certificate's path.
pub fn ensure_dev_tls(dir: &Path, file: &ClusterFile) -> Result<PathBuf, String> {
    let tls = tls_dir(dir);
    std::fs::create_dir_all(&tls).map_err(|e| format!("cannot create {}: {e}", tls.display()))?;
    let _ = std::fs::set_permissions(&tls, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let (ca_path, ca_key_path) = (tls.join("ca.pem"), tls.join("ca-key.pem"));
    let write = |path: &Path, text: &str| write_private(path, text.as_bytes()).map_err(|e| e.message);
    // No CA yet: make one, and (below) every certificate anew, since old ones would not chain.
    let fresh = !ca_path.exists() && !ca_key_path.exists();
    let mut ca = None;
    if fresh {
        let made = DevCa::generate(&format!("Coffer dev CA {}", file.cluster_id)).map_err(|e| e.to_string())?;
        write(&ca_key_path, made.key_pem())?;
        write(&ca_path, made.cert_pem())?;
        ca = Some(made);
    }
    let mut wanted: Vec<(String, Option<&str>)> = file
        .nodes
        .iter()
        .map(|n| (n.name.clone(), Some(n.name.as_str())))
        .collect();
    wanted.push(("client".into(), None));
    for (stem, node) in wanted {
        let (cert, key) = (tls.join(format!("{stem}.pem")), tls.join(format!("{stem}-key.pem")));
        if !fresh && cert.exists() && key.exists() {
            continue;
        }
        if ca.is_none() {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|e| {
                    format!(
                        "cannot read {}: {e}; delete {} to make new certificates",
                        p.display(),
                        tls.display()
                    )
                })
            };
            let loaded = DevCa::from_pem(&read(&ca_path)?, &read(&ca_key_path)?).map_err(|e| {
                format!(
                    "{}: {e}; delete {} to make new certificates",
                    ca_path.display(),
                    tls.display()
                )
            })?;
            ca = Some(loaded);
        }
        let Some(ca) = ca.as_ref() else {
            return Err("no CA to issue certificates with".into());
        };
        let issued = match node {
            Some(name) => ca.issue_node(name, &["127.0.0.1", "localhost"]),
            None => ca.issue_client(DEV_CLIENT_PRINCIPAL),
        }
        .map_err(|e| e.to_string())?;
        write(&key, &issued.key_pem)?;
        write(&cert, &issued.cert_pem)?;
    }
    if !ca_path.exists() {
        return Err(format!(
            "{} is missing; delete {} to make new certificates",
            ca_path.display(),
            tls.display()
        ));
    }
    Ok(ca_path)
}
