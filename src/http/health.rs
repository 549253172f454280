//! `GET /health/live` and `GET /health/ready` for load balancers and Kubernetes probes: no token,
//! no audit record (a probe every few seconds would flood the log), nothing about the node
//! beyond its state and freshness.
//!
//! Live answers 200 while the process serves HTTP. Ready answers with a status code per state
//! (`crate::service::health`), like Vault's `sys/health`: 200 serving; 501 not joined or not
//! bootstrapped (nothing to serve yet); 503 stale, no leader, removed or stopping.
//! `?max_staleness_ms=N` asks for another limit than `[health] ready_max_staleness_ms`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde_json::json;
use serde_json::Value;

use super::error::HttpError;
use crate::service::health::NodeHealth;
use crate::service::health::READY_MAX_STALENESS_RANGE;
use crate::service::Service;

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(service)
}

async fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// The HTTP status a probe sees for a state.
pub fn status_code(state: NodeHealth) -> StatusCode {
    match state {
        NodeHealth::Serving => StatusCode::OK,
        NodeHealth::NotJoined | NodeHealth::NotBootstrapped => StatusCode::NOT_IMPLEMENTED,
        NodeHealth::Stale | NodeHealth::NoLeader | NodeHealth::Removed | NodeHealth::Fenced | NodeHealth::Stopping => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

async fn ready(
    State(service): State<Arc<Service>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let Query(q) = query.map_err(|e| HttpError::invalid(format!("bad query string: {}", e.body_text())))?;
    let max = max_staleness(&q)?;
    let r = service.health(max);
    Ok((
        status_code(r.state),
        Json(json!({
            "status": r.state.as_str(),
            "ready": r.state.ready(),
            "role": r.role,
            "staleness_upper_bound_ms": r.staleness_upper_bound_ms,
            "max_staleness_ms": r.max_staleness_ms,
        })),
    ))
}

/// `max_staleness_ms`, the only parameter taken, within [`READY_MAX_STALENESS_RANGE`].
fn max_staleness(q: &BTreeMap<String, String>) -> Result<Option<u64>, HttpError> {
    if let Some(k) = q.keys().find(|k| *k != "max_staleness_ms") {
        return Err(HttpError::invalid(format!(
            "unknown parameter {k:?}: /health/ready takes max_staleness_ms only"
        )));
    }
    let Some(v) = q.get("max_staleness_ms") else {
        return Ok(None);
    };
    match v.parse::<u64>() {
        Ok(ms) if READY_MAX_STALENESS_RANGE.contains(&ms) => Ok(Some(ms)),
        _ => Err(HttpError::invalid(format!(
            "max_staleness_ms must be a whole number of ms between {} and {}",
            READY_MAX_STALENESS_RANGE.start(),
            READY_MAX_STALENESS_RANGE.end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_limit_is_checked_and_nothing_else_is_taken() {
        assert_eq!(max_staleness(&q(&[])).unwrap(), None);
        assert_eq!(max_staleness(&q(&[("max_staleness_ms", "250")])).unwrap(), Some(250));
        for bad in ["99", "3600001", "-1", "1e3", ""] {
            let e = max_staleness(&q(&[("max_staleness_ms", bad)])).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message.contains("between 100 and 3600000"), "{}", e.message);
        }
        let e = max_staleness(&q(&[("standbyok", "true")])).unwrap_err();
        assert!(e.message.contains("unknown parameter \"standbyok\""), "{}", e.message);
    }

    #[test]
    fn only_serving_answers_200() {
        assert_eq!(status_code(NodeHealth::Serving), StatusCode::OK);
        for s in [NodeHealth::NotJoined, NodeHealth::NotBootstrapped] {
            assert_eq!(status_code(s), StatusCode::NOT_IMPLEMENTED);
        }
        for s in [
            NodeHealth::Stale,
            NodeHealth::NoLeader,
            NodeHealth::Removed,
            NodeHealth::Fenced,
            NodeHealth::Stopping,
        ] {
            assert_eq!(status_code(s), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}
