//! Rotation on the leader (docs/architecture.md: Rotation): the [`scheduler`] that carries each
//! secret's rotation run through its replicated steps, the values it [`generate`]s, and its
//! calls to the owners' rotators ([`hook`]).

pub mod generate;
pub mod hook;
pub mod scheduler;
