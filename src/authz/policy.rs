//! The policy engine (DESIGN.md: Security model): principal ids, the policy document language,
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

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;
use std::time::UNIX_EPOCH;

use serde::de::Error as _;
use serde::Deserialize;
use serde::Serialize;

use super::Action;
use crate::pb;
use crate::raft::access::validate_policy_name;
use crate::raft::names;

/// Largest policy document `parse_document` accepts.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Most statements in one policy.
pub const MAX_STATEMENTS: usize = 100;
/// Most entries in one list of a statement (principals, actions, resources, regions).
pub const MAX_LIST_ENTRIES: usize = 100;
/// Longest resource glob.
pub const MAX_GLOB_BYTES: usize = 512;
/// Longest description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest statement id.
pub const MAX_SID_BYTES: usize = 64;
/// Largest `max_token_ttl` (10 years): anything longer bounds nothing.
pub const MAX_TOKEN_TTL_LIMIT_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// The reserved tenant of secrets that policies grant across tenants.
pub const SHARED_TENANT: &str = "shared";
/// The fixed resources of platform actions (besides `policy/<name>` and `token/<principal>`).
pub const PLATFORM_RESOURCES: [&str; 4] = ["cluster", "audit", "drill", "kms"];

/// Last millisecond RFC 3339 (4-digit years) can show: 9999-12-31T23:59:59.999Z.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;
/// Longest principal id: 32 + 63 + 128 bytes and two colons.
const MAX_PRINCIPAL_BYTES: usize = 32 + 63 + 128 + 2;

const ALL_ACTIONS: [Action; 9] = [
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

/// What is wrong with a principal id, an action, a policy document or a break-glass request.
/// Messages name the offending input (escaped and shortened), never secret data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid principal id {0}")]
    Principal(String),
    #[error("invalid action {0}")]
    Action(String),
    #[error("invalid policy: {0}")]
    Document(String),
    #[error("invalid break-glass request: {0}")]
    BreakGlass(String),
}

/// Shows user input in a message: quoted, control characters escaped, at most 60 characters.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).flat_map(char::escape_default).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    format!("\"{out}\"")
}

fn plural_policies(n: usize) -> String {
    if n == 1 {
        "1 policy".to_string()
    } else {
        format!("{n} policies")
    }
}

// ---------------------------------------------------------------------------------------------
// Principals
// ---------------------------------------------------------------------------------------------

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
enum Part {
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
fn check_part(s: &str, part: Part, allow_star: bool) -> Result<(), String> {
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

fn split_principal(s: &str) -> Result<Vec<&str>, String> {
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

fn check_parts(parts: &[&str], allow_star: bool) -> Result<(), String> {
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
fn check_principal_pattern(p: &str) -> Result<(), String> {
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
fn principal_matches(pattern: &str, id: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

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

fn check_action_pattern(s: &str) -> Result<(), String> {
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
fn action_covers(pattern: &str, action: Action, allow: bool) -> bool {
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
fn action_reach(actions: &[String]) -> (bool, bool) {
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

// ---------------------------------------------------------------------------------------------
// Resources and globs
// ---------------------------------------------------------------------------------------------

/// `*` matches any run of bytes, `/` included; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<usize> = None;
    let mut mark = 0usize;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A secret-name glob: `/`-separated segments of `[a-z0-9._-]` and `*`.
fn check_secret_glob(g: &str) -> Result<(), String> {
    if g.is_empty() {
        return Err("is empty".into());
    }
    if g.len() > MAX_GLOB_BYTES {
        return Err(format!("is {} bytes; the limit is {MAX_GLOB_BYTES}", g.len()));
    }
    if g.starts_with('/') {
        return Err("starts with '/'".into());
    }
    if g.ends_with('/') {
        return Err("ends with '/'".into());
    }
    for seg in g.split('/') {
        if seg.is_empty() {
            return Err("empty segment".into());
        }
        if seg == "." || seg == ".." {
            return Err(format!("segment {} is not allowed", shown(seg)));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '*')))
        {
            return Err(format!(
                "character {} is not allowed; use a-z, 0-9, '.', '_', '-' and '*'",
                shown(&c.to_string())
            ));
        }
        if !seg.contains('*') && !names::is_valid_segment(seg) {
            return Err(format!("segment {} must match [a-z0-9][a-z0-9._-]{{0,62}}", shown(seg)));
        }
    }
    Ok(())
}

/// A platform resource or a glob of one: `*`, `cluster`, `audit`, `drill`, `kms`,
/// `policy/<name or glob>`, `token/<principal pattern>`.
fn check_platform_pattern(r: &str) -> Result<(), String> {
    if r == "*" || PLATFORM_RESOURCES.contains(&r) {
        return Ok(());
    }
    if let Some(rest) = r.strip_prefix("policy/") {
        if rest.contains('*') {
            let ok = rest.len() <= 63
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'*'));
            return if ok {
                Ok(())
            } else {
                Err("policy glob must be 1-63 of a-z, 0-9, '.', '_', '-' and '*'".into())
            };
        }
        return validate_policy_name(rest);
    }
    if let Some(rest) = r.strip_prefix("token/") {
        return check_principal_pattern(rest).map_err(|e| format!("token principal {e}"));
    }
    Err(format!(
        "is not a platform resource; use {}, policy/<name> or token/<principal> (globs allowed)",
        PLATFORM_RESOURCES.join(", ")
    ))
}

fn check_resource(r: &str, secrets: bool, platform: bool) -> Result<(), String> {
    let secret = secrets.then(|| check_secret_glob(r));
    let plat = platform.then(|| check_platform_pattern(r));
    match (secret, plat) {
        (Some(Ok(())), _) | (_, Some(Ok(()))) => Ok(()),
        (Some(Err(s)), Some(Err(p))) => {
            let looks_platform = r.starts_with("policy/") || r.starts_with("token/") || r.contains(':');
            Err(if looks_platform { p } else { s })
        }
        (Some(Err(s)), None) => Err(s),
        (None, Some(Err(p))) => Err(p),
        (None, None) => Err("no action of the statement applies to resources".into()),
    }
}

/// What a query's resource is, once checked.
enum Target<'a> {
    /// A full secret name.
    Name(&'a str),
    /// A listing prefix, as the names it lists start: `acme` lists `acme/`.
    Listing(String),
    /// A platform resource.
    Platform(&'a str),
}

impl Target<'_> {
    fn tenant(&self) -> Option<&str> {
        match self {
            Target::Name(n) => Some(names::tenant(n)),
            Target::Listing(p) => Some(names::tenant(p)),
            Target::Platform(_) => None,
        }
    }
}

fn classify(action: Action, resource: &str) -> Result<Target<'_>, &'static str> {
    if is_secrets_action(action) {
        // A trailing `/` marks a listing (`acme/` lists the tenant, `acme/app/` a folder).
        if let Some(prefix) = resource.strip_suffix('/') {
            return match names::validate_prefix(prefix) {
                Ok(()) => Ok(Target::Listing(resource.to_string())),
                Err(_) => Err("is not a valid secret name or listing prefix"),
            };
        }
        if names::validate_name(resource).is_ok() {
            return Ok(Target::Name(resource));
        }
        if names::validate_prefix(resource).is_ok() {
            let p = if resource.contains('/') {
                resource.to_string()
            } else {
                format!("{resource}/")
            };
            return Ok(Target::Listing(p));
        }
        return Err("is not a valid secret name or listing prefix");
    }
    // `policy/*` and `token/*` are what listing every policy or token asks for.
    let ok = PLATFORM_RESOURCES.contains(&resource)
        || resource == "policy/*"
        || resource == "token/*"
        || resource == "token/root"
        || resource
            .strip_prefix("policy/")
            .is_some_and(|n| validate_policy_name(n).is_ok())
        || resource
            .strip_prefix("token/")
            .is_some_and(|p| parse_principal(p).is_ok());
    if ok {
        Ok(Target::Platform(resource))
    } else {
        Err("is not a platform resource (cluster, audit, drill, kms, policy/<name>, token/<principal>)")
    }
}

/// Whether one resource glob of a statement matches the target. For a listing, the glob must
/// match every name the listing can return: it ends with `*` and matches the prefix.
fn resource_matches(glob: &str, target: &Target<'_>, shared_needs_literal: bool) -> bool {
    let literal_shared_ok =
        |tenant: &str| !shared_needs_literal || tenant != SHARED_TENANT || glob.starts_with("shared/");
    match target {
        Target::Name(n) => literal_shared_ok(names::tenant(n)) && glob_match(glob, n),
        Target::Listing(p) => literal_shared_ok(names::tenant(p)) && glob.ends_with('*') && glob_match(glob, p),
        Target::Platform(r) => glob_match(glob, r),
    }
}

// ---------------------------------------------------------------------------------------------
// Policy documents
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    statements: StatementDocs,
}

/// Accepts only a JSON object: serde's derived structs would also take an array of the fields.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData)).map(Object)
    }
}

/// The statement list; errors inside a statement are prefixed with its index.
struct StatementDocs(Vec<StatementDoc>);

impl Serialize for StatementDocs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for StatementDocs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StatementDocs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of statements")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatementDocs, A::Error> {
                let mut out = Vec::new();
                loop {
                    let i = out.len();
                    match seq.next_element::<Object<StatementDoc>>() {
                        Ok(Some(Object(s))) => out.push(s),
                        Ok(None) => return Ok(StatementDocs(out)),
                        Err(e) => {
                            return Err(A::Error::custom(format!(
                                "statement {i}: {}",
                                strip_position(&e.to_string())
                            )))
                        }
                    }
                }
            }
        }
        d.deserialize_seq(Visitor)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementDoc {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sid: String,
    effect: EffectDoc,
    principals: Vec<String>,
    actions: Vec<String>,
    resources: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_conditions"
    )]
    conditions: Option<ConditionsDoc>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum EffectDoc {
    Allow,
    Deny,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConditionsDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_token_ttl: Option<String>,
}

