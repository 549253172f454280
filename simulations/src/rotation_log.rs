//! The rotating secrets as every node held them, sampled as the run goes.
//!
//! The setup gives [`ROTATING`] secrets a rotation policy with a short period (`generate` for
//! the first two, `hook` for the last: the simulated rotator, [`crate::rotator`], writes its
//! values), so the leader's scheduler rotates them all through the run, under its faults. Every
//! [`SAMPLE_EVERY`] the harness reads each node's record of them: a CURRENT
//! that points at a version not enabled is noted at once, and each rotation run is kept as the
//! furthest any node had it (a run's steps are only ever appended), so the checkers see every
//! run, not only the newest one a record holds.

use std::collections::BTreeMap;

use coffer::pb;
use coffer_kv::KvView;
use coffer_model::keys;
use coffer_model::names;
use coffer_raft::storage::SmBackend;
use prost::Message;

/// The secrets the setup creates with a rotation policy, and their policies' times (ms).
pub const ROTATING: [&str; 3] = ["acme/rot0", "acme/rot1", "acme/rot2"];
/// The rotating secret of the `hook` strategy.
pub const HOOKED: &str = "acme/rot2";
pub const PERIOD_MS: u64 = 3_000;
pub const OVERLAP_MS: u64 = 1_000;
pub const RETENTION_MS: u64 = 1_000;
/// `rotation.tick_ms` of every simulated node.
pub const TICK_MS: u64 = 200;
/// How often the harness reads the rotating secrets: well inside a tick, so that a run's end is
/// seen on the leader before the next run replaces it.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// The spec the setup creates `name` with.
pub fn spec(i: usize) -> pb::SecretSpec {
    let hook = ROTATING[i] == HOOKED;
    let generate = if i == 0 {
        pb::GenerateSpec {
            length: 24,
            ..Default::default()
        }
    } else {
        pb::GenerateSpec {
            bytes: 16,
            encoding: "hex".into(),
            ..Default::default()
        }
    };
    pb::SecretSpec {
        owner_team: "sim".into(),
        // Far above what a run makes: the cap never prunes a version the checkers look at.
        max_versions: 1000,
        rotation: Some(pb::RotationPolicy {
            period_ms: PERIOD_MS,
            overlap_ms: OVERLAP_MS,
            strategy: if hook {
                pb::RotationStrategy::Hook
            } else {
                pb::RotationStrategy::Generate
            } as i32,
            generate: (!hook).then_some(generate),
            retention_ms: RETENTION_MS,
            retire_deadline_ms: RETENTION_MS,
            hook_url: if hook {
                "https://rotator.sim.invalid/rotate".into()
            } else {
                String::new()
            },
        }),
        ..Default::default()
    }
}

/// A read of PREVIOUS the rotation reader made that was answered: the node, the version it
/// returned, and when it was asked and answered (ms on the nodes' clock).
#[derive(Debug, Clone)]
pub struct PreviousRead {
    pub node: String,
    pub name: String,
    pub version: u64,
    pub invoked_ms: u64,
    pub completed_ms: u64,
}

/// Sightings of one kind kept word for word (the rest are counted).
pub const MAX_LINES: usize = 10;

/// One node's record of a rotating secret and its versions (envelopes dropped).
#[derive(Debug, Clone)]
pub struct Held {
    pub secret: pb::Secret,
    pub versions: Vec<pb::SecretVersion>,
}

impl Held {
    pub fn version(&self, v: u64) -> Option<&pb::SecretVersion> {
        self.versions.iter().find(|x| x.version == v)
    }
}

#[derive(Debug, Default)]
pub struct RotationLog {
    /// A CURRENT seen pointing at a version that is not enabled (or has no record): the
    /// first [`MAX_LINES`] sightings, and how many there were.
    pub bad_current: Vec<String>,
    pub bad_current_seen: usize,
    /// Two nodes' records of one run that disagree on a step both hold.
    pub diverged: Vec<String>,
    /// (secret, run number) -> the run as the node that had it furthest along held it.
    pub runs: BTreeMap<(String, u64), pb::RotationRun>,
    /// node -> secret -> the last sample (after the liveness phase: the final state).
    pub last: BTreeMap<String, BTreeMap<String, Held>>,
    /// Every read of PREVIOUS the rotation reader made that was answered, in order.
    pub previous_reads: Vec<PreviousRead>,
    /// Every write the simulated rotator made, in order, with what the cluster answered.
    pub hook_writes: Vec<crate::rotator::HookWrite>,
}

/// `name`'s record and versions in `view`.
pub fn held(view: &dyn KvView, name: &str) -> Option<Held> {
    let secret = pb::Secret::decode(&view.get(&keys::secret(name)).ok()??[..]).ok()?;
    let prefix = keys::versions_of(name);
    let versions = view
        .scan(&prefix, &prefix, usize::MAX)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, v)| pb::SecretVersion::decode(&v[..]).ok())
        .map(|mut v| {
            v.envelope = None;
            v
        })
        .collect();
    Some(Held { secret, versions })
}

impl RotationLog {
    pub fn sample(&mut self, node: &str, sm: &impl SmBackend, at_us: u64) {
        let view = sm.view();
        for name in ROTATING {
            let Some(h) = held(&*view, name) else { continue };
            if let Some(&current) = h.secret.aliases.get(names::CURRENT) {
                let state = h.version(current).map(|v| v.state);
                if state != Some(pb::VersionState::Enabled as i32) {
                    self.bad_current_seen += 1;
                    if self.bad_current.len() >= MAX_LINES {
                        continue;
                    }
                    self.bad_current.push(format!(
                        "{node} at {} ms: CURRENT of {name} is version {current}, which is {}",
                        at_us / 1000,
                        match state.and_then(|s| pb::VersionState::try_from(s).ok()) {
                            Some(s) => s.as_str_name(),
                            None => "missing",
                        }
                    ));
                }
            }
            if let Some(run) = &h.secret.rotation_run {
                let key = (name.to_string(), run.run);
                match self.runs.get(&key) {
                    // Steps are only appended: two records of one run agree on what both hold.
                    Some(seen) if !is_prefix(&seen.events, &run.events) && !is_prefix(&run.events, &seen.events) => {
                        self.diverged.push(format!(
                            "{node} at {} ms holds run {} of {name} with steps {:?}; another node had {:?}",
                            at_us / 1000,
                            run.run,
                            steps(run),
                            steps(seen)
                        ));
                    }
                    Some(seen) if seen.events.len() >= run.events.len() => {}
                    _ => {
                        self.runs.insert(key, run.clone());
                    }
                }
            }
            self.last
                .entry(node.to_string())
                .or_default()
                .insert(name.to_string(), h);
        }
    }
}

fn is_prefix(a: &[pb::RotationEvent], b: &[pb::RotationEvent]) -> bool {
    a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// A run's steps by name, in order.
pub fn steps(run: &pb::RotationRun) -> Vec<&'static str> {
    run.events
        .iter()
        .map(|e| coffer_model::rotation::step_name(pb::RotationStep::try_from(e.step).unwrap_or_default()))
        .collect()
}
