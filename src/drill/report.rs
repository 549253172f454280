//! The drill report, computed from what the probes recorded: RTO per region and request kind,
//! RPO (acknowledged writes lost, the staleness bound reported), stale linearizable reads, the
//! leader's moves and the fenced nodes' catch-up. Written as JSON and Markdown.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::Serialize;

use super::probe::NodeSample;
use super::probe::ProbeKind;
use super::probe::Sample;

/// When the faults stood, in ms since the drill's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Window {
    fn holds(&self, t: u64) -> bool {
        t >= self.start_ms && t < self.end_ms
    }
}

/// A write acknowledged to the probe that a node does not hold (or holds with another value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWrite {
    pub secret: String,
    pub version: u64,
    pub seq: u64,
    /// The node that does not hold it.
    pub node: String,
    pub why: String,
}

/// One region's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionFigures {
    /// Per kind (`writes`, `reads_local`, `reads_linearizable`): fault start to the first
    /// success of a request sent after it; `None`: none succeeded.
    pub rto_ms: BTreeMap<String, Option<u64>>,
    pub requests: u64,
    pub failed: u64,
    /// Failed requests by error code.
    pub errors: BTreeMap<String, u64>,
    /// The largest staleness bound a local read reported during the fault.
    pub max_staleness_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rpo {
    pub acked_writes: u64,
    pub lost_writes: u64,
    /// Each lost write, named.
    pub lost: Vec<LostWrite>,
    /// The largest staleness bound any local read reported during the fault.
    pub max_staleness_ms: u64,
}

/// What a KMS outage did (kms-outage drills).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsFigures {
    pub region: String,
    /// Reads in that region during the outage that succeeded: the data key came from the
    /// node's cache or, with `kms.fallback = "allow"`, another region's KMS.
    pub reads_served: u64,
    /// Reads in that region during the outage refused with `kms_unavailable`.
    pub reads_refused: u64,
    /// Writes acknowledged during the outage (each left the region's wrap for the rewrap job).
    pub writes_acked: u64,
    /// Versions missing the region's wrap after the outage, before the runner's rewrap added
    /// them (`None`: unknown).
    pub versions_missing_wrap_after: Option<u64>,
    /// On the region's nodes from the raise to the lift (`None`: a node did not say): data
    /// keys reads found in the cache, data keys unwrapped by another region's KMS, and KMS
    /// calls that failed as unavailable.
    #[serde(default)]
    pub dek_cache_hits: Option<u64>,
    #[serde(default)]
    pub kms_fallbacks: Option<u64>,
    #[serde(default)]
    pub kms_calls_unavailable: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderMove {
    pub at_ms: u64,
    pub leader: String,
    pub term: u64,
}

/// A linearizable read that returned an older version than one acknowledged before it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleRead {
    pub region: String,
    pub node: String,
    pub at_ms: u64,
    pub read_version: u64,
    pub acked_version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub drill_id: String,
    pub scenario: String,
    pub argument: String,
    /// Wall-clock start, RFC 3339.
    pub started: String,
    pub fault: Window,
    /// The nodes each fault landed on, and what it was.
    pub faults: Vec<String>,
    /// Over all regions, per kind: the first recovery anywhere.
    pub rto_ms: BTreeMap<String, Option<u64>>,
    pub regions: BTreeMap<String, RegionFigures>,
    pub rpo: Rpo,
    pub stale_linearizable_reads: Vec<StaleRead>,
    pub leader_moves: Vec<LeaderMove>,
    /// Fenced node -> ms after the fault ended until it applied every acknowledged write
    /// (`None`: not within the drill).
    pub catch_up_ms: BTreeMap<String, Option<u64>>,
    /// kms-outage drills: what the outage did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsFigures>,
    /// What the preflight expected.
    pub expected: Vec<String>,
    pub passed: bool,
    /// Why it did not pass, one line each.
    pub failures: Vec<String>,
}

