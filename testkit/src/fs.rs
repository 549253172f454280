//! Throwaway folders and what is in them.

use std::path::Path;
use std::path::PathBuf;

/// A temporary folder removed on drop (kept when `COFFER_KEEP_TEST_DIRS` is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> std::io::Result<Self> {
        let suffix =
            hex::encode(coffer::crypto::random_bytes::<6>().map_err(|e| std::io::Error::other(e.to_string()))?);
        let p = std::env::temp_dir().join(format!("coffer-test-{suffix}"));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("COFFER_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A tmpfs mounted at a folder for the life of this value (mounting needs root).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size_mib: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700"), "tmpfs"])
            .arg(at)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "mount a {size_mib} MiB tmpfs at {} (needs root): {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `dir` until at most `leave` bytes are free, with a file that
/// goes (and frees the space) when this value is dropped.
pub struct Filler(PathBuf);

impl Filler {
    pub fn fill(dir: &Path, leave: u64) -> std::io::Result<Self> {
        use std::io::Write;
        let path = dir.join("filler");
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0x5a_u8; 1 << 20];
        loop {
            let free = coffer_raft::disk_space::free_bytes_at(dir)?;
            if free <= leave {
                break;
            }
            let n = ((free - leave) as usize).min(chunk.len());
            f.write_all(&chunk[..n])?;
            f.sync_data()?;
        }
        Ok(Self(path))
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
