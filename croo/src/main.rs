//! `croo`: the command line. Parses arguments, calls the engine, prints.
//! Exit codes: 0 done, 1 user error, 2 failure.

mod cluster;
mod hugepages;
mod render;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use engine::{Class, Error, PeriodChoice, RunRequest, SessionOptions};

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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate formula files: every error with file:line:col and a caret.
    Check {
        #[arg(required = true)]
        formulas: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Also read the sources' schemas and check every column exists.
        #[arg(long)]
        schemas: bool,
    },
    /// Run the `[[tests]]` of formula files: a pass/fail line each.
    Test {
        #[arg(required = true)]
        formulas: Vec<PathBuf>,
    },
    /// Compute a formula for one period or a range and store the results.
    Run {
        formula: PathBuf,
        #[command(flatten)]
        periods: PeriodArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// What each component contributes, and what moved the score since another period.
    Explain {
        formula: PathBuf,
        /// The period to explain (any date inside it).
        #[arg(long)]
        period: String,
        /// The period to compare with.
        #[arg(long)]
        compare: Option<String>,
        /// Split the change into within-group and mix effects over this dimension.
        #[arg(long)]
        by: Option<String>,
        /// Re-score the period N times with the component weights drawn around their nominal values.
        #[arg(long, value_name = "N")]
        uncertainty: Option<usize>,
        /// Seed of the weight draws (the same seed gives the same figures).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Each weight is drawn within +-SPREAD of its nominal value (0.2 = 20%).
        #[arg(long, default_value_t = 0.2)]
        spread: f64,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// The same data scored by two formula versions, side by side per group.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// The period to score (any date inside it).
        #[arg(long)]
        period: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Print the JSON Schema of formula files (for taplo / Even Better TOML).
    Schema,
    /// Write a realistic sample data set and an example formula.
    Sample {
        #[arg(long, default_value = "croo-sample")]
        out: PathBuf,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Serve the HTTP API and the dashboard over a results store.
    Serve {
        /// Results store folder.
        #[arg(long, default_value = "croo-results")]
        results: PathBuf,
        /// Folder of formula files (`*.toml`) to list and to run.
        #[arg(long)]
        formulas: Option<PathBuf>,
        /// Keys file (made with `croo keys add`).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// Serve without keys (everyone is admin); refused unless on loopback.
        #[arg(long)]
        insecure: bool,
        /// Threads of runs started over HTTP (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Memory limit of runs started over HTTP, e.g. 2GiB.
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Manage API keys: the file stores only their hashes.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run a Ballista scheduler with croo's functions (one per cluster).
    Scheduler {
        /// Address to listen on (gRPC for clients and executors).
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: std::net::SocketAddr,
    },
    /// Run a Ballista executor with croo's functions (one per worker).
    Executor {
        /// The scheduler to join, HOST:PORT.
        #[arg(long, default_value = "localhost:50050")]
        scheduler: String,
        /// Host to bind the executor's ports to.
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// Arrow Flight port (shuffle data).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port (tasks from the scheduler).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Host name the scheduler and other executors reach this one by.
        #[arg(long)]
        external_host: Option<String>,
        /// Concurrent tasks (default: all cores).
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// Folder for shuffle files (default: a temporary folder).
        #[arg(long)]
        work_dir: Option<String>,
    },
    /// Write the sample (if missing), run its example formula and print the scores.
    Quickstart {
        /// Where the sample lives.
        #[arg(long, default_value = "croo-sample")]
        dir: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key, print it once, store only its hash.
    Add {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Only these groups' numbers, e.g. --scope segment=smb (repeatable).
        #[arg(long, value_name = "DIMENSION=VALUE")]
        scope: Vec<String>,
        /// Results store whose audit log records the change.
        #[arg(long, default_value = "croo-results")]
        results: PathBuf,
    },
    /// List keys (names, roles, scopes; never the keys).
    List {
        #[arg(long)]
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Revoke a key by name.
    Revoke {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// Results store whose audit log records the change.
        #[arg(long, default_value = "croo-results")]
        results: PathBuf,
    },
}

#[derive(clap::Args)]
struct PeriodArgs {
    /// One period: any date inside it (ISO, e.g. 2026-10-01).
    #[arg(long, conflicts_with_all = ["from", "to", "last_complete"])]
    period: Option<String>,
    /// First period of a range (inclusive).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// Last period of a range (inclusive).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// The last period that has ended.
    #[arg(long)]
    last_complete: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Results store folder.
    #[arg(long, default_value = "croo-results")]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Also keep the per-customer rows.
    #[arg(long)]
    detail: bool,
    /// Memory limit, e.g. 2GiB; operators spill to disk past it.
    #[arg(long)]
    memory_limit: Option<String>,
    /// Worker threads (default: all cores), each running four DataFusion
    /// partitions. The numbers are the same bits for any thread count
    /// (every floating-point sum is exact).
    #[arg(long)]
    threads: Option<usize>,
    /// Run on a Ballista cluster: its scheduler, df://HOST:PORT (started
    /// with `croo scheduler`; workers with `croo executor`).
    #[arg(long, value_name = "df://HOST:PORT")]
    cluster: Option<String>,
}

#[derive(clap::Args)]
struct SampleArgs {
    #[arg(long, default_value_t = 2000)]
    customers: usize,
    #[arg(long, default_value_t = 12)]
    months: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// A failure to report, with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e.class() {
            Class::User => 1,
            Class::Failure => 2,
        };
        let message = match &e {
            Error::Formula { file, diagnostics } => diagnostics
                .iter()
                .map(|d| render::diagnostic(file, d, color()))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("error: {other}"),
        };
        Failure { code, message }
    }
}

fn user(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: format!("error: {}", message.into()),
    }
}

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

fn main() -> ExitCode {
    hugepages::reexec();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let default_log = if matches!(
        cli.command,
        Command::Serve { .. } | Command::Scheduler { .. } | Command::Executor { .. }
    ) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_log);
    // `croo run --threads N` runs on N worker threads (default: one per core).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Run { run, .. } = &cli.command
        && let Some(n) = run.threads.filter(|n| *n > 0)
    {
        builder.worker_threads(n);
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
        Command::Check {
            formulas,
            format,
            schemas,
        } => check(&formulas, format, schemas).await,
        Command::Test { formulas } => test(&formulas).await,
        Command::Explain {
            formula,
            period,
            compare,
            by,
            uncertainty,
            seed,
            spread,
            format,
        } => {
            let u = uncertainty.map(|n| (n, seed, spread));
            explain(
                &formula,
                &period,
                compare.as_deref(),
                by.as_deref(),
                u,
                format,
            )
            .await
        }
        Command::Diff {
            old,
            new,
            period,
            format,
        } => diff(&old, &new, &period, format).await,
        Command::Serve {
            results,
            formulas,
            keys,
            bind,
            insecure,
            threads,
            memory_limit,
        } => {
            let session = session_options(threads, memory_limit.as_deref())?;
            let config = api::Config {
                results,
                formulas,
                keys,
                bind,
                insecure,
                session,
                request_timeout: std::time::Duration::from_secs(30),
            };
            api::serve(config, |addr| {
                eprintln!("croo serve: listening on http://{addr}");
            })
            .await
            .map_err(|e| match e {
                api::ServeError::Config(m) => user(m),
                api::ServeError::Io(m) => Failure {
                    code: 2,
                    message: format!("error: {m}"),
                },
            })?;
            Ok(0)
        }
        Command::Keys { command } => keys(command),
        Command::Scheduler { bind } => cluster::scheduler(bind).await,
        Command::Executor {
            scheduler,
            bind_host,
            port,
            grpc_port,
            external_host,
            concurrent_tasks,
            work_dir,
        } => {
            cluster::executor(
                &scheduler,
                bind_host,
                port,
                grpc_port,
                external_host,
                concurrent_tasks,
                work_dir,
            )
            .await
        }
        Command::Schema => {
            println!("{}", formulas::schema::JSON.trim_end());
            Ok(0)
        }
        Command::Run {
            formula,
            periods,
            run,
        } => {
            let choice = period_choice(&periods)?;
            run_formula(&formula, choice, &run).await
        }
        Command::Sample { out, sample } => {
            let s = write_sample(&out, &sample)?;
            println!("{s}");
            Ok(0)
        }
        Command::Quickstart { dir, run } => {
            let formula = dir.join(engine::sample::FORMULA_FILE);
            if !formula.exists() {
                let s = write_sample(
                    &dir,
                    &SampleArgs {
                        customers: 2000,
                        months: 12,
                        seed: 42,
                    },
                )?;
                eprintln!("{s}");
            }
            let (from, to) = engine::sample::default_range(3);
            eprintln!("running {} for {from} to {to}", formula.display());
            run_formula(&formula, PeriodChoice::Range(from, to), &run).await
        }
    }
}

fn write_sample(out: &Path, s: &SampleArgs) -> Result<String, Failure> {
    let opts = engine::sample::SampleOptions {
        customers: s.customers,
        months: s.months,
        seed: s.seed,
    };
    let summary = engine::sample::write(out, &opts).map_err(Failure::from)?;
    Ok(format!(
        "wrote {} customers, {} interactions, {} transactions and {} product events to {}\nexample formula: {}",
        summary.customers,
        summary.interactions,
        summary.transactions,
        summary.product_events,
        out.display(),
        out.join(engine::sample::FORMULA_FILE).display()
    ))
}

fn date(flag: &str, s: &str) -> Result<NaiveDate, Failure> {
    engine::period::parse_date(s)
        .ok_or_else(|| user(format!("{flag} `{s}` is not a date (expected YYYY-MM-DD)")))
}

fn period_choice(p: &PeriodArgs) -> Result<PeriodChoice, Failure> {
    Ok(match (&p.period, &p.from, &p.to, p.last_complete) {
        (Some(d), None, None, false) => PeriodChoice::One(date("--period", d)?),
        (None, Some(f), Some(t), false) => {
            PeriodChoice::Range(date("--from", f)?, date("--to", t)?)
        }
        (None, None, None, true) => PeriodChoice::LastComplete,
        _ => {
            return Err(user(
                "name the periods: --period DATE, --from DATE --to DATE, or --last-complete",
            ));
        }
    })
}

/// Parses sizes such as `2GiB`, `512MiB`, `1GB`, `1000000`.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    let v = n * mult;
    (v >= 1.0 && v.is_finite()).then_some(v as usize)
}

