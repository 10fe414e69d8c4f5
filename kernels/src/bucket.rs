//! `croo_period_bucket(micros, boundaries)`: the first day (`Date32`) of
//! the period containing an instant (microseconds since the Unix epoch),
//! for periods given as literal boundaries: a fiscal, retail or local-time
//! calendar, whose periods are not a function of the UTC date alone.
//!
//! `boundaries` is a text literal `start:day,start:day,...,end`: each
//! period's first instant and first day (days since the epoch), in order
//! and contiguous, then the end of the last one. An instant outside them
//! is NULL. The literal travels with the plan, so the function is as
//! serialisable as any other of the registry ([`crate::register`]).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, Date32Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The `croo_period_bucket` function.
pub fn udf() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::from(PeriodBucket::new())));
    Arc::clone(&F)
}

/// The boundaries literal of periods starting at `starts` (instants) on
/// `days`, the last one ending at `end`.
pub fn boundaries(starts: &[i64], end: i64, days: &[i32]) -> String {
    let mut s = String::with_capacity(24 * starts.len() + 20);
    for (t, d) in starts.iter().zip(days) {
        s.push_str(&format!("{t}:{d},"));
    }
    s.push_str(&end.to_string());
    s
}

/// `croo_period_bucket(micros, 'boundaries')`.
pub fn bucket_expr(micros: Expr, starts: &[i64], end: i64, days: &[i32]) -> Expr {
    udf().call(vec![
        micros,
        datafusion::prelude::lit(boundaries(starts, end, days)),
    ])
}

/// Periods read from a boundaries literal.
#[derive(Debug, PartialEq)]
struct Buckets {
    /// Every period's first instant, then the last one's end.
    bounds: Vec<i64>,
    days: Vec<i32>,
}

impl Buckets {
    fn parse(s: &str) -> Option<Buckets> {
        let mut bounds = Vec::new();
        let mut days = Vec::new();
        let mut parts = s.split(',').peekable();
        while let Some(p) = parts.next() {
            if parts.peek().is_none() {
                bounds.push(p.trim().parse().ok()?);
                break;
            }
            let (t, d) = p.split_once(':')?;
            bounds.push(t.trim().parse().ok()?);
            days.push(d.trim().parse().ok()?);
        }
        let ordered = bounds.windows(2).all(|w| w[0] < w[1]);
        (ordered && bounds.len() == days.len() + 1).then_some(Buckets { bounds, days })
    }

    fn day(&self, micros: i64) -> Option<i32> {
        let i = self.bounds.partition_point(|b| *b <= micros);
        (i >= 1 && i < self.bounds.len()).then(|| self.days[i - 1])
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodBucket {
    signature: Signature,
}

impl PeriodBucket {
    fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Int64, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for PeriodBucket {
    fn name(&self) -> &str {
        "croo_period_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [micros, spec] = args.args.as_slice() else {
            return plan_err!("croo_period_bucket takes (micros, boundaries)");
        };
        let buckets = match spec {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))) => match Buckets::parse(s) {
                Some(b) => b,
                None => return exec_err!("croo_period_bucket: malformed boundaries"),
            },
            _ => return exec_err!("croo_period_bucket: the boundaries must be a text literal"),
        };
        Ok(match micros {
            ColumnarValue::Scalar(ScalarValue::Int64(v)) => {
                ColumnarValue::Scalar(ScalarValue::Date32(v.and_then(|m| buckets.day(m))))
            }
            ColumnarValue::Array(a) if a.data_type() == &DataType::Int64 => {
                let a = a.as_primitive::<Int64Type>();
                let out: Date32Array = a.iter().map(|m| m.and_then(|m| buckets.day(m))).collect();
                ColumnarValue::Array(Arc::new(out))
            }
            other => {
                return exec_err!("croo_period_bucket over {}, not Int64", other.data_type());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_fall_in_their_bucket() {
        let b = Buckets::parse(&boundaries(&[10, 20, 35], 50, &[1, 2, 3])).unwrap();
        let got: Vec<Option<i32>> = [9, 10, 19, 20, 34, 35, 49, 50, i64::MIN, i64::MAX]
            .iter()
            .map(|m| b.day(*m))
            .collect();
        assert_eq!(
            got,
            [
                None,
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(3),
                Some(3),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn malformed_boundaries_are_refused() {
        for bad in ["", "1:2", "10:1,5", "a:1,2", "10:1,20:2"] {
            assert_eq!(Buckets::parse(bad), None, "{bad}");
        }
        assert!(Buckets::parse("7").is_some_and(|b| b.day(7).is_none()));
    }
}
