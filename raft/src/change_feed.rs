//! [`ChangeFeed`]: the recent changes this replica applied (the application's events), kept in
//! memory for watchers (`Secrets.Watch`).
//!
//! Invariants:
//! - The feed holds every event with an index in `(floor, through]`, in log order: an event is
//!   published after its batch is committed, so whatever a watcher reads after an event is at
//!   least as new as the event.
//! - History older than `floor` is gone: before this process started, before an installed
//!   snapshot (whose changes were never applied here one by one), or pushed out by the bound.
//!   A reader asking for it gets [`Gone`], never a silent gap.
//! - At most [`FEED_EVENTS`] events are held (whole log entries are dropped, oldest first).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use coffer_proto as pb;

/// How many events the feed holds: about 15 MB of the largest events, minutes of a busy
/// cluster's changes, far more than a watcher needs to resume after a reconnect.
pub const FEED_EVENTS: usize = 65_536;

/// The history asked for is no longer held: the reader must re-read the state and watch anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    /// The oldest index after which this feed still holds every event.
    pub floor: u64,
}

/// What a reader got: events after its index, and how far they go.
#[derive(Debug, Default)]
pub struct Changes {
    pub events: Vec<pb::SecretEvent>,
    /// Every event with an index up to this one has been returned (or was not asked for).
    pub through: u64,
}

#[derive(Clone)]
pub struct ChangeFeed {
    inner: Arc<Mutex<Ring>>,
}

struct Ring {
    floor: u64,
    through: u64,
    events: VecDeque<pb::SecretEvent>,
    cap: usize,
}

impl ChangeFeed {
    /// An empty feed over a replica that applied through `applied`: nothing before is held.
    pub fn new(applied: u64) -> Self {
        Self::with_capacity(applied, FEED_EVENTS)
    }

    pub fn with_capacity(applied: u64, cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Ring {
                floor: applied,
                through: applied,
                events: VecDeque::new(),
                cap: cap.max(1),
            })),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Every update below leaves the ring consistent before it can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the events of a committed batch that applied through `through`.
    pub fn publish(&self, through: u64, events: Vec<pb::SecretEvent>) {
        let mut r = self.ring();
        r.events.extend(events);
        r.through = r.through.max(through);
        while r.events.len() > r.cap {
            // Drop the oldest entry whole: every event with its index goes, and floor says so.
            let Some(index) = r.events.front().map(|e| e.index) else {
                break;
            };
            while r.events.front().is_some_and(|e| e.index == index) {
                r.events.pop_front();
            }
            r.floor = index;
        }
    }

    /// The replica's state was replaced (a snapshot installed through `index`): the changes in
    /// between were never seen one by one.
    pub fn reset(&self, index: u64) {
        let mut r = self.ring();
        r.events.clear();
        r.floor = index;
        r.through = index;
    }

    /// Up to `limit` events with an index above `after` that `keep` accepts, in order. `through`
    /// says how far the returned events cover the feed (less than its end when `limit` cut it).
    pub fn after(
        &self,
        after: u64,
        limit: usize,
        mut keep: impl FnMut(&pb::SecretEvent) -> bool,
    ) -> Result<Changes, Gone> {
        let r = self.ring();
        if after < r.floor {
            return Err(Gone { floor: r.floor });
        }
        let start = r.events.partition_point(|e| e.index <= after);
        let mut out = Changes {
            events: Vec::new(),
            through: r.through.max(after),
        };
        for e in r.events.range(start..) {
            if out.events.len() >= limit {
                // Stop at an entry boundary so a resume after `through` misses nothing.
                if out.events.last().is_some_and(|last| last.index != e.index) {
                    out.through = out.events.last().map_or(after, |l| l.index);
                    return Ok(out);
                }
            }
            if keep(e) {
                out.events.push(e.clone());
            }
        }
        Ok(out)
    }

    /// The oldest index after which every event is held, and the newest index published.
    pub fn bounds(&self) -> (u64, u64) {
        let r = self.ring();
        (r.floor, r.through)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, name: &str) -> pb::SecretEvent {
        pb::SecretEvent {
            index,
            name: name.into(),
            ..Default::default()
        }
    }

    fn indices(c: &Changes) -> Vec<u64> {
        c.events.iter().map(|e| e.index).collect()
    }

    #[test]
    fn a_reader_gets_every_event_after_its_index_in_order_and_resumes_without_a_gap() {
        let feed = ChangeFeed::new(10);
        feed.publish(12, vec![ev(11, "a"), ev(12, "b")]);
        feed.publish(15, vec![ev(14, "a")]);
        let all = feed.after(10, 100, |_| true).unwrap();
        assert_eq!((indices(&all), all.through), (vec![11, 12, 14], 15));
        let only_a = feed.after(10, 100, |e| e.name == "a").unwrap();
        assert_eq!((indices(&only_a), only_a.through), (vec![11, 14], 15));
        // Cut by the limit at an entry boundary: resuming after `through` sees the rest once.
        let first = feed.after(10, 1, |_| true).unwrap();
        assert_eq!((indices(&first), first.through), (vec![11], 11));
        let rest = feed.after(first.through, 100, |_| true).unwrap();
        assert_eq!(indices(&rest), vec![12, 14]);
        // Nothing new yet: through never goes back below what the reader saw.
        assert_eq!(feed.after(15, 100, |_| true).unwrap().through, 15);
    }

    #[test]
    fn history_before_the_start_an_install_or_the_bound_is_gone_never_a_gap() {
        let feed = ChangeFeed::with_capacity(10, 2);
        assert_eq!(feed.after(9, 10, |_| true).unwrap_err(), Gone { floor: 10 });
        feed.publish(11, vec![ev(11, "a")]);
        feed.publish(12, vec![ev(12, "b")]);
        feed.publish(13, vec![ev(13, "c")]);
        assert_eq!(feed.after(10, 10, |_| true).unwrap_err(), Gone { floor: 11 });
        assert_eq!(indices(&feed.after(11, 10, |_| true).unwrap()), vec![12, 13]);
        feed.reset(40);
        assert_eq!(feed.after(13, 10, |_| true).unwrap_err(), Gone { floor: 40 });
        assert_eq!(feed.bounds(), (40, 40));
    }

    #[test]
    fn one_entrys_events_leave_the_ring_together() {
        let feed = ChangeFeed::with_capacity(0, 2);
        feed.publish(1, vec![ev(1, "a"), ev(1, "b")]);
        feed.publish(2, vec![ev(2, "c")]);
        // Both events of entry 1 went, so a reader after 0 is told, and one after 1 is served.
        assert_eq!(feed.after(0, 10, |_| true).unwrap_err(), Gone { floor: 1 });
        assert_eq!(indices(&feed.after(1, 10, |_| true).unwrap()), vec![2]);
    }
}
