//! CPU time of processes, from /proc: on a machine whose cores are shared by the servers and the
//! load generator, CPU per request is what decides throughput, so every run records it.

use std::path::Path;

/// Clock ticks per second of /proc's utime and stime (USER_HZ; 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// The pids whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// User + system CPU seconds of `pid` so far (0 when it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    stat_cpu(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// User + system CPU seconds of this process so far.
pub fn own_cpu_secs() -> f64 {
    stat_cpu(Path::new("/proc/self/stat"))
}

fn stat_cpu(path: &Path) -> f64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / TICKS_PER_SEC
}

/// Summed CPU seconds of `pids`.
pub fn total(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_secs(p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work_and_never_beyond_the_cores() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let before = own_cpu_secs();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        // Spin until 0.2 s of CPU is reported (the machine may be busy: wait up to 30 s).
        while own_cpu_secs() - before < 0.2 && t.elapsed() < std::time::Duration::from_secs(30) {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let spent = own_cpu_secs() - before;
        let wall = t.elapsed().as_secs_f64();
        assert!(spent >= 0.2, "{wall:.2} s of spinning counted as {spent} s of CPU");
        assert!(
            spent <= wall * cores + 0.05,
            "{spent} s of CPU in {wall:.2} s on {cores} cores"
        );
        assert!((cpu_secs(std::process::id()) - own_cpu_secs()).abs() < 0.05);
    }
}
