//! What a node publishes as Prometheus metrics by sampling (docs/architecture.md: Metrics and
//! alerts): the exporter with its buckets and the node's labels, and the samplers of state
//! that is not counted where it happens (health, Raft, membership, batching, disk).
//! Counters and histograms of events are recorded where the events happen.

use std::sync::Arc;

use anyhow::Context;
use coffer_raft::node::RaftNode;
use coffer_raft::node::Role;

use crate::service::health::NodeHealth;
use crate::service::Service;

/// Buckets of every histogram, in seconds: from a cached local read (well under a millisecond)
/// to a slow KMS call or rotation hook.
const BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Serves Prometheus metrics on `addr`, each series carrying `labels` (a node's `node` and
/// `node_region`). Process-wide: the first node of a process wins; the agent's `metrics_addr`
/// too.
pub fn start(addr: std::net::SocketAddr, labels: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut b = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(BUCKETS)
        .context("histogram buckets")?;
    for (k, v) in labels {
        b = b.add_global_label(*k, *v);
    }
    b.install().with_context(|| format!("cannot serve metrics on {addr}"))
}

/// Calls `publish` every 500 ms on the runtime until it returns false.
fn sample_every_500ms(mut publish: impl FnMut() -> bool + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            if !publish() {
                return;
            }
        }
    });
}

/// Publishes the Raft log's group-commit counters as Prometheus counters (entries appended,
/// append batches, WAL fsyncs): entries per fsync is the group-commit factor the benchmarks
/// report. Sampled for the life of the process.
pub fn export_log_stats(stats: Arc<coffer_raft::rocks::LogStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    sample_every_500ms(move || {
        metrics::counter!("coffer_raft_log_entries_appended_total").absolute(stats.records.load(Relaxed));
        metrics::counter!("coffer_raft_log_appends_total").absolute(stats.appends.load(Relaxed));
        metrics::counter!("coffer_raft_wal_fsyncs_total").absolute(stats.wal_syncs.load(Relaxed));
        true
    });
}

/// Publishes how the node batches work it sends to the leader, sampled until Raft stops:
/// read indexes asked for and the rounds that served them (`coffer_read_index_requests_total` /
/// `coffer_read_index_rounds_total`: how many linearizable reads share one quorum round), and
/// writes forwarded and the calls that carried them (`coffer_forwarded_writes_total` /
/// `coffer_forward_calls_total`), and the free space under the data folder
/// (`coffer_disk_free_bytes`; `coffer_out_of_disk` is 1 while the node refuses writes for it).
pub fn export_batch_stats(raft: RaftNode) {
    sample_every_500ms(move || {
        let r = raft.read_batch_stats();
        metrics::counter!("coffer_read_index_requests_total").absolute(r.requests);
        metrics::counter!("coffer_read_index_rounds_total").absolute(r.rounds);
        let f = raft.forward_stats();
        metrics::counter!("coffer_forwarded_writes_total").absolute(f.writes);
        metrics::counter!("coffer_forward_calls_total").absolute(f.calls);
        let disk = raft.disk();
        if disk.free_bytes() != u64::MAX {
            metrics::gauge!("coffer_disk_free_bytes").set(disk.free_bytes() as f64);
        }
        metrics::gauge!("coffer_out_of_disk").set(if disk.is_low() { 1.0 } else { 0.0 });
        raft.status().role != Role::Shutdown
    });
}

/// Publishes what the alerts watch, every 500 ms until the node stops:
/// - `coffer_node_health{state}`: 1 for the state `/health/ready` reports, 0 for the others;
/// - `coffer_staleness_upper_bound_seconds` and `coffer_ready_max_staleness_seconds`;
/// - `coffer_raft_term`, `coffer_raft_is_leader`, `coffer_raft_leader_changes_total` (changes
///   of the leader this node saw between samples), `coffer_raft_commit_lag_entries` (appended,
///   not yet committed) and `coffer_raft_apply_lag_entries` (committed, not yet applied);
/// - `coffer_cluster_members{member_region}`: members per region in this node's membership.
pub fn export_health(service: Arc<Service>) {
    let mut leader = None;
    let mut regions_seen = std::collections::BTreeSet::new();
    sample_every_500ms(move || {
        let h = service.health(None);
        for s in NodeHealth::ALL {
            metrics::gauge!("coffer_node_health", "state" => s.as_str()).set(if s == h.state { 1.0 } else { 0.0 });
        }
        metrics::gauge!("coffer_staleness_upper_bound_seconds").set(h.staleness_upper_bound_ms as f64 / 1000.0);
        metrics::gauge!("coffer_ready_max_staleness_seconds").set(h.max_staleness_ms as f64 / 1000.0);
        let s = service.raft.status();
        let local = service.raft.local_status();
        metrics::gauge!("coffer_raft_term").set(s.term as f64);
        metrics::gauge!("coffer_raft_is_leader").set(if s.role == Role::Leader { 1.0 } else { 0.0 });
        if s.leader.is_some() && s.leader != leader {
            if leader.is_some() {
                metrics::counter!("coffer_raft_leader_changes_total").increment(1);
            }
            leader = s.leader;
        }
        metrics::gauge!("coffer_raft_commit_lag_entries").set(s.last_log.saturating_sub(s.committed) as f64);
        metrics::gauge!("coffer_raft_apply_lag_entries").set(local.lag as f64);
        let mut members = std::collections::BTreeMap::<String, u64>::new();
        for n in s.voters.iter().chain(&s.learners) {
            *members.entry(n.region.clone()).or_default() += 1;
        }
        // A region no longer in the membership reads 0 rather than its last count.
        regions_seen.extend(members.keys().cloned());
        for r in &regions_seen {
            metrics::gauge!("coffer_cluster_members", "member_region" => r.clone())
                .set(members.get(r).copied().unwrap_or(0) as f64);
        }
        s.role != Role::Shutdown && h.state != NodeHealth::Stopping
    });
}
