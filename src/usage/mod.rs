//! Per-version read telemetry (docs/architecture.md: Rotation). Every node counts the reads it
//! serves per (secret, version) in memory ([`book`]), with no Raft write and no disk write per
//! read; a member asks the others over the peer port ([`peer`]) and merges the answers
//! ([`cluster`]); [`verdict`] says whether a version is safe to retire (no read since its quiet
//! window began, on any member). The rotation scheduler retires PREVIOUS only then, or by force
//! at the deadline.
//!
//! What it does not know: reads a node served before it (re)started, and reads on a member
//! that did not answer. Either makes the verdict "unknown", never "safe".

pub mod book;
pub mod cluster;
pub mod peer;
pub mod verdict;
