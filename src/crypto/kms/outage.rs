//! KMS outages a failover drill injects (`coffer drill run kms-outage REGION`).
//!
//! While an outage of a region stands, every call this node makes to that region's KMS fails
//! as unavailable before reaching the provider, exactly as a KMS that does not answer: the
//! region's health, metrics, fallback and the rewrap job all see a real outage. Each outage has
//! a deadline and ends by itself once it passes; nothing is persisted.
//!
//! Uses `tokio::time`, so simulations control the clock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Outages standing on this node, by region.
#[derive(Debug, Default)]
pub struct Outages {
    by_region: Mutex<BTreeMap<String, Outage>>,
}

/// One standing outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub drill_id: String,
    pub until: Instant,
}

impl Outage {
    pub fn remaining(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }
}

impl Outages {
    /// Starts (or extends) an outage of `region` for `lasting` from now.
    pub fn raise(&self, region: &str, drill_id: &str, lasting: Duration) -> Outage {
        let o = Outage {
            drill_id: drill_id.to_string(),
            until: Instant::now() + lasting,
        };
        self.lock().insert(region.to_string(), o.clone());
        o
    }

    /// Ends the outages `drill_id` started (every outage with `None`); how many stood.
    pub fn lift(&self, drill_id: Option<&str>) -> usize {
        let mut m = self.lock();
        let now = Instant::now();
        let before = m.len();
        m.retain(|_, o| o.until <= now || drill_id.is_some_and(|id| id != o.drill_id));
        let lifted = before - m.len();
        m.retain(|_, o| o.until > now);
        lifted
    }

    /// The outages standing now, by region; past ones are gone.
    pub fn active(&self) -> BTreeMap<String, Outage> {
        let mut m = self.lock();
        let now = Instant::now();
        m.retain(|_, o| o.until > now);
        m.clone()
    }

    /// Why a call to `region`'s KMS fails now (`None`: no outage there).
    pub fn refusal(&self, region: &str) -> Option<String> {
        self.active().get(region).map(|o| {
            format!(
                "drill {} simulates an outage of this KMS for another {} ms",
                o.drill_id,
                o.remaining().as_millis()
            )
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Outage>> {
        self.by_region.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outage_covers_its_region_until_its_deadline() {
        let o = Outages::default();
        o.raise("eu-west", "d1", Duration::from_secs(3));
        assert!(o.refusal("eu-west").unwrap().contains("drill d1"));
        assert_eq!(o.refusal("us-east"), None, "other regions answer");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(o.refusal("eu-west"), None, "ended at its deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn lifting_ends_only_the_drills_own_outages() {
        let o = Outages::default();
        o.raise("eu-west", "d1", Duration::from_secs(3));
        o.raise("us-east", "d2", Duration::from_secs(3));
        assert_eq!(o.lift(Some("d1")), 1);
        assert_eq!(o.active().keys().collect::<Vec<_>>(), ["us-east"]);
        assert_eq!(o.lift(None), 1);
        assert!(o.active().is_empty());
    }
}
