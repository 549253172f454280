//! What the state machine says about shredding ([`crate::shredder`]): the highest index it was
//! asked for, how far this node got, and events for the layers above, which drop what they
//! cache (data keys) of what a shredding command removed.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::watch;

use crate::pb;

/// What the state machine tells the layers above about data that must go.
#[derive(Debug, Clone)]
pub enum ShredEvent {
    /// A shredding command was applied at `index`, with this result.
    Applied {
        index: u64,
        cmd: Arc<pb::Command>,
        result: Arc<pb::CommandResult>,
    },
    /// A snapshot through `index` replaced the whole state.
    Installed { index: u64 },
}

/// The state machine's side: where it records shredding requests and tells the layers above.
#[derive(Clone)]
pub struct Shredding {
    pub(crate) requested: Arc<watch::Sender<u64>>,
    pub(crate) done: Arc<watch::Sender<u64>>,
    events: broadcast::Sender<ShredEvent>,
}

impl Default for Shredding {
    fn default() -> Self {
        Self {
            requested: Arc::new(watch::channel(0).0),
            done: Arc::new(watch::channel(0).0),
            events: broadcast::channel(256).0,
        }
    }
}

impl Shredding {
    /// Records that the storage must be shredded through `index`, and tells the layers above.
    pub(crate) fn request(&self, event: ShredEvent) {
        let index = match &event {
            ShredEvent::Applied { index, .. } | ShredEvent::Installed { index } => *index,
        };
        self.requested.send_if_modified(|r| {
            let later = index > *r;
            if later {
                *r = index;
            }
            later
        });
        // No receiver is fine: nothing above caches anything.
        let _ = self.events.send(event);
    }

    /// Events from now on. A receiver that lags behind loses events and is told so
    /// (`RecvError::Lagged`): it should then drop everything it caches.
    pub fn events(&self) -> broadcast::Receiver<ShredEvent> {
        self.events.subscribe()
    }

    /// The index through which this node's storage holds nothing a shredding command removed
    /// (0: no request yet, or none done).
    pub fn through(&self) -> u64 {
        *self.done.borrow()
    }

    /// The highest index a shred was requested for.
    pub fn requested(&self) -> u64 {
        *self.requested.borrow()
    }
}
