//! `Secrets.Watch`: the changes to one secret or a folder, as this replica applies them
//! (docs/architecture.md: Delivery).
//!
//! Invariants a stream keeps:
//! - Events leave in log order, each once, and `through_index` never goes back: a client that
//!   resumes after the last `through_index` it saw (here or on any other node, which applies
//!   the same log) misses nothing and sees nothing twice.
//! - History the node no longer holds ends the stream with `resync_needed`, never a gap.
//! - Every event's name passes the caller's own `secrets:read` decision at the time it is sent,
//!   under its credential checked again: a name it may not read never reaches it, and a revoked
//!   or expired token ends the stream with `unauthenticated`.
//! - A stream's memory is bounded (a batch of events and a small channel); a reader too slow for
//!   the feed's bound is told to resync. At most [`MAX_WATCHES`] streams per node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coffer_model::names;
use coffer_raft::change_feed::Gone;
use tokio::sync::mpsc;
use tokio::sync::OwnedSemaphorePermit;
use tonic::metadata::MetadataMap;

use crate::authz::Action;
use crate::authz::RequestInfo;
use crate::error::ApiError;
use crate::pb;
use crate::service::Service;

/// Watch streams one node serves at once.
pub const MAX_WATCHES: usize = 4096;
/// A stream without changes gets a progress response this often (a client that hears nothing
/// for a few of these treats the connection as dead and resumes elsewhere).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Events per response at most.
const BATCH: usize = 256;

/// What a watch is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Name(String),
    /// A folder, `acme/` or `acme/app/`: the names under it.
    Folder(String),
}

impl Scope {
    /// The scope of a request: exactly one of a valid name or a valid prefix.
    pub fn of(req: &pb::WatchRequest) -> Result<Self, ApiError> {
        match (req.name.is_empty(), req.prefix.is_empty()) {
            (false, true) => {
                names::validate_name(&req.name).map_err(|e| ApiError::invalid(format!("invalid secret name: {e}")))?;
                Ok(Scope::Name(req.name.clone()))
            }
            (true, false) => {
                names::validate_prefix(&req.prefix).map_err(|e| ApiError::invalid(format!("invalid prefix: {e}")))?;
                // Whole folders only, as a listing: `acme/ap` watches `acme/ap/…`.
                Ok(Scope::Folder(format!("{}/", req.prefix.trim_end_matches('/'))))
            }
            (true, true) => Err(ApiError::invalid("watch a secret name or a prefix")),
            (false, false) => Err(ApiError::invalid("watch a secret name or a prefix, not both")),
        }
    }

    /// The resource the watch itself is authorized (and audited) on.
    pub fn resource(&self) -> &str {
        match self {
            Scope::Name(n) | Scope::Folder(n) => n,
        }
    }

    pub fn covers(&self, name: &str) -> bool {
        match self {
            Scope::Name(n) => n == name,
            Scope::Folder(f) => name.starts_with(f.as_str()),
        }
    }
}

/// An admitted watch: who asked (to decide again per name), what, and from where.
pub struct Watch {
    pub meta: MetadataMap,
    pub info: RequestInfo,
    pub scope: Scope,
    pub after_index: u64,
}

