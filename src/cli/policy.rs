//! `coffer policy …`: put, get, list, delete and explain policies.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create or replace a policy from a JSON document (`-` reads stdin).
    Put {
        #[arg(long)]
        file: PathBuf,
    },
    /// Print a policy as JSON.
    Get { name: String },
    /// List policy names.
    List,
    /// Delete a policy (tokens that name it lose what it granted).
    Delete { name: String },
    /// Explain how the policies decide a request: the decision and the statement that decided.
    Check {
        #[arg(long)]
        principal: String,
        /// e.g. secrets:read
        #[arg(long)]
        action: String,
        /// A secret name, or `cluster`, `audit`, `policy/<name>`, `token/<principal>`.
        #[arg(long)]
        resource: String,
        /// Groups of the principal; repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Decide as a node of this region would (default: the answering node's).
        #[arg(long)]
        region: Option<String>,
    },
}

fn read_document(file: &PathBuf) -> Result<String, CliError> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    text.map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))
}

pub async fn run(g: &Global, cmd: PolicyCmd) -> Result<(), CliError> {
    let document = match &cmd {
        PolicyCmd::Put { file } => Some(read_document(file)?),
        _ => None,
    };
    let client = connect(g).await?;
    let mut a = client.access.clone();
    match cmd {
        PolicyCmd::Put { .. } => {
            let r = a
                .put_policy(pb::PutPolicyRequest {
                    document: document.unwrap_or_default(),
                })
                .await?
                .into_inner();
            match g.output {
                Output::Json => output::print_json(&json!({"name": r.name, "log_index": r.log_index})),
                Output::Table => output::say(format!("stored policy {}", r.name)),
            }
        }
        PolicyCmd::Get { name } => {
            let r = a.get_policy(pb::GetPolicyRequest { name }).await?.into_inner();
            // The document is JSON already, in both output modes.
            output::say(r.document.trim_end());
        }
        PolicyCmd::List => {
            let r = a.list_policies(pb::ListPoliciesRequest {}).await?.into_inner();
            match g.output {
                Output::Json => output::print_json(&json!(r.names)),
                Output::Table => r.names.iter().for_each(output::say),
            }
        }
        PolicyCmd::Delete { name } => {
            let r = a.delete_policy(pb::DeletePolicyRequest { name }).await?.into_inner();
            match g.output {
                Output::Json => output::print_json(&json!({"name": r.name, "deleted": true})),
                Output::Table => output::say(format!("deleted policy {}", r.name)),
            }
        }
        PolicyCmd::Check {
            principal,
            action,
            resource,
            groups,
            region,
        } => {
            let r = a
                .check_policy(pb::CheckPolicyRequest {
                    principal,
                    groups,
                    action,
                    resource,
                    region: region.unwrap_or_default(),
                })
                .await?
                .into_inner();
            match g.output {
                Output::Json => output::print_json(&json!({
                    "decision": if r.allowed { "allow" } else { "deny" },
                    "statement": (!r.statement.is_empty()).then_some(&r.statement),
                    "explanation": r.explanation,
                })),
                Output::Table => {
                    output::say(if r.allowed { "ALLOW" } else { "DENY" });
                    output::say(r.explanation);
                }
            }
        }
    }
    Ok(())
}
