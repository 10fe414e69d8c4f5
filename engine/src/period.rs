//! Periods of a grain: `[start, end)` in UTC, identified by their first day.
//! ISO weeks start on Monday; quarters on January, April, July, October 1.

use chrono::{Datelike, Duration, NaiveDate};
use formulas::Grain;

/// First day of the period of `grain` that contains `date`.
pub fn floor(grain: Grain, date: NaiveDate) -> NaiveDate {
    match grain {
        Grain::Day => date,
        Grain::Week => date - Duration::days(date.weekday().num_days_from_monday() as i64),
        Grain::Month => date.with_day(1).unwrap_or(date),
        Grain::Quarter => {
            let m = (date.month0() / 3) * 3 + 1;
            NaiveDate::from_ymd_opt(date.year(), m, 1).unwrap_or(date)
        }
        Grain::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date),
    }
}

/// First day of the period after the one starting at `start`.
pub fn next(grain: Grain, start: NaiveDate) -> NaiveDate {
    let add_months = |d: NaiveDate, n: u32| {
        d.checked_add_months(chrono::Months::new(n))
            .unwrap_or(NaiveDate::MAX)
    };
    match grain {
        Grain::Day => start + Duration::days(1),
        Grain::Week => start + Duration::days(7),
        Grain::Month => add_months(start, 1),
        Grain::Quarter => add_months(start, 3),
        Grain::Year => add_months(start, 12),
    }
}

/// The same period of the previous year, for `--compare last-year`: the
/// same month, quarter or year; the ISO week with the same number in the
/// previous ISO year; the same day. `None` when there is none: week 53
/// when the previous ISO year has 52 weeks, 29 February when the previous
/// year is not a leap year (croo does not pair them with a neighbour).
pub fn last_year(grain: Grain, start: NaiveDate) -> Option<NaiveDate> {
    match grain {
        Grain::Week => {
            let w = start.iso_week();
            NaiveDate::from_isoywd_opt(w.year() - 1, w.week(), chrono::Weekday::Mon)
        }
        _ => NaiveDate::from_ymd_opt(start.year() - 1, start.month(), start.day()),
    }
}

/// How a comparison period is named: `last-year`, or a date or label.
pub const LAST_YEAR: &str = "last-year";

/// Every period from the one containing `from` to the one containing `to`,
/// both included.
pub fn range(grain: Grain, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut p = floor(grain, from);
    let last = floor(grain, to);
    while p <= last {
        out.push(p);
        p = next(grain, p);
    }
    out
}

/// The last period that has ended on `today` (UTC).
pub fn last_complete(grain: Grain, today: NaiveDate) -> NaiveDate {
    let current = floor(grain, today);
    floor(grain, current - Duration::days(1))
}

/// Microseconds since the Unix epoch of a day's midnight UTC.
pub fn micros(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(i64::MAX)
}

/// Parses an ISO date (`2026-10-01`), also accepting a datetime's date part.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").ok()
}

