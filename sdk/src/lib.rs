//! The Coffer client library a service links (docs/architecture.md: Delivery).
//!
//! - [`Coffer`]: typed calls (`get`, `get_version`, `put`, `versions`, `require`);
//! - [`config`]: the nodes (the local region's first), the token, the cache's rules;
//! - [`endpoints`]: channels per node, failover, retries with backoff and jitter;
//! - [`cache`]: TTL with jitter, `max_stale`, revocation, request coalescing, counters;
//! - [`watcher`]: one watch stream per cached name keeps it fresh and revokes at once;
//! - [`value`]: values that zero themselves and never print; [`error`]: stable codes.
//!
//! A service in twenty lines is `examples/service.rs` (`cargo run -p coffer-sdk --example
//! service` against `make dev`, with `COFFER_TOKEN` set).

pub mod cache;
mod client;
pub mod config;
pub mod endpoints;
pub mod error;
pub mod value;
pub mod watcher;

pub use cache::StatsSnapshot;
pub use client::Coffer;
pub use client::VersionInfo;
pub use config::Config;
pub use config::Endpoint;
pub use error::SdkError;
pub use value::Secret;
pub use value::SecretValue;
