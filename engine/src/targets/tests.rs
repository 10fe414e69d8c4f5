//! Targets read from files and statuses worked out by hand.

use super::*;
use crate::rollup::{ComponentResult, Components};

const FORMULA: &str = r#"
[formula]
name = "t"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"

[dimensions]
segment = "segment"

[score.components.fcr]
weight = 0.5
expr = "1"

[score.components.cost]
weight = 0.5
expr = "1"
"#;

fn formula() -> FormulaFile {
    let (f, d) = formulas::check(&SourceFile::new("t.toml", FORMULA));
    f.unwrap_or_else(|| panic!("{d:?}")).file
}

fn targets(text: &str) -> Result<Targets> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.targets.toml");
    std::fs::write(&path, text).unwrap();
    load(&path, &formula())
}

fn d(s: &str) -> NaiveDate {
    crate::period::parse_date(s).unwrap()
}

fn row(
    period: &str,
    group: Option<(&str, &str)>,
    score: Option<f64>,
    fcr: f64,
    cost: f64,
) -> ResultRow {
    ResultRow {
        period: d(period),
        dimension: group.map(|g| g.0.to_string()),
        value: group.map(|g| g.1.to_string()),
        score,
        population: 1,
        included: 1,
        excluded: 0,
        weight_total: 1.0,
        complete: true,
        components: Components(vec![
            (
                "fcr".into(),
                ComponentResult {
                    rollup: Some(fcr),
                    contribution: None,
                    imputed: None,
                },
            ),
            (
                "cost".into(),
                ComponentResult {
                    rollup: Some(cost),
                    contribution: None,
                    imputed: None,
                },
            ),
        ]),
    }
}

const RULES: &str = r#"
version = "2026-board-1"

[status]
rules = ["on_track >= 1.0", "at_risk >= 0.9"]
otherwise = "off_track"
"#;

#[test]
fn rules_first_match_wins_then_otherwise() {
    let t = targets(RULES).unwrap();
    assert_eq!(t.status_of(Some(1.0)), "on_track");
    assert_eq!(t.status_of(Some(1.7)), "on_track");
    assert_eq!(t.status_of(Some(0.9)), "at_risk");
    assert_eq!(t.status_of(Some(0.999)), "at_risk");
    assert_eq!(t.status_of(Some(0.89)), "off_track");
    assert_eq!(t.status_of(Some(-3.0)), "off_track");
    assert_eq!(t.status_of(None), NO_DATA);
    // Strict and "at most" operators: the first rule that holds wins.
    let t = targets(
        "version = \"1\"\n[status]\nrules = [\"great > 1.2\", \"bad < 0.5\", \"poor <= 0.8\"]\notherwise = \"fine\"\n",
    )
    .unwrap();
    assert_eq!(t.status_of(Some(1.2)), "fine");
    assert_eq!(t.status_of(Some(1.21)), "great");
    assert_eq!(t.status_of(Some(0.5)), "poor");
    assert_eq!(t.status_of(Some(0.49)), "bad");
    assert_eq!(t.status_of(Some(0.8)), "poor");
    assert_eq!(t.status_of(Some(0.81)), "fine");
}