impl Service {
    /// A slot for one more watch stream, or `too_many_watches`.
    pub fn watch_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.watches.clone().try_acquire_owned().map_err(|_| {
            ApiError::TooManyWatches(format!(
                "node {} serves {MAX_WATCHES} watch streams already; watch through another node or retry later",
                self.me.name
            ))
        })
    }

    /// Streams `w`'s changes into `out` until the client goes, the node stops, or the stream
    /// must end with an error (sent as the last item).
    pub async fn stream_changes(
        self: Arc<Self>,
        w: Watch,
        out: mpsc::Sender<Result<pb::WatchResponse, ApiError>>,
        _slot: OwnedSemaphorePermit,
    ) {
        metrics::gauge!("coffer_watch_streams").increment(1.0);
        if let Err(e) = self.feed_changes(&w, &out).await {
            metrics::counter!("coffer_watch_ended_total", "code" => e.code()).increment(1);
            let _ = out.send(Err(e)).await;
        }
        metrics::gauge!("coffer_watch_streams").decrement(1.0);
    }

    async fn feed_changes(
        &self,
        w: &Watch,
        out: &mpsc::Sender<Result<pb::WatchResponse, ApiError>>,
    ) -> Result<(), ApiError> {
        let reader = self.raft.reader();
        let feed = reader.changes();
        let mut applied = reader.watch_applied();
        let mut stopping = self.stopping.clone();
        let mut cursor = match w.after_index {
            0 => feed.bounds().1,
            n => n,
        };
        let gone = |floor: u64, cursor: u64| {
            ApiError::ResyncNeeded(format!(
                "node {} holds the changes after index {floor} only (asked for those after {cursor}); read the current \
                 state, then watch from now",
                self.me.name
            ))
        };
        let (floor, _) = feed.bounds();
        if cursor < floor {
            return Err(gone(floor, cursor));
        }
        let served_by = || Some(self.served_by(self.raft.role_and_membership().0.as_str()));
        // Where the stream starts: a client that re-reads its state now and resumes after this
        // index misses nothing.
        let first = pb::WatchResponse {
            events: vec![],
            through_index: cursor,
            served_by: served_by(),
        };
        if out.send(Ok(first)).await.is_err() {
            return Ok(());
        }
        let mut epoch = reader.access_epoch();
        let mut quiet_since = tokio::time::Instant::now();
        let mut skip_one = w.after_index > 0 && coffer_kv::bugs::active(coffer_kv::bugs::Bug::WatchResumeSkips);
        loop {
            let changes = feed
                .after(cursor, BATCH, |e| w.scope.covers(&e.name))
                .map_err(|Gone { floor }| gone(floor, cursor))?;
            let mut events = changes.events;
            if skip_one && !events.is_empty() {
                events.remove(0);
                skip_one = false;
            }
            let access_moved = reader.access_epoch() != epoch;
            if !events.is_empty() || access_moved {
                epoch = reader.access_epoch();
                let asked: BTreeSet<String> = events.iter().map(|e| e.name.clone()).collect();
                let readable: BTreeSet<String> = self
                    .seam
                    .still_visible(&w.meta, &w.info, &[Action::SecretsRead], asked.into_iter().collect())?
                    .into_iter()
                    .collect();
                events.retain(|e| readable.contains(&e.name));
            }
            cursor = changes.through;
            if !events.is_empty() || quiet_since.elapsed() >= HEARTBEAT {
                metrics::counter!("coffer_watch_events_total").increment(events.len() as u64);
                let r = pb::WatchResponse {
                    events,
                    through_index: cursor,
                    served_by: served_by(),
                };
                if out.send(Ok(r)).await.is_err() {
                    return Ok(());
                }
                quiet_since = tokio::time::Instant::now();
            }
            if feed.bounds().1 > cursor {
                continue; // a full batch: more is waiting
            }
            let wake = quiet_since + HEARTBEAT;
            tokio::select! {
                r = applied.changed() => if r.is_err() { return Ok(()) },
                _ = tokio::time::sleep_until(wake) => {}
                _ = stopping.wait_for(|s| *s) => return Ok(()),
                _ = out.closed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, prefix: &str) -> pb::WatchRequest {
        pb::WatchRequest {
            name: name.into(),
            prefix: prefix.into(),
            after_index: 0,
        }
    }

    #[test]
    fn a_watch_is_on_a_valid_name_or_a_whole_folder_never_both_or_neither() {
        assert_eq!(Scope::of(&req("acme/db", "")).unwrap(), Scope::Name("acme/db".into()));
        let folder = Scope::of(&req("", "acme/ap")).unwrap();
        assert_eq!(folder, Scope::Folder("acme/ap/".into()));
        assert!(folder.covers("acme/ap/x") && !folder.covers("acme/app/x"));
        assert!(Scope::of(&req("", "")).is_err());
        assert!(Scope::of(&req("acme/db", "acme/")).is_err());
        let bad = Scope::of(&req("acme/../x", "")).unwrap_err();
        assert_eq!(bad.code(), "invalid_argument");
        assert!(Scope::of(&req("", "acme//")).is_err());
    }
}
