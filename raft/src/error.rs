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
