//! Envelope encryption (docs/architecture.md: Encryption).
//!
//! - [`SecretValue`]: plaintext, zeroized on drop, redacted in Debug.
//! - [`DataKey`]: a 256-bit data key (DEK), zeroized on drop, redacted in Debug.
//! - [`envelope`]: AES-256-GCM seal/open with AAD bound to (tenant, name, version).
//! - [`dek_cache`]: unwrapped DEKs kept in memory with a TTL so steady-state reads make no KMS
//!   calls.
//! - [`kms`]: the KMS trait, the `local` provider, and [`kms::KmsSet`] (one KMS per region).
//! - [`vault`]: the read and write paths that tie them together.

pub mod dek_cache;
pub mod envelope;
pub mod kms;
pub mod vault;

use std::fmt;

use secrecy::ExposeSecret;
use secrecy::SecretSlice;
use zeroize::Zeroizing;

/// A plaintext secret value. Debug and Display never show it; memory is zeroized on drop.
pub struct SecretValue(SecretSlice<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    pub fn len(&self) -> usize {
        self.expose().len()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue([redacted {} bytes])", self.len())
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A 256-bit AES data key. Zeroized on drop; Debug never shows it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut k[..]).map_err(|e| CryptoError::Rng(e.to_string()))?;
        Ok(Self(k))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKeyLength(bytes.len()))?;
        Ok(Self(Zeroizing::new(arr)))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the OS random number generator failed: {0}")]
    Rng(String),
    #[error("a data key must be 32 bytes, got {0}")]
    BadKeyLength(usize),
    #[error("unsupported envelope format {0}")]
    UnsupportedFormat(u32),
    #[error("decryption failed: the ciphertext, its key or its binding to this secret/version is wrong")]
    Decrypt,
    #[error("the decrypted value fails its crc32c check")]
    Checksum,
    #[error("the stored record names another secret or version than the one read; refusing to open it")]
    Misplaced,
    #[error("encryption failed")]
    Encrypt,
}

/// Fills a buffer from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| CryptoError::Rng(e.to_string()))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_types_redact_themselves() {
        let v = SecretValue::new(b"hunter2-fake".to_vec());
        assert!(!format!("{v:?}").contains("hunter2"));
        assert!(!format!("{v}").contains("hunter2"));
        let k = DataKey::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "DataKey([redacted])");
    }
}
