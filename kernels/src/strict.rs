//! The row functions of the formula syntax whose NULL rules DataFusion's
//! built-ins do not have, as vectorised scalar UDFs (part of croo's
//! function registry, [`crate::register`]):
//!
//! - `croo_least(x, ...)`, `croo_greatest(x, ...)`: `min`/`max`, NULL when
//!   any argument is NULL (DataFusion's `least`/`greatest` skip NULLs);
//!   values compared in IEEE total order, as `least`/`greatest` do.
//! - `croo_div(a, b)`, `croo_mod(a, b)`: NULL when `b` is 0 or -0.
//! - `croo_pow(a, b)`: `a` to the power `b` (`f64::powf`), NULL when `a` is
//!   0 or -0 and `b` is negative (a division by zero; DataFusion's `power`
//!   fails the whole query there).
//! - `croo_sqrt(x)`: NULL when `x` < 0 (DataFusion's `sqrt` fails the
//!   query); `croo_ln(x)`: NULL when `x` <= 0 (where `ln` gives NaN or
//!   -inf). Undefined arithmetic is NULL, as division by zero is.
//! - `croo_and(a, b)`, `croo_or(a, b)`: NULL when either side is NULL (SQL's
//!   `AND`/`OR` are three-valued: `false AND NULL` is false).
//! - `croo_if(c, a, b)`: `a` where `c` is true, else `b` (false or NULL).
//!
//! Each is one pass over its input arrays: no `CASE`, no argument evaluated
//! twice. The differential test (`tests/differential.rs`) checks them
//! against the evalexpr interpreter.

use std::cmp::Ordering;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::compute::kernels::{boolean, zip::zip};
use datafusion::arrow::compute::prep_null_mask_filter;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Which function a [`Strict`] UDF computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Least,
    Greatest,
    Div,
    Mod,
    And,
    Or,
    If,
    Pow,
    Sqrt,
    Ln,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Least => "croo_least",
            Op::Greatest => "croo_greatest",
            Op::Div => "croo_div",
            Op::Mod => "croo_mod",
            Op::And => "croo_and",
            Op::Or => "croo_or",
            Op::If => "croo_if",
            Op::Pow => "croo_pow",
            Op::Sqrt => "croo_sqrt",
            Op::Ln => "croo_ln",
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Strict {
    op: Op,
    signature: Signature,
}

impl Strict {
    fn new(op: Op) -> Strict {
        let signature = match op {
            Op::Least | Op::Greatest => {
                Signature::variadic(vec![DataType::Float64], Volatility::Immutable)
            }
            Op::Div | Op::Mod | Op::Pow => Signature::exact(
                vec![DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
            Op::And | Op::Or => Signature::exact(
                vec![DataType::Boolean, DataType::Boolean],
                Volatility::Immutable,
            ),
            Op::If => Signature::user_defined(Volatility::Immutable),
            Op::Sqrt | Op::Ln => Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        };
        Strict { op, signature }
    }
}

/// All arguments as arrays of `n` rows.
fn arrays(args: &[ColumnarValue], n: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(n)).collect()
}

/// The NULLs of every array together.
fn all_nulls(arrays: &[ArrayRef]) -> Option<NullBuffer> {
    arrays.iter().fold(None, |acc, a| {
        NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
    })
}

fn f64s(a: &ArrayRef) -> Result<&Float64Array> {
    match a.as_primitive_opt::<Float64Type>() {
        Some(x) => Ok(x),
        None => exec_err!("expected Float64, got {}", a.data_type()),
    }
}

/// `x`'s rank in IEEE 754 total order as an integer: `total_cmp` of two
/// floats is the comparison of their keys (the same transformation as the
/// standard library's), so loops over keys compile to branch-free vector
/// code.
#[inline(always)]
pub(crate) fn order_key(x: f64) -> i64 {
    let b = x.to_bits() as i64;
    b ^ ((((b >> 63) as u64) >> 1) as i64)
}

fn extreme(arrays: &[ArrayRef], keep: Ordering) -> Result<ArrayRef> {
    let (values, nulls) = extreme_values(arrays, keep)?;
    Ok(Arc::new(Float64Array::new(values.into(), nulls)))
}

/// The values and NULLs of [`extreme`].
fn extreme_values(arrays: &[ArrayRef], keep: Ordering) -> Result<(Vec<f64>, Option<NullBuffer>)> {
    let nulls = all_nulls(arrays);
    let first = f64s(&arrays[0])?;
    let mut out: Vec<f64> = first.values().to_vec();
    for a in &arrays[1..] {
        let values = f64s(a)?.values();
        // Replaced only when strictly beyond, as `v.total_cmp(o) == keep`.
        if keep == Ordering::Greater {
            for (o, v) in out.iter_mut().zip(values.iter()) {
                *o = if order_key(*v) > order_key(*o) {
                    *v
                } else {
                    *o
                };
            }
        } else {
            for (o, v) in out.iter_mut().zip(values.iter()) {
                *o = if order_key(*v) < order_key(*o) {
                    *v
                } else {
                    *o
                };
            }
        }
    }
    Ok((out, nulls))
}

/// A non-NULL `Float64` literal argument.
fn constant(a: &ColumnarValue) -> Option<f64> {
    match a {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::Float64(Some(c))) => Some(*c),
        _ => None,
    }
}

