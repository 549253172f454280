//! The policy engine (docs/architecture.md: Security model): principal ids, the policy document language,
//! and decisions.
//!
//! Pure and synchronous: no I/O and no clock reads (the caller passes `now_ms`), so the same
//! inputs always give the same decision on every node.
//!
//! - Principals: `kind:tenant:name` (tenant principals) or `kind:name` (platform principals).
//! - Statements allow or deny actions on resource globs (`*` matches any run of characters,
//!   `/` included) for principal patterns, under optional conditions. Deny wins; no applicable
//!   allow denies.
//! - Tenant isolation is checked before any statement: a tenant principal never reaches another
//!   tenant's secrets (only `shared/…` through globs that literally start with `shared/`) and is
//!   never granted a platform action.
//! - In allow statements `*` and `secrets:*` never cover `secrets:read-break-glass`, which must be
//!   named and bounded in time. In deny statements the wildcards do cover it (fail closed).

pub mod action;
pub mod break_glass;
pub mod decide;
pub mod document;
pub mod error;
pub mod glob;
pub mod principal;
pub mod resource;
#[cfg(test)]
mod tests;

pub use action::{is_platform_action, is_secrets_action, parse_action};
pub use break_glass::check_break_glass;
pub use decide::{decide, Caller, Decision, Query, StatementRef};
pub use document::{
    parse_document, to_document, validate_policy, MAX_DESCRIPTION_BYTES, MAX_DOCUMENT_BYTES, MAX_LIST_ENTRIES,
    MAX_SID_BYTES, MAX_STATEMENTS, MAX_TOKEN_TTL_LIMIT_MS,
};
pub use error::PolicyError;
pub use principal::SHARED_TENANT;
pub use principal::{parse_principal, PrincipalId};
pub use resource::{MAX_GLOB_BYTES, PLATFORM_RESOURCES};
