//! The rewrap job: every data key wrapped for every region, under that region's current key.
//!
//! A write commits even when some region's KMS is down; that version then lacks the region's
//! wrap. [`run_job`] runs on every node: each round it counts, from the local replica, the
//! versions missing each region's wrap (the `coffer_kms_versions_missing_wrap{region}` gauge);
//! on the leader it then repairs them with [`pass`] once the region's KMS answers again.
//! `coffer kms rewrap` runs a [`pass`] on demand that also replaces wraps under an older key of
//! the region (after a key rotation), so the old key can be retired.
//!
//! A pass reads the replica page by page, gets each affected data key (DEK cache, else any
//! region's KMS, local first), wraps it for the regions that need it and proposes the new wraps
//! in `SetWraps` commands. Ciphertext is never touched; a version destroyed meanwhile or an
//! envelope that changed is skipped by the state machine, so a pass can race anything.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_model::query;
use coffer_raft::node::RaftNode;

use crate::crypto::kms::KeyContext;
use crate::crypto::kms::KeyRef;
use crate::crypto::vault::Vault;
use crate::pb;

/// Versions read per page.
const PAGE: usize = 256;
/// Wraps proposed per SetWraps command.
const BATCH: usize = 256;
/// Failure lines a pass reports (the rest are counted).
const MAX_FAILURE_LINES: usize = 20;
/// Deadline of one SetWraps proposal.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a pass should do.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Only these regions (None = every region).
    pub regions: Option<Vec<String>>,
    /// Also replace wraps under a key other than the region's current one.
    pub replace_stale: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub checked: u64,
    pub added: u64,
    pub replaced: u64,
    pub failures: Vec<String>,
    pub failures_not_shown: u64,
}

impl PassReport {
    fn fail(&mut self, line: String) {
        if self.failures.len() < MAX_FAILURE_LINES {
            self.failures.push(line);
        } else {
            self.failures_not_shown += 1;
        }
    }
}

/// Per region: live versions without its wrap, and with a wrap under another than the current
/// key (only counted when the current key is known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionCensus {
    pub missing: u64,
    pub stale: u64,
}

/// The regions every data key must be wrapped for: those of the replicated cluster config
/// that this node has a KMS for (a region missing from this node's config is reported).
fn target_regions(raft: &RaftNode, vault: &Vault) -> (Vec<String>, Vec<String>) {
    let info = {
        let view = raft.reader().view();
        query::cluster_info(&*view).ok().flatten()
    };
    let names: Vec<String> = match info {
        Some(i) if !i.regions.is_empty() => i.regions.into_iter().map(|r| r.region).collect(),
        _ => vault.kms().region_names().map(str::to_string).collect(),
    };
    names.into_iter().partition(|r| vault.kms().contains(r))
}

/// One page of live versions from the local replica, after `after`.
fn page(
    raft: &RaftNode,
    after: Option<&query::VersionCursor>,
) -> query::Result<(Vec<pb::SecretVersion>, Option<query::VersionCursor>)> {
    let view = raft.reader().view();
    query::live_versions_page(&*view, after, PAGE)
}

fn token_key(raft: &RaftNode) -> Option<pb::Envelope> {
    let view = raft.reader().view();
    query::cluster_info(&*view).ok().flatten().and_then(|i| i.token_key)
}

