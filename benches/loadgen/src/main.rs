//! `coffer-loadgen`: see benches/README.md.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clap::Subcommand;
use coffer_bench::compare;
use coffer_bench::load;
use coffer_bench::load::Window;
use coffer_bench::target::Conn;
use coffer_bench::target::Keyspace;
use coffer_bench::target::Workload;

/// The same allocator as the coffer server, so client-side cost is the same for every system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "coffer-loadgen",
    about = "Load generator for Coffer, etcd and a bare tonic echo"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Target {
    Coffer,
    Etcd,
    Echo,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start etcd, Coffer and the echo service on loopback and compare them (make bench-compare).
    Compare(Box<compare::Plan>),
    /// Serve the bare echo service (started by `compare`).
    EchoServer {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// One run against systems that are already running (e.g. `make dev`'s cluster).
    Run {
        #[arg(long, value_enum)]
        target: Target,
        /// Member addresses, comma separated (connections go round-robin over them); etcd
        /// addresses are URLs (http://127.0.0.1:2379).
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<String>,
        /// Coffer token (needs secrets:read/secrets:write on bench/*).
        #[arg(long, env = "COFFER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, value_enum, default_value = "local-read")]
        workload: Workload,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Write every key once before the run.
        #[arg(long)]
        preload: bool,
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Closed loop: requests in flight per connection.
        #[arg(long, default_value_t = 10)]
        in_flight: usize,
        /// Open loop instead: this many requests per second, whatever the answers do.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup_secs: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Compare(plan) => compare::run(*plan).await,
            Cmd::EchoServer { listen } => coffer_bench::echo::serve(listen).await,
            Cmd::Run {
                target,
                addr,
                token,
                workload,
                size,
                keys,
                preload,
                connections,
                in_flight,
                rate,
                secs,
                warmup_secs,
            } => {
                anyhow::ensure!(
                    connections >= 1 && in_flight >= 1,
                    "--connections and --in-flight must be >= 1"
                );
                anyhow::ensure!(keys >= 1 && secs > 0.0, "--keys must be >= 1 and --secs > 0");
                let ks = Keyspace::new(size, keys);
                let mut conns = Vec::new();
                for i in 0..connections {
                    let a = &addr[i % addr.len()];
                    conns.push(match target {
                        Target::Coffer => {
                            let t = token.as_deref().context("coffer needs --token or COFFER_TOKEN")?;
                            Conn::coffer(a, t).await?
                        }
                        Target::Etcd => Conn::etcd(a).await?,
                        Target::Echo => Conn::echo(a).await?,
                    });
                }
                if preload {
                    load::preload(&conns, 64, &ks).await?;
                }
                let w = Window {
                    warmup: Duration::from_secs_f64(warmup_secs),
                    measure: Duration::from_secs_f64(secs),
                };
                let o = match rate {
                    Some(r) => {
                        anyhow::ensure!(r > 0.0, "--rate must be > 0");
                        load::open_loop(&conns, r, 10_000, workload, &ks, w).await
                    }
                    None => load::closed_loop(&conns, in_flight, workload, &ks, w).await,
                };
                println!("{}", serde_json::to_string_pretty(&o)?);
                anyhow::ensure!(
                    o.errors == 0,
                    "{} requests failed, first: {:?}",
                    o.errors,
                    o.first_error
                );
                Ok(())
            }
        }
    })
}
