//! What a node writes is readable by the node's user alone: files 0600 in directories 0700,
//! whoever else shares the machine (the values are sealed, but wrapped keys, token hashes and
//! the audit log are nobody else's business either).

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Sets the process umask to 0077, so that every file and directory the process creates from
/// now on (RocksDB's, snapshots, the audit log) has no group or other bits. The server calls it
/// before starting any thread.
pub fn restrict_umask() {
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` (mode 0700) if it is missing, and takes the group and other bits off `dir` and
/// everything under it that has any (files and directories a release before this one, or a
/// looser umask, created). Returns how many it changed. Symlinks are left alone.
pub fn make_private(dir: &Path) -> io::Result<usize> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    tighten(dir)
}

fn tighten(path: &Path) -> io::Result<usize> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(0);
    }
    let mut changed = 0;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7700))?;
        changed += 1;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            changed += tighten(&entry?.path())?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_data_dir_is_created_private_and_an_open_one_is_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("a/b/data");
        assert_eq!(make_private(&fresh).unwrap(), 0);
        assert_eq!(mode(&fresh), 0o700);

        let open = tmp.path().join("open");
        fs::create_dir_all(open.join("sub")).unwrap();
        fs::write(open.join("sub/000001.sst"), b"fake").unwrap();
        fs::write(open.join("CURRENT"), b"fake").unwrap();
        for (p, m) in [
            (open.clone(), 0o755),
            (open.join("sub"), 0o775),
            (open.join("sub/000001.sst"), 0o644),
            (open.join("CURRENT"), 0o600),
        ] {
            fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", open.join("link")).unwrap();
        assert_eq!(make_private(&open).unwrap(), 3);
        assert_eq!(mode(&open), 0o700);
        assert_eq!(mode(&open.join("sub")), 0o700);
        assert_eq!(mode(&open.join("sub/000001.sst")), 0o600);
        assert_eq!(mode(&open.join("CURRENT")), 0o600);
        assert_eq!(make_private(&open).unwrap(), 0, "nothing left to change");
    }
}
