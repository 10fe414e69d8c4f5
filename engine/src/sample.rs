//! A realistic, deterministic sample data set and an example formula.
//!
//! Customers (Parquet) with segment, region, plan and join/leave instants;
//! interactions (hive-partitioned Parquet, one folder per month) over web
//! self-service, chatbot, IVR, chat, phone and store, with handling time,
//! cost, first-contact resolution and sparse CSAT; transactions (CSV, ISO
//! 8601 text instants) with refunds; product adoption and experiment
//! exposure events (NDJSON); and the assignments of an experiment
//! (`assignments.csv`: a chatbot arm with a planted effect, for `croo
//! experiment`). The same seed gives the same bytes.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Months, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::period;

/// File name of the example formula inside a sample folder.
pub const FORMULA_FILE: &str = "retail-croo.toml";

/// The month the sample data ends with (inclusive); fixed so that the same
/// seed always gives the same data.
pub fn last_month() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default()
}

/// First and last month of a sample of `months` months.
pub fn default_range(months: u32) -> (NaiveDate, NaiveDate) {
    let last = last_month();
    let first = last
        .checked_sub_months(Months::new(months.saturating_sub(1)))
        .unwrap_or(last);
    (first, last)
}

#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub customers: usize,
    pub months: u32,
    pub seed: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SampleSummary {
    pub customers: usize,
    pub interactions: usize,
    pub transactions: usize,
    pub product_events: usize,
}

const SEGMENTS: [(&str, f64, f64); 3] = [
    ("consumer", 0.70, 1.0),
    ("smb", 0.22, 2.2),
    ("enterprise", 0.08, 4.5),
];
const REGIONS: [&str; 4] = ["north", "south", "east", "west"];
const PLANS: [(&str, f64, f64); 3] = [
    ("basic", 0.5, 35.0),
    ("plus", 0.35, 70.0),
    ("premium", 0.15, 140.0),
];
/// channel, share, mean handling seconds, cost per second (EUR), first-contact resolution rate
const CHANNELS: [(&str, f64, f64, f64, f64); 6] = [
    ("web", 0.30, 90.0, 0.0004, 0.70),
    ("chatbot", 0.16, 150.0, 0.0008, 0.55),
    ("ivr", 0.10, 200.0, 0.0015, 0.50),
    ("chat", 0.14, 420.0, 0.0070, 0.72),
    ("phone", 0.20, 520.0, 0.0110, 0.78),
    ("store", 0.10, 900.0, 0.0140, 0.85),
];
const FEATURES: [&str; 5] = [
    "family-plan",
    "eco-mode",
    "priority-care",
    "smart-billing",
    "self-repair",
];

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, f64)]) -> usize {
    let x: f64 = rng.random();
    let mut acc = 0.0;
    for (i, (_, w)) in items.iter().enumerate() {
        acc += w;
        if x < acc {
            return i;
        }
    }
    items.len() - 1
}

/// Poisson-distributed count (Knuth; fine for the small means used here).
fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> usize {
    let l = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= l || k > 200 {
            return k;
        }
        k += 1;
    }
}

/// A log-normal-ish positive value with the given mean.
fn skewed(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    // sum of uniforms approximates a normal; exp gives a right skew
    let z: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0;
    mean * (0.55 * z).exp() / 1.05
}

fn iso(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file = File::create(path).map_err(Error::io(format!("writing {}", path.display())))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let err = |e: datafusion::parquet::errors::ParquetError| {
        Error::engine(format!("writing {}", path.display()))(e.into())
    };
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(err)?;
    w.write(batch).map_err(err)?;
    w.close().map_err(err)?;
    Ok(())
}

fn batch(fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::engine("building sample data")(e.into()))
}

