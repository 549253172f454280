//! What a secret's spec may hold: short text without control characters, a bounded set of
//! labels with simple keys, a bounded version cap, a rotation policy that can run
//! ([`crate::rotation_policy`]). Checked whenever a command creates a secret,
//! so a caller cannot grow the state (or plant terminal controls) through metadata. Messages
//! name the field and the bound, never echo the input.

use crate::error::fail;
use crate::error::Result;
use crate::pb;
use crate::pb::ErrorCode;
use crate::rotation_policy as rotation;

pub const MAX_OWNER_BYTES: usize = 128;
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_BYTES: usize = 63;
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// The largest `max_versions` a secret may ask for.
pub const MAX_MAX_VERSIONS: u32 = 10_000;

fn text(field: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return fail(
            ErrorCode::InvalidArgument,
            format!("{field} is {} bytes; at most {max}", s.len()),
        );
    }
    if s.chars().any(char::is_control) {
        return fail(
            ErrorCode::InvalidArgument,
            format!("{field} contains a control character"),
        );
    }
    Ok(())
}

/// Label keys: `[a-z0-9][a-z0-9._/-]{0,62}`.
fn label_key(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_KEY_BYTES
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._/-".contains(c))
}

/// Refuses a spec past any bound above.
pub fn validate(spec: &pb::SecretSpec) -> Result<()> {
    text("owner_team", &spec.owner_team, MAX_OWNER_BYTES)?;
    text("description", &spec.description, MAX_DESCRIPTION_BYTES)?;
    if spec.labels.len() > MAX_LABELS {
        return fail(
            ErrorCode::InvalidArgument,
            format!("{} labels; at most {MAX_LABELS}", spec.labels.len()),
        );
    }
    for (k, v) in &spec.labels {
        if !label_key(k) {
            return fail(
                ErrorCode::InvalidArgument,
                format!(
                    "a label key must match [a-z0-9][a-z0-9._/-]{{0,{}}}",
                    MAX_LABEL_KEY_BYTES - 1
                ),
            );
        }
        text("a label value", v, MAX_LABEL_VALUE_BYTES)?;
    }
    if spec.max_versions > MAX_MAX_VERSIONS {
        return fail(
            ErrorCode::InvalidArgument,
            format!("max_versions {} is over {MAX_MAX_VERSIONS}", spec.max_versions),
        );
    }
    if let Some(r) = &spec.rotation {
        rotation::validate(r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> pb::SecretSpec {
        pb::SecretSpec {
            owner_team: "payments".into(),
            description: "Stripe key for the checkout service".into(),
            labels: [
                ("env".to_string(), "prod".to_string()),
                ("app.kubernetes.io/name".to_string(), "web".to_string()),
            ]
            .into_iter()
            .collect(),
            max_versions: 10,
            rotation: None,
        }
    }

    fn refused(s: pb::SecretSpec) -> String {
        let crate::error::ApplyError::Model(e) = validate(&s).unwrap_err() else {
            panic!("a storage error from a pure check");
        };
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.len() < 200, "messages never echo the input");
        e.message
    }

    #[test]
    fn ordinary_specs_pass_and_every_bound_is_enforced() {
        validate(&spec()).unwrap();
        validate(&pb::SecretSpec::default()).unwrap();
        let m = refused(pb::SecretSpec {
            description: "d".repeat(1 << 20),
            ..spec()
        });
        assert!(m.contains("description") && m.contains("1024"), "{m}");
        assert!(refused(pb::SecretSpec {
            owner_team: "o".repeat(129),
            ..spec()
        })
        .contains("owner_team"));
        assert!(refused(pb::SecretSpec {
            owner_team: "team\u{1b}[2J".into(),
            ..spec()
        })
        .contains("control"));
        let many = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(refused(pb::SecretSpec { labels: many, ..spec() }).contains("labels"));
        for bad in ["", "Env", "-x", "k\u{0}", &"k".repeat(64)] {
            let labels = [(bad.to_string(), "v".to_string())].into_iter().collect();
            assert!(
                refused(pb::SecretSpec { labels, ..spec() }).contains("label key"),
                "{bad:?}"
            );
        }
        let labels = [("env".to_string(), "v".repeat(257))].into_iter().collect();
        assert!(refused(pb::SecretSpec { labels, ..spec() }).contains("label value"));
        assert!(refused(pb::SecretSpec {
            max_versions: u32::MAX,
            ..spec()
        })
        .contains("max_versions"));
        let rotation = Some(pb::RotationPolicy {
            period_ms: u64::MAX,
            ..Default::default()
        });
        assert!(refused(pb::SecretSpec { rotation, ..spec() }).contains("rotation.period_ms"));
    }
}
