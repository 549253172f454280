//! Writing a backup file into place, for `coffer snapshot save` and scheduled backups alike:
//! the bytes go to a hidden temporary file beside the target (mode 0600, never an existing
//! file), which is fsynced, read back in full ([`file::read`]) and only then renamed over the
//! target, the folder fsynced after. A file never finished is removed.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use super::file;

pub struct Saving {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    renamed: bool,
}

impl Saving {
    /// Starts the backup `dir/name`; `dir` must exist.
    pub fn create(dir: &Path, name: &str) -> Result<Self, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        if !dir.is_dir() {
            return Err(format!(
                "cannot write {}: {} is not a directory",
                path.display(),
                dir.display()
            ));
        }
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(Saving {
            dir: dir.to_path_buf(),
            path,
            tmp,
            file,
            renamed: false,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.file
            .write_all(bytes)
            .map_err(|e| format!("{}: {e}", self.tmp.display()))
    }

    /// Makes the file durable, checks all of it, and puts it in place.
    pub fn finish(mut self) -> Result<file::Verified, String> {
        let at = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        self.file.sync_all().map_err(|e| at(&self.tmp, e))?;
        let written = File::open(&self.tmp).map_err(|e| at(&self.tmp, e))?;
        let v = file::read(written, &mut |_| {}).map_err(|e| format!("read back: {e}"))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| at(&self.path, e))?;
        self.renamed = true;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| at(&self.dir, e))?;
        Ok(v)
    }
}

impl Drop for Saving {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
