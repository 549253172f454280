//! `coffer secret rotate` (start a rotation now, or roll CURRENT back), `coffer rotation status`
//! (every secret's standing), and how a rotation run reads in `describe`.

use serde_json::json;
use serde_json::Value;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::pb;
use coffer_model::rotation;

#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    name: String,
    /// Move CURRENT back to PREVIOUS (compare-and-swap) while PREVIOUS is still enabled.
    #[arg(long)]
    rollback: bool,
    /// With --rollback: the version CURRENT must point at now. Default: what it points at
    /// when the command runs.
    #[arg(long, requires = "rollback")]
    expect: Option<u64>,
}

pub async fn rotate(g: &Global, a: RotateArgs) -> Result<(), CliError> {
    let client = connect(g).await?;
    let mut s = client.secrets.clone();
    let expected_current = match (a.rollback, a.expect) {
        (false, _) => None,
        (true, Some(v)) => Some(v),
        (true, None) => {
            let info = super::secret_spec::describe_now(&mut s, &a.name).await?;
            Some(info.aliases.get(coffer_model::names::CURRENT).copied().unwrap_or(0))
        }
    };
    let r = s
        .rotate_secret(pb::RotateSecretRequest {
            name: a.name.clone(),
            rollback: a.rollback,
            expected_current,
        })
        .await?
        .into_inner();
    match g.output {
        Output::Json => output::print_json(&json!({
            "name": r.name,
            "rollback": a.rollback,
            "version": r.version,
            "aliases": r.aliases,
            "etag": r.etag,
            "log_index": r.log_index,
            "token": r.token,
        })),
        Output::Table if a.rollback => output::say(format!(
            "rolled back {}: CURRENT is version {} again",
            r.name, r.version
        )),
        Output::Table => output::say(format!(
            "rotation of {} started; `coffer secret describe {}` shows its steps",
            r.name, r.name
        )),
    }
    Ok(())
}

fn step_name(step: i32) -> &'static str {
    rotation::step_name(pb::RotationStep::try_from(step).unwrap_or_default())
}

/// The rotation run as JSON (`null` without one).
pub fn run_json(run: &Option<pb::RotationRun>) -> Value {
    let Some(r) = run else {
        return Value::Null;
    };
    {
        json!({
            "run": r.run,
            "step": step_name(r.step),
            "old_version": r.old_version,
            "new_version": r.new_version,
            "started_at": output::time(r.started_at_ms),
            "step_at": output::time(r.step_at_ms),
            "attempts": r.attempts,
            "last_error": r.last_error,
            "retry_at": output::time(r.retry_at_ms),
            "events": r.events.iter().map(|e| json!({
                "step": step_name(e.step),
                "at_ms": e.at_ms,
                "by": e.by,
                "version": e.version,
                "forced": e.forced,
                "unread_from_ms": e.quiet_from_ms,
                "unread_until_ms": e.quiet_until_ms,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The rotation run as `describe` table rows.
pub fn run_rows(run: &Option<pb::RotationRun>, due_at_ms: u64) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    if due_at_ms != 0 {
        rows.push(vec!["rotation due".into(), output::time(due_at_ms)]);
    }
    if let Some(r) = run {
        let steps: Vec<String> = r
            .events
            .iter()
            .map(|e| format!("{} {}", step_name(e.step), output::time(e.at_ms)))
            .collect();
        rows.push(vec![
            "last rotation".into(),
            format!(
                "#{} {} (v{} -> v{}): {}",
                r.run,
                step_name(r.step),
                r.old_version,
                r.new_version,
                steps.join(", ")
            ),
        ]);
        if !r.last_error.is_empty() {
            rows.push(vec![
                "rotation error".into(),
                format!(
                    "{} (attempt {}, next at {})",
                    r.last_error,
                    r.attempts,
                    output::time(r.retry_at_ms)
                ),
            ]);
        }
    }
    rows
}

#[derive(Debug, clap::Subcommand)]
pub enum RotationCmd {
    /// Secrets with a rotation policy: past due, in flight (with the step) and failing.
    Status(StatusArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Only secrets under this prefix (e.g. acme/ or acme/prod/); default: every tenant, for
    /// platform operators (cluster:admin), listing the secrets they may see.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Only secrets of this owner team.
    #[arg(long)]
    owner_team: Option<String>,
    /// Only secrets past due (CURRENT older than the rotation period).
    #[arg(long, conflicts_with = "failed")]
    due: bool,
    /// Only secrets whose rotation is failing, or whose last rotation failed.
    #[arg(long)]
    failed: bool,
}

pub async fn run(g: &Global, cmd: RotationCmd) -> Result<(), CliError> {
    let RotationCmd::Status(a) = cmd;
    let client = connect(g).await?;
    let r = client
        .secrets
        .clone()
        .rotation_status(pb::RotationStatusRequest {
            prefix: a.prefix,
            owner_team: a.owner_team.unwrap_or_default(),
            due: a.due,
            failed: a.failed,
        })
        .await?
        .into_inner();
    match g.output {
        Output::Json => output::print_json(&json!({
            "secrets": r.secrets.iter().map(|e| json!({
                "name": e.name,
                "owner_team": e.owner_team,
                "strategy": e.strategy,
                "standing": e.standing,
                "current_version": e.current_version,
                "due_at": (e.due_at_ms != 0).then(|| output::time(e.due_at_ms)),
                "run": run_json(&e.run),
            })).collect::<Vec<_>>(),
            "truncated": r.truncated,
        })),
        Output::Table => {
            output::print_table(
                &["SECRET", "OWNER", "STRATEGY", "STANDING", "STEP", "DUE", "ERROR"],
                &r.secrets
                    .iter()
                    .map(|e| {
                        let step = e
                            .run
                            .as_ref()
                            .map(|r| format!("#{} {}", r.run, step_name(r.step)))
                            .unwrap_or_else(|| "-".into());
                        let error = e.run.as_ref().map(|r| r.last_error.clone()).unwrap_or_default();
                        vec![
                            e.name.clone(),
                            e.owner_team.clone(),
                            e.strategy.clone(),
                            e.standing.clone(),
                            step,
                            output::time(e.due_at_ms),
                            error,
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            if r.truncated {
                output::say("(more secrets have a rotation policy than one answer lists; narrow with --prefix)");
            }
        }
    }
    Ok(())
}
