//! `coffer tls issue`: a throwaway CA and every node's and client's certificate for a test or
//! demo cluster (deploy/compose.yaml runs it on start). Runs on this machine; no server.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::error::CliError;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::tls::bundle;

#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// Make a CA (once) and a certificate for each node and client that has none yet, one
    /// folder each under DIR (DIR/ca/, DIR/<node>/, DIR/<client>/). Existing files are kept,
    /// so it is safe to run on every start. For production, use your own PKI (deploy/README.md).
    Issue {
        /// Where the certificates go.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name (when one is made).
        #[arg(long, default_value = "Coffer throwaway CA")]
        ca_name: String,
        /// NAME=HOST[,HOST...]: a node certificate (URI SAN coffer://node/NAME, a DNS or IP SAN
        /// per host) in DIR/NAME/node.pem. Repeat per node.
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// FOLDER=PRINCIPAL: a client certificate (URI SAN coffer://principal/PRINCIPAL) in
        /// DIR/FOLDER/client.pem. Repeat per client.
        #[arg(long = "client")]
        clients: Vec<String>,
    },
}

pub fn run(g: &Global, cmd: TlsCmd) -> Result<(), CliError> {
    let TlsCmd::Issue {
        dir,
        ca_name,
        nodes,
        clients,
    } = cmd;
    if nodes.is_empty() && clients.is_empty() {
        return Err(CliError::new("nothing to issue: name at least one --node or --client"));
    }
    let nodes = nodes
        .iter()
        .map(|s| bundle::NodeSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::new)?;
    let clients = clients
        .iter()
        .map(|s| bundle::ClientSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::new)?;
    let done = bundle::ensure(&dir, &ca_name, &nodes, &clients).map_err(CliError::new)?;
    match g.output {
        Output::Json => output::print_json(&json!({
            "dir": dir.display().to_string(),
            "folders": done.iter().map(|o| json!({"folder": o.folder, "made": o.made})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            for o in &done {
                let what = if o.made { "made" } else { "kept" };
                output::say(format!("{what} {}", dir.join(&o.folder).display()));
            }
        }
    }
    Ok(())
}
