//! `coffer dev`: a local cluster with one node per region, each a separate OS process on
//! loopback, using the local KMS and plaintext transport, or TLS with `--tls`.
//!
//! DIR holds everything: `cluster.json` (cluster id, root token, nodes, CA path with TLS; mode
//! 0600), `env` (shell exports), `keyring/` (one local KMS keyring per region), `peer.key`
//! (without `--tls`: the key plaintext peers prove membership with; 0600), `tls/` (with
//! `--tls`: a throwaway CA, one certificate per node, one client certificate; keys 0600) and
//! one folder per node with its config, data and log. Running again with the same DIR reuses
//! it: same cluster, token, data and certificates. Ctrl-C stops every node.
//!
//! `plan` (the cluster file), `configs` (node configs and the KMS), `tls` (dev certificates),
//! `processes` (start, watch, stop); this file runs the command.

mod configs;
mod plan;
mod processes;
mod tls;

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use crate::cli::CliError;
use crate::cli::DevArgs;
use crate::crypto::kms::local;

pub use configs::{dev_alias, dev_aws_region, node_config, region_section, AwsDev, DevKmsConfig};
pub use plan::{ensure_peer_key, peer_key_path, plan, ClusterFile, DevNode, LOOPBACK_RAFT};
pub use tls::{ensure_dev_tls, tls_dir, DEV_CLIENT_PRINCIPAL};

use configs::dev_kms;
use plan::{err, write_private};
use processes::*;

pub async fn run(args: DevArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| err(format!("cannot create {}: {e}", args.data_dir.display())))?;
    let dir: PathBuf = args.data_dir.canonicalize()?;
    let mut file = plan(&args, &dir)?;
    file.ca_cert = match args.tls {
        true => Some(ensure_dev_tls(&dir, &file).map_err(err)?.display().to_string()),
        false => {
            ensure_peer_key(&dir)?;
            None
        }
    };
    let kms = dev_kms(&args, &dir).await?;
    for n in &file.nodes {
        local::create_keyring(&dir.join("keyring"), &n.region).map_err(|e| err(e.to_string()))?;
    }
    for n in &file.nodes {
        let node_dir = dir.join(&n.name);
        std::fs::create_dir_all(&node_dir)?;
        write_private(
            &node_dir.join("coffer.toml"),
            node_config(&file, n, &dir, LOOPBACK_RAFT, &kms).as_bytes(),
        )?;
    }

    let mut children = Vec::new();
    for n in &file.nodes {
        match spawn(n, &dir) {
            Ok(c) => children.push((n.clone(), c)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    for (n, c) in &children {
        if let Some(f) = file.nodes.iter_mut().find(|x| x.id == n.id) {
            f.pid = c.id();
        }
    }
    write_private(
        &dir.join("cluster.json"),
        serde_json::to_string_pretty(&file).unwrap_or_default().as_bytes(),
    )?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let connection = match &file.ca_cert {
        Some(ca) => format!(
            "export COFFER_ADDR=https://{} COFFER_CACERT={ca}\nexport COFFER_HTTP=https://{}",
            file.nodes[0].api, file.nodes[0].http
        ),
        None => format!(
            "export COFFER_ADDR=http://{}\nexport COFFER_HTTP=http://{}",
            file.nodes[0].api, file.nodes[0].http
        ),
    };
    let env = format!(
        "{connection}\nexport COFFER_TOKEN={}\nexport PATH=\"{}:$PATH\"\n",
        file.root_token,
        exe_dir.display()
    );
    write_private(&dir.join("env"), env.as_bytes())?;

    if let Err(e) = wait_ready(&file, &mut children, &dir).await {
        stop_all(&mut children);
        return Err(e);
    }

    let shown = args.data_dir.display();
    println!(
        "Coffer dev cluster {} is up: {} nodes in {}.\n",
        file.cluster_id,
        file.nodes.len(),
        args.regions.join(", ")
    );
    for n in &file.nodes {
        println!(
            "  {:<14} region {:<10} api {:<16} http {:<16} log {shown}/{}/coffer.log",
            n.name, n.region, n.api, n.http, n.name
        );
    }
    if file.ca_cert.is_some() {
        let tls = tls_dir(&args.data_dir);
        println!(
            "\nTLS is on (mutual TLS between nodes). Clients need the CA:\n  {connection}\n\
             An mTLS identity for the principal {DEV_CLIENT_PRINCIPAL} (give it a policy before use):\n  \
             export COFFER_CLIENT_CERT={} COFFER_CLIENT_KEY={}",
            tls.join("client.pem").display(),
            tls.join("client-key.pem").display()
        );
    }
    println!(
        "\nIn another terminal:\n  source {shown}/env\n  coffer secret put acme/demo/db-password --generate 24\n  \
         coffer secret get acme/demo/db-password\n  coffer cluster status\n\n\
         The root token is in {shown}/cluster.json. A node that dies is restarted. Ctrl-C stops all nodes;\n\
         running this again reuses {shown}."
    );

    // A node that dies (say, `kill -9` in a failover drill) is restarted after a pause long
    // enough for the others to elect a new leader; it rejoins and catches up. One that keeps
    // dying right after start is given up on.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut started: Vec<Instant> = vec![Instant::now(); children.len()];
    let mut died: Vec<Option<Instant>> = vec![None; children.len()];
    let mut quick_deaths: Vec<u32> = vec![0; children.len()];
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                match restart_dead(&mut children, &mut file, &dir, &mut started, &mut died, &mut quick_deaths) {
                    Ok(()) => {}
                    Err(e) => break Err(e),
                }
            }
        }
    };
    println!("\nstopping {} nodes…", children.len());
    stop_all(&mut children);
    outcome
}
