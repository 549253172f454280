//! The audit hook: every API request, allowed or denied, produces one [`crate::pb::AuditEvent`].
//!
//! Events never carry secret values. Sinks are chosen in the server config only: production
//! nodes write the hash-chained [`file::AuditFile`] (its record format and reader: [`chain`]; its
//! files, rotated by size and kept by count: [`rotation`]);
//! simulations chain in memory. Every event is bounded and escaped first ([`bounds`]). A
//! request waits until its event is recorded and fails when it cannot be (fail closed). Every
//! node anchors its log's head through Raft ([`anchor`]), so a log rewritten or cut later is
//! caught by `coffer audit verify`.

pub mod anchor;
pub mod bounds;
pub mod chain;
pub mod file;
pub mod rotation;
pub mod sink;

pub use bounds::bound;
pub use sink::{AuditError, AuditSink, MemoryChain, MemorySink, TracingSink};
