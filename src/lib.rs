//! Coffer: a replicated, multi-region secrets store.
//!
//! The service layer over the replicated core (docs/architecture.md: Layers):
//! - `api`: the public gRPC handlers: decode, call the service, encode;
//! - `service`: the operations they call: the one read path, the one write path, puts that
//!   race for version numbers;
//! - `authz` (principals, policies and the one authorization seam), `audit` (the audit hook
//!   and the hash-chained file), `crypto` (envelope encryption, DEK cache, KMS providers),
//!   `rewrap`, `tokens`, `request_ids`, `error` (API errors and their codes), `time`;
//! - `http`: the HTTP/JSON API beside gRPC (the same handlers behind it);
//! - `agent`: `coffer agent`, which renders secrets to files through `coffer-sdk`;
//! - `config` and `tls` (a node's settings), `node` (wires Raft and the services);
//! - `client` (the Rust SDK), `cli` and `dev` (the command line);
//! - `zeroing_alloc`: the allocator wrapper that zeroes every freed block (the binary's).
//!
//! The multi-process test harness is the `coffer-testkit` crate, a dev-dependency only.

pub mod agent;
pub mod api;
pub mod audit;
pub mod authz;
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod drill;
pub mod error;
pub mod http;
pub mod node;
pub mod node_metrics;
pub mod peer_guard;
pub mod private_files;
pub mod request_ids;
pub mod rewrap;
pub mod rotation;
pub mod safe_text;
pub mod service;
pub mod time;
pub mod tls;
pub mod tokens;
pub mod usage;
pub mod zeroing_alloc;

pub use coffer_model as model;
pub use coffer_proto as pb;
pub use coffer_raft as raft;
