//! `coffer token …`: create (shown once), list and revoke tokens.

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token for a principal. The token is printed once; the cluster keeps its hash.
    Create {
        /// `kind:tenant:name` (e.g. service:acme:api) or, for platform operators, `kind:name`.
        #[arg(long)]
        principal: String,
        /// The principal's tenant (must match the middle part of a tenant principal).
        #[arg(long)]
        tenant: Option<String>,
        /// Groups the principal belongs to (`group:acme:oncall`); repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Policies the token may use; repeatable, at least one.
        #[arg(long = "policy", required = true)]
        policies: Vec<String>,
        /// Lifetime, e.g. 24h, 30m, 90d (default 24h, at most 366 days).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// Revoke a token by accessor (`root` revokes the bootstrap root token once another
    /// administrator exists).
    Revoke { accessor: String },
    /// List tokens (accessors and metadata; never the tokens).
    List,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30m, 24h, 90d)"))
}

fn when(ms: u64) -> String {
    if ms == 0 {
        String::new()
    } else {
        crate::time::rfc3339_ms(ms)
    }
}

pub async fn run(g: &Global, cmd: TokenCmd) -> Result<(), CliError> {
    let client = connect(g).await?;
    let mut a = client.access.clone();
    match cmd {
        TokenCmd::Create {
            principal,
            tenant,
            groups,
            policies,
            ttl,
        } => {
            let r = a
                .create_token(pb::CreateTokenRequest {
                    principal,
                    tenant: tenant.unwrap_or_default(),
                    groups,
                    policies,
                    ttl_ms: ttl.map(|d| d.as_millis() as u64).unwrap_or(0),
                })
                .await?
                .into_inner();
            match g.output {
                Output::Json => output::print_json(&json!({
                    "token": r.token,
                    "accessor": r.accessor,
                    "expires_at": when(r.expires_at_ms),
                    "principal": r.principal,
                })),
                Output::Table => {
                    output::say(format!("token:      {}", r.token));
                    output::say(format!("accessor:   {}", r.accessor));
                    output::say(format!("principal:  {}", r.principal));
                    output::say(format!("expires at: {}", when(r.expires_at_ms)));
                    output::say("The token is shown once; store it now (the cluster keeps only its hash).");
                }
            }
        }
        TokenCmd::Revoke { accessor } => {
            let r = a.revoke_token(pb::RevokeTokenRequest { accessor }).await?.into_inner();
            match g.output {
                Output::Json => output::print_json(&json!({
                    "accessor": r.accessor,
                    "revoked_at": when(r.revoked_at_ms),
                })),
                Output::Table => output::say(format!("revoked {}", r.accessor)),
            }
        }
        TokenCmd::List => {
            let r = a.list_tokens(pb::ListTokensRequest {}).await?.into_inner();
            match g.output {
                Output::Json => output::print_json(&json!(r
                    .tokens
                    .iter()
                    .map(|t| json!({
                        "accessor": t.accessor,
                        "principal": t.principal,
                        "tenant": t.tenant,
                        "groups": t.groups,
                        "policies": t.policies,
                        "created_at": when(t.created_at_ms),
                        "expires_at": when(t.expires_at_ms),
                        "revoked_at": (t.revoked_at_ms != 0).then(|| when(t.revoked_at_ms)),
                        "created_by": t.created_by,
                    }))
                    .collect::<Vec<_>>())),
                Output::Table => {
                    let now = crate::time::now_ms();
                    let rows: Vec<Vec<String>> = r
                        .tokens
                        .iter()
                        .map(|t| {
                            let state = if t.revoked_at_ms != 0 {
                                "revoked"
                            } else if t.expires_at_ms <= now {
                                "expired"
                            } else {
                                "live"
                            };
                            vec![
                                t.accessor.clone(),
                                t.principal.clone(),
                                t.policies.join(","),
                                when(t.expires_at_ms),
                                state.to_string(),
                            ]
                        })
                        .collect();
                    output::print_table(&["ACCESSOR", "PRINCIPAL", "POLICIES", "EXPIRES", "STATE"], &rows);
                }
            }
        }
    }
    Ok(())
}
