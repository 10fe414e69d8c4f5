//! `croo quickstart`: the sample (written if missing), its example formula
//! run over the last three months, the scores printed.

use std::path::PathBuf;

use engine::PeriodChoice;

use crate::args::RunArgs;
use crate::commands::{run, sample};
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Where the sample lives.
    #[arg(long, default_value = "croo-sample")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let formula = a.dir.join(engine::sample::FORMULA_FILE);
    if !formula.exists() {
        let s = sample::write(
            &a.dir,
            &sample::SampleArgs {
                customers: 2000,
                months: 12,
                seed: 42,
            },
        )?;
        eprintln!("{s}");
    }
    let (from, to) = engine::sample::default_range(3);
    eprintln!("running {} for {from} to {to}", formula.display());
    run::run_formula(&formula, &|_| Ok(PeriodChoice::Range(from, to)), &a.run).await
}
