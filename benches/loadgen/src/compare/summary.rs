//! Medians of the runs of each cell, the ratios between systems and the targets they meet.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::plan::Run;
use crate::target::System;
use crate::target::Workload;

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of one (system, workload, size, connections, in-flight) over its runs.
#[derive(Clone, Copy, Debug)]
pub struct Medians {
    pub ops: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu_us_per_op: f64,
    /// The load generator's CPU per request, and its largest share of the machine in a run.
    pub client_cpu_us_per_op: f64,
    pub client_share_max: f64,
    pub errors: u64,
}

pub(super) type SummaryKey = (System, Workload, usize, usize, usize);

pub(super) fn summarize(runs: &[Run]) -> BTreeMap<SummaryKey, Medians> {
    let mut groups: BTreeMap<SummaryKey, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.system, r.workload, r.value_bytes, r.connections, r.in_flight))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|(k, rs)| {
            let m = Medians {
                ops: median(rs.iter().map(|r| r.outcome.ops_per_sec).collect()),
                p50: median(rs.iter().map(|r| r.outcome.latency_us.p50 as f64).collect()),
                p99: median(rs.iter().map(|r| r.outcome.latency_us.p99 as f64).collect()),
                cpu_us_per_op: median(rs.iter().map(|r| r.server_cpu_us_per_op).collect()),
                client_cpu_us_per_op: median(rs.iter().map(|r| r.loadgen_cpu_us_per_op).collect()),
                client_share_max: rs.iter().map(|r| r.loadgen_machine_share).fold(0.0, f64::max),
                errors: rs.iter().map(|r| r.outcome.errors).sum(),
            };
            (k, m)
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub local_read_vs_etcd_serializable: Option<f64>,
    pub linearizable_read_vs_etcd_linearizable: Option<f64>,
    pub write_vs_etcd_put: Option<f64>,
    pub local_read_vs_bare_echo: Option<f64>,
    /// Coffer's local read over HTTP/JSON against the same read over gRPC (no target: what the
    /// JSON encoding and HTTP/1.1 cost).
    pub http_local_read_vs_grpc: Option<f64>,
    /// Coffer's local read against OpenBao's KV v2 read on its active node, and on a standby.
    pub local_read_vs_openbao: Option<f64>,
    pub local_read_vs_openbao_standby: Option<f64>,
    /// Coffer's write against OpenBao's KV v2 write.
    pub write_vs_openbao: Option<f64>,
    /// Coffer's local read p99 over etcd's serializable Range p99 (lower is better).
    pub local_read_p99_vs_etcd: Option<f64>,
}

/// Throughput ratios of the medians at 10 connections x 10 in flight.
pub(super) fn ratios_of(s: &BTreeMap<SummaryKey, Medians>, size: usize) -> Ratios {
    let at = |sys, w| s.get(&(sys, w, size, 10, 10)).map(|m| m.ops);
    let p99 = |sys| s.get(&(sys, Workload::LocalRead, size, 10, 10)).map(|m| m.p99);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    };
    Ratios {
        local_read_vs_etcd_serializable: ratio(
            at(System::Coffer, Workload::LocalRead),
            at(System::Etcd, Workload::LocalRead),
        ),
        linearizable_read_vs_etcd_linearizable: ratio(
            at(System::Coffer, Workload::LinearizableRead),
            at(System::Etcd, Workload::LinearizableRead),
        ),
        write_vs_etcd_put: ratio(at(System::Coffer, Workload::Write), at(System::Etcd, Workload::Write)),
        local_read_vs_bare_echo: ratio(
            at(System::Coffer, Workload::LocalRead),
            at(System::Echo, Workload::LocalRead),
        ),
        http_local_read_vs_grpc: ratio(
            at(System::CofferHttp, Workload::LocalRead),
            at(System::Coffer, Workload::LocalRead),
        ),
        local_read_vs_openbao: ratio(
            at(System::Coffer, Workload::LocalRead),
            at(System::OpenBao, Workload::LocalRead),
        ),
        local_read_vs_openbao_standby: ratio(
            at(System::Coffer, Workload::LocalRead),
            at(System::OpenBaoStandby, Workload::LocalRead),
        ),
        write_vs_openbao: ratio(
            at(System::Coffer, Workload::Write),
            at(System::OpenBao, Workload::Write),
        ),
        local_read_p99_vs_etcd: ratio(p99(System::Coffer), p99(System::Etcd)),
    }
}

