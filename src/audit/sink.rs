//! Where audit events go: the [`AuditSink`] trait and the sinks that keep no file.

use std::sync::Mutex;

use super::chain::{TailEntry, VerifyReport};
use crate::pb;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditError(pub String);

#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Records `event` durably. An error fails the request (fail closed).
    async fn record(&self, event: pb::AuditEvent) -> Result<(), AuditError>;

    /// The newest `count` records (`coffer audit tail`); sinks without a file have none.
    fn tail(&self, _count: usize) -> std::io::Result<Vec<TailEntry>> {
        Err(no_file())
    }

    /// Checks the hash chain (`coffer audit verify --addr`); sinks without a file cannot.
    fn verify(&self) -> std::io::Result<VerifyReport> {
        Err(no_file())
    }
}

fn no_file() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "this node's audit sink keeps no file (set [audit] in its config)",
    )
}

/// Writes each event as a structured `tracing` record (target `coffer::audit`).
pub struct TracingSink;

#[async_trait::async_trait]
impl AuditSink for TracingSink {
    async fn record(&self, e: pb::AuditEvent) -> Result<(), AuditError> {
        tracing::info!(
            target: "coffer::audit",
            principal = %e.principal,
            action = %e.action,
            resource = %e.resource,
            version = e.version,
            decision = %e.decision,
            outcome = %e.outcome,
            statement = %e.statement,
            request_id = %e.request_id,
            source = %e.source,
            break_glass = e.break_glass,
            "audit"
        );
        Ok(())
    }
}

/// Keeps events in memory (tests).
#[derive(Default)]
pub struct MemorySink {
    events: Mutex<Vec<pb::AuditEvent>>,
}

impl MemorySink {
    pub fn events(&self) -> Vec<pb::AuditEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl AuditSink for MemorySink {
    async fn record(&self, event: pb::AuditEvent) -> Result<(), AuditError> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        Ok(())
    }
}
