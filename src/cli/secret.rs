//! `coffer secret …`

use std::io::IsTerminal;
use std::io::Read;
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
pub enum SecretCmd {
    /// Create a secret with its metadata and rotation policy (no value yet).
    Create(Box<super::secret_spec::CreateArgs>),
    /// Change a secret's metadata or rotation policy (compare-and-swap on its etag).
    Update(Box<super::secret_spec::UpdateArgs>),
    /// Start a rotation now, or with --rollback move CURRENT back to PREVIOUS.
    Rotate(super::rotation::RotateArgs),
    /// Who reads each version, per region, and whether it is safe to retire (no read since
    /// its quiet window began, on any node).
    Usage(super::usage::UsageArgs),
    /// Follow the changes to a secret or a folder (never values) as the node applies them.
    Watch(super::watch::WatchArgs),
    /// Add a version (creating the secret if needed); it becomes CURRENT unless --alias says
    /// otherwise.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["value", "value_file", "generate"])))]
    Put {
        name: String,
        /// The value (visible in shell history; prefer --value-file).
        #[arg(long)]
        value: Option<String>,
        /// Read the value from a file, or `-` for stdin.
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// Generate a random value of N characters from [A-Za-z0-9].
        #[arg(long, value_name = "N")]
        generate: Option<usize>,
        /// Alias for the new version: current (default), pending, a user alias, or none.
        #[arg(long)]
        alias: Option<String>,
        /// A rotator's answer to a hook call: the run it was called for (the value goes in as
        /// that run's PENDING version). Needs --rotation-token.
        #[arg(long, requires = "rotation_token", value_name = "RUN")]
        rotation_run: Option<u64>,
        /// The token the hook call carried (from the environment rather than the command line,
        /// which other users can see).
        #[arg(
            long,
            env = "COFFER_ROTATION_TOKEN",
            hide_env_values = true,
            requires = "rotation_run"
        )]
        rotation_token: Option<String>,
    },
    /// Read a value (CURRENT unless --version or --alias).
    Get {
        name: String,
        #[arg(long, conflicts_with = "alias")]
        version: Option<u64>,
        #[arg(long)]
        alias: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
        /// Emergency read under `secrets:read-break-glass` (needs --reason and --ticket). Always
        /// audited at critical severity and counted in coffer_break_glass_reads_total.
        #[arg(long, requires_all = ["reason", "ticket"])]
        break_glass: bool,
        /// Why the break-glass read is needed (8-512 characters).
        #[arg(long, requires = "break_glass")]
        reason: Option<String>,
        /// Incident or change ticket, e.g. INC-123.
        #[arg(long, requires = "break_glass")]
        ticket: Option<String>,
    },
    /// List a secret's versions.
    Versions {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Show a secret's metadata.
    Describe {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// List secret names under a prefix (e.g. `acme/` or `acme/prod/`).
    List {
        prefix: String,
        /// At most this many names per request (1-1000).
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Point an alias at a version (compare-and-swap).
    Promote {
        name: String,
        #[arg(long)]
        alias: String,
        #[arg(long)]
        version: u64,
        /// The version the alias must point at now (0 = unset). Default: what it points at when
        /// the command runs.
        #[arg(long)]
        expect: Option<u64>,
    },
    /// Disable a version (reads of it fail until enabled).
    Disable {
        name: String,
        #[arg(long)]
        version: u64,
    },
    /// Enable a disabled version.
    Enable {
        name: String,
        #[arg(long)]
        version: u64,
    },
    /// Destroy a version: its ciphertext and wrapped keys are removed for good.
    Destroy {
        name: String,
        #[arg(long)]
        version: u64,
    },
}

/// How fresh a read must be.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// local (default) | linearizable | bounded=500ms | at-least=TOKEN
    #[arg(long, default_value = "local")]
    consistency: String,
    /// For bounded reads: what to do when this node is too stale after waiting: fail, or
    /// forward (read the leader's records).
    #[arg(long, value_parser = ["fail", "forward"], default_value = "fail")]
    on_unmet: String,
    /// How long a bounded or at-least read may wait for this node to be fresh enough
    /// (e.g. 500ms, 2s). Default: 1s for bounded, 5s for at-least.
    #[arg(long)]
    wait: Option<String>,
}

impl ReadArgs {
    fn to_pb(&self) -> Result<pb::ReadConsistency, CliError> {
        let wait_ms = match &self.wait {
            Some(w) => parse_ms(w).ok_or_else(|| CliError::new(format!("bad --wait {w:?}; use e.g. 500ms or 2s")))?,
            None => 0,
        };
        consistency(&self.consistency, &self.on_unmet, wait_ms)
    }
}

const GENERATE_MAX: usize = 4096;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn generate(n: usize) -> Result<Vec<u8>, CliError> {
    if n == 0 || n > GENERATE_MAX {
        return Err(CliError::new(format!(
            "--generate takes 1 to {GENERATE_MAX} characters"
        )));
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let bytes = crate::crypto::random_bytes::<64>().map_err(|e| CliError::new(e.to_string()))?;
        // Rejection sampling keeps the characters uniform: 248 = 4 * 62.
        out.extend(bytes.iter().filter(|b| **b < 248).map(|b| ALPHABET[(*b % 62) as usize]));
    }
    out.truncate(n);
    Ok(out)
}

fn read_value(value: Option<String>, file: Option<PathBuf>, gen: Option<usize>) -> Result<Vec<u8>, CliError> {
    const LIMIT: u64 = coffer_model::secrets::MAX_VALUE_BYTES as u64;
    if let Some(v) = value {
        return Ok(v.into_bytes());
    }
    if let Some(n) = gen {
        return generate(n);
    }
    let path = file.expect("clap requires one source");
    let mut buf = Vec::new();
    // Read one byte past the limit so an oversize value gets the server's clear error.
    if path.as_os_str() == "-" {
        std::io::stdin().take(LIMIT + 1).read_to_end(&mut buf)?;
    } else {
        std::fs::File::open(&path)
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?
            .take(LIMIT + 1)
            .read_to_end(&mut buf)?;
    }
    Ok(buf)
}

fn consistency(s: &str, on_unmet: &str, wait_ms: u64) -> Result<pb::ReadConsistency, CliError> {
    use pb::read_consistency::Mode;
    let mode = match s {
        "local" => Mode::Local(pb::LocalRead {}),
        "linearizable" => Mode::Linearizable(pb::LinearizableRead {}),
        _ => {
            if let Some(d) = s.strip_prefix("bounded=") {
                let ms = parse_ms(d).ok_or_else(|| {
                    CliError::new(format!(
                        "bad duration {d:?} in --consistency; use e.g. bounded=500ms or bounded=2s"
                    ))
                })?;
                Mode::Bounded(pb::BoundedRead {
                    max_staleness_ms: ms,
                    on_unmet: on_unmet.to_string(),
                    max_wait_ms: wait_ms,
                })
            } else if let Some(t) = s.strip_prefix("at-least=") {
                Mode::AtLeast(pb::AtLeastRead {
                    token: t.to_string(),
                    max_wait_ms: wait_ms,
                })
            } else {
                return Err(CliError::new(format!(
                    "unknown --consistency {s:?}; use local, linearizable, bounded=500ms or at-least=TOKEN"
                )));
            }
        }
    };
    Ok(pb::ReadConsistency { mode: Some(mode) })
}

fn parse_ms(s: &str) -> Option<u64> {
    if let Some(n) = s.strip_suffix("ms") {
        n.parse().ok()
    } else if let Some(n) = s.strip_suffix('s') {
        n.parse::<u64>().ok().map(|n| n * 1000)
    } else {
        None
    }
}

fn print_write(g: &Global, what: &str, r: &pb::WriteResponse) {
    match g.output {
        Output::Json => output::print_json(&json!({
            "name": r.name,
            "version": r.version,
            "etag": r.etag,
            "aliases": r.aliases,
            "log_index": r.log_index,
            "token": r.token,
        })),
        Output::Table => {
            let aliases: Vec<String> = r.aliases.iter().map(|(a, v)| format!("{a}={v}")).collect();
            output::say(format!(
                "{what} {} version {} (aliases: {})",
                r.name,
                r.version,
                aliases.join(" ")
            ));
            if !r.token.is_empty() {
                output::say(format!(
                    "token {}  (read it anywhere with --consistency at-least=TOKEN)",
                    r.token
                ));
            }
        }
    }
}

pub async fn run(g: &Global, cmd: SecretCmd) -> Result<(), CliError> {
    let cmd = match cmd {
        SecretCmd::Create(a) => return super::secret_spec::create(g, *a).await,
        SecretCmd::Update(a) => return super::secret_spec::update(g, *a).await,
        SecretCmd::Rotate(a) => return super::rotation::rotate(g, a).await,
        SecretCmd::Usage(a) => return super::usage::usage(g, a).await,
        SecretCmd::Watch(a) => return super::watch::watch(g, a).await,
        cmd => cmd,
    };
    // Parse what can be checked locally before connecting.
    let read_consistency = match &cmd {
        SecretCmd::Get { read, .. }
        | SecretCmd::Versions { read, .. }
        | SecretCmd::Describe { read, .. }
        | SecretCmd::List { read, .. } => Some(read.to_pb()?),
        _ => None,
    };
    let put_value = match &cmd {
        SecretCmd::Put {
            value,
            value_file,
            generate,
            ..
        } => Some(read_value(value.clone(), value_file.clone(), *generate)?),
        _ => None,
    };
    let client = connect(g).await?;
    let mut s = client.secrets.clone();
    match cmd {
        SecretCmd::Create(_)
        | SecretCmd::Update(_)
        | SecretCmd::Rotate(_)
        | SecretCmd::Usage(_)
        | SecretCmd::Watch(_) => {
            unreachable!("answered above")
        }
        SecretCmd::Put {
            name,
            alias,
            rotation_run,
            rotation_token,
            ..
        } => {
            let r = s
                .put_secret_value(pb::PutSecretValueRequest {
                    name,
                    value: put_value.unwrap_or_default(),
                    alias: alias.unwrap_or_default(),
                    must_exist: false,
                    rotation_run: rotation_run.unwrap_or(0),
                    rotation_token: rotation_token.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print_write(g, "wrote", &r);
        }
        SecretCmd::Get {
            name,
            version,
            alias,
            break_glass,
            reason,
            ticket,
            ..
        } => {
            use pb::get_secret_value_request::Selector;
            let selector = match (version, alias) {
                (Some(v), _) => Some(Selector::Version(v)),
                (None, Some(a)) => Some(Selector::Alias(a)),
                (None, None) => None,
            };
            let r = s
                .get_secret_value(pb::GetSecretValueRequest {
                    name,
                    selector,
                    consistency: read_consistency,
                    break_glass: break_glass.then(|| pb::BreakGlass {
                        reason: reason.unwrap_or_default(),
                        ticket: ticket.unwrap_or_default(),
                    }),
                })
                .await?
                .into_inner();
            match g.output {
                Output::Json => {
                    let (value, b64) = match std::str::from_utf8(&r.value) {
                        Ok(v) => (json!(v), None),
                        Err(_) => (serde_json::Value::Null, Some(hex::encode(&r.value))),
                    };
                    let mut v = json!({
                        "name": r.name,
                        "version": r.version,
                        "value": value,
                        "aliases": r.aliases,
                        "read": output::read_meta_json(&r.read),
                        "token": r.read.as_ref().map(|m| m.token.clone()).unwrap_or_default(),
                    });
                    if let Some(h) = b64 {
                        v["value_hex"] = json!(h);
                    }
                    output::print_json(&v);
                }
                Output::Table => {
                    let terminal = std::io::stdout().is_terminal();
                    output::write_value(&mut std::io::stdout().lock(), &r.value, terminal)?;
                }
            }
        }
        SecretCmd::Versions { name, .. } => {
            // Every page, in order; the read metadata is the last page's.
            let mut r = pb::ListVersionsResponse::default();
            let mut page_token = String::new();
            loop {
                let page = s
                    .list_versions(pb::ListVersionsRequest {
                        name: name.clone(),
                        consistency: read_consistency.clone(),
                        page_token,
                        limit: 1000,
                    })
                    .await?
                    .into_inner();
                r.name = page.name;
                r.versions.extend(page.versions);
                r.read = page.read;
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            match g.output {
                Output::Json => output::print_json(&json!({
                    "name": r.name,
                    "versions": r.versions.iter().map(|v| json!({
                        "version": v.version,
                        "state": output::state_name(v.state),
                        "aliases": v.aliases,
                        "created_at": output::time(v.created_at_ms),
                        "created_by": v.created_by,
                        "size": v.size,
                        "wrapped_regions": v.wrapped_regions,
                    })).collect::<Vec<_>>(),
                    "read": output::read_meta_json(&r.read),
                })),
                Output::Table => output::print_table(
                    &["VERSION", "STATE", "ALIASES", "CREATED", "BY", "SIZE"],
                    &r.versions
                        .iter()
                        .map(|v| {
                            vec![
                                v.version.to_string(),
                                output::state_name(v.state).to_string(),
                                v.aliases.join(","),
                                output::time(v.created_at_ms),
                                v.created_by.clone(),
                                v.size.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        SecretCmd::Describe { name, .. } => {
            let r = s
                .describe_secret(pb::DescribeSecretRequest {
                    name,
                    consistency: read_consistency,
                })
                .await?
                .into_inner();
            let i = r.secret.unwrap_or_default();
            match g.output {
                Output::Json => output::print_json(&json!({
                    "name": i.name,
                    "description": i.description,
                    "owner_team": i.owner_team,
                    "labels": i.labels,
                    "aliases": i.aliases,
                    "next_version": i.next_version,
                    "max_versions": i.max_versions,
                    "etag": i.etag,
                    "created_at": output::time(i.created_at_ms),
                    "updated_at": output::time(i.updated_at_ms),
                    "created_by": i.created_by,
                    "rotation": super::secret_spec::rotation_json(&i.rotation),
                    "rotation_run": super::rotation::run_json(&i.rotation_run),
                    "rotation_due_at": (i.rotation_due_at_ms != 0).then(|| output::time(i.rotation_due_at_ms)),
                    "read": output::read_meta_json(&r.read),
                })),
                Output::Table => {
                    let aliases: Vec<String> = i.aliases.iter().map(|(a, v)| format!("{a}={v}")).collect();
                    let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let mut rotation = super::secret_spec::rotation_rows(&i.rotation);
                    rotation.extend(super::rotation::run_rows(&i.rotation_run, i.rotation_due_at_ms));
                    output::print_table(
                        &["FIELD", "VALUE"],
                        &[
                            vec!["name".into(), i.name],
                            vec!["owner team".into(), i.owner_team],
                            vec!["labels".into(), labels.join(" ")],
                            vec!["aliases".into(), aliases.join(" ")],
                            vec!["latest version".into(), i.next_version.saturating_sub(1).to_string()],
                            vec![
                                "keeps".into(),
                                format!("newest {} versions and aliased ones", i.max_versions),
                            ],
                            vec!["etag".into(), i.etag],
                            vec!["created".into(), output::time(i.created_at_ms)],
                            vec!["updated".into(), output::time(i.updated_at_ms)],
                            vec!["created by".into(), i.created_by],
                            vec!["description".into(), i.description],
                        ]
                        .into_iter()
                        .chain(rotation)
                        .collect::<Vec<_>>(),
                    )
                }
            }
        }
        SecretCmd::List { prefix, page_size, .. } => {
            let mut names = Vec::new();
            let mut token = String::new();
            loop {
                let r = s
                    .list_secrets(pb::ListSecretsRequest {
                        prefix: prefix.clone(),
                        page_token: token,
                        limit: page_size,
                        consistency: read_consistency.clone(),
                    })
                    .await?
                    .into_inner();
                names.extend(r.names);
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            match g.output {
                Output::Json => output::print_json(&json!({ "prefix": prefix, "names": names })),
                Output::Table => {
                    for n in names {
                        output::say(n);
                    }
                }
            }
        }
        SecretCmd::Promote {
            name,
            alias,
            version,
            expect,
        } => {
            let r = s
                .move_alias(pb::MoveAliasRequest {
                    name,
                    alias,
                    version,
                    expected_version: expect,
                })
                .await?
                .into_inner();
            print_write(g, "promoted", &r);
        }
        SecretCmd::Disable { name, version } => {
            let r = s
                .set_version_state(pb::SetVersionStateRequest {
                    name,
                    version,
                    enabled: false,
                })
                .await?
                .into_inner();
            print_write(g, "disabled", &r);
        }
        SecretCmd::Enable { name, version } => {
            let r = s
                .set_version_state(pb::SetVersionStateRequest {
                    name,
                    version,
                    enabled: true,
                })
                .await?
                .into_inner();
            print_write(g, "enabled", &r);
        }
        SecretCmd::Destroy { name, version } => {
            let r = s
                .destroy_version(pb::DestroyVersionRequest { name, version })
                .await?
                .into_inner();
            print_write(g, "destroyed", &r);
        }
    }
    Ok(())
}
