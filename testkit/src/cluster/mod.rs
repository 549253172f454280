//! A running test cluster: its folder, its members and their processes.
//!
//! The methods live by concern: [`launch`] (configs and processes), [`cli`] (the `coffer`
//! binary against a node), [`observe`] (clients, health, status, metrics, the leader) and
//! [`faults`] (kill, stop, restart, cut links).

mod cli;
mod faults;
mod launch;
mod observe;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;

use coffer::dev::ClusterFile;
use coffer::dev::DevNode;

use crate::fs::TempDir;
use crate::fs::Tmpfs;
use crate::proxy::DelayProxy;

pub struct TestCluster {
    /// Mounted data folders (unmounted before `dir` is removed: fields drop in this order).
    _mounts: Vec<Tmpfs>,
    pub dir: TempDir,
    pub file: ClusterFile,
    pub bin: PathBuf,
    /// Number of initial voters; nodes after them are spares.
    pub initial: usize,
    children: Vec<Option<Child>>,
    /// (from, to) -> proxy of that link direction.
    proxies: BTreeMap<(usize, usize), DelayProxy>,
    /// Node index -> metrics listen address.
    metrics: BTreeMap<usize, String>,
    log_filter: Option<String>,
    node_env: Vec<(String, String)>,
}

impl TestCluster {
    pub fn token(&self) -> &str {
        &self.file.root_token
    }

    /// The folder of a TLS cluster's certificates (see [`coffer::dev::tls_dir`]).
    pub fn tls_dir(&self) -> PathBuf {
        coffer::dev::tls_dir(self.dir.path())
    }

    /// What the kit's clients use with TLS on: trust the cluster CA (no client certificate).
    pub fn client_tls(&self) -> Option<coffer::client::ClientTls> {
        let ca = self.file.ca_cert.as_ref()?;
        Some(coffer::client::ClientTls::new(
            std::fs::read(ca).expect("read the test CA"),
        ))
    }

    pub fn node(&self, i: usize) -> &DevNode {
        &self.file.nodes[i]
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.file.nodes[i].name)
    }

    /// The process id of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(|c| c.id())
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("data")
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("coffer.log")).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
