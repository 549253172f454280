//! [`RaftNode`]: the Raft side of a Coffer node behind one facade, so the rest of Coffer never
//! names openraft. It starts Raft over the given storage and connector, serves peers, reports
//! status and freshness, and runs leader-only work (proposals, read indexes, forwarded reads,
//! membership changes) from any node by routing it to the leader.
//!
//! The facade is one type, [`RaftNode`], whose methods live in files by concern: `facade`
//! (start, stop), `routing` (leader-only work from any node), `writes`, `reads`, `status`,
//! `staleness` (the freshness bound) and `membership_change`.

mod facade;
mod membership_change;
mod reads;
mod routing;
mod settings;
mod staleness;
mod state;
mod status;
mod writes;

pub use facade::RaftNode;
pub use routing::Routed;
pub use settings::RaftSettings;
pub use state::{MemberState, RaftStatus, Role};
