//! The fault schedule a seed describes, and how it is applied to the simulated network.
//!
//! Active faults are kept as a set; after every change every link is recomputed from the
//! baseline (latency by region pair) and the faults still active, so overlapping faults
//! compose and ending one never heals another.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::rng::SimRng;
use crate::shape::Shape;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Cut a region (its nodes, clients and KMS host) off from every other region.
    IsolateRegion(usize),
    /// Cut whichever node leads when the fault starts off from everyone.
    IsolateLeader,
    /// Messages from one node to another are dropped; the other way works.
    OneWay { from: u64, to: u64 },
    /// Crash a node; it restarts (same storage) when the fault ends.
    Crash(u64),
    /// Extra one-way latency between two regions.
    DelaySpike { a: usize, b: usize, extra_ms: u64 },
    /// A region's KMS host is unreachable.
    KmsDown(usize),
    /// A region's KMS host answers slowly.
    KmsSlow { region: usize, latency_ms: u64 },
    /// A node's disk has no free space: it refuses writes and log entries until it has.
    DiskFull(u64),
    /// The region of whichever node leads when the fault starts is cut off (pinned scenarios).
    IsolateLeaderRegion,
    /// The KMS host of the leader's region is unreachable (pinned scenarios).
    LeaderRegionKmsDown,
    /// A drill fences a node through its admin RPC; the fence ends by itself at its deadline
    /// (the fault's length), nobody lifts it.
    DrillFence(u64),
}

#[derive(Debug, Clone)]
pub struct Scheduled {
    pub start: Duration,
    pub length: Duration,
    pub fault: Fault,
}

/// The safety phase's faults, in start order.
pub fn schedule(rng: &SimRng, shape: &Shape, phase: Duration) -> Vec<Scheduled> {
    let mut r = rng.fork("faults");
    let mut out = Vec::new();
    let mut t = Duration::from_millis(r.range(1000, 3000));
    let elect = shape.election_max_ms;
    while t < phase {
        let length = Duration::from_millis(r.range(elect / 2, elect * 4));
        let nodes: Vec<u64> = shape.nodes.iter().map(|n| n.id).collect();
        let regions = shape.regions.len() as u64;
        let fault = match r.below(100) {
            0..=17 => Fault::IsolateRegion(r.below(regions) as usize),
            18..=32 => Fault::IsolateLeader,
            33..=44 => {
                let from = *r.pick(&nodes);
                let to = *r.pick(&nodes);
                if from == to {
                    Fault::Crash(from)
                } else {
                    Fault::OneWay { from, to }
                }
            }
            45..=62 => Fault::Crash(*r.pick(&nodes)),
            63..=74 => {
                let a = r.below(regions) as usize;
                let b = (a + 1 + r.below(regions - 1) as usize) % regions as usize;
                Fault::DelaySpike {
                    a,
                    b,
                    extra_ms: r.range(200, 2000),
                }
            }
            75..=86 => Fault::KmsDown(r.below(regions) as usize),
            87..=93 => Fault::DiskFull(*r.pick(&nodes)),
            _ => Fault::KmsSlow {
                region: r.below(regions) as usize,
                latency_ms: r.range(300, 2500),
            },
        };
        out.push(Scheduled {
            start: t,
            length,
            fault,
        });
        t += Duration::from_millis(r.range(500, elect * 3));
    }
    // Drill fences come from their own stream, so the other faults of a seed stay as they were.
    let mut d = rng.fork("drill-fences");
    let nodes: Vec<u64> = shape.nodes.iter().map(|n| n.id).collect();
    let mut t = Duration::from_millis(d.range(2000, 8000));
    while t < phase {
        if d.below(2) == 0 {
            out.push(Scheduled {
                start: t,
                length: Duration::from_millis(d.range(elect / 2, elect * 4)),
                fault: Fault::DrillFence(*d.pick(&nodes)),
            });
        }
        t += Duration::from_millis(d.range(elect * 2, elect * 6));
    }
    out.sort_by_key(|s| s.start);
    out
}

/// Host names grouped as the network sees them.
pub struct Hosts {
    /// (host name, region) of every host: nodes, clients, KMS hosts.
    pub all: Vec<(String, usize)>,
    pub node_host: BTreeMap<u64, String>,
    pub kms_host: Vec<String>,
}

/// The link state the active faults ask for.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Links {
    /// Directed (from, to) host pairs whose messages are dropped.
    pub cut: BTreeSet<(String, String)>,
    /// Undirected pairs (a < b) with their latency.
    pub latency: BTreeMap<(String, String), Duration>,
}

/// Computes links for `active` faults (`leader` resolves IsolateLeader, `crashed` is ignored
/// here: crashes are applied to hosts, not links).
pub fn links(shape: &Shape, hosts: &Hosts, active: &[(Fault, Option<u64>)]) -> Links {
    let mut l = Links::default();
    let kms_region: BTreeMap<&str, usize> = hosts
        .kms_host
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    for (i, (a, ra)) in hosts.all.iter().enumerate() {
        for (b, rb) in &hosts.all[i + 1..] {
            let mut lat = shape.latency(*ra, *rb);
            for (f, _) in active {
                match f {
                    Fault::DelaySpike { a: x, b: y, extra_ms }
                        if (*ra == *x && *rb == *y) || (*ra == *y && *rb == *x) =>
                    {
                        lat += Duration::from_millis(*extra_ms)
                    }
                    Fault::KmsSlow { region, latency_ms }
                        if kms_region.get(a.as_str()) == Some(region) || kms_region.get(b.as_str()) == Some(region) =>
                    {
                        lat = lat.max(Duration::from_millis(*latency_ms))
                    }
                    _ => {}
                }
            }
            l.latency.insert((a.clone(), b.clone()), lat);
            let mut cut = |from: &String, to: &String| {
                l.cut.insert((from.clone(), to.clone()));
            };
            for (f, leader) in active {
                match f {
                    Fault::IsolateRegion(r) if (*ra == *r) != (*rb == *r) => {
                        cut(a, b);
                        cut(b, a);
                    }
                    Fault::IsolateLeader => {
                        if let Some(host) = leader.and_then(|id| hosts.node_host.get(&id)) {
                            if host == a || host == b {
                                cut(a, b);
                                cut(b, a);
                            }
                        }
                    }
                    Fault::OneWay { from, to } => {
                        let (f, t) = (&hosts.node_host[from], &hosts.node_host[to]);
                        if (f == a && t == b) || (f == b && t == a) {
                            cut(f, t);
                        }
                    }
                    Fault::KmsDown(r) => {
                        let k = &hosts.kms_host[*r];
                        if k == a || k == b {
                            cut(a, b);
                            cut(b, a);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    l
}
