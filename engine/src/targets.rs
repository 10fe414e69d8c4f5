//! Targets and statuses: whether a published number is where it should be
//! (docs/targets.md).
//!
//! A targets file sits beside the formula (`NAME.targets.toml` next to
//! `NAME.toml`, or any file given with `--targets`): finance sets targets
//! without touching the formula, so a target never changes a score, the
//! formula's hash or an edition. [`load`] reads and checks one against a
//! formula; [`Targets::evaluate`] gives each group of a period its status
//! from the period's result rows.
//!
//! A target is for the score or one component's rollup, in the whole
//! population or one group (`segment=enterprise`), from a first period
//! until the next target for the same thing. Its achievement is
//! `(actual - baseline) / (target - baseline)`: 1 at the target, 0 at the
//! baseline, above 1 beyond the target, whichever direction is better
//! (for `lower`, the target is below the baseline and the same quotient
//! grows as the actual falls). Ordered rules map an achievement to a
//! status, the first that holds winning, `otherwise` when none does; a
//! group's status rolls up its items' (`worst`, by default, or the
//! `score`'s alone).

use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use formulas::{Diagnostic, FormulaFile, SourceFile};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::rollup::ResultRow;

/// The status of an item whose actual number is NULL (no customer
/// included): ranked below every declared status.
pub const NO_DATA: &str = "no_data";

/// The targets file beside a formula file: `NAME.targets.toml` for
/// `NAME.toml`.
pub fn beside(formula: &Path) -> PathBuf {
    let stem = formula
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    formula.with_file_name(format!("{stem}.targets.toml"))
}

/// Whether `path` names a targets file (not a formula).
pub fn is_targets_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".targets.toml"))
}

/// A targets file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub path: PathBuf,
    /// The file's `version`, recorded with every status.
    pub version: String,
    /// `sha256:` of the file's bytes.
    pub digest: String,
    pub rules: Vec<Rule>,
    pub otherwise: String,
    pub rollup: StatusRollup,
    pub targets: Vec<Target>,
}

/// What a target is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    Score,
    Component(String),
}

impl Item {
    pub fn name(&self) -> String {
        match self {
            Item::Score => "score".into(),
            Item::Component(c) => format!("component.{c}"),
        }
    }
}

/// Which direction is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Higher,
    Lower,
}

/// How a group's status follows from its items'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusRollup {
    /// The worst status of the score and the components with a target.
    Worst,
    /// The score's status alone.
    Score,
}

/// One target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub item: Item,
    /// `(dimension, value)`; `None`: the whole population.
    pub group: Option<(String, String)>,
    /// The first day of the first period it applies to.
    pub from: NaiveDate,
    pub value: f64,
    pub baseline: f64,
    pub direction: Direction,
}

/// `status OP threshold`: the status when the achievement compares so.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub status: String,
    pub op: Op,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Ge => a >= b,
            Op::Gt => a > b,
            Op::Le => a <= b,
            Op::Lt => a < b,
        }
    }
}

/// One item's status in one group and period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemStatus {
    /// `score` or `component.NAME`.
    #[serde(rename = "for")]
    pub item: String,
    pub actual: Option<f64>,
    pub target: f64,
    pub baseline: f64,
    pub direction: Direction,
    /// The first period the target applies from.
    pub from: NaiveDate,
    pub achievement: Option<f64>,
    pub status: String,
}

/// A group's status in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStatus {
    pub period: NaiveDate,
    pub dimension: Option<String>,
    pub value: Option<String>,
    /// The items' statuses rolled up; `None` when no target applies.
    pub status: Option<String>,
    pub items: Vec<ItemStatus>,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Spanned<String>,
    status: Spanned<RawStatus>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    rules: Vec<Spanned<String>>,
    otherwise: Spanned<String>,
    #[serde(default)]
    rollup: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(rename = "for", default)]
    item: Option<Spanned<String>>,
    #[serde(default)]
    group: Option<Spanned<String>>,
    from: Spanned<String>,
    value: Spanned<f64>,
    baseline: Spanned<f64>,
    direction: Spanned<String>,
}

