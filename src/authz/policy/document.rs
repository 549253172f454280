//! The policy document language (JSON): parsing, validation and printing it back.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;
use std::time::UNIX_EPOCH;

use serde::de::Error as _;
use serde::Deserialize;
use serde::Serialize;

use super::action::*;
use super::error::*;
use super::principal::*;
use super::resource::*;
use crate::authz::action::Action;
use crate::model::access_records::validate_policy_name;
use crate::pb;

/// Largest policy document `parse_document` accepts.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Most statements in one policy.
pub const MAX_STATEMENTS: usize = 100;
/// Most entries in one list of a statement (principals, actions, resources, regions).
pub const MAX_LIST_ENTRIES: usize = 100;
/// Longest description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest statement id.
pub const MAX_SID_BYTES: usize = 64;
/// Largest `max_token_ttl` (10 years): anything longer bounds nothing.
pub const MAX_TOKEN_TTL_LIMIT_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// Last millisecond RFC 3339 (4-digit years) can show: 9999-12-31T23:59:59.999Z.
pub(super) const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyDoc {
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    statements: StatementDocs,
}

/// Accepts only a JSON object: serde's derived structs would also take an array of the fields.
pub(super) struct Object<T>(T);

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
pub(super) struct StatementDocs(Vec<StatementDoc>);

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
pub(super) struct StatementDoc {
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
pub(super) enum EffectDoc {
    Allow,
    Deny,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ConditionsDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_token_ttl: Option<String>,
}

pub(super) fn deserialize_conditions<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ConditionsDoc>, D::Error> {
    Option::<Object<ConditionsDoc>>::deserialize(d)
        .map(|c| c.map(|Object(c)| c))
        .map_err(|e| D::Error::custom(format!("conditions: {}", strip_position(&e.to_string()))))
}

/// Drops serde_json's trailing ` at line N column M`, so nested errors carry one position.
pub(super) fn strip_position(s: &str) -> &str {
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

pub(super) fn escape_controls(s: &str) -> String {
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

pub(super) fn rfc3339_to_ms(s: &str) -> Result<u64, String> {
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

pub(super) fn ms_to_rfc3339(ms: u64) -> String {
    let ms = ms.min(MAX_RFC3339_MS);
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    if Duration::from_millis(ms).subsec_millis() == 0 {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

pub(super) fn duration_to_ms(s: &str) -> Result<u64, String> {
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

pub(super) fn doc_err(msg: impl Into<String>) -> PolicyError {
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

pub(super) fn check_list(i: usize, field: &str, list: &[String]) -> Result<(), PolicyError> {
    if list.is_empty() || list.len() > MAX_LIST_ENTRIES {
        return Err(doc_err(format!(
            "statement {i}: {field} has {} entries; give 1 to {MAX_LIST_ENTRIES}",
            list.len()
        )));
    }
    Ok(())
}

pub(super) fn check_entries(
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

pub(super) fn check_region(r: &str) -> Result<(), String> {
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