async fn check(paths: &[PathBuf], format: OutputFormat, schemas: bool) -> Result<u8, Failure> {
    let mut errors = 0usize;
    let mut records = Vec::new();
    let mut text = String::new();
    for path in paths {
        let result = match engine::load(path) {
            Ok(loaded) => {
                let mut diags: Vec<_> = loaded.warnings.clone();
                let mut err = None;
                if schemas {
                    let ctx = engine::session(&SessionOptions::default()).map_err(Failure::from)?;
                    match engine::register_sources(&ctx, &loaded, &[]).await {
                        Ok(_) => {}
                        Err(Error::Formula { diagnostics, .. }) => diags.extend(diagnostics),
                        Err(e) => err = Some(e),
                    }
                }
                Ok((loaded.file, diags, err))
            }
            Err(Error::Formula { file, diagnostics }) => Ok((*file, diagnostics, None)),
            Err(e) => Err(e),
        };
        match result {
            Ok((file, diags, err)) => {
                for d in &diags {
                    if d.is_error() {
                        errors += 1;
                    }
                    records.push(render::diagnostic_json(&file, d));
                    text.push_str(&render::diagnostic(&file, d, color()));
                    text.push('\n');
                }
                if let Some(e) = err {
                    errors += 1;
                    records.push(serde_json::json!({"file": file.path, "severity": "error", "code": "croo::source", "message": e.to_string()}));
                    text.push_str(&format!("error: {e}\n"));
                }
            }
            Err(e) => {
                errors += 1;
                records.push(serde_json::json!({"file": path.display().to_string(), "severity": "error", "code": "croo::io", "message": e.to_string()}));
                text.push_str(&format!("error: {e}\n"));
            }
        }
    }
    match format {
        OutputFormat::Json => {
            let doc = serde_json::json!({"errors": errors, "diagnostics": records});
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Table => {
            eprint!("{text}");
            if errors == 0 {
                println!("{} formula file(s) OK", paths.len());
            } else {
                eprintln!("{errors} error(s)");
            }
        }
    }
    Ok(if errors > 0 { 1 } else { 0 })
}

async fn explain(
    path: &Path,
    period: &str,
    compare: Option<&str>,
    by: Option<&str>,
    uncertainty: Option<(usize, u64, f64)>,
    format: OutputFormat,
) -> Result<u8, Failure> {
    if let Some((n, _, spread)) = uncertainty
        && (n == 0 || n > 1_000_000 || !(0.0..1.0).contains(&spread))
    {
        return Err(user(
            "--uncertainty takes 1 to 1000000 draws and --spread a number in [0, 1)",
        ));
    }
    let loaded = engine::load(path).map_err(Failure::from)?;
    let grain = loaded.formula.file.grain;
    let p = engine::period::floor(grain, date("--period", period)?);
    let c = match compare {
        Some(c) => Some(engine::period::floor(grain, date("--compare", c)?)),
        None => None,
    };
    if let Some(d) = by
        && !loaded
            .formula
            .file
            .dimensions
            .iter()
            .any(|x| x.name.value == d)
    {
        let known: Vec<&str> = loaded
            .formula
            .file
            .dimensions
            .iter()
            .map(|x| x.name.value.as_str())
            .collect();
        return Err(user(format!(
            "--by `{d}` is not a dimension of the formula (dimensions: {})",
            known.join(", ")
        )));
    }
    let mut periods = vec![p];
    periods.extend(c);
    periods.sort();
    periods.dedup();
    let ctx = engine::session(&SessionOptions::default()).map_err(Failure::from)?;
    let schemas = engine::register_sources(&ctx, &loaded, &[])
        .await
        .map_err(Failure::from)?;
    let computed = engine::compute(&ctx, &loaded, &schemas, &periods, uncertainty.is_some())
        .await
        .map_err(Failure::from)?;
    let e = engine::explain::explain(&computed.rows, p, c, by);
    let by_index = by.and_then(|d| {
        loaded
            .formula
            .file
            .dimensions
            .iter()
            .position(|x| x.name.value == d)
    });
    let u = match uncertainty {
        Some((n, seed, spread)) => Some(
            engine::uncertainty::analyse(
                &loaded.formula,
                &computed.detail,
                p,
                by_index,
                n,
                seed,
                spread,
            )
            .map_err(Failure::from)?,
        ),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Json {
        let mut doc = serde_json::to_value(&e).unwrap_or_default();
        if let Some(u) = &u {
            doc["uncertainty"] = serde_json::to_value(u).unwrap_or_default();
        }
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
        return Ok(0);
    }
    let num = |v: Option<f64>| render::number(v, 4);
    let _ = writeln!(
        out,
        "{} {}: score {} in {p}",
        loaded.formula.name(),
        loaded.formula.file.version.value,
        num(e.score)
    );
    if let Some(c) = c {
        let _ = writeln!(
            out,
            "was {} in {c}; change {}",
            num(e.score_before),
            num(e.change)
        );
    }
    let headers = render::headers(&["component", "before", "contribution", "change"]);
    let rows: Vec<Vec<String>> = e
        .components
        .iter()
        .map(|x| {
            vec![
                x.component.clone(),
                num(x.before),
                num(x.after),
                num(x.change),
            ]
        })
        .collect();
    let _ = write!(out, "\n{}", render::table(&headers, &rows));
    if let Some(d) = &e.by {
        let headers = render::headers(&[
            d.as_str(),
            "share before",
            "share after",
            "score before",
            "score after",
            "mix",
            "within",
        ]);
        let rows: Vec<Vec<String>> = e
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.value.clone().unwrap_or_else(|| "(null)".into()),
                    num(Some(g.share_before)),
                    num(Some(g.share_after)),
                    num(g.score_before),
                    num(g.score_after),
                    num(Some(g.mix)),
                    num(Some(g.within)),
                ]
            })
            .collect();
        let _ = write!(out, "\n{}", render::table(&headers, &rows));
        let _ = writeln!(
            out,
            "\nmix {} + within {} = change {}",
            num(e.mix_total),
            num(e.within_total),
            num(e.change)
        );
    }
    if let Some(u) = &u {
        let _ = writeln!(
            out,
            "\nuncertainty: {} draws, weights within +-{}% (seed {})",
            u.draws,
            u.spread * 100.0,
            u.seed
        );
        let headers = render::headers(&[
            "group", "nominal", "median", "5%", "95%", "rank", "rank 5%", "rank 95%",
        ]);
        let rows: Vec<Vec<String>> = u
            .groups
            .iter()
            .map(|g| {
                let all = if by.is_some() { "(null)" } else { "all" };
                vec![
                    g.value.clone().unwrap_or_else(|| all.into()),
                    num(g.nominal),
                    num(g.median),
                    num(g.p05),
                    num(g.p95),
                    g.rank_nominal
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    num(g.rank_p05),
                    num(g.rank_p95),
                ]
            })
            .collect();
        let _ = write!(out, "{}", render::table(&headers, &rows));
        let headers = render::headers(&["weight of", "mean rank shift", "mean score shift"]);
        let rows: Vec<Vec<String>> = u
            .sensitivity
            .iter()
            .map(|s| {
                vec![
                    s.component.clone(),
                    format!("{:.4}", s.mean_rank_shift),
                    format!("{:.4}", s.mean_score_shift),
                ]
            })
            .collect();
        let _ = write!(
            out,
            "\nwhich weight moves the ranking most:\n{}",
            render::table(&headers, &rows)
        );
    }
    Ok(0)
}