/// Reads and checks the targets file at `path` against the formula
/// `file`: every component and dimension it names exists, every `from`
/// is a period of the formula's calendar, every target differs from its
/// baseline in its better direction, and no two targets are for the same
/// thing from the same period. Errors name the file, line and column.
pub fn load(path: &Path, file: &FormulaFile) -> Result<Targets> {
    let bytes = std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Error::User(format!("{}: not UTF-8 text", path.display())))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let source = SourceFile::new(path.display().to_string(), text.clone());
    let fail = |diagnostics: Vec<Diagnostic>| Error::Formula {
        file: Box::new(source.clone()),
        diagnostics,
    };
    let raw: RawFile = toml::from_str(&text).map_err(|e| {
        fail(vec![Diagnostic::error(
            "croo::targets",
            e.span().unwrap_or(0..0),
            e.message().to_string(),
        )])
    })?;
    let mut diags = Vec::new();
    let mut err = |span: Range<usize>, msg: String| {
        diags.push(Diagnostic::error("croo::targets", span, msg));
    };
    let status = raw.status.get_ref();
    let mut rules = Vec::new();
    for r in &status.rules {
        match parse_rule(r.get_ref()) {
            Some(rule) => rules.push(rule),
            None => err(
                r.span(),
                format!(
                    "`{}` is not a rule: expected a status, an operator (>=, >, <=, <) and a number, such as \"on_track >= 1.0\"",
                    r.get_ref()
                ),
            ),
        }
    }
    let otherwise = status.otherwise.get_ref().trim().to_string();
    if !is_status_name(&otherwise) || otherwise == NO_DATA {
        err(
            status.otherwise.span(),
            format!("`otherwise` must be a status name ([a-z0-9_]+, not `{NO_DATA}`)"),
        );
    }
    let rollup = match status
        .rollup
        .as_ref()
        .map(|r| (r.get_ref().as_str(), r.span()))
    {
        None | Some(("worst", _)) => StatusRollup::Worst,
        Some(("score", _)) => StatusRollup::Score,
        Some((other, span)) => {
            err(
                span,
                format!("`rollup = \"{other}\"`: expected \"worst\" or \"score\""),
            );
            StatusRollup::Worst
        }
    };
    let cal = Calendar::of(file);
    let mut targets: Vec<Target> = Vec::new();
    for t in &raw.targets {
        let r = t.get_ref();
        let item = match r.item.as_ref().map(|i| (i.get_ref().trim(), i.span())) {
            None | Some(("score", _)) => Some(Item::Score),
            Some((i, span)) => match i.strip_prefix("component.") {
                Some(c) if file.components.iter().any(|x| x.name.value == c) => {
                    Some(Item::Component(c.to_string()))
                }
                _ => {
                    let known: Vec<String> = file
                        .components
                        .iter()
                        .map(|c| format!("component.{}", c.name.value))
                        .collect();
                    err(
                        span,
                        format!(
                            "`for = \"{i}\"`: expected \"score\" or one of {}",
                            known.join(", ")
                        ),
                    );
                    None
                }
            },
        };
        let group = match r.group.as_ref().map(|g| (g.get_ref().trim(), g.span())) {
            None | Some(("all", _)) => Some(None),
            Some((g, span)) => match g.split_once('=') {
                Some((d, v)) if file.dimensions.iter().any(|x| x.name.value == d.trim()) => {
                    Some(Some((d.trim().to_string(), v.trim().to_string())))
                }
                _ => {
                    err(
                        span,
                        format!(
                            "`group = \"{g}\"`: expected \"all\" or DIMENSION=VALUE with a dimension of the formula ({})",
                            file.dimensions
                                .iter()
                                .map(|d| d.name.value.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    None
                }
            },
        };
        let from = match cal.parse_span(r.from.get_ref()) {
            Some((first, _)) => Some(cal.floor(file.grain, first)),
            None => {
                err(
                    r.from.span(),
                    format!(
                        "`from = \"{}\"` is not a date or a period",
                        r.from.get_ref()
                    ),
                );
                None
            }
        };
        let direction = match r.direction.get_ref().as_str() {
            "higher" => Some(Direction::Higher),
            "lower" => Some(Direction::Lower),
            other => {
                err(
                    r.direction.span(),
                    format!("`direction = \"{other}\"`: expected \"higher\" or \"lower\""),
                );
                None
            }
        };
        let (value, baseline) = (*r.value.get_ref(), *r.baseline.get_ref());
        if !value.is_finite() || !baseline.is_finite() {
            err(
                t.span(),
                "`value` and `baseline` must be finite numbers".into(),
            );
        }
        if let Some(d) = direction {
            let better = match d {
                Direction::Higher => value > baseline,
                Direction::Lower => value < baseline,
            };
            if !better {
                err(
                    r.value.span(),
                    format!(
                        "the target {value} is not {} than its baseline {baseline}: the achievement (actual - baseline) / (target - baseline) needs a target beyond the baseline in the better direction",
                        if d == Direction::Higher {
                            "higher"
                        } else {
                            "lower"
                        }
                    ),
                );
            }
        }
        if let (Some(item), Some(group), Some(from), Some(direction)) =
            (item, group, from, direction)
        {
            let t2 = Target {
                item,
                group,
                from,
                value,
                baseline,
                direction,
            };
            if targets
                .iter()
                .any(|o| o.item == t2.item && o.group == t2.group && o.from == t2.from)
            {
                err(
                    r.from.span(),
                    format!(
                        "a second target for {} in {} from {}",
                        t2.item.name(),
                        group_name(&t2.group),
                        t2.from
                    ),
                );
            }
            targets.push(t2);
        }
    }
    if !diags.is_empty() {
        return Err(fail(diags));
    }
    targets.sort_by(|a, b| (&a.item, &a.group, a.from).cmp(&(&b.item, &b.group, b.from)));
    Ok(Targets {
        path: path.to_path_buf(),
        version: raw.version.get_ref().clone(),
        digest,
        rules,
        otherwise,
        rollup,
        targets,
    })
}

fn is_status_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn parse_rule(s: &str) -> Option<Rule> {
    let s = s.trim();
    let (at, op) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)]
        .iter()
        .find_map(|(t, op)| s.find(t).map(|i| ((i, t.len()), *op)))?;
    let status = s[..at.0].trim();
    let threshold: f64 = s[at.0 + at.1..].trim().parse().ok()?;
    (is_status_name(status) && status != NO_DATA && threshold.is_finite()).then(|| Rule {
        status: status.to_string(),
        op,
        threshold,
    })
}

