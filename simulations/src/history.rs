//! The oracle's record: every client operation with when it was invoked, when (if ever) it
//! completed, and what it returned. A timed-out or unavailable operation is `Unknown`: it may
//! have committed, and no checker may assume it did not.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Linearizable,
    /// Requested staleness bound in ms.
    Bounded(u64),
    /// At least the write with this log index (the token's).
    AtLeast(u64),
}

/// What an operation does. Secret operations act on a secret (`acme/s0`); policy operations on
/// `policy:<name>`; token operations on `token:<principal>` (one token per principal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Put {
        value: u64,
    },
    Get {
        mode: Mode,
    },
    Promote {
        version: u64,
        expect: u64,
    },
    Disable {
        version: u64,
    },
    Destroy {
        version: u64,
    },
    /// CreateSecret: only where none exists.
    Create,
    /// A policy whose one statement names resource `acme/v<value>/*`.
    PutPolicy {
        value: u64,
    },
    DeletePolicy,
    /// A token for the object's principal.
    CreateToken,
    /// Revokes the object's token, by the accessor its creation returned.
    RevokeToken {
        accessor: String,
    },
}

impl Kind {
    pub fn is_write(&self) -> bool {
        !matches!(self, Kind::Get { .. })
    }
}

/// The object a policy operation acts on.
pub fn policy_object(name: &str) -> String {
    format!("policy:{name}")
}

/// The object a token operation acts on.
pub fn token_object(principal: &str) -> String {
    format!("token:{principal}")
}

/// Whether an object is a secret (not a policy or a token: secret names never hold ':').
pub fn is_secret(object: &str) -> bool {
    !object.contains(':')
}

/// What a successful operation returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub version: u64,
    /// Value id a read returned.
    pub value: Option<u64>,
    /// Writes: the log index the write committed at.
    pub log_index: u64,
    /// Reads: the replica's applied index and reported staleness bound.
    pub applied_index: u64,
    pub staleness_ms: u64,
    pub served_by: String,
    /// CreateToken: the accessor of the token issued.
    pub accessor: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Reply),
    /// A definite refusal (nothing was applied), by gRPC code name.
    Failed(String),
    /// No answer in time, or an answer that leaves the effect open.
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct Op {
    pub id: usize,
    /// Client session (one client talks to one node, one operation at a time).
    pub client: String,
    pub node: String,
    /// The secret, `policy:<name>` or `token:<principal>` (see [`Kind`]).
    pub object: String,
    pub kind: Kind,
    /// The request id the client sent with every attempt (`coffer-request-id`).
    pub request_id: String,
    /// Attempts made: an attempt whose outcome was unknown is retried with the same request id.
    pub attempts: u32,
    /// Simulated microseconds: the first attempt's invocation, the last one's completion.
    pub invoked_us: u64,
    pub completed_us: Option<u64>,
    /// The last attempt's outcome.
    pub outcome: Outcome,
}

impl Op {
    pub fn ok(&self) -> Option<&Reply> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }

    pub fn unknown(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown(_))
    }

    pub fn line(&self) -> String {
        let tries = match self.attempts {
            0 | 1 => String::new(),
            n => format!(" ({n} attempts)"),
        };
        // Token accessors are random (the node draws them): shown by length, so that a line,
        // and the trace hash made of lines, depends on the seed alone.
        let kind = match &self.kind {
            Kind::RevokeToken { accessor } => format!("RevokeToken {{ accessor: <{} chars> }}", accessor.len()),
            k => format!("{k:?}"),
        };
        let outcome = match &self.outcome {
            Outcome::Ok(r) if !r.accessor.is_empty() => {
                let mut shown = r.clone();
                shown.accessor = format!("<{} chars>", r.accessor.len());
                format!("{:?}", Outcome::Ok(shown))
            }
            o => format!("{o:?}"),
        };
        format!(
            "#{} {} via {} {kind} {} @{}..{}{tries} -> {outcome}",
            self.id,
            self.client,
            self.node,
            self.object,
            self.invoked_us,
            self.completed_us.map(|t| t.to_string()).unwrap_or("?".into()),
        )
    }
}

/// A drill's fence the driller raised (`crate::driller`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRecord {
    pub node: String,
    /// When the call was sent, and when the node acknowledged it (`None`: no answer).
    pub sent_us: u64,
    pub acked_us: Option<u64>,
    pub duration_ms: u64,
}

/// One node's state, sampled inside its own runtime.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at_us: u64,
    pub node: u64,
    pub term: u64,
    pub leader: bool,
    /// A leader whose quorum acknowledgement is younger than its lease (it answers reads as
    /// fresh without asking anyone).
    pub lease: bool,
}

/// One node's final replica of one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalSecret {
    /// version -> (value id, or None unless enabled; state).
    pub versions: BTreeMap<u64, (Option<u64>, String)>,
    /// The version CURRENT points at (0 = none).
    pub current: u64,
    /// The applied index of the read that listed them.
    pub index: u64,
}

/// One node's final policies and tokens, read from its storage after the liveness phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalAccess {
    pub policies: std::collections::BTreeSet<String>,
    /// principal -> revoked.
    pub tokens: BTreeMap<String, bool>,
    /// The index the node had applied.
    pub index: u64,
}

#[derive(Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub samples: Vec<Sample>,
    /// node name -> secret -> versions, read after the liveness phase.
    pub finals: BTreeMap<String, BTreeMap<String, FinalSecret>>,
    /// node name -> policies and tokens, read after the liveness phase.
    pub final_access: BTreeMap<String, FinalAccess>,
    /// Every request record any node held at any sample (see [`crate::request_log`]).
    pub requests: crate::request_log::RequestLog,
    /// The rotating secrets as every node held them, sampled (see [`crate::rotation_log`]).
    pub rotations: crate::rotation_log::RotationLog,
    /// What the watchers saw (see [`crate::watch_log`]).
    pub watches: crate::watch_log::WatchLog,
    /// Problems the liveness phase found (the cluster did not heal).
    pub liveness: Vec<String>,
    /// The drill fences raised (`crate::driller`).
    pub drills: Vec<DrillRecord>,
}

impl History {
    /// Operations on `object`, in invocation order.
    pub fn on(&self, object: &str) -> Vec<&Op> {
        self.ops.iter().filter(|o| o.object == object).collect()
    }

    /// Every object operated on, secrets, policies and tokens.
    pub fn objects(&self) -> Vec<String> {
        let mut s: Vec<String> = self.ops.iter().map(|o| o.object.clone()).collect();
        s.sort();
        s.dedup();
        s
    }

    /// The secrets operated on.
    pub fn secrets(&self) -> Vec<String> {
        self.objects().into_iter().filter(|o| is_secret(o)).collect()
    }
}
