//! `coffer-simulations run --seed N` and `sweep --seeds A..B`: see the crate docs and README.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use clap::Subcommand;
use coffer_kv::bugs::Bug;
use coffer_simulations::run;
use coffer_simulations::scenarios::Scenario;

#[derive(Parser)]
#[command(name = "coffer-simulations", about = "Deterministic simulations of a Coffer cluster")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Switch on a deliberate bug to show the checkers catch it:
    /// stale-linearizable, early-ack, cas-ignore or replay-forgets.
    #[arg(long, value_parser = parse_bug)]
    inject_bug: Option<Bug>,
    /// Length of the safety phase in simulated seconds.
    #[arg(long, default_value_t = 30)]
    safety_secs: u64,
    /// Wall-clock seconds one simulation may take before it counts as stalled (a livelock
    /// inside one simulated step: something is always ready, so simulated time cannot advance).
    /// The process then prints the seed and exits non-zero. 0 turns the watchdog off.
    #[arg(long, default_value_t = 120)]
    stall_secs: u64,
    /// Aborts the process as the run of this seed starts (how the sweep's tests make a seed
    /// crash the way a panic during unwinding does).
    #[arg(long, hide = true)]
    crash_seed: Option<u64>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed; prints one summary line and every violation.
    Run {
        #[arg(long)]
        seed: u64,
        /// Run a pinned scenario instead of the seed's random faults.
        #[arg(long, value_parser = parse_scenario)]
        scenario: Option<Scenario>,
        #[command(flatten)]
        common: Common,
    },
    /// Run a range of seeds (A..B, B excluded), each in a process of its own; exits non-zero if
    /// any has a violation or crashes.
    Sweep {
        #[arg(long, value_parser = parse_range)]
        seeds: (u64, u64),
        /// Keep going after the first failing seed.
        #[arg(long)]
        keep_going: bool,
        /// Seeds run in parallel (one simulation per thread).
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Run every pinned scenario with one seed.
    Scenarios {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_bug(s: &str) -> Result<Bug, String> {
    Bug::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
        format!("unknown bug {s:?}; one of {}", names.join(", "))
    })
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!("unknown scenario {s:?}; one of {}", names.join(", "))
    })
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B, e.g. 1..200")?;
    let a: u64 = a.trim().parse().map_err(|_| format!("{a:?} is not a seed number"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("{b:?} is not a seed number"))?;
    if b <= a {
        return Err(format!("empty range {a}..{b}"));
    }
    Ok((a, b))
}

/// The command that replays one seed: this very binary, so the replay runs the build that
/// failed (`make test` builds the simulator in the debug profile, assertions on; a `--release`
/// build would turn them off and compile RocksDB's C++ a second time).
fn reproduce(seed: u64, scenario: Option<Scenario>, common: &Common) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "coffer-simulations".into());
    let mut cmd = format!("{exe} run --seed {seed}");
    if let Some(s) = scenario {
        cmd += &format!(" --scenario {}", s.name());
    }
    if let Some(b) = common.inject_bug {
        cmd += &format!(" --inject-bug {}", b.name());
    }
    if common.safety_secs != 30 {
        cmd += &format!(" --safety-secs {}", common.safety_secs);
    }
    cmd
}

fn options(seed: u64, scenario: Option<Scenario>, common: &Common) -> run::Options {
    run::Options {
        seed,
        bug: common.inject_bug,
        safety: Some(Duration::from_secs(common.safety_secs)),
        scenario,
    }
}

/// Prints a report; true if it passed.
fn print(report: &run::Report, scenario: Option<Scenario>, common: &Common) -> bool {
    for v in report.violations.iter().take(5) {
        println!("  violation [{}] {}", v.invariant, v.detail);
    }
    if report.violations.len() > 5 {
        println!("  … and {} more", report.violations.len() - 5);
    }
    let label = scenario.map(|s| format!("scenario={} ", s.name())).unwrap_or_default();
    println!("{label}{}", report.line());
    if !report.violations.is_empty() {
        println!("  shape: {}", report.shape);
        for f in &report.schedule {
            println!("  fault at {f}");
        }
        println!("REPRODUCE WITH: {}", reproduce(report.seed, scenario, common));
        return false;
    }
    true
}

