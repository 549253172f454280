//! What a drill will do, decided before anything is touched: the scenario, the nodes each fault
//! lands on, whether a quorum survives it (the preflight), and the outcome to expect.

use std::collections::BTreeSet;
use std::fmt;

/// A drill scenario, as `coffer drill run` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// The leader is fenced (as if it died): the others must elect a new one.
    LeaderLoss,
    /// Every node of a region is fenced.
    RegionLoss(String),
    /// Every node's calls to the region's KMS fail.
    KmsOutage(String),
    /// Two sets of regions cut apart: no peer traffic between them, clients still served.
    Partition(BTreeSet<String>, BTreeSet<String>),
}

impl Scenario {
    /// Parses `leader-loss`, `region-loss REGION`, `kms-outage REGION`, `partition A|B` (A and
    /// B comma-separated region lists).
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Self, String> {
        let need = |what: &str| {
            arg.map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .ok_or_else(|| format!("{name} needs {what}, e.g. `coffer drill run {name} eu-west`"))
        };
        let s = match name {
            "leader-loss" => {
                if arg.is_some() {
                    return Err("leader-loss takes no argument (the leader is found when the drill starts)".into());
                }
                Scenario::LeaderLoss
            }
            "region-loss" => Scenario::RegionLoss(need("a region")?),
            "kms-outage" => Scenario::KmsOutage(need("a region")?),
            "partition" => {
                let a = arg.unwrap_or_default();
                let (l, r) = a.split_once('|').ok_or_else(|| {
                    "partition needs two region sets, e.g. `coffer drill run partition 'us-east|eu-west,ap-south'`"
                        .to_string()
                })?;
                let set = |s: &str| -> BTreeSet<String> {
                    s.split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(String::from)
                        .collect()
                };
                let (l, r) = (set(l), set(r));
                if l.is_empty() || r.is_empty() {
                    return Err("partition needs a region on each side of '|'".into());
                }
                if let Some(both) = l.intersection(&r).next() {
                    return Err(format!("region {both} is on both sides of the partition"));
                }
                Scenario::Partition(l, r)
            }
            other => {
                return Err(format!(
                    "unknown scenario {other:?}: leader-loss, region-loss REGION, kms-outage REGION or partition 'A|B'"
                ))
            }
        };
        Ok(s)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scenario::LeaderLoss => "leader-loss",
            Scenario::RegionLoss(_) => "region-loss",
            Scenario::KmsOutage(_) => "kms-outage",
            Scenario::Partition(..) => "partition",
        }
    }

    /// The scenario's argument as given (`""` for leader-loss).
    pub fn argument(&self) -> String {
        match self {
            Scenario::LeaderLoss => String::new(),
            Scenario::RegionLoss(r) | Scenario::KmsOutage(r) => r.clone(),
            Scenario::Partition(a, b) => format!(
                "{}|{}",
                a.iter().cloned().collect::<Vec<_>>().join(","),
                b.iter().cloned().collect::<Vec<_>>().join(",")
            ),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.argument() {
            a if a.is_empty() => f.write_str(self.name()),
            a => write!(f, "{} {a}", self.name()),
        }
    }
}

/// A cluster member as the drill sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub api_addr: String,
    pub voter: bool,
}

/// The fault each node gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFault {
    Fence,
    KmsOutage(String),
    /// Cut from these peers (node ids) both ways; the runner raises it on both sides.
    CutFrom(Vec<u64>),
}

impl std::fmt::Display for NodeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeFault::Fence => f.write_str("fence"),
            NodeFault::KmsOutage(r) => write!(f, "KMS outage of {r}"),
            NodeFault::CutFrom(p) => write!(
                f,
                "cut from node(s) {}",
                p.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl NodeFault {
    /// The stable JSON shape scripts read (`--dry-run --output json`): `kind` is `fence`,
    /// `kms_outage` (with `region`) or `partition` (with `peers`, node ids).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            NodeFault::Fence => serde_json::json!({"kind": "fence"}),
            NodeFault::KmsOutage(r) => serde_json::json!({"kind": "kms_outage", "region": r}),
            NodeFault::CutFrom(p) => serde_json::json!({"kind": "partition", "peers": p}),
        }
    }
}

/// The drill decided: who gets which fault, and what should happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub scenario: Scenario,
    /// (member, fault) for every node a fault lands on.
    pub faults: Vec<(Member, NodeFault)>,
    /// The voters that keep in touch with each other through the fault (the majority side).
    pub surviving_voters: Vec<String>,
    pub voters: usize,
    /// Whether the surviving voters are a quorum (writes resume during the fault).
    pub quorum_kept: bool,
    /// What should happen, for people.
    pub expected: Vec<String>,
}

impl Plan {
    /// Nodes whose clients are refused during the fault.
    pub fn fenced(&self) -> Vec<&Member> {
        self.faults
            .iter()
            .filter(|(_, f)| *f == NodeFault::Fence)
            .map(|(m, _)| m)
            .collect()
    }
}

