//! Consistency tokens: `ct1_<hex of ConsistencyToken>`.
//!
//! A token names a log index the cluster had committed, the cluster it belongs to, and a MAC
//! (HMAC-SHA256 truncated to 128 bits) under the cluster's token key. The key is sealed in the
//! replicated state like a secret value (wrapped under every region's KMS key), so only the
//! nodes can mint tokens: a client cannot forge a far-future index to stall reads.
//!
//! The same key MACs rotation hook tokens (`rot1_<hex>`, bound to the cluster, a secret and a
//! run: what a rotator presents with the PENDING value it writes) and put values (the request
//! table's comparison), each under its own domain label.

use hmac::Hmac;
use hmac::Mac;
use prost::Message;
use sha2::Sha256;

use crate::crypto::SecretValue;
use crate::error::ApiError;
use crate::pb;

pub const PREFIX: &str = "ct1_";
const MAC_BYTES: usize = 16;

/// Name under which the token key is sealed (not a valid secret name, so no clash).
pub const TOKEN_KEY_NAME: &str = "_cluster/token-key";

/// Prefix of a rotation hook token ([`TokenKey::rotation_token`]).
pub const ROTATION_PREFIX: &str = "rot1_";

/// A hook call's token: it redacts itself in Debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct RotationToken(String);

impl RotationToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RotationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotationToken(redacted)")
    }
}

pub struct TokenKey {
    cluster_id: String,
    key: SecretValue,
}

impl TokenKey {
    pub fn new(cluster_id: &str, key: SecretValue) -> Self {
        Self {
            cluster_id: cluster_id.to_string(),
            key,
        }
    }

    /// HMAC-SHA256 under the key of `parts`, each but the last followed by a NUL, truncated
    /// to [`MAC_BYTES`]. The first part is a domain label.
    fn mac_of(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        // HMAC takes keys of any length; new_from_slice cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose()).expect("hmac key");
        for (i, p) in parts.iter().enumerate() {
            m.update(p);
            if i + 1 < parts.len() {
                m.update(b"\0");
            }
        }
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    fn mac(&self, cluster_id: &str, index: u64) -> [u8; MAC_BYTES] {
        self.mac_of(&[b"coffer/token/v1", cluster_id.as_bytes(), &index.to_be_bytes()])
    }

    /// HMAC-SHA256 of a value written to `name` under a key of its own (domain-separated from
    /// consistency tokens): the request table compares it between attempts of one request id
    /// ([`pb::AddVersion::value_mac`]).
    pub fn value_mac(&self, name: &str, value: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length; new_from_slice cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose()).expect("hmac key");
        m.update(b"coffer/request-value/v1\0");
        m.update(name.as_bytes());
        m.update(b"\0");
        m.update(value);
        m.finalize().into_bytes().to_vec()
    }

    fn rotation_mac(&self, name: &str, run: u64) -> [u8; MAC_BYTES] {
        self.mac_of(&[
            b"coffer/rotation-hook/v1",
            self.cluster_id.as_bytes(),
            name.as_bytes(),
            &run.to_be_bytes(),
        ])
    }

    /// The token a hook call for run `run` of `name` carries: it lets the rotator's put land
    /// as that run's PENDING value and nothing else (a capability bound to the secret, the run
    /// and this cluster; the run's state machine makes it good for one value).
    pub fn rotation_token(&self, name: &str, run: u64) -> RotationToken {
        RotationToken(format!(
            "{ROTATION_PREFIX}{}",
            hex::encode(self.rotation_mac(name, run))
        ))
    }

    /// Whether `token` is this cluster's hook token for run `run` of `name`.
    pub fn verify_rotation_token(&self, name: &str, run: u64, token: &str) -> bool {
        let Some(mac) = token
            .trim()
            .strip_prefix(ROTATION_PREFIX)
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        let expected = self.rotation_mac(name, run);
        same_mac(&mac, &expected)
    }

    pub fn mint(&self, index: u64) -> String {
        let t = pb::ConsistencyToken {
            cluster_id: self.cluster_id.clone(),
            index,
            mac: self.mac(&self.cluster_id, index).to_vec(),
        };
        format!("{PREFIX}{}", hex::encode(t.encode_to_vec()))
    }

    /// The index a genuine token of this cluster names.
    pub fn verify(&self, token: &str) -> Result<u64, ApiError> {
        let bad =
            || ApiError::invalid("malformed consistency token; pass a token exactly as a write or read returned it");
        let hexed = token.trim().strip_prefix(PREFIX).ok_or_else(bad)?;
        let bytes = hex::decode(hexed).map_err(|_| bad())?;
        let t = pb::ConsistencyToken::decode(&bytes[..]).map_err(|_| bad())?;
        if t.cluster_id != self.cluster_id {
            return Err(ApiError::invalid(format!(
                "the consistency token belongs to cluster {:?}, not this one ({:?})",
                t.cluster_id, self.cluster_id
            )));
        }
        let expected = self.mac(&t.cluster_id, t.index);
        if !same_mac(&t.mac, &expected) {
            return Err(ApiError::invalid(
                "the consistency token is forged or corrupted (its MAC does not match)",
            ));
        }
        Ok(t.index)
    }
}

/// Whether `got` is `expected`, in time independent of where they differ.
fn same_mac(got: &[u8], expected: &[u8; MAC_BYTES]) -> bool {
    got.len() == MAC_BYTES && got.iter().zip(expected.iter()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cluster: &str, b: u8) -> TokenKey {
        TokenKey::new(cluster, SecretValue::new(vec![b; 32]))
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = key("prod", 1);
        let t = k.mint(42);
        assert!(t.starts_with(PREFIX));
        assert_eq!(k.verify(&t).unwrap(), 42);
        // Another cluster's token.
        let other = key("staging", 1).mint(42);
        assert!(k.verify(&other).unwrap_err().to_string().contains("belongs to cluster"));
        // Same cluster id, another key: forged.
        let forged = key("prod", 2).mint(1_000_000);
        assert!(k.verify(&forged).unwrap_err().to_string().contains("forged"));
        // A far-future index with the MAC of a real token.
        let real = pb::ConsistencyToken::decode(&hex::decode(&t[PREFIX.len()..]).unwrap()[..]).unwrap();
        let bumped = pb::ConsistencyToken {
            index: 1_000_000,
            ..real
        };
        let bumped = format!("{PREFIX}{}", hex::encode(bumped.encode_to_vec()));
        assert!(k.verify(&bumped).unwrap_err().to_string().contains("forged"));
        for junk in ["", "ct1_", "ct1_zz", "hello", "ct1_00ff"] {
            assert!(k.verify(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_rotation_token_is_good_for_its_secret_run_and_cluster_only() {
        let k = key("prod", 1);
        let t = k.rotation_token("acme/db", 3);
        assert!(t.expose().starts_with(ROTATION_PREFIX));
        assert!(k.verify_rotation_token("acme/db", 3, t.expose()));
        assert!(!k.verify_rotation_token("acme/db", 4, t.expose()), "another run");
        assert!(!k.verify_rotation_token("acme/dbx", 3, t.expose()), "another secret");
        assert!(
            !key("staging", 1).verify_rotation_token("acme/db", 3, t.expose()),
            "another cluster"
        );
        assert!(
            !key("prod", 2).verify_rotation_token("acme/db", 3, t.expose()),
            "another key"
        );
        for junk in ["", "rot1_", "rot1_zz", &t.expose()[1..], "ct1_00"] {
            assert!(!k.verify_rotation_token("acme/db", 3, junk), "{junk:?}");
        }
        assert_eq!(format!("{t:?}"), "RotationToken(redacted)");
    }
}
