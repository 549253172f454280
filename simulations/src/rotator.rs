//! The simulation's rotator: the hook strategy's seam ([`Rotators`]) answered inside the
//! calling leader's host, as an owner's rotator would, through the same gRPC API and the same
//! faulty network as every client. Each call's behaviour is drawn from the seed, the secret, the
//! run and the attempt (so a rerun of a seed does the same):
//!
//! - write the value with the call's run and token and answer (most calls);
//! - write, then answer an error (a rotator that crashed after writing: the run has its value);
//! - answer an error without writing (the run backs off and is called again);
//! - write twice (a rotator retrying its own write through another node: one may land);
//! - write with an earlier run's run and token (a stale rotator: must be refused);
//! - write with the call's run and a forged token (must be refused).
//!
//! Once the run heals its faults (the liveness phase) the rotator heals too: it answers every
//! call with a good write.
//!
//! Every write is recorded with its outcome in the shared [`HookLog`]
//! ([`crate::invariants::rotation_hook_writes`] checks it).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use coffer::pb;
use coffer::rotation::hook::HookCall;
use coffer::rotation::hook::HookError;
use coffer::rotation::hook::Rotators;

use crate::rng::SimRng;
use crate::workload::request;
use crate::workload::secret_client;

/// How long the simulated rotator may take for one call (then the call times out, whatever it
/// wrote).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// How a write of the rotator came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// The call's run and token.
    Answer,
    /// The same again, through another node.
    Duplicate,
    /// An earlier run's run and token.
    Replay,
    /// The call's run, a token that is not the cluster's.
    Forged,
}

/// One write the rotator made and what the cluster said.
#[derive(Debug, Clone)]
pub struct HookWrite {
    pub name: String,
    /// The run the call was for, and the run the write named.
    pub called_run: u64,
    pub used_run: u64,
    pub kind: WriteKind,
    pub node: String,
    /// The version it landed as, if acknowledged.
    pub acked: Option<u64>,
}

/// What every node's rotator shares (its writes, and the calls and tokens seen so far).
#[derive(Debug, Default)]
pub struct HookState {
    pub writes: Vec<HookWrite>,
    /// Calls so far per (secret, run): the attempt number of the next one.
    calls: BTreeMap<(String, u64), u64>,
    /// The token each (secret, run) was called with.
    tokens: BTreeMap<(String, u64), String>,
}

pub type HookLog = Arc<Mutex<HookState>>;

/// One node's rotator: where it writes (node name, API address) and the shared log.
pub struct SimRotator {
    rng: SimRng,
    nodes: Vec<(String, String)>,
    log: HookLog,
    healed: Arc<AtomicBool>,
}

impl SimRotator {
    pub fn new(rng: SimRng, nodes: Vec<(String, String)>, log: HookLog, healed: Arc<AtomicBool>) -> Self {
        Self {
            rng,
            nodes,
            log,
            healed,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HookState> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts run `used_run`'s value through a node the draw picks, and records the outcome.
    async fn write(&self, rng: &mut SimRng, call: &HookCall, used_run: u64, token: &str, kind: WriteKind) {
        let (node, addr) = rng.pick(&self.nodes).clone();
        let put = pb::PutSecretValueRequest {
            name: call.secret.clone(),
            value: format!("sim-hook-value-{}-{used_run}", call.secret).into_bytes(),
            rotation_run: used_run,
            rotation_token: token.to_string(),
            ..Default::default()
        };
        let acked = secret_client(&addr)
            .put_secret_value(request(put))
            .await
            .ok()
            .map(|r| r.into_inner().version);
        self.state().writes.push(HookWrite {
            name: call.secret.clone(),
            called_run: call.run,
            used_run,
            kind,
            node,
            acked,
        });
    }

    async fn answer(&self, call: &HookCall) -> Result<(), String> {
        let key = (call.secret.clone(), call.run);
        let (attempt, earlier) = {
            let mut s = self.state();
            let attempt = s.calls.entry(key.clone()).or_insert(0);
            *attempt += 1;
            let attempt = *attempt;
            s.tokens.insert(key, call.token.expose().to_string());
            let earlier = s
                .tokens
                .iter()
                .rfind(|((n, r), _)| *n == call.secret && *r < call.run)
                .map(|((_, r), t)| (*r, t.clone()));
            (attempt, earlier)
        };
        let mut rng = self.rng.fork(&format!("{}#{}#{attempt}", call.secret, call.run));
        let token = call.token.expose();
        let roll = rng.below(100);
        let roll = if self.healed.load(Ordering::Relaxed) { 0 } else { roll };
        match roll {
            0..=54 => {
                self.write(&mut rng, call, call.run, token, WriteKind::Answer).await;
                Ok(())
            }
            55..=64 => {
                self.write(&mut rng, call, call.run, token, WriteKind::Answer).await;
                Err("crashed after writing".into())
            }
            65..=74 => Err("its database is down".into()),
            75..=84 => {
                self.write(&mut rng, call, call.run, token, WriteKind::Answer).await;
                self.write(&mut rng, call, call.run, token, WriteKind::Duplicate).await;
                Ok(())
            }
            85..=92 => {
                if let Some((run, old)) = earlier {
                    self.write(&mut rng, call, run, &old, WriteKind::Replay).await;
                }
                Err("replayed an old run".into())
            }
            _ => {
                let forged = format!("{}{}", coffer::tokens::ROTATION_PREFIX, "00".repeat(16));
                self.write(&mut rng, call, call.run, &forged, WriteKind::Forged).await;
                Err("forged its token".into())
            }
        }
    }
}

#[async_trait::async_trait]
impl Rotators for SimRotator {
    async fn call(&self, url: &str, call: &HookCall) -> Result<(), HookError> {
        match tokio::time::timeout(HOOK_TIMEOUT, self.answer(call)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(HookError::Refused {
                url: url.to_string(),
                status: 500,
                body: format!(": {why}"),
            }),
            Err(_) => Err(HookError::Timeout {
                url: url.to_string(),
                ms: HOOK_TIMEOUT.as_millis(),
            }),
        }
    }
}

/// What every node's rotator is made from: the run's rotator stream, where to write, the log.
#[derive(Clone)]
pub struct HookSetup {
    pub rng: SimRng,
    pub nodes: Vec<(String, String)>,
    pub log: HookLog,
    /// Set when the run heals its faults: the rotator stops misbehaving.
    pub healed: Arc<AtomicBool>,
}

impl HookSetup {
    /// The rotator of node `node` (a fresh one after each restart; the log is shared).
    pub fn rotator(&self, node: &str) -> SimRotator {
        SimRotator::new(
            self.rng.fork(node),
            self.nodes.clone(),
            self.log.clone(),
            self.healed.clone(),
        )
    }
}
