//! The HTTP/JSON API (docs/architecture.md: Delivery) on its own port beside gRPC, for services
//! that do not speak gRPC: the same handlers behind it, so the same authorization seam, audit
//! records, stable error codes and domain code.
//!
//! - [`secrets`]: the routes (`/v1/secrets…`, `/v1/health`) and their JSON;
//! - [`health`]: `/health/live` and `/health/ready` for probes (no token, no audit);
//! - [`error`]: `{"error": {"code", "message"}}` and an HTTP status per gRPC class;
//! - [`listener`]: connections, TLS, bounds and the graceful stop.

pub mod error;
pub mod health;
pub mod listener;
pub mod secrets;

use std::sync::Arc;

/// Every route of the HTTP port.
pub fn router(apis: secrets::Apis, service: Arc<crate::service::Service>) -> axum::Router {
    secrets::router(apis).merge(health::router(service))
}
