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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Put { value: u64 },
    Get { mode: Mode },
    Promote { version: u64, expect: u64 },
    Disable { version: u64 },
    Destroy { version: u64 },
}

impl Kind {
    pub fn is_write(&self) -> bool {
        !matches!(self, Kind::Get { .. })
    }
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
    pub secret: String,
    pub kind: Kind,
    /// Simulated microseconds.
    pub invoked_us: u64,
    pub completed_us: Option<u64>,
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
        format!(
            "#{} {} via {} {:?} {} @{}..{} -> {:?}",
            self.id,
            self.client,
            self.node,
            self.kind,
            self.secret,
            self.invoked_us,
            self.completed_us.map(|t| t.to_string()).unwrap_or("?".into()),
            self.outcome
        )
    }
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

/// One node's final replica of one secret: version -> (value id or None if destroyed, state).
pub type FinalSecret = BTreeMap<u64, (Option<u64>, String)>;

#[derive(Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub samples: Vec<Sample>,
    /// node name -> secret -> versions, read after the liveness phase.
    pub finals: BTreeMap<String, BTreeMap<String, FinalSecret>>,
    /// Problems the liveness phase found (the cluster did not heal).
    pub liveness: Vec<String>,
}

impl History {
    /// Operations on `secret`, in invocation order.
    pub fn on(&self, secret: &str) -> Vec<&Op> {
        self.ops.iter().filter(|o| o.secret == secret).collect()
    }

    pub fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self.ops.iter().map(|o| o.secret.clone()).collect();
        s.sort();
        s.dedup();
        s
    }
}
