//! The exact-sum aggregates of croo's function registry:
//!
//! - `croo_sum(x)`: the exact, order-independent sum of Float64 values
//!   ([`ExactSum`]), NULL when no value is non-NULL. Replaces `sum` and `avg`
//!   over floating-point values so that results are the same bits on any
//!   number of threads.
//! - `croo_var_pop(x)`: the population variance from exact sums of `x` and
//!   `x²` (see [`crate::exact::variance`]).
//! - `croo_sum_state(x)`: `croo_sum`'s exact sum as bytes (NULL when no
//!   value is non-NULL), for a caller that merges groups itself
//!   ([`SumState`]): several groupings read from one finer aggregation,
//!   with the bits `croo_sum` gives for each.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, FixedSizeBinaryArray,
    Float64Array, UInt64Array, new_null_array,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility,
};
use datafusion::prelude::cast;

use crate::exact::{ExactSum, variance};

/// The `croo_sum` aggregate.
pub fn sum_udaf() -> Arc<AggregateUDF> {
    static F: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::from(CrooSum::new())));
    Arc::clone(&F)
}

/// The `croo_sum_state` aggregate.
pub fn sum_state_udaf() -> Arc<AggregateUDF> {
    static F: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::from(CrooSum::state())));
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

/// `croo_sum_state(CAST(x AS DOUBLE))`.
pub fn exact_sum_state(x: Expr) -> Expr {
    sum_state_udaf().call(vec![cast(x, DataType::Float64)])
}

/// `croo_var_pop(CAST(x AS DOUBLE))`.
pub fn exact_var_pop(x: Expr) -> Expr {
    var_pop_udaf().call(vec![cast(x, DataType::Float64)])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CrooSum {
    signature: Signature,
    /// `croo_sum_state`: the sum's bytes, not its value.
    bytes: bool,
}

impl CrooSum {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
            bytes: false,
        }
    }

    fn state() -> Self {
        Self {
            bytes: true,
            ..Self::new()
        }
    }
}

impl AggregateUDFImpl for CrooSum {
    fn name(&self) -> &str {
        if self.bytes {
            "croo_sum_state"
        } else {
            "croo_sum"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(if self.bytes {
            DataType::Binary
        } else {
            DataType::Float64
        })
    }

    /// Three columns, at most one of them non-NULL per row: a single value
    /// not yet summed (what `convert_to_state` gives for one input row), a
    /// partial sum in 2^-64 units (16 little-endian bytes of an `i128`: the
    /// common case, see [`SumGroups`]), or the bytes of a partial
    /// [`ExactSum`] (a sum outside the fixed-point range). No state builds
    /// an [`ExactSum`] for a sum that fits the fixed-point range.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "fixed_sum"),
                DataType::FixedSizeBinary(16),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "exact_sum"),
                DataType::Binary,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return datafusion::common::not_impl_err!("{}(DISTINCT ...)", self.name());
        }
        Ok(Box::new(SumAccumulator {
            bytes: self.bytes,
            ..SumAccumulator::default()
        }))
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
        Ok(Box::new(SumGroups {
            bytes: self.bytes,
            ..SumGroups::default()
        }))
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
    /// Evaluates to the sum's bytes (`croo_sum_state`).
    bytes: bool,
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
        if self.bytes {
            // Always the exact form; a [`SumState`] reads both.
            return Ok(ScalarValue::Binary(
                (!self.sum.is_empty()).then(|| self.sum.to_bytes()),
            ));
        }
        Ok(ScalarValue::Float64(self.sum.value()))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.sum.heap_size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(None),
            ScalarValue::FixedSizeBinary(16, None),
            ScalarValue::Binary(Some(self.sum.to_bytes())),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let st = SumStates::of(states)?;
        for row in 0..st.len() {
            st.merge_row(row, &mut self.sum)?;
        }
        Ok(())
    }
}

/// The three state columns of `croo_sum` (see [`CrooSum::state_fields`]).
struct SumStates<'a> {
    singles: &'a Float64Array,
    fixed: &'a FixedSizeBinaryArray,
    exact: &'a BinaryArray,
}

