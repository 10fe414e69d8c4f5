//! croo's function registry: the only functions a croo plan uses that are
//! not DataFusion built-ins. A Ballista executor (or any session that runs
//! a serialised croo plan) must call [`register`] so that the names resolve.
//!
//! - `croo_sum(x)`: the exact, order-independent sum of Float64 values
//!   ([`ExactSum`]), NULL when no value is non-NULL. Replaces `sum` and `avg`
//!   over floating-point values so that results are the same bits on any
//!   number of threads.
//! - `croo_var_pop(x)`: the population variance from exact sums of `x` and
//!   `x²` (see [`crate::exact::variance`]).
//! - the NULL-strict row functions of the formula syntax (`croo_least`,
//!   `croo_greatest`, `croo_div`, `croo_mod`, `croo_and`, `croo_or`,
//!   `croo_if`), see [`crate::strict`].

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, Float64Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility,
};
use datafusion::prelude::cast;

use crate::exact::{ExactSum, variance};

/// Every function of the registry.
pub fn all() -> Vec<Arc<AggregateUDF>> {
    vec![sum_udaf(), var_pop_udaf()]
}

/// Every scalar function of the registry (the NULL-strict row functions
/// of [`crate::strict`]).
pub fn scalars() -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    crate::strict::all()
}

/// Registers every function of the registry in `registry` (a
/// `SessionContext`, a Ballista scheduler's session, ...).
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for f in all() {
        registry.register_udaf(f)?;
    }
    for f in scalars() {
        registry.register_udf(f)?;
    }
    Ok(())
}

/// The `croo_sum` aggregate.
pub fn sum_udaf() -> Arc<AggregateUDF> {
    static F: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::from(CrooSum::new())));
    Arc::clone(&F)
}

/// The `croo_var_pop` aggregate.
pub fn var_pop_udaf() -> Arc<AggregateUDF> {
    static F: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::from(CrooVarPop::new())));
    Arc::clone(&F)
}

/// `croo_sum(CAST(x AS DOUBLE))`.
pub fn exact_sum(x: Expr) -> Expr {
    sum_udaf().call(vec![cast(x, DataType::Float64)])
}

/// `croo_var_pop(CAST(x AS DOUBLE))`.
pub fn exact_var_pop(x: Expr) -> Expr {
    var_pop_udaf().call(vec![cast(x, DataType::Float64)])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CrooSum {
    signature: Signature,
}

impl CrooSum {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for CrooSum {
    fn name(&self) -> &str {
        "croo_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "exact_sum"),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return datafusion::common::not_impl_err!("croo_sum(DISTINCT ...)");
        }
        Ok(Box::new(SumAccumulator::default()))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SumGroups::default()))
    }
}

fn floats(values: &[ArrayRef]) -> Result<&Float64Array> {
    match values.first() {
        Some(a) if a.data_type() == &DataType::Float64 => Ok(a.as_primitive::<Float64Type>()),
        Some(a) => internal_err!("croo aggregate over {}, not Float64", a.data_type()),
        None => internal_err!("croo aggregate without an argument"),
    }
}

fn decode(bytes: &[u8]) -> Result<ExactSum> {
    match ExactSum::from_bytes(bytes) {
        Some(s) => Ok(s),
        None => internal_err!("malformed croo_sum state"),
    }
}

#[derive(Debug, Default)]
struct SumAccumulator {
    sum: ExactSum,
}

impl Accumulator for SumAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        floats(values)?
            .iter()
            .flatten()
            .for_each(|x| self.sum.add(x));
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // Exact arithmetic: subtracting is adding the negation. The "any
        // value" flag cannot be retracted, so a frame that slid past every
        // value reads 0, not NULL; croo only uses whole-partition frames.
        floats(values)?
            .iter()
            .flatten()
            .for_each(|x| self.sum.add(-x));
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.sum.value()))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.sum.heap_size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.sum.to_bytes()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in states[0].as_binary::<i32>().iter().flatten() {
            self.sum.merge(&decode(bytes)?);
        }
        Ok(())
    }
}

/// One [`ExactSum`] per group.
#[derive(Default)]
struct SumGroups {
    sums: Vec<ExactSum>,
}

impl GroupsAccumulator for SumGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let xs = floats(values)?;
        self.sums.resize_with(total_num_groups, ExactSum::new);
        for (row, &g) in group_indices.iter().enumerate() {
            if xs.is_null(row) || opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            self.sums[g].add(xs.value(row));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sums = emit_to.take_needed(&mut self.sums);
        Ok(Arc::new(
            sums.iter().map(ExactSum::value).collect::<Float64Array>(),
        ))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sums = emit_to.take_needed(&mut self.sums);
        let mut b = BinaryBuilder::with_capacity(sums.len(), sums.len() * 24);
        for s in &sums {
            b.append_value(s.to_bytes());
        }
        Ok(vec![Arc::new(b.finish())])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let states: &BinaryArray = values[0].as_binary::<i32>();
        self.sums.resize_with(total_num_groups, ExactSum::new);
        for (row, &g) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                self.sums[g].merge(&decode(states.value(row))?);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let xs = floats(values)?;
        let mut b = BinaryBuilder::with_capacity(xs.len(), xs.len() * 24);
        for row in 0..xs.len() {
            let mut s = ExactSum::new();
            let skip =
                xs.is_null(row) || opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row));
            if !skip {
                s.add(xs.value(row));
            }
            b.append_value(s.to_bytes());
        }
        Ok(vec![Arc::new(b.finish())])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * size_of::<ExactSum>()
            + self.sums.iter().map(ExactSum::heap_size).sum::<usize>()
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CrooVarPop {
    signature: Signature,
}

