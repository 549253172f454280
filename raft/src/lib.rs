//! coffer-raft: the replicated core of Coffer.
//!
//! This crate is the only one that names openraft. It owns:
//! - the openraft type configuration ([`TypeConfig`]) and the versioned [`codec`] that turns
//!   openraft's types into protobuf records for disk and wire;
//! - the log store ([`log_store`]) and the state machine ([`state_machine`]) over two storage
//!   backends: RocksDB ([`rocks`], production) and memory ([`mem`], simulations and tests);
//! - the secrets model applied by the state machine ([`secrets`]) and its read side
//!   ([`query`]), with name rules in [`names`]; the request table that applies every command
//!   at most once ([`requests`]);
//! - peer RPC over tonic ([`network`] client side, [`peer_service`] server side).

pub mod access;
pub mod apply;
pub mod bugs;
pub mod cluster_records;
pub mod codec;
pub mod error;
pub mod forward_batch;
pub mod keys;
pub mod leader_contact;
pub mod local_propose;
pub mod log_store;
pub mod mem;
pub mod membership;
pub mod model_error;
pub mod names;
pub mod network;
pub mod node;
pub mod peer_service;
pub mod placement;
pub mod query;
pub mod read_batch;
pub mod requests;
pub mod rocks;
pub mod runtime;
pub mod secrets;
pub mod snapshot_install;
pub mod snapshot_schedule;
pub mod state_machine;
pub mod storage;
#[cfg(test)]
mod test_sm;

pub use coffer_proto as pb;
pub use openraft;

/// Raft node ids are stable numbers chosen by the operator, never derived from an address.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Coffer's openraft type configuration: commands and results are protobuf messages,
    /// nodes carry their name, region and zone.
    pub TypeConfig:
        D = pb::Command,
        R = pb::CommandResult,
        NodeId = NodeId,
        Node = pb::NodeInfo,
        AsyncRuntime = runtime::CofferRuntime,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, pb::NodeInfo>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
