//! The cluster a seed describes: regions, voters and learners per region, link latencies and
//! Raft timing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::rng::SimRng;

pub const REGION_NAMES: [&str; 5] = ["us-east", "eu-west", "ap-south", "sa-east", "af-south"];
pub const API_PORT: u16 = 7000;
pub const RAFT_PORT: u16 = 7001;
pub const KMS_PORT: u16 = 7002;
/// `cluster.default_max_versions` of every simulated cluster: small, so that the hot secret's
/// puts prune old versions while promotes, disables and destroys race with them.
pub const SIM_MAX_VERSIONS: u64 = 3;
/// `cluster.token_record_retention_ms` of every simulated cluster: short, so that revoked and
/// expired tokens' records are deleted within a run.
pub const SIM_TOKEN_RETENTION_MS: u64 = 3_000;
/// `audit.anchor_interval_ms` of every simulated node: short, so that every node anchors its
/// audit chain many times a run, through partitions and leader changes.
pub const SIM_ANCHOR_INTERVAL_MS: u64 = 500;
pub const ROOT_TOKEN: &str = "sim-root-token-not-a-real-credential";

#[derive(Debug, Clone)]
pub struct SimNode {
    pub id: u64,
    pub name: String,
    pub region: usize,
    pub voter: bool,
}

impl SimNode {
    /// Node `id` in region number `region` (named `region_name`), host name `n<id>-<region>`.
    pub fn new(id: u64, region_name: &str, region: usize, voter: bool) -> Self {
        Self {
            id,
            name: format!("n{id}-{region_name}"),
            region,
            voter,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Shape {
    pub regions: Vec<String>,
    pub nodes: Vec<SimNode>,
    /// One-way latency between regions `(a, b)` with `a < b`; inside a region it is 1 ms.
    pub latency: BTreeMap<(usize, usize), Duration>,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Snapshot after this many entries, so crashes and partitions exercise snapshot install.
    pub snapshot_every: u64,
}

impl Shape {
    pub fn from_seed(rng: &SimRng) -> Shape {
        let mut r = rng.fork("shape");
        let n_regions = match r.below(100) {
            0..=59 => 3,
            60..=84 => 4,
            _ => 5,
        };
        let regions: Vec<String> = REGION_NAMES[..n_regions].iter().map(|s| s.to_string()).collect();
        let mut nodes = Vec::new();
        let mut voters = 0;
        for (ri, region) in regions.iter().enumerate() {
            // 1–2 voters per region, at most 7 in all; sometimes a learner.
            let want = if voters + (n_regions - ri) < 7 && r.percent(35) {
                2
            } else {
                1
            };
            for _ in 0..want {
                voters += 1;
                nodes.push(SimNode::new(nodes.len() as u64 + 1, region, ri, true));
            }
            if r.percent(25) {
                nodes.push(SimNode::new(nodes.len() as u64 + 1, region, ri, false));
            }
        }
        let mut latency = BTreeMap::new();
        for a in 0..n_regions {
            for b in a + 1..n_regions {
                latency.insert((a, b), Duration::from_millis(r.range(30, 250)));
            }
        }
        let max_one_way = latency.values().max().copied().unwrap_or_default().as_millis() as u64;
        // A heartbeat's deadline is the heartbeat period, so the period must exceed the
        // slowest round trip; elections wait several heartbeats (as a real deployment would).
        let heartbeat_ms = 2 * max_one_way + 100 + r.range(0, 50);
        let election_min_ms = heartbeat_ms * 4;
        Shape {
            regions,
            nodes,
            latency,
            heartbeat_ms,
            election_min_ms,
            election_max_ms: election_min_ms * 2,
            snapshot_every: r.range(30, 120),
        }
    }

    pub fn latency(&self, a: usize, b: usize) -> Duration {
        if a == b {
            return Duration::from_millis(1);
        }
        self.latency[&(a.min(b), a.max(b))]
    }

    pub fn voters(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes.iter().filter(|n| n.voter)
    }

    pub fn nodes_in(&self, region: usize) -> impl Iterator<Item = &SimNode> {
        self.nodes.iter().filter(move |n| n.region == region)
    }

    pub fn kms_host(&self, region: usize) -> String {
        format!("kms-{}", self.regions[region])
    }

    pub fn client_host(&self, region: usize, k: usize) -> String {
        format!("client-{}-{k}", self.regions[region])
    }

    /// One line for the run header.
    pub fn describe(&self) -> String {
        let per_region: Vec<String> = (0..self.regions.len())
            .map(|r| {
                let v = self.nodes_in(r).filter(|n| n.voter).count();
                let l = self.nodes_in(r).filter(|n| !n.voter).count();
                format!("{}:{v}v{l}l", self.regions[r])
            })
            .collect();
        let lat: Vec<String> = self
            .latency
            .iter()
            .map(|((a, b), d)| format!("{a}-{b}:{}ms", d.as_millis()))
            .collect();
        format!(
            "regions [{}] latency [{}] election {}-{} ms heartbeat {} ms snapshot every {}",
            per_region.join(" "),
            lat.join(" "),
            self.election_min_ms,
            self.election_max_ms,
            self.heartbeat_ms,
            self.snapshot_every
        )
    }
}