fn deserialize_conditions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ConditionsDoc>, D::Error> {
    Option::<Object<ConditionsDoc>>::deserialize(d)
        .map(|c| c.map(|Object(c)| c))
        .map_err(|e| D::Error::custom(format!("conditions: {}", strip_position(&e.to_string()))))
}

/// Drops serde_json's trailing ` at line N column M`, so nested errors carry one position.
fn strip_position(s: &str) -> &str {
    if let Some(i) = s.rfind(" at line ") {
        let mut it = s[i + " at line ".len()..].splitn(2, " column ");
        if let (Some(l), Some(c)) = (it.next(), it.next()) {
            let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
            if digits(l) && digits(c) {
                return &s[..i];
            }
        }
    }
    s
}

fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn rfc3339_to_ms(s: &str) -> Result<u64, String> {
    let t = humantime::parse_rfc3339(s).map_err(|e| format!("{e}; use RFC 3339 UTC, e.g. 2026-12-01T00:00:00Z"))?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0);
    if ms == 0 {
        return Err("must be after 1970-01-01T00:00:00Z".into());
    }
    Ok(ms)
}

fn ms_to_rfc3339(ms: u64) -> String {
    let ms = ms.min(MAX_RFC3339_MS);
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    if Duration::from_millis(ms).subsec_millis() == 0 {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

fn duration_to_ms(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; use a duration like 1h, 30m or 1h 30m"))?;
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err("must be at least 1ms".into());
    }
    if ms > MAX_TOKEN_TTL_LIMIT_MS {
        return Err("must be at most 3650 days".into());
    }
    Ok(ms)
}

fn doc_err(msg: impl Into<String>) -> PolicyError {
    PolicyError::Document(msg.into())
}

/// Parses a policy document (what `coffer policy put --file` sends) strictly, and validates it
/// in full. Statement indexes in messages count from 0, as in the JSON array.
pub fn parse_document(json: &str) -> Result<pb::Policy, PolicyError> {
    if json.len() > MAX_DOCUMENT_BYTES {
        return Err(doc_err(format!(
            "the document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            json.len()
        )));
    }
    let Object(doc): Object<PolicyDoc> =
        serde_json::from_str(json).map_err(|e| doc_err(escape_controls(&e.to_string())))?;
    let mut statements = Vec::with_capacity(doc.statements.0.len());
    for (i, s) in doc.statements.0.into_iter().enumerate() {
        let mut conditions = pb::Conditions::default();
        if let Some(c) = s.conditions {
            if let Some(regions) = c.regions {
                if regions.is_empty() {
                    return Err(doc_err(format!(
                        "statement {i}: conditions.regions is empty; omit it to allow every region"
                    )));
                }
                conditions.regions = regions;
            }
            if let Some(t) = c.not_after {
                conditions.not_after_ms = rfc3339_to_ms(&t)
                    .map_err(|e| doc_err(format!("statement {i}: conditions.not_after {}: {e}", shown(&t))))?;
            }
            if let Some(d) = c.max_token_ttl {
                conditions.max_token_ttl_ms = duration_to_ms(&d)
                    .map_err(|e| doc_err(format!("statement {i}: conditions.max_token_ttl {}: {e}", shown(&d))))?;
            }
        }
        let has_conditions =
            !conditions.regions.is_empty() || conditions.not_after_ms != 0 || conditions.max_token_ttl_ms != 0;
        statements.push(pb::PolicyStatement {
            sid: s.sid,
            effect: match s.effect {
                EffectDoc::Allow => pb::Effect::Allow as i32,
                EffectDoc::Deny => pb::Effect::Deny as i32,
            },
            principals: s.principals,
            actions: s.actions,
            resources: s.resources,
            conditions: has_conditions.then_some(conditions),
        });
    }
    let policy = pb::Policy {
        name: doc.name,
        description: doc.description,
        statements,
        updated_at_ms: 0,
        updated_by: String::new(),
    };
    validate_policy(&policy)?;
    Ok(policy)
}

fn check_list(i: usize, field: &str, list: &[String]) -> Result<(), PolicyError> {
    if list.is_empty() || list.len() > MAX_LIST_ENTRIES {
        return Err(doc_err(format!(
            "statement {i}: {field} has {} entries; give 1 to {MAX_LIST_ENTRIES}",
            list.len()
        )));
    }
    Ok(())
}

fn check_entries(
    i: usize,
    field: &str,
    list: &[String],
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(), PolicyError> {
    check_list(i, field, list)?;
    for (j, e) in list.iter().enumerate() {
        check(e).map_err(|m| doc_err(format!("statement {i}: {field}[{j}] {}: {m}", shown(e))))?;
    }
    Ok(())
}

fn check_region(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= 63
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("must match [a-z0-9-]{1,63}".into())
    }
}

/// Validates a policy in its stored form: everything `parse_document` checks after parsing.
/// Use it on any `pb::Policy` that did not come from `parse_document`.
pub fn validate_policy(p: &pb::Policy) -> Result<(), PolicyError> {
    validate_policy_name(&p.name).map_err(doc_err)?;
    if p.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(doc_err(format!(
            "description is {} bytes; the limit is {MAX_DESCRIPTION_BYTES}",
            p.description.len()
        )));
    }
    if p.description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(doc_err("description contains control characters"));
    }
    if p.statements.is_empty() || p.statements.len() > MAX_STATEMENTS {
        return Err(doc_err(format!(
            "policy {} has {} statements; give 1 to {MAX_STATEMENTS}",
            p.name,
            p.statements.len()
        )));
    }
    let mut sids = BTreeSet::new();
    for (i, s) in p.statements.iter().enumerate() {
        if !s.sid.is_empty() {
            let ok = s.sid.len() <= MAX_SID_BYTES
                && s.sid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(doc_err(format!(
                    "statement {i}: sid {} must be 1-{MAX_SID_BYTES} of A-Z, a-z, 0-9, '.', '_', '-'",
                    shown(&s.sid)
                )));
            }
            if !sids.insert(s.sid.as_str()) {
                return Err(doc_err(format!("statement {i}: sid {} is used twice", shown(&s.sid))));
            }
        }
        let effect = pb::Effect::try_from(s.effect).unwrap_or(pb::Effect::Unspecified);
        if effect == pb::Effect::Unspecified {
            return Err(doc_err(format!("statement {i}: effect must be allow or deny")));
        }
        check_entries(i, "principals", &s.principals, check_principal_pattern)?;
        check_entries(i, "actions", &s.actions, check_action_pattern)?;
        let (secrets, platform) = action_reach(&s.actions);
        check_entries(i, "resources", &s.resources, |r| check_resource(r, secrets, platform))?;
        let c = s.conditions.clone().unwrap_or_default();
        if !c.regions.is_empty() {
            check_entries(i, "conditions.regions", &c.regions, check_region)?;
        }
        if c.not_after_ms > MAX_RFC3339_MS {
            return Err(doc_err(format!(
                "statement {i}: conditions.not_after is after year 9999"
            )));
        }
        if c.max_token_ttl_ms > MAX_TOKEN_TTL_LIMIT_MS {
            return Err(doc_err(format!(
                "statement {i}: conditions.max_token_ttl must be at most 3650 days"
            )));
        }
        let names_break_glass = s.actions.iter().any(|a| a == Action::SecretsReadBreakGlass.as_str());
        if effect == pb::Effect::Allow && names_break_glass && c.not_after_ms == 0 && c.max_token_ttl_ms == 0 {
            return Err(doc_err(format!(
                "statement {i}: allows secrets:read-break-glass without a time bound; break-glass grants \
                 must set conditions.not_after or conditions.max_token_ttl"
            )));
        }
    }
    Ok(())
}