/// Computes one period of a formula without writing anything.
async fn score_period(
    loaded: &engine::Loaded,
    day: NaiveDate,
) -> Result<Vec<engine::ResultRow>, Failure> {
    let p = engine::period::floor(loaded.formula.file.grain, day);
    let ctx = engine::session(&SessionOptions::default()).map_err(Failure::from)?;
    let schemas = engine::register_sources(&ctx, loaded, &[])
        .await
        .map_err(Failure::from)?;
    Ok(engine::compute(&ctx, loaded, &schemas, &[p], false)
        .await
        .map_err(Failure::from)?
        .rows)
}

async fn diff(old: &Path, new: &Path, period: &str, format: OutputFormat) -> Result<u8, Failure> {
    let day = date("--period", period)?;
    let (a, b) = (
        engine::load(old).map_err(Failure::from)?,
        engine::load(new).map_err(Failure::from)?,
    );
    let definitions = engine::diff::definitions(&a.formula, &b.formula);
    let results =
        engine::diff::results(&score_period(&a, day).await?, &score_period(&b, day).await?);
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Json {
        let doc = serde_json::json!({
            "old": {"formula": a.formula.name(), "version": a.formula.file.version.value, "formula_hash": a.hash},
            "new": {"formula": b.formula.name(), "version": b.formula.file.version.value, "formula_hash": b.hash},
            "definitions": definitions,
            "results": results,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
        return Ok(0);
    }
    let _ = writeln!(
        out,
        "old: {} {}   new: {} {}\n",
        a.formula.name(),
        a.formula.file.version.value,
        b.formula.name(),
        b.formula.file.version.value
    );
    if definitions.is_empty() {
        let _ = writeln!(out, "no definition differs");
    }
    for d in &definitions {
        let name = if d.name.is_empty() {
            String::new()
        } else {
            format!(" `{}`", d.name)
        };
        match (&d.old, &d.new) {
            (Some(o), Some(n)) => {
                let _ = writeln!(out, "~ {}{name}: {o}  ->  {n}", d.kind);
            }
            (Some(o), None) => {
                let _ = writeln!(out, "- {}{name}: {o}", d.kind);
            }
            (None, Some(n)) => {
                let _ = writeln!(out, "+ {}{name}: {n}", d.kind);
            }
            (None, None) => {}
        }
    }
    let num = |v: Option<f64>| render::number(v, 4);
    let headers = render::headers(&["period", "group", "old", "new", "change"]);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let group = match (&r.dimension, &r.value) {
                (None, _) => "all".to_string(),
                (Some(d), v) => format!("{d}={}", v.as_deref().unwrap_or("(null)")),
            };
            vec![
                r.period.to_string(),
                group,
                num(r.old),
                num(r.new),
                num(r.change),
            ]
        })
        .collect();
    let _ = write!(out, "\n{}", render::table(&headers, &rows));
    Ok(0)
}