fn group_name(g: &Option<(String, String)>) -> String {
    match g {
        None => "the whole population".into(),
        Some((d, v)) => format!("{d}={v}"),
    }
}

impl Targets {
    /// The status an achievement maps to: the first rule that holds, else
    /// `otherwise`; [`NO_DATA`] without an achievement.
    pub fn status_of(&self, achievement: Option<f64>) -> String {
        let Some(a) = achievement else {
            return NO_DATA.to_string();
        };
        self.rules
            .iter()
            .find(|r| r.op.holds(a, r.threshold))
            .map_or_else(|| self.otherwise.clone(), |r| r.status.clone())
    }

    /// How bad a status is: its rule's place, `otherwise` after every
    /// rule, [`NO_DATA`] last.
    fn rank(&self, status: &str) -> usize {
        if status == NO_DATA {
            return usize::MAX;
        }
        self.rules
            .iter()
            .position(|r| r.status == status)
            .unwrap_or(self.rules.len())
    }

    /// The target for `item` in `group` that applies in `period`: the one
    /// with the latest `from` not after it.
    pub fn target(
        &self,
        item: &Item,
        group: &Option<(String, String)>,
        period: NaiveDate,
    ) -> Option<&Target> {
        self.targets
            .iter()
            .filter(|t| &t.item == item && &t.group == group && t.from <= period)
            .max_by_key(|t| t.from)
    }

    /// The status of every group of `rows` (one period's or several
    /// periods' result rows), in the rows' order.
    pub fn evaluate(&self, rows: &[ResultRow]) -> Vec<GroupStatus> {
        rows.iter().map(|r| self.group_status(r)).collect()
    }

    /// The status of the group of one result row.
    pub fn group_status(&self, r: &ResultRow) -> GroupStatus {
        let group = r.dimension.clone().zip(r.value.clone());
        let mut items = Vec::new();
        let mut wanted: Vec<(Item, Option<f64>)> = vec![(Item::Score, r.score)];
        wanted.extend(
            r.components
                .0
                .iter()
                .map(|(name, c)| (Item::Component(name.clone()), c.rollup)),
        );
        for (item, actual) in wanted {
            let Some(t) = self.target(&item, &group, r.period) else {
                continue;
            };
            let achievement = actual
                .map(|a| (a - t.baseline) / (t.value - t.baseline))
                .filter(|a| a.is_finite());
            items.push(ItemStatus {
                item: item.name(),
                actual,
                target: t.value,
                baseline: t.baseline,
                direction: t.direction,
                from: t.from,
                achievement,
                status: self.status_of(achievement),
            });
        }
        let status = match self.rollup {
            StatusRollup::Score => items
                .iter()
                .find(|i| i.item == "score")
                .map(|i| i.status.clone()),
            StatusRollup::Worst => items
                .iter()
                .max_by_key(|i| self.rank(&i.status))
                .map(|i| i.status.clone()),
        };
        GroupStatus {
            period: r.period,
            dimension: r.dimension.clone(),
            value: r.value.clone(),
            status,
            items,
        }
    }
}

#[cfg(test)]
mod tests;
