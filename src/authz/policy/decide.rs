//! The decision: which statements apply to a caller and a query, deny first.

use std::fmt;

use super::action::*;
use super::error::*;
use super::principal::*;
use super::resource::*;
use crate::authz::action::Action;
use crate::pb;

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The principal id (`service:acme:api`, `user:alice`).
    pub principal: &'a str,
    /// Group ids the identity carries; matched like principals. They never widen the tenant.
    pub groups: &'a [String],
    /// `expires - created` of the token; `None` for certificate identities.
    pub token_lifetime_ms: Option<u64>,
}

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub action: Action,
    /// A secret name or listing prefix for secrets actions; `cluster`, `audit`, `drill`, `kms`,
    /// `policy/<name>` or `token/<principal>` for platform actions.
    pub resource: &'a str,
    /// The deciding node's region.
    pub region: &'a str,
    pub now_ms: u64,
}

/// The statement that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRef {
    pub policy: String,
    /// Index in the policy's statement list, from 0.
    pub index: usize,
    /// Empty when the statement has none.
    pub sid: String,
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.policy, self.index)?;
        if !self.sid.is_empty() {
            write!(f, " ({})", self.sid)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The deciding statement; `None` when nothing matched or a hard rule decided.
    pub statement: Option<StatementRef>,
    /// One sentence.
    pub explanation: String,
}

impl Decision {
    /// `policy#index (sid)` of the deciding statement, or empty.
    pub fn statement_label(&self) -> String {
        self.statement.as_ref().map(ToString::to_string).unwrap_or_default()
    }

    fn deny(explanation: String) -> Self {
        Decision {
            allowed: false,
            statement: None,
            explanation,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

pub(super) fn conditions_hold(s: &pb::PolicyStatement, allow: bool, caller: &Caller<'_>, query: &Query<'_>) -> bool {
    let none = pb::Conditions::default();
    let c = s.conditions.as_ref().unwrap_or(&none);
    if !c.regions.is_empty() && !c.regions.iter().any(|r| r == query.region) {
        return false;
    }
    if c.not_after_ms != 0 && query.now_ms >= c.not_after_ms {
        return false;
    }
    if c.max_token_ttl_ms != 0 && caller.token_lifetime_ms.is_none_or(|l| l > c.max_token_ttl_ms) {
        return false;
    }
    // Defence in depth for stored policies that skipped validation: break-glass is only ever
    // granted with a time bound.
    if allow && query.action == Action::SecretsReadBreakGlass && c.not_after_ms == 0 && c.max_token_ttl_ms == 0 {
        return false;
    }
    true
}

/// Decides whether `caller` may do `query`, consulting `policies` (in order; the first deciding
/// statement is named). Never panics, whatever the inputs.
pub fn decide<'p, I>(policies: I, caller: &Caller<'_>, query: &Query<'_>) -> Decision
where
    I: IntoIterator<Item = &'p pb::Policy>,
{
    let action = query.action;
    let what = format!("{action} {}", shown(query.resource));
    if action == Action::Health {
        return Decision::deny(format!(
            "denied: {action} is not governed by policies (the API opens health to everyone)"
        ));
    }
    let principal = match parse_principal(caller.principal) {
        Ok(p) => p,
        Err(_) => {
            return Decision::deny(format!(
                "denied: the caller {} is not a valid principal id, so no statement can match it",
                shown(caller.principal)
            ))
        }
    };
    let who = principal.to_string();
    if let Some(tenant) = &principal.tenant {
        if is_platform_action(action) {
            return Decision::deny(format!(
                "denied: tenant isolation: {who} belongs to tenant {tenant} and can never be granted the platform action {action}"
            ));
        }
    }
    let target = match classify(action, query.resource) {
        Ok(t) => t,
        Err(why) => {
            return Decision::deny(format!(
                "denied: the resource {} {why}, so no statement can match it",
                shown(query.resource)
            ))
        }
    };
    if let (Some(tenant), Some(owner)) = (&principal.tenant, target.tenant()) {
        if owner != tenant && owner != SHARED_TENANT {
            return Decision::deny(format!(
                "denied: tenant isolation: {who} belongs to tenant {tenant} and may not {what}, which belongs to tenant {owner}"
            ));
        }
    }
    let tenant_caller = principal.tenant.is_some();
    // The ids a statement may name: the principal, then its well-formed groups.
    let ids: Vec<&str> = std::iter::once(caller.principal)
        .chain(
            caller
                .groups
                .iter()
                .map(String::as_str)
                .filter(|g| parse_principal(g).is_ok()),
        )
        .collect();

    let mut consulted = 0usize;
    let mut first_allow: Option<(StatementRef, &str)> = None;
    for policy in policies {
        consulted += 1;
        for (index, s) in policy.statements.iter().enumerate() {
            // Anything but an explicit allow counts as deny (fail closed).
            let allow = s.effect == pb::Effect::Allow as i32;
            if allow && first_allow.is_some() {
                continue;
            }
            let Some(matched) = ids
                .iter()
                .copied()
                .find(|id| s.principals.iter().any(|p| principal_matches(p, id)))
            else {
                continue;
            };
            if !s.actions.iter().any(|a| action_covers(a, action, allow)) {
                continue;
            }
            // Only grants are held to the literal `shared/` rule; a deny `*` still denies.
            let shared_needs_literal = tenant_caller && allow;
            if !s
                .resources
                .iter()
                .any(|g| resource_matches(g, &target, shared_needs_literal))
            {
                continue;
            }
            if !conditions_hold(s, allow, caller, query) {
                continue;
            }
            let r = StatementRef {
                policy: policy.name.clone(),
                index,
                sid: s.sid.clone(),
            };
            if !allow {
                let via = if matched == caller.principal {
                    String::new()
                } else {
                    format!(" (as {matched})")
                };
                return Decision {
                    allowed: false,
                    explanation: format!("denied: statement {r} denies {what} to {who}{via} (deny wins over allow)"),
                    statement: Some(r),
                };
            }
            first_allow = Some((r, matched));
        }
    }
    match first_allow {
        Some((r, matched)) => {
            let via = if matched == caller.principal {
                String::new()
            } else {
                format!(" (as {matched})")
            };
            Decision {
                allowed: true,
                explanation: format!(
                    "allowed: statement {r} allows {what} to {who}{via} in region {}, and no statement of the {} consulted denies it",
                    shown(query.region),
                    plural_policies(consulted)
                ),
                statement: Some(r),
            }
        }
        None => Decision::deny(format!(
            "denied: no statement in the {} consulted allows {what} to {who} in region {}",
            plural_policies(consulted),
            shown(query.region)
        )),
    }
}
