//! The HTTP/JSON API (docs/architecture.md: Delivery) on its own port beside gRPC, for services
//! that do not speak gRPC: the same handlers behind it, so the same authorization seam, audit
//! records, stable error codes and domain code.
//!
//! - [`secrets`]: the routes (`/v1/secrets…`, `/v1/health`) and their JSON;
//! - [`error`]: `{"error": {"code", "message"}}` and an HTTP status per gRPC class;
//! - [`listener`]: connections, TLS, bounds and the graceful stop.

pub mod error;
pub mod listener;
pub mod secrets;
