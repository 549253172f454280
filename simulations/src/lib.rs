//! coffer-simulations: the real Coffer node code in turmoil, under partitions, crashes and
//! KMS outages, checked by an oracle (docs/architecture.md: Deterministic simulation).
//!
//! One seed derives everything: the cluster's [`shape`], link latencies, the [`faults`]
//! schedule and the [`workload`]. [`run::run`] plays a safety phase (faults and workload) and a
//! [`liveness`] phase (no faults: the cluster must heal), then the [`invariants`] (one per
//! file) judge the [`history`]. A failure is a seed number.

#[cfg(not(tokio_unstable))]
compile_error!(
    "coffer-simulations needs `--cfg tokio_unstable` (set in .cargo/config.toml; a RUSTFLAGS variable replaces \
     it) so turmoil can seed tokio and runs are deterministic"
);

pub mod cluster;
pub mod driller;
pub mod faults;
pub mod history;
pub mod invariants;
pub mod kms_host;
pub mod liveness;
pub mod net;
pub mod request_log;
pub mod rng;
pub mod rotation_log;
pub mod rotator;
pub mod run;
pub mod scenarios;
pub mod shape;
pub mod watch_log;
pub mod watcher;
pub mod workload;
