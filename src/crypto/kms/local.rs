//! The `local` KMS provider: a file keyring per region (docs/architecture.md: Encryption).
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
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::Duration;
use std::time::SystemTime;

use aes_gcm::aead::Aead;
use aes_gcm::aead::KeyInit;
use aes_gcm::aead::Payload;
use aes_gcm::Aes256Gcm;
use aes_gcm::Nonce;
use async_trait::async_trait;
use prost::Message;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::KeyContext;
use super::KeyRef;
use super::Kms;
use super::KmsError;
use crate::crypto::random_bytes;
use crate::crypto::DataKey;
use crate::pb;

pub const PROVIDER: &str = "local";
const KEYRING_FORMAT: u32 = 1;

/// How long a wrap trusts the keyring it holds before it looks at the file again. A stat per
/// region per write cost 1–2% of a node's CPU under writes; a wrap made within this long after
/// a rotation still uses the previous version, which keeps unwrapping, and `coffer kms rewrap`
/// (which asks [`Kms::current_key`], always a fresh look) moves it on.
const WRAP_REFRESH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "keyring {path} is missing; create it with `coffer kms create-local-keyring` (or `coffer dev`), \
         or set kms.create_missing_keyrings"
    )]
    Missing { path: PathBuf },
    #[error("region {region:?} must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    BadRegion { region: String },
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
    /// Identity of the file this was read from (inode, size, modification time): a rotation
    /// renames a new file into place, so it always changes.
    file: FileIdentity,
}

pub struct LocalKms {
    region: String,
    key_id: String,
    path: PathBuf,
    keyring: RwLock<Keyring>,
    /// When the file was last compared with `keyring` (see [`WRAP_REFRESH_EVERY`]).
    checked: Mutex<Instant>,
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
        let keyring = read_keyring(&path, region)?;
        Ok(Self {
            region: region.to_string(),
            key_id: key_id(region),
            path,
            keyring: RwLock::new(keyring),
            checked: Mutex::new(Instant::now()),
        })
    }

    /// [`Self::refresh`], unless the file was looked at less than [`WRAP_REFRESH_EVERY`] ago.
    fn refresh_if_due(&self) -> Result<(), KmsError> {
        if self.checked.lock().unwrap_or_else(|e| e.into_inner()).elapsed() < WRAP_REFRESH_EVERY {
            return Ok(());
        }
        self.refresh()
    }

    /// Re-reads the keyring file if it changed since it was read. A file that became
    /// unreadable or corrupt keeps the keys already held (and says so).
    fn refresh(&self) -> Result<(), KmsError> {
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if file_identity(&self.path) == self.read().file {
            return Ok(());
        }
        match read_keyring(&self.path, &self.region) {
            Ok(k) => {
                *self.keyring.write().unwrap_or_else(|e| e.into_inner()) = k;
                Ok(())
            }
            Err(e) => Err(KmsError::Unavailable {
                region: self.region.clone(),
                provider: PROVIDER.into(),
                key: self.key_id.clone(),
                reason: e.to_string(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keyring.read().unwrap_or_else(|e| e.into_inner())
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

fn file_identity(path: &Path) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.modified().ok()?))
}

type FileIdentity = Option<(u64, u64, SystemTime)>;

/// Reads, checks and decodes a keyring file: mode 0600, format, region, 32-byte keys, a key for
/// the current version. Also returns the file's identity as it was before the read.
fn load_ring(path: &Path, region: &str) -> Result<(ZeroizingRing, FileIdentity), KeyringError> {
    let io = |source| KeyringError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Taken before reading, so a file replaced meanwhile is read again on the next refresh.
    let identity = file_identity(path);
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyringError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io)?);
    let ring = decode_keyring(&bytes, path, region)?;
    let corrupt = |reason: String| KeyringError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(v) = ring.versions.iter().find(|v| v.key.len() != 32) {
        return Err(corrupt(format!("key version {} is not 32 bytes", v.version)));
    }
    if !ring.versions.iter().any(|v| v.version == ring.current_version) {
        return Err(corrupt(format!("current version {} has no key", ring.current_version)));
    }
    Ok((ring, identity))
}