/// What the report is computed from.
pub struct Inputs<'a> {
    pub drill_id: &'a str,
    pub scenario: &'a str,
    pub argument: &'a str,
    pub started: String,
    pub fault: Window,
    pub faults: Vec<String>,
    pub fenced: Vec<String>,
    pub samples: &'a [Sample],
    pub nodes: &'a [NodeSample],
    pub lost: Vec<LostWrite>,
    /// Verification problems other than lost writes (a node that could not be checked).
    pub unverified: Vec<String>,
    pub expected: Vec<String>,
    /// kms-outage drills: the region, and the versions missing its wrap after the drill.
    pub kms_region: Option<String>,
    pub missing_wrap_after: Option<u64>,
    /// kms-outage drills: the region's nodes' KMS usage from the raise to the lift.
    pub kms_usage: Option<crate::pb::KmsUsage>,
}

/// Fault start to the first success of a request of these sent at or after it.
fn rto<'a>(fault: Window, samples: impl Iterator<Item = &'a Sample>) -> Option<u64> {
    samples
        .filter(|s| s.ok && s.start_ms >= fault.start_ms)
        .map(|s| s.end_ms - fault.start_ms)
        .min()
}

pub fn compute(i: Inputs<'_>) -> Report {
    let mut regions: BTreeMap<String, RegionFigures> = BTreeMap::new();
    for s in i.samples {
        let r = regions.entry(s.region.clone()).or_default();
        r.requests += 1;
        if !s.ok {
            r.failed += 1;
            *r.errors.entry(s.code.clone()).or_default() += 1;
        }
        if s.ok && s.kind == ProbeKind::ReadLocal && i.fault.holds(s.start_ms) {
            r.max_staleness_ms = r.max_staleness_ms.max(s.staleness_ms);
        }
    }
    for (name, r) in regions.iter_mut() {
        for k in ProbeKind::ALL {
            let v = rto(i.fault, i.samples.iter().filter(|s| s.region == *name && s.kind == k));
            r.rto_ms.insert(k.as_str().into(), v);
        }
    }
    let rto_ms = ProbeKind::ALL
        .iter()
        .map(|k| {
            (
                k.as_str().to_string(),
                rto(i.fault, i.samples.iter().filter(|s| s.kind == *k)),
            )
        })
        .collect();

    let acked: Vec<&Sample> = i
        .samples
        .iter()
        .filter(|s| s.kind == ProbeKind::Write && s.ok)
        .collect();
    let rpo = Rpo {
        acked_writes: acked.len() as u64,
        lost_writes: i.lost.len() as u64,
        lost: i.lost.clone(),
        max_staleness_ms: regions.values().map(|r| r.max_staleness_ms).max().unwrap_or(0),
    };

    // A linearizable read must see every write of its secret acknowledged before it began.
    let mut stale = Vec::new();
    for r in i
        .samples
        .iter()
        .filter(|s| s.kind == ProbeKind::ReadLinearizable && s.ok)
    {
        let newest = acked
            .iter()
            .filter(|w| w.region == r.region && w.end_ms < r.start_ms)
            .map(|w| w.version)
            .max()
            .unwrap_or(0);
        if r.version < newest {
            stale.push(StaleRead {
                region: r.region.clone(),
                node: r.node.clone(),
                at_ms: r.start_ms,
                read_version: r.version,
                acked_version: newest,
            });
        }
    }

    // The leader's moves: the first report of each new leader term.
    let mut nodes: Vec<&NodeSample> = i.nodes.iter().collect();
    nodes.sort_by_key(|n| n.at_ms);
    let mut leader_moves: Vec<LeaderMove> = Vec::new();
    for n in &nodes {
        if n.role == "leader" && leader_moves.last().is_none_or(|m| n.term > m.term) {
            leader_moves.push(LeaderMove {
                at_ms: n.at_ms,
                leader: n.node.clone(),
                term: n.term,
            });
        }
    }

    // Catch-up: once the fault ended, a fenced node applied the newest acknowledged write.
    // The newest write acknowledged when the fault ended (later ones keep coming).
    let newest_index = acked
        .iter()
        .filter(|w| w.end_ms <= i.fault.end_ms)
        .map(|w| w.log_index)
        .max()
        .unwrap_or(0);
    let catch_up_ms: BTreeMap<String, Option<u64>> = i
        .fenced
        .iter()
        .map(|f| {
            let t = nodes
                .iter()
                .find(|n| n.node == *f && n.at_ms >= i.fault.end_ms && n.applied_index >= newest_index)
                .map(|n| n.at_ms - i.fault.end_ms);
            (f.clone(), t)
        })
        .collect();

    let kms = i.kms_region.as_ref().map(|region| {
        let during = |s: &&Sample| i.fault.holds(s.start_ms);
        let reads = |s: &&Sample| s.region == *region && s.kind != ProbeKind::Write;
        KmsFigures {
            region: region.clone(),
            reads_served: i.samples.iter().filter(during).filter(reads).filter(|s| s.ok).count() as u64,
            reads_refused: i
                .samples
                .iter()
                .filter(during)
                .filter(reads)
                .filter(|s| s.code == "kms_unavailable")
                .count() as u64,
            writes_acked: acked.iter().filter(|s| i.fault.holds(s.start_ms)).count() as u64,
            versions_missing_wrap_after: i.missing_wrap_after,
            dek_cache_hits: i.kms_usage.as_ref().map(|u| u.dek_cache_hits),
            kms_fallbacks: i.kms_usage.as_ref().map(|u| u.kms_fallbacks),
            kms_calls_unavailable: i.kms_usage.as_ref().map(|u| u.kms_unavailable),
        }
    });

    let mut failures = Vec::new();
    for l in &i.lost {
        failures.push(format!(
            "LOST WRITE: {} version {} (probe write #{}) acknowledged but {} on {}",
            l.secret, l.version, l.seq, l.why, l.node
        ));
    }
    for s in &stale {
        failures.push(format!(
            "STALE LINEARIZABLE READ: {} at +{} ms read version {} of {}'s probe secret after version {} was acknowledged",
            s.node, s.at_ms, s.read_version, s.region, s.acked_version
        ));
    }
    failures.extend(i.unverified.iter().cloned());
    Report {
        drill_id: i.drill_id.to_string(),
        scenario: i.scenario.to_string(),
        argument: i.argument.to_string(),
        started: i.started,
        fault: i.fault,
        faults: i.faults,
        rto_ms,
        regions,
        passed: failures.is_empty(),
        rpo,
        stale_linearizable_reads: stale,
        leader_moves,
        catch_up_ms,
        kms,
        expected: i.expected,
        failures,
    }
}

fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v} ms"))
}

impl Report {
    /// The report for people: a summary, the per-region table, the findings.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let title = if self.argument.is_empty() {
            self.scenario.clone()
        } else {
            format!("{} {}", self.scenario, self.argument)
        };
        s += &format!("# Drill {}: {title}\n\n", self.drill_id);
        s += &format!(
            "**{}** · started {} · fault from +{} ms to +{} ms ({} ms)\n\n",
            if self.passed { "PASSED" } else { "FAILED" },
            self.started,
            self.fault.start_ms,
            self.fault.end_ms,
            self.fault.end_ms - self.fault.start_ms
        );
        for f in &self.faults {
            s += &format!("- fault: {f}\n");
        }
        s += "\n| | writes | local reads | linearizable reads |\n|---|---|---|---|\n";
        let row = |name: &str, m: &BTreeMap<String, Option<u64>>| {
            let g = |k: ProbeKind| opt_ms(m.get(k.as_str()).copied().flatten());
            format!(
                "| {name} | {} | {} | {} |\n",
                g(ProbeKind::Write),
                g(ProbeKind::ReadLocal),
                g(ProbeKind::ReadLinearizable)
            )
        };
        s += &row("**RTO, any region**", &self.rto_ms);
        for (name, r) in &self.regions {
            s += &row(&format!("RTO, {name}"), &r.rto_ms);
        }
        s += "\n| region | requests | failed | errors | max staleness during the fault |\n|---|---|---|---|---|\n";
        for (name, r) in &self.regions {
            let errors: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
            s += &format!(
                "| {name} | {} | {} | {} | {} ms |\n",
                r.requests,
                r.failed,
                if errors.is_empty() {
                    "—".into()
                } else {
                    errors.join(", ")
                },
                r.max_staleness_ms
            );
        }
        s += &format!(
            "\n**RPO**: {} acknowledged writes, {} lost; largest staleness bound reported: {} ms\n\n",
            self.rpo.acked_writes, self.rpo.lost_writes, self.rpo.max_staleness_ms
        );
        if !self.leader_moves.is_empty() {
            let moves: Vec<String> = self
                .leader_moves
                .iter()
                .map(|m| format!("+{} ms {} (term {})", m.at_ms, m.leader, m.term))
                .collect();
            s += &format!("**Leader**: {}\n\n", moves.join(" → "));
        }
        if let Some(k) = &self.kms {
            s += &format!(
                "**KMS** outage of {}: {} reads there served (cached data keys or fallback), {} refused (kms_unavailable); {} writes acknowledged, their {} wraps left out; versions missing a {} wrap after the outage (the runner rewrapped them): {}\n\n",
                k.region,
                k.reads_served,
                k.reads_refused,
                k.writes_acked,
                k.region,
                k.region,
                k.versions_missing_wrap_after.map_or("unknown".into(), |n| n.to_string())
            );
            let n = |v: Option<u64>| v.map_or("unknown".into(), |n| n.to_string());
            s += &format!(
                "On {}'s nodes during the outage: {} data keys from the cache, {} unwrapped by another region's KMS (fallback), {} KMS calls unavailable\n\n",
                k.region,
                n(k.dek_cache_hits),
                n(k.kms_fallbacks),
                n(k.kms_calls_unavailable)
            );
        }
        for (n, t) in &self.catch_up_ms {
            s += &format!("**Catch-up** of {n} after the fault: {}\n\n", opt_ms(*t));
        }
        if !self.failures.is_empty() {
            s += "## Failures\n\n";
            for f in &self.failures {
                s += &format!("- {f}\n");
            }
            s += "\n";
        }
        s += "## Expected\n\n";
        for e in &self.expected {
            s += &format!("- {e}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(region: &str, kind: ProbeKind, start: u64, end: u64, ok: bool, version: u64) -> Sample {
        Sample {
            region: region.into(),
            node: format!("n-{region}"),
            kind,
            start_ms: start,
            end_ms: end,
            ok,
            code: if ok { String::new() } else { "no_leader".into() },
            version,
            seq: version,
            log_index: version * 10,
            staleness_ms: if kind == ProbeKind::ReadLocal { 40 } else { 0 },
        }
    }

    fn inputs<'a>(samples: &'a [Sample], nodes: &'a [NodeSample]) -> Inputs<'a> {
        Inputs {
            drill_id: "d",
            scenario: "leader-loss",
            argument: "",
            started: "2026-12-07T00:00:00.000Z".into(),
            fault: Window {
                start_ms: 1_000,
                end_ms: 5_000,
            },
            faults: vec!["fence on n1".into()],
            fenced: vec!["n1".into()],
            samples,
            nodes,
            lost: vec![],
            unverified: vec![],
            expected: vec![],
            kms_region: None,
            missing_wrap_after: None,
            kms_usage: None,
        }
    }

    #[test]
    fn rto_is_fault_start_to_the_first_success_sent_after_it() {
        use ProbeKind::*;
        let samples = vec![
            sample("us", Write, 900, 950, true, 1),
            // Sent before the fault, answered after: not a recovery.
            sample("us", Write, 990, 1_300, true, 2),
            sample("us", Write, 1_300, 2_000, false, 0),
            sample("us", Write, 2_000, 3_400, true, 3),
            sample("eu", Write, 1_100, 3_000, true, 4),
            sample("eu", ReadLocal, 1_010, 1_012, true, 4),
        ];
        let r = compute(inputs(&samples, &[]));
        assert_eq!(r.regions["us"].rto_ms["writes"], Some(2_400));
        assert_eq!(r.regions["eu"].rto_ms["writes"], Some(2_000));
        assert_eq!(r.rto_ms["writes"], Some(2_000), "the first recovery anywhere");
        assert_eq!(r.rto_ms["reads_local"], Some(12));
        assert_eq!(r.rto_ms["reads_linearizable"], None, "none sent");
        assert_eq!(r.regions["us"].errors["no_leader"], 1);
        assert_eq!(r.rpo.acked_writes, 4);
        assert_eq!(r.rpo.max_staleness_ms, 40);
        assert!(r.passed);
        assert!(r.markdown().contains("| RTO, us | 2400 ms |"), "{}", r.markdown());
    }

    #[test]
    fn a_lost_write_or_a_stale_linearizable_read_fails_the_drill_and_is_named() {
        use ProbeKind::*;
        let samples = vec![
            sample("us", Write, 100, 200, true, 7),
            sample("us", ReadLinearizable, 300, 310, true, 6),
            sample("us", ReadLinearizable, 150, 310, true, 6),
        ];
        let mut i = inputs(&samples, &[]);
        i.lost = vec![LostWrite {
            secret: "drill/d/us".into(),
            version: 7,
            seq: 7,
            node: "n2".into(),
            why: "missing".into(),
        }];
        let r = compute(i);
        assert!(!r.passed);
        assert_eq!(r.rpo.lost_writes, 1);
        assert_eq!(
            r.stale_linearizable_reads.len(),
            1,
            "only the read begun after the ack: {r:?}"
        );
        assert!(
            r.failures
                .iter()
                .any(|f| f.contains("LOST WRITE: drill/d/us version 7")),
            "{:?}",
            r.failures
        );
        assert!(r.failures.iter().any(|f| f.contains("STALE LINEARIZABLE READ")));
    }

    #[test]
    fn a_kms_outage_counts_the_reads_it_served_and_refused_in_its_region() {
        use ProbeKind::*;
        let mut refused = sample("eu", ReadLocal, 2_000, 2_010, false, 0);
        refused.code = "kms_unavailable".into();
        let samples = vec![
            sample("eu", ReadLocal, 1_500, 1_510, true, 3),
            sample("eu", ReadLinearizable, 1_600, 1_700, true, 3),
            refused,
            sample("eu", ReadLocal, 6_000, 6_010, true, 3), // after the fault
            sample("us", ReadLocal, 1_500, 1_510, true, 3), // another region
            sample("us", Write, 1_500, 1_600, true, 4),
        ];
        let mut i = inputs(&samples, &[]);
        i.kms_region = Some("eu".into());
        i.missing_wrap_after = Some(1);
        i.kms_usage = Some(crate::pb::KmsUsage {
            dek_cache_hits: 5,
            dek_cache_misses: 1,
            kms_fallbacks: 2,
            kms_unavailable: 3,
        });
        let r = compute(i);
        let k = r.kms.clone().unwrap();
        assert_eq!((k.reads_served, k.reads_refused, k.writes_acked), (2, 1, 1));
        assert_eq!(k.versions_missing_wrap_after, Some(1));
        assert_eq!(
            (k.dek_cache_hits, k.kms_fallbacks, k.kms_calls_unavailable),
            (Some(5), Some(2), Some(3))
        );
        assert!(
            r.markdown()
                .contains("5 data keys from the cache, 2 unwrapped by another region's KMS"),
            "{}",
            r.markdown()
        );
    }

    #[test]
    fn leader_moves_and_catch_up_come_from_the_nodes_own_reports() {
        let n = |node: &str, at: u64, role: &str, term: u64, applied: u64| NodeSample {
            node: node.into(),
            at_ms: at,
            state: "serving".into(),
            role: role.into(),
            term,
            leader_id: 0,
            applied_index: applied,
        };
        let samples = vec![sample("us", ProbeKind::Write, 2_000, 2_100, true, 5)];
        let nodes = vec![
            n("n1", 0, "leader", 2, 10),
            n("n1", 100, "leader", 2, 10),
            n("n2", 3_000, "leader", 3, 40),
            n("n1", 5_100, "follower", 3, 20),
            n("n1", 5_300, "follower", 3, 50),
        ];
        let r = compute(inputs(&samples, &nodes));
        let moves: Vec<(u64, &str, u64)> = r
            .leader_moves
            .iter()
            .map(|m| (m.at_ms, m.leader.as_str(), m.term))
            .collect();
        assert_eq!(moves, [(0, "n1", 2), (3_000, "n2", 3)]);
        assert_eq!(r.catch_up_ms["n1"], Some(300), "applied index 50 >= 50 at +5300");
    }
}
