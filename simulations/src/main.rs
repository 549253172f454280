//! coffer-simulations: deterministic simulation of a Coffer cluster under turmoil.
//!
//! This is the skeleton: the command-line shape is in place and `run --seed N` drives a
//! one-host turmoil simulation from the seed. The harness (real nodes, faults, workload,
//! oracle and invariants) arrives with the simulation work.

use clap::Parser;
use clap::Subcommand;

#[derive(Parser)]
#[command(name = "coffer-simulations")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed.
    Run {
        #[arg(long)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run { seed } => {
            let mut sim = turmoil::Builder::new().rng_seed(seed).build();
            sim.client("probe", async { Ok(()) });
            sim.run().map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("seed={seed} ops=0 faults=0 violations=0 (skeleton: no workload yet)");
            Ok(())
        }
    }
}
