//! A seed that kills its process (a panic raised while another unwinds aborts) is a failed
//! seed of the sweep, named with its message and REPRODUCE WITH line, and the sweep goes on.

use std::process::Command;

#[test]
fn a_seed_that_aborts_is_reported_and_the_sweep_goes_on() {
    let out = Command::new(env!("CARGO_BIN_EXE_coffer-simulations"))
        .args(["sweep", "--seeds", "1..4", "--jobs", "1", "--keep-going"])
        .args(["--safety-secs", "2", "--crash-seed", "2"])
        .output()
        .expect("the simulator starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a crashed seed fails the sweep:\n{stdout}");
    assert!(stdout.contains("seed=2 CRASHED"), "{stdout}");
    assert!(
        stdout.contains("violation [crash]") && stdout.contains("--crash-seed 2: aborting as asked"),
        "the panic message is reported: {stdout}"
    );
    assert!(stdout.contains("SIGABRT") || stdout.contains("signal: 6"), "{stdout}");
    let reproduce = stdout
        .lines()
        .find(|l| l.starts_with("REPRODUCE WITH:"))
        .unwrap_or_else(|| panic!("no REPRODUCE WITH line: {stdout}"));
    assert!(reproduce.ends_with("run --seed 2 --safety-secs 2"), "{reproduce}");
    for seed in [1, 3] {
        assert!(
            stdout.contains(&format!("seed={seed} ops=")) && !stdout.contains(&format!("seed={seed} CRASHED")),
            "seed {seed} ran in its own process: {stdout}"
        );
    }
    assert!(stdout.contains("VIOLATIONS FOUND in 1 seed (2)"), "{stdout}");
}
