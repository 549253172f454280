//! The cluster's view of a secret's reads: every member asked at once, their answers merged
//! per version and region, and each version judged safe to retire or not ([`super::verdict`]).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use coffer_model::query;
use coffer_model::rotation;

use super::verdict;
use super::verdict::Evidence;
use super::verdict::Verdict;
use crate::error::ApiError;
use crate::pb;
use crate::pb::VersionState;
use crate::service::Service;

/// How long a member has to answer.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(1500);
/// Versions one answer lists at most (newest first).
pub const MAX_VERSIONS_SHOWN: usize = 100;

/// The verdict on a version, why, and when safe the window in which no member served a read of
/// it (what an unforced `AdvanceRotation` carries as its evidence).
#[derive(Debug, Clone)]
pub struct Retirable {
    pub verdict: Verdict,
    pub reason: String,
    pub quiet_from_ms: u64,
    pub quiet_until_ms: u64,
}

/// Each member and its telemetry (or why it gave none).
pub type MemberAnswers = Vec<(pb::NodeInfo, Result<pb::NodeUsage, String>)>;

impl Service {
    /// Every member's telemetry for `names`, asked at once (this node's from its own book).
    pub async fn members_usage(&self, names: &[String]) -> MemberAnswers {
        let s = self.raft.status();
        let members: Vec<pb::NodeInfo> = s.voters.into_iter().chain(s.learners).collect();
        let answers = futures::future::join_all(members.iter().map(|n| async move {
            if n.id == self.me.id {
                Ok(self.usage.report(names, crate::time::now_ms()))
            } else {
                super::peer::ask(&self.raft, n, names, ASK_TIMEOUT).await
            }
        }))
        .await;
        members.into_iter().zip(answers).collect()
    }

    /// Whether `version` of `secret` is safe to retire now, asking every member.
    pub async fn safe_to_retire(&self, secret: &pb::Secret, version: u64) -> Retirable {
        // Every member answers after this time: its answer covers every read it served before.
        let asked_at = crate::time::now_ms();
        let answers = self.members_usage(std::slice::from_ref(&secret.name)).await;
        let now = crate::time::now_ms();
        let state = version_state(&*self.raft.reader().view(), &secret.name, version);
        // The window starts where it did when the members were asked: their answers cover it.
        let quiet_from_ms = rotation::quiet_since(secret, version, asked_at);
        let (mut verdict, mut reason) = verdict::verdict(
            &secret.name,
            version,
            &query::aliases_of(secret, version),
            state,
            quiet_from_ms,
            now,
            &evidence(&answers),
        );
        if verdict == Verdict::Safe && quiet_from_ms > asked_at {
            // The overlap began after this node's clock says it asked (clocks apart).
            verdict = Verdict::Unknown;
            reason = "unknown: the overlap began after the members were asked (clock skew)".into();
        }
        Retirable {
            verdict,
            reason,
            quiet_from_ms,
            quiet_until_ms: asked_at,
        }
    }

    /// `coffer secret usage NAME`: each version's reads per region, who read it, and whether
    /// it is safe to retire.
    pub async fn secret_usage(&self, name: &str) -> Result<pb::SecretUsageResponse, ApiError> {
        let secret = self.secret_here(name)?;
        let answers = self.members_usage(&[name.to_string()]).await;
        let now = crate::time::now_ms();
        let view = self.raft.reader().view();
        let mut versions: BTreeSet<u64> = secret.aliases.values().copied().collect();
        for (_, a) in &answers {
            if let Ok(u) = a {
                versions.extend(u.secrets.iter().flat_map(|s| s.versions.iter().map(|v| v.version)));
            }
        }
        let regions: BTreeSet<&str> = answers.iter().map(|(n, _)| n.region.as_str()).collect();
        let evidence = evidence(&answers);
        let versions = versions
            .into_iter()
            .rev()
            .take(MAX_VERSIONS_SHOWN)
            .map(|v| {
                let state = version_state(&*view, name, v);
                let aliases = query::aliases_of(&secret, v);
                let quiet_since = rotation::quiet_since(&secret, v, now);
                let (verdict, reason) = verdict::verdict(name, v, &aliases, state, quiet_since, now, &evidence);
                let mut per_region: BTreeMap<&str, pb::RegionUsage> = regions
                    .iter()
                    .map(|r| {
                        (
                            *r,
                            pb::RegionUsage {
                                region: r.to_string(),
                                ..Default::default()
                            },
                        )
                    })
                    .collect();
                let mut principals = BTreeSet::new();
                let mut truncated = false;
                for (node, a) in &answers {
                    let Some(reads) = a.as_ref().ok().and_then(|u| verdict::reads_of(u, name, v)) else {
                        continue;
                    };
                    let r = per_region.entry(node.region.as_str()).or_default();
                    r.reads_last_hour += reads.reads_last_hour;
                    r.reads_last_day += reads.reads_last_day;
                    r.last_read_ms = r.last_read_ms.max(reads.last_read_ms);
                    principals.extend(reads.principals.iter().cloned());
                    truncated |= reads.principals_truncated;
                }
                let regions: Vec<pb::RegionUsage> = per_region.into_values().collect();
                pb::VersionUsageSummary {
                    version: v,
                    state: query::state_name(state.map_or(0, |s| s as i32)).into(),
                    aliases,
                    last_read_ms: regions.iter().map(|r| r.last_read_ms).max().unwrap_or(0),
                    regions,
                    principals: principals.into_iter().collect(),
                    principals_truncated: truncated,
                    safe_to_retire: verdict == Verdict::Safe,
                    reason,
                    quiet_since_ms: quiet_since,
                }
            })
            .collect();
        let nodes = answers
            .iter()
            .map(|(n, a)| pb::NodeUsageStatus {
                node: Some(n.clone()),
                since_ms: a.as_ref().map_or(0, |u| u.since_ms),
                unreachable: a.as_ref().err().cloned().unwrap_or_default(),
            })
            .collect();
        Ok(pb::SecretUsageResponse {
            name: name.into(),
            now_ms: now,
            versions,
            nodes,
            served_by: Some(self.served_by(self.raft.status().role.as_str())),
        })
    }
}

fn evidence(answers: &MemberAnswers) -> Vec<Evidence<'_>> {
    answers
        .iter()
        .map(|(node, a)| Evidence {
            node,
            answer: a.as_ref().map_err(String::as_str),
        })
        .collect()
}

/// `version` of `name`'s state in `view`, if it has a record.
fn version_state(view: &dyn coffer_kv::KvView, name: &str, version: u64) -> Option<VersionState> {
    query::version(view, name, version)
        .ok()
        .and_then(|v| VersionState::try_from(v.state).ok())
}
