//! The watchers of a run: see [`crate::watch_log`] for what they do and record.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use coffer::pb;

use crate::history::History;
use crate::rng::SimRng;
use crate::watch_log::Response;
use crate::watch_log::Seen;
use crate::watch_log::Segment;
use crate::workload::authorized;
use crate::workload::secret_clients;

/// The folder every watcher follows (the workload's and the rotating secrets).
pub const PREFIX: &str = "acme/";
/// A stream with no response for this long is taken as dead (progress comes every second).
pub const QUIET_LIMIT: Duration = Duration::from_secs(3);
/// Watchers per run.
pub const WATCHERS: usize = 2;

/// A watcher until `stop`: see the module docs.
pub async fn run_watcher(
    name: String,
    nodes: Vec<(String, String)>,
    mut rng: SimRng,
    history: Rc<RefCell<History>>,
    stop: Rc<std::cell::Cell<bool>>,
) -> turmoil::Result {
    let clients = secret_clients(&nodes);
    // The segment being built (its index in the log), and where to resume.
    let mut current: Option<usize> = None;
    while !stop.get() {
        let (node, client) = &clients[rng.below(clients.len() as u64) as usize];
        let after_index = current
            .map(|s| history.borrow().watches.segments[s].through())
            .unwrap_or(0);
        // The stream has no deadline: the opening call is bounded by QUIET_LIMIT below.
        let req = authorized(pb::WatchRequest {
            name: String::new(),
            prefix: PREFIX.into(),
            after_index,
        });
        let hop_after = Duration::from_millis(rng.range(1_000, 8_000));
        let opened = tokio::time::timeout(QUIET_LIMIT, client.clone().watch(req)).await;
        let mut stream = match opened {
            Ok(Ok(s)) => s.into_inner(),
            Ok(Err(status)) => {
                if coffer::error::code_of(&status) == Some("resync_needed") {
                    current = None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => continue,
        };
        let until = tokio::time::Instant::now() + hop_after;
        let ended = loop {
            if stop.get() {
                break "stopped".to_string();
            }
            let next = tokio::time::timeout_at(until.min(tokio::time::Instant::now() + QUIET_LIMIT), stream.message());
            match next.await {
                Err(_) if tokio::time::Instant::now() >= until => break format!("hopped from {node}"),
                Err(_) => break format!("{node} went quiet"),
                Ok(Ok(Some(r))) => {
                    let seen: Vec<Seen> = r
                        .events
                        .iter()
                        .map(|e| Seen {
                            index: e.index,
                            name: e.name.clone(),
                            kind: e.kind,
                            version: e.version,
                        })
                        .collect();
                    let mut h = history.borrow_mut();
                    let l = &mut h.watches;
                    let s = match current {
                        Some(s) => s,
                        None => {
                            // A fresh stream's first response says where it starts.
                            l.segments.push(Segment {
                                watcher: name.clone(),
                                start: r.through_index,
                                responses: Vec::new(),
                                hops: Vec::new(),
                            });
                            let s = l.segments.len() - 1;
                            current = Some(s);
                            s
                        }
                    };
                    l.segments[s].responses.push(Response {
                        node: node.clone(),
                        through_index: r.through_index,
                        events: seen,
                    });
                }
                Ok(Ok(None)) => break format!("{node} ended the stream"),
                Ok(Err(status)) => {
                    if coffer::error::code_of(&status) == Some("resync_needed") {
                        current = None;
                    }
                    break format!("{node}: {}", status.code());
                }
            }
        };
        if let Some(s) = current {
            history.borrow_mut().watches.segments[s].hops.push(ended);
        }
    }
    Ok(())
}
