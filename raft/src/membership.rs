//! Failure tolerance of a voter set, and the safety check on membership changes.
//!
//! A change is refused (unless forced) when it leaves the cluster unable to survive the loss of
//! any single region, or with fewer voters than the configured minimum, and it is not an
//! improvement on where the cluster already is.

use std::collections::BTreeMap;

use crate::error::ToleranceError;
use crate::pb;

/// Tolerance of `voters` (and the learners beside them).
pub fn tolerance(voters: &[pb::NodeInfo], learners: &[pb::NodeInfo]) -> pb::Tolerance {
    let mut per_region: BTreeMap<String, u32> = BTreeMap::new();
    for v in voters {
        *per_region.entry(v.region.clone()).or_default() += 1;
    }
    let mut learners_per_region: BTreeMap<String, u32> = BTreeMap::new();
    for l in learners {
        *learners_per_region.entry(l.region.clone()).or_default() += 1;
    }
    let n = voters.len() as u32;
    let quorum = n / 2 + 1;
    let spare = n.saturating_sub(quorum);
    // The worst case loses the regions with the most voters first.
    let mut sizes: Vec<u32> = per_region.values().copied().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut lost = 0;
    let mut regions = 0;
    for s in sizes {
        if lost + s > spare {
            break;
        }
        lost += s;
        regions += 1;
    }
    pb::Tolerance {
        voters: n,
        quorum: if n == 0 { 0 } else { quorum },
        nodes: if n == 0 { 0 } else { spare },
        regions: if n == 0 { 0 } else { regions },
        voters_per_region: per_region,
        learners_per_region,
    }
}

/// Checks a change from `before` to `after`. `Err` says why it is refused.
pub fn check_change(before: &pb::Tolerance, after: &pb::Tolerance, min_voters: u32) -> Result<(), ToleranceError> {
    if after.voters == 0 {
        return Err(ToleranceError("the change would leave no voters".into()));
    }
    if after.regions == 0 && before.regions > 0 {
        return Err(ToleranceError(
            "after it the cluster cannot survive the loss of a region".into(),
        ));
    }
    if after.voters < min_voters && after.voters < before.voters {
        return Err(ToleranceError(format!(
            "after it the cluster has {} voters, fewer than the minimum of {min_voters}",
            after.voters
        )));
    }
    Ok(())
}

/// `3 voters (a=1 b=1 c=1), quorum 2: survives the loss of 1 node and 1 region`.
pub fn line(t: &pb::Tolerance) -> String {
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    format!(
        "{} voters ({}), quorum {}: survives the loss of {} node{} and {} region{}",
        t.voters,
        describe(t),
        t.quorum,
        t.nodes,
        plural(t.nodes),
        t.regions,
        plural(t.regions),
    )
}

/// `us-east=1 eu-west=2`.
pub fn describe(t: &pb::Tolerance) -> String {
    t.voters_per_region
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(regions: &[&str]) -> Vec<pb::NodeInfo> {
        regions
            .iter()
            .enumerate()
            .map(|(i, r)| pb::NodeInfo {
                id: i as u64 + 1,
                region: r.to_string(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn tolerances() {
        let t = tolerance(&nodes(&["a", "b", "c"]), &[]);
        assert_eq!((t.voters, t.quorum, t.nodes, t.regions), (3, 2, 1, 1));
        let t = tolerance(&nodes(&["a", "a", "b"]), &[]);
        assert_eq!((t.nodes, t.regions), (1, 0), "losing region a loses the quorum");
        let t = tolerance(&nodes(&["a", "a", "b", "b", "c"]), &[]);
        assert_eq!((t.quorum, t.nodes, t.regions), (3, 2, 1));
        let t = tolerance(&nodes(&["a", "b", "c", "d", "e"]), &nodes(&["f"]));
        assert_eq!((t.nodes, t.regions), (2, 2));
        assert_eq!(t.learners_per_region.get("f"), Some(&1));
        let t = tolerance(&nodes(&["a"]), &[]);
        assert_eq!((t.quorum, t.nodes, t.regions), (1, 0, 0));
    }

    #[test]
    fn changes_that_lose_region_tolerance_or_voters_are_refused() {
        let three = tolerance(&nodes(&["a", "b", "c"]), &[]);
        let two = tolerance(&nodes(&["a", "b"]), &[]);
        let four = tolerance(&nodes(&["a", "b", "c", "d"]), &[]);
        let lopsided = tolerance(&nodes(&["a", "a", "b"]), &[]);
        assert!(check_change(&three, &two, 3).is_err(), "demoting to two voters");
        assert!(check_change(&three, &lopsided, 3).is_err(), "two voters in one region");
        assert!(check_change(&three, &four, 3).is_ok());
        assert!(check_change(&four, &three, 3).is_ok());
        // A cluster that already cannot survive a region loss may still change, if not worse.
        let single = tolerance(&nodes(&["a"]), &[]);
        let single_plus = tolerance(&nodes(&["a", "a"]), &[]);
        assert!(check_change(&single, &single_plus, 1).is_ok());
        assert!(check_change(&three, &tolerance(&[], &[]), 0).is_err());
        // Below the minimum is refused only when it goes down.
        assert!(check_change(&three, &four, 5).is_ok());
        assert!(check_change(&four, &three, 5).is_err());
    }
}