impl<'a> SumStates<'a> {
    fn of(states: &'a [ArrayRef]) -> Result<Self> {
        match states {
            [v, f, b]
                if v.data_type() == &DataType::Float64
                    && f.data_type() == &DataType::FixedSizeBinary(16)
                    && b.data_type() == &DataType::Binary =>
            {
                Ok(Self {
                    singles: v.as_primitive::<Float64Type>(),
                    fixed: f.as_fixed_size_binary(),
                    exact: b.as_binary::<i32>(),
                })
            }
            _ => internal_err!("malformed croo_sum state"),
        }
    }

    fn len(&self) -> usize {
        self.singles.len()
    }

    /// The fixed-point sum of `row`, when that is its state.
    #[inline]
    fn fixed(&self, row: usize) -> Option<i128> {
        if self.fixed.is_null(row) {
            return None;
        }
        let bytes: [u8; 16] = self.fixed.value(row).try_into().ok()?;
        Some(i128::from_le_bytes(bytes))
    }

    /// Adds the state of `row` to `sum` (the single-accumulator path).
    fn merge_row(&self, row: usize, sum: &mut ExactSum) -> Result<()> {
        if self.singles.is_valid(row) {
            sum.add(self.singles.value(row));
        }
        if let Some(units) = self.fixed(row) {
            sum.merge(&fixed_to_exact(units, true));
        }
        if self.exact.is_valid(row) {
            sum.merge(&decode(self.exact.value(row))?);
        }
        Ok(())
    }
}

/// Merges `croo_sum_state` values: a fixed-point sum (16 bytes, an `i128`
/// count of 2^-64 units, see [`SumGroups`]) or the bytes of an
/// [`ExactSum`] (never 16 bytes long: 5 + 8 per digit). [`Self::value`] is
/// the bits `croo_sum` gives over the same rows.
#[derive(Debug, Clone, Default)]
pub struct SumState {
    fast: i128,
    any: bool,
    slow: Option<Box<ExactSum>>,
}

impl SumState {
    /// Adds one `croo_sum_state` value; an error for bytes it did not
    /// write.
    pub fn merge(&mut self, bytes: &[u8]) -> Result<()> {
        let other = match <[u8; 16]>::try_from(bytes) {
            Ok(units) => SumState {
                fast: i128::from_le_bytes(units),
                any: true,
                slow: None,
            },
            Err(_) => SumState {
                fast: 0,
                any: true,
                slow: Some(Box::new(decode(bytes)?)),
            },
        };
        self.add(&other);
        Ok(())
    }

    /// Adds another merge.
    pub fn add(&mut self, other: &SumState) {
        if !other.any {
            return;
        }
        self.any = true;
        match &other.slow {
            Some(s) => self.spilled().merge(s),
            None => {
                if self.slow.is_none()
                    && let Some(t) = self.fast.checked_add(other.fast)
                {
                    self.fast = t;
                    return;
                }
                self.spilled().merge(&fixed_to_exact(other.fast, true));
            }
        }
    }

    fn spilled(&mut self) -> &mut ExactSum {
        let (fast, any) = (self.fast, self.any);
        self.slow
            .get_or_insert_with(|| Box::new(fixed_to_exact(fast, any)))
    }

    /// The sum rounded once, as `croo_sum` rounds it; `None` when nothing
    /// was merged.
    pub fn value(&self) -> Option<f64> {
        match &self.slow {
            Some(s) => s.value(),
            None => self.any.then_some(self.fast as f64 * FAST_UNIT),
        }
    }
}

