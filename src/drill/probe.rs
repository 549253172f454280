//! The probe workload a drill drives while its fault lasts: from every region, writes and local
//! and linearizable reads to that region's nodes, one at a time each, every request recorded
//! with its outcome and times; and a watcher of every node's own health (its role, term and
//! applied index) for the leader's moves and the catch-up.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use tokio::time::Instant;

use crate::client::Client;
use crate::pb;
use crate::pb::read_consistency::Mode;

/// Pause between one writer's requests (as the outside client of the acceptance test).
pub const WRITE_EVERY: Duration = Duration::from_millis(20);
/// Pause between one reader's requests.
pub const READ_EVERY: Duration = Duration::from_millis(50);
/// Pause between health polls of a node.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);
/// A request with no answer by then counts as failed (`timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Versions a probe secret keeps: every acknowledged probe write stays checkable.
pub const PROBE_MAX_VERSIONS: u32 = 10_000;
/// A writer stops before its secret would drop acknowledged versions.
pub const MAX_PROBE_WRITES: u64 = 9_900;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Write,
    ReadLocal,
    ReadLinearizable,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Write, ProbeKind::ReadLocal, ProbeKind::ReadLinearizable];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Write => "writes",
            ProbeKind::ReadLocal => "reads_local",
            ProbeKind::ReadLinearizable => "reads_linearizable",
        }
    }
}

/// One probe request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub region: String,
    /// The node asked.
    pub node: String,
    pub kind: ProbeKind,
    /// Milliseconds since the drill's start.
    pub start_ms: u64,
    pub end_ms: u64,
    pub ok: bool,
    /// The stable error code (or gRPC class, or `timeout`) of a failed request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// Writes: the version acknowledged; reads: the version read.
    pub version: u64,
    /// Writes: the value's sequence number.
    pub seq: u64,
    /// Writes: the log index acknowledged.
    pub log_index: u64,
    /// Reads: the staleness bound the replica reported.
    pub staleness_ms: u64,
}

/// One node's own report at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSample {
    pub node: String,
    pub at_ms: u64,
    /// The health state (`serving`, `fenced`, ...), or `unreachable`.
    pub state: String,
    pub role: String,
    pub term: u64,
    pub leader_id: u64,
    pub applied_index: u64,
}

/// A node the probes talk to.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub region: String,
    pub client: Client,
}

/// Everything recorded, shared by the probe tasks.
#[derive(Default)]
pub struct Recorder {
    pub samples: Mutex<Vec<Sample>>,
    pub nodes: Mutex<Vec<NodeSample>>,
    /// The consistency token of the acknowledged write with the highest log index.
    pub newest: Mutex<(u64, String)>,
}

impl Recorder {
    fn push(&self, s: Sample) {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }

    fn acked(&self, log_index: u64, token: &str) {
        let mut n = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        if log_index > n.0 {
            *n = (log_index, token.to_string());
        }
    }

