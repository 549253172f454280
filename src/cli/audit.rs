//! `coffer audit …`: read a node's audit log and check its hash chain.
//!
//! Without `--file` the node at `--addr` answers about its own log (needs `audit:read`);
//! with `--file` a copy is read offline, with no server and no token.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use serde_json::Value;

use super::error::CliError;
use super::global::connect;
use super::global::Global;
use super::global::Output;
use super::output;
use crate::audit::rotation;
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// The newest records of a node's audit log.
    Tail {
        /// How many records.
        #[arg(long, default_value_t = 20)]
        count: u32,
        /// Read this copy of an audit log instead of asking a node.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Check the hash chain; exits non-zero and names the first broken record if any.
    Verify {
        /// Check this copy of an audit log instead of asking a node to check its own.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

fn event_json(seq: u64, e: &pb::AuditEvent, hash: &str) -> Value {
    let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
    json!({
        "seq": seq,
        "time": crate::time::rfc3339_ms(e.time_ms),
        "node": e.node,
        "region": e.region,
        "principal": e.principal,
        "action": e.action,
        "resource": e.resource,
        "version": (e.version != 0).then_some(e.version),
        "decision": e.decision,
        "outcome": opt(&e.outcome),
        "statement": e.statement,
        "request_id": e.request_id,
        "source": opt(&e.source),
        "consistency": opt(&e.consistency),
        "break_glass": e.break_glass,
        "reason": opt(&e.reason),
        "ticket": opt(&e.ticket),
        "severity": e.severity,
        "credential": opt(&e.credential),
        "hash": hash,
    })
}

fn print_entries(g: &Global, entries: Vec<(u64, pb::AuditEvent, String)>) {
    match g.output {
        Output::Json => output::print_json(&json!(entries
            .iter()
            .map(|(seq, e, h)| event_json(*seq, e, h))
            .collect::<Vec<_>>())),
        Output::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|(seq, e, _)| {
                    vec![
                        seq.to_string(),
                        crate::time::rfc3339_ms(e.time_ms),
                        e.principal.clone(),
                        e.action.clone(),
                        match e.version {
                            0 => e.resource.clone(),
                            v => format!("{}#{v}", e.resource),
                        },
                        match e.outcome.as_str() {
                            "" => e.decision.clone(),
                            o => format!("{} ({o})", e.decision),
                        },
                        if e.break_glass {
                            format!("BREAK-GLASS {} {}", e.ticket, e.statement)
                        } else {
                            e.statement.clone()
                        },
                    ]
                })
                .collect();
            output::print_table(
                &[
                    "SEQ",
                    "TIME",
                    "PRINCIPAL",
                    "ACTION",
                    "RESOURCE",
                    "DECISION",
                    "STATEMENT",
                ],
                &rows,
            );
        }
    }
}

/// What `audit verify` found, wherever it was checked.
struct Verified<'a> {
    ok: bool,
    records: u64,
    first_broken: u64,
    problem: &'a str,
    first_seq: u64,
    files: u64,
    /// `(checked, newest anchored record)` when a node checked its log against the heads the
    /// cluster anchored; `None` offline (a copy has no anchors beside it).
    anchors: Option<(u64, u64)>,
}

fn print_verify(g: &Global, v: Verified<'_>, source: &str) -> Result<(), CliError> {
    let Verified {
        ok,
        records,
        first_broken,
        problem,
        first_seq,
        files,
        anchors,
    } = v;
    let anchored = match anchors {
        Some((_, 0)) => "no record anchored through Raft yet".to_string(),
        Some((checked, through)) => format!("{checked} anchored head(s) match, the newest at record {through}"),
        None => "offline: not checked against the heads the cluster anchored".to_string(),
    };
    let last = (first_seq + records).saturating_sub(1);
    match g.output {
        Output::Json => output::print_json(&json!({
            "ok": ok,
            "records": records,
            "first_broken": (!ok).then_some(first_broken),
            "problem": (!ok).then_some(problem),
            "first_seq": first_seq,
            "files": files,
            "anchors_checked": anchors.map(|(c, _)| c),
            "anchored_through": anchors.map(|(_, t)| t),
            "source": source,
        })),
        Output::Table if ok => output::say(format!(
            "ok: {records} records verified (records {first_seq}..{last} in {files} file(s); {source}; {anchored})"
        )),
        Output::Table => {}
    }
    if ok {
        Ok(())
    } else {
        Err(CliError {
            message: format!("audit log {source} is broken at record {first_broken}: {problem} ({records} records before it verified)"),
            kind: Some("audit_chain_broken".into()),
            code: 2,
        })
    }
}

pub async fn run(g: &Global, cmd: AuditCmd) -> Result<(), CliError> {
    match cmd {
        AuditCmd::Tail {
            count,
            file: Some(path),
        } => {
            let entries = rotation::tail_log(&path, count as usize)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
            print_entries(g, entries.into_iter().map(|t| (t.seq, t.event, t.hash)).collect());
            Ok(())
        }
        AuditCmd::Tail { count, file: None } => {
            let client = connect(g).await?;
            let r = client
                .access
                .clone()
                .audit_tail(pb::AuditTailRequest { count })
                .await?
                .into_inner();
            print_entries(
                g,
                r.entries
                    .into_iter()
                    .map(|e| (e.seq, e.event.unwrap_or_default(), e.hash))
                    .collect(),
            );
            Ok(())
        }
        AuditCmd::Verify { file: Some(path) } => {
            let report = rotation::verify_file(&path)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
            let (first, problem) = report
                .broken
                .map(|b| (b.position, b.problem))
                .unwrap_or((0, String::new()));
            let v = Verified {
                ok: first == 0,
                records: report.records,
                first_broken: first,
                problem: &problem,
                first_seq: report.first_seq,
                files: report.files as u64,
                anchors: None,
            };
            print_verify(g, v, &path.display().to_string())
        }
        AuditCmd::Verify { file: None } => {
            let client = connect(g).await?;
            let r = client
                .access
                .clone()
                .audit_verify(pb::AuditVerifyRequest {})
                .await?
                .into_inner();
            let node = r.served_by.map(|s| format!("node {}", s.node)).unwrap_or_default();
            let v = Verified {
                ok: r.ok,
                records: r.records,
                first_broken: r.first_broken,
                problem: &r.problem,
                first_seq: r.first_seq.max(1),
                files: u64::from(r.files),
                anchors: Some((r.anchors_checked, r.anchored_through)),
            };
            print_verify(g, v, &node)
        }
    }
}
