//! Where audit events go: the [`AuditSink`] trait and the sinks that keep no file.

use std::sync::Mutex;

use super::chain::{Anchors, TailEntry, VerifyReport};
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

    /// Checks the hash chain, and the log against the heads the cluster anchored for it
    /// (`coffer audit verify`); sinks without a file cannot.
    fn verify(&self, _anchors: &Anchors) -> std::io::Result<VerifyReport> {
        Err(no_file())
    }

    /// The newest durable record's number and hash, to anchor through Raft; `None` for sinks
    /// that keep no chain, and before the first record.
    fn head(&self) -> Option<(u64, [u8; 32])> {
        None
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

/// A hash chain kept in memory (simulations): each event is chained like a record of the file
/// ([`super::chain::chain_hash`]), and the hashes are kept so a run can check what its node
/// anchored. Shared across a simulated node's restarts, like its disk.
#[derive(Default)]
pub struct MemoryChain {
    hashes: Mutex<Vec<[u8; 32]>>,
}

impl MemoryChain {
    /// The hash of every record so far; record `seq` is at `seq - 1`.
    pub fn hashes(&self) -> Vec<[u8; 32]> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl AuditSink for MemoryChain {
    async fn record(&self, event: pb::AuditEvent) -> Result<(), AuditError> {
        use prost::Message;
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        let prev = hashes.last().copied().unwrap_or([0; 32]);
        let seq = hashes.len() as u64 + 1;
        hashes.push(super::chain::chain_hash(seq, &prev, &event.encode_to_vec()));
        Ok(())
    }

    fn head(&self) -> Option<(u64, [u8; 32])> {
        let hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        hashes.last().map(|h| (hashes.len() as u64, *h))
    }
}
