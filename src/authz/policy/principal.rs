//! Principal ids (`kind:tenant:name`, `kind:name`) and the patterns that match them.

use std::fmt;

use super::error::*;
use super::glob::glob_match;

/// Longest principal id: 32 + 63 + 128 bytes and two colons.
/// The reserved tenant of secrets that policies grant across tenants.
pub const SHARED_TENANT: &str = "shared";
pub(super) const MAX_PRINCIPAL_BYTES: usize = 32 + 63 + 128 + 2;

/// A parsed principal id: `kind:tenant:name` or, for platform principals, `kind:name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalId {
    pub kind: String,
    /// `None` for platform principals.
    pub tenant: Option<String>,
    pub name: String,
}

impl PrincipalId {
    pub fn is_platform(&self) -> bool {
        self.tenant.is_none()
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            Some(t) => write!(f, "{}:{}:{}", self.kind, t, self.name),
            None => write!(f, "{}:{}", self.kind, self.name),
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Part {
    Kind,
    Tenant,
    Name,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Kind => "kind",
            Part::Tenant => "tenant",
            Part::Name => "name",
        }
    }
    fn rule(self) -> &'static str {
        match self {
            Part::Kind => "[a-z][a-z0-9-]{0,31}",
            Part::Tenant => "[a-z0-9][a-z0-9._-]{0,62}",
            Part::Name => "[a-z0-9][a-z0-9._@-]{0,127}",
        }
    }
    fn max(self) -> usize {
        match self {
            Part::Kind => 32,
            Part::Tenant => 63,
            Part::Name => 128,
        }
    }
    fn first_ok(self, b: u8) -> bool {
        match self {
            Part::Kind => b.is_ascii_lowercase(),
            Part::Tenant | Part::Name => b.is_ascii_lowercase() || b.is_ascii_digit(),
        }
    }
    fn rest_ok(self, b: u8) -> bool {
        let common = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        match self {
            Part::Kind => common,
            Part::Tenant => common || matches!(b, b'.' | b'_'),
            Part::Name => common || matches!(b, b'.' | b'_' | b'@'),
        }
    }
}

/// Checks one part of a principal id (or, with `allow_star`, of a principal pattern).
pub(super) fn check_part(s: &str, part: Part, allow_star: bool) -> Result<(), String> {
    let label = part.label();
    if s.is_empty() {
        return Err(format!("{label} is empty"));
    }
    if s.len() > part.max() {
        return Err(format!("{label} is {} bytes; the limit is {}", s.len(), part.max()));
    }
    let b = s.as_bytes();
    let ok = if allow_star && s.contains('*') {
        b.iter().all(|&c| c == b'*' || part.rest_ok(c))
    } else {
        part.first_ok(b[0]) && b[1..].iter().all(|&c| part.rest_ok(c))
    };
    if !ok {
        let star = if allow_star { " (or a glob of it with '*')" } else { "" };
        return Err(format!("{label} {} must match {}{star}", shown(s), part.rule()));
    }
    if matches!(part, Part::Tenant) && s == SHARED_TENANT {
        return Err("tenant \"shared\" is reserved for shared secrets and names no principal".into());
    }
    Ok(())
}

pub(super) fn split_principal(s: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() == 2 || parts.len() == 3 {
        Ok(parts)
    } else {
        Err(format!(
            "has {} part(s); use kind:tenant:name (e.g. service:acme:api) or kind:name for platform principals (e.g. user:alice)",
            parts.len()
        ))
    }
}

pub(super) fn check_parts(parts: &[&str], allow_star: bool) -> Result<(), String> {
    let roles: &[Part] = if parts.len() == 3 {
        &[Part::Kind, Part::Tenant, Part::Name]
    } else {
        &[Part::Kind, Part::Name]
    };
    for (p, role) in parts.iter().zip(roles) {
        check_part(p, *role, allow_star)?;
    }
    Ok(())
}

/// Parses a principal id: `kind:tenant:name` or `kind:name` (platform, no tenant).
pub fn parse_principal(id: &str) -> Result<PrincipalId, PolicyError> {
    let err = |detail: String| PolicyError::Principal(format!("{}: {detail}", shown(id)));
    if id.len() > MAX_PRINCIPAL_BYTES {
        return Err(err(format!(
            "is {} bytes; the limit is {MAX_PRINCIPAL_BYTES}",
            id.len()
        )));
    }
    let parts = split_principal(id).map_err(err)?;
    check_parts(&parts, false).map_err(err)?;
    Ok(match parts[..] {
        [kind, tenant, name] => PrincipalId {
            kind: kind.into(),
            tenant: Some(tenant.into()),
            name: name.into(),
        },
        [kind, name] => PrincipalId {
            kind: kind.into(),
            tenant: None,
            name: name.into(),
        },
        _ => return Err(err("has the wrong number of parts".into())),
    })
}

/// A principal pattern of a statement: a bare `*` (any caller holding the policy), or a
/// principal id whose parts may contain `*` (`service:acme:*`, `group:*:oncall`).
pub(super) fn check_principal_pattern(p: &str) -> Result<(), String> {
    if p == "*" {
        return Ok(());
    }
    if p.len() > MAX_PRINCIPAL_BYTES {
        return Err(format!("is {} bytes; the limit is {MAX_PRINCIPAL_BYTES}", p.len()));
    }
    let parts = split_principal(p)?;
    check_parts(&parts, true)
}

/// Matches part by part, so `service:*` names platform services only, never `service:acme:api`.
pub(super) fn principal_matches(pattern: &str, id: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let mut pp = pattern.split(':');
    let mut ip = id.split(':');
    loop {
        match (pp.next(), ip.next()) {
            (Some(a), Some(b)) if glob_match(a, b) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
