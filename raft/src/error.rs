//! The errors the node facade returns to the service layer.

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// No leader handled the request in time. A proposal may still commit (retries are
    /// idempotent by request id).
    #[error("{0}")]
    Unavailable(String),
    /// The leader refused the request (a failed check, not a transport problem).
    #[error("{0}")]
    Rejected(String),
    /// The leader is out of disk (and no other leader took over meanwhile): nothing was
    /// written. The message names the node.
    #[error("{0}")]
    OutOfDisk(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft settings: {0}")]
    Settings(String),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
}

/// A call to a peer that did not give an answer to act on: the gRPC class of the failure and
/// what happened, in words for the operator. Forwarded writes and reads, read-index rounds and
/// membership changes all fail with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PeerError {
    pub code: tonic::Code,
    pub message: String,
}

impl PeerError {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for PeerError {
    fn from(s: tonic::Status) -> Self {
        Self::new(s.code(), s.message())
    }
}

impl From<PeerError> for tonic::Status {
    fn from(e: PeerError) -> Self {
        tonic::Status::new(e.code, e.message)
    }
}

/// An operation of the Raft core that it refused or could not run (forming the cluster,
/// handing over leadership), or a peer that did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// openraft's own error, in its words.
    #[error("raft: {0}")]
    Core(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// A peer address that cannot be dialled as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad peer address {addr}: {reason}")]
pub struct AddressError {
    pub addr: String,
    pub reason: String,
}

/// A membership change the failure-tolerance rules refuse (the reason, for the operator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToleranceError(pub String);
