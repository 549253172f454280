//! AES-256-GCM envelopes.
//!
//! The AAD binds the ciphertext to its tenant, secret name and version, so a ciphertext moved to
//! another secret or version fails to open. The data key's binding to a region's KMS key lives
//! in that KMS's own encryption context (see [`super::kms::KeyContext`]). A fresh 96-bit random
//! nonce is drawn for every seal; a data key seals one value (plus at most a few retries of the
//! same write), far below GCM's nonce-collision bounds.

use aes_gcm::aead::Aead;
use aes_gcm::aead::KeyInit;
use aes_gcm::aead::Payload;
use aes_gcm::Aes256Gcm;
use aes_gcm::Nonce;

use super::random_bytes;
use super::CryptoError;
use super::DataKey;
use super::SecretValue;
use crate::pb;

/// Envelope format written by this version.
pub const FORMAT_V1: u32 = 1;

/// Additional authenticated data of a value: `coffer/v1 \0 tenant \0 name \0 version(BE)`.
pub fn aad(name: &str, version: u64) -> Vec<u8> {
    let tenant = coffer_model::names::tenant(name);
    let mut a = Vec::with_capacity(16 + tenant.len() + name.len());
    a.extend_from_slice(b"coffer/v1\0");
    a.extend_from_slice(tenant.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a.push(0);
    a.extend_from_slice(&version.to_be_bytes());
    a
}

fn cipher(dek: &DataKey) -> Aes256Gcm {
    Aes256Gcm::new(dek.expose().into())
}

/// Seals `plaintext` for version `version` of `name`. The envelope has no wrapped keys yet.
pub fn seal(dek: &DataKey, plaintext: &[u8], name: &str, version: u64) -> Result<pb::Envelope, CryptoError> {
    let nonce = random_bytes::<12>()?;
    let ciphertext = cipher(dek)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad(name, version),
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(pb::Envelope {
        format: FORMAT_V1,
        nonce: nonce.to_vec(),
        ciphertext,
        wrapped_keys: vec![],
    })
}

/// Opens an envelope of version `version` of `name`.
pub fn open(dek: &DataKey, env: &pb::Envelope, name: &str, version: u64) -> Result<SecretValue, CryptoError> {
    if env.format != FORMAT_V1 {
        return Err(CryptoError::UnsupportedFormat(env.format));
    }
    if env.nonce.len() != 12 {
        return Err(CryptoError::Decrypt);
    }
    let plaintext = cipher(dek)
        .decrypt(
            Nonce::from_slice(&env.nonce),
            Payload {
                msg: &env.ciphertext,
                aad: &aad(name, version),
            },
        )
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(SecretValue::new(plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dek = DataKey::generate().unwrap();
        let env = seal(&dek, b"fake-db-password", "acme/db", 3).unwrap();
        assert!(!env.ciphertext.windows(16).any(|w| w == b"fake-db-password"));
        assert_eq!(open(&dek, &env, "acme/db", 3).unwrap().expose(), b"fake-db-password");
    }

    #[test]
    fn aad_binds_name_version_and_tenant() {
        let dek = DataKey::generate().unwrap();
        let env = seal(&dek, b"v", "acme/db", 3).unwrap();
        assert_eq!(open(&dek, &env, "acme/db", 4).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(open(&dek, &env, "acme/db2", 3).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(open(&dek, &env, "globex/db", 3).unwrap_err(), CryptoError::Decrypt);
        let other = DataKey::generate().unwrap();
        assert_eq!(open(&other, &env, "acme/db", 3).unwrap_err(), CryptoError::Decrypt);
        let mut tampered = env.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(open(&dek, &tampered, "acme/db", 3).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn nonces_are_fresh() {
        let dek = DataKey::generate().unwrap();
        let a = seal(&dek, b"v", "acme/db", 1).unwrap();
        let b = seal(&dek, b"v", "acme/db", 1).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }
}