pub(super) fn ratios(s: &BTreeMap<SummaryKey, Medians>, size: usize) -> serde_json::Value {
    let mut v = serde_json::to_value(ratios_of(s, size)).unwrap();
    v["value_bytes"] = json!(size);
    v["at"] = json!("10x10 (connections x in flight), medians");
    v
}

/// Whether a ratio meets its target from above (throughput) or from below (latency, disk).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Goal {
    AtLeast,
    AtMost,
}

impl Goal {
    pub(super) fn met(self, got: f64, target: f64) -> bool {
        match self {
            Goal::AtLeast => got >= target,
            Goal::AtMost => got <= target,
        }
    }

    pub(super) fn sign(self) -> &'static str {
        match self {
            Goal::AtLeast => ">=",
            Goal::AtMost => "<=",
        }
    }
}

pub(super) const TARGETS: [(&str, Goal, f64); 8] = [
    ("local_read_vs_etcd_serializable", Goal::AtLeast, 1.5),
    ("linearizable_read_vs_etcd_linearizable", Goal::AtLeast, 1.2),
    ("write_vs_etcd_put", Goal::AtLeast, 1.0),
    ("local_read_vs_openbao", Goal::AtLeast, 10.0),
    ("write_vs_openbao", Goal::AtLeast, 10.0),
    ("local_read_p99_vs_etcd", Goal::AtMost, 1.0),
    ("disk_per_write_vs_etcd", Goal::AtMost, 2.0),
    ("local_read_vs_bare_echo", Goal::AtLeast, 0.7),
];

pub(super) fn targets(ratios: &serde_json::Value) -> serde_json::Value {
    TARGETS
        .iter()
        .map(|(name, goal, target)| {
            let got = ratios[name].as_f64();
            (
                name.to_string(),
                json!({"target": format!("{} {target}", goal.sign()), "measured": got, "met": got.map(|g| goal.met(g, *target))}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Coffer's bytes on disk per write over `peer`'s, from the disk report.
pub(super) fn disk_ratio(disk: &[serde_json::Value], peer: System) -> Option<f64> {
    let of = |s: System| {
        disk.iter()
            .find(|d| d["system"] == json!(s))
            .and_then(|d| d["bytes_per_write"].as_f64())
    };
    match (of(System::Coffer), of(peer)) {
        (Some(c), Some(p)) if p > 0.0 => Some((c / p * 100.0).round() / 100.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_or_disk_target_is_met_from_below_and_a_throughput_target_from_above() {
        let ratios = json!({
            "local_read_vs_openbao": 12.0,
            "write_vs_openbao": 4.0,
            "local_read_p99_vs_etcd": 0.8,
            "disk_per_write_vs_etcd": 2.5,
        });
        let t = targets(&ratios);
        assert_eq!(t["local_read_vs_openbao"]["met"], json!(true));
        assert_eq!(t["write_vs_openbao"]["met"], json!(false));
        assert_eq!(t["local_read_p99_vs_etcd"]["met"], json!(true));
        assert_eq!(t["local_read_p99_vs_etcd"]["target"], json!("<= 1"));
        assert_eq!(t["disk_per_write_vs_etcd"]["met"], json!(false));
        assert_eq!(t["write_vs_etcd_put"]["met"], json!(null), "not measured is not met");

        let disk = vec![
            json!({"system": "coffer", "bytes_per_write": 3000.0}),
            json!({"system": "etcd", "bytes_per_write": 1000.0}),
            json!({"system": "openbao", "bytes_per_write": 0.0}),
        ];
        assert_eq!(disk_ratio(&disk, System::Etcd), Some(3.0));
        assert_eq!(disk_ratio(&disk, System::OpenBao), None, "no growth is no ratio");
    }
}
