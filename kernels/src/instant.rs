//! `croo_instant(text, 'column')`: ISO 8601 text as a UTC instant
//! (`Timestamp(µs, "UTC")`), exactly what arrow's CSV and JSON readers give
//! for a column declared `Timestamp(µs, "UTC")`, faster.
//!
//! Text sources (CSV, NDJSON) carry their instants as text. Arrow's readers
//! parse each value with a general parser (every ISO 8601 variant, any time
//! zone) and a `chrono-tz` offset lookup per value: 8% of a CSV source's
//! run time. The common shapes, `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM:SS`,
//! optionally a fraction and a trailing `Z`, are parsed here in integer
//! arithmetic ([`fast_micros`]); every other string goes to arrow's own
//! parser (`string_to_datetime`, in UTC), so the same strings are accepted
//! with the same values, and the same ones rejected, now with the column
//! and the value in the message. The two paths are tested against each
//! other. Part of croo's function registry ([`crate::register`]).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, StringArrayType, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ExpressionPlacement, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use crate::period::days_from_civil;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The instant type of croo: microseconds since the epoch, in UTC.
pub fn instant_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Microseconds since the epoch of `s` when it has one of the common
/// shapes (`YYYY-MM-DD`, or that followed by `T`, `t` or a space,
/// `HH:MM:SS`, optionally `.` and one or more digits, optionally a final
/// `Z` or `z`) and is a valid date and time; `None` otherwise (another
/// shape, which arrow's parser decides). Digits of the fraction beyond the
/// sixth are dropped, as arrow's readers drop them.
#[inline]
pub fn fast_micros(s: &[u8]) -> Option<i64> {
    let n = s.len();
    if n < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let d = |i: usize| -> Option<i64> {
        let c = s[i].wrapping_sub(b'0');
        (c < 10).then_some(i64::from(c))
    };
    let year = d(0)? * 1000 + d(1)? * 100 + d(2)? * 10 + d(3)?;
    let month = d(5)? * 10 + d(6)?;
    let day = d(8)? * 10 + d(9)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day) * MICROS_PER_DAY;
    if n == 10 {
        return Some(days);
    }
    if n < 19 || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let hour = d(11)? * 10 + d(12)?;
    let minute = d(14)? * 10 + d(15)?;
    let second = d(17)? * 10 + d(18)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None; // leap seconds and the like: arrow's parser
    }
    let mut i = 19;
    let mut fraction = 0;
    if i < n && s[i] == b'.' {
        i += 1;
        let start = i;
        while i < n && s[i].is_ascii_digit() {
            if i - start < 6 {
                fraction = fraction * 10 + i64::from(s[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..6 {
            fraction *= 10;
        }
    }
    match &s[i..] {
        [] | [b'Z' | b'z'] => {}
        _ => return None, // an offset, a zone name: arrow's parser
    }
    Some(days + ((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Microseconds since the epoch of the instant `s`, or an error naming
/// `column` and the value: [`fast_micros`], else arrow's parser in UTC.
pub fn parse_micros(s: &str, column: &str) -> Result<i64> {
    if let Some(v) = fast_micros(s.as_bytes()) {
        return Ok(v);
    }
    match string_to_datetime(&chrono::Utc, s) {
        Ok(t) => Ok(t.timestamp_micros()),
        // A parse error, as the file readers give: bad data, exit code 1.
        Err(e) => {
            let reason = match e {
                ArrowError::ParseError(m) => m,
                e => e.to_string(),
            };
            Err(DataFusionError::ArrowError(
                Box::new(ArrowError::ParseError(format!(
                    "column `{column}`: {reason} (expected an ISO 8601 instant such as 2026-03-01T09:30:00Z)"
                ))),
                None,
            ))
        }
    }
}

/// The `croo_instant` function.
pub fn udf() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::from(CrooInstant::new())));
    Arc::clone(&F)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CrooInstant {
    signature: Signature,
}

impl CrooInstant {
    fn new() -> Self {
        let texts = [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View];
        Self {
            signature: Signature::one_of(
                texts
                    .into_iter()
                    .map(|t| TypeSignature::Exact(vec![t, DataType::Utf8]))
                    .collect(),
                Volatility::Immutable,
            ),
        }
    }
}

fn parse_array<'a>(a: impl StringArrayType<'a>, column: &str) -> Result<ArrayRef> {
    let mut values = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        values.push(if a.is_null(i) {
            0
        } else {
            parse_micros(a.value(i), column)?
        });
    }
    Ok(Arc::new(
        TimestampMicrosecondArray::new(values.into(), a.nulls().cloned()).with_timezone("UTC"),
    ))
}

impl ScalarUDFImpl for CrooInstant {
    fn name(&self) -> &str {
        "croo_instant"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(instant_type())
    }

    /// Over a column (and the name literal), a cheap per-row expression to
    /// compute next to the scan, as `get_field` is: a filter on the
    /// instant then reads the one parsed column instead of parsing the
    /// text again in each of its comparisons and in the projection above.
    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        match args {
            [
                ExpressionPlacement::Column | ExpressionPlacement::MoveTowardsLeafNodes,
                ExpressionPlacement::Literal,
            ] => ExpressionPlacement::MoveTowardsLeafNodes,
            _ => ExpressionPlacement::KeepInPlace,
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, column] = args.args.as_slice() else {
            return plan_err!("croo_instant takes (text, column name)");
        };
        let column = match column {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(c))) => c.as_str(),
            _ => return exec_err!("croo_instant: the column name must be a text literal"),
        };
        let array = match text {
            ColumnarValue::Scalar(v) => {
                let micros = match v.try_as_str() {
                    Some(Some(s)) => Some(parse_micros(s, column)?),
                    _ => None,
                };
                return Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    micros,
                    Some("UTC".into()),
                )));
            }
            ColumnarValue::Array(a) => a,
        };
        Ok(ColumnarValue::Array(match array.data_type() {
            DataType::Utf8 => parse_array(array.as_string::<i32>(), column)?,
            DataType::LargeUtf8 => parse_array(array.as_string::<i64>(), column)?,
            DataType::Utf8View => parse_array(array.as_string_view(), column)?,
            t => return exec_err!("croo_instant over {t}, not text"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use datafusion::arrow::array::StringArray;
    use proptest::prelude::*;

    fn arrow_micros(s: &str) -> Option<i64> {
        string_to_datetime(&Utc, s)
            .ok()
            .map(|t| t.timestamp_micros())
    }

    #[test]
    fn common_shapes_take_the_fast_path_with_arrows_values() {
        for s in [
            "2026-03-01",
            "2026-03-01T00:00:00Z",
            "2026-03-01t23:59:59z",
            "2026-03-01 12:34:56",
            "2025-11-10T02:46:20.221648Z",
            "2025-11-10T02:46:20.2Z",
            "2025-11-10T02:46:20.123456789Z",
            "2025-11-10T02:46:20.1234567891234Z",
            "2024-02-29T10:00:00Z",
            "2000-02-29",
            "1969-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            assert_eq!(fast_micros(s.as_bytes()), arrow_micros(s), "{s}");
            assert!(fast_micros(s.as_bytes()).is_some(), "{s}");
        }
    }

    #[test]
    fn other_shapes_go_to_arrow() {
        for s in [
            "2026-03-01T12:00:00+02:00",
            "2026-03-01 12:00:00 -08",
            "2026-03-01T120000",
            "2016-12-31T23:59:60Z",
            "2023-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-03-01T24:00:00Z",
            "2026-03-01T12:00:00.Z",
            "2026-03-01T12:00:00ZZ",
            "yesterday",
            "",
            " 2026-03-01",
        ] {
            assert_eq!(fast_micros(s.as_bytes()), None, "{s}");
            assert_eq!(
                parse_micros(s, "ts").ok(),
                arrow_micros(s),
                "{s}: the fallback is arrow's parser"
            );
        }
    }

    #[test]
    fn bad_values_name_the_column_and_the_value() {
        let e = parse_micros("2026-02-30", "ts").unwrap_err().to_string();
        assert!(
            e.contains("column `ts`") && e.contains("'2026-02-30'"),
            "{e}"
        );
        assert!(matches!(
            parse_micros("2026-02-30", "ts"),
            Err(DataFusionError::ArrowError(e, _)) if matches!(*e, ArrowError::ParseError(_))
        ));
    }

    #[test]
    fn nulls_stay_null_and_values_are_utc_microseconds() {
        let a = StringArray::from(vec![Some("2026-03-01T00:00:01.5Z"), None]);
        let out = parse_array(&a, "ts").unwrap();
        assert_eq!(out.data_type(), &instant_type());
        let out = out.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(out.value(0), 1_772_323_201_500_000);
        assert!(out.is_null(1));
    }

    fn piece(choices: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(choices).prop_map(str::to_string)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Whatever the fast path accepts, arrow accepts with the same
        /// value; whatever arrow rejects, the fast path rejects.
        #[test]
        fn fast_path_agrees_with_arrow(
            year in 0u32..10_000,
            month in 0u32..14,
            day in 0u32..33,
            sep in piece(&["T", "t", " ", "x", ""]),
            hour in 0u32..26,
            minute in 0u32..62,
            second in 0u32..62,
            fraction in "(\\.[0-9]{0,12})?",
            suffix in piece(&["", "Z", "z", "+00:00", "-05:30", " UTC", "ZZ", " ", "+01"]),
            cut in 0usize..40,
        ) {
            let full = format!(
                "{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}{fraction}{suffix}"
            );
            for s in [full.as_str(), &full[..cut.min(full.len())]] {
                let fast = fast_micros(s.as_bytes());
                if let Some(v) = fast {
                    prop_assert_eq!(Some(v), arrow_micros(s), "{}", s);
                }
                prop_assert_eq!(parse_micros(s, "c").ok(), arrow_micros(s), "{}", s);
            }
        }
    }
}
