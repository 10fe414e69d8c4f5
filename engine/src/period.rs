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

#[cfg(test)]
mod tests {
    use super::*;

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