/// Writes the sample data and the example formula into `out`.
pub fn write(out: &Path, opts: &SampleOptions) -> Result<SampleSummary> {
    if opts.customers == 0 || opts.months == 0 {
        return Err(Error::User(
            "--customers and --months must be at least 1".into(),
        ));
    }
    let (first, last) = default_range(opts.months);
    let end = period::micros(period::next(formulas::Grain::Month, last));
    let start = period::micros(first);
    let history_start = period::micros(first.checked_sub_months(Months::new(24)).unwrap_or(first));
    fs::create_dir_all(out).map_err(Error::io(format!("creating {}", out.display())))?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let n = opts.customers;

    // Customers.
    let mut id = Vec::with_capacity(n);
    let mut segment = Vec::with_capacity(n);
    let mut region = Vec::with_capacity(n);
    let mut plan = Vec::with_capacity(n);
    let mut joined = Vec::with_capacity(n);
    let mut left: Vec<Option<i64>> = Vec::with_capacity(n);
    for i in 0..n {
        id.push(1000 + i as i64);
        segment.push(pick(&mut rng, &SEGMENTS.map(|(s, w, _)| (s, w))));
        region.push(rng.random_range(0..REGIONS.len()));
        plan.push(pick(&mut rng, &PLANS.map(|(s, w, _)| (s, w))));
        let j = rng.random_range(history_start..end - 86_400_000_000);
        joined.push(j);
        let churn = rng.random::<f64>() < 0.15;
        left.push(if churn {
            let l = rng.random_range(j..end + (end - start) / 2);
            (l < end).then_some(l)
        } else {
            None
        });
    }
    let customers = batch(
        vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("segment", DataType::Utf8, false),
            Field::new("region", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
            ts_field("joined_at", false),
            ts_field("left_at", true),
        ],
        vec![
            Arc::new(Int64Array::from(id.clone())),
            Arc::new(StringArray::from_iter_values(
                segment.iter().map(|&s| SEGMENTS[s].0),
            )),
            Arc::new(StringArray::from_iter_values(
                region.iter().map(|&r| REGIONS[r]),
            )),
            Arc::new(StringArray::from_iter_values(
                plan.iter().map(|&p| PLANS[p].0),
            )),
            Arc::new(TimestampMicrosecondArray::from(joined.clone()).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(left.clone()).with_timezone("UTC")),
        ],
    )?;
    write_parquet(&out.join("customers.parquet"), &customers)?;

    // An experiment: a chatbot for half of the customers, first exposed in
    // the sample's first month. Its own random stream, so the rest of the
    // data is what it was without it. Planted: treated customers' contacts
    // after exposure cost 20% less, and in smb 15% of them that would have
    // been resolved at first contact are not.
    let mut xrng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x05EE_DC4A_7B07_u64);
    let mut chatbot = Vec::with_capacity(n);
    let mut exposed = Vec::with_capacity(n);
    let a_path = out.join(ASSIGNMENTS_FILE);
    let mut asg = BufWriter::new(
        File::create(&a_path).map_err(Error::io(format!("writing {}", a_path.display())))?,
    );
    writeln!(asg, "customer_id,experiment,arm,first_exposure")
        .map_err(Error::io(format!("writing {}", a_path.display())))?;
    let first_end = period::micros(period::next(formulas::Grain::Month, first));
    for customer in &id {
        let treated = xrng.random::<bool>();
        let at = xrng.random_range(start..first_end);
        chatbot.push(treated);
        exposed.push(at);
        writeln!(
            asg,
            "{},{EXPERIMENT},{},{}",
            customer,
            if treated { "chatbot" } else { "control" },
            iso(at)
        )
        .map_err(Error::io(format!("writing {}", a_path.display())))?;
    }
    asg.flush()
        .map_err(Error::io(format!("writing {}", a_path.display())))?;

    // Events, month by month.
    let mut summary = SampleSummary {
        customers: n,
        ..Default::default()
    };
    let inter_dir = out.join("interactions");
    if inter_dir.exists() {
        fs::remove_dir_all(&inter_dir)
            .map_err(Error::io(format!("replacing {}", inter_dir.display())))?;
    }
    let tx_path = out.join("transactions.csv");
    let mut tx = BufWriter::new(
        File::create(&tx_path).map_err(Error::io(format!("writing {}", tx_path.display())))?,
    );
    let io_err = |p: &Path| Error::io(format!("writing {}", p.display()));
    writeln!(tx, "customer_id,ts,amount,kind,product_id").map_err(io_err(&tx_path))?;
    let ev_path = out.join("product_events.ndjson");
    let mut ev = BufWriter::new(
        File::create(&ev_path).map_err(Error::io(format!("writing {}", ev_path.display())))?,
    );

    let mut month = first;
    while month <= last {
        let m0 = period::micros(month);
        let m1 = period::micros(period::next(formulas::Grain::Month, month));
        let (mut c_id, mut c_at, mut c_ch, mut c_secs, mut c_cost, mut c_fcr, mut c_csat) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for i in 0..n {
            let lo = joined[i].max(m0);
            let hi = left[i].unwrap_or(i64::MAX).min(m1);
            if lo >= hi {
                continue;
            }
            let activity = SEGMENTS[segment[i]].2 * (hi - lo) as f64 / (m1 - m0) as f64;
            // Interactions.
            for _ in 0..poisson(&mut rng, 1.6 * activity) {
                let ch = pick(&mut rng, &CHANNELS.map(|(c, w, ..)| (c, w)));
                let (_, _, mean, cps, fcr) = CHANNELS[ch];
                let secs = skewed(&mut rng, mean);
                c_id.push(id[i]);
                c_at.push(rng.random_range(lo..hi));
                c_ch.push(CHANNELS[ch].0);
                c_secs.push(secs);
                let at = *c_at.last().unwrap_or(&lo);
                let treated = chatbot[i] && at >= exposed[i];
                let cost = if treated { 0.8 } else { 1.0 } * secs * cps;
                c_cost.push((cost * 100.0).round() / 100.0);
                let resolved = rng.random::<f64>() < fcr;
                c_fcr
                    .push(resolved && !(treated && segment[i] == 1 && xrng.random::<f64>() < 0.15));
                c_csat.push((rng.random::<f64>() < 0.18).then(|| {
                    let base = if c_fcr.last() == Some(&true) {
                        4.2
                    } else {
                        2.8
                    };
                    (base + rng.random_range(-1.5..1.5f64))
                        .round()
                        .clamp(1.0, 5.0) as i32
                }));
            }
            // Transactions.
            for _ in 0..poisson(&mut rng, 1.2 * activity) {
                let amount = skewed(&mut rng, PLANS[plan[i]].2 * SEGMENTS[segment[i]].2.sqrt());
                let refund = rng.random::<f64>() < 0.07;
                writeln!(
                    tx,
                    "{},{},{:.2},{},{}",
                    id[i],
                    iso(rng.random_range(lo..hi)),
                    amount,
                    if refund { "refund" } else { "purchase" },
                    100 + rng.random_range(0..40)
                )
                .map_err(io_err(&tx_path))?;
                summary.transactions += 1;
            }
            // Product events: exposure to an experiment, sometimes adoption.
            for _ in 0..poisson(&mut rng, 0.35 * activity) {
                let feature = FEATURES[rng.random_range(0..FEATURES.len())];
                let variant = if rng.random::<bool>() {
                    "treatment"
                } else {
                    "control"
                };
                let at = rng.random_range(lo..hi);
                writeln!(
                    ev,
                    "{{\"customer_id\":{},\"at\":\"{}\",\"feature\":\"{feature}\",\"event\":\"exposed\",\"experiment\":\"{feature}-2026\",\"variant\":\"{variant}\"}}",
                    id[i],
                    iso(at)
                )
                .map_err(io_err(&ev_path))?;
                summary.product_events += 1;
                let p = if variant == "treatment" { 0.45 } else { 0.25 };
                if rng.random::<f64>() < p {
                    writeln!(
                        ev,
                        "{{\"customer_id\":{},\"at\":\"{}\",\"feature\":\"{feature}\",\"event\":\"adopted\",\"experiment\":\"{feature}-2026\",\"variant\":\"{variant}\"}}",
                        id[i],
                        iso(rng.random_range(at..hi))
                    )
                    .map_err(io_err(&ev_path))?;
                    summary.product_events += 1;
                }
            }
        }
        if !c_id.is_empty() {
            summary.interactions += c_id.len();
            let dir = inter_dir.join(format!("month={}", &month.to_string()[..7]));
            fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
            let b = batch(
                vec![
                    Field::new("customer_id", DataType::Int64, false),
                    ts_field("started_at", false),
                    Field::new("channel", DataType::Utf8, false),
                    Field::new("handle_seconds", DataType::Float64, false),
                    Field::new("cost_eur", DataType::Float64, false),
                    Field::new("resolved_first_contact", DataType::Boolean, false),
                    Field::new("csat", DataType::Int32, true),
                ],
                vec![
                    Arc::new(Int64Array::from(c_id)),
                    Arc::new(TimestampMicrosecondArray::from(c_at).with_timezone("UTC")),
                    Arc::new(StringArray::from(c_ch)),
                    Arc::new(Float64Array::from(c_secs)),
                    Arc::new(Float64Array::from(c_cost)),
                    Arc::new(BooleanArray::from(c_fcr)),
                    Arc::new(Int32Array::from(c_csat)),
                ],
            )?;
            write_parquet(&dir.join("part-0.parquet"), &b)?;
        }
        month = period::next(formulas::Grain::Month, month);
    }
    tx.flush().map_err(io_err(&tx_path))?;
    ev.flush().map_err(io_err(&ev_path))?;
    let formula = out.join(FORMULA_FILE);
    fs::write(&formula, EXAMPLE_FORMULA)
        .map_err(Error::io(format!("writing {}", formula.display())))?;
    let schema = out.join("croo-formula.schema.json");
    fs::write(&schema, formulas::schema::JSON)
        .map_err(Error::io(format!("writing {}", schema.display())))?;
    Ok(summary)
}

/// The experiment of the sample data, and its assignments file.
pub const EXPERIMENT: &str = "chatbot-2026";
pub const ASSIGNMENTS_FILE: &str = "assignments.csv";

/// The example formula written next to the sample data.
pub const EXAMPLE_FORMULA: &str = include_str!("../../examples/retail-croo.toml");
