//! Micro benchmarks (criterion):
//! - formula evaluation: the derived values, components and score of the
//!   sample formula over 1M customers, compiled to vectorised DataFusion
//!   expressions (fused into one `croo_fused` kernel, as the engine runs
//!   them, and unfused: one arrow kernel per operator) vs the evalexpr
//!   reference interpreter row by row;
//! - measure aggregation: `sum`/`avg`/`count` grouped by customer, DataFusion's
//!   float `sum` vs croo's exact `croo_sum`, in rows per second.
//!
//! `cargo bench -p benches` (figures in benches/README.md).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::{Expr, ident};
use datafusion::physical_expr::create_physical_expr;
use datafusion::prelude::SessionContext;
use formulas::compile::{Scope, compile};
use formulas::expr::parse;
use formulas::reference::Reference;
use rand::{Rng, SeedableRng};

const MEASURES: [&str; 7] = [
    "revenue",
    "refunds",
    "cost_to_serve",
    "contacts",
    "fcr",
    "digital_share",
    "csat",
];

/// The row-level part of the sample formula: derived values inlined into
/// components and the weighted score (population functions excluded: they
/// are windows, measured by the whole-run benchmark).
const SCORE: &str = "0.4 * clamp((revenue - refunds - cost_to_serve) / 500, 0, 1) + 0.35 * if(contacts > 0, 0.5 * fcr + 0.3 * digital_share + 0.2 * if(csat > 0, (csat - 1) / 4, 0.5), 1) + 0.25 * min(max(revenue - refunds, 0) / (cost_to_serve + 1), 1)";

fn batch(n: usize) -> RecordBatch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, _) in MEASURES.iter().enumerate() {
        let v: Float64Array = (0..n)
            .map(|_| match i {
                3 => Some(rng.random_range(0..6) as f64),
                4 | 5 => Some(rng.random::<f64>()),
                6 => Some(rng.random_range(1.0..5.0)),
                _ => Some(rng.random_range(0.0..400.0)),
            })
            .collect();
        cols.push(Arc::new(v));
    }
    let fields: Vec<Field> = MEASURES
        .iter()
        .map(|m| Field::new(*m, DataType::Float64, true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

struct Columns;

impl Scope for Columns {
    fn ident(&self, name: &str) -> Option<Expr> {
        Some(ident(name))
    }

    fn partition(&self) -> Vec<Expr> {
        Vec::new()
    }
}

fn formula_evaluation(c: &mut Criterion) {
    let n = 1_000_000;
    let b = batch(n);
    let ast = parse(SCORE).unwrap();
    let expr = compile(&ast, &Columns).unwrap();
    let df_schema = DFSchema::try_from(b.schema().as_ref().clone()).unwrap();
    // As the engine evaluates a formula: fused into one `croo_fused` kernel.
    let fused = kernels::fused::fuse(expr.clone(), &df_schema).unwrap();
    let physical = |e: &Expr| {
        create_physical_expr(
            e,
            &df_schema,
            &ExecutionProps::new(),
            &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(
            ),
        )
        .unwrap()
    };
    let mut g = c.benchmark_group("formula_evaluation");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    // In DataFusion's batches of 8192 rows, as the engine evaluates them
    // (one 1M-row batch mostly measures page faults of its intermediates).
    let slices: Vec<RecordBatch> = (0..n)
        .step_by(8192)
        .map(|o| b.slice(o, 8192.min(n - o)))
        .collect();
    // The floor: reading the seven inputs once (what any evaluation pays).
    let floor = kernels::fused::fuse(
        compile(&parse(&MEASURES.join(" + ")).unwrap(), &Columns).unwrap(),
        &df_schema,
    )
    .unwrap();
    for (name, e) in [
        ("vectorised_fused_1M", &fused),
        ("vectorised_unfused_1M", &expr),
        ("floor_fused_sum_of_inputs_1M", &floor),
    ] {
        let p = physical(e);
        g.bench_function(name, |bench| {
            bench.iter(|| {
                for s in &slices {
                    std::hint::black_box(p.evaluate(s).unwrap());
                }
            })
        });
    }
    // The engine's case: each batch is evaluated right after the operator
    // before (a join, a projection) produced it, so its columns are in the
    // CPU's caches; here one 8192-row batch, evaluated 122 times (1M rows).
    let hot = physical(&fused);
    let first = &slices[0];
    g.bench_function("vectorised_fused_cached_batches_1M", |bench| {
        bench.iter(|| {
            for _ in &slices {
                std::hint::black_box(hot.evaluate(first).unwrap());
            }
        })
    });
    let mut reference = Reference::new(SCORE, &MEASURES).unwrap();
    let columns: Vec<&Float64Array> = (0..MEASURES.len())
        .map(|i| b.column(i).as_any().downcast_ref::<Float64Array>().unwrap())
        .collect();
    // The interpreter on 1/100 of the rows (it is that much slower); the
    // reported throughput is per row, so the two compare directly.
    let m = n / 100;
    g.throughput(Throughput::Elements(m as u64));
    g.bench_function("evalexpr_interpreter_10k", |bench| {
        bench.iter(|| {
            let mut row = [0.0; MEASURES.len()];
            let mut acc = 0.0;
            for r in 0..m {
                for (k, col) in columns.iter().enumerate() {
                    row[k] = col.value(r);
                }
                acc += reference.eval(&row).unwrap_or(0.0);
            }
            acc
        })
    });
    g.finish();
}

fn measure_aggregation(c: &mut Criterion) {
    let n = 2_000_000usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let keys: Int64Array = (0..n)
        .map(|_| Some(rng.random_range(0..100_000i64)))
        .collect();
    let amounts: Float64Array = (0..n).map(|_| Some(rng.random_range(0.0..300.0))).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let b = RecordBatch::try_new(schema, vec![Arc::new(keys), Arc::new(amounts)]).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("measure_aggregation");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    for (name, sql) in [
        (
            "datafusion_sum_avg_count",
            "SELECT customer_id, sum(amount), avg(amount), count(*) FROM t GROUP BY customer_id",
        ),
        (
            "croo_exact_sum_avg_count",
            "SELECT customer_id, croo_sum(amount), croo_sum(amount) / count(amount), count(*) FROM t GROUP BY customer_id",
        ),
    ] {
        let mut ctx = SessionContext::new();
        kernels::register(&mut ctx).unwrap();
        ctx.register_batch("t", b.clone()).unwrap();
        g.bench_function(name, |bench| {
            bench.iter(|| {
                rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, formula_evaluation, measure_aggregation);
criterion_main!(benches);
