//! The audit hook: every API request, allowed or denied, produces one [`AuditEvent`].
//!
//! Events never carry secret values. Sinks are chosen in the server config only. The sink in
//! this release writes structured `tracing` records under the `coffer::audit` target; a
//! hash-chained file sink replaces it later without touching the call sites.

use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub time_ms: u64,
    pub node: String,
    pub region: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    /// "allow" or "deny".
    pub decision: String,
    /// Why: the rule that decided, or why authentication failed.
    pub reason: String,
    pub request_id: String,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(pub String);

pub trait AuditSink: Send + Sync + 'static {
    /// Records `event`. An error fails the request (fail closed).
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError>;
}

/// Writes each event as a structured `tracing` record (target `coffer::audit`).
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn record(&self, e: &AuditEvent) -> Result<(), AuditError> {
        tracing::info!(
            target: "coffer::audit",
            principal = %e.principal,
            action = %e.action,
            resource = %e.resource,
            decision = %e.decision,
            reason = %e.reason,
            request_id = %e.request_id,
            source = %e.source,
            "audit"
        );
        Ok(())
    }
}

/// Keeps events in memory (tests).
#[derive(Default)]
pub struct MemorySink {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemorySink {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl AuditSink for MemorySink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
        Ok(())
    }
}
