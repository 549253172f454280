//! Rotation on the leader (docs/architecture.md: Rotation): the [`scheduler`] that carries each
//! secret's rotation run through its replicated steps, and the values it [`generate`]s.

pub mod generate;
pub mod scheduler;
