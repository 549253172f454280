//! Rules for secret names, list prefixes and alias names (docs/architecture.md: Data model).
//!
//! Names are `<tenant>/<path…>`: 2 to 16 segments, each matching `[a-z0-9][a-z0-9._-]{0,62}`,
//! at most 512 bytes. The rules reject by construction `..`, `.`, empty segments, leading or
//! trailing slashes, upper case, percent-encoding and any non-ASCII look-alike.

pub const MAX_NAME_BYTES: usize = 512;
pub const MAX_SEGMENTS: usize = 16;
pub const MAX_SEGMENT_BYTES: usize = 63;

/// Reserved aliases, kept in upper case.
pub const CURRENT: &str = "CURRENT";
pub const PREVIOUS: &str = "PREVIOUS";
pub const PENDING: &str = "PENDING";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {0} bytes; the limit is {MAX_NAME_BYTES}")]
    TooLong(usize),
    #[error("name must be <tenant>/<path>, e.g. acme/prod/db-password")]
    NoPath,
    #[error("name has {0} segments; the limit is {MAX_SEGMENTS}")]
    TooManySegments(usize),
    #[error("segment {index} ({shown}) must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    BadSegment { index: usize, shown: String },
    #[error("alias {0} must be CURRENT, PREVIOUS, PENDING or match [a-z0-9][a-z0-9._-]{{0,62}}")]
    BadAlias(String),
}

/// Shows user input in an error without echoing control characters or huge strings.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_default).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    format!("\"{out}\"")
}

pub fn is_valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SEGMENT_BYTES
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
}

/// Validates a full secret name.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(NameError::TooManySegments(segments.len()));
    }
    for (i, s) in segments.iter().enumerate() {
        if !is_valid_segment(s) {
            return Err(NameError::BadSegment {
                index: i + 1,
                shown: shown(s),
            });
        }
    }
    if segments.len() < 2 {
        return Err(NameError::NoPath);
    }
    Ok(())
}

/// The tenant of a valid name (its first segment).
pub fn tenant(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// Validates a listing prefix: a tenant, optionally followed by `/` and a partial path.
/// Every complete segment must be valid; the last, partial one may be empty.
pub fn validate_prefix(prefix: &str) -> Result<(), NameError> {
    if prefix.is_empty() {
        return Err(NameError::Empty);
    }
    if prefix.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(prefix.len()));
    }
    let segments: Vec<&str> = prefix.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(NameError::TooManySegments(segments.len()));
    }
    let last = segments.len() - 1;
    for (i, s) in segments.iter().enumerate() {
        // The partial last segment of "acme/" is empty; a partial segment is otherwise whole.
        if i == last && i > 0 && s.is_empty() {
            continue;
        }
        if !is_valid_segment(s) {
            return Err(NameError::BadSegment {
                index: i + 1,
                shown: shown(s),
            });
        }
    }
    Ok(())
}

/// Normalises and validates an alias: reserved aliases in any case become upper case; user
/// aliases follow the segment rule.
pub fn normalize_alias(alias: &str) -> Result<String, NameError> {
    let upper = alias.to_ascii_uppercase();
    if [CURRENT, PREVIOUS, PENDING].contains(&upper.as_str()) {
        return Ok(upper);
    }
    if is_valid_segment(alias) {
        Ok(alias.to_string())
    } else {
        Err(NameError::BadAlias(shown(alias)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_design_examples() {
        for ok in ["acme/prod/payments/stripe-api-key", "shared/ca.pem", "a/b", "0/x_"] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        validate_name(&format!("a/{}", "b".repeat(63))).unwrap();
    }

    #[test]
    fn rejects_path_tricks_and_bad_shapes() {
        for bad in [
            "",
            "acme",
            "Acme/../x",
            "acme/../x",
            "acme/./x",
            "acme//x",
            "/acme/x",
            "acme/x/",
            "acme/X",
            "acme/%2F",
            "acme/x y",
            "acme/\u{0430}pi", // Cyrillic 'а'
            "acme/x\0y",
            "acme/.hidden",
            "acme/-x",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_name(&format!("a/{}", "b".repeat(64))).is_err());
        let seventeen = vec!["a"; 17].join("/");
        assert_eq!(validate_name(&seventeen), Err(NameError::TooManySegments(17)));
        let long = format!("a/{}", vec!["b".repeat(60); 9].join("/"));
        assert!(matches!(validate_name(&long), Err(NameError::TooLong(_))));
    }

    #[test]
    fn error_messages_escape_input() {
        let e = validate_name("acme/\u{1b}[31mred").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn prefixes() {
        for ok in ["acme", "acme/", "acme/prod", "acme/prod/"] {
            assert_eq!(validate_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/", "acme//", "Acme/", "acme/../", "../acme"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn aliases() {
        assert_eq!(normalize_alias("current").unwrap(), "CURRENT");
        assert_eq!(normalize_alias("Pending").unwrap(), "PENDING");
        assert_eq!(normalize_alias("next").unwrap(), "next");
        assert!(normalize_alias("Next").is_err());
        assert!(normalize_alias("").is_err());
        assert!(normalize_alias("a/b").is_err());
    }
}
