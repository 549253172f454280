//! The errors of the secrets model: a refused command ([`ModelError`], no state change) and a
//! storage failure under it ([`ApplyError::Io`], fatal to Raft).

use prost::Message;

use crate::names;
use crate::pb;
use crate::pb::ErrorCode;

/// A domain failure: the command is applied as a no-op and the caller gets this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    pub code: ErrorCode,
    pub message: String,
    pub next_version: u64,
    pub actual_version: u64,
}

impl ModelError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            next_version: 0,
            actual_version: 0,
        }
    }

    pub fn to_pb(&self) -> pb::CommandError {
        pb::CommandError {
            code: self.code as i32,
            message: self.message.clone(),
            next_version: self.next_version,
            actual_version: self.actual_version,
        }
    }

    pub fn from_pb(e: &pb::CommandError) -> Self {
        Self {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal),
            message: e.message.clone(),
            next_version: e.next_version,
            actual_version: e.actual_version,
        }
    }
}

impl From<names::NameError> for ModelError {
    fn from(e: names::NameError) -> Self {
        ModelError::new(ErrorCode::InvalidArgument, e.to_string())
    }
}

/// Failure of [`crate::apply::apply`]: a domain error (no state change) or a storage error (fatal to Raft).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, ApplyError>;

pub fn fail<T>(code: ErrorCode, msg: impl Into<String>) -> Result<T> {
    Err(ModelError::new(code, msg).into())
}

pub fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| {
        ApplyError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("corrupt {what} record: {e}"),
        ))
    })
}
