//! A failover drill's fence on this node (`coffer drill`).
//!
//! While a fence stands the node sends no peer traffic ([`crate::network::PeerChannels`]
//! refuses every channel) and accepts none (the peer port's guard refuses every call), so the
//! rest of the cluster sees it as gone; the API refuses clients too. A fence always has a
//! deadline and lifts itself once it passes: a drill runner that dies mid-drill cannot leave a
//! node cut off. Nothing is persisted: a restart also lifts it.
//!
//! Uses `tokio::time`, so simulations control the clock.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::NodeId;

/// The fence standing on this node, if any.
#[derive(Debug, Default)]
pub struct Fence {
    raised: Mutex<Option<Raised>>,
    /// A partition: no traffic with these peers (calls to them fail; they are cut from us by
    /// their own fence).
    cut: Mutex<Option<(Raised, BTreeSet<NodeId>)>>,
}

/// One standing fence: which drill raised it and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub drill_id: String,
    pub until: Instant,
}

impl Raised {
    /// Time left before it lifts itself.
    pub fn remaining(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }
}

impl Fence {
    /// Raises (or extends, or hands to another drill) the fence for `lasting` from now.
    pub fn raise(&self, drill_id: &str, lasting: Duration) -> Raised {
        let raised = Raised {
            drill_id: drill_id.to_string(),
            until: Instant::now() + lasting,
        };
        *self.lock() = Some(raised.clone());
        raised
    }

    /// Cuts this node from `peers` for `lasting` from now (replacing an earlier cut).
    pub fn cut(&self, drill_id: &str, peers: BTreeSet<NodeId>, lasting: Duration) -> Raised {
        let raised = Raised {
            drill_id: drill_id.to_string(),
            until: Instant::now() + lasting,
        };
        *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = Some((raised.clone(), peers));
        raised
    }

    /// Lifts the fence and the cut if `drill_id` raised them (any with `None`); how many stood.
    pub fn lift(&self, drill_id: Option<&str>) -> u32 {
        let ours = |f: &Raised| f.until > Instant::now() && drill_id.is_none_or(|id| id == f.drill_id);
        let mut n = 0;
        let mut r = self.lock();
        if r.as_ref().is_some_and(ours) {
            *r = None;
            n += 1;
        }
        let mut c = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        if c.as_ref().is_some_and(|(f, _)| ours(f)) {
            *c = None;
            n += 1;
        }
        n
    }

    /// The partition standing now: who raised it, until when, and the peers cut off.
    pub fn cut_active(&self) -> Option<(Raised, BTreeSet<NodeId>)> {
        let mut c = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        if c.as_ref().is_some_and(|(f, _)| f.until <= Instant::now()) {
            *c = None;
        }
        c.clone()
    }

    /// Why a call to `peer` fails now: the fence, or a partition that cuts it off.
    pub fn refusal_to(&self, peer: NodeId) -> Option<String> {
        self.refusal().or_else(|| {
            self.cut_active()
                .filter(|(_, peers)| peers.contains(&peer))
                .map(|(f, _)| {
                    format!(
                        "drill {} in progress: node {peer} is cut off from this node for another {} ms",
                        f.drill_id,
                        f.remaining().as_millis()
                    )
                })
        })
    }

    /// The fence standing now; one past its deadline is gone.
    pub fn active(&self) -> Option<Raised> {
        let mut r = self.lock();
        if r.as_ref().is_some_and(|f| f.until <= Instant::now()) {
            *r = None;
        }
        r.clone()
    }

    /// Why a request is refused while a fence stands (`None`: no fence).
    pub fn refusal(&self) -> Option<String> {
        self.active().map(|f| {
            format!(
                "drill {} in progress: this node is fenced for another {} ms (it lifts itself then)",
                f.drill_id,
                f.remaining().as_millis()
            )
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Raised>> {
        self.raised.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fence_lifts_itself_at_its_deadline() {
        let f = Fence::default();
        assert!(f.refusal().is_none());
        f.raise("d1", Duration::from_secs(5));
        let why = f.refusal().expect("fenced");
        assert!(why.contains("drill d1 in progress"), "{why}");
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(f.active().is_some(), "still fenced 1 ms before the deadline");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(f.active(), None, "lifted at the deadline");
        assert_eq!(f.lift(None), 0, "nothing left to lift");
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_drill_that_raised_it_lifts_it() {
        let f = Fence::default();
        f.raise("d1", Duration::from_secs(5));
        assert_eq!(f.lift(Some("d2")), 0);
        assert!(f.active().is_some());
        assert_eq!(f.lift(Some("d1")), 1);
        assert!(f.active().is_none());
        f.raise("d3", Duration::from_secs(5));
        assert_eq!(f.lift(None), 1, "an operator lifts any fence");
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_cuts_only_the_peers_it_names_until_its_deadline() {
        let f = Fence::default();
        f.cut("p", BTreeSet::from([2, 3]), Duration::from_secs(4));
        assert!(f.refusal().is_none(), "clients and other peers are not refused");
        assert!(f.refusal_to(1).is_none());
        assert!(f.refusal_to(2).unwrap().contains("node 2 is cut off"));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(f.refusal_to(2).is_none(), "healed at its deadline");
        f.cut("p", BTreeSet::from([2]), Duration::from_secs(4));
        f.raise("p", Duration::from_secs(4));
        assert_eq!(f.lift(Some("p")), 2, "a lift ends the drill's fence and cut");
        assert!(f.refusal_to(2).is_none());
    }
}