async fn test(paths: &[PathBuf]) -> Result<u8, Failure> {
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut out = std::io::stdout().lock();
    for path in paths {
        let loaded = engine::load(path).map_err(Failure::from)?;
        if loaded.formula.file.tests.is_empty() {
            let _ = writeln!(out, "{}: no [[tests]]", path.display());
            continue;
        }
        let outcomes = engine::formula_tests::run_tests(&loaded)
            .await
            .map_err(Failure::from)?;
        for o in outcomes {
            if o.passed() {
                passed += 1;
                let _ = writeln!(out, "PASS {}: {}", path.display(), o.name);
                continue;
            }
            failed += 1;
            let _ = writeln!(out, "FAIL {}: {}", path.display(), o.name);
            if let Some(e) = &o.error {
                let _ = writeln!(out, "     error: {e}");
            }
            for c in o.checks.iter().filter(|c| !c.passed) {
                let actual = c
                    .actual
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "NULL".into());
                let _ = writeln!(out, "     {}: expected {}, got {actual}", c.key, c.expected);
            }
        }
    }
    let _ = writeln!(out, "\n{passed} passed, {failed} failed");
    Ok(if failed > 0 { 1 } else { 0 })
}

fn session_options(
    threads: Option<usize>,
    memory_limit: Option<&str>,
) -> Result<SessionOptions, Failure> {
    let memory_limit = match memory_limit {
        Some(s) => Some(
            parse_size(s)
                .ok_or_else(|| user(format!("--memory-limit `{s}` is not a size (e.g. 2GiB)")))?,
        ),
        None => None,
    };
    if threads == Some(0) {
        return Err(user("--threads must be at least 1"));
    }
    Ok(SessionOptions {
        threads,
        memory_limit,
        cluster: None,
    })
}

