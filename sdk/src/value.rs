//! [`SecretValue`] and [`Secret`]: values that zero themselves and never print.

use std::sync::Arc;

use zeroize::Zeroizing;

/// A secret's bytes: zeroed when dropped, redacted in `Debug`.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue([redacted, {} bytes])", self.0.len())
    }
}

/// One version of a secret as a read returned it.
#[derive(Debug, Clone)]
pub struct Secret {
    pub name: String,
    pub version: u64,
    pub value: Arc<SecretValue>,
    /// The log index of the replica that served it.
    pub applied_index: u64,
    /// Served from the cache past its TTL because no node answered (within `max_stale`).
    pub stale: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_never_prints() {
        let s = Secret {
            name: "acme/db".into(),
            version: 1,
            value: Arc::new(SecretValue::new(b"fake-do-not-print".to_vec())),
            applied_index: 3,
            stale: false,
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("fake-do-not-print") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