/// One simulation in progress, as the watchdog sees it.
struct InFlight {
    /// Unique to this run (the same seed may run twice in one process).
    token: u64,
    seed: u64,
    scenario: Option<Scenario>,
    reproduce: String,
    started: std::time::Instant,
}

static RUNNING: Mutex<Vec<InFlight>> = Mutex::new(Vec::new());
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);

/// Ends the process when one simulation has run for more than `limit` of wall-clock time. A
/// simulation that livelocks inside one step never returns to the runner, so only another
/// thread can report it; the report is the seed and its reproduce command, like a violation.
fn start_watchdog(limit: Duration) {
    if limit.is_zero() {
        return;
    }
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.iter().find(|r| r.started.elapsed() > limit) {
            let label = r
                .scenario
                .map(|s| format!(" scenario={}", s.name()))
                .unwrap_or_default();
            println!(
                "seed={}{label} STALLED: still running after {:.0} s of wall-clock time \
                 (--stall-secs {}; a livelock inside one simulated step, or a far slower build than usual)",
                r.seed,
                r.started.elapsed().as_secs_f64(),
                limit.as_secs()
            );
            println!("REPRODUCE WITH: {}", r.reproduce);
            std::process::exit(1);
        }
    });
}

/// The watchdog measures the real time a simulation takes, outside any simulated host, so it is
/// the one place here allowed to read the wall clock.
#[allow(clippy::disallowed_methods)]
fn wall_clock_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Runs one simulation; a panic anywhere in it is a failed run of that seed, not a crash.
fn run_one(seed: u64, scenario: Option<Scenario>, common: &Common) -> run::Report {
    if common.crash_seed == Some(seed) {
        eprintln!("thread 'main' panicked at simulations/src/main.rs:\n--crash-seed {seed}: aborting as asked");
        std::process::abort();
    }
    let token = NEXT_TOKEN.fetch_add(1, Ordering::SeqCst);
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(InFlight {
        token,
        seed,
        scenario,
        reproduce: reproduce(seed, scenario, common),
        started: wall_clock_now(),
    });
    let report = run_guarded(seed, scenario, common);
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|r| r.token != token);
    report
}

fn run_guarded(seed: u64, scenario: Option<Scenario>, common: &Common) -> run::Report {
    let opts = options(seed, scenario, common);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run::run(&opts))).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        coffer_kv::bugs::set(None);
        coffer::time::set_thread_clock(None);
        run::Report {
            seed,
            shape: "(panicked)".into(),
            schedule: vec![],
            ops: 0,
            faults: 0,
            trace: "-".into(),
            violations: vec![coffer_simulations::invariants::Violation::new("panic", msg)],
        }
    })
}

