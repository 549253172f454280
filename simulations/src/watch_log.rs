//! What the watchers (`Secrets.Watch`, [`crate::watcher`]) saw.
//!
//! Each watcher follows the folder `acme/` from a random node and moves to another one, resuming
//! after the last `through_index` it saw, whenever its stream ends, goes quiet past
//! `QUIET_LIMIT` (a partition or a crash: the node sends progress every second), or at random
//! (a client's own failover). A stream that answers `resync_needed` (the node no longer holds
//! that history) starts a new [`Segment`] from the node's present. Within a segment the
//! watcher must have seen every change once, in log order, across every hop:
//! [`crate::invariants::watch_gapless`] checks it against the writes acknowledged in the
//! history.

/// One event as a watcher received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub index: u64,
    pub name: String,
    pub kind: i32,
    pub version: u64,
}

/// One response of a stream.
#[derive(Debug, Clone)]
pub struct Response {
    pub node: String,
    pub through_index: u64,
    pub events: Vec<Seen>,
}

/// A stretch of one watcher's view that must be gapless: from the first stream's start
/// (`start`, the index it said it starts after) through every resumed stream after it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub watcher: String,
    pub start: u64,
    pub responses: Vec<Response>,
    /// How each stream of the segment ended (for reports).
    pub hops: Vec<String>,
}

impl Segment {
    /// The last index this segment is complete through.
    pub fn through(&self) -> u64 {
        self.responses.last().map(|r| r.through_index).unwrap_or(self.start)
    }
}

#[derive(Debug, Clone, Default)]
pub struct WatchLog {
    pub segments: Vec<Segment>,
}