fn keys(cmd: KeysCommand) -> Result<u8, Failure> {
    use api::keys::{KeyError, KeysFile, parse_scope};
    let fail = |e: KeyError| match e {
        KeyError::Invalid(m) => user(m),
        e @ KeyError::Io { .. } => Failure {
            code: 2,
            message: format!("error: {e}"),
        },
    };
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let audit = |results: &Path, event: &str, name: &str, detail: String| -> Result<(), Failure> {
        let mut ev = api::audit::AuditEvent::new(event, "ok");
        ev.key = Some(name.to_string());
        ev.detail = Some(detail);
        api::audit::AuditLog::new(results)
            .append(&ev)
            .map_err(|e| Failure {
                code: 2,
                message: format!("error: writing the audit log in {}: {e}", results.display()),
            })
    };
    match cmd {
        KeysCommand::Add {
            file,
            name,
            role,
            scope,
            results,
        } => {
            let role = role.parse().map_err(fail)?;
            let scope = parse_scope(&scope).map_err(fail)?;
            let mut f = KeysFile::read(&file).map_err(fail)?;
            let (key, record) = f.add(&name, role, scope, &now).map_err(fail)?;
            f.write(&file).map_err(fail)?;
            let scope_text = api::keys::describe_scope(&record.scope);
            audit(
                &results,
                "key.created",
                &name,
                format!(
                    "role {role}{}",
                    if scope_text.is_empty() {
                        String::new()
                    } else {
                        format!(", scope {scope_text}")
                    }
                ),
            )?;
            eprintln!("created key `{name}` ({role}); it is shown once, store it now:");
            println!("{key}");
            Ok(0)
        }
        KeysCommand::List { file, format } => {
            let f = KeysFile::read(&file).map_err(fail)?;
            if format == OutputFormat::Json {
                let list: Vec<_> = f
                    .keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "name": k.name, "role": k.role, "scope": k.scope,
                            "prefix": k.prefix, "created_at": k.created_at,
                            "revoked_at": k.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "keys": list }));
                return Ok(0);
            }
            let headers =
                render::headers(&["name", "role", "scope", "prefix", "created", "revoked"]);
            let rows: Vec<Vec<String>> = f
                .keys
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        k.role.to_string(),
                        api::keys::describe_scope(&k.scope),
                        format!("{}…", k.prefix),
                        k.created_at.clone(),
                        k.revoked_at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            println!("{}", render::table(&headers, &rows));
            Ok(0)
        }
        KeysCommand::Revoke {
            file,
            name,
            results,
        } => {
            let mut f = KeysFile::read(&file).map_err(fail)?;
            f.revoke(&name, &now).map_err(fail)?;
            f.write(&file).map_err(fail)?;
            audit(&results, "key.revoked", &name, "revoked".into())?;
            eprintln!("revoked key `{name}`");
            Ok(0)
        }
    }
}

