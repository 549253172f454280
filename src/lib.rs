//! Coffer: a replicated, multi-region secrets store.
//!
//! Layout (DESIGN.md): `config` (server config), `node` (wires Raft and the services),
//! `api` (public gRPC services), `propose` (the write path to the leader), `crypto` (envelope
//! encryption, DEK cache, KMS providers), `authz` (principals and the one authorization seam),
//! `audit` (the audit hook), `client` (the Rust SDK), `cli` and `dev` (the command line).

pub mod api;
pub mod audit;
pub mod authz;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod error;
pub mod node;
pub mod request_ids;
pub mod rewrap;
pub mod testkit;
pub mod time;
pub mod tls;
pub mod tokens;

pub use coffer_proto as pb;
pub use coffer_raft as raft;
