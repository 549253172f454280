//! Free space before a comparison. A full run grows Coffer's and etcd's data to about 6 GiB in
//! the temp dir. A node that runs out of space stops its Raft core, and the runs after that would
//! measure a stopped cluster (a group-commit row of zero writes, for one), so the comparison
//! refuses to start without room.

use std::path::Path;

use anyhow::Context;

/// Bytes available to an unprivileged writer on the filesystem holding `dir` (`df -P -k`).
pub fn available_bytes(dir: &Path) -> anyhow::Result<u64> {
    let out = std::process::Command::new("df")
        .args(["-P", "-k"])
        .arg(dir)
        .output()
        .context("cannot run df to check free disk space")?;
    anyhow::ensure!(
        out.status.success(),
        "df {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_df_available_kib(&String::from_utf8_lossy(&out.stdout))
        .map(|kib| kib.saturating_mul(1024))
        .with_context(|| format!("cannot read df's output for {}", dir.display()))
}

/// The "Available" column (KiB) of `df -P -k`'s one data line.
fn parse_df_available_kib(out: &str) -> Option<u64> {
    out.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// Fails with what to do when `dir`'s filesystem has less than `min_gib` GiB available.
pub fn ensure_free(dir: &Path, min_gib: f64) -> anyhow::Result<()> {
    let avail = available_bytes(dir)?;
    let gib = avail as f64 / (1u64 << 30) as f64;
    anyhow::ensure!(
        gib >= min_gib,
        "only {gib:.1} GiB free in {} and the comparison needs {min_gib} GiB: Coffer's and etcd's \
         data grow to about 6 GiB there, and a node that runs out of space stops. Free some space, \
         point TMPDIR at a larger disk (not tmpfs), or lower the bar with --min-free-gib",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_available_column_of_df() {
        let out = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                   /dev/vda         263174212  46477352 204240296      19% /\n";
        assert_eq!(parse_df_available_kib(out), Some(204_240_296));
        assert_eq!(parse_df_available_kib("Filesystem 1024-blocks\n"), None);
        assert_eq!(parse_df_available_kib(""), None);
    }

    #[test]
    fn refuses_a_disk_with_less_room_than_asked_and_says_what_to_do() {
        let dir = std::env::temp_dir();
        assert!(available_bytes(&dir).unwrap() > 0);
        ensure_free(&dir, 0.0).unwrap();
        let err = ensure_free(&dir, 1e12).unwrap_err().to_string();
        assert!(err.contains("GiB free in") && err.contains("--min-free-gib"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_zero_space() {
        let err = available_bytes(Path::new("/nonexistent/coffer-bench-dir")).unwrap_err();
        assert!(err.to_string().contains("df"), "{err}");
    }
}