/// Exact sums per group. Most values of real measures (amounts, counts,
/// ratios) are multiples of 2^-64 below 2^63: a group keeps its sum as an
/// `i128` count of 2^-64 units (exact, one add per row, 16 bytes), and
/// moves to a full [`ExactSum`] only when a value or the sum leaves that
/// range (or a partial state is merged). Both give the correctly rounded
/// value of the same exact sum, so the bits do not depend on the path.
///
/// A group's fixed-point sum and flags are one 32-byte [`Slot`]: with
/// millions of groups each row's update is one cache miss, not three.
#[derive(Default)]
struct SumGroups {
    slots: Vec<Slot>,
    slow: Vec<Option<Box<ExactSum>>>,
    /// How many entries of `slow` are `Some`: [`GroupsAccumulator::size`]
    /// is called after every batch and must not walk millions of groups.
    spilled: usize,
    /// Evaluates to each group's sum as bytes (`croo_sum_state`).
    bytes: bool,
}

/// One group of [`SumGroups`].
#[derive(Clone, Copy, Default)]
struct Slot {
    /// The sum in 2^-64 units, while `!spilled`.
    fast: i128,
    /// Whether a value was added (a sum of no values is NULL).
    any: bool,
    /// Whether the sum moved to the group's [`ExactSum`] in `slow`.
    spilled: bool,
}

/// What one spilled group is counted as in [`GroupsAccumulator::size`]:
/// the box and a few limbs (an estimate; the limbs of an [`ExactSum`] stay
/// inline for sums of values of similar magnitude).
const SPILLED_BYTES: usize = size_of::<ExactSum>() + 64;

/// 2^-64, the unit of the fast sums.
const FAST_UNIT: f64 = 1.0 / 18_446_744_073_709_551_616.0;