/// Decides the plan for `scenario` on `members` with `leader` leading. Errors name what is
/// wrong (an unknown region, a partition that leaves regions out).
pub fn plan(scenario: Scenario, members: &[Member], leader: Option<u64>) -> Result<Plan, String> {
    let regions: BTreeSet<&str> = members.iter().map(|m| m.region.as_str()).collect();
    let known = |r: &str| -> Result<(), String> {
        if regions.contains(r) {
            Ok(())
        } else {
            Err(format!(
                "no member in region {r:?} (regions: {})",
                regions.iter().copied().collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let voters: Vec<&Member> = members.iter().filter(|m| m.voter).collect();
    let quorum = voters.len() / 2 + 1;
    let (faults, cut_off): (Vec<(Member, NodeFault)>, BTreeSet<u64>) = match &scenario {
        Scenario::LeaderLoss => {
            let id = leader.ok_or("no leader to lose: the cluster has none now")?;
            let m = members
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| format!("the leader (node {id}) is not in the membership"))?;
            (vec![(m.clone(), NodeFault::Fence)], BTreeSet::from([id]))
        }
        Scenario::RegionLoss(r) => {
            known(r)?;
            let hit: Vec<&Member> = members.iter().filter(|m| m.region == *r).collect();
            (
                hit.iter().map(|m| ((*m).clone(), NodeFault::Fence)).collect(),
                hit.iter().map(|m| m.id).collect(),
            )
        }
        Scenario::KmsOutage(r) => {
            known(r)?;
            (
                members
                    .iter()
                    .map(|m| (m.clone(), NodeFault::KmsOutage(r.clone())))
                    .collect(),
                BTreeSet::new(),
            )
        }
        Scenario::Partition(a, b) => {
            for r in a.iter().chain(b) {
                known(r)?;
            }
            let left_out: Vec<&str> = regions
                .iter()
                .copied()
                .filter(|r| !a.contains(*r) && !b.contains(*r))
                .collect();
            if !left_out.is_empty() {
                return Err(format!(
                    "the partition leaves region(s) {} on neither side: name every region",
                    left_out.join(", ")
                ));
            }
            let side =
                |s: &BTreeSet<String>| -> Vec<&Member> { members.iter().filter(|m| s.contains(&m.region)).collect() };
            let (sa, sb) = (side(a), side(b));
            let ids = |s: &[&Member]| -> Vec<u64> { s.iter().map(|m| m.id).collect() };
            let mut faults: Vec<(Member, NodeFault)> = sa
                .iter()
                .map(|m| ((*m).clone(), NodeFault::CutFrom(ids(&sb))))
                .collect();
            faults.extend(sb.iter().map(|m| ((*m).clone(), NodeFault::CutFrom(ids(&sa)))));
            // The side without a majority of voters is the one cut off.
            let votes = |s: &[&Member]| s.iter().filter(|m| m.voter).count();
            let minority = if votes(&sa) >= votes(&sb) { &sb } else { &sa };
            (faults, minority.iter().map(|m| m.id).collect())
        }
    };
    let surviving: Vec<String> = voters
        .iter()
        .filter(|m| !cut_off.contains(&m.id))
        .map(|m| m.name.clone())
        .collect();
    let quorum_kept = surviving.len() >= quorum;
    let expected = expect(&scenario, &faults, &surviving, quorum_kept, members);
    Ok(Plan {
        scenario,
        faults,
        surviving_voters: surviving,
        voters: voters.len(),
        quorum_kept,
        expected,
    })
}

fn expect(
    scenario: &Scenario,
    faults: &[(Member, NodeFault)],
    surviving: &[String],
    quorum_kept: bool,
    members: &[Member],
) -> Vec<String> {
    let names = |f: &dyn Fn(&NodeFault) -> bool| -> String {
        faults
            .iter()
            .filter(|(_, x)| f(x))
            .map(|(m, _)| format!("{} ({})", m.name, m.region))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    let writes = if quorum_kept {
        format!(
            "writes pause until {} (a quorum) elect a leader among themselves, about one election timeout, then resume",
            surviving.join(", ")
        )
    } else {
        "NO QUORUM survives: writes and linearizable reads fail everywhere until the fault ends".to_string()
    };
    match scenario {
        Scenario::LeaderLoss | Scenario::RegionLoss(_) => {
            out.push(format!(
                "fenced: {} (no peer traffic; clients refused with drill_in_progress)",
                names(&|f| *f == NodeFault::Fence)
            ));
            out.push(writes);
            out.push("local reads in the other regions go on; their staleness bound stays small".into());
            out.push(
                "after the fault the fenced nodes catch up; every acknowledged write must be on every node".into(),
            );
        }
        Scenario::KmsOutage(r) => {
            out.push(format!(
                "every node's calls to the KMS of {r} fail for the fault's length"
            ));
            out.push(format!(
                "writes go on, their data keys left unwrapped for {r} (the rewrap job adds them after); reads in {r} use cached data keys, then fail with kms_unavailable unless kms.fallback = \"allow\""
            ));
            out.push("no node is fenced: Raft and the leader do not move".into());
        }
        Scenario::Partition(..) => {
            let cut: BTreeSet<&str> = members
                .iter()
                .filter(|m| m.voter && !surviving.contains(&m.name))
                .map(|m| m.region.as_str())
                .collect();
            out.push(format!(
                "cut apart: {} (no peer traffic between the sides; clients still served)",
                scenario.argument().replace('|', " | ")
            ));
            out.push(writes);
            out.push(format!(
                "on the minority side ({}): local reads go on with a growing staleness bound, writes and linearizable reads fail",
                cut.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        [(1, "us-east"), (2, "eu-west"), (3, "ap-south")]
            .into_iter()
            .map(|(id, r)| Member {
                id,
                name: format!("node-{id}"),
                region: r.into(),
                api_addr: format!("127.0.0.1:740{id}"),
                voter: true,
            })
            .collect()
    }

    #[test]
    fn scenarios_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(Scenario::parse("leader-loss", None), Ok(Scenario::LeaderLoss));
        assert_eq!(
            Scenario::parse("region-loss", Some("eu-west")),
            Ok(Scenario::RegionLoss("eu-west".into()))
        );
        let p = Scenario::parse("partition", Some("us-east|eu-west,ap-south")).unwrap();
        assert_eq!(p.argument(), "us-east|ap-south,eu-west");
        for (name, arg, want) in [
            ("region-loss", None, "needs a region"),
            ("leader-loss", Some("x"), "takes no argument"),
            ("partition", Some("us-east"), "two region sets"),
            ("partition", Some("us-east|us-east"), "both sides"),
            ("partition", Some("|eu-west"), "a region on each side"),
            ("meteor", None, "unknown scenario"),
        ] {
            let e = Scenario::parse(name, arg).unwrap_err();
            assert!(e.contains(want), "{name} {arg:?}: {e}");
        }
    }

    #[test]
    fn the_preflight_knows_which_faults_keep_a_quorum() {
        let m = members();
        let p = plan(Scenario::LeaderLoss, &m, Some(2)).unwrap();
        assert_eq!(p.faults, vec![(m[1].clone(), NodeFault::Fence)]);
        assert!(p.quorum_kept);
        assert_eq!(p.surviving_voters, ["node-1", "node-3"]);

        let p = plan(Scenario::RegionLoss("ap-south".into()), &m, Some(1)).unwrap();
        assert_eq!(p.fenced().len(), 1);
        assert!(p.quorum_kept);

        let p = plan(Scenario::KmsOutage("eu-west".into()), &m, Some(1)).unwrap();
        assert_eq!(p.faults.len(), 3, "every node loses that KMS");
        assert!(p.fenced().is_empty() && p.quorum_kept);

        let split = Scenario::parse("partition", Some("us-east|eu-west,ap-south")).unwrap();
        let p = plan(split, &m, Some(1)).unwrap();
        assert!(p.quorum_kept, "eu-west and ap-south hold 2 of 3 votes");
        assert_eq!(p.surviving_voters, ["node-2", "node-3"]);
        assert!(p.faults.contains(&(m[0].clone(), NodeFault::CutFrom(vec![2, 3]))));
        assert!(p.faults.contains(&(m[2].clone(), NodeFault::CutFrom(vec![1]))));
        assert_eq!(NodeFault::CutFrom(vec![2, 3]).to_string(), "cut from node(s) 2, 3");
        assert_eq!(
            NodeFault::CutFrom(vec![2, 3]).to_json(),
            serde_json::json!({"kind": "partition", "peers": [2, 3]})
        );
        assert_eq!(
            NodeFault::KmsOutage("eu-west".into()).to_json(),
            serde_json::json!({"kind": "kms_outage", "region": "eu-west"})
        );

        // Two voters in one region: losing it loses the quorum.
        let mut m2 = m.clone();
        m2[2].region = "eu-west".into();
        let p = plan(Scenario::RegionLoss("eu-west".into()), &m2, Some(1)).unwrap();
        assert!(!p.quorum_kept);
        assert!(p.expected.iter().any(|e| e.contains("NO QUORUM")), "{:?}", p.expected);
    }

    #[test]
    fn plans_refuse_what_the_cluster_does_not_have() {
        let m = members();
        let e = plan(Scenario::RegionLoss("mars".into()), &m, Some(1)).unwrap_err();
        assert!(e.contains("no member in region \"mars\""), "{e}");
        let e = plan(Scenario::LeaderLoss, &m, None).unwrap_err();
        assert!(e.contains("no leader"), "{e}");
        let split = Scenario::parse("partition", Some("us-east|eu-west")).unwrap();
        let e = plan(split, &m, Some(1)).unwrap_err();
        assert!(e.contains("ap-south on neither side"), "{e}");
    }
}
