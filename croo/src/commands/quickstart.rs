//! `croo quickstart`: the sample (written if missing), its example formula
//! run over the last three months, the scores printed; then the sample's
//! experiment (a chatbot arm) judged over the same months.

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
    let code = run::run_formula(&formula, &|_| Ok(PeriodChoice::Range(from, to)), &a.run).await?;
    let assignments = a.dir.join(engine::sample::ASSIGNMENTS_FILE);
    if !assignments.is_file() {
        return Ok(code);
    }
    let loaded = engine::load(&formula)?;
    let cal = engine::calendar::Calendar::of(&loaded.formula.file);
    let req = engine::experiment::Request {
        experiment: engine::sample::EXPERIMENT.into(),
        assignments: engine::experiment::Assignments {
            uri: assignments.display().to_string(),
            base_dir: std::env::current_dir().unwrap_or_default(),
            key: "customer_id".into(),
            experiment: "experiment".into(),
            arm: "arm".into(),
            time: "first_exposure".into(),
        },
        control: "control".into(),
        reference: engine::experiment::Reference::Control,
        periods: cal.range(loaded.formula.file.grain, from, to),
        pre_periods: Vec::new(),
        shares: Default::default(),
        guardrails: Vec::new(),
        bootstrap: None,
        session: a.run.session()?,
    };
    let report = engine::experiment::evaluate(&loaded, &req).await?;
    engine::experiment::store::save(&a.run.out, &report, chrono::Utc::now())?;
    println!(
        "\nthe sample's experiment (croo experiment {} --experiment {} --assignments {} --from {from} --to {to}):\n",
        formula.display(),
        engine::sample::EXPERIMENT,
        assignments.display()
    );
    print!("{}", super::experiment::text(&report));
    Ok(code)
}