/// The fast paths of arguments that are literals (`clamp(x, 0, 1)`,
/// `x / 500`, `if(c, x, 0.5)`): the constant is used as it is instead of
/// being broadcast into an array first. `None` where no fast path applies
/// (no array argument, a NULL or non-Float64 literal): the general path.
fn with_constants(op: Op, args: &[ColumnarValue]) -> Result<Option<ArrayRef>> {
    let arrays: Vec<&ArrayRef> = args
        .iter()
        .filter_map(|a| match a {
            ColumnarValue::Array(a) => Some(a),
            ColumnarValue::Scalar(_) => None,
        })
        .collect();
    if arrays.is_empty() {
        return Ok(None);
    }
    let all_known = args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Array(_)) || constant(a).is_some());
    match op {
        Op::Least | Op::Greatest if all_known && arrays.len() < args.len() => {
            let keep = if op == Op::Least {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let owned: Vec<ArrayRef> = arrays.iter().map(|a| Arc::clone(a)).collect();
            let (mut values, nulls) = extreme_values(&owned, keep)?;
            for c in args.iter().filter_map(constant) {
                let k = order_key(c);
                for o in values.iter_mut() {
                    let beyond = if keep == Ordering::Greater {
                        k > order_key(*o)
                    } else {
                        k < order_key(*o)
                    };
                    *o = if beyond { c } else { *o };
                }
            }
            Ok(Some(Arc::new(Float64Array::new(values.into(), nulls))))
        }
        Op::Div | Op::Mod => match (&args[0], constant(&args[1])) {
            (ColumnarValue::Array(a), Some(c)) => {
                let a = f64s(a)?;
                if c == 0.0 {
                    return Ok(Some(datafusion::arrow::array::new_null_array(
                        &DataType::Float64,
                        a.len(),
                    )));
                }
                let values: Vec<f64> = if op == Op::Mod {
                    a.values().iter().map(|x| x % c).collect()
                } else {
                    a.values().iter().map(|x| x / c).collect()
                };
                Ok(Some(Arc::new(Float64Array::new(
                    values.into(),
                    a.nulls().cloned(),
                ))))
            }
            _ => Ok(None),
        },
        Op::If => {
            let (ColumnarValue::Array(c), Some(b)) = (&args[0], constant(&args[2])) else {
                return Ok(None);
            };
            let Some(c) = c.as_boolean_opt() else {
                return Ok(None);
            };
            let take = match c.nulls() {
                Some(n) => c.values() & n.inner(),
                None => c.values().clone(),
            };
            let (values, nulls): (Vec<f64>, Option<NullBuffer>) =
                match (&args[1], constant(&args[1])) {
                    (_, Some(a)) => (take.iter().map(|t| if t { a } else { b }).collect(), None),
                    (ColumnarValue::Array(a), None) => {
                        let Some(a) = a.as_primitive_opt::<Float64Type>() else {
                            return Ok(None);
                        };
                        let values = take
                            .iter()
                            .zip(a.values().iter())
                            .map(|(t, x)| if t { *x } else { b })
                            .collect();
                        // NULL only where the branch taken is a NULL of `a`.
                        let nulls = a.nulls().map(|n| NullBuffer::new(n.inner() | &!&take));
                        (values, nulls)
                    }
                    _ => return Ok(None),
                };
            Ok(Some(Arc::new(Float64Array::new(values.into(), nulls))))
        }
        _ => Ok(None),
    }
}

