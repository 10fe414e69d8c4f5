//! A formula's calendar: which days each period of a grain covers, the
//! instants it begins and ends at, and its fiscal name.
//!
//! A period is identified everywhere by its first day (a local date when
//! the calendar names a time zone) and is `[start, end)` where `start` is
//! the local midnight that begins its first day and `end` the one that
//! begins the next period. Without a `[calendar]` section periods are
//! those of [`crate::period`]: ISO weeks, calendar months, quarters and
//! years in UTC. With one (docs/formula-reference.md, "Calendars"):
//!
//! - `type = "gregorian"`: weeks and months as without, quarters and
//!   years starting in `fiscal_year_start`;
//! - `type = "retail"`: 52/53-week years ending on a weekday near the end
//!   of a month (the NRF calendar by default), 13-week quarters of 4- and
//!   5-week months, the 53rd week added to the year's last month.
//!
//! Rows are assigned to periods in a plan by [`Calendar::assign`]: the
//! same integer kernel as before for the default calendar, else a binary
//! search over the literal boundaries of the periods computed
//! (`croo_period_bucket`), so a plan still runs on a cluster.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::logical_expr::Expr;
use formulas::{CalendarKind, CalendarSpec, Grain, YearEnd, YearLabel};

use crate::period;

/// The calendar of a formula, built from its `[calendar]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Calendar {
    spec: Option<CalendarSpec>,
    tz: Option<Tz>,
}

/// A fiscal year: its name's number, first day and the first day of the
/// next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FiscalYear {
    label: i32,
    first: NaiveDate,
    next: NaiveDate,
}

impl Calendar {
    /// The calendar a `[calendar]` section declares (`None`: the default).
    /// Errors name an unknown time zone (a formula's has been checked;
    /// a manifest's may have been edited).
    pub fn new(spec: Option<&CalendarSpec>) -> Result<Calendar, String> {
        let tz = match spec.and_then(|s| s.time_zone.as_deref()) {
            Some(name) => Some(
                name.parse::<Tz>()
                    .map_err(|_| format!("`{name}` is not an IANA time zone"))?,
            ),
            None => None,
        };
        Ok(Calendar {
            spec: spec.cloned(),
            tz,
        })
    }

    /// The calendar of a checked formula file.
    pub fn of(file: &formulas::FormulaFile) -> Calendar {
        Calendar::new(file.calendar.as_ref()).unwrap_or_default()
    }

    /// The declared `[calendar]`, if any (recorded in the manifest).
    pub fn spec(&self) -> Option<&CalendarSpec> {
        self.spec.as_ref()
    }

    /// True without a `[calendar]`: ISO weeks and calendar months,
    /// quarters and years in UTC.
    pub fn is_default(&self) -> bool {
        self.spec.is_none()
    }

    /// First day of the period of `grain` that contains the day `d`.
    pub fn floor(&self, grain: Grain, d: NaiveDate) -> NaiveDate {
        self.span(grain, d).0
    }

    /// First day of the period after the one that contains `start`.
    pub fn next(&self, grain: Grain, start: NaiveDate) -> NaiveDate {
        self.span(grain, start).1
    }

    /// Every period from the one containing `from` to the one containing
    /// `to`, both included.
    pub fn range(&self, grain: Grain, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut p = self.floor(grain, from);
        let last = self.floor(grain, to);
        while p <= last {
            out.push(p);
            p = self.next(grain, p);
        }
        out
    }

    /// The day an instant falls on in the calendar's time zone.
    pub fn day_of(&self, t: DateTime<Utc>) -> NaiveDate {
        match self.tz {
            Some(tz) => t.with_timezone(&tz).date_naive(),
            None => t.date_naive(),
        }
    }

    /// The last period that has ended at `now`.
    pub fn last_complete(&self, grain: Grain, now: DateTime<Utc>) -> NaiveDate {
        let current = self.floor(grain, self.day_of(now));
        self.floor(grain, current.pred_opt().unwrap_or(current))
    }

