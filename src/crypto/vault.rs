//! The encryption side of reads and writes.
//!
//! Write: [`Vault::prepare`] draws a fresh DEK and wraps it under every region's KMS key that
//! answers (at least one); [`Sealer::seal`] encrypts the value for a version number (re-sealing
//! for another number after a version race needs no KMS call); once the write commits,
//! [`Vault::remember`] caches the DEK so reads on the writing node need no KMS call either.
//! Read: [`Vault::open`] takes the DEK from the cache or unwraps it (local region's KMS, then the
//! fallback if allowed) and decrypts under the name and version the read asked for (GCM
//! authenticates the value; a legacy record's crc32c is checked too). Never fails open: without
//! the DEK there is no value.

use std::sync::Arc;
use std::time::Duration;

use super::dek_cache::DekCache;
use super::envelope;
use super::kms::KeyContext;
use super::kms::KmsError;
use super::kms::KmsSet;
use super::CryptoError;
use super::DataKey;
use super::SecretValue;
use crate::error::ApiError;
use crate::pb;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            // Names the region and key; a client may retry or read in another region.
            VaultError::Kms(k) => ApiError::KmsUnavailable(k.to_string()),
            VaultError::Crypto(CryptoError::Rng(r)) => ApiError::Unavailable(format!("random number generator: {r}")),
            VaultError::Crypto(c) => ApiError::Internal(format!("stored value failed verification: {c}")),
        }
    }
}

pub struct Vault {
    kms: Arc<KmsSet>,
    cache: DekCache,
}

/// A DEK already wrapped for every region, ready to seal one value.
pub struct Sealer {
    dek: DataKey,
    wraps: Vec<pb::WrappedKey>,
    missing: Vec<String>,
    name: String,
}

impl Sealer {
    /// Regions whose KMS did not wrap this DEK (the rewrap job adds them later).
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    pub fn seal(&self, plaintext: &SecretValue, version: u64) -> Result<pb::Envelope, CryptoError> {
        let mut env = envelope::seal(&self.dek, plaintext.expose(), &self.name, version)?;
        env.wrapped_keys = self.wraps.clone();
        Ok(env)
    }
}

impl Vault {
    pub fn new(kms: Arc<KmsSet>, cache_ttl: Duration, cache_capacity: usize) -> Self {
        Self {
            kms,
            cache: DekCache::new(cache_ttl, cache_capacity),
        }
    }

    pub fn kms(&self) -> &KmsSet {
        &self.kms
    }

    pub async fn prepare(&self, name: &str) -> Result<Sealer, VaultError> {
        let dek = DataKey::generate()?;
        let w = self.kms.wrap_all(&dek, &KeyContext::for_secret(name)).await?;
        if !w.missing.is_empty() {
            tracing::warn!(
                secret = name,
                missing = ?w.missing,
                "writing without these regions' wraps; the rewrap job adds them when their KMS answers"
            );
        }
        Ok(Sealer {
            dek,
            wraps: w.wraps,
            missing: w.missing,
            name: name.to_string(),
        })
    }

    /// Caches the DEK of a version this node just wrote (sealed with `nonce`).
    pub fn remember(&self, sealer: &Sealer, version: u64, nonce: &[u8]) {
        self.cache.insert(&sealer.name, version, nonce, sealer.dek.clone());
    }

    /// The DEK of an envelope for the rewrap job: the cache, else any region's KMS.
    pub async fn dek_for_rewrap(&self, name: &str, version: u64, env: &pb::Envelope) -> Result<DataKey, KmsError> {
        if let Some(k) = self.cache.get(name, version, &env.nonce) {
            return Ok(k);
        }
        self.kms.unwrap_any(env, &KeyContext::for_secret(name)).await
    }

    /// Decrypts the stored record of version `version` of `name`, the version a read asked
    /// for (and checks the crc32c of a legacy record that has one). The envelope opens under the requested name and version
    /// only (its AAD and the data key's KMS context bind them), never under what the record
    /// says about itself: a record copied to another secret's or version's key is refused.
    pub async fn open(&self, name: &str, version: u64, v: &pb::SecretVersion) -> Result<SecretValue, VaultError> {
        if v.name != name || v.version != version {
            return Err(CryptoError::Misplaced.into());
        }
        let env = v.envelope.as_ref().ok_or(CryptoError::Decrypt)?;
        let value = self.open_envelope(name, version, env).await?;
        if v.crc32c != 0 && crc32c::crc32c(value.expose()) != v.crc32c {
            return Err(CryptoError::Checksum.into());
        }
        Ok(value)
    }

    /// Decrypts an envelope sealed for (`name`, `version`), unwrapping its data key (local
    /// region's KMS, then the fallback if allowed) unless the key is cached.
    pub async fn open_envelope(&self, name: &str, version: u64, env: &pb::Envelope) -> Result<SecretValue, VaultError> {
        let cached = self.cache.get(name, version, &env.nonce);
        metrics::counter!("coffer_dek_cache_lookups_total", "result" => if cached.is_some() { "hit" } else { "miss" })
            .increment(1);
        self.kms.usage().cache_lookup(cached.is_some());
        let dek = match cached {
            Some(k) => k,
            None => {
                let k = self.kms.unwrap_for_read(env, &KeyContext::for_secret(name)).await?;
                self.cache.insert(name, version, &env.nonce, k.clone());
                k
            }
        };
        Ok(envelope::open(&dek, env, name, version)?)
    }

    /// Drops a cached DEK (after a version is destroyed).
    pub fn forget(&self, name: &str, version: u64) {
        self.cache.remove(name, version);
    }

    /// Drops every cached DEK (when this node cannot tell which versions were destroyed).
    pub fn forget_all(&self) {
        self.cache.clear();
    }

    /// How many DEKs are cached.
    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kms::fake::FakeKms;
    use crate::crypto::kms::Kms;
    use crate::crypto::kms::KmsPolicy;

    fn vault() -> Vault {
        let kms = FakeKms::new("us");
        let set = KmsSet::new("us", vec![kms as Arc<dyn Kms>], KmsPolicy::default()).unwrap();
        Vault::new(Arc::new(set), Duration::from_secs(60), 100)
    }

    async fn record(v: &Vault, name: &str, version: u64, value: &[u8]) -> pb::SecretVersion {
        let sealer = v.prepare(name).await.unwrap();
        let value = SecretValue::new(value.to_vec());
        pb::SecretVersion {
            name: name.into(),
            version,
            envelope: Some(sealer.seal(&value, version).unwrap()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_record_opens_only_as_the_name_and_version_it_was_sealed_for() {
        let v = vault();
        let a1 = record(&v, "acme/a", 1, b"fake-a1").await;
        assert_eq!(v.open("acme/a", 1, &a1).await.unwrap().expose(), b"fake-a1");

        // The record copied to another tenant's key, or to another version of the same secret.
        for (name, version) in [("other/b", 1), ("acme/a", 2)] {
            let e = v.open(name, version, &a1).await.unwrap_err();
            assert!(matches!(e, VaultError::Crypto(CryptoError::Misplaced)), "{e}");
            // Its self-description edited to match: the AAD still binds the original place.
            let edited = pb::SecretVersion {
                name: name.into(),
                version,
                ..a1.clone()
            };
            let e = vault().open(name, version, &edited).await.unwrap_err();
            assert!(matches!(e, VaultError::Crypto(CryptoError::Decrypt)), "{e}");
        }
    }
}
