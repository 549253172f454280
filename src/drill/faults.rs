//! The faults a failover drill raises on this node, through `Cluster.DrillFault`.
//!
//! Invariants:
//! - every fault has a deadline (at most [`MAX_FAULT_MS`]) and ends by itself once it passes,
//!   whether or not the drill runner is still there to lift it;
//! - faults live in memory only: a restart ends them all;
//! - a fence stops all peer traffic of this node both ways and makes the API refuse clients
//!   (see [`super::gate`]); a KMS outage fails this node's calls to that region's KMS.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use coffer_raft::fence::Fence;

use crate::crypto::kms::outage::Outages;
use crate::error::ApiError;
use crate::pb;
use crate::pb::DrillFaultAction as Action;
use crate::pb::DrillFaultKind as Kind;

/// The range a fault's duration may take.
pub const FAULT_MS: std::ops::RangeInclusive<u64> = 1_000..=MAX_FAULT_MS;
/// The longest fault: one hour.
pub const MAX_FAULT_MS: u64 = 3_600_000;
/// The longest drill id.
pub const MAX_DRILL_ID_CHARS: usize = 64;
/// The most peers one partition names.
pub const MAX_PARTITION_PEERS: usize = 100;
/// The environment variable that allows test-only faults on a node.
pub const TEST_HOOKS_ENV: &str = "COFFER_DRILL_TEST_HOOKS";

/// Every fault this node can carry, and the switches that enforce them.
pub struct NodeFaults {
    fence: Arc<Fence>,
    kms: Arc<Outages>,
    /// Whether test-only faults are allowed ([`TEST_HOOKS_ENV`]).
    test_hooks: bool,
    lose_next_write: AtomicBool,
}

/// Whether `id` is a valid drill id: `[a-z0-9-]`, 1 to [`MAX_DRILL_ID_CHARS`] characters.
pub fn check_drill_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_DRILL_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "drill_id must be 1 to {MAX_DRILL_ID_CHARS} characters of a-z, 0-9 and '-'"
        )))
    }
}

impl NodeFaults {
    pub fn new(fence: Arc<Fence>, kms: Arc<Outages>, test_hooks: bool) -> Self {
        if test_hooks {
            tracing::warn!("{TEST_HOOKS_ENV} is set: drills may make this node lose writes (tests only)");
        }
        Self {
            fence,
            kms,
            test_hooks,
            lose_next_write: AtomicBool::new(false),
        }
    }

    /// Why a client request is refused now: a fence stands (`None`: it is not).
    pub fn fenced(&self) -> Option<String> {
        self.fence.refusal()
    }

    /// Consumes the test-only "lose the next write" fault: true once after it was raised.
    pub fn take_lost_write(&self) -> bool {
        self.test_hooks && self.lose_next_write.swap(false, Ordering::SeqCst)
    }

    /// Carries out `req` (`kms_regions`: the regions this node has a KMS for) and returns the
    /// faults standing afterwards, and how many a lift ended.
    pub fn apply(
        &self,
        req: &pb::DrillFaultRequest,
        kms_regions: &[String],
    ) -> Result<(Vec<pb::StandingDrillFault>, u32), ApiError> {
        check_drill_id(&req.drill_id)?;
        let action = Action::try_from(req.action)
            .map_err(|_| ApiError::invalid(format!("unknown drill fault action {}", req.action)))?;
        let lifted = match action {
            Action::Report => 0,
            Action::Lift => self.lift(Some(&req.drill_id)),
            Action::LiftAll => self.lift(None),
            Action::Raise => {
                self.raise(req, kms_regions)?;
                0
            }
        };
        Ok((self.standing(), lifted))
    }

    fn raise(&self, req: &pb::DrillFaultRequest, kms_regions: &[String]) -> Result<(), ApiError> {
        if !FAULT_MS.contains(&req.duration_ms) {
            return Err(ApiError::invalid(format!(
                "duration_ms must be within {}..={} (every fault ends by itself)",
                FAULT_MS.start(),
                FAULT_MS.end()
            )));
        }
        let lasting = Duration::from_millis(req.duration_ms);
        let kind = Kind::try_from(req.kind).unwrap_or(Kind::Unspecified);
        match kind {
            Kind::Unspecified => {
                return Err(ApiError::invalid(
                    "kind must be fence, kms_outage, partition or lose_next_write",
                ))
            }
            Kind::Fence => {
                self.fence.raise(&req.drill_id, lasting);
                tracing::warn!(drill = %req.drill_id, ms = req.duration_ms, "drill: this node is fenced");
            }
            Kind::KmsOutage => {
                if !kms_regions.contains(&req.region) {
                    return Err(ApiError::invalid(format!(
                        "region {:?} has no KMS on this node (regions: {})",
                        req.region,
                        kms_regions.join(", ")
                    )));
                }
                self.kms.raise(&req.region, &req.drill_id, lasting);
                tracing::warn!(drill = %req.drill_id, region = %req.region, ms = req.duration_ms, "drill: KMS outage");
            }
            Kind::Partition => {
                if req.peers.is_empty() || req.peers.len() > MAX_PARTITION_PEERS {
                    return Err(ApiError::invalid(format!(
                        "a partition names 1 to {MAX_PARTITION_PEERS} peers (the node ids on the other side)"
                    )));
                }
                let peers = req.peers.iter().copied().collect();
                self.fence.cut(&req.drill_id, peers, lasting);
                tracing::warn!(drill = %req.drill_id, peers = ?req.peers, ms = req.duration_ms, "drill: cut off from peers");
            }
            Kind::LoseNextWrite => {
                if !self.test_hooks {
                    return Err(ApiError::FailedPrecondition(format!(
                        "lose_next_write is a test hook: this node runs without {TEST_HOOKS_ENV}=1"
                    )));
                }
                self.lose_next_write.store(true, Ordering::SeqCst);
                tracing::warn!(drill = %req.drill_id, "drill test hook: the next write will be lost");
            }
        }
        Ok(())
    }

