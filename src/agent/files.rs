//! Replacing a rendered file atomically: a new file beside it (created with its final mode and
//! owner, written, fsynced), renamed over it, the directory fsynced. A reader sees the old
//! bytes or the new ones, never a part.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically with `mode` and, when given, `owner` (uid, gid).
pub fn replace(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the path has no directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let tmp = dir.join(format!(".{}.coffer-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        // The umask may have narrowed the mode further; set it exactly.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Removes `path` (a secret it held was disabled, destroyed, or is too stale) and syncs the
/// directory; a file already gone is not an error.
pub fn remove(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_replaced_file_has_its_mode_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db-password");
        replace(&p, b"fake-one", 0o400, None).unwrap();
        replace(&p, b"fake-two", 0o400, None).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"fake-two");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o400);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(remove(&p).unwrap());
        assert!(!remove(&p).unwrap());
    }
}