/// `x` as a count of 2^-64 units, when it is one exactly and small enough.
#[inline]
fn to_fixed(x: f64) -> Option<i128> {
    if x == 0.0 {
        return Some(0);
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 || biased == 0x7ff {
        return None; // subnormal, infinite or NaN
    }
    let mantissa = ((bits & ((1u64 << 52) - 1)) | (1u64 << 52)) as i128;
    // x = mantissa * 2^(biased - 1075) = mantissa * 2^shift units.
    let shift = biased - 1075 + 64;
    let v = if shift >= 0 {
        if shift > 70 {
            return None; // |x| >= 2^63: the sum could overflow
        }
        mantissa << shift
    } else {
        if shift < -52 || mantissa.trailing_zeros() < (-shift) as u32 {
            return None; // bits below 2^-64
        }
        mantissa >> -shift
    };
    Some(if bits >> 63 == 1 { -v } else { v })
}

/// The exact sum `units * 2^-64` as an [`ExactSum`].
fn fixed_to_exact(units: i128, any: bool) -> ExactSum {
    let mut s = ExactSum::new();
    if any {
        s.add(0.0);
    }
    let negative = units < 0;
    let mut mag = units.unsigned_abs();
    let mut scale = FAST_UNIT;
    while mag != 0 {
        // 52-bit chunks are exact f64 values; scaling by 2^k is exact.
        let chunk = (mag & ((1u128 << 52) - 1)) as f64 * scale;
        s.add(if negative { -chunk } else { chunk });
        mag >>= 52;
        scale *= 4_503_599_627_370_496.0; // 2^52
    }
    s
}

impl SumGroups {
    fn resize(&mut self, n: usize) {
        self.slots.resize(n, Slot::default());
        self.slow.resize_with(n, || None);
    }

    fn spill(&mut self, g: usize) -> &mut ExactSum {
        let slot = &mut self.slots[g];
        if !slot.spilled {
            slot.spilled = true;
            self.slow[g] = Some(Box::new(fixed_to_exact(slot.fast, slot.any)));
            self.spilled += 1;
        }
        self.slow[g]
            .as_mut()
            .expect("spilled groups have an ExactSum")
    }

    #[inline]
    fn add(&mut self, g: usize, x: f64) {
        let slot = &mut self.slots[g];
        if !slot.spilled {
            slot.any = true;
            if let Some(t) = to_fixed(x).and_then(|v| slot.fast.checked_add(v)) {
                slot.fast = t;
                return;
            }
        }
        self.spill(g).add(x);
    }

    /// Adds a partial sum of `units` 2^-64 units.
    #[inline]
    fn add_fixed(&mut self, g: usize, units: i128) {
        let slot = &mut self.slots[g];
        if !slot.spilled
            && let Some(t) = slot.fast.checked_add(units)
        {
            slot.any = true;
            slot.fast = t;
            return;
        }
        self.spill(g).merge(&fixed_to_exact(units, true));
    }

    /// The first groups (`emit_to`) as (slot, exact sum when spilled).
    fn take(&mut self, emit_to: EmitTo) -> (Vec<Slot>, Vec<Option<Box<ExactSum>>>) {
        let slots = emit_to.take_needed(&mut self.slots);
        let slow = emit_to.take_needed(&mut self.slow);
        self.spilled -= slots.iter().filter(|s| s.spilled).count();
        (slots, slow)
    }
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
        self.resize(total_num_groups);
        let values = xs.values();
        // The rows to add: valid and kept by the filter, as one bitmap
        // whose set bits are visited directly.
        let keep = match opt_filter {
            Some(f) => {
                let f = match f.nulls() {
                    Some(n) => f.values() & n.inner(),
                    None => f.values().clone(),
                };
                Some(match xs.nulls() {
                    Some(n) => &f & n.inner(),
                    None => f,
                })
            }
            None => xs.nulls().map(|n| n.inner().clone()),
        };
        match keep {
            None => {
                for (&g, &x) in group_indices.iter().zip(values.iter()) {
                    self.add(g, x);
                }
            }
            Some(keep) => {
                for row in keep.set_indices() {
                    self.add(group_indices[row], values[row]);
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (slots, slow) = self.take(emit_to);
        if self.bytes {
            let mut b = BinaryBuilder::with_capacity(slots.len(), 16 * slots.len());
            for (slot, s) in slots.into_iter().zip(slow) {
                match s {
                    Some(s) => b.append_value(s.to_bytes()),
                    None if slot.any => b.append_value(slot.fast.to_le_bytes()),
                    None => b.append_null(),
                }
            }
            return Ok(Arc::new(b.finish()));
        }
        Ok(Arc::new(
            slots
                .into_iter()
                .zip(slow)
                .map(|(slot, s)| match s {
                    Some(s) => s.value(),
                    // `as f64` rounds to nearest-even; scaling by 2^-64 is exact.
                    None => slot.any.then_some(slot.fast as f64 * FAST_UNIT),
                })
                .collect::<Float64Array>(),
        ))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (slots, slow) = self.take(emit_to);
        let n = slots.len();
        // Fixed-point sums go out as they are (no allocation per group);
        // only the groups that left the fixed-point range carry bytes.
        let fixed_valid: Vec<bool> = slots.iter().map(|s| s.any && !s.spilled).collect();
        let fixed = FixedSizeBinaryArray::try_new(
            16,
            Buffer::from_vec(slots.iter().map(|s| s.fast.to_le()).collect::<Vec<i128>>()),
            Some(NullBuffer::from(fixed_valid)),
        )?;
        let mut b = BinaryBuilder::with_capacity(n, 0);
        for s in &slow {
            match s {
                Some(s) => b.append_value(s.to_bytes()),
                None => b.append_null(),
            }
        }
        Ok(vec![
            new_null_array(&DataType::Float64, n),
            Arc::new(fixed),
            Arc::new(b.finish()),
        ])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let st = SumStates::of(values)?;
        self.resize(total_num_groups);
        for (row, &g) in group_indices.iter().enumerate() {
            if st.singles.is_valid(row) {
                self.add(g, st.singles.value(row));
            }
            if let Some(units) = st.fixed(row) {
                self.add_fixed(g, units);
            }
            if st.exact.is_valid(row) {
                let other = decode(st.exact.value(row))?;
                self.spill(g).merge(&other);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // One row's state is its value (NULL when filtered out): no
        // ExactSum is built and nothing is allocated per row.
        let xs = floats(values)?;
        let singles: ArrayRef = match opt_filter {
            None => Arc::new(xs.clone()),
            Some(f) => Arc::new(
                (0..xs.len())
                    .map(|row| {
                        (f.is_valid(row) && f.value(row) && xs.is_valid(row)).then(|| xs.value(row))
                    })
                    .collect::<Float64Array>(),
            ),
        };
        Ok(vec![
            singles,
            new_null_array(&DataType::FixedSizeBinary(16), xs.len()),
            new_null_array(&DataType::Binary, xs.len()),
        ])
    }

    fn size(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
            + self.slow.capacity() * size_of::<Option<Box<ExactSum>>>()
            + self.spilled * SPILLED_BYTES
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
        run_with(SessionConfig::new().with_target_partitions(partitions), sql).await
    }

    async fn run_with(cfg: SessionConfig, sql: &str) -> Vec<u64> {
        run_values(cfg, sql, values()).await
    }

    async fn run_values(cfg: SessionConfig, sql: &str, xs: Vec<f64>) -> Vec<u64> {
        let ctx = table(cfg, xs);
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

    /// A session with table `t(g, x)`: `x` = `xs`, `g` = row number mod 7,
    /// in many small batches over several partitions.
    fn table(cfg: SessionConfig, xs: Vec<f64>) -> SessionContext {
        let mut ctx = SessionContext::new_with_config(cfg);
        crate::register(&mut ctx).unwrap();
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
        ctx
    }

    /// `(g, croo_sum_state(x))` of `sql`'s rows, each merged alone.
    async fn states(ctx: &SessionContext, sql: &str) -> Vec<(i64, Option<Vec<u8>>)> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let g = b
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let s = b.column(1).as_binary::<i32>();
            for r in 0..b.num_rows() {
                out.push((g.value(r), s.is_valid(r).then(|| s.value(r).to_vec())));
            }
        }
        out
    }

    #[tokio::test]
    async fn sum_states_of_finer_groups_merge_to_the_bits_of_croo_sum() {
        // Values on the fixed-point path and values off it (below 2^-64).
        for xs in [
            values(),
            (0..20_000)
                .map(|i| f64::from(i % 37) * 0.25 - 3.0)
                .collect(),
        ] {
            for partitions in [1, 4] {
                let cfg = || SessionConfig::new().with_target_partitions(partitions);
                let ctx = table(cfg(), xs.clone());
                // Seven groups merged into three (g % 3), and into one.
                let fine = states(&ctx, "SELECT g, croo_sum_state(x) FROM t GROUP BY g").await;
                assert_eq!(fine.len(), 7);
                let mut coarse: Vec<SumState> = vec![SumState::default(); 3];
                for (g, s) in &fine {
                    let s = s.as_ref().expect("every group has values");
                    coarse[(*g % 3) as usize].merge(s).unwrap();
                }
                // Merges merged again.
                let mut whole = SumState::default();
                coarse.iter().for_each(|c| whole.add(c));
                let merged: Vec<u64> = coarse
                    .iter()
                    .map(|s| s.value().expect("a sum").to_bits())
                    .collect();
                let want = run_values(
                    cfg(),
                    "SELECT g % 3 AS g, croo_sum(x) FROM t GROUP BY g % 3",
                    xs.clone(),
                )
                .await;
                assert_eq!(merged, want);
                // Without groups (the single accumulator).
                let all = states(&ctx, "SELECT 0 AS g, croo_sum_state(x) FROM t").await;
                let mut one = SumState::default();
                one.merge(all[0].1.as_ref().expect("a sum")).unwrap();
                let want = run_values(cfg(), "SELECT 0 AS g, croo_sum(x) FROM t", xs.clone()).await;
                assert_eq!(one.value().map(f64::to_bits), Some(want[0]));
                assert_eq!(whole.value().map(f64::to_bits), Some(want[0]));
            }
        }
        // No value: NULL, as croo_sum's NULL.
        let ctx = table(SessionConfig::new(), values());
        let none = states(
            &ctx,
            "SELECT g, croo_sum_state(x) FILTER (WHERE x > 1e9) FROM t GROUP BY g",
        )
        .await;
        assert!(none.iter().all(|(_, s)| s.is_none()), "{none:?}");
        assert_eq!(SumState::default().value(), None);
        assert!(SumState::default().merge(&[1, 2, 3]).is_err());
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

    /// Amounts in cents (multiples of 2^-64 units: the fixed-point path and
    /// its fixed-point partial states), one group that overflows the range
    /// (2^62-sized values) and one that gets a value below 2^-64 (both leave
    /// the fixed-point path mid-way): correctly rounded on any partitioning.
    #[tokio::test]
    async fn fixed_point_partial_sums_are_the_same_bits_on_any_partitioning() {
        let xs: Vec<f64> = (0..20_000)
            .map(|i| match (i % 7, i % 997) {
                (5, 0) => 4.6e18,
                (6, 0) => 1e-30,
                _ => ((i * 7919) % 100_003) as f64 * 0.01 - 300.0,
            })
            .collect();
        let sql = "SELECT g, croo_sum(x) FROM t GROUP BY g";
        let mut per_group = vec![ExactSum::new(); 7];
        xs.iter()
            .enumerate()
            .for_each(|(i, &x)| per_group[i % 7].add(x));
        let want: Vec<u64> = per_group
            .iter()
            .map(|s| s.value().unwrap().to_bits())
            .collect();
        for p in [1, 2, 3, 8] {
            let cfg = SessionConfig::new().with_target_partitions(p);
            assert_eq!(
                run_values(cfg, sql, xs.clone()).await,
                want,
                "{p} partitions"
            );
        }
    }

    /// With partial aggregation skipped (as DataFusion does when groups are
    /// many), every input row becomes a state through `convert_to_state`:
    /// still the same bits, with and without a filter.
    /// NULL values and NULL or false filter entries add nothing; a group
    /// that got no value is NULL.
    #[test]
    fn updates_skip_nulls_and_filtered_rows() {
        let xs: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.5),
            None,
            Some(2.25),
            Some(4.0),
            Some(8.0),
            Some(1e300),
        ]));
        let groups = [0, 1, 0, 1, 0, 2];
        let filter = BooleanArray::from(vec![
            Some(true),
            Some(true),
            None,
            Some(false),
            Some(true),
            Some(false),
        ]);
        let sums = |filter: Option<&BooleanArray>| {
            let mut acc = SumGroups::default();
            acc.update_batch(std::slice::from_ref(&xs), &groups, filter, 3)
                .unwrap();
            let out = acc.evaluate(EmitTo::All).unwrap();
            let out = out.as_primitive::<Float64Type>();
            (0..3)
                .map(|g| (!out.is_null(g)).then(|| out.value(g)))
                .collect::<Vec<_>>()
        };
        assert_eq!(sums(Some(&filter)), vec![Some(9.5), None, None]);
        assert_eq!(sums(None), vec![Some(11.75), Some(4.0), Some(1e300)]);
        let no_nulls = BooleanArray::from(vec![true, false, true, true, false, true]);
        assert_eq!(
            sums(Some(&no_nulls)),
            vec![Some(3.75), Some(4.0), Some(1e300)]
        );
    }

    #[tokio::test]
    async fn sums_through_convert_to_state_are_the_same_bits() {
        for sql in [
            "SELECT g, croo_sum(x) FROM t GROUP BY g",
            "SELECT g, croo_sum(x) FILTER (WHERE x > 0) FROM t GROUP BY g",
        ] {
            let one = run(1, sql).await;
            for p in [2, 3, 8] {
                let cfg = SessionConfig::new()
                    .with_target_partitions(p)
                    .set_usize(
                        "datafusion.execution.skip_partial_aggregation_probe_rows_threshold",
                        1,
                    )
                    .set_str(
                        "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
                        "0.0",
                    );
                assert_eq!(run_with(cfg, sql).await, one, "{p} partitions: {sql}");
            }
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
