//! Whether a version is safe to retire: no member served a read of it since its quiet window
//! began, and every member's telemetry reaches back that far. A member that did not answer,
//! restarted inside the window or forgot reads that far back leaves the question open: not safe.

use coffer_model::names;

use crate::pb;
use crate::pb::VersionState;

/// What the verdict on a version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No member served a read of it in its quiet window, and every member could tell.
    Safe,
    /// A member served a read of it in its quiet window.
    InUse,
    /// No read seen, but a member did not answer, restarted or forgot that far back.
    Unknown,
    /// Not a version to retire: CURRENT, PENDING, or already disabled, destroyed or gone.
    Held,
}

/// One member's telemetry, or why it gave none.
pub struct Evidence<'a> {
    pub node: &'a pb::NodeInfo,
    pub answer: Result<&'a pb::NodeUsage, &'a str>,
}

/// `version`'s reads in one member's answer.
pub fn reads_of<'a>(usage: &'a pb::NodeUsage, name: &str, version: u64) -> Option<&'a pb::VersionUsage> {
    usage
        .secrets
        .iter()
        .find(|s| s.name == name)?
        .versions
        .iter()
        .find(|v| v.version == version)
}

fn ago(now: u64, at: u64) -> String {
    let ms = now.saturating_sub(at);
    if ms < 60_000 {
        format!("{:.1} s ago", ms as f64 / 1000.0)
    } else {
        format!("{} min ago", ms / 60_000)
    }
}

