//! Keeping a cached name fresh: one watch stream per cached name, resumed after the last
//! `through_index` on the next node when its node fails or goes quiet.
//!
//! What a change does to the cache ([`apply`]): a version it revokes (disabled, destroyed,
//! pruned) is dropped at once; an alias that moved off the cached version makes the entry stale
//! (the next read fetches). A stream that ends `unauthenticated` (the token was revoked
//! or expired) drops every value; `permission_denied` or `not_found` drops the name;
//! `resync_needed` makes it stale and watches from now. A node at its bound of streams
//! (`too_many_watches`) is not a failed node: its reads are still served, and the watch is
//! tried again after a backoff while the TTL keeps the entry honest.

use std::sync::Arc;
use std::time::Duration;

use coffer_proto as pb;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cache::Cache;
use crate::endpoints::Nodes;
use crate::error::SdkError;

/// Silence longer than this (the server sends progress every second) means a dead link.
const QUIET_LIMIT: Duration = Duration::from_secs(3);

/// Applies one change to the cache.
pub fn apply(cache: &Cache, e: &pb::SecretEvent) {
    if cache.changed(&e.name, e.index, &e.aliases, &e.revoked, Instant::now()) > 0 {
        tracing::info!(name = %e.name, index = e.index, "cached value revoked by a change");
    }
}

/// Watches `name` from `after` until `closed` turns true or the name is dropped for good.
pub async fn run(
    nodes: Arc<Nodes>,
    cache: Arc<Cache>,
    name: String,
    mut after: u64,
    mut closed: watch::Receiver<bool>,
) {
    let mut round = 0u32;
    loop {
        if *closed.borrow() {
            return;
        }
        let mut progressed = false;
        for node in nodes.order() {
            let opened = node
                .client()
                .watch(pb::WatchRequest {
                    name: name.clone(),
                    prefix: String::new(),
                    after_index: after,
                })
                .await;
            let mut stream = match opened {
                Ok(s) => s.into_inner(),
                Err(s) => match end(&cache, &name, &SdkError::from_status(&s), &mut after) {
                    Some(Ended::Stop) => return,
                    Some(Ended::Again) => {
                        progressed = true;
                        break;
                    }
                    Some(Ended::Later) => continue,
                    None => {
                        nodes.failed(node);
                        continue;
                    }
                },
            };
            loop {
                let next = tokio::select! {
                    n = tokio::time::timeout(QUIET_LIMIT, stream.message()) => n,
                    _ = closed.wait_for(|c| *c) => return,
                };
                let err = match next {
                    Ok(Ok(Some(r))) => {
                        for e in &r.events {
                            apply(&cache, e);
                        }
                        after = after.max(r.through_index);
                        progressed = true;
                        round = 0;
                        continue;
                    }
                    Ok(Ok(None)) => SdkError::Unreachable("the watch stream ended".into()),
                    Ok(Err(s)) => SdkError::from_status(&s),
                    Err(_) => SdkError::Unreachable(format!("no word from {} in {QUIET_LIMIT:?}", node.endpoint.addr)),
                };
                match end(&cache, &name, &err, &mut after) {
                    Some(Ended::Stop) => return,
                    Some(Ended::Again) | Some(Ended::Later) => break,
                    None => {
                        nodes.failed(node);
                        break;
                    }
                }
            }
        }
        if !progressed {
            round = round.saturating_add(1);
        }
        let wait = crate::endpoints::backoff(Duration::from_millis(100), Duration::from_secs(5), round.min(6));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
    }
}

enum Ended {
    /// The name is dropped for good (or every value is): stop watching it.
    Stop,
    /// Watch again from `after` (changed by a resync).
    Again,
    /// The node is busy, not failed: try the next one, and back off if none takes it.
    Later,
}

/// What a stream's error means for the cache; `None` = the node failed, try the next.
fn end(cache: &Cache, name: &str, e: &SdkError, after: &mut u64) -> Option<Ended> {
    match e.code() {
        "unauthenticated" => {
            tracing::warn!("the watch says the token is no longer valid: dropping every cached value");
            cache.revoke_all();
            Some(Ended::Stop)
        }
        "permission_denied" | "not_found" | "invalid_argument" => {
            cache.remove(name, None);
            Some(Ended::Stop)
        }
        "resync_needed" => {
            cache.invalidate(name, 0, Instant::now());
            *after = 0;
            Some(Ended::Again)
        }
        "too_many_watches" => Some(Ended::Later),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> SdkError {
        SdkError::Server {
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn a_busy_node_is_tried_later_and_only_a_dead_link_counts_as_a_failed_node() {
        let cache = Cache::default();
        let mut after = 7;
        assert!(matches!(
            end(&cache, "acme/db", &server("too_many_watches"), &mut after),
            Some(Ended::Later)
        ));
        assert_eq!(after, 7, "a busy node changes nowhere to resume");
        assert!(end(&cache, "acme/db", &SdkError::Unreachable("gone".into()), &mut after).is_none());
        assert!(end(&cache, "acme/db", &server("unavailable"), &mut after).is_none());
        assert!(matches!(
            end(&cache, "acme/db", &server("resync_needed"), &mut after),
            Some(Ended::Again)
        ));
        assert_eq!(after, 0);
        assert!(matches!(
            end(&cache, "acme/db", &server("permission_denied"), &mut after),
            Some(Ended::Stop)
        ));
    }
}
