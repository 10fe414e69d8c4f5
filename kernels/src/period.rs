//! `croo_period_start(micros, grain)`: the first day of the period (`day`,
//! `week` starting Monday, `month`, `quarter`, `year`) that contains an
//! instant given as microseconds since the Unix epoch (UTC), as a `Date32`.
//!
//! The same days as `CAST(date_trunc(grain, ts) AS DATE)` on a UTC
//! timestamp, in integer arithmetic (Howard Hinnant's civil-calendar
//! algorithms): no calendar object per value. Grouping a large source by
//! (customer, period) was spending several percent of a run in
//! `date_trunc`'s per-value `chrono` conversions. Part of croo's function
//! registry ([`crate::register`]).
//!
//! `croo_period_key(key, period)`: an integer key (`Int64`) and a period's
//! first day (`Date32`) as one `Decimal128(38, 0)`, `key * 2^32 + day as
//! u32`: one-to-one, so grouping and joining by it is grouping and joining
//! by the pair, but over one primitive column (DataFusion's single-column
//! hash tables, one hash and one comparison per row instead of two).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, Date32Array, Decimal128Array};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Grain {
    pub const ALL: [(&'static str, Grain); 5] = [
        ("day", Grain::Day),
        ("week", Grain::Week),
        ("month", Grain::Month),
        ("quarter", Grain::Quarter),
        ("year", Grain::Year),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, g)| *g == self)
            .map(|(s, _)| *s)
            .unwrap_or("month")
    }

    /// The grain named `s` (`day`, `week`, `month`, `quarter`, `year`).
    pub fn parse(s: &str) -> Option<Grain> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, g)| *g)
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `(year, month, day)` of the day `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days from 1970-01-01 to `(y, m, d)`.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first day (days since the epoch) of the `grain` period containing
/// the instant `micros`.
pub fn period_start(micros: i64, grain: Grain) -> i64 {
    let day = micros.div_euclid(MICROS_PER_DAY);
    match grain {
        Grain::Day => day,
        // 1970-01-01 was a Thursday: Monday-based weekday is (day + 3) % 7.
        Grain::Week => day - (day + 3).rem_euclid(7),
        Grain::Month | Grain::Quarter | Grain::Year => {
            let (y, m, _) = civil_from_days(day);
            let first = match grain {
                Grain::Month => m,
                Grain::Quarter => (m - 1) / 3 * 3 + 1,
                _ => 1,
            };
            days_from_civil(y, first, 1)
        }
    }
}

/// The first day of the period after the one starting on day `start`.
fn next_start(start: i64, grain: Grain) -> i64 {
    match grain {
        Grain::Day => start + 1,
        Grain::Week => start + 7,
        Grain::Month | Grain::Quarter | Grain::Year => {
            let (y, m, _) = civil_from_days(start);
            let months = match grain {
                Grain::Month => 1,
                Grain::Quarter => 3,
                _ => 12,
            };
            let m0 = m - 1 + months;
            days_from_civil(y + m0 / 12, m0 % 12 + 1, 1)
        }
    }
}

/// The `croo_period_start` function.
pub fn udf() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::from(PeriodStart::new())));
    Arc::clone(&F)
}

/// `croo_period_start(micros, 'grain')`.
pub fn period_start_expr(micros: Expr, grain: Grain) -> Expr {
    udf().call(vec![
        micros,
        datafusion::prelude::lit(grain.as_str().to_string()),
    ])
}

/// The `croo_period_key` function.
pub fn key_udf() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::from(PeriodKey::new())));
    Arc::clone(&F)
}

/// `croo_period_key(key, period)` (see the module's documentation).
pub fn period_key_expr(key: Expr, period: Expr) -> Expr {
    key_udf().call(vec![key, period])
}

/// The type of [`period_key_expr`].
pub const PERIOD_KEY_TYPE: DataType = DataType::Decimal128(38, 0);

/// `key` and `day` as one integer: `key * 2^32 + day as u32`.
pub fn period_key(key: i64, day: i32) -> i128 {
    (i128::from(key) << 32) | i128::from(day as u32)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodKey {
    signature: Signature,
}

impl PeriodKey {
    fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Int64, DataType::Date32],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for PeriodKey {
    fn name(&self) -> &str {
        "croo_period_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(PERIOD_KEY_TYPE)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [key, day] = args.args.as_slice() else {
            return plan_err!("croo_period_key takes (key, period)");
        };
        let n = args.number_rows;
        if let (ColumnarValue::Scalar(k), ColumnarValue::Scalar(d)) = (key, day) {
            let v = match (k, d) {
                (ScalarValue::Int64(Some(k)), ScalarValue::Date32(Some(d))) => {
                    Some(period_key(*k, *d))
                }
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Decimal128(v, 38, 0)));
        }
        let (key, day) = (key.to_array(n)?, day.to_array(n)?);
        let (Some(k), Some(d)) = (
            key.as_primitive_opt::<Int64Type>(),
            day.as_primitive_opt::<Date32Type>(),
        ) else {
            return exec_err!(
                "croo_period_key over ({}, {}), not (Int64, Date32)",
                key.data_type(),
                day.data_type()
            );
        };
        let out: Decimal128Array = datafusion::arrow::compute::binary(k, d, period_key)?
            .with_precision_and_scale(38, 0)?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodStart {
    signature: Signature,
}

impl PeriodStart {
    fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Int64, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for PeriodStart {
    fn name(&self) -> &str {
        "croo_period_start"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [micros, grain] = args.args.as_slice() else {
            return plan_err!("croo_period_start takes (micros, grain)");
        };
        let grain = match grain {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(g))) => match Grain::parse(g) {
                Some(g) => g,
                None => return exec_err!("croo_period_start: unknown grain `{g}`"),
            },
            _ => return exec_err!("croo_period_start: the grain must be a text literal"),
        };
        let to_days = |m: i64| -> i32 {
            // Dates beyond Date32's range are far outside any real data.
            period_start(m, grain).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        };
        Ok(match micros {
            ColumnarValue::Scalar(ScalarValue::Int64(v)) => {
                ColumnarValue::Scalar(ScalarValue::Date32(v.map(to_days)))
            }
            ColumnarValue::Array(a) if a.data_type() == &DataType::Int64 => {
                // Sources are mostly stored in time order: the last value's
                // period (its first and next period's first microsecond)
                // answers most values without a calendar conversion.
                let (mut lo, mut hi, mut last) = (1i64, 0i64, 0i32);
                let a = a.as_primitive::<Int64Type>();
                let days: Vec<i32> = a
                    .values()
                    .iter()
                    .map(|&m| {
                        if m < lo || m >= hi {
                            last = to_days(m);
                            let start = period_start(m, grain);
                            lo = start.saturating_mul(MICROS_PER_DAY);
                            hi = next_start(start, grain).saturating_mul(MICROS_PER_DAY);
                        }
                        last
                    })
                    .collect();
                let out = Date32Array::new(days.into(), a.nulls().cloned());
                ColumnarValue::Array(Arc::new(out))
            }
            other => {
                return exec_err!("croo_period_start over {}, not Int64", other.data_type());
            }
        })
    }
}

/// The period (first day) packed in a [`period_key`]: `croo_key_period(kp)`.
pub fn key_period_udf() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::from(KeyPeriod::new())));
    Arc::clone(&F)
}

/// `croo_key_period(kp)`: the period of a packed (key, period).
pub fn key_period_expr(kp: Expr) -> Expr {
    key_period_udf().call(vec![kp])
}

/// The day of a packed key (its low 32 bits).
pub fn period_of_key(kp: i128) -> i32 {
    (kp & 0xFFFF_FFFF) as u32 as i32
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyPeriod {
    signature: Signature,
}

impl KeyPeriod {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![PERIOD_KEY_TYPE], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for KeyPeriod {
    fn name(&self) -> &str {
        "croo_key_period"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [kp] = args.args.as_slice() else {
            return plan_err!("croo_key_period takes (packed key)");
        };
        let kp = kp.to_array(args.number_rows)?;
        let Some(kp) = kp.as_primitive_opt::<datafusion::arrow::datatypes::Decimal128Type>() else {
            return exec_err!("croo_key_period: expected Decimal128(38, 0)");
        };
        let days: Date32Array = kp.unary(period_of_key);
        Ok(ColumnarValue::Array(Arc::new(days)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::prelude::SessionContext;

    /// Against DataFusion's own `date_trunc` on UTC timestamps, for every
    /// grain, over instants from 1701 to 2243 (DataFusion's nanosecond range) (leap years, centuries, the
    /// epoch, negative values, the last and first microsecond of days).
    #[tokio::test]
    async fn same_days_as_date_trunc() {
        let mut micros: Vec<i64> = Vec::new();
        let mut day = -98_000i64; // about 1701
        while day < 100_000 {
            micros.push(day * MICROS_PER_DAY);
            micros.push(day * MICROS_PER_DAY - 1);
            micros.push(day * MICROS_PER_DAY + 43_210_123_456);
            day += 13;
        }
        micros.extend([0, -1, 1, i64::from(i32::MAX) * 1000]);
        // Out of order too (the function remembers the last value's period).
        let mut shuffled = micros.clone();
        shuffled.reverse();
        shuffled.rotate_left(7);
        micros.extend(shuffled.iter().step_by(3).copied());
        let ctx = SessionContext::new();
        ctx.register_udf(udf().as_ref().clone());
        let batch = datafusion::arrow::record_batch::RecordBatch::try_from_iter(vec![(
            "m",
            Arc::new(Int64Array::from(micros.clone())) as _,
        )])
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        for (g, _) in Grain::ALL {
            let sql = format!(
                "SELECT m, croo_period_start(m, '{g}') = CAST(date_trunc('{g}', to_timestamp_micros(m)) AS DATE) AS same FROM t"
            );
            let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            let mut n = 0;
            for b in &out {
                let same = b.column(1).as_boolean();
                let m = b.column(0).as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    assert!(same.value(i), "{g}: {} differs", m.value(i));
                    n += 1;
                }
            }
            assert_eq!(n, micros.len(), "{g}");
        }
    }

    /// The array path (which remembers the last value's period) gives
    /// every value its own period, in any order, at the ends of `i64` too.
    #[test]
    fn arrays_in_any_order_as_one_value() {
        let mut micros: Vec<i64> = vec![i64::MIN, i64::MAX, i64::MIN + 1, 0, i64::MAX - 1, -1];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Runs of nearby instants, jumps, and period boundaries.
            let base = (x % 40_000) as i64 - 20_000;
            micros.push(base * MICROS_PER_DAY + (i % 3) - 1);
            micros.push(micros[micros.len() - 1] + 1);
        }
        for (g, grain) in Grain::ALL {
            let out = udf()
                .invoke_with_args(ScalarFunctionArgs {
                    args: vec![
                        ColumnarValue::Array(Arc::new(Int64Array::from(micros.clone()))),
                        ColumnarValue::Scalar(ScalarValue::Utf8(Some(g.to_string()))),
                    ],
                    arg_fields: vec![],
                    number_rows: micros.len(),
                    return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                        "p",
                        DataType::Date32,
                        true,
                    )),
                    config_options: Arc::new(Default::default()),
                })
                .unwrap()
                .into_array(micros.len())
                .unwrap();
            let out = out.as_primitive::<Date32Type>();
            for (i, &m) in micros.iter().enumerate() {
                let want = period_start(m, grain).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
                assert_eq!(i64::from(out.value(i)), want, "{g}: {m}");
            }
        }
    }

    /// Distinct (key, day) pairs give distinct keys, and the key gives the
    /// pair back; NULL in either is NULL.
    #[test]
    fn period_keys_are_one_to_one() {
        let keys = [i64::MIN, -5, -1, 0, 1, 7, 1 << 40, i64::MAX];
        let days = [i32::MIN, -1, 0, 1, 20_000, i32::MAX];
        let mut seen = std::collections::BTreeSet::new();
        for &k in &keys {
            for &d in &days {
                let v = period_key(k, d);
                assert!(seen.insert(v), "({k}, {d}) collides");
                assert_eq!((v >> 32) as i64, k);
                assert_eq!(period_of_key(v), d);
            }
        }
        assert!(seen.iter().all(|v| v.unsigned_abs() < 10u128.pow(38)));
        let k = Arc::new(Int64Array::from(vec![Some(3), None, Some(-2)])) as ArrayRef;
        let d = Arc::new(Date32Array::from(vec![Some(1), Some(2), None])) as ArrayRef;
        let out = key_udf()
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(k), ColumnarValue::Array(d)],
                arg_fields: vec![],
                number_rows: 3,
                return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                    "k",
                    PERIOD_KEY_TYPE,
                    true,
                )),
                config_options: Arc::new(Default::default()),
            })
            .unwrap()
            .into_array(3)
            .unwrap();
        let out = out.as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
        assert_eq!(out.data_type(), &PERIOD_KEY_TYPE);
        assert_eq!(out.value(0), period_key(3, 1));
        assert!(out.is_null(1) && out.is_null(2));
    }

    #[test]
    fn civil_round_trip() {
        for z in -1_000_000..1_000_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
