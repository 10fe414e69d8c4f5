//! `croo sample`: a realistic sample data set and an example formula.

use std::path::{Path, PathBuf};

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "croo-sample")]
    pub out: PathBuf,
    #[command(flatten)]
    pub sample: SampleArgs,
}

#[derive(clap::Args)]
pub struct SampleArgs {
    #[arg(long, default_value_t = 2000)]
    pub customers: usize,
    #[arg(long, default_value_t = 12)]
    pub months: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run(a: Args) -> Result<u8, Failure> {
    let s = write(&a.out, &a.sample)?;
    println!("{s}");
    Ok(0)
}

/// Writes the sample to `out`; returns what was written, in words.
pub fn write(out: &Path, s: &SampleArgs) -> Result<String, Failure> {
    let opts = engine::sample::SampleOptions {
        customers: s.customers,
        months: s.months,
        seed: s.seed,
    };
    let summary = engine::sample::write(out, &opts)?;
    Ok(format!(
        "wrote {} customers, {} interactions, {} transactions and {} product events to {}\nexample formula: {}\nan experiment: croo experiment {} --experiment {} --assignments {} --from FIRST --to LAST",
        summary.customers,
        summary.interactions,
        summary.transactions,
        summary.product_events,
        out.display(),
        out.join(engine::sample::FORMULA_FILE).display(),
        out.join(engine::sample::FORMULA_FILE).display(),
        engine::sample::EXPERIMENT,
        out.join(engine::sample::ASSIGNMENTS_FILE).display(),
    ))
}