    pub fn newest(&self) -> (u64, String) {
        self.newest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The probe secret of a region in a drill.
pub fn probe_secret(drill_id: &str, region: &str) -> String {
    format!("drill/{drill_id}/{region}")
}

/// The value of the write number `seq` (fake, and unique per drill, region and write).
pub fn probe_value(drill_id: &str, region: &str, seq: u64) -> Vec<u8> {
    format!("drill-probe {drill_id} {region} {seq}").into_bytes()
}

/// The error code of a failed call: Coffer's stable code, else the gRPC class.
pub fn code_of(s: &tonic::Status) -> String {
    crate::error::code_of(s).map_or_else(|| format!("{:?}", s.code()).to_lowercase(), String::from)
}

/// Runs one region's three probes against `targets` (that region's nodes, tried in turn after
/// a failure) until `stop` turns true.
pub async fn run_region(
    drill_id: String,
    region: String,
    targets: Vec<Target>,
    t0: Instant,
    rec: Arc<Recorder>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let secret = probe_secret(&drill_id, &region);
    let w = writer(&drill_id, &region, &secret, &targets, t0, &rec, stop.clone());
    let local = reader(&region, &secret, &targets, ProbeKind::ReadLocal, t0, &rec, stop.clone());
    let lin = reader(&region, &secret, &targets, ProbeKind::ReadLinearizable, t0, &rec, stop);
    tokio::join!(w, local, lin);
}

fn ms(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

async fn writer(
    drill_id: &str,
    region: &str,
    secret: &str,
    targets: &[Target],
    t0: Instant,
    rec: &Recorder,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut at = 0;
    let mut seq = 0;
    while !*stop.borrow() && seq < MAX_PROBE_WRITES {
        seq += 1;
        let t = &targets[at % targets.len()];
        let start_ms = ms(t0);
        let req = pb::PutSecretValueRequest {
            name: secret.to_string(),
            value: probe_value(drill_id, region, seq),
            // CURRENT follows the newest write, so the readers read it.
            alias: String::new(),
            must_exist: true,
            ..Default::default()
        };
        let r = tokio::time::timeout(REQUEST_TIMEOUT, t.client.secrets.clone().put_secret_value(req)).await;
        let mut s = Sample {
            region: region.to_string(),
            node: t.name.clone(),
            kind: ProbeKind::Write,
            start_ms,
            end_ms: ms(t0),
            ok: false,
            code: String::new(),
            version: 0,
            seq,
            log_index: 0,
            staleness_ms: 0,
        };
        match r {
            Ok(Ok(w)) => {
                let w = w.into_inner();
                rec.acked(w.log_index, &w.token);
                s.ok = true;
                s.version = w.version;
                s.log_index = w.log_index;
            }
            Ok(Err(e)) => s.code = code_of(&e),
            Err(_) => s.code = "timeout".into(),
        }
        if !s.ok {
            at += 1;
        }
        rec.push(s);
        tokio::time::sleep(WRITE_EVERY).await;
    }
}

async fn reader(
    region: &str,
    secret: &str,
    targets: &[Target],
    kind: ProbeKind,
    t0: Instant,
    rec: &Recorder,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut at = 0;
    while !*stop.borrow() {
        let t = &targets[at % targets.len()];
        let mode = match kind {
            ProbeKind::ReadLinearizable => Mode::Linearizable(pb::LinearizableRead {}),
            _ => Mode::Local(pb::LocalRead {}),
        };
        let req = pb::GetSecretValueRequest {
            name: secret.to_string(),
            selector: None,
            consistency: Some(pb::ReadConsistency { mode: Some(mode) }),
            break_glass: None,
        };
        let start_ms = ms(t0);
        let r = tokio::time::timeout(REQUEST_TIMEOUT, t.client.secrets.clone().get_secret_value(req)).await;
        let mut s = Sample {
            region: region.to_string(),
            node: t.name.clone(),
            kind,
            start_ms,
            end_ms: ms(t0),
            ok: false,
            code: String::new(),
            version: 0,
            seq: 0,
            log_index: 0,
            staleness_ms: 0,
        };
        match r {
            Ok(Ok(g)) => {
                let g = g.into_inner();
                s.ok = true;
                s.version = g.version;
                s.staleness_ms = g.read.map_or(0, |m| m.staleness_upper_bound_ms);
            }
            Ok(Err(e)) => s.code = code_of(&e),
            Err(_) => s.code = "timeout".into(),
        }
        if !s.ok {
            at += 1;
        }
        rec.push(s);
        tokio::time::sleep(READ_EVERY).await;
    }
}

/// Polls every node's own health (authenticated: role, term, leader, applied index) until
/// `stop` turns true.
pub async fn watch_nodes(
    targets: Vec<Target>,
    t0: Instant,
    rec: Arc<Recorder>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let polls = targets.into_iter().map(|t| {
        let rec = rec.clone();
        let stop = stop.clone();
        async move {
            while !*stop.borrow() {
                let at_ms = ms(t0);
                let r =
                    tokio::time::timeout(REQUEST_TIMEOUT, t.client.cluster.clone().health(pb::HealthRequest {})).await;
                let s = match r {
                    Ok(Ok(h)) => {
                        let h = h.into_inner();
                        let l = h.local.unwrap_or_default();
                        NodeSample {
                            node: t.name.clone(),
                            at_ms,
                            state: h.status,
                            role: l.state,
                            term: l.term,
                            leader_id: l.leader_id,
                            applied_index: l.applied_index,
                        }
                    }
                    _ => NodeSample {
                        node: t.name.clone(),
                        at_ms,
                        state: "unreachable".into(),
                        role: String::new(),
                        term: 0,
                        leader_id: 0,
                        applied_index: 0,
                    },
                };
                rec.nodes.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                tokio::time::sleep(WATCH_EVERY).await;
            }
        }
    });
    futures::future::join_all(polls).await;
}
