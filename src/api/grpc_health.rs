//! The standard `grpc.health.v1` service on the API port, for gRPC load balancers and
//! Kubernetes' gRPC probes: `""` (the node) and each public service are SERVING exactly when
//! `/health/ready` answers 200 (`crate::service::health`), checked every [`POLL`]; `Watch`
//! streams see every change. No token and no audit record, like `/health/ready`.

use std::sync::Arc;
use std::time::Duration;

use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::pb;
use crate::service::Service;

/// How often readiness is looked at: a probe sees a change at most this late.
pub const POLL: Duration = Duration::from_millis(250);

/// The names whose status is reported: the whole node and every public service.
pub fn service_names() -> [&'static str; 5] {
    [
        "",
        <pb::secrets_server::SecretsServer<crate::api::secrets::SecretsApi> as NamedService>::NAME,
        <pb::cluster_server::ClusterServer<crate::api::cluster::ClusterApi> as NamedService>::NAME,
        <pb::kms_server::KmsServer<crate::api::kms::KmsApi> as NamedService>::NAME,
        <pb::access_server::AccessServer<crate::api::access::AccessApi> as NamedService>::NAME,
    ]
}

/// The health service, and the task that keeps its statuses current until the node stops
/// (then every name is NOT_SERVING).
pub fn start(
    service: Arc<Service>,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, server) = tonic_health::server::health_reporter();
    tokio::spawn(keep_current(service, reporter));
    server
}

async fn keep_current(service: Arc<Service>, reporter: HealthReporter) {
    let mut stopping = service.stopping.clone();
    let mut reported = None;
    loop {
        // `health` reports a stopping node as not ready.
        let status = if service.health(None).state.ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if reported != Some(status) {
            for name in service_names() {
                reporter.set_service_status(name, status).await;
            }
            reported = Some(status);
        }
        if *stopping.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
    }
}