    /// The instant (microseconds since the Unix epoch) at which the day
    /// `d` begins: its local midnight, or the first local time after a
    /// daylight-saving gap that swallows midnight.
    pub fn micros(&self, d: NaiveDate) -> i64 {
        self.instant(d).timestamp_micros()
    }

    /// The instant at which the day `d` begins (see [`Calendar::micros`]).
    pub fn instant(&self, d: NaiveDate) -> DateTime<Utc> {
        let Some(tz) = self.tz else {
            return d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        };
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        // Gaps are at most a few hours; step through them.
        (0..=24 * 4)
            .find_map(|q| {
                tz.from_local_datetime(&(midnight + Duration::minutes(15 * q)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| midnight.and_utc())
    }

    /// The instant the period of `grain` starting on `p` ends at.
    pub fn end(&self, grain: Grain, p: NaiveDate) -> DateTime<Utc> {
        self.instant(self.next(grain, p))
    }

    /// The same period of the previous year, for `--compare last-year`:
    /// in a fiscal calendar the period with the same number in the
    /// previous fiscal year (week 53 of a 53-week year has none: it is
    /// compared with nothing); otherwise [`period::last_year`].
    pub fn last_year(&self, grain: Grain, p: NaiveDate) -> Option<NaiveDate> {
        match self.spec.as_ref().map(|s| &s.kind) {
            Some(CalendarKind::Retail { .. }) => {
                let (index, year) = self.number(grain, p);
                let before = self.year_of(year.first.pred_opt()?);
                let periods = self.periods_of(grain, before);
                periods.get(index as usize - 1).copied()
            }
            _ => period::last_year(grain, p),
        }
    }

    /// The fiscal name of the period of `grain` starting on `p`, when the
    /// formula declares a `[calendar]`: `FY2027`, `FY2027-Q1`,
    /// `FY2027-M01`, `FY2023-W53` (a gregorian calendar's weeks are ISO
    /// weeks: `2026-W45`; days are their date).
    pub fn label(&self, grain: Grain, p: NaiveDate) -> Option<String> {
        let spec = self.spec.as_ref()?;
        let retail = matches!(spec.kind, CalendarKind::Retail { .. });
        Some(match grain {
            Grain::Day => p.to_string(),
            Grain::Week if !retail => {
                let w = p.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            _ => {
                let (n, year) = self.number(grain, p);
                let fy = format!("FY{:04}", year.label);
                match grain {
                    Grain::Year => fy,
                    Grain::Quarter => format!("{fy}-Q{n}"),
                    Grain::Month => format!("{fy}-M{n:02}"),
                    _ => format!("{fy}-W{n:02}"),
                }
            }
        })
    }

    /// The first and last day a period argument names: a fiscal name
    /// (`FY2027`, `FY2027-Q1`, `FY2027-M01`, `FY2023-W53`; `FY` in any
    /// case) when the formula declares a `[calendar]`, or any form
    /// [`period::parse_span`] reads (calendar days).
    pub fn parse_span(&self, s: &str) -> Option<(NaiveDate, NaiveDate)> {
        let t = s.trim();
        if self.spec.is_some()
            && let Some(rest) = t.strip_prefix("FY").or_else(|| t.strip_prefix("fy"))
        {
            return self.parse_fiscal(rest);
        }
        period::parse_span(t)
    }

    fn parse_fiscal(&self, rest: &str) -> Option<(NaiveDate, NaiveDate)> {
        let (y, part) = match rest.split_once('-') {
            Some((y, p)) => (y, Some(p)),
            None => (rest, None),
        };
        if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year = self.fiscal_year(y.parse().ok()?)?;
        let last = |next: NaiveDate| next.pred_opt();
        let Some(part) = part else {
            return Some((year.first, last(year.next)?));
        };
        let (grain, n) = match part.as_bytes().first()? {
            b'Q' | b'q' => (Grain::Quarter, &part[1..]),
            b'M' | b'm' => (Grain::Month, &part[1..]),
            b'W' | b'w' => (Grain::Week, &part[1..]),
            _ => return None,
        };
        if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: usize = n.parse().ok()?;
        if grain == Grain::Week && !matches!(self.spec.as_ref()?.kind, CalendarKind::Retail { .. })
        {
            return None;
        }
        let first = *self.periods_of(grain, year).get(n.checked_sub(1)?)?;
        Some((first, last(self.next(grain, first))?))
    }

    /// `croo_period_start` for the default calendar, else a bucket search
    /// over the boundaries of every period from the first of `periods` to
    /// the last (in order; instants outside them give NULL: a plan keeps
    /// only rows inside them).
    pub(crate) fn assign(&self, micros: Expr, grain: Grain, periods: &[NaiveDate]) -> Expr {
        if self.is_default() {
            return kernels::period::period_start_expr(micros, grain);
        }
        let periods = match (periods.first(), periods.last()) {
            (Some(a), Some(b)) => self.range(grain, *a, *b),
            _ => Vec::new(),
        };
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let starts: Vec<i64> = periods.iter().map(|p| self.micros(*p)).collect();
        let days: Vec<i32> = periods
            .iter()
            .map(|p| (*p - epoch).num_days() as i32)
            .collect();
        let end = periods
            .last()
            .map(|p| self.micros(self.next(grain, *p)))
            .unwrap_or(i64::MIN);
        kernels::bucket::bucket_expr(micros, &starts, end, &days)
    }

    // ---- the arithmetic of each kind ----

    /// The first day of the period of `grain` containing `d`, and of the
    /// next one.
    fn span(&self, grain: Grain, d: NaiveDate) -> (NaiveDate, NaiveDate) {
        let Some(spec) = &self.spec else {
            let first = period::floor(grain, d);
            return (first, period::next(grain, first));
        };
        match (&spec.kind, grain) {
            (_, Grain::Day) => (d, d.succ_opt().unwrap_or(d)),
            (CalendarKind::Gregorian { fiscal_year_start }, _) => {
                let months = match grain {
                    Grain::Quarter => 3,
                    Grain::Year => 12,
                    _ => {
                        let first = period::floor(grain, d);
                        return (first, period::next(grain, first));
                    }
                };
                let shift = *fiscal_year_start as i32 - 1;
                let index = d.year() * 12 + d.month0() as i32 - shift;
                let first = index.div_euclid(months) * months + shift;
                let day = |m: i32| {
                    NaiveDate::from_ymd_opt(m.div_euclid(12), m.rem_euclid(12) as u32 + 1, 1)
                        .unwrap_or(d)
                };
                (day(first), day(first + months))
            }
            (CalendarKind::Retail { .. }, _) => {
                let year = self.year_of(d);
                let periods = self.periods_of(grain, year);
                let i = periods.partition_point(|p| *p <= d).max(1) - 1;
                let first = periods[i];
                let next = periods.get(i + 1).copied().unwrap_or(year.next);
                (first, next)
            }
        }
    }

    /// The fiscal year containing `d`.
    fn year_of(&self, d: NaiveDate) -> FiscalYear {
        match self.spec.as_ref().map(|s| &s.kind) {
            Some(CalendarKind::Retail { .. }) => {
                let mut a = d.year();
                loop {
                    let y = self.retail_year(a);
                    if d < y.first {
                        a -= 1;
                    } else if d >= y.next {
                        a += 1;
                    } else {
                        return y;
                    }
                }
            }
            _ => {
                let first = self.floor(Grain::Year, d);
                let next = self.next(Grain::Year, first);
                let m = self.start_month();
                let label = match self.label_rule() {
                    YearLabel::End if m > 1 => first.year() + 1,
                    _ => first.year(),
                };
                FiscalYear { label, first, next }
            }
        }
    }

    /// The fiscal year named `label`.
    fn fiscal_year(&self, label: i32) -> Option<FiscalYear> {
        let spec = self.spec.as_ref()?;
        Some(match &spec.kind {
            CalendarKind::Gregorian { fiscal_year_start } => {
                let start = match spec.year_label {
                    YearLabel::End if *fiscal_year_start > 1 => label - 1,
                    _ => label,
                };
                self.year_of(NaiveDate::from_ymd_opt(start, *fiscal_year_start, 1)?)
            }
            CalendarKind::Retail { year_end_month, .. } => {
                let anchor = match spec.year_label {
                    YearLabel::Start if *year_end_month < 12 => label + 1,
                    _ => label,
                };
                self.retail_year(anchor)
            }
        })
    }

    fn start_month(&self) -> u32 {
        match self.spec.as_ref().map(|s| &s.kind) {
            Some(CalendarKind::Gregorian { fiscal_year_start }) => *fiscal_year_start,
            Some(CalendarKind::Retail { year_end_month, .. }) => year_end_month % 12 + 1,
            None => 1,
        }
    }

    fn label_rule(&self) -> YearLabel {
        self.spec.as_ref().map_or(YearLabel::End, |s| s.year_label)
    }

    /// The retail year that ends in or near `year_end_month` of the
    /// calendar year `anchor`.
    fn retail_year(&self, anchor: i32) -> FiscalYear {
        let first = year_end(self.spec.as_ref(), anchor - 1)
            .succ_opt()
            .unwrap_or(NaiveDate::MIN);
        let next = year_end(self.spec.as_ref(), anchor)
            .succ_opt()
            .unwrap_or(NaiveDate::MAX);
        // Named after the year of its end month, or of the month after the
        // previous year's end month (the month it mostly starts in).
        let label = match self.label_rule() {
            YearLabel::Start if self.start_month() > 1 => anchor - 1,
            _ => anchor,
        };
        FiscalYear { label, first, next }
    }

    /// The first days of the periods of `grain` in a fiscal year.
    fn periods_of(&self, grain: Grain, year: FiscalYear) -> Vec<NaiveDate> {
        let pattern = match self.spec.as_ref().map(|s| &s.kind) {
            Some(CalendarKind::Retail { pattern, .. }) => *pattern,
            _ => {
                let mut out = Vec::new();
                let mut p = self.floor(grain, year.first);
                while p < year.next {
                    if p >= year.first {
                        out.push(p);
                    }
                    p = self.next(grain, p);
                }
                return out;
            }
        };
        let weeks = ((year.next - year.first).num_days() / 7) as usize;
        let week = |w: usize| year.first + Duration::days(7 * w as i64);
        match grain {
            Grain::Day => {
                let n = (year.next - year.first).num_days();
                (0..n).map(|i| year.first + Duration::days(i)).collect()
            }
            Grain::Week => (0..weeks).map(week).collect(),
            Grain::Month => {
                let mut out = Vec::with_capacity(12);
                let mut w = 0;
                for i in 0..12 {
                    out.push(week(w));
                    w += pattern[i % 3] as usize;
                }
                out
            }
            Grain::Quarter => (0..4).map(|q| week(13 * q)).collect(),
            Grain::Year => vec![year.first],
        }
    }

    /// The number (from 1) of the period of `grain` starting on `p` in its
    /// fiscal year, and that year.
    fn number(&self, grain: Grain, p: NaiveDate) -> (u32, FiscalYear) {
        let year = self.year_of(p);
        let periods = self.periods_of(grain, year);
        let i = periods.partition_point(|q| *q <= p);
        (i.max(1) as u32, year)
    }
}

/// The last day of the retail year that ends in or near `year_end_month`
/// of the calendar year `y`.
fn year_end(spec: Option<&CalendarSpec>, y: i32) -> NaiveDate {
    let Some(CalendarKind::Retail {
        year_end_month,
        year_end_weekday,
        year_end: rule,
        ..
    }) = spec.map(|s| &s.kind)
    else {
        return NaiveDate::MAX;
    };
    let first_of_next = if *year_end_month == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, year_end_month + 1, 1)
    };
    let Some(last) = first_of_next.and_then(|d| d.pred_opt()) else {
        return NaiveDate::MAX;
    };
    // Days back from the month's last day to the previous such weekday.
    let back = (last.weekday().num_days_from_monday() as i64 + 7 - *year_end_weekday as i64) % 7;
    match rule {
        YearEnd::Last => last - Duration::days(back),
        YearEnd::Nearest if back <= 3 => last - Duration::days(back),
        YearEnd::Nearest => last + Duration::days(7 - back),
    }
}

#[cfg(test)]
mod tests;