fn divide(arrays: &[ArrayRef], modulo: bool) -> Result<ArrayRef> {
    let (a, b) = (f64s(&arrays[0])?, f64s(&arrays[1])?);
    let divisors = b.values();
    let zero = NullBuffer::new(BooleanBuffer::collect_bool(divisors.len(), |i| {
        divisors[i] != 0.0
    }));
    let nulls = NullBuffer::union(all_nulls(arrays).as_ref(), Some(&zero));
    let values: Vec<f64> = if modulo {
        a.values()
            .iter()
            .zip(divisors.iter())
            .map(|(x, y)| x % y)
            .collect()
    } else {
        a.values()
            .iter()
            .zip(divisors.iter())
            .map(|(x, y)| x / y)
            .collect()
    };
    Ok(Arc::new(Float64Array::new(values.into(), nulls)))
}

fn power(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let (a, b) = (f64s(&arrays[0])?, f64s(&arrays[1])?);
    let (bases, exponents) = (a.values(), b.values());
    let defined = NullBuffer::new(BooleanBuffer::collect_bool(bases.len(), |i| {
        !(bases[i] == 0.0 && exponents[i] < 0.0)
    }));
    let nulls = NullBuffer::union(all_nulls(arrays).as_ref(), Some(&defined));
    let values: Vec<f64> = bases
        .iter()
        .zip(exponents.iter())
        .map(|(x, y)| x.powf(*y))
        .collect();
    Ok(Arc::new(Float64Array::new(values.into(), nulls)))
}

/// `f(x)` where `defined(x)`, NULL elsewhere.
fn partial(arrays: &[ArrayRef], defined: fn(f64) -> bool, f: fn(f64) -> f64) -> Result<ArrayRef> {
    let a = f64s(&arrays[0])?;
    let xs = a.values();
    let ok = NullBuffer::new(BooleanBuffer::collect_bool(xs.len(), |i| defined(xs[i])));
    let nulls = NullBuffer::union(a.nulls(), Some(&ok));
    let values: Vec<f64> = xs.iter().map(|x| f(*x)).collect();
    Ok(Arc::new(Float64Array::new(values.into(), nulls)))
}

fn logic(arrays: &[ArrayRef], and: bool) -> Result<ArrayRef> {
    let (Some(a), Some(b)) = (arrays[0].as_boolean_opt(), arrays[1].as_boolean_opt()) else {
        return exec_err!("expected two booleans");
    };
    // arrow's plain `and`/`or` give NULL when either side is NULL.
    let out = if and {
        boolean::and(a, b)?
    } else {
        boolean::or(a, b)?
    };
    Ok(Arc::new(out))
}

fn choose(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let Some(c) = arrays[0].as_boolean_opt() else {
        return exec_err!("croo_if: the condition must be a boolean");
    };
    // NULL conditions take the `else` value.
    let mask: BooleanArray = if c.null_count() > 0 {
        prep_null_mask_filter(c)
    } else {
        c.clone()
    };
    if let (Some(a), Some(b)) = (
        arrays[1].as_primitive_opt::<Float64Type>(),
        arrays[2].as_primitive_opt::<Float64Type>(),
    ) {
        // Numbers (the common case): one branch-free pass over the values
        // and the validity bits, instead of arrow's general `zip`.
        let take = mask.values();
        let (av, bv) = (a.values(), b.values());
        let values: Vec<f64> = take
            .iter()
            .zip(av.iter().zip(bv.iter()))
            .map(|(t, (x, y))| if t { *x } else { *y })
            .collect();
        let nulls = match (a.nulls(), b.nulls()) {
            (None, None) => None,
            (an, bn) => {
                let valid = |n: Option<&NullBuffer>, i: usize| n.is_none_or(|n| n.is_valid(i));
                Some(NullBuffer::new(BooleanBuffer::collect_bool(
                    take.len(),
                    |i| {
                        if take.value(i) {
                            valid(an, i)
                        } else {
                            valid(bn, i)
                        }
                    },
                )))
            }
        };
        return Ok(Arc::new(Float64Array::new(values.into(), nulls)));
    }
    Ok(zip(&mask, &arrays[1], &arrays[2])?)
}

