//! What a state is made of: records and bytes by key space (`coffer_model::keys::space_of`),
//! counted from a backup's pairs. `coffer snapshot inspect` shows it; the benchmark's disk
//! report uses it to say where a write's bytes go.

use std::collections::BTreeMap;

use serde_json::json;
use serde_json::Value;

/// Records and bytes of one key space.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub records: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// Counts by key space. Keys and values are only measured, never kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    pub spaces: BTreeMap<&'static str, Space>,
}

impl Census {
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let s = self.spaces.entry(coffer_model::keys::space_of(key)).or_default();
        s.records += 1;
        s.key_bytes += key.len() as u64;
        s.value_bytes += value.len() as u64;
    }

    /// Every space's records, bytes (keys and values) and bytes per record.
    pub fn to_json(&self) -> Value {
        self.spaces
            .iter()
            .map(|(name, s)| {
                let bytes = s.key_bytes + s.value_bytes;
                (
                    name.to_string(),
                    json!({
                        "records": s.records,
                        "bytes": bytes,
                        "bytes_per_record": bytes.checked_div(s.records).unwrap_or(0),
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// One line: `versions 1200 records, 880 KB (733 B each); ...`, largest first.
    pub fn line(&self) -> String {
        let mut spaces: Vec<_> = self.spaces.iter().collect();
        spaces.sort_by_key(|(_, s)| std::cmp::Reverse(s.key_bytes + s.value_bytes));
        spaces
            .iter()
            .map(|(name, s)| {
                let bytes = s.key_bytes + s.value_bytes;
                format!(
                    "{name} {} records, {bytes} bytes ({} each)",
                    s.records,
                    bytes.checked_div(s.records).unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_counted_under_their_key_space() {
        let mut c = Census::default();
        c.add(&coffer_model::keys::version("acme/a", 1), &[0; 100]);
        c.add(&coffer_model::keys::version("acme/a", 2), &[0; 300]);
        c.add(&coffer_model::keys::secret("acme/a"), &[0; 50]);
        let v = c.spaces["versions"];
        assert_eq!((v.records, v.value_bytes), (2, 400));
        assert_eq!(c.spaces["secrets"].records, 1);
        let j = c.to_json();
        let key_bytes = coffer_model::keys::version("acme/a", 1).len() as u64;
        assert_eq!(j["versions"]["bytes"], 400 + 2 * key_bytes);
        assert_eq!(j["versions"]["bytes_per_record"], (400 + 2 * key_bytes) / 2);
        assert!(c.line().starts_with("versions 2 records"), "{}", c.line());
    }
}