/// Counts, per region, live versions (and the token key) missing its wrap or wrapped under a
/// non-current key.
///
/// The scan reads every live version (every 30 s on every node, from the rewrap job), decoding
/// only their wrapped keys, so it yields to the runtime after each page of [`PAGE`] versions
/// instead of holding a runtime worker for a scan that grows with the number of versions.
pub async fn census(
    raft: &RaftNode,
    regions: &[String],
    current: &BTreeMap<String, KeyRef>,
) -> BTreeMap<String, RegionCensus> {
    let mut out: BTreeMap<String, RegionCensus> =
        regions.iter().map(|r| (r.clone(), RegionCensus::default())).collect();
    let mut count = |wraps: &[pb::WrappedKey]| {
        for (region, c) in out.iter_mut() {
            match wraps.iter().find(|w| &w.region == region) {
                None => c.missing += 1,
                Some(w) if current.get(region).is_some_and(|k| !k.matches(w)) => c.stale += 1,
                Some(_) => {}
            }
        }
    };
    if let Some(env) = token_key(raft) {
        count(&env.wrapped_keys);
    }
    let mut after = None;
    loop {
        // Only the wrapped keys are decoded: the scan never copies a ciphertext.
        let next = {
            let view = raft.reader().view();
            query::live_version_wraps_page(&*view, after.as_ref(), PAGE, &mut count)
        };
        match next {
            Ok(Some(n)) => after = Some(n),
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "rewrap census stopped early: the counts are partial");
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    out
}

/// One wrap to add or replace, and for what.
struct Job {
    name: String,
    version: u64,
    token_key: bool,
    env: pb::Envelope,
    regions: Vec<String>,
}

/// Adds every missing wrap (and with `replace_stale`, replaces wraps under an older key) for the
/// selected regions, proposing them through the leader.
pub async fn pass(raft: &RaftNode, vault: &Vault, opts: &PassOptions) -> PassReport {
    let mut report = PassReport::default();
    let (mut regions, unknown) = target_regions(raft, vault);
    let wanted = |r: &String| opts.regions.as_ref().is_none_or(|only| only.contains(r));
    if let Some(only) = &opts.regions {
        if let Some(r) = only.iter().find(|r| !regions.contains(r) && !unknown.contains(r)) {
            report.fail(format!("region {r} is not a region of this cluster"));
            return report;
        }
        regions.retain(wanted);
    }
    for r in unknown.iter().filter(|r| wanted(r)) {
        report.fail(format!(
            "region {r}: this node has no KMS configured for it; add its [[regions]] entry"
        ));
    }
    // Each region's current key; a region whose KMS does not answer waits for a later pass.
    let mut current = BTreeMap::new();
    for r in &regions {
        match vault.kms().current_key(r).await {
            Ok(k) => {
                current.insert(r.clone(), k);
            }
            Err(e) => report.fail(format!("region {r}: {e}")),
        }
    }
    let usable: Vec<String> = regions.into_iter().filter(|r| current.contains_key(r)).collect();
    if usable.is_empty() {
        return report;
    }
    let needs = |env: &pb::Envelope| -> Vec<String> {
        usable
            .iter()
            .filter(|r| match env.wrapped_keys.iter().find(|w| &w.region == *r) {
                None => true,
                Some(w) => opts.replace_stale && !current[*r].matches(w),
            })
            .cloned()
            .collect()
    };

    let mut batch: Batch = Vec::new();
    if let Some(env) = token_key(raft) {
        report.checked += 1;
        let regions = needs(&env);
        if !regions.is_empty() {
            let job = Job {
                name: crate::tokens::TOKEN_KEY_NAME.to_string(),
                version: 1,
                token_key: true,
                env,
                regions,
            };
            wrap_job(vault, job, &mut batch, &mut report).await;
        }
    }
    let mut after = None;
    loop {
        let (versions, next) = match page(raft, after.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                report.fail(format!("reading the local replica: {e}"));
                break;
            }
        };
        for v in versions {
            report.checked += 1;
            let Some(env) = v.envelope else { continue };
            let regions = needs(&env);
            if regions.is_empty() {
                continue;
            }
            let job = Job {
                name: v.name,
                version: v.version,
                token_key: false,
                env,
                regions,
            };
            wrap_job(vault, job, &mut batch, &mut report).await;
            if batch.len() >= BATCH {
                propose(raft, std::mem::take(&mut batch), &mut report).await;
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if !batch.is_empty() {
        propose(raft, batch, &mut report).await;
    }
    report
}

/// Entries to propose, each with whether it replaces an existing wrap.
type Batch = Vec<(pb::RewrapEntry, bool)>;

async fn wrap_job(vault: &Vault, job: Job, batch: &mut Batch, report: &mut PassReport) {
    let what = if job.token_key {
        "the cluster token key".to_string()
    } else {
        format!("{} v{}", job.name, job.version)
    };
    let dek = match vault.dek_for_rewrap(&job.name, job.version, &job.env).await {
        Ok(k) => k,
        Err(e) => {
            report.fail(format!("{what}: cannot reach its data key: {e}"));
            return;
        }
    };
    let ctx = KeyContext::for_secret(&job.name);
    for region in job.regions {
        let replaces = job.env.wrapped_keys.iter().any(|w| w.region == region);
        tracing::debug!(what = %what, region = %region, replaces, "rewrapping");
        match vault.kms().wrap_for(&region, &dek, &ctx).await {
            Ok(wrap) => batch.push((
                pb::RewrapEntry {
                    name: if job.token_key { String::new() } else { job.name.clone() },
                    version: job.version,
                    nonce: job.env.nonce.clone(),
                    wrap: Some(wrap),
                    token_key: job.token_key,
                },
                replaces,
            )),
            Err(e) => report.fail(format!("{what}: {e}")),
        }
    }
}

async fn propose(raft: &RaftNode, batch: Batch, report: &mut PassReport) {
    let n = batch.len() as u64;
    let replacing = batch.iter().filter(|(_, r)| *r).count() as u64;
    let entries: Vec<pb::RewrapEntry> = batch.into_iter().map(|(e, _)| e).collect();
    let request_id = match crate::request_ids::fresh() {
        Ok(id) => id,
        Err(e) => return report.fail(format!("cannot propose {n} wraps: {e}")),
    };
    let cmd = pb::Command {
        proposed_at_ms: crate::time::now_ms(),
        principal: "system:rewrap".into(),
        request_id,
        op: Some(pb::command::Op::SetWraps(pb::SetWraps { entries })),
    };
    match raft.propose(cmd, PROPOSE_TIMEOUT).await {
        Ok(r) => match r.outcome {
            Some(pb::command_result::Outcome::Ok(ok)) => {
                // Let this replica catch up, so a census right after the pass sees the wraps.
                raft.reader().wait_applied(r.log_index, Duration::from_secs(2)).await;
                let applied = ok.applied as u64;
                tracing::debug!(applied, n, replacing, "SetWraps applied");
                // Skipped entries (versions destroyed meanwhile) are rare; count them as adds.
                let replaced = replacing.min(applied);
                report.replaced += replaced;
                report.added += applied - replaced;
                if applied < n {
                    tracing::info!(
                        skipped = n - applied,
                        "rewrap entries skipped (versions destroyed meanwhile)"
                    );
                }
            }
            Some(pb::command_result::Outcome::Error(e)) => report.fail(format!("SetWraps refused: {}", e.message)),
            None => report.fail("SetWraps produced no result".into()),
        },
        Err(e) => report.fail(format!("cannot propose the new wraps: {e:?}")),
    }
}

/// Runs until `stop`: each `interval`, updates the missing-wrap gauge from the local replica;
/// on the leader, repairs missing wraps of regions whose KMS answers.
pub async fn run_job(
    raft: RaftNode,
    core: std::sync::Arc<crate::service::Service>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let vault = &core.vault;
        let (regions, _) = target_regions(&raft, vault);
        let counts = census(&raft, &regions, &BTreeMap::new()).await;
        for (region, c) in &counts {
            metrics::gauge!("coffer_kms_versions_missing_wrap", "region" => region.clone()).set(c.missing as f64);
        }
        let status = raft.status();
        if status.leader != Some(status.id) {
            continue;
        }
        // One pass for every region with work whose KMS is not resting after a failure.
        let due: Vec<String> = counts
            .into_iter()
            .filter(|(region, c)| c.missing > 0 && !vault.kms().is_resting(region))
            .map(|(region, _)| region)
            .collect();
        if due.is_empty() {
            continue;
        }
        let opts = PassOptions {
            regions: Some(due.clone()),
            replace_stale: false,
        };
        let r = pass(&raft, vault, &opts).await;
        if r.added > 0 || !r.failures.is_empty() {
            tracing::info!(
                regions = ?due,
                added = r.added,
                failures = r.failures.len() as u64 + r.failures_not_shown,
                first_failure = r.failures.first().map(String::as_str).unwrap_or(""),
                "rewrap job pass"
            );
        }
    }
}
