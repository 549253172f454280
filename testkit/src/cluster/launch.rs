//! Writing every node's config and starting the processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use coffer::dev::ClusterFile;
use coffer::dev::DevNode;

use super::TestCluster;
use crate::fs::TempDir;
use crate::fs::Tmpfs;
use crate::net::free_port;
use crate::proxy::DelayProxy;
use crate::spec::ClusterSpec;

impl TestCluster {
    /// Starts one voter per region (direct links) and waits for a bootstrapped leader.
    pub async fn start(bin: &str, regions: &[&str], raft: &str) -> Self {
        Self::launch(bin, ClusterSpec::new(regions, raft)).await
    }

    pub async fn launch(bin: &str, spec: ClusterSpec) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let all: Vec<String> = spec.regions.iter().chain(spec.spare_regions.iter()).cloned().collect();
        let mut per_region: BTreeMap<String, usize> = BTreeMap::new();
        let nodes: Vec<DevNode> = all
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let k = per_region.entry(r.clone()).or_default();
                *k += 1;
                DevNode {
                    id: i as u64 + 1,
                    name: format!("{r}-{k}"),
                    region: r.clone(),
                    api: format!("127.0.0.1:{}", free_port()),
                    raft: format!("127.0.0.1:{}", free_port()),
                    http: format!("127.0.0.1:{}", free_port()),
                    pid: 0,
                }
            })
            .collect();
        let mut members = ClusterFile {
            cluster_id: "test-cluster".into(),
            root_token: coffer::authz::new_token().unwrap(),
            nodes: nodes[..spec.regions.len()].to_vec(),
            ca_cert: None,
        };
        if spec.tls {
            // Certificates for spares too, so they can join.
            let all = ClusterFile {
                nodes: nodes.clone(),
                ..members.clone()
            };
            let ca = coffer::dev::ensure_dev_tls(dir.path(), &all).expect("test certificates");
            members.ca_cert = Some(ca.display().to_string());
        } else {
            coffer::dev::ensure_peer_key(dir.path()).expect("the cluster's peer key");
        }
        let mut proxies = BTreeMap::new();
        if let Some(rtt) = spec.rtt_ms {
            for (i, a) in nodes.iter().enumerate() {
                for (j, b) in nodes.iter().enumerate() {
                    if i != j {
                        let one_way = Duration::from_millis(rtt(&a.region, &b.region) / 2);
                        let p = DelayProxy::start(b.raft.parse().unwrap(), one_way)
                            .await
                            .expect("proxy");
                        proxies.insert((i, j), p);
                    }
                }
            }
        }
        let mut metrics = BTreeMap::new();
        let mut regions_seen = std::collections::BTreeSet::new();
        for n in &nodes {
            if regions_seen.insert(n.region.clone()) {
                coffer::crypto::kms::local::create_keyring(&dir.path().join("keyring"), &n.region).unwrap();
            }
        }
        let mut mounts = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let node_dir = dir.path().join(&n.name);
            std::fs::create_dir_all(&node_dir).unwrap();
            if let Some(mib) = spec.data_tmpfs_mib {
                mounts.push(Tmpfs::mount(&node_dir.join("data"), mib).expect("a tmpfs for the node's data"));
            }
            let mut cfg = coffer::dev::node_config(&members, n, dir.path(), &spec.raft, &spec.kms);
            let kms_extra = format!(
                "{}\n{}\n",
                spec.kms_extra,
                spec.node_kms_extra.get(&i).map(String::as_str).unwrap_or("")
            );
            cfg = cfg.replacen("[kms]\n", &format!("[kms]\n{kms_extra}"), 1);
            if spec.metrics {
                let addr = format!("127.0.0.1:{}", free_port());
                cfg = cfg.replacen("[node]\n", &format!("[node]\nmetrics_addr = \"{addr}\"\n"), 1);
                metrics.insert(i, addr);
            }
            // Spares never bootstrap; every node knows every region's KMS key.
            if i >= spec.regions.len() {
                cfg = cfg.replace("bootstrap = true", "bootstrap = false");
            }
            let known: Vec<&str> = members.nodes.iter().map(|m| m.region.as_str()).collect();
            for r in regions_seen.iter().filter(|r| !known.contains(&r.as_str())) {
                cfg = cfg.replacen(
                    "[kms]",
                    &format!("{}[kms]", coffer::dev::region_section(r, &spec.kms)),
                    1,
                );
            }
            if !spec.cluster_extra.is_empty() {
                cfg = cfg.replace("[cluster]\n", &format!("[cluster]\n{}\n", spec.cluster_extra));
            }
            let overrides: Vec<String> = proxies
                .iter()
                .filter(|((from, _), _)| *from == i)
                .map(|((_, to), p)| format!("\"{}\" = \"{}\"", to + 1, p.addr()))
                .collect();
            if !overrides.is_empty() {
                cfg.push_str(&format!("\n[network.peer_addr_override]\n{}\n", overrides.join("\n")));
            }
            if let Some(extra) = spec.node_extra.get(&i) {
                cfg.push_str(&format!("\n{extra}\n"));
            }
            std::fs::write(node_dir.join("coffer.toml"), cfg).unwrap();
        }
        let file = ClusterFile { nodes, ..members };
        let mut c = TestCluster {
            _mounts: mounts,
            dir,
            file,
            bin: PathBuf::from(bin),
            initial: spec.regions.len(),
            children: vec![],
            proxies,
            metrics,
            log_filter: spec.log_filter.clone(),
            node_env: spec.node_env.clone(),
        };
        for i in 0..c.file.nodes.len() {
            let child = if i < c.initial { Some(c.spawn(i)) } else { None };
            c.children.push(child);
        }
        c.wait_leader(Duration::from_secs(30)).await;
        c
    }

    pub(super) fn spawn(&self, i: usize) -> Child {
        let n = &self.file.nodes[i];
        let node_dir = self.dir.path().join(&n.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("coffer.log"))
            .unwrap();
        Command::new(&self.bin)
            .arg("server")
            .arg("--config")
            .arg(node_dir.join("coffer.toml"))
            .env(
                "RUST_LOG",
                self.log_filter
                    .clone()
                    .or_else(|| std::env::var("COFFER_TEST_LOG").ok())
                    .unwrap_or_else(|| "info,openraft=info".into()),
            )
            .envs(self.node_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn coffer server")
    }
}
