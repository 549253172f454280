//! Failover drills (`coffer drill`, docs/architecture.md: Drills).
//!
//! On the nodes:
//! - [`faults`]: the faults a drill raises on one node (a fence, a partition, a KMS outage),
//!   each with a deadline after which it ends by itself;
//! - [`gate`]: a fence on the peer port: every call refused.
//!
//! In the runner (`coffer drill run`, [`run`]):
//! - [`plan`]: the scenario, the faults per node, the preflight and the expected outcome;
//! - [`probe`]: the probe workload from every region and the watcher of every node;
//! - [`verify`]: every acknowledged write read back from every node;
//! - [`report`]: RTO, RPO, stale reads, leader moves, catch-up; JSON and Markdown;
//! - [`timeline`]: the SVG timeline.

pub mod faults;
pub mod gate;
pub mod plan;
pub mod probe;
pub mod report;
pub mod run;
pub mod timeline;
pub mod verify;
