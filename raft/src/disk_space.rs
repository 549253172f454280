//! Out of disk. openraft stops for good on a storage error, so a node must never run its disk
//! full: below `min_free_bytes` of free space under its data folder it stops taking what would
//! grow its storage, and takes it again by itself once space is back.
//!
//! While low, the node
//! - refuses proposals as leader with "out of disk on NODE" (`ResourceExhausted`, the API's
//!   `out_of_disk`) and hands leadership to another voter, which may go on taking writes;
//! - refuses entries and snapshots from a leader (heartbeats pass), so it falls behind instead
//!   of failing; the leader retries it, and the other voters commit without it;
//! - serves reads from what it holds, with the staleness bound saying how old.
//!
//! It resumes once free space is back to 1.5 times the threshold, so it does not flap at the
//! line. RocksDB's own writes (flushes, compactions) and the audit file use the margin.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

/// How often a node looks at its free space.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// This node's free space and whether it is below the threshold.
pub struct DiskSpace {
    node: String,
    min_free: u64,
    free: AtomicU64,
    low: AtomicBool,
}

/// What a new reading changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    BecameLow,
    Recovered,
}

impl DiskSpace {
    /// `min_free` 0: never low.
    pub fn new(node: impl Into<String>, min_free: u64) -> Self {
        Self {
            node: node.into(),
            min_free,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        }
    }

    /// Takes a reading of `free` bytes.
    pub fn observe(&self, free: u64) -> Change {
        self.free.store(free, Ordering::Relaxed);
        let was = self.low.load(Ordering::Relaxed);
        let now = if was {
            free < self.min_free.saturating_add(self.min_free / 2)
        } else {
            free < self.min_free
        };
        self.low.store(now, Ordering::Relaxed);
        match (was, now) {
            (false, true) => Change::BecameLow,
            (true, false) => Change::Recovered,
            _ => Change::None,
        }
    }

    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Free bytes at the last reading (`u64::MAX` before the first or without a disk).
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Why this node refuses to grow its storage, if it does.
    pub fn refusal(&self) -> Option<String> {
        self.is_low().then(|| {
            format!(
                "out of disk on {}: {} MiB free, below the {} MiB it keeps free; writes resume \
                 when space is freed",
                self.node,
                self.free_bytes() >> 20,
                self.min_free >> 20
            )
        })
    }
}

/// Free bytes (for an unprivileged process) on the filesystem holding `path`.
pub fn free_bytes_at(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points at writable memory of the size
    // statvfs fills; the struct is read only after the call succeeded.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_below_the_threshold_and_back_only_well_above_it() {
        let d = DiskSpace::new("n1", 100 << 20);
        assert_eq!(d.observe(500 << 20), Change::None);
        assert!(d.refusal().is_none());
        assert_eq!(d.observe(99 << 20), Change::BecameLow);
        let why = d.refusal().unwrap();
        assert!(why.starts_with("out of disk on n1: 99 MiB free"), "{why}");
        // Just above the line is not enough: no flapping.
        assert_eq!(d.observe(120 << 20), Change::None);
        assert!(d.is_low());
        assert_eq!(d.observe(150 << 20), Change::Recovered);
        assert!(!d.is_low());
        assert_eq!(DiskSpace::new("n1", 0).observe(0), Change::None, "0 turns it off");
    }

    #[test]
    fn reads_the_free_space_of_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes_at(dir.path()).unwrap();
        assert!(free > 0 && free < u64::MAX);
        assert!(free_bytes_at(&dir.path().join("missing")).is_err());
    }
}
