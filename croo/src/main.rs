//! `croo`: the command line. Parses arguments, hands each command to its
//! module (`commands/`: arguments -> engine call -> rendering), and maps
//! what fails to exit codes: 0 done, 1 user error, 2 failure.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the binary is where croo prints"
)]

mod allocator;
mod args;
mod commands;
mod exit;
mod render;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use commands::{
    check, cluster, customers, diff, experiment, explain, history, inspect, keys, quickstart, run,
    sample, schema, serve, status, test,
};
use exit::Failure;

#[derive(Parser)]
#[command(
    name = "croo",
    version,
    about = "Customer Return on Operations: one number, computed from a formula file"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate formula files: every error with file:line:col and a caret.
    Check(check::Args),
    /// Run the `[[tests]]` of formula files: a pass/fail line each.
    Test(test::Args),
    /// Compute a formula for one period or a range and store the results.
    Run(run::Args),
    /// What each component contributes, and what moved the score since another period.
    Explain(explain::Args),
    /// The same data scored by two formula versions, side by side per group.
    Diff(diff::Args),
    /// The editions of a period, and what differs between two of them.
    History(history::Args),
    /// Each group's status against its targets (on_track, at_risk, ...).
    Status(status::Args),
    /// The customers behind a number: a sorted page, or one customer over time.
    Customers(customers::Args),
    /// An experiment judged by the formula's score: lift per arm, segment, component; guardrails.
    Experiment(experiment::Args),
    /// Components and measures in one period: distributions, correlations, effective weights.
    Inspect(inspect::Args),
    /// Print the JSON Schema of formula files (for taplo / Even Better TOML).
    Schema,
    /// Write a realistic sample data set and an example formula.
    Sample(sample::Args),
    /// Serve the HTTP API and the dashboard over a results store.
    Serve(serve::Args),
    /// Manage API keys: the file stores only their hashes.
    Keys {
        #[command(subcommand)]
        command: keys::Command,
    },
    /// Run a Ballista scheduler with croo's functions (one per cluster).
    Scheduler(cluster::SchedulerArgs),
    /// Run a Ballista executor with croo's functions (one per worker).
    Executor(cluster::ExecutorArgs),
    /// Write the sample (if missing), run its example formula and print the scores.
    Quickstart(quickstart::Args),
}

impl Command {
    /// Long-running servers: `serve`, `scheduler`, `executor`.
    fn is_server(&self) -> bool {
        matches!(
            self,
            Command::Serve(_) | Command::Scheduler(_) | Command::Executor(_)
        )
    }

    /// Long-running servers log at `info` by default, commands at `warn`.
    fn default_log(&self) -> &'static str {
        if self.is_server() { "info" } else { "warn" }
    }

    /// Worker threads of the runtime: `croo run --threads N` runs on N
    /// (default: one per core).
    fn worker_threads(&self) -> Option<usize> {
        match self {
            Command::Run(a) => a.run.threads.filter(|n| *n > 0),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    init_logging(cli.log_format, cli.command.default_log());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.command.worker_threads() {
        builder.worker_threads(n);
    }
    if !cli.command.is_server() {
        // A computation's threads share few allocator arenas (`allocator`).
        let workers = cli.command.worker_threads().unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1));
        allocator::bind_thread(0, workers);
        builder.on_thread_start(move || {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            allocator::bind_thread(index, workers);
        });
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("{}", f.message.trim_end());
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CROO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn dispatch(cmd: Command) -> Result<u8, Failure> {
    match cmd {
        Command::Check(a) => check::run(a).await,
        Command::Test(a) => test::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Explain(a) => explain::run(a).await,
        Command::Diff(a) => diff::run(a).await,
        Command::History(a) => history::run(a),
        Command::Status(a) => status::run(a),
        Command::Customers(a) => customers::run(a).await,
        Command::Experiment(a) => experiment::run(a).await,
        Command::Inspect(a) => inspect::run(a).await,
        Command::Schema => schema::run(),
        Command::Sample(a) => sample::run(a),
        Command::Serve(a) => serve::run(a).await,
        Command::Keys { command } => keys::run(command),
        Command::Scheduler(a) => cluster::scheduler(a).await,
        Command::Executor(a) => cluster::executor(a).await,
        Command::Quickstart(a) => quickstart::run(a).await,
    }
}