/// Score target 80 over baseline 70 (higher is better); cost target 20
/// under baseline 30 (lower is better), in enterprise.
///
/// Enterprise, January: score 79 -> (79 - 70) / (80 - 70) = 0.9: at_risk;
/// cost 18 -> (18 - 30) / (20 - 30) = 1.2: on_track; worst: at_risk.
/// From March the score target is 90: score 88 -> (88 - 70) / 20 = 0.9:
/// at_risk; in February (target 80) 88 -> 1.8: on_track. Cost 29 ->
/// 0.1: off_track. The whole population has no target: no status.
#[test]
fn achievements_and_a_target_that_changes_mid_range() {
    let text = format!(
        "{RULES}
[[targets]]
for = \"score\"
group = \"segment=enterprise\"
from = \"2026-01\"
value = 80
baseline = 70
direction = \"higher\"

[[targets]]
for = \"score\"
group = \"segment=enterprise\"
from = \"2026-03-15\"
value = 90
baseline = 70
direction = \"higher\"

[[targets]]
for = \"component.cost\"
group = \"segment=enterprise\"
from = \"2026-01-01\"
value = 20
baseline = 30
direction = \"lower\"
"
    );
    let t = targets(&text).unwrap();
    let ent = Some(("segment", "enterprise"));
    let s = t.group_status(&row("2026-01-01", ent, Some(79.0), 0.5, 18.0));
    let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} vs {b}");
    close(s.items[0].achievement, 0.9);
    assert_eq!(s.items[0].status, "at_risk");
    assert_eq!(s.items[1].item, "component.cost");
    close(s.items[1].achievement, 1.2);
    assert_eq!(s.items[1].status, "on_track");
    assert_eq!(s.status.as_deref(), Some("at_risk"));
    // February: still the first target.
    let s = t.group_status(&row("2026-02-01", ent, Some(88.0), 0.5, 18.0));
    close(s.items[0].achievement, 1.8);
    assert_eq!(s.items[0].target, 80.0);
    assert_eq!(s.status.as_deref(), Some("on_track"));
    // March (the target from 15 March applies from March's period).
    let s = t.group_status(&row("2026-03-01", ent, Some(88.0), 0.5, 29.0));
    assert_eq!(s.items[0].target, 90.0);
    close(s.items[0].achievement, 0.9);
    close(s.items[1].achievement, 0.1);
    assert_eq!(s.items[1].status, "off_track");
    assert_eq!(s.status.as_deref(), Some("off_track"));
    // Before any target, and in other groups: no status.
    let s = t.group_status(&row("2025-12-01", ent, Some(88.0), 0.5, 29.0));
    assert!(s.items.is_empty() && s.status.is_none());
    let s = t.group_status(&row("2026-03-01", None, Some(88.0), 0.5, 29.0));
    assert!(s.status.is_none());
    // A NULL score: no_data, the worst of all.
    let s = t.group_status(&row("2026-03-01", ent, None, 0.5, 18.0));
    assert_eq!(s.items[0].status, NO_DATA);
    assert_eq!(s.status.as_deref(), Some(NO_DATA));
}

#[test]
fn the_score_rollup_ignores_component_statuses() {
    let text = format!(
        "{}
[[targets]]
from = \"2026-01\"
value = 80
baseline = 70
direction = \"higher\"

[[targets]]
for = \"component.fcr\"
from = \"2026-01\"
value = 0.8
baseline = 0.6
direction = \"higher\"
",
        RULES.replace(
            "otherwise = \"off_track\"",
            "otherwise = \"off_track\"\nrollup = \"score\""
        )
    );
    let t = targets(&text).unwrap();
    // Score 85: 1.5 on_track; fcr 0.6: 0 off_track; the group: on_track.
    let s = t.group_status(&row("2026-01-01", None, Some(85.0), 0.6, 1.0));
    assert_eq!(s.items[1].status, "off_track");
    assert_eq!(s.status.as_deref(), Some("on_track"));
}

#[test]
fn mistakes_name_their_line() {
    let cases = [
        (
            "for = \"component.nps\"",
            "expected \"score\" or one of component.fcr, component.cost",
        ),
        (
            "group = \"region=eu\"",
            "with a dimension of the formula (segment)",
        ),
        ("from = \"2026-13\"", "is not a date or a period"),
        ("direction = \"up\"", "expected \"higher\" or \"lower\""),
        ("value = 60", "is not higher than its baseline 70"),
        ("colour = \"red\"", "unknown field `colour`"),
    ];
    for (line, says) in cases {
        let base = "[[targets]]\nfor = \"score\"\ngroup = \"segment=smb\"\nfrom = \"2026-01\"\nvalue = 80\nbaseline = 70\ndirection = \"higher\"\n";
        let key = line.split(" = ").next().unwrap();
        let target = if base.contains(&format!("\n{key} = ")) {
            base.lines()
                .map(|l| {
                    if l.starts_with(&format!("{key} = ")) {
                        line.to_string()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            format!("{base}{line}\n")
        };
        let text = format!("{RULES}\n{target}");
        let Err(Error::Formula { file, diagnostics }) = targets(&text) else {
            panic!("{line}: accepted");
        };
        let d = &diagnostics[0];
        assert!(d.message.contains(says), "{line}: {}", d.message);
        let (l, _) = file.line_col(d.span.start);
        let expected = text
            .lines()
            .position(|x| x.contains(line) || (key == "colour" && x.starts_with("colour")))
            .unwrap()
            + 1;
        // Errors of a key point at its line; unknown keys at the table.
        if key != "colour" {
            assert_eq!(l, expected, "{line}: {}", d.message);
        }
    }
    let Err(Error::Formula { diagnostics, .. }) =
        targets(&RULES.replace("\"at_risk >= 0.9\"", "\"at_risk => 0.9\""))
    else {
        panic!("a bad rule accepted");
    };
    assert!(diagnostics[0].message.contains("is not a rule"));
}