/// The canonical document of a policy: pretty JSON that `parse_document` accepts back.
/// Stored metadata (`updated_at_ms`, `updated_by`) is not part of the document.
pub fn to_document(p: &pb::Policy) -> String {
    let statements = p
        .statements
        .iter()
        .map(|s| {
            let c = s.conditions.clone().unwrap_or_default();
            let conditions = ConditionsDoc {
                regions: (!c.regions.is_empty()).then(|| c.regions.clone()),
                not_after: (c.not_after_ms != 0).then(|| ms_to_rfc3339(c.not_after_ms)),
                max_token_ttl: (c.max_token_ttl_ms != 0)
                    .then(|| humantime::format_duration(Duration::from_millis(c.max_token_ttl_ms)).to_string()),
            };
            let any =
                conditions.regions.is_some() || conditions.not_after.is_some() || conditions.max_token_ttl.is_some();
            StatementDoc {
                sid: s.sid.clone(),
                // The engine treats anything but allow as deny; the document says so.
                effect: if s.effect == pb::Effect::Allow as i32 {
                    EffectDoc::Allow
                } else {
                    EffectDoc::Deny
                },
                principals: s.principals.clone(),
                actions: s.actions.clone(),
                resources: s.resources.clone(),
                conditions: any.then_some(conditions),
            }
        })
        .collect();
    let doc = PolicyDoc {
        name: p.name.clone(),
        description: p.description.clone(),
        statements: StatementDocs(statements),
    };
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------

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

fn conditions_hold(s: &pb::PolicyStatement, allow: bool, caller: &Caller<'_>, query: &Query<'_>) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Break glass
// ---------------------------------------------------------------------------------------------

/// Checks the reason and ticket a break-glass read must carry: a reason of 8 to 512 characters
/// (at least 8 that are not blank) without control characters, and a ticket of 1 to 64 of
/// `[A-Za-z0-9._:-]` (e.g. `INC-123`).
pub fn check_break_glass(reason: &str, ticket: &str) -> Result<(), PolicyError> {
    let n = reason.chars().count();
    if !(8..=512).contains(&n) || reason.trim().chars().count() < 8 {
        return Err(PolicyError::BreakGlass(format!(
            "the reason has {n} characters; say why in 8 to 512 characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(PolicyError::BreakGlass(
            "the reason contains control characters; use one line of plain text".into(),
        ));
    }
    let ok = !ticket.is_empty()
        && ticket.len() <= 64
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !ok {
        return Err(PolicyError::BreakGlass(format!(
            "ticket {} must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', ':', '-' (e.g. INC-123)",
            shown(ticket)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use serde_json::Value;

    use super::*;

    /// 2026-12-01T00:00:00Z
    const DEC_1: u64 = 1_796_083_200_000;
    const NOW: u64 = DEC_1 - 86_400_000;
    const HOUR: u64 = 3_600_000;

    fn st(effect: &str, principals: &[&str], actions: &[&str], resources: &[&str]) -> Value {
        json!({"effect": effect, "principals": principals, "actions": actions, "resources": resources})
    }

    fn with(mut statement: Value, key: &str, value: Value) -> Value {
        statement[key] = value;
        statement
    }

    fn pol(name: &str, statements: Vec<Value>) -> pb::Policy {
        let doc = json!({"name": name, "statements": statements}).to_string();
        parse_document(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
    }

    fn caller<'a>(principal: &'a str, groups: &'a [String]) -> Caller<'a> {
        Caller {
            principal,
            groups,
            token_lifetime_ms: Some(HOUR),
        }
    }

    fn query(action: Action, resource: &str) -> Query<'_> {
        Query {
            action,
            resource,
            region: "eu-west",
            now_ms: NOW,
        }
    }

    fn ask(policies: &[pb::Policy], principal: &str, action: Action, resource: &str) -> Decision {
        decide(policies, &caller(principal, &[]), &query(action, resource))
    }

    fn ask_as(policies: &[pb::Policy], principal: &str, groups: &[&str], action: Action, resource: &str) -> Decision {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        decide(policies, &caller(principal, &groups), &query(action, resource))
    }

    /// A resource the action can name, for tables over every action.
    fn resource_for(a: Action) -> &'static str {
        match a {
            Action::PolicyAdmin => "policy/acme-read",
            Action::ClusterAdmin => "cluster",
            Action::AuditRead => "audit",
            Action::DrillRun => "drill",
            _ => "acme/prod/db",
        }
    }

    // ---- principals and actions ----

    #[test]
    fn principal_ids_parse() {
        for (id, kind, tenant, name) in [
            ("service:acme:api", "service", Some("acme"), "api"),
            ("user:acme:alice@example.com", "user", Some("acme"), "alice@example.com"),
            ("group:acme:oncall", "group", Some("acme"), "oncall"),
            ("user:alice", "user", None, "alice"),
            ("group:sre", "group", None, "sre"),
            ("k8s-sa:team.a:build_1", "k8s-sa", Some("team.a"), "build_1"),
        ] {
            let p = parse_principal(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(
                (p.kind.as_str(), p.tenant.as_deref(), p.name.as_str()),
                (kind, tenant, name)
            );
            assert_eq!(p.is_platform(), tenant.is_none());
            assert_eq!(p.to_string(), id);
        }
    }

    #[test]
    fn principal_ids_reject_bad_shapes() {
        let long = "a".repeat(10_000);
        let long_kind = format!("{}:x", "a".repeat(33));
        for (id, why) in [
            ("", "1 part(s)"),
            ("root", "1 part(s)"),
            ("service:acme:api:x", "4 part(s)"),
            ("User:alice", "kind \"User\""),
            ("1user:alice", "kind"),
            ("service:ACME:api", "tenant \"ACME\""),
            ("service:\u{0430}cme:api", "tenant"), // Cyrillic а
            ("service::api", "tenant is empty"),
            (":alice", "kind is empty"),
            ("user:", "name is empty"),
            ("service:acme: api", "name"),
            ("service:acme:api\n", "name"),
            ("service:-acme:api", "tenant"),
            ("service:acme:*", "name"),
            ("service:shared:api", "reserved"),
            (long_kind.as_str(), "kind is 33 bytes"),
            (long.as_str(), "the limit is"),
        ] {
            let e = parse_principal(id).expect_err(id).to_string();
            assert!(e.contains(why), "{id:?}: {e}");
            assert!(e.len() < 400 && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn actions_parse() {
        for a in ALL_ACTIONS {
            assert_eq!(parse_action(a.as_str()), Ok(a));
        }
        for (s, why) in [
            ("health:read", "not governed"),
            ("secrets:*", "use one of"),
            ("*", "use one of"),
            ("SECRETS:READ", "use one of"),
            ("secrets:read ", "use one of"),
            ("", "use one of"),
        ] {
            let e = parse_action(s).expect_err(s).to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
        assert!(is_platform_action(Action::PolicyAdmin) && !is_platform_action(Action::SecretsAdmin));
        assert!(is_secrets_action(Action::SecretsReadBreakGlass) && !is_secrets_action(Action::AuditRead));
    }

    // ---- documents ----

    const EXAMPLE: &str = r#"{
        "name": "acme-read",
        "description": "what acme services read",
        "statements": [
            {"sid": "read", "effect": "allow", "principals": ["service:acme:api", "group:acme:*"],
             "actions": ["secrets:read"], "resources": ["acme/*"],
             "conditions": {"regions": ["eu-west"], "not_after": "2026-12-01T00:00:00Z", "max_token_ttl": "1h"}},
            {"effect": "deny", "principals": ["*"], "actions": ["secrets:*"], "resources": ["acme/prod/*"],
             "conditions": {}},
            {"sid": "glass", "effect": "allow", "principals": ["user:oncall"],
             "actions": ["secrets:read-break-glass"], "resources": ["acme/prod/*"],
             "conditions": {"max_token_ttl": "1h 30m 250ms"}},
            {"effect": "allow", "principals": ["user:alice"], "actions": ["policy:admin", "cluster:admin"],
             "resources": ["policy/acme-*", "token/service:acme:*", "cluster", "kms"]}
        ]
    }"#;

    #[test]
    fn document_parses() {
        let p = parse_document(EXAMPLE).unwrap();
        assert_eq!(p.name, "acme-read");
        assert_eq!(p.description, "what acme services read");
        assert_eq!(p.statements.len(), 4);
        let s = &p.statements[0];
        assert_eq!(s.sid, "read");
        assert_eq!(s.effect, pb::Effect::Allow as i32);
        assert_eq!(s.principals, ["service:acme:api", "group:acme:*"]);
        let c = s.conditions.as_ref().unwrap();
        assert_eq!(c.regions, ["eu-west"]);
        assert_eq!(c.not_after_ms, DEC_1);
        assert_eq!(c.max_token_ttl_ms, HOUR);
        assert_eq!(p.statements[1].effect, pb::Effect::Deny as i32);
        assert_eq!(p.statements[1].conditions, None, "empty conditions are no conditions");
        let glass = p.statements[2].conditions.as_ref().unwrap();
        assert_eq!(glass.max_token_ttl_ms, HOUR + HOUR / 2 + 250);
    }

    #[test]
    fn document_round_trips_canonically() {
        let p = parse_document(EXAMPLE).unwrap();
        let doc = to_document(&p);
        assert_eq!(parse_document(&doc).unwrap(), p, "{doc}");
        assert_eq!(
            to_document(&parse_document(&doc).unwrap()),
            doc,
            "canonical form is stable"
        );
        for shown in [
            r#""not_after": "2026-12-01T00:00:00Z""#,
            r#""max_token_ttl": "1h""#,
            r#""max_token_ttl": "1h 30m 250ms""#,
        ] {
            assert!(doc.contains(shown), "{shown} missing in\n{doc}");
        }
        assert!(!doc.contains("\"sid\": \"\""), "empty fields are left out:\n{doc}");
        // Metadata is not part of the document; milliseconds survive.
        let mut stored = p.clone();
        stored.updated_at_ms = 5;
        stored.updated_by = "root".into();
        stored.statements[0].conditions.as_mut().unwrap().not_after_ms = DEC_1 + 1;
        let back = parse_document(&to_document(&stored)).unwrap();
        assert_eq!(back.updated_by, "");
        assert_eq!(back.statements[0].conditions.as_ref().unwrap().not_after_ms, DEC_1 + 1);
    }

    #[test]
    fn to_document_never_panics_on_odd_stored_policies() {
        let p = pb::Policy {
            name: "odd".into(),
            statements: vec![pb::PolicyStatement {
                effect: 0,
                conditions: Some(pb::Conditions {
                    regions: vec![],
                    not_after_ms: u64::MAX,
                    max_token_ttl_ms: u64::MAX,
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let doc = to_document(&p);
        assert!(
            doc.contains("\"effect\": \"deny\"") && doc.contains("9999-12-31T23:59:59.999Z"),
            "{doc}"
        );
    }

    /// A two-statement document whose statement 1 is `statement`.
    fn doc_with(statement: Value) -> String {
        let ok = st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"]);
        json!({"name": "p", "statements": [ok, statement]}).to_string()
    }

    #[test]
    fn document_statement_errors_say_what_and_where() {
        let base = st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"]);
        let b = |k: &str, v: Value| doc_with(with(base.clone(), k, v));
        let many: Vec<String> = (0..101).map(|i| format!("user:u{i}")).collect();
        let long_glob = format!("acme/{}", "b".repeat(520));
        let mut no_effect = base.clone();
        no_effect.as_object_mut().unwrap().remove("effect");
        let platform = |resources: Value| {
            doc_with(with(
                st("allow", &["user:alice"], &["policy:admin"], &[]),
                "resources",
                resources,
            ))
        };
        let glass = |conditions: Value| {
            let s = st(
                "allow",
                &["user:alice"],
                &["secrets:read-break-glass", "secrets:read"],
                &["acme/*"],
            );
            doc_with(with(s, "conditions", conditions))
        };
        let cases: Vec<(String, &str)> = vec![
            (b("principals", json!([])), "statement 1: principals has 0 entries"),
            (b("principals", json!(many)), "statement 1: principals has 101 entries"),
            (
                b("principals", json!(["Service:acme:api"])),
                r#"statement 1: principals[0] "Service:acme:api": kind"#,
            ),
            (
                b("principals", json!(["user:a", "service:shared:*"])),
                "principals[1] \"service:shared:*\": tenant \"shared\" is reserved",
            ),
            (b("principals", json!(["a:b:c:d"])), "4 part(s)"),
            (b("principals", json!(["service:acme:a b"])), "principals[0]"),
            (b("actions", json!([])), "statement 1: actions has 0 entries"),
            (
                b("actions", json!(["secrets:list"])),
                r#"statement 1: actions[0] "secrets:list""#,
            ),
            (b("actions", json!(["health:read"])), "not governed by policies"),
            (b("actions", json!(["policy:*"])), "wildcards secrets:* and *"),
            (b("resources", json!([])), "statement 1: resources has 0 entries"),
            (
                b("resources", json!(["acme//x"])),
                r#"statement 1: resources[0] "acme//x": empty segment"#,
            ),
            (b("resources", json!(["/acme/x"])), "starts with '/'"),
            (b("resources", json!(["acme/x/"])), "ends with '/'"),
            (b("resources", json!(["acme/../x"])), r#"segment ".." is not allowed"#),
            (b("resources", json!(["acme/./x"])), r#"segment "." is not allowed"#),
            (b("resources", json!(["Acme/x"])), r#"character "A" is not allowed"#),
            (b("resources", json!(["acme/%2F"])), r#"character "%" is not allowed"#),
            (b("resources", json!(["\u{0430}cme/x"])), "character"),
            (
                b("resources", json!(["acme/-x"])),
                "must match [a-z0-9][a-z0-9._-]{0,62}",
            ),
            (b("resources", json!([""])), "resources[0] \"\": is empty"),
            (b("resources", json!(["acme/x", long_glob])), "resources[1]"),
            (b("resources", json!(["token/service:acme:*"])), "character \":\""),
            (platform(json!(["acme/*"])), "is not a platform resource"),
            (platform(json!(["policy/Bad"])), "policy name"),
            (platform(json!(["policy/a/*"])), "policy glob"),
            (platform(json!(["token/service:ACME:*"])), "token principal tenant"),
            (
                b("effect", json!("permit")),
                "statement 1: unknown variant `permit`, expected `allow` or `deny`",
            ),
            (doc_with(no_effect), "statement 1: missing field `effect`"),
            (b("sid", json!("has space")), "statement 1: sid \"has space\""),
            (b("extra", json!(1)), "statement 1: unknown field `extra`"),
            (
                b("conditions", json!({"region": ["eu-west"]})),
                "statement 1: conditions: unknown field `region`",
            ),
            (
                b("conditions", json!({"regions": []})),
                "statement 1: conditions.regions is empty",
            ),
            (
                b("conditions", json!([["eu-west"]])),
                "statement 1: conditions: invalid type: sequence, expected a JSON object",
            ),
            (
                b("conditions", json!({"regions": ["EU"]})),
                r#"statement 1: conditions.regions[0] "EU": must match"#,
            ),
            (
                b("conditions", json!({"not_after": "tomorrow"})),
                r#"statement 1: conditions.not_after "tomorrow""#,
            ),
            (
                b("conditions", json!({"not_after": "2026-12-01"})),
                "conditions.not_after",
            ),
            (
                b("conditions", json!({"not_after": "1970-01-01T00:00:00Z"})),
                "must be after 1970",
            ),
            (
                b("conditions", json!({"max_token_ttl": "soon"})),
                r#"conditions.max_token_ttl "soon""#,
            ),
            (b("conditions", json!({"max_token_ttl": "0s"})), "at least 1ms"),
            (
                b("conditions", json!({"max_token_ttl": "20years"})),
                "at most 3650 days",
            ),
            (
                glass(json!(null)),
                "statement 1: allows secrets:read-break-glass without a time bound",
            ),
            (
                glass(json!({"regions": ["eu-west"]})),
                "must set conditions.not_after or conditions.max_token_ttl",
            ),
        ];
        for (doc, want) in cases {
            let e = parse_document(&doc).expect_err(&doc).to_string();
            assert!(e.contains(want), "want {want:?}\n got {e}\n for {doc}");
        }
        // Bounded break-glass is fine, as is an unbounded deny of it.
        parse_document(&glass(json!({"not_after": "2026-12-01T00:00:00Z"}))).unwrap();
        parse_document(&glass(json!({"max_token_ttl": "15m"}))).unwrap();
        let deny = st("deny", &["*"], &["secrets:read-break-glass"], &["*"]);
        parse_document(&doc_with(deny)).unwrap();
    }

    #[test]
    fn document_level_errors() {
        let s = st("allow", &["user:a"], &["secrets:read"], &["acme/*"]);
        let dup_sid = with(s.clone(), "sid", json!("x"));
        let hundred_one: Vec<Value> = (0..101).map(|_| s.clone()).collect();
        let huge = format!(
            r#"{{"name":"p","description":"{}","statements":[]}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "EOF"),
            ("[]".into(), "invalid type: sequence, expected a JSON object"),
            (r#"["p", "", []]"#.into(), "expected a JSON object"),
            (r#"{"name":"p","statements":[["allow"]]}"#.into(), "statement 0: invalid type: sequence, expected a JSON object"),
            (r#"{"name":"p","statements":[null]}"#.into(), "statement 0: invalid type: null"),
            (r#"{"name":"p","statements":{}}"#.into(), "expected a list of statements"),
            (huge, "bytes; the limit is 65536"),
            (json!({"name": "p", "statements": [s], "owner": "me"}).to_string(), "unknown field `owner`"),
            (json!({"name": "p"}).to_string(), "missing field `statements`"),
            (json!({"name": "Bad Name", "statements": [s]}).to_string(), "policy name \"Bad Name\" is invalid"),
            (json!({"name": "p", "statements": []}).to_string(), "has 0 statements"),
            (json!({"name": "p", "statements": hundred_one}).to_string(), "has 101 statements"),
            (json!({"name": "p", "statements": [dup_sid, dup_sid]}).to_string(), "statement 1: sid \"x\" is used twice"),
            (json!({"name": "p", "description": "a\u{7}b", "statements": [s]}).to_string(), "control characters"),
            (
                r#"{"name":"p","statements":[{"effect":"deny","effect":"allow","principals":["*"],"actions":["*"],"resources":["*"]}]}"#.into(),
                "statement 0: duplicate field `effect`",
            ),
        ];
        for (doc, want) in cases {
            let e = parse_document(&doc).expect_err(&doc).to_string();
            assert!(e.contains(want), "want {want:?}\n got {e}");
        }
        let e = parse_document(r#"{"name":"p","statements":[],"\u001b[31m":1}"#)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\u{1b}'), "control characters are escaped: {e}");
    }

    // ---- decisions ----

    #[test]
    fn deny_wins_and_no_match_denies() {
        let allow = pol(
            "acme-read",
            vec![st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"])],
        );
        let deny = pol(
            "acme-deny",
            vec![with(
                st("deny", &["service:acme:*"], &["secrets:*"], &["acme/prod/*"]),
                "sid",
                json!("no-prod"),
            )],
        );
        let both = [allow.clone(), deny.clone()];
        let d = ask(&both, "service:acme:api", Action::SecretsRead, "acme/dev/x");
        assert!(d.allowed, "{d}");
        assert_eq!(d.statement_label(), "acme-read#0");
        assert!(
            d.explanation.contains("acme-read#0") && d.explanation.contains("2 policies"),
            "{d}"
        );

        for policies in [both.to_vec(), vec![deny.clone(), allow.clone()]] {
            let d = ask(&policies, "service:acme:api", Action::SecretsRead, "acme/prod/db");
            assert!(!d.allowed, "deny wins in any order: {d}");
            assert_eq!(d.statement_label(), "acme-deny#0 (no-prod)");
            assert!(d.explanation.contains("deny wins"), "{d}");
        }

        let d = ask(&both, "service:acme:api", Action::SecretsWrite, "acme/dev/x");
        assert!(!d.allowed && d.statement.is_none(), "{d}");
        assert!(
            d.explanation.contains("no statement in the 2 policies consulted"),
            "{d}"
        );
        let d = ask(&both, "service:acme:other", Action::SecretsRead, "acme/dev/x");
        assert!(!d.allowed, "another principal of the tenant is not named: {d}");
        let d = ask(&[], "service:acme:api", Action::SecretsRead, "acme/dev/x");
        assert!(!d.allowed && d.explanation.contains("0 policies"), "{d}");
    }

    #[test]
    fn statement_refs_display() {
        let r = StatementRef {
            policy: "p".into(),
            index: 2,
            sid: "x".into(),
        };
        assert_eq!(r.to_string(), "p#2 (x)");
        assert_eq!(
            StatementRef {
                sid: String::new(),
                ..r
            }
            .to_string(),
            "p#2"
        );
    }

    #[test]
    fn wildcards_never_grant_break_glass() {
        // Time-bounded, so only the wildcard rule keeps break-glass out.
        let bounded = json!({"not_after": "2026-12-01T00:00:00Z", "max_token_ttl": "1h"});
        let wild = pol(
            "wild",
            vec![
                with(
                    st("allow", &["user:alice"], &["*"], &["*"]),
                    "conditions",
                    bounded.clone(),
                ),
                with(
                    st("allow", &["user:alice"], &["secrets:*"], &["*"]),
                    "conditions",
                    bounded,
                ),
            ],
        );
        let d = ask(
            std::slice::from_ref(&wild),
            "user:alice",
            Action::SecretsReadBreakGlass,
            "acme/prod/db",
        );
        assert!(!d.allowed, "{d}");
        for a in [
            Action::SecretsRead,
            Action::SecretsWrite,
            Action::SecretsRotate,
            Action::SecretsAdmin,
        ] {
            assert!(
                ask(std::slice::from_ref(&wild), "user:alice", a, "acme/prod/db").allowed,
                "{a}"
            );
        }

        let glass = pol(
            "glass",
            vec![with(
                st(
                    "allow",
                    &["user:alice"],
                    &["secrets:read-break-glass"],
                    &["acme/prod/*"],
                ),
                "conditions",
                json!({"not_after": "2026-12-01T00:00:00Z"}),
            )],
        );
        let d = ask(
            &[wild.clone(), glass.clone()],
            "user:alice",
            Action::SecretsReadBreakGlass,
            "acme/prod/db",
        );
        assert!(d.allowed && d.statement_label() == "glass#0", "{d}");

        // Deny wildcards do reach break-glass (fail closed).
        let deny_all = pol("deny-all", vec![st("deny", &["*"], &["*"], &["acme/prod/*"])]);
        let d = ask(
            &[glass.clone(), deny_all],
            "user:alice",
            Action::SecretsReadBreakGlass,
            "acme/prod/db",
        );
        assert!(!d.allowed && d.statement_label() == "deny-all#0", "{d}");

        // A stored policy that skipped validation cannot grant unbounded break-glass.
        let mut unbounded = glass;
        unbounded.statements[0].conditions = None;
        assert!(validate_policy(&unbounded).is_err());
        assert!(
            !ask(
                &[unbounded],
                "user:alice",
                Action::SecretsReadBreakGlass,
                "acme/prod/db"
            )
            .allowed
        );
    }

    #[test]
    fn conditions_limit_time_token_ttl_and_region() {
        let s = st("allow", &["service:acme:api"], &["secrets:read"], &["acme/*"]);
        let timed = [pol(
            "t",
            vec![with(
                s.clone(),
                "conditions",
                json!({"not_after": "2026-12-01T00:00:00Z"}),
            )],
        )];
        let ttl = [pol(
            "t",
            vec![with(s.clone(), "conditions", json!({"max_token_ttl": "1h"}))],
        )];
        let region = [pol(
            "t",
            vec![with(s, "conditions", json!({"regions": ["eu-west", "us-east"]}))],
        )];
        let run = |policies: &[pb::Policy], lifetime: Option<u64>, region: &str, now_ms: u64| {
            let c = Caller {
                principal: "service:acme:api",
                groups: &[],
                token_lifetime_ms: lifetime,
            };
            let q = Query {
                action: Action::SecretsRead,
                resource: "acme/x",
                region,
                now_ms,
            };
            decide(policies, &c, &q).allowed
        };
        let h = Some(HOUR);
        for (name, policies, lifetime, region, now, want) in [
            ("before not_after", &timed, h, "eu-west", DEC_1 - 1, true),
            ("at not_after", &timed, h, "eu-west", DEC_1, false),
            ("after not_after", &timed, h, "eu-west", DEC_1 + 1, false),
            ("token at the ttl", &ttl, Some(HOUR), "eu-west", NOW, true),
            ("short token", &ttl, Some(1), "eu-west", NOW, true),
            ("token above the ttl", &ttl, Some(HOUR + 1), "eu-west", NOW, false),
            ("certificate identity", &ttl, None, "eu-west", NOW, false),
            ("listed region", &region, h, "us-east", NOW, true),
            ("other region", &region, h, "ap-south", NOW, false),
            ("no region", &region, h, "", NOW, false),
            ("look-alike region", &region, h, "eu-west ", NOW, false),
        ] {
            assert_eq!(run(policies, lifetime, region, now), want, "{name}");
        }
    }

    #[test]
    fn globs_respect_segment_boundaries() {
        let p = [pol(
            "g",
            vec![st(
                "allow",
                &["user:alice"],
                &["secrets:read"],
                &["acme/*", "globex/prod*/db"],
            )],
        )];
        for (resource, want) in [
            ("acme/x", true),
            ("acme/a/b", true),
            ("acmecorp/x", false),
            ("acme", true), // listing the tenant lists acme/…
            ("globex/prod/db", true),
            ("globex/production/db", true),
            ("globex/prod/db2", false),
            ("globex/x/prod/db", false),
        ] {
            assert_eq!(
                ask(&p, "user:alice", Action::SecretsRead, resource).allowed,
                want,
                "{resource}"
            );
        }
    }

    #[test]
    fn listings_need_a_glob_that_covers_them() {
        let p = [pol(
            "l",
            vec![st(
                "allow",
                &["user:alice"],
                &["secrets:read"],
                &["acme/prod/*", "globex/db"],
            )],
        )];
        for (resource, want) in [
            ("acme/prod/", true),
            ("acme/prod/x/", true),
            ("acme/prod", false), // a name: not matched by acme/prod/*
            ("acme/", false),
            ("acme", false),
            ("globex/db", true),
            ("globex/db/", false), // a grant of one secret does not list under it
            ("globex", false),
        ] {
            assert_eq!(
                ask(&p, "user:alice", Action::SecretsRead, resource).allowed,
                want,
                "{resource}"
            );
        }
        // An unvalidated stored glob that matches the prefix text but not what it lists.
        let mut stored = p[0].clone();
        stored.statements[0].resources = vec!["acme/".into(), "globex/db/".into()];
        assert!(!ask(&[stored.clone()], "user:alice", Action::SecretsRead, "acme").allowed);
        assert!(!ask(&[stored], "user:alice", Action::SecretsRead, "globex/db/").allowed);
    }

    #[test]
    fn path_tricks_never_allow() {
        let p = [pol(
            "all",
            vec![
                st("allow", &["user:admin"], &["*"], &["*"]),
                st("allow", &["service:acme:api"], &["secrets:*"], &["acme/*"]),
            ],
        )];
        let long = format!("acme/{}", "a".repeat(600));
        let deep = vec!["a"; 20].join("/");
        for resource in [
            "acme/../globex/x",
            "acme/%2F..",
            "acme/%2Fglobex",
            "\u{0430}cme/x", // Cyrillic а
            "acme/\u{0445}",
            "acme//x",
            "/acme/x",
            "acme/./x",
            "Acme/x",
            "ACME/X",
            "acme/X",
            "acme/x ",
            " acme/x",
            "acme\\x",
            "acme/x\0",
            "acme/x\n",
            "acme/.hidden",
            "",
            "/",
            "//",
            long.as_str(),
            deep.as_str(),
        ] {
            for principal in ["user:admin", "service:acme:api"] {
                for a in [Action::SecretsRead, Action::SecretsWrite, Action::SecretsAdmin] {
                    let d = ask(&p, principal, a, resource);
                    assert!(!d.allowed, "{principal} {a} {resource:?}: {d}");
                    assert!(d.explanation.contains("not a valid secret name"), "{d}");
                }
            }
        }
        // A trailing '/' is a listing prefix; a grant of the one secret does not cover it.
        let one = [pol(
            "one",
            vec![st("allow", &["service:acme:api"], &["secrets:*"], &["acme/x"])],
        )];
        assert!(ask(&one, "service:acme:api", Action::SecretsRead, "acme/x").allowed);
        assert!(!ask(&one, "service:acme:api", Action::SecretsRead, "acme/x/").allowed);
    }

    #[test]
    fn tenants_never_reach_other_tenants() {
        let p = [pol(
            "wide",
            vec![
                st("allow", &["*"], &["secrets:*"], &["*"]),
                st(
                    "allow",
                    &["service:acme:api"],
                    &["secrets:*"],
                    &["globex/*", "globex/x", "acme*"],
                ),
                st("allow", &["group:globex:admins"], &["secrets:*"], &["globex/*"]),
            ],
        )];
        for resource in ["globex/x", "globex", "globex/", "acmecorp/x", "acme-eu/x"] {
            for a in [
                Action::SecretsRead,
                Action::SecretsWrite,
                Action::SecretsRotate,
                Action::SecretsAdmin,
            ] {
                let d = ask_as(&p, "service:acme:api", &["group:globex:admins"], a, resource);
                assert!(!d.allowed, "{a} {resource}: {d}");
                assert!(d.explanation.contains("tenant isolation"), "{d}");
                assert!(d.statement.is_none());
            }
        }
        assert!(ask(&p, "service:acme:api", Action::SecretsRead, "acme/x").allowed);
        assert!(ask(&p, "service:acme:api", Action::SecretsRead, "acme").allowed);
        // Platform principals are not tenant-limited.
        assert!(
            ask_as(
                &p,
                "user:alice",
                &["group:globex:admins"],
                Action::SecretsWrite,
                "globex/x"
            )
            .allowed
        );
    }

    #[test]
    fn shared_secrets_need_explicit_grants() {
        let star = pol(
            "star",
            vec![st("allow", &["*"], &["secrets:read"], &["*", "sha*", "*/certs/*"])],
        );
        let certs = pol(
            "certs",
            vec![st("allow", &["*"], &["secrets:read"], &["shared/certs/*"])],
        );
        let all_shared = pol(
            "all-shared",
            vec![st("allow", &["*"], &["secrets:read"], &["shared/*"])],
        );
        let tenant = "service:acme:api";
        for (policies, resource, want) in [
            (vec![star.clone()], "shared/certs/ca", false),
            (vec![star.clone()], "shared", false),
            (vec![star.clone(), certs.clone()], "shared/certs/ca", true),
            (vec![certs.clone()], "shared/other/x", false),
            (vec![certs.clone()], "shared", false),
            (vec![all_shared.clone()], "shared", true),
            (vec![all_shared.clone()], "shared/", true),
        ] {
            let d = ask(&policies, tenant, Action::SecretsRead, resource);
            assert_eq!(
                d.allowed,
                want,
                "{resource} with {:?}: {d}",
                policies.iter().map(|p| &p.name).collect::<Vec<_>>()
            );
        }
        // Platform principals read shared secrets through `*`.
        assert!(ask(&[star], "user:alice", Action::SecretsRead, "shared/certs/ca").allowed);
        // A tenant-wide deny still reaches shared secrets.
        let deny = pol("deny", vec![st("deny", &[tenant], &["*"], &["*"])]);
        assert!(!ask(&[certs, deny], tenant, Action::SecretsRead, "shared/certs/ca").allowed);
    }

    #[test]
    fn tenant_principals_never_get_platform_actions() {
        let p = [pol(
            "everything",
            vec![
                st("allow", &["*"], &["*"], &["*"]),
                st(
                    "allow",
                    &["service:acme:admin", "group:sre"],
                    &["policy:admin", "cluster:admin", "audit:read", "drill:run"],
                    &["*", "cluster", "audit", "drill", "kms", "policy/*", "token/*"],
                ),
            ],
        )];
        for (a, resource) in [
            (Action::PolicyAdmin, "policy/global-admin"),
            (Action::PolicyAdmin, "token/service:globex:api"),
            (Action::PolicyAdmin, "token/user:root-admin"),
            (Action::ClusterAdmin, "cluster"),
            (Action::ClusterAdmin, "kms"),
            (Action::AuditRead, "audit"),
            (Action::DrillRun, "drill"),
        ] {
            let d = ask_as(&p, "service:acme:admin", &["group:sre"], a, resource);
            assert!(!d.allowed, "{a} {resource}: {d}");
            assert!(
                d.explanation.contains("tenant isolation") && d.explanation.contains("platform action"),
                "{d}"
            );
            // The same grant works for a platform principal.
            assert!(
                ask_as(&p, "user:bob", &["group:sre"], a, resource).allowed,
                "{a} {resource}"
            );
        }
    }

    #[test]
    fn platform_star_gets_everything_but_break_glass() {
        let p = [pol("root-like", vec![st("allow", &["user:alice"], &["*"], &["*"])])];
        for a in ALL_ACTIONS {
            let d = ask(&p, "user:alice", a, resource_for(a));
            assert_eq!(d.allowed, a != Action::SecretsReadBreakGlass, "{a}: {d}");
        }
        assert!(ask(&p, "user:alice", Action::ClusterAdmin, "token/service:acme:api").allowed);
        assert!(ask(&p, "user:alice", Action::SecretsRead, "shared/x").allowed);
    }

    #[test]
    fn platform_resources_match_their_globs() {
        let p = [pol(
            "ops",
            vec![
                st(
                    "allow",
                    &["user:alice"],
                    &["policy:admin"],
                    &["policy/acme-*", "token/service:acme:*"],
                ),
                st("allow", &["user:alice"], &["cluster:admin"], &["kms"]),
            ],
        )];
        for (a, resource, want) in [
            (Action::PolicyAdmin, "policy/acme-read", true),
            (Action::PolicyAdmin, "policy/globex-read", false),
            (Action::PolicyAdmin, "token/service:acme:api", true),
            (Action::PolicyAdmin, "token/service:globex:api", false),
            (Action::PolicyAdmin, "token/service:acme:API", false),
            (Action::PolicyAdmin, "policy/acme-../x", false),
            (Action::ClusterAdmin, "kms", true),
            (Action::ClusterAdmin, "cluster", false),
            (Action::ClusterAdmin, "acme/x", false),
            (Action::AuditRead, "audit", false),
        ] {
            assert_eq!(ask(&p, "user:alice", a, resource).allowed, want, "{a} {resource}");
        }
    }

    #[test]
    fn principal_patterns_match_part_by_part() {
        let p = [pol(
            "who",
            vec![st(
                "allow",
                &["service:*", "*:globex:*", "group:acme:on*"],
                &["secrets:read"],
                &["*"],
            )],
        )];
        for (principal, groups, want) in [
            ("service:ci", &[][..], true),
            ("service:acme:api", &[], false), // service:* names platform services only
            ("user:globex:bob", &[], true),
            ("user:acme:bob", &["group:acme:oncall"][..], true),
            ("user:acme:bob", &["group:acme:dev"], false),
            ("user:acme:bob", &["group:acme:oncall:x", "GROUP:acme:oncall"], false), // malformed groups
            ("user:alice", &[], false),
        ] {
            let resource = if principal.contains("globex") {
                "globex/x"
            } else {
                "acme/x"
            };
            let d = ask_as(&p, principal, groups, Action::SecretsRead, resource);
            assert_eq!(d.allowed, want, "{principal} {groups:?}: {d}");
            if want && !groups.is_empty() {
                assert!(d.explanation.contains("(as group:acme:oncall)"), "{d}");
            }
        }
    }

    #[test]
    fn odd_callers_and_stored_statements_fail_closed() {
        let p = [pol("all", vec![st("allow", &["*"], &["*"], &["*"])])];
        for principal in ["root", "", "Service:acme:api", "service:acme:api ", "service:shared:x"] {
            let d = ask(&p, principal, Action::SecretsRead, "acme/x");
            assert!(
                !d.allowed && d.explanation.contains("not a valid principal id"),
                "{principal:?}: {d}"
            );
        }
        let d = ask(&p, "user:alice", Action::Health, "node");
        assert!(!d.allowed && d.explanation.contains("not governed"), "{d}");

        // An effect other than allow counts as deny.
        let mut odd = pol("odd", vec![st("allow", &["*"], &["secrets:read"], &["acme/*"])]);
        odd.statements[0].effect = 0;
        assert!(
            !ask(
                &[p[0].clone(), odd.clone()],
                "user:alice",
                Action::SecretsRead,
                "acme/x"
            )
            .allowed
        );
        odd.statements[0].effect = 7;
        assert!(!ask(&[p[0].clone(), odd], "user:alice", Action::SecretsRead, "acme/x").allowed);
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let long = "a".repeat(100_000);
        let stars = "*a".repeat(300);
        let stored = pb::Policy {
            name: "unchecked".into(),
            statements: vec![pb::PolicyStatement {
                sid: "\u{1b}[31m".into(),
                effect: pb::Effect::Allow as i32,
                principals: vec!["".into(), ":::".into(), "*".into(), long.clone()],
                actions: vec!["".into(), "*".into(), "secrets:*".into(), long.clone()],
                resources: vec!["".into(), stars.clone(), "**".into(), "/".into(), long.clone()],
                conditions: None,
            }],
            ..Default::default()
        };
        let weird = [
            "",
            ":",
            "::::",
            "*",
            "user:*",
            "\u{0430}",
            "\u{202e}acme/x",
            "acme/\u{0}",
            long.as_str(),
            stars.as_str(),
            "token/",
            "policy/",
            "token/user:alice",
            "policy/p",
        ];
        let groups: Vec<String> = weird.iter().map(|s| s.to_string()).collect();
        let policies = [stored, pol("all", vec![st("allow", &["*"], &["*"], &["*"])])];
        for principal in weird.iter().chain(["user:alice", "service:acme:api"].iter()) {
            for resource in weird {
                for action in ALL_ACTIONS.iter().copied().chain([Action::Health]) {
                    let c = Caller {
                        principal,
                        groups: &groups,
                        token_lifetime_ms: Some(u64::MAX),
                    };
                    let q = Query {
                        action,
                        resource,
                        region: resource,
                        now_ms: u64::MAX,
                    };
                    let d = decide(&policies, &c, &q);
                    assert!(d.explanation.len() < 1000, "{d}");
                    if d.allowed {
                        assert!(matches!(*principal, "user:alice" | "service:acme:api"), "{principal:?}");
                    }
                }
            }
        }
        let e = parse_principal(&long).unwrap_err().to_string();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn break_glass_requests_need_reason_and_ticket() {
        for (reason, ticket) in [
            ("database is down, paging the owner", "INC-123"),
            ("12345678", "a"),
            ("ünïcode réason", "JIRA:SEC-1.2_x"),
        ] {
            assert_eq!(check_break_glass(reason, ticket), Ok(()), "{reason:?} {ticket:?}");
        }
        let long_reason = "r".repeat(513);
        let long_ticket = "T".repeat(65);
        for (reason, ticket, why) in [
            ("short", "INC-1", "8 to 512"),
            ("        x", "INC-1", "8 to 512"),
            (long_reason.as_str(), "INC-1", "8 to 512"),
            ("a reason\nwith a newline", "INC-1", "control characters"),
            ("a reason \u{1b}[31m", "INC-1", "control characters"),
            ("a good reason", "", "ticket"),
            ("a good reason", "INC 123", "ticket"),
            ("a good reason", "INC/1", "ticket"),
            ("a good reason", "ІNC-1", "ticket"), // Cyrillic І
            ("a good reason", long_ticket.as_str(), "ticket"),
        ] {
            let e = check_break_glass(reason, ticket).expect_err(reason).to_string();
            assert!(e.contains(why), "{reason:?} {ticket:?}: {e}");
            assert!(!e.contains("good reason"), "the reason is not echoed: {e}");
        }
    }
}