impl ScalarUDFImpl for Strict {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.op {
            Op::And | Op::Or => DataType::Boolean,
            Op::If => arg_types.get(1).cloned().unwrap_or(DataType::Float64),
            _ => DataType::Float64,
        })
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if self.op != Op::If || arg_types.len() != 3 {
            return plan_err!("{} takes (condition, value, value)", self.op.name());
        }
        let branch = if arg_types[1] == DataType::Boolean && arg_types[2] == DataType::Boolean {
            DataType::Boolean
        } else {
            DataType::Float64
        };
        Ok(vec![DataType::Boolean, branch.clone(), branch])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        if let Some(out) = with_constants(self.op, &args.args)? {
            return Ok(ColumnarValue::Array(out));
        }
        let arrays = arrays(&args.args, n)?;
        let out = match self.op {
            Op::Least => extreme(&arrays, Ordering::Less)?,
            Op::Greatest => extreme(&arrays, Ordering::Greater)?,
            Op::Div => divide(&arrays, false)?,
            Op::Mod => divide(&arrays, true)?,
            Op::And => logic(&arrays, true)?,
            Op::Or => logic(&arrays, false)?,
            Op::If => choose(&arrays)?,
            Op::Pow => power(&arrays)?,
            Op::Sqrt => partial(&arrays, |x| x >= 0.0 || x.is_nan(), f64::sqrt)?,
            Op::Ln => partial(&arrays, |x| x > 0.0 || x.is_nan(), f64::ln)?,
        };
        if scalar && n == 1 {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(out))
    }
}

macro_rules! udf {
    ($fn_name:ident, $op:expr) => {
        fn $fn_name() -> Arc<ScalarUDF> {
            static F: LazyLock<Arc<ScalarUDF>> =
                LazyLock::new(|| Arc::new(ScalarUDF::from(Strict::new($op))));
            Arc::clone(&F)
        }
    };
}

udf!(least_udf, Op::Least);
udf!(greatest_udf, Op::Greatest);
udf!(div_udf, Op::Div);
udf!(mod_udf, Op::Mod);
udf!(and_udf, Op::And);
udf!(or_udf, Op::Or);
udf!(if_udf, Op::If);
udf!(pow_udf, Op::Pow);
udf!(sqrt_udf, Op::Sqrt);
udf!(ln_udf, Op::Ln);

/// Every scalar function of this module.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    vec![
        least_udf(),
        greatest_udf(),
        div_udf(),
        mod_udf(),
        and_udf(),
        or_udf(),
        if_udf(),
        pow_udf(),
        sqrt_udf(),
        ln_udf(),
    ]
}

/// `min(args...)`, NULL when any is NULL.
pub fn least(args: Vec<Expr>) -> Expr {
    least_udf().call(args)
}

/// `max(args...)`, NULL when any is NULL.
pub fn greatest(args: Vec<Expr>) -> Expr {
    greatest_udf().call(args)
}

/// `a / b`, NULL when `b` is zero.
pub fn div(a: Expr, b: Expr) -> Expr {
    div_udf().call(vec![a, b])
}

/// `a % b`, NULL when `b` is zero.
pub fn modulo(a: Expr, b: Expr) -> Expr {
    mod_udf().call(vec![a, b])
}

/// `a && b`, NULL when either is NULL.
pub fn and(a: Expr, b: Expr) -> Expr {
    and_udf().call(vec![a, b])
}

/// `a || b`, NULL when either is NULL.
pub fn or(a: Expr, b: Expr) -> Expr {
    or_udf().call(vec![a, b])
}

/// `a ^ b`, NULL when `a` is zero and `b` negative.
pub fn pow(a: Expr, b: Expr) -> Expr {
    pow_udf().call(vec![a, b])
}

/// `sqrt(x)`, NULL when `x` is negative.
pub fn sqrt(x: Expr) -> Expr {
    sqrt_udf().call(vec![x])
}

/// `ln(x)`, NULL when `x` is zero or negative.
pub fn ln(x: Expr) -> Expr {
    ln_udf().call(vec![x])
}

