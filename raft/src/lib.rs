//! coffer-raft: consensus (docs/architecture.md: Layers).
//!
//! This crate is the only one that names openraft, and it never names the secrets model: the
//! state machine applies commands through a `coffer_kv::Application` it is given. It owns:
//! - the openraft type configuration ([`TypeConfig`]) and the versioned [`codec`] that turns
//!   openraft's types into protobuf records for disk and wire;
//! - the log store ([`log_store`]) and the state machine ([`state_machine`]) over two storage
//!   backends: RocksDB ([`rocks`], production) and memory ([`mem`], simulations and tests);
//! - the node facade the service layer uses ([`node`]), proposing on the local core
//!   ([`local_propose`]) and the followers' batching of forwarded writes and read-index rounds
//!   ([`forward_batch`], [`read_batch`]), the freshness proofs of the staleness bound
//!   ([`leader_contact`]);
//! - peer RPC over tonic ([`network`] client side, [`peer_service`] server side) and the
//!   membership proof plaintext peers attach to it ([`peer_auth`]).

pub mod backup;
pub mod change_feed;
pub mod codec;
pub mod disk_space;
pub mod error;
pub mod fence;
pub mod forward_batch;
pub mod leader_contact;
pub mod local_propose;
pub mod log_store;
pub mod mem;
pub mod membership;
pub mod network;
pub mod node;
pub mod peer_auth;
pub mod peer_service;
pub mod placement;
pub mod read_batch;
pub mod rocks;
pub mod runtime;
pub mod shred_signals;
pub mod shredder;
pub mod snapshot_install;
pub mod snapshot_schedule;
pub mod state_machine;
pub mod storage;

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