fn read_keyring(path: &Path, region: &str) -> Result<Keyring, KeyringError> {
    let (ring, file) = load_ring(path, region)?;
    let keys = ring
        .versions
        .iter()
        .map(|v| {
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&v.key);
            (v.version, k)
        })
        .collect();
    Ok(Keyring {
        current: ring.current_version,
        keys,
        file,
    })
}

/// Decodes a keyring file. The returned message holds key bytes: it zeroizes them on drop.
fn decode_keyring(bytes: &[u8], path: &Path, region: &str) -> Result<ZeroizingRing, KeyringError> {
    let corrupt = |reason: String| KeyringError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let ring = ZeroizingRing(pb::LocalKeyring::decode(bytes).map_err(|e| corrupt(e.to_string()))?);
    if ring.format != KEYRING_FORMAT || ring.region != region {
        return Err(corrupt(format!(
            "format {} for region {:?}, expected format {KEYRING_FORMAT} for {region:?}",
            ring.format, ring.region
        )));
    }
    Ok(ring)
}

/// A decoded keyring whose key bytes are wiped when it drops.
struct ZeroizingRing(pb::LocalKeyring);

impl std::ops::Deref for ZeroizingRing {
    type Target = pb::LocalKeyring;
    fn deref(&self) -> &pb::LocalKeyring {
        &self.0
    }
}

impl Drop for ZeroizingRing {
    fn drop(&mut self) {
        for v in &mut self.0.versions {
            zeroize::Zeroize::zeroize(&mut v.key);
        }
    }
}