/// Runs one seed of a sweep in a child process (this very binary's `run`), so that nothing a
/// seed does takes the sweep down with it: a panic that aborts the process (one raised while
/// another unwinds), a stall. Returns whether it passed and what to print; a child that died
/// without its report is a failed seed, with the panic message from its stderr and its
/// REPRODUCE WITH line.
fn run_child(seed: u64, common: &Common) -> (bool, String) {
    let exe = std::env::current_exe().unwrap_or_else(|_| "coffer-simulations".into());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["run", "--seed", &seed.to_string()])
        .args(["--safety-secs", &common.safety_secs.to_string()])
        .args(["--stall-secs", &common.stall_secs.to_string()])
        .stdin(std::process::Stdio::null());
    if let Some(b) = common.inject_bug {
        cmd.args(["--inject-bug", b.name()]);
    }
    if let Some(c) = common.crash_seed {
        cmd.args(["--crash-seed", &c.to_string()]);
    }
    let crashed = |why: String, mut text: String| {
        text += &format!(
            "  violation [crash] {why}\nseed={seed} CRASHED\nREPRODUCE WITH: {}\n",
            reproduce(seed, None, common)
        );
        (false, text)
    };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => return crashed(format!("could not start the simulator: {e}"), String::new()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return (true, stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("REPRODUCE WITH:") {
        // Its own report (a violation, a caught panic, a stall); what it said on stderr (a
        // COFFER_SIM_DUMP, logs) goes along.
        eprint!("{stderr}");
        return (false, stdout);
    }
    crashed(format!("{} ({})", panic_message(&stderr), out.status), stdout)
}

/// The panic a dead child reported on stderr (`thread '…' panicked at FILE:LINE:COL:` and the
/// message on the next line), or its last line when it printed none.
fn panic_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let text = match lines.iter().position(|l| l.contains("panicked at")) {
        Some(i) => lines[i..(i + 2).min(lines.len())].join(" "),
        None => lines
            .last()
            .map_or("the process died without a message".to_string(), |l| l.to_string()),
    };
    text.chars().take(600).collect()
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let cli = Cli::parse();
    // The watchdog watches simulations run in this process; a sweep's run in its children,
    // each with a watchdog of its own.
    if let Cmd::Run { common, .. } | Cmd::Scenarios { common, .. } = &cli.command {
        start_watchdog(Duration::from_secs(common.stall_secs));
    }
    let ok = match cli.command {
        Cmd::Run { seed, scenario, common } => print(&run_one(seed, scenario, &common), scenario, &common),
        Cmd::Scenarios { seed, common } => {
            // Every scenario runs, even after one fails.
            let passed: Vec<bool> = Scenario::ALL
                .into_iter()
                .map(|s| print(&run_one(seed, Some(s), &common), Some(s), &common))
                .collect();
            passed.iter().all(|p| *p)
        }
        Cmd::Sweep {
            seeds: (a, b),
            keep_going,
            jobs,
            common,
        } => {
            let next = Arc::new(AtomicU64::new(a));
            let failed = Arc::new(AtomicBool::new(false));
            let failing: Arc<Mutex<Vec<u64>>> = Arc::default();
            let started = wall_clock_now();
            let out = Arc::new(Mutex::new(()));
            let workers: Vec<_> = (0..jobs.max(1))
                .map(|_| {
                    let (next, failed, out, common) = (next.clone(), failed.clone(), out.clone(), common.clone());
                    let failing = failing.clone();
                    // Each simulation is single-threaded and owns its thread for the run.
                    std::thread::spawn(move || loop {
                        if failed.load(Ordering::SeqCst) && !keep_going {
                            return;
                        }
                        let seed = next.fetch_add(1, Ordering::SeqCst);
                        if seed >= b {
                            return;
                        }
                        let (passed, text) = run_child(seed, &common);
                        let _guard = out.lock().unwrap_or_else(|e| e.into_inner());
                        print!("{text}");
                        if !passed {
                            failed.store(true, Ordering::SeqCst);
                            failing.lock().unwrap_or_else(|e| e.into_inner()).push(seed);
                        }
                    })
                })
                .collect();
            for w in workers {
                if w.join().is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
            }
            let failed = failed.load(Ordering::SeqCst);
            let mut failing = failing.lock().unwrap_or_else(|e| e.into_inner()).clone();
            failing.sort_unstable();
            let verdict = match (failed, failing.len()) {
                (false, _) => format!("all {} seeds passed", b - a),
                (true, 0) => "VIOLATIONS FOUND".to_string(),
                (true, n) => format!(
                    "VIOLATIONS FOUND in {n} seed{} ({})",
                    if n == 1 { "" } else { "s" },
                    failing.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
                ),
            };
            println!(
                "sweep {a}..{b}{} at {} s of safety: {verdict}; {:.0} s of wall-clock time",
                common
                    .inject_bug
                    .map(|b| format!(" --inject-bug {}", b.name()))
                    .unwrap_or_default(),
                common.safety_secs,
                started.elapsed().as_secs_f64()
            );
            !failed
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
