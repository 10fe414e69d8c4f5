//! The calendar arithmetic against hand-worked dates and an independent
//! implementation of the NRF rule (`tests/data/calendar/nrf.py`).

use super::*;
use formulas::{CalendarKind, CalendarSpec, YearEnd, YearLabel};

fn d(s: &str) -> NaiveDate {
    period::parse_date(s).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn nrf() -> Calendar {
    retail([4, 5, 4], YearEnd::Nearest, YearLabel::Start)
}

fn retail(pattern: [u8; 3], year_end: YearEnd, year_label: YearLabel) -> Calendar {
    Calendar::new(Some(&CalendarSpec {
        kind: CalendarKind::Retail {
            pattern,
            year_end_month: 1,
            year_end_weekday: 5,
            year_end,
        },
        year_label,
        time_zone: None,
    }))
    .unwrap()
}

fn fiscal(start: u32, year_label: YearLabel, tz: Option<&str>) -> Calendar {
    Calendar::new(Some(&CalendarSpec {
        kind: CalendarKind::Gregorian {
            fiscal_year_start: start,
        },
        year_label,
        time_zone: tz.map(str::to_string),
    }))
    .unwrap()
}

fn span(c: &Calendar, grain: Grain, p: &str) -> (String, String) {
    let first = c.floor(grain, d(p));
    let last = c.next(grain, first).pred_opt().unwrap();
    (first.to_string(), last.to_string())
}

fn days(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn nrf_2023_has_53_weeks_and_2024_has_52() {
    let c = nrf();
    assert_eq!(
        span(&c, Grain::Year, "2023-06-15"),
        days("2023-01-29", "2024-02-03")
    );
    assert_eq!(c.label(Grain::Year, d("2023-01-29")).unwrap(), "FY2023");
    assert_eq!(
        span(&c, Grain::Year, "2024-02-04"),
        days("2024-02-04", "2025-02-01")
    );
    assert_eq!(
        c.range(Grain::Week, d("2023-01-29"), d("2024-02-03")).len(),
        53
    );
    assert_eq!(
        c.range(Grain::Week, d("2024-02-04"), d("2025-02-01")).len(),
        52
    );
    // The 53rd week is the last month's fifth: 2023-12-31 to 2024-02-03.
    assert_eq!(
        span(&c, Grain::Month, "2024-01-20"),
        days("2023-12-31", "2024-02-03")
    );
    assert_eq!(
        c.label(Grain::Month, d("2023-12-31")).unwrap(),
        "FY2023-M12"
    );
    assert_eq!(c.label(Grain::Week, d("2024-01-28")).unwrap(), "FY2023-W53");
    // The fourth quarter has 14 weeks in a 53-week year.
    assert_eq!(
        span(&c, Grain::Quarter, "2024-02-03"),
        days("2023-10-29", "2024-02-03")
    );
}

/// Every fiscal year 2000-2034 and its months against `nrf.py`, an
/// independent implementation of the NRF rule.
#[test]
fn nrf_years_agree_with_an_independent_implementation() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/calendar/nrf.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = nrf();
    let mut long = Vec::new();
    for y in v["years"].as_array().unwrap() {
        let first = d(y["first"].as_str().unwrap());
        let (a, b) = span(&c, Grain::Year, &first.to_string());
        assert_eq!(
            (a.as_str(), b.as_str()),
            (y["first"].as_str().unwrap(), y["last"].as_str().unwrap())
        );
        assert_eq!(
            c.label(Grain::Year, first).unwrap(),
            format!("FY{}", y["year"])
        );
        let weeks = c.range(Grain::Week, first, d(&b)).len();
        assert_eq!(weeks as u64, y["weeks"].as_u64().unwrap());
        if weeks == 53 {
            long.push(y["year"].as_i64().unwrap());
        }
        let months: Vec<String> = c
            .range(Grain::Month, first, d(&b))
            .iter()
            .map(|m| m.to_string())
            .collect();
        let expected: Vec<String> = y["months"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        assert_eq!(months, expected, "{}", y["year"]);
    }
    let expected: Vec<i64> = v["years_53"]
        .as_array()
        .unwrap()
        .iter()
        .map(|y| y.as_i64().unwrap())
        .collect();
    assert_eq!(long, expected);
    // NRF's published calendars name these among them.
    for y in [2012, 2017, 2023] {
        assert!(long.contains(&y), "{y}");
    }
}

#[test]
fn retail_patterns_and_the_last_weekday_rule() {
    // 4-4-5: the months of FY2024 (2024-02-04, 52 weeks) start after 4, 4,
    // 5 weeks.
    let c = retail([4, 4, 5], YearEnd::Nearest, YearLabel::Start);
    let months: Vec<String> = c
        .range(Grain::Month, d("2024-02-04"), d("2024-05-04"))
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(months, ["2024-02-04", "2024-03-03", "2024-03-31"]);
    // 5-4-4 in the 53-week FY2023: month 11 starts after 44 weeks, the
    // last month has 4 + 1 weeks.
    let c = retail([5, 4, 4], YearEnd::Nearest, YearLabel::Start);
    assert_eq!(
        span(&c, Grain::Month, "2023-12-10"),
        days("2023-12-03", "2023-12-30")
    );
    assert_eq!(
        span(&c, Grain::Month, "2024-02-03"),
        days("2023-12-31", "2024-02-03")
    );
    assert_eq!(
        span(&c, Grain::Month, "2023-01-29"),
        days("2023-01-29", "2023-03-04")
    );
    // `last`: the last Saturday of January. 2023-01-28 and 2024-01-27
    // were the last Saturdays; the year is named after the year it ends in.
    let c = retail([4, 5, 4], YearEnd::Last, YearLabel::End);
    assert_eq!(
        span(&c, Grain::Year, "2023-06-01"),
        days("2023-01-29", "2024-01-27")
    );
    assert_eq!(c.label(Grain::Year, d("2023-06-01")).unwrap(), "FY2024");
    assert_eq!(
        c.range(Grain::Week, d("2023-01-29"), d("2024-01-27")).len(),
        52
    );
}

#[test]
fn a_july_fiscal_year_is_named_after_the_year_it_ends_in() {
    let c = fiscal(7, YearLabel::End, None);
    assert_eq!(
        span(&c, Grain::Quarter, "2026-08-15"),
        days("2026-07-01", "2026-09-30")
    );
    assert_eq!(
        c.label(Grain::Quarter, d("2026-07-01")).unwrap(),
        "FY2027-Q1"
    );
    assert_eq!(
        c.label(Grain::Quarter, d("2027-04-01")).unwrap(),
        "FY2027-Q4"
    );
    assert_eq!(
        span(&c, Grain::Year, "2027-06-30"),
        days("2026-07-01", "2027-06-30")
    );
    assert_eq!(c.label(Grain::Year, d("2026-07-01")).unwrap(), "FY2027");
    assert_eq!(
        c.label(Grain::Month, d("2026-09-01")).unwrap(),
        "FY2027-M03"
    );
    // Months and ISO weeks are those of the calendar.
    assert_eq!(
        span(&c, Grain::Month, "2026-08-15"),
        days("2026-08-01", "2026-08-31")
    );
    assert_eq!(c.label(Grain::Week, d("2026-11-02")).unwrap(), "2026-W45");
    let c = fiscal(7, YearLabel::Start, None);
    assert_eq!(
        c.label(Grain::Quarter, d("2026-07-01")).unwrap(),
        "FY2026-Q1"
    );
}

#[test]
fn a_fiscal_quarter_crosses_the_calendar_year() {
    // Fiscal years from November: Q1 is November to January.
    let c = fiscal(11, YearLabel::End, None);
    assert_eq!(
        span(&c, Grain::Quarter, "2027-01-15"),
        days("2026-11-01", "2027-01-31")
    );
    assert_eq!(
        span(&c, Grain::Quarter, "2026-12-31"),
        days("2026-11-01", "2027-01-31")
    );
    assert_eq!(
        c.label(Grain::Quarter, d("2026-11-01")).unwrap(),
        "FY2027-Q1"
    );
    assert_eq!(
        c.parse_span("FY2027-Q1"),
        Some((d("2026-11-01"), d("2027-01-31")))
    );
    assert_eq!(
        span(&c, Grain::Quarter, "2026-10-31"),
        days("2026-08-01", "2026-10-31")
    );
}

#[test]
fn fiscal_names_are_read_back() {
    let c = fiscal(7, YearLabel::End, None);
    assert_eq!(
        c.parse_span("FY2027"),
        Some((d("2026-07-01"), d("2027-06-30")))
    );
    assert_eq!(
        c.parse_span("fy2027-q2"),
        Some((d("2026-10-01"), d("2026-12-31")))
    );
    assert_eq!(
        c.parse_span("FY2027-M12"),
        Some((d("2027-06-01"), d("2027-06-30")))
    );
    // A date still names a day; a calendar quarter its calendar days.
    assert_eq!(
        c.parse_span("2026-10-07"),
        Some((d("2026-10-07"), d("2026-10-07")))
    );
    assert_eq!(
        c.parse_span("2026-Q4"),
        Some((d("2026-10-01"), d("2026-12-31")))
    );
    for bad in [
        "FY2027-Q5",
        "FY2027-Q0",
        "FY2027-M13",
        "FY27",
        "FY2027-W01",
        "FY2027-",
        "FY2027-X1",
    ] {
        assert_eq!(c.parse_span(bad), None, "{bad}");
    }
    let c = nrf();
    assert_eq!(
        c.parse_span("FY2023-W53"),
        Some((d("2024-01-28"), d("2024-02-03")))
    );
    assert_eq!(c.parse_span("FY2024-W53"), None);
    assert_eq!(
        c.parse_span("FY2023-M12"),
        Some((d("2023-12-31"), d("2024-02-03")))
    );
    // Without a calendar there are no fiscal names.
    assert_eq!(Calendar::default().parse_span("FY2027"), None);
}

#[test]
fn labels_read_back_as_their_period() {
    let calendars = [
        nrf(),
        retail([4, 4, 5], YearEnd::Last, YearLabel::End),
        fiscal(7, YearLabel::End, None),
        fiscal(2, YearLabel::Start, Some("America/New_York")),
    ];
    for c in &calendars {
        for grain in [Grain::Week, Grain::Month, Grain::Quarter, Grain::Year] {
            for p in c.range(grain, d("2021-01-01"), d("2025-12-31")) {
                let label = c.label(grain, p).unwrap();
                let (first, last) = c.parse_span(&label).unwrap();
                assert_eq!(first, p, "{label}");
                assert_eq!(last.succ_opt().unwrap(), c.next(grain, p), "{label}");
            }
        }
    }
}

#[test]
fn a_local_calendar_follows_daylight_saving() {
    let c = fiscal(1, YearLabel::End, Some("Europe/Berlin"));
    // March 2026 begins at midnight CET (UTC+1); April at midnight CEST.
    assert_eq!(c.instant(d("2026-03-01")), t("2026-02-28T23:00:00Z"));
    assert_eq!(
        c.end(Grain::Month, d("2026-03-01")),
        t("2026-03-31T22:00:00Z")
    );
    // The day clocks go forward (29 March 2026) has 23 hours, the day they
    // go back (25 October 2026) 25.
    let hours = |day: &str| {
        let p = d(day);
        (c.end(Grain::Day, p) - c.instant(p)).num_hours()
    };
    assert_eq!(hours("2026-03-29"), 23);
    assert_eq!(hours("2026-10-25"), 25);
    assert_eq!(hours("2026-10-26"), 24);
    // An instant at 23:30 UTC on 31 March is 1:30 on 1 April in Berlin.
    assert_eq!(c.day_of(t("2026-03-31T22:30:00Z")), d("2026-04-01"));
    assert_eq!(
        c.floor(Grain::Month, c.day_of(t("2026-03-31T22:30:00Z"))),
        d("2026-04-01")
    );
    assert_eq!(
        c.last_complete(Grain::Month, t("2026-03-31T22:30:00Z")),
        d("2026-03-01")
    );
    // A zone whose clocks skipped midnight: Santiago went from 24:00 to
    // 01:00 on 2022-09-11, so that day began at 01:00 local (04:00 UTC).
    let c = fiscal(1, YearLabel::End, Some("America/Santiago"));
    assert_eq!(c.instant(d("2022-09-11")), t("2022-09-11T04:00:00Z"));
}

/// Every instant falls in exactly one period of every grain: the period
/// of its local day begins at or before it and ends after it, and periods
/// follow each other without gap or overlap.
#[test]
fn every_instant_is_in_exactly_one_period() {
    let calendars = [
        Calendar::default(),
        nrf(),
        retail([5, 4, 4], YearEnd::Last, YearLabel::End),
        fiscal(7, YearLabel::End, None),
        fiscal(4, YearLabel::Start, Some("Europe/Berlin")),
        fiscal(1, YearLabel::End, Some("America/Santiago")),
        Calendar::new(Some(&CalendarSpec {
            kind: CalendarKind::Retail {
                pattern: [4, 5, 4],
                year_end_month: 12,
                year_end_weekday: 6,
                year_end: YearEnd::Nearest,
            },
            year_label: YearLabel::Start,
            time_zone: Some("Australia/Sydney".into()),
        }))
        .unwrap(),
    ];
    // A deterministic spread of instants over 2000-2035 (a 64-bit LCG).
    let lo = t("2000-01-01T00:00:00Z").timestamp();
    let hi = t("2035-01-01T00:00:00Z").timestamp();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for c in &calendars {
        for grain in [
            Grain::Day,
            Grain::Week,
            Grain::Month,
            Grain::Quarter,
            Grain::Year,
        ] {
            for _ in 0..400 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let secs = lo + (x >> 11) as i64 % (hi - lo);
                let at = DateTime::from_timestamp(secs, 0).unwrap();
                let p = c.floor(grain, c.day_of(at));
                assert!(
                    c.instant(p) <= at && at < c.end(grain, p),
                    "{c:?} {grain:?} {at}"
                );
                let next = c.next(grain, p);
                assert_eq!(c.floor(grain, next), next);
                assert_eq!(c.floor(grain, next.pred_opt().unwrap()), p);
            }
        }
    }
}

#[test]
fn last_year_pairs_fiscal_periods_by_number() {
    let c = nrf();
    // Week 53 of FY2023 is compared with nothing.
    assert_eq!(c.last_year(Grain::Week, d("2024-01-28")), None);
    // Week 1 of FY2024 with week 1 of FY2023.
    assert_eq!(
        c.last_year(Grain::Week, d("2024-02-04")),
        Some(d("2023-01-29"))
    );
    // Month 12 of FY2023 (5 weeks) with month 12 of FY2022 (4 weeks).
    assert_eq!(
        c.last_year(Grain::Month, d("2023-12-31")),
        Some(d("2023-01-01"))
    );
    assert_eq!(
        c.last_year(Grain::Quarter, d("2024-11-03")),
        Some(d("2023-10-29"))
    );
    assert_eq!(
        c.last_year(Grain::Year, d("2024-02-04")),
        Some(d("2023-01-29"))
    );
    let c = fiscal(7, YearLabel::End, None);
    assert_eq!(
        c.last_year(Grain::Quarter, d("2026-07-01")),
        Some(d("2025-07-01"))
    );
}

#[test]
fn the_default_calendar_is_the_utc_one() {
    let c = Calendar::default();
    assert!(c.is_default());
    assert_eq!(c.label(Grain::Month, d("2026-10-01")), None);
    assert_eq!(
        span(&c, Grain::Week, "2026-11-22"),
        days("2026-11-16", "2026-11-22")
    );
    assert_eq!(c.micros(d("1970-01-02")), 86_400_000_000);
}
