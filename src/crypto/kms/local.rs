//! The `local` KMS provider: a file keyring per region (DESIGN.md: Encryption).
//!
//! `<dir>/<region>.keyring` holds a protobuf [`pb::LocalKeyring`]: versioned 256-bit
//! key-encryption keys. Files are created with mode 0600, and a keyring readable by group or
//! others is refused. Wrapping uses the current version; every version still unwraps, so
//! rotation never strands data.
//!
//! A wrapped key's blob is `nonce(12) || AES-256-GCM(kek, dek)`, with AAD
//! `coffer/local-kms/v1 \0 region \0 key_id \0 key_version(BE) \0 tenant \0 name`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;

use aes_gcm::aead::Aead;
use aes_gcm::aead::KeyInit;
use aes_gcm::aead::Payload;
use aes_gcm::Aes256Gcm;
use aes_gcm::Nonce;
use async_trait::async_trait;
use prost::Message;
use zeroize::Zeroizing;

use super::KeyContext;
use super::Kms;
use super::KmsError;
use crate::crypto::random_bytes;
use crate::crypto::DataKey;
use crate::pb;

pub const PROVIDER: &str = "local";
const KEYRING_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring {path} is missing; create it with `coffer dev` or set kms.create_missing_keyrings")]
    Missing { path: PathBuf },
    #[error("keyring {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("keyring {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("keyring {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

struct Keyring {
    current: u32,
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

pub struct LocalKms {
    region: String,
    key_id: String,
    keyring: Keyring,
}

/// Key id of a region's local key.
pub fn key_id(region: &str) -> String {
    format!("local/{region}")
}

pub fn keyring_path(dir: &Path, region: &str) -> PathBuf {
    dir.join(format!("{region}.keyring"))
}

impl LocalKms {
    /// Opens `<dir>/<region>.keyring`; with `create_missing`, creates it with one fresh key.
    pub fn open(dir: &Path, region: &str, create_missing: bool) -> Result<Self, KeyringError> {
        let path = keyring_path(dir, region);
        if !path.exists() {
            if !create_missing {
                return Err(KeyringError::Missing { path });
            }
            create_keyring(dir, region)?;
        }
        let io = |source| KeyringError::Io {
            path: path.clone(),
            source,
        };
        let mode = fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::Permissions { path, mode });
        }
        let bytes = Zeroizing::new(fs::read(&path).map_err(io)?);
        let corrupt = |reason: String| KeyringError::Corrupt {
            path: path.clone(),
            reason,
        };
        let ring = pb::LocalKeyring::decode(&bytes[..]).map_err(|e| corrupt(e.to_string()))?;
        if ring.format != KEYRING_FORMAT || ring.region != region {
            return Err(corrupt(format!(
                "format {} for region {:?}, expected format {KEYRING_FORMAT} for {region:?}",
                ring.format, ring.region
            )));
        }
        let mut keys = BTreeMap::new();
        for mut v in ring.versions {
            let key = Zeroizing::new(v.key.clone());
            zeroize::Zeroize::zeroize(&mut v.key);
            let arr: [u8; 32] = key[..]
                .try_into()
                .map_err(|_| corrupt(format!("key version {} is not 32 bytes", v.version)))?;
            keys.insert(v.version, Zeroizing::new(arr));
        }
        if !keys.contains_key(&ring.current_version) {
            return Err(corrupt(format!("current version {} has no key", ring.current_version)));
        }
        Ok(Self {
            region: region.to_string(),
            key_id: key_id(region),
            keyring: Keyring {
                current: ring.current_version,
                keys,
            },
        })
    }

    fn aad(&self, version: u32, ctx: &KeyContext) -> Vec<u8> {
        let mut a = b"coffer/local-kms/v1\0".to_vec();
        a.extend_from_slice(self.region.as_bytes());
        a.push(0);
        a.extend_from_slice(self.key_id.as_bytes());
        a.push(0);
        a.extend_from_slice(&version.to_be_bytes());
        a.push(0);
        a.extend_from_slice(&ctx.to_bytes());
        a
    }

    fn refused(&self, reason: &str) -> KmsError {
        KmsError::Refused {
            region: self.region.clone(),
            provider: PROVIDER.into(),
            key: self.key_id.clone(),
            reason: reason.into(),
        }
    }
}