    /// Ends the faults `drill_id` raised (all with `None`); how many stood.
    pub fn lift(&self, drill_id: Option<&str>) -> u32 {
        let fence = self.fence.lift(drill_id);
        let kms = self.kms.lift(drill_id) as u32;
        if fence + kms > 0 {
            tracing::info!(drill = drill_id.unwrap_or("any"), fence, kms, "drill faults lifted");
        }
        fence + kms
    }

    /// The faults standing now.
    pub fn standing(&self) -> Vec<pb::StandingDrillFault> {
        let fence = self.fence.active().map(|f| pb::StandingDrillFault {
            drill_id: f.drill_id.clone(),
            kind: Kind::Fence as i32,
            region: String::new(),
            remaining_ms: f.remaining().as_millis() as u64,
            peers: vec![],
        });
        let cut = self.fence.cut_active().map(|(f, peers)| pb::StandingDrillFault {
            drill_id: f.drill_id.clone(),
            kind: Kind::Partition as i32,
            region: String::new(),
            remaining_ms: f.remaining().as_millis() as u64,
            peers: peers.into_iter().collect(),
        });
        let kms = self.kms.active().into_iter().map(|(region, o)| pb::StandingDrillFault {
            drill_id: o.drill_id.clone(),
            kind: Kind::KmsOutage as i32,
            region,
            remaining_ms: o.remaining().as_millis() as u64,
            peers: vec![],
        });
        fence.into_iter().chain(cut).chain(kms).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(test_hooks: bool) -> NodeFaults {
        NodeFaults::new(Arc::default(), Arc::default(), test_hooks)
    }

    fn raise(kind: Kind, region: &str, ms: u64) -> pb::DrillFaultRequest {
        pb::DrillFaultRequest {
            drill_id: "d-1".into(),
            kind: kind as i32,
            region: region.into(),
            duration_ms: ms,
            action: Action::Raise as i32,
            peers: vec![],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn faults_stand_until_their_deadline_or_a_lift() {
        let f = faults(false);
        let regions = ["us".to_string(), "eu".to_string()];
        f.apply(&raise(Kind::Fence, "", 2_000), &regions).unwrap();
        let (standing, _) = f.apply(&raise(Kind::KmsOutage, "eu", 5_000), &regions).unwrap();
        assert_eq!(standing.len(), 2);
        assert!(f.fenced().unwrap().contains("drill d-1 in progress"));
        tokio::time::advance(Duration::from_millis(2_000)).await;
        assert_eq!(f.fenced(), None, "the fence ended by itself");
        let mut lift = raise(Kind::Unspecified, "", 0);
        lift.action = Action::Lift as i32;
        let (standing, lifted) = f.apply(&lift, &regions).unwrap();
        assert_eq!((standing.len(), lifted), (0, 1), "the lift ended the outage");
        let mut cut = raise(Kind::Partition, "", 5_000);
        cut.peers = vec![2, 3];
        let (standing, _) = f.apply(&cut, &regions).unwrap();
        assert_eq!(standing[0].peers, [2, 3]);
        let mut all = raise(Kind::Unspecified, "", 0);
        all.drill_id = "someone-else".into();
        all.action = Action::LiftAll as i32;
        assert_eq!(
            f.apply(&all, &regions).unwrap().1,
            1,
            "lift-all ends any drill's faults"
        );
    }

    #[test]
    fn bad_orders_are_refused_and_change_nothing() {
        let f = faults(false);
        let regions = ["us".to_string()];
        let cases = [
            (raise(Kind::Fence, "", 999), "duration_ms"),
            (raise(Kind::Fence, "", MAX_FAULT_MS + 1), "duration_ms"),
            (raise(Kind::Unspecified, "", 5_000), "kind"),
            (raise(Kind::KmsOutage, "mars", 5_000), "no KMS"),
            (raise(Kind::LoseNextWrite, "", 5_000), "test hook"),
            (raise(Kind::Partition, "", 5_000), "1 to 100 peers"),
            (
                pb::DrillFaultRequest {
                    drill_id: "Bad Id".into(),
                    ..raise(Kind::Fence, "", 5_000)
                },
                "drill_id",
            ),
            (
                pb::DrillFaultRequest {
                    action: 9,
                    ..raise(Kind::Fence, "", 5_000)
                },
                "action",
            ),
        ];
        for (req, want) in cases {
            let e = f.apply(&req, &regions).unwrap_err().to_string();
            assert!(e.contains(want), "{req:?}: {e}");
        }
        assert!(f.standing().is_empty());
        assert!(!f.take_lost_write());
    }

    #[test]
    fn the_lost_write_hook_fires_once_and_only_with_test_hooks() {
        let f = faults(true);
        f.apply(&raise(Kind::LoseNextWrite, "", 5_000), &[]).unwrap();
        assert!(f.take_lost_write());
        assert!(!f.take_lost_write(), "only the next write");
    }
}
