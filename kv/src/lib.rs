//! coffer-kv: the seam between consensus (`coffer-raft`) and what it replicates
//! (`coffer-model`), docs/architecture.md: Layers.
//!
//! - [`KvView`]: a consistent read view of the state machine's key space (RocksDB snapshot or
//!   memory), [`WriteSet`]: writes committed atomically;
//! - [`Overlay`] and [`Txn`]: the writes of one applied batch and of one command;
//! - [`Application`]: what the state machine applies each command through, and how a leader
//!   answers a forwarded read. The Raft crate is generic over it and never names the model.

pub mod application;
pub mod bugs;
pub mod overlay;
pub mod view;

pub use application::{AnswerError, Application};
pub use overlay::{Overlay, Txn};
pub use view::{commit_to, KvView, PairVisitor, WriteSet};