impl CrooVarPop {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for CrooVarPop {
    fn name(&self) -> &str {
        "croo_var_pop"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "sum"),
                DataType::Binary,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "sum_squares"),
                DataType::Binary,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "count"),
                DataType::UInt64,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return datafusion::common::not_impl_err!("croo_var_pop(DISTINCT ...)");
        }
        Ok(Box::new(VarAccumulator::default()))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

#[derive(Debug, Default)]
struct VarAccumulator {
    s1: ExactSum,
    s2: ExactSum,
    n: u64,
}

impl VarAccumulator {
    fn add(&mut self, x: f64, sign: f64) {
        self.s1.add(sign * x);
        self.s2.add_product(sign * x, x);
    }
}

impl Accumulator for VarAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for x in floats(values)?.iter().flatten() {
            self.add(x, 1.0);
            self.n += 1;
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for x in floats(values)?.iter().flatten() {
            self.add(x, -1.0);
            self.n = self.n.saturating_sub(1);
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(variance(&self.s1, &self.s2, self.n)))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.s1.heap_size() + self.s2.heap_size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Binary(Some(self.s1.to_bytes())),
            ScalarValue::Binary(Some(self.s2.to_bytes())),
            ScalarValue::UInt64(Some(self.n)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (a, b) = (states[0].as_binary::<i32>(), states[1].as_binary::<i32>());
        let n: &UInt64Array = states[2].as_primitive::<UInt64Type>();
        for row in 0..a.len() {
            if a.is_valid(row) && b.is_valid(row) {
                self.s1.merge(&decode(a.value(row))?);
                self.s2.merge(&decode(b.value(row))?);
                self.n += n.value(row);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::prelude::{SessionConfig, SessionContext, col};

    /// Values whose naive float sum depends on the order.
    fn values() -> Vec<f64> {
        (0..20_000)
            .map(|i| {
                let i = i as f64;
                (i * 0.1).sin() * 10f64.powi((i as i32 % 13) - 4) + 0.1
            })
            .collect()
    }

    async fn run(partitions: usize, sql: &str) -> Vec<u64> {
        let cfg = SessionConfig::new().with_target_partitions(partitions);
        let mut ctx = SessionContext::new_with_config(cfg);
        register(&mut ctx).unwrap();
        let xs = values();
        let groups: Vec<i64> = (0..xs.len() as i64).map(|i| i % 7).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("x", DataType::Float64, false),
        ]));
        // Many small batches so that partitions really get different rows.
        let batches: Vec<RecordBatch> = (0..xs.len())
            .step_by(500)
            .map(|s| {
                let e = (s + 500).min(xs.len());
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(datafusion::arrow::array::Int64Array::from(
                            groups[s..e].to_vec(),
                        )),
                        Arc::new(Float64Array::from(xs[s..e].to_vec())),
                    ],
                )
                .unwrap()
            })
            .collect();
        let table = datafusion::datasource::MemTable::try_new(
            schema,
            batches.chunks(3).map(|c| c.to_vec()).collect(),
        )
        .unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let out = ctx
            .sql(sql)
            .await
            .unwrap()
            .sort(vec![col("g").sort(true, false)])
            .unwrap();
        let batches = out.collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn grouped_sums_are_the_same_bits_on_any_partitioning() {
        let sql = "SELECT g, croo_sum(x) FROM t GROUP BY g";
        let one = run(1, sql).await;
        assert_eq!(one.len(), 7);
        for p in [2, 3, 8] {
            assert_eq!(run(p, sql).await, one, "{p} partitions");
        }
        // And they are the correctly rounded sums.
        let xs = values();
        for (g, bits) in one.iter().enumerate() {
            let mut s = ExactSum::new();
            xs.iter().skip(g).step_by(7).for_each(|&x| s.add(x));
            assert_eq!(*bits, s.value().unwrap().to_bits());
        }
    }

    #[tokio::test]
    async fn windowed_variance_is_the_same_bits_on_any_partitioning() {
        let sql = "SELECT g, first_value(v) AS v FROM (SELECT g, croo_var_pop(x) OVER (PARTITION BY g) AS v FROM t) GROUP BY g";
        let one = run(1, sql).await;
        for p in [2, 8] {
            assert_eq!(run(p, sql).await, one, "{p} partitions");
        }
        let xs: Vec<f64> = values().into_iter().step_by(7).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let two_pass = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        let v = f64::from_bits(one[0]);
        assert!(
            (v - two_pass).abs() <= 1e-12 * two_pass,
            "{v} vs {two_pass}"
        );
    }
}