/// Writes `bytes` as `path`, mode 0600, atomically (a finished temporary renamed over it).
fn write_keyring_file(dir: &Path, path: &Path, region: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{region}.keyring.{}.rotate.tmp", std::process::id()));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Adds a fresh key version to `<dir>/<region>.keyring` and makes it current. Older versions
/// stay, so everything wrapped under them still unwraps; `coffer kms rewrap` then moves every
/// wrap of the region to the new version. Returns the new version.
pub fn add_key_version(dir: &Path, region: &str) -> Result<u32, KeyringError> {
    let path = keyring_path(dir, region);
    if !path.exists() {
        return Err(KeyringError::Missing { path });
    }
    let io = |source| KeyringError::Io {
        path: path.clone(),
        source,
    };
    let (mut ring, _) = load_ring(&path, region)?;
    let version = ring.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    let key = Zeroizing::new(random_bytes::<32>().map_err(|e| io(std::io::Error::other(e.to_string())))?);
    ring.0.versions.push(pb::LocalKeyVersion {
        version,
        key: key.to_vec(),
        created_at_ms: crate::time::now_ms(),
    });
    ring.0.current_version = version;
    let encoded = Zeroizing::new(ring.encode_to_vec());
    write_keyring_file(dir, &path, region, &encoded).map_err(io)?;
    Ok(version)
}

/// `coffer kms create-local-keyring`: creates the region's keyring unless there is one, and
/// then checks that the keyring in place loads (mode, format, region). Returns whether this
/// call made it.
pub fn ensure_keyring(dir: &Path, region: &str) -> Result<bool, KeyringError> {
    if !coffer_model::names::is_valid_segment(region) {
        return Err(KeyringError::BadRegion {
            region: region.to_string(),
        });
    }
    let path = keyring_path(dir, region);
    let made = !path.exists();
    if made {
        create_keyring(dir, region)?;
    }
    read_keyring(&path, region)?;
    Ok(made)
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

    fn key_ref(&self) -> &str {
        &self.key_id
    }

    async fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError> {
        // A rotated keyring is picked up here, within `WRAP_REFRESH_EVERY`.
        if let Err(e) = self.refresh_if_due() {
            tracing::warn!(region = %self.region, "keeping the keys already read: {e}");
        }
        let ring = self.read();
        let version = ring.current;
        let kek = &ring.keys[&version];
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
        if !self.read().keys.contains_key(&wrapped.key_version) {
            // Another node may have rotated the keyring since this one read it.
            self.refresh()?;
        }
        let ring = self.read();
        let kek = ring
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

    async fn current_key(&self) -> Result<KeyRef, KmsError> {
        self.refresh()?;
        Ok(KeyRef {
            key_id: self.key_id.clone(),
            key_version: self.read().current,
        })
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

    #[tokio::test]
    async fn a_new_key_version_wraps_from_then_on_and_old_wraps_still_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open(dir.path(), "us-east", true).unwrap();
        let ctx = KeyContext::for_secret("acme/db");
        let dek = DataKey::generate().unwrap();
        let old = kms.wrap(&dek, &ctx).await.unwrap();
        assert_eq!(old.key_version, 1);
        assert_eq!(add_key_version(dir.path(), "us-east").unwrap(), 2);
        let mode = fs::metadata(keyring_path(dir.path(), "us-east"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The running instance notices the rotated file.
        let cur = kms.current_key().await.unwrap();
        assert_eq!(cur.key_version, 2);
        assert!(!cur.matches(&old));
        let new = kms.wrap(&dek, &ctx).await.unwrap();
        assert!(cur.matches(&new));
        assert_eq!(kms.unwrap(&old, &ctx).await.unwrap().expose(), dek.expose());
        assert_eq!(kms.unwrap(&new, &ctx).await.unwrap().expose(), dek.expose());
        // Another instance that read the file before the rotation unwraps the new wrap too.
        let dir2 = tempfile::tempdir().unwrap();
        let a = LocalKms::open(dir2.path(), "r", true).unwrap();
        add_key_version(dir2.path(), "r").unwrap();
        let b = LocalKms::open(dir2.path(), "r", false).unwrap();
        let w = b.wrap(&dek, &ctx).await.unwrap();
        assert_eq!(a.unwrap(&w, &ctx).await.unwrap().expose(), dek.expose());
    }

    #[tokio::test(start_paused = true)]
    async fn wraps_look_at_the_keyring_file_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open(dir.path(), "us-east", true).unwrap();
        let ctx = KeyContext::for_secret("acme/db");
        let dek = DataKey::generate().unwrap();
        add_key_version(dir.path(), "us-east").unwrap();
        // Within the interval a wrap keeps the version it holds, and it still unwraps.
        let held = kms.wrap(&dek, &ctx).await.unwrap();
        assert_eq!(held.key_version, 1);
        tokio::time::advance(WRAP_REFRESH_EVERY - Duration::from_millis(1)).await;
        assert_eq!(kms.wrap(&dek, &ctx).await.unwrap().key_version, 1);
        // Once it has passed, the next wrap reads the rotated file by itself.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(kms.wrap(&dek, &ctx).await.unwrap().key_version, 2);
        assert_eq!(kms.unwrap(&held, &ctx).await.unwrap().expose(), dek.expose());
        // `current_key` (what rewrap asks) always looks, whatever the interval.
        add_key_version(dir.path(), "us-east").unwrap();
        assert_eq!(kms.current_key().await.unwrap().key_version, 3);
        assert_eq!(kms.wrap(&dek, &ctx).await.unwrap().key_version, 3);
    }

    #[test]
    fn ensure_keyring_makes_one_once_keeps_it_and_checks_what_it_finds() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_keyring(dir.path(), "eu-west").unwrap(), "made");
        let p = keyring_path(dir.path(), "eu-west");
        let first = fs::read(&p).unwrap();
        assert!(!ensure_keyring(dir.path(), "eu-west").unwrap(), "kept");
        assert_eq!(fs::read(&p).unwrap(), first, "the key is never replaced");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ensure_keyring(dir.path(), "eu-west"),
            Err(KeyringError::Permissions { .. })
        ));
        for bad in ["../x", "EU", ""] {
            assert!(matches!(
                ensure_keyring(dir.path(), bad),
                Err(KeyringError::BadRegion { .. })
            ));
        }
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
