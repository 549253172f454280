use clap::Parser;
use coffer::cli;
use coffer::cli::Cli;
use coffer::cli::CliError;
use coffer::cli::Command;

/// mimalloc instead of glibc's malloc: a request allocates often (protobuf, HTTP/2 frames,
/// audit events), and glibc's allocator took about a fifth of a local read's CPU. Every block
/// is zeroed before it is freed, so no buffer a value or a data key passed through keeps it
/// ([`coffer::zeroing_alloc`]).
#[global_allocator]
static ALLOCATOR: coffer::zeroing_alloc::ZeroOnFree<mimalloc::MiMalloc> =
    coffer::zeroing_alloc::ZeroOnFree(mimalloc::MiMalloc);

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Logs to stderr, filtered by `RUST_LOG` or else `default`.
fn init_logs(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Dev(args) => coffer::dev::run(args).await,
        Command::Server { config } => {
            init_logs("info,openraft=warn");
            let cfg = coffer::config::ServerConfig::load(&config).map_err(|e| CliError::new(e.to_string()))?;
            coffer::node::run(cfg, shutdown_signal())
                .await
                .map_err(|e| CliError::new(format!("{e:#}")))
        }
        Command::Secret(cmd) => cli::secret::run(&cli.global, cmd).await,
        Command::Cluster(cmd) => cli::cluster::run(&cli.global, cmd).await,
        Command::Kms(cmd) => cli::kms::run(&cli.global, cmd).await,
        Command::Token(cmd) => cli::token::run(&cli.global, cmd).await,
        Command::Policy(cmd) => cli::policy::run(&cli.global, cmd).await,
        Command::Audit(cmd) => cli::audit::run(&cli.global, cmd).await,
        Command::Snapshot(cmd) => cli::snapshot::run(&cli.global, cmd).await,
        Command::Drill(cmd) => cli::drill::run(&cli.global, cmd).await,
        Command::Rotation(cmd) => cli::rotation::run(&cli.global, cmd).await,
        Command::Tls(cmd) => cli::tls::run(&cli.global, cmd),
        Command::Agent(args) => {
            init_logs("warn");
            coffer::agent::main(args, shutdown_signal())
                .await
                .map_err(CliError::new)
        }
    }
}

/// Blocks SIGPIPE on the calling thread: a write to a socket the peer closed (a TLS port
/// hanging up on a plaintext client, say) then fails with EPIPE instead of killing the CLI
/// without a word. Runs on the runtime's threads, which do the socket I/O; the main thread
/// keeps the default, so `coffer … | head` still ends quietly.
fn block_sigpipe() {
    // SAFETY: pthread_sigmask on the calling thread with a set made by sigemptyset/sigaddset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn main() {
    let cli = Cli::parse();
    let client_command = !matches!(cli.command, Command::Dev(_) | Command::Server { .. });
    if matches!(cli.command, Command::Server { .. }) {
        // Before any thread: everything the node creates is its user's alone.
        coffer::private_files::restrict_umask();
    }
    if client_command {
        // Client commands end quietly when their reader goes away (`coffer … | head`), like
        // any Unix tool, instead of panicking on a failed print.
        // SAFETY: restoring a default signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if client_command {
        rt.on_thread_start(block_sigpipe);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let json = cli.global.output == coffer::cli::Output::Json;
    let result = rt.block_on(run(cli));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("{}", e.render(json));
        std::process::exit(e.code);
    }
}
