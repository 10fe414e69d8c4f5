//! What moved the score: each component's contribution in a period, the
//! change between two periods split into the change of each contribution,
//! and (with a dimension) into the change within groups and the change in
//! the mix of groups (shift-share). The parts add up to the total.

use chrono::NaiveDate;
use serde::Serialize;

use crate::rollup::ResultRow;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentChange {
    pub component: String,
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub change: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupShift {
    pub value: Option<String>,
    /// Share of the rollup weight before and after.
    pub share_before: f64,
    pub share_after: f64,
    pub score_before: Option<f64>,
    pub score_after: Option<f64>,
    /// `(share_after - share_before) * score_before`
    pub mix: f64,
    /// `share_after * (score_after - score_before)`
    pub within: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub period: NaiveDate,
    pub compare: Option<NaiveDate>,
    pub score: Option<f64>,
    pub score_before: Option<f64>,
    pub change: Option<f64>,
    /// Per component: contribution after, before and its change. With a
    /// custom `score.expr`, contributions are NULL and so are the changes.
    pub components: Vec<ComponentChange>,
    pub by: Option<String>,
    pub groups: Vec<GroupShift>,
    pub mix_total: Option<f64>,
    pub within_total: Option<f64>,
}

fn whole(rows: &[ResultRow], p: NaiveDate) -> Option<&ResultRow> {
    rows.iter().find(|r| r.period == p && r.dimension.is_none())
}

/// Explains the whole-population score of `period` (and its change since
/// `compare`), from result rows holding both periods.
pub fn explain(
    rows: &[ResultRow],
    period: NaiveDate,
    compare: Option<NaiveDate>,
    by: Option<&str>,
) -> Explanation {
    let after = whole(rows, period);
    let before = compare.and_then(|c| whole(rows, c));
    let score = after.and_then(|r| r.score);
    let score_before = before.and_then(|r| r.score);
    let names: Vec<String> = after
        .or(before)
        .map(|r| r.components.0.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    let contribution = |r: Option<&ResultRow>, i: usize| {
        r.and_then(|r| r.components.0.get(i))
            .and_then(|c| c.1.contribution)
    };
    let components = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (a, b) = (contribution(after, i), contribution(before, i));
            ComponentChange {
                component: n.clone(),
                before: b,
                after: a,
                change: compare.and(a.zip(b).map(|(a, b)| a - b)),
            }
        })
        .collect();
    let change = compare.and(score.zip(score_before).map(|(a, b)| a - b));

    let mut groups = Vec::new();
    let (mut mix_total, mut within_total) = (None, None);
    if let (Some(dim), Some(c)) = (by, compare) {
        let total = |p: NaiveDate| whole(rows, p).map(|r| r.weight_total).unwrap_or(0.0);
        let (w1, w0) = (total(period), total(c));
        let mut values: Vec<Option<String>> = rows
            .iter()
            .filter(|r| {
                (r.period == period || r.period == c) && r.dimension.as_deref() == Some(dim)
            })
            .map(|r| r.value.clone())
            .collect();
        values.sort();
        values.dedup();
        let (mut mix_sum, mut within_sum) = (0.0, 0.0);
        for v in values {
            let g = |p: NaiveDate| {
                rows.iter()
                    .find(|r| r.period == p && r.dimension.as_deref() == Some(dim) && r.value == v)
                    .filter(|r| r.score.is_some())
            };
            let (g1, g0) = (g(period), g(c));
            let share = |r: Option<&ResultRow>, w: f64| {
                r.map(|r| if w > 0.0 { r.weight_total / w } else { 0.0 })
                    .unwrap_or(0.0)
            };
            let (s1, s0) = (share(g1, w1), share(g0, w0));
            let (sc1, sc0) = (g1.and_then(|r| r.score), g0.and_then(|r| r.score));
            // A group missing in one period counts with share 0 there and
            // the other period's score, so that its whole effect is mix.
            let base0 = sc0.or(sc1).unwrap_or(0.0);
            let base1 = sc1.or(sc0).unwrap_or(0.0);
            let mix = (s1 - s0) * base0;
            let within = s1 * (base1 - base0);
            mix_sum += mix;
            within_sum += within;
            groups.push(GroupShift {
                value: v,
                share_before: s0,
                share_after: s1,
                score_before: sc0,
                score_after: sc1,
                mix,
                within,
            });
        }
        mix_total = Some(mix_sum);
        within_total = Some(within_sum);
    }
    Explanation {
        period,
        compare,
        score,
        score_before,
        change,
        components,
        by: by.map(str::to_string),
        groups,
        mix_total,
        within_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{ComponentResult, Components};

    fn r(p: &str, value: Option<&str>, score: f64, weight: f64, contribution: f64) -> ResultRow {
        ResultRow {
            complete: true,
            period: crate::period::parse_date(p).unwrap(),
            dimension: value.map(|_| "segment".to_string()),
            value: value.map(str::to_string),
            score: Some(score),
            population: 1,
            included: 1,
            excluded: 0,
            weight_total: weight,
            components: Components(vec![(
                "c".into(),
                ComponentResult {
                    rollup: Some(score / 100.0),
                    contribution: Some(contribution),
                    imputed: None,
                },
            )]),
        }
    }

    /// Group a: weight 1 -> 2, score 10 -> 20; group b: weight 3 -> 2,
    /// score 30 -> 30. Whole: 25 -> 25. Mix: a (0.5 - 0.25) * 10 = 2.5,
    /// b (0.5 - 0.75) * 30 = -7.5; within: a 0.5 * 10 = 5, b 0. Mix -5 and
    /// within +5 add up to the change, 0.
    #[test]
    fn shift_share_adds_up_by_hand() {
        let rows = vec![
            r("2026-01-01", None, 25.0, 4.0, 25.0),
            r("2026-01-01", Some("a"), 10.0, 1.0, 10.0),
            r("2026-01-01", Some("b"), 30.0, 3.0, 30.0),
            r("2026-02-01", None, 25.0, 4.0, 25.0),
            r("2026-02-01", Some("a"), 20.0, 2.0, 20.0),
            r("2026-02-01", Some("b"), 30.0, 2.0, 30.0),
        ];
        let p = |s| crate::period::parse_date(s).unwrap();
        let e = explain(
            &rows,
            p("2026-02-01"),
            Some(p("2026-01-01")),
            Some("segment"),
        );
        assert_eq!(e.change, Some(0.0));
        assert_eq!(e.groups.len(), 2);
        assert_eq!((e.groups[0].mix, e.groups[0].within), (2.5, 5.0));
        assert_eq!((e.groups[1].mix, e.groups[1].within), (-7.5, 0.0));
        assert_eq!((e.mix_total, e.within_total), (Some(-5.0), Some(5.0)));
        assert_eq!(e.components[0].change, Some(0.0));
    }

    /// A group that appears only in the later period counts entirely as mix.
    #[test]
    fn a_new_group_is_mix() {
        let rows = vec![
            r("2026-01-01", None, 10.0, 1.0, 10.0),
            r("2026-01-01", Some("a"), 10.0, 1.0, 10.0),
            r("2026-02-01", None, 20.0, 2.0, 20.0),
            r("2026-02-01", Some("a"), 10.0, 1.0, 10.0),
            r("2026-02-01", Some("b"), 30.0, 1.0, 30.0),
        ];
        let p = |s| crate::period::parse_date(s).unwrap();
        let e = explain(
            &rows,
            p("2026-02-01"),
            Some(p("2026-01-01")),
            Some("segment"),
        );
        // a: (0.5 - 1) * 10 = -5, within 0; b: (0.5 - 0) * 30 = 15, within 0
        assert_eq!(e.mix_total, Some(10.0));
        assert_eq!(e.within_total, Some(0.0));
        assert_eq!(e.change, Some(10.0));
    }
}