/// Creates `<dir>/<region>.keyring` with one fresh key, mode 0600. Safe against concurrent
/// creators: the file appears complete (hard link of a finished temporary) or not at all.
pub fn create_keyring(dir: &Path, region: &str) -> Result<(), KeyringError> {
    let path = keyring_path(dir, region);
    let io = |source| KeyringError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let key = random_bytes::<32>().map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let ring = pb::LocalKeyring {
        format: KEYRING_FORMAT,
        region: region.to_string(),
        current_version: 1,
        versions: vec![pb::LocalKeyVersion {
            version: 1,
            key: key.to_vec(),
            created_at_ms: crate::time::now_ms(),
        }],
    };
    let bytes = Zeroizing::new(ring.encode_to_vec());
    let tmp = dir.join(format!(".{region}.keyring.{}.tmp", std::process::id()));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(e)),
    }
}

#[async_trait]
impl Kms for LocalKms {
    fn region(&self) -> &str {
        &self.region
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError> {
        let version = self.keyring.current;
        let kek = &self.keyring.keys[&version];
        let nonce = random_bytes::<12>().map_err(|e| self.refused(&e.to_string()))?;
        let ct = Aes256Gcm::new(kek[..].into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &dek.expose()[..],
                    aad: &self.aad(version, ctx),
                },
            )
            .map_err(|_| self.refused("wrap failed"))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(pb::WrappedKey {
            region: self.region.clone(),
            provider: PROVIDER.into(),
            key_id: self.key_id.clone(),
            key_version: version,
            blob,
        })
    }

    async fn unwrap(&self, wrapped: &pb::WrappedKey, ctx: &KeyContext) -> Result<DataKey, KmsError> {
        if wrapped.region != self.region || wrapped.key_id != self.key_id {
            return Err(self.refused("wrapped key belongs to another region or key"));
        }
        let kek = self
            .keyring
            .keys
            .get(&wrapped.key_version)
            .ok_or_else(|| self.refused(&format!("key version {} is not in the keyring", wrapped.key_version)))?;
        if wrapped.blob.len() < 12 {
            return Err(self.refused("wrapped key is truncated"));
        }
        let (nonce, ct) = wrapped.blob.split_at(12);
        let dek = Zeroizing::new(
            Aes256Gcm::new(kek[..].into())
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: &self.aad(wrapped.key_version, ctx),
                    },
                )
                .map_err(|_| self.refused("unwrap failed: wrong key or context"))?,
        );
        DataKey::from_bytes(&dek).map_err(|e| self.refused(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrap_unwrap_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open(dir.path(), "us-east", true).unwrap();
        let mode = fs::metadata(keyring_path(dir.path(), "us-east"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dek = DataKey::generate().unwrap();
        let ctx = KeyContext::for_secret("acme/db");
        let w = kms.wrap(&dek, &ctx).await.unwrap();
        assert_eq!(w.region, "us-east");
        assert!(!w.blob.windows(32).any(|x| x == dek.expose()));
        assert_eq!(kms.unwrap(&w, &ctx).await.unwrap().expose(), dek.expose());
        // Bound to the secret: the same wrapped key does not open for another secret.
        assert!(kms.unwrap(&w, &KeyContext::for_secret("acme/db2")).await.is_err());
        // Another region's key cannot open it.
        let eu = LocalKms::open(dir.path(), "eu-west", true).unwrap();
        assert!(eu.unwrap(&w, &ctx).await.is_err());
        // Reopening reads the same key.
        let again = LocalKms::open(dir.path(), "us-east", false).unwrap();
        assert_eq!(again.unwrap(&w, &ctx).await.unwrap().expose(), dek.expose());
    }

    #[test]
    fn refuses_missing_open_and_corrupt_keyrings() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            LocalKms::open(dir.path(), "r", false),
            Err(KeyringError::Missing { .. })
        ));
        create_keyring(dir.path(), "r").unwrap();
        let p = keyring_path(dir.path(), "r");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            LocalKms::open(dir.path(), "r", false),
            Err(KeyringError::Permissions { .. })
        ));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, b"\xff\xff garbage").unwrap();
        assert!(matches!(
            LocalKms::open(dir.path(), "r", false),
            Err(KeyringError::Corrupt { .. })
        ));
    }
}