/// The days a period label names, first and last: a date (`2026-10-01`,
/// or a datetime's date part), a month (`2026-10`), a quarter
/// (`2026-Q4`), an ISO week (`2026-W45`) or a year (`2026`). Case of `Q`
/// and `W` does not matter.
pub fn parse_span(s: &str) -> Option<(NaiveDate, NaiveDate)> {
    let s = s.trim();
    if let Some(d) = parse_date(s) {
        return Some((d, d));
    }
    let last_before = |next: NaiveDate| next - Duration::days(1);
    let year = |y: &str| -> Option<i32> {
        (y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
            .then(|| y.parse().ok())
            .flatten()
    };
    if let Some(y) = year(s) {
        let first = NaiveDate::from_ymd_opt(y, 1, 1)?;
        return Some((first, last_before(next(Grain::Year, first))));
    }
    let (y, rest) = s.split_once('-')?;
    let y = year(y)?;
    let number = |t: &str| -> Option<u32> {
        (!t.is_empty() && t.len() <= 2 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (grain, first) = if let Some(q) = rest.strip_prefix(['Q', 'q']) {
        let q = number(q).filter(|q| (1..=4).contains(q))?;
        (
            Grain::Quarter,
            NaiveDate::from_ymd_opt(y, (q - 1) * 3 + 1, 1)?,
        )
    } else if let Some(w) = rest.strip_prefix(['W', 'w']) {
        let w = number(w)?;
        (
            Grain::Week,
            NaiveDate::from_isoywd_opt(y, w, chrono::Weekday::Mon)?,
        )
    } else {
        let m = number(rest).filter(|_| rest.len() == 2)?;
        (Grain::Month, NaiveDate::from_ymd_opt(y, m, 1)?)
    };
    Some((first, last_before(next(grain, first))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_their_days() {
        let span = |s: &str| parse_span(s).map(|(a, b)| (a.to_string(), b.to_string()));
        let days = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(span("2026-10-07"), days("2026-10-07", "2026-10-07"));
        assert_eq!(
            span("2026-10-07T12:00:00Z"),
            days("2026-10-07", "2026-10-07")
        );
        assert_eq!(span("2026-11"), days("2026-11-01", "2026-11-30"));
        assert_eq!(span("2024-02"), days("2024-02-01", "2024-02-29"));
        assert_eq!(span("2026-Q4"), days("2026-10-01", "2026-12-31"));
        assert_eq!(span("2026-q1"), days("2026-01-01", "2026-03-31"));
        // ISO week 1 of 2026 starts on Monday 29 December 2025.
        assert_eq!(span("2026-W01"), days("2025-12-29", "2026-01-04"));
        assert_eq!(span("2026-W45"), days("2026-11-02", "2026-11-08"));
        assert_eq!(span("2026"), days("2026-01-01", "2026-12-31"));
        for bad in [
            "2026-13",
            "2026-Q5",
            "2026-Q0",
            "2026-W54",
            "2026-1x",
            "26-10",
            "2026-",
            "",
            "Q4",
            "2026-10-32",
            "2026-001",
        ] {
            assert_eq!(span(bad), None, "{bad}");
        }
    }

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn floors_to_grain() {
        assert_eq!(floor(Grain::Week, d("2026-11-22")), d("2026-11-16")); // a Sunday
        assert_eq!(floor(Grain::Week, d("2026-11-23")), d("2026-11-23")); // a Monday
        assert_eq!(floor(Grain::Quarter, d("2026-05-31")), d("2026-04-01"));
        assert_eq!(floor(Grain::Year, d("2026-05-31")), d("2026-01-01"));
        assert_eq!(floor(Grain::Month, d("2026-05-31")), d("2026-05-01"));
    }

    #[test]
    fn ranges_are_inclusive() {
        assert_eq!(
            range(Grain::Quarter, d("2025-10-01"), d("2026-04-01")),
            vec![d("2025-10-01"), d("2026-01-01"), d("2026-04-01")]
        );
        assert_eq!(
            range(Grain::Month, d("2026-01-15"), d("2026-01-20")),
            vec![d("2026-01-01")]
        );
        assert_eq!(next(Grain::Month, d("2026-12-01")), d("2027-01-01"));
    }

    #[test]
    fn the_same_period_last_year() {
        assert_eq!(
            last_year(Grain::Month, d("2026-10-01")),
            Some(d("2025-10-01"))
        );
        assert_eq!(
            last_year(Grain::Quarter, d("2026-07-01")),
            Some(d("2025-07-01"))
        );
        assert_eq!(
            last_year(Grain::Year, d("2026-01-01")),
            Some(d("2025-01-01"))
        );
        // ISO week 45 of 2026 starts on Monday 2 November; week 45 of 2025
        // on Monday 3 November.
        assert_eq!(
            last_year(Grain::Week, d("2026-11-02")),
            Some(d("2025-11-03"))
        );
        // 2026 has 53 ISO weeks (week 53 starts on 28 December); 2025 has 52.
        assert_eq!(last_year(Grain::Week, d("2026-12-28")), None);
        assert_eq!(last_year(Grain::Day, d("2028-02-29")), None);
        assert_eq!(
            last_year(Grain::Day, d("2028-03-01")),
            Some(d("2027-03-01"))
        );
    }

    #[test]
    fn last_complete_is_the_previous_period() {
        assert_eq!(
            last_complete(Grain::Month, d("2026-11-23")),
            d("2026-10-01")
        );
        assert_eq!(
            last_complete(Grain::Month, d("2026-11-01")),
            d("2026-10-01")
        );
        assert_eq!(last_complete(Grain::Week, d("2026-11-23")), d("2026-11-16"));
    }
}
