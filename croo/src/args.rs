//! Arguments shared by several commands, and their conversion into the
//! engine's typed requests (dates, periods, session options, sizes).

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::ValueEnum;
use engine::calendar::Calendar;
use engine::{PeriodChoice, SessionOptions};

use crate::exit::{Failure, user};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct PeriodArgs {
    /// The periods of a date or a label: 2026-10-01 (the period holding
    /// that day), 2026-10, 2026-Q4, 2026-W45, 2026 (every period that
    /// overlaps the month, quarter, ISO week or year), or a fiscal name of
    /// the formula's [calendar] (FY2027, FY2027-Q1, FY2027-M01,
    /// FY2023-W53); `current` for the period that holds today (open).
    #[arg(long, conflicts_with_all = ["from", "to", "last_complete"])]
    pub period: Option<String>,
    /// First period of a range (inclusive): a date or a label, as --period.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last period of a range (inclusive): a date or a label, as --period.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// The latest period that has ended, settled (`[operations] settle`)
    /// and whose every event source has data up to its end.
    #[arg(long)]
    pub last_complete: bool,
}

impl PeriodArgs {
    /// The periods these arguments name in the calendar `cal`.
    pub fn choice(&self, cal: &Calendar) -> Result<PeriodChoice, Failure> {
        Ok(
            match (&self.period, &self.from, &self.to, self.last_complete) {
                (Some(d), None, None, false) if d.trim() == "current" => PeriodChoice::Current,
                (Some(d), None, None, false) => match span("--period", d, cal)? {
                    (first, last) if first == last => PeriodChoice::One(first),
                    (first, last) => PeriodChoice::Range(first, last),
                },
                (None, Some(f), Some(t), false) => {
                    PeriodChoice::Range(span("--from", f, cal)?.0, span("--to", t, cal)?.1)
                }
                (None, None, None, true) => PeriodChoice::LastComplete,
                _ => {
                    return Err(user(
                        "name the periods: --period DATE, --from DATE --to DATE, or --last-complete",
                    ));
                }
            },
        )
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Results store folder.
    #[arg(long, default_value = "croo-results")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Also keep the per-customer rows.
    #[arg(long)]
    pub detail: bool,
    /// Memory limit, e.g. 2GiB; operators spill to disk past it.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Worker threads (default: all cores), each running eight DataFusion
    /// partitions. The numbers are the same bits for any thread count
    /// (every floating-point sum is exact).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run on a Ballista cluster: its scheduler, df://HOST:PORT (started
    /// with `croo scheduler`; workers with `croo executor`).
    #[arg(long, value_name = "df://HOST:PORT")]
    pub cluster: Option<String>,
    /// With --cluster: the folder the executors write the per-customer
    /// table into for the rollups (one path every executor, the scheduler
    /// and this process reach: a shared file system; default: the system's
    /// temporary folder, enough for a cluster on one machine).
    #[arg(long, value_name = "DIR", requires = "cluster")]
    pub cluster_staging: Option<PathBuf>,
    /// Also recompute the N periods before the chosen ones (late data
    /// lands in its period; unchanged periods keep their edition).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub lookback: u32,
    /// Compute even when the formula, engine and input files are those of
    /// the current editions.
    #[arg(long)]
    pub force: bool,
    /// Publish new editions of final periods whose numbers change (needs
    /// --reason).
    #[arg(long, requires = "reason")]
    pub restate: bool,
    /// Why final periods are restated (recorded in each edition).
    #[arg(long, requires = "restate")]
    pub reason: Option<String>,
    /// Who publishes (recorded in each edition; default: the OS user).
    #[arg(long)]
    pub actor: Option<String>,
    /// A targets file: adds each group's status (default: NAME.targets.toml
    /// beside NAME.toml, when there is one).
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
}

impl RunArgs {
    /// How the run publishes: actor, restatement, lookback, force. `formula`
    /// is the formula file (its git commit is recorded).
    pub fn publishing(&self, formula: &std::path::Path) -> Result<engine::Publishing, Failure> {
        let reason = match (&self.reason, self.restate) {
            (Some(r), true) if r.trim().is_empty() => {
                return Err(user("--reason is empty: say why the period is restated"));
            }
            (r, _) => r.clone(),
        };
        let actor = match &self.actor {
            Some(a) if a.trim().is_empty() => return Err(user("--actor is empty")),
            Some(a) => a.clone(),
            None => engine::provenance::os_user(),
        };
        Ok(engine::Publishing {
            publisher: engine::editions::Publisher {
                actor,
                restate: reason,
                git: engine::provenance::git(formula),
            },
            lookback: self.lookback,
            force: self.force,
        })
    }

    /// The session these arguments ask for.
    pub fn session(&self) -> Result<SessionOptions, Failure> {
        let mut s = session_options(self.threads, self.memory_limit.as_deref())?;
        s.cluster = self.cluster.clone();
        s.staging = match &self.cluster_staging {
            Some(d) => Some(
                std::path::absolute(d)
                    .map_err(|e| user(format!("--cluster-staging {}: {e}", d.display())))?,
            ),
            None => None,
        };
        Ok(s)
    }
}

/// A period argument's first and last day (`Calendar::parse_span`).
pub fn span(flag: &str, s: &str, cal: &Calendar) -> Result<(NaiveDate, NaiveDate), Failure> {
    cal.parse_span(s).ok_or_else(|| {
        let fiscal = if cal.is_default() {
            ""
        } else {
            ", a fiscal name such as FY2027-Q1,"
        };
        user(format!(
            "{flag} `{s}` is not a date or a period (expected 2026-10-01, 2026-10, 2026-Q4, 2026-W45{fiscal} or 2026)"
        ))
    })
}

/// The one period of `grain` a date or label names (`--period 2026-11` of
/// a monthly formula); a label spanning several periods is an error.
pub fn one_period(
    flag: &str,
    s: &str,
    (cal, grain): (&Calendar, formulas::Grain),
) -> Result<NaiveDate, Failure> {
    let (first, last) = span(flag, s, cal)?;
    let (a, b) = (cal.floor(grain, first), cal.floor(grain, last));
    if a != b {
        return Err(user(format!(
            "{flag} `{s}` spans several {} periods ({a} to {b}); name one",
            grain.as_str()
        )));
    }
    Ok(a)
}

/// The targets of the formula at `formula`: `--targets FILE`, else the
/// file beside the formula when there is one.
pub fn targets(
    given: Option<&std::path::Path>,
    formula: &std::path::Path,
    file: &formulas::FormulaFile,
) -> Result<Option<engine::targets::Targets>, Failure> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let beside = engine::targets::beside(formula);
            if !beside.is_file() {
                return Ok(None);
            }
            beside
        }
    };
    Ok(Some(engine::targets::load(&path, file)?))
}

/// Session options from `--threads` and `--memory-limit`.
pub fn session_options(
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
        staging: None,
        input_bytes: None,
    })
}

/// Parses sizes such as `2GiB`, `512MiB`, `1GB`, `1000000`.
pub fn parse_size(s: &str) -> Option<usize> {
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