/// The verdict on `version` of `name` (with `aliases`, in `state`) at `now`, and the one-line
/// reason.
pub fn verdict(
    name: &str,
    version: u64,
    aliases: &[String],
    state: Option<VersionState>,
    quiet_since: u64,
    now: u64,
    nodes: &[Evidence<'_>],
) -> (Verdict, String) {
    for held in [names::CURRENT, names::PENDING] {
        if aliases.iter().any(|a| a == held) {
            return (Verdict::Held, format!("it is {held}"));
        }
    }
    match state {
        Some(VersionState::Enabled) => {}
        Some(VersionState::Disabled) => return (Verdict::Held, "already disabled".into()),
        Some(VersionState::Destroyed) => return (Verdict::Held, "already destroyed".into()),
        _ => return (Verdict::Held, "no longer exists".into()),
    }
    // Evidence of use first: it holds even when other members are silent. (Injected bug,
    // simulations only: the reads are not looked at.)
    let ignore_reads = coffer_kv::bugs::active(coffer_kv::bugs::Bug::RetireIgnoresReads);
    let latest = nodes
        .iter()
        .filter_map(|e| {
            let u = e.answer.ok()?;
            let r = reads_of(u, name, version)?;
            (r.last_read_ms >= quiet_since && !ignore_reads).then_some((r.last_read_ms, e.node, r))
        })
        .max_by_key(|(at, _, _)| *at);
    if let Some((at, node, r)) = latest {
        let by = r.principals.first().map(String::as_str).unwrap_or("someone");
        return (
            Verdict::InUse,
            format!("in use: read {} by {by} on {}", ago(now, at), node.name),
        );
    }
    for e in nodes {
        match e.answer {
            Err(why) => {
                return (
                    Verdict::Unknown,
                    format!("unknown: {} did not answer ({why})", e.node.name),
                )
            }
            Ok(u) if u.since_ms > quiet_since => {
                return (
                    Verdict::Unknown,
                    format!(
                        "unknown: {} counts reads only from {} (it restarted)",
                        e.node.name,
                        ago(now, u.since_ms)
                    ),
                )
            }
            Ok(u) if u.forgotten_through_ms >= quiet_since => {
                return (
                    Verdict::Unknown,
                    format!(
                        "unknown: {} forgot reads up to {} (telemetry full)",
                        e.node.name,
                        ago(now, u.forgotten_through_ms)
                    ),
                )
            }
            Ok(_) => {}
        }
    }
    (Verdict::Safe, format!("no read since {}", ago(now, quiet_since)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_100_000;

    fn node(id: u64, name: &str) -> pb::NodeInfo {
        pb::NodeInfo {
            id,
            name: name.into(),
            region: format!("r{id}"),
            ..Default::default()
        }
    }

    fn usage(since: u64, reads: &[(u64, u64)]) -> pb::NodeUsage {
        pb::NodeUsage {
            since_ms: since,
            now_ms: NOW,
            secrets: vec![pb::SecretReads {
                name: "acme/db".into(),
                versions: reads
                    .iter()
                    .map(|&(version, last)| pb::VersionUsage {
                        version,
                        last_read_ms: last,
                        reads_last_hour: 1,
                        principals: vec!["svc/app".into()],
                        ..Default::default()
                    })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    fn judge(aliases: &[&str], state: VersionState, nodes: &[Evidence<'_>]) -> (Verdict, String) {
        let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
        verdict("acme/db", 1, &aliases, Some(state), NOW - 10_000, NOW, nodes)
    }

    #[test]
    fn a_version_is_safe_only_when_every_member_saw_no_read_since_the_window_began() {
        let (n1, n2) = (node(1, "n1"), node(2, "n2"));
        let old = usage(0, &[(1, NOW - 20_000), (2, NOW - 1)]);
        let fresh = usage(0, &[(1, NOW - 5_000)]);
        let quiet = [
            Evidence {
                node: &n1,
                answer: Ok(&old),
            },
            Evidence {
                node: &n2,
                answer: Ok(&old),
            },
        ];
        let (v, why) = judge(&["PREVIOUS"], VersionState::Enabled, &quiet);
        assert_eq!(v, Verdict::Safe, "{why}");
        assert!(why.starts_with("no read since 10.0 s ago"), "{why}");

        let read = [
            Evidence {
                node: &n1,
                answer: Ok(&old),
            },
            Evidence {
                node: &n2,
                answer: Ok(&fresh),
            },
        ];
        let (v, why) = judge(&["PREVIOUS"], VersionState::Enabled, &read);
        assert_eq!(v, Verdict::InUse);
        assert_eq!(why, "in use: read 5.0 s ago by svc/app on n2");

        // A read seen anywhere wins over a silent member; silence alone is not safety.
        let silent = [
            Evidence {
                node: &n1,
                answer: Err("timed out"),
            },
            Evidence {
                node: &n2,
                answer: Ok(&fresh),
            },
        ];
        let (v, why) = judge(&[], VersionState::Enabled, &silent);
        assert!(v == Verdict::InUse && why.starts_with("in use"), "{why}");
        let silent = [
            Evidence {
                node: &n1,
                answer: Err("timed out"),
            },
            Evidence {
                node: &n2,
                answer: Ok(&old),
            },
        ];
        assert_eq!(
            judge(&[], VersionState::Enabled, &silent),
            (Verdict::Unknown, "unknown: n1 did not answer (timed out)".into())
        );

        let restarted = usage(NOW - 3_000, &[]);
        let r = [
            Evidence {
                node: &n1,
                answer: Ok(&old),
            },
            Evidence {
                node: &n2,
                answer: Ok(&restarted),
            },
        ];
        let (v, why) = judge(&[], VersionState::Enabled, &r);
        assert!(
            v == Verdict::Unknown && why.contains("n2 counts reads only from 3.0 s ago"),
            "{why}"
        );

        let mut forgot = usage(0, &[]);
        forgot.forgotten_through_ms = NOW - 2_000;
        let r = [Evidence {
            node: &n1,
            answer: Ok(&forgot),
        }];
        let (v, why) = judge(&[], VersionState::Enabled, &r);
        assert!(v == Verdict::Unknown && why.contains("forgot reads"), "{why}");
    }

    #[test]
    fn current_pending_and_retired_versions_are_never_safe_to_retire() {
        let n1 = node(1, "n1");
        let none = usage(0, &[]);
        let e = [Evidence {
            node: &n1,
            answer: Ok(&none),
        }];
        let held = |reason: &str| (Verdict::Held, reason.to_string());
        assert_eq!(judge(&["CURRENT"], VersionState::Enabled, &e), held("it is CURRENT"));
        assert_eq!(judge(&["PENDING"], VersionState::Enabled, &e), held("it is PENDING"));
        assert_eq!(judge(&[], VersionState::Disabled, &e), held("already disabled"));
        assert_eq!(judge(&[], VersionState::Destroyed, &e), held("already destroyed"));
        assert_eq!(judge(&[], VersionState::Enabled, &e).0, Verdict::Safe);
    }
}