async fn run_formula(path: &Path, choice: PeriodChoice, args: &RunArgs) -> Result<u8, Failure> {
    let mut session = session_options(args.threads, args.memory_limit.as_deref())?;
    session.cluster = args.cluster.clone();
    let loaded = engine::load(path).map_err(Failure::from)?;
    for w in &loaded.warnings {
        eprintln!("{}", render::diagnostic(&loaded.file, w, color()));
    }
    let req = RunRequest {
        periods: choice,
        out: args.out.clone(),
        detail: args.detail,
        session,
    };
    let spinner = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("computing {}", loaded.formula.name()));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let report = engine::run(&loaded, &req, &Utc::now).await;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let report = report.map_err(Failure::from)?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "formula": report.manifest.formula,
                "version": report.manifest.version,
                "formula_hash": report.manifest.formula_hash,
                "run_id": report.manifest.run_id,
                "results": report.rows,
            });
            let _ = writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let comps: Vec<String> = loaded
                .formula
                .file
                .components
                .iter()
                .map(|c| c.name.value.clone())
                .collect();
            let mut headers = render::headers(&[
                "period",
                "group",
                "score",
                "population",
                "included",
                "excluded",
            ]);
            headers.extend(comps.iter().cloned());
            let num = |v: Option<f64>| render::number(v, 2);
            let rows: Vec<Vec<String>> = report
                .rows
                .iter()
                .map(|r| {
                    let group = match (&r.dimension, &r.value) {
                        (None, _) => "all".to_string(),
                        (Some(d), Some(v)) => format!("{d}={v}"),
                        (Some(d), None) => format!("{d}=(null)"),
                    };
                    let mut row = vec![
                        r.period.to_string(),
                        group,
                        num(r.score),
                        r.population.to_string(),
                        r.included.to_string(),
                        r.excluded.to_string(),
                    ];
                    row.extend(
                        r.components
                            .0
                            .iter()
                            .map(|(_, c)| num(c.contribution.or(c.rollup))),
                    );
                    row
                })
                .collect();
            let _ = write!(stdout, "{}", render::table(&headers, &rows));
            let _ = writeln!(
                stdout,
                "\n{} {} ({}) run {} -> {}",
                report.manifest.formula,
                report.manifest.version,
                if loaded.formula.score.is_none() {
                    "component columns are contributions"
                } else {
                    "component columns are rollups"
                },
                report.manifest.run_id,
                report.dir.display()
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("lots"), None);
    }
}
