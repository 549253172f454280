//! The Coffer client library a service links (docs/architecture.md: Delivery).
//!
//! - [`Coffer`]: typed calls (`get`, `get_version`, `put`, `versions`, `require`);
//! - [`config`]: the nodes (the local region's first), the token, the cache's rules;
//! - [`endpoints`]: channels per node, failover, retries with backoff and jitter;
//! - [`cache`]: TTL with jitter, `max_stale`, revocation, request coalescing, counters;
//! - [`watcher`]: one watch stream per cached name keeps it fresh and revokes at once;
//! - [`value`]: values that zero themselves and never print; [`error`]: stable codes.
//!
//! A service in twenty lines:
//!
//! ```no_run
//! use coffer_sdk::{Coffer, Config, Endpoint};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let nodes = [("http://10.0.1.5:7400", "eu-west"), ("http://10.0.2.5:7400", "us-east")];
//!     let endpoints = nodes
//!         .iter()
//!         .map(|(addr, region)| Endpoint { addr: addr.to_string(), region: region.to_string() })
//!         .collect();
//!     let token = std::env::var("COFFER_TOKEN")?;
//!     let coffer = Coffer::new(Config::new("eu-west", token, endpoints))?;
//!     // Fail closed: without its database password the service does not start.
//!     coffer.require(&["acme/app/db-password"]).await?;
//!     loop {
//!         // From the cache (fresh through the watch stream); one fetch for all callers.
//!         let password = coffer.get("acme/app/db-password").await?;
//!         let _ = connect_to_database(password.value.expose());
//!         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
//!     }
//! }
//! # fn connect_to_database(_password: &[u8]) {}
//! ```

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
