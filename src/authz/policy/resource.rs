//! Resources: what a statement's `resources` may say, what a query's resource is, and which
//! globs match it.

use super::action::*;
use super::error::*;
use super::glob::glob_match;
use super::principal::*;
use crate::authz::action::Action;
use crate::model::access_records::validate_policy_name;
use crate::model::names;

/// Longest resource glob.
pub const MAX_GLOB_BYTES: usize = 512;
/// The fixed resources of platform actions (besides `policy/<name>` and `token/<principal>`).
pub const PLATFORM_RESOURCES: [&str; 4] = ["cluster", "audit", "drill", "kms"];

/// A secret-name glob: `/`-separated segments of `[a-z0-9._-]` and `*`.
pub(super) fn check_secret_glob(g: &str) -> Result<(), String> {
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
pub(super) fn check_platform_pattern(r: &str) -> Result<(), String> {
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

pub(super) fn check_resource(r: &str, secrets: bool, platform: bool) -> Result<(), String> {
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
pub(super) enum Target<'a> {
    /// A full secret name.
    Name(&'a str),
    /// A listing prefix, as the names it lists start: `acme` lists `acme/`.
    Listing(String),
    /// A platform resource.
    Platform(&'a str),
}

impl Target<'_> {
    pub(super) fn tenant(&self) -> Option<&str> {
        match self {
            Target::Name(n) => Some(names::tenant(n)),
            Target::Listing(p) => Some(names::tenant(p)),
            Target::Platform(_) => None,
        }
    }
}

pub(super) fn classify(action: Action, resource: &str) -> Result<Target<'_>, &'static str> {
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
pub(super) fn resource_matches(glob: &str, target: &Target<'_>, shared_needs_literal: bool) -> bool {
    let literal_shared_ok =
        |tenant: &str| !shared_needs_literal || tenant != SHARED_TENANT || glob.starts_with("shared/");
    match target {
        Target::Name(n) => literal_shared_ok(names::tenant(n)) && glob_match(glob, n),
        Target::Listing(p) => literal_shared_ok(names::tenant(p)) && glob.ends_with('*') && glob_match(glob, p),
        // A token's principal matches part by part: `token/user:*` names platform users, never
        // `token/user:acme:dana`.
        Target::Platform(r) => match (glob.strip_prefix("token/"), r.strip_prefix("token/")) {
            (Some(g), Some(p)) => principal_matches(g, p),
            _ => glob_match(glob, r),
        },
    }
}
