//! coffer-model: the secrets domain as the state machine applies it (docs/architecture.md:
//! Data model). Pure and deterministic: no clock, RNG, network or KMS; it reads and writes
//! the replicated key space only through `coffer-kv`, and never names Raft.
//!
//! - [`apply`]: the one entry point of a command: the request table ([`requests`]), then the
//!   command's operation on [`secrets`], [`rotation`], [`access_records`],
//!   [`cluster_records`] or [`audit_anchors`];
//! - [`query`]: the read side; [`keys`]: the key layout; [`names`]: name rules;
//! - [`error`]: a refused command ([`error::ModelError`]) and a storage failure under it;
//! - [`app`]: [`app::SecretsModel`], the [`coffer_kv::Application`] every node runs.

pub mod access_records;
mod aliases;
pub mod app;
pub mod apply;
pub mod audit_anchors;
pub mod changes;
pub mod cluster_records;
mod context;
pub mod error;
pub mod keys;
pub mod names;
pub mod query;
pub mod requests;
pub mod rotation;
mod rotation_commands;
pub mod rotation_policy;
pub mod secrets;
pub mod spec;
#[cfg(test)]
mod test_sm;
pub mod token_gc;
pub mod version_cap;

pub use coffer_proto as pb;