/// `if(c, a, b)`: `a` where `c` is true, `b` where it is false or NULL.
pub fn if_then(c: Expr, a: Expr, b: Expr) -> Expr {
    if_udf().call(vec![c, a, b])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(v.to_vec()))
    }

    fn values(a: &ArrayRef) -> Vec<Option<f64>> {
        a.as_primitive::<Float64Type>().iter().collect()
    }

    #[test]
    fn least_and_greatest_are_null_strict_and_use_total_order() {
        let a = f(&[Some(1.0), None, Some(f64::NAN), Some(-0.0), Some(3.0)]);
        let b = f(&[Some(2.0), Some(1.0), Some(1.0), Some(0.0), Some(-3.0)]);
        let lo = values(&extreme(&[a.clone(), b.clone()], Ordering::Less).unwrap());
        assert_eq!(lo[0], Some(1.0));
        assert_eq!(lo[1], None);
        assert_eq!(lo[2], Some(1.0)); // NaN is the greatest in total order
        assert!(lo[3].unwrap().is_sign_negative()); // -0 < +0
        assert_eq!(lo[4], Some(-3.0));
        let hi = values(&extreme(&[a, b], Ordering::Greater).unwrap());
        assert!(hi[2].unwrap().is_nan());
        assert_eq!(hi[1], None);
        assert!(hi[3].unwrap().is_sign_positive());
    }

    /// Literal arguments (used as they are) give what the same literals
    /// broadcast into arrays give, bit for bit: NULLs, -0 and +0, NaN,
    /// zero divisors, a NULL or false condition.
    #[test]
    fn literal_arguments_as_arrays() {
        use datafusion::common::ScalarValue;
        let x = f(&[
            Some(1.0),
            None,
            Some(f64::NAN),
            Some(-0.0),
            Some(0.0),
            Some(-7.5),
            Some(f64::INFINITY),
            None,
        ]);
        let n = x.len();
        let cond: ArrayRef = Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(true),
            None,
            Some(false),
            Some(true),
            Some(false),
            None,
            Some(false),
        ]));
        let bits = |a: &ArrayRef| -> Vec<Option<u64>> {
            a.as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(f64::to_bits))
                .collect()
        };
        for c in [0.0, -0.0, 1.0, -7.5, f64::NAN, 2.5e-300] {
            let k = || ColumnarValue::Scalar(ScalarValue::Float64(Some(c)));
            let arr = || ColumnarValue::Array(Arc::new(Float64Array::from(vec![c; n])));
            let xs = || ColumnarValue::Array(Arc::clone(&x));
            let cases: Vec<(Op, Vec<ColumnarValue>, Vec<ColumnarValue>)> = vec![
                (Op::Least, vec![xs(), k()], vec![xs(), arr()]),
                (Op::Greatest, vec![k(), xs()], vec![arr(), xs()]),
                (Op::Greatest, vec![xs(), k(), k()], vec![xs(), arr(), arr()]),
                (Op::Div, vec![xs(), k()], vec![xs(), arr()]),
                (Op::Mod, vec![xs(), k()], vec![xs(), arr()]),
                (
                    Op::If,
                    vec![ColumnarValue::Array(Arc::clone(&cond)), xs(), k()],
                    vec![ColumnarValue::Array(Arc::clone(&cond)), xs(), arr()],
                ),
                (
                    Op::If,
                    vec![ColumnarValue::Array(Arc::clone(&cond)), k(), k()],
                    vec![ColumnarValue::Array(Arc::clone(&cond)), arr(), arr()],
                ),
            ];
            for (op, literal, broadcast) in cases {
                let fast = with_constants(op, &literal).unwrap().expect("a fast path");
                let general = arrays(&broadcast, n).unwrap();
                let general = match op {
                    Op::Least => extreme(&general, Ordering::Less),
                    Op::Greatest => extreme(&general, Ordering::Greater),
                    Op::Div => divide(&general, false),
                    Op::Mod => divide(&general, true),
                    _ => choose(&general),
                }
                .unwrap();
                assert_eq!(bits(&fast), bits(&general), "{op:?} with {c}");
            }
        }
        // A NULL literal takes the general path.
        let null = ColumnarValue::Scalar(ScalarValue::Float64(None));
        let xs = ColumnarValue::Array(Arc::clone(&x));
        assert!(
            with_constants(Op::Least, &[xs.clone(), null.clone()])
                .unwrap()
                .is_none()
        );
        assert!(with_constants(Op::Div, &[xs, null]).unwrap().is_none());
    }

    #[test]
    fn order_keys_compare_as_total_cmp() {
        let specials = [
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            1.0,
            -1.0,
        ];
        let mut xs: Vec<f64> = specials.to_vec();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            xs.push(f64::from_bits(state));
        }
        for a in &xs {
            for b in xs.iter().step_by(7) {
                assert_eq!(order_key(*a).cmp(&order_key(*b)), a.total_cmp(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn division_by_zero_and_negative_zero_is_null() {
        let a = f(&[Some(7.0), Some(7.0), Some(7.0), None, Some(7.0)]);
        let b = f(&[Some(2.0), Some(0.0), Some(-0.0), Some(1.0), None]);
        assert_eq!(
            values(&divide(&[a.clone(), b.clone()], false).unwrap()),
            vec![Some(3.5), None, None, None, None]
        );
        assert_eq!(
            values(&divide(&[a, b], true).unwrap()),
            vec![Some(1.0), None, None, None, None]
        );
    }

    /// `0 ^ negative` is NULL (DataFusion's `power` would fail the
    /// query); everything else is `powf`, IEEE included.
    #[test]
    fn zero_to_a_negative_power_is_null() {
        let a = f(&[
            Some(2.0),
            Some(0.0),
            Some(-0.0),
            Some(0.0),
            Some(-8.0),
            None,
            Some(4.0),
        ]);
        let b = f(&[
            Some(3.0),
            Some(-1.0),
            Some(-0.5),
            Some(0.0),
            Some(0.5),
            Some(1.0),
            None,
        ]);
        let out = values(&power(&[a, b]).unwrap());
        assert_eq!(out[..4], [Some(8.0), None, None, Some(1.0)]);
        assert!(out[4].is_some_and(f64::is_nan));
        assert_eq!(out[5..], [None, None]);
    }

    #[test]
    fn square_roots_of_negatives_and_logarithms_of_non_positives_are_null() {
        let x = f(&[
            Some(4.0),
            Some(-1.0),
            Some(0.0),
            Some(-0.0),
            Some(1.0),
            None,
        ]);
        let sqrt = values(
            &partial(
                std::slice::from_ref(&x),
                |x| x >= 0.0 || x.is_nan(),
                f64::sqrt,
            )
            .unwrap(),
        );
        assert_eq!(sqrt[..2], [Some(2.0), None]);
        assert_eq!(sqrt[2], Some(0.0));
        assert_eq!(sqrt[5], None);
        let ln = values(&partial(&[x], |x| x > 0.0 || x.is_nan(), f64::ln).unwrap());
        assert_eq!(ln, vec![Some(4f64.ln()), None, None, None, Some(0.0), None]);
    }

    #[test]
    fn logic_is_null_strict_and_if_takes_else_on_null() {
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![Some(false), None, Some(true)]));
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![None, Some(true), Some(true)]));
        let and: Vec<Option<bool>> = logic(&[a.clone(), b.clone()], true)
            .unwrap()
            .as_boolean()
            .iter()
            .collect();
        assert_eq!(and, vec![None, None, Some(true)]);
        let or: Vec<Option<bool>> = logic(&[a.clone(), b], false)
            .unwrap()
            .as_boolean()
            .iter()
            .collect();
        assert_eq!(or, vec![None, None, Some(true)]);
        let x = f(&[Some(1.0), Some(1.0), Some(1.0)]);
        let y = f(&[Some(2.0), Some(2.0), None]);
        assert_eq!(
            values(&choose(&[a.clone(), x, y]).unwrap()),
            vec![Some(2.0), Some(2.0), Some(1.0)]
        );
        // A NULL in the branch taken is NULL; in the other, not.
        let x = f(&[Some(1.0), Some(1.0), None]);
        let y = f(&[None, Some(2.0), Some(2.0)]);
        assert_eq!(
            values(&choose(&[a, x, y]).unwrap()),
            vec![None, Some(2.0), None]
        );
    }
}
