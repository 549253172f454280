//! Action names in policy documents (`secrets:read`, `secrets:*`, `*`) and what they cover.

use super::error::*;
use crate::authz::action::Action;

pub(super) const ALL_ACTIONS: [Action; 9] = [
    Action::SecretsRead,
    Action::SecretsWrite,
    Action::SecretsRotate,
    Action::SecretsAdmin,
    Action::SecretsReadBreakGlass,
    Action::PolicyAdmin,
    Action::ClusterAdmin,
    Action::AuditRead,
    Action::DrillRun,
];

/// Parses an action name as policies and `coffer policy check` spell it. `health:read` is not
/// governed by policies and is rejected.
pub fn parse_action(s: &str) -> Result<Action, PolicyError> {
    if let Some(a) = ALL_ACTIONS.iter().find(|a| a.as_str() == s) {
        return Ok(*a);
    }
    if s == Action::Health.as_str() {
        return Err(PolicyError::Action(format!(
            "{}: health is open to everyone and is not governed by policies",
            shown(s)
        )));
    }
    Err(PolicyError::Action(format!(
        "{}: use one of {}",
        shown(s),
        ALL_ACTIONS.map(|a| a.as_str()).join(", ")
    )))
}

/// The five `secrets:` actions (break-glass included).
pub fn is_secrets_action(a: Action) -> bool {
    matches!(
        a,
        Action::SecretsRead
            | Action::SecretsWrite
            | Action::SecretsRotate
            | Action::SecretsAdmin
            | Action::SecretsReadBreakGlass
    )
}

/// Actions on the platform itself; never granted to tenant principals.
pub fn is_platform_action(a: Action) -> bool {
    matches!(
        a,
        Action::PolicyAdmin | Action::ClusterAdmin | Action::AuditRead | Action::DrillRun
    )
}

pub(super) fn check_action_pattern(s: &str) -> Result<(), String> {
    if s == "*" || s == "secrets:*" || ALL_ACTIONS.iter().any(|a| a.as_str() == s) {
        return Ok(());
    }
    if s == Action::Health.as_str() {
        return Err("health is open to everyone and is not governed by policies".into());
    }
    Err(format!(
        "is not an action; use one of {}, or the wildcards secrets:* and *",
        ALL_ACTIONS.map(|a| a.as_str()).join(", ")
    ))
}

/// Whether an action entry of a statement covers `action`. Allow wildcards leave out
/// break-glass (it must be named); deny wildcards include it.
pub(super) fn action_covers(pattern: &str, action: Action, allow: bool) -> bool {
    if action == Action::Health {
        return false;
    }
    let wildcard_ok = !allow || action != Action::SecretsReadBreakGlass;
    match pattern {
        "*" => wildcard_ok,
        "secrets:*" => is_secrets_action(action) && wildcard_ok,
        other => other == action.as_str(),
    }
}

/// Which resource kinds the action entries of a statement can reach: (secrets, platform).
pub(super) fn action_reach(actions: &[String]) -> (bool, bool) {
    let mut secrets = false;
    let mut platform = false;
    for a in actions {
        match a.as_str() {
            "*" => {
                secrets = true;
                platform = true;
            }
            "secrets:*" => secrets = true,
            other => match parse_action(other) {
                Ok(a) if is_secrets_action(a) => secrets = true,
                Ok(a) if is_platform_action(a) => platform = true,
                _ => {}
            },
        }
    }
    (secrets, platform)
}
