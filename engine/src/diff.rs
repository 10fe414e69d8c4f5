//! Two versions of a formula side by side: which definitions differ
//! (measures, derived values, components, weights, score, rollup weight),
//! and the results of both on the same data.

use serde::Serialize;

use crate::rollup::ResultRow;
use formulas::Formula;

/// One definition that differs between the old and the new formula.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefinitionChange {
    /// `measure`, `derived`, `component`, `score.expr`, `rollup.weight`.
    pub kind: &'static str,
    pub name: String,
    /// `None` when the definition is new.
    pub old: Option<String>,
    /// `None` when the definition was removed.
    pub new: Option<String>,
}

/// The results of one group under both formulas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupDiff {
    pub period: chrono::NaiveDate,
    pub dimension: Option<String>,
    pub value: Option<String>,
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub change: Option<f64>,
}

fn measure_text(m: &formulas::Measure) -> String {
    let mut s = format!("{} from {}", m.expr.value, m.source.value);
    if let Some(f) = &m.filter {
        s.push_str(&format!(" where {}", f.value));
    }
    if let Some(d) = m.default {
        s.push_str(&format!(" default {d}"));
    }
    s
}

fn compare(
    kind: &'static str,
    old: Vec<(String, String)>,
    new: Vec<(String, String)>,
    out: &mut Vec<DefinitionChange>,
) {
    for (name, o) in &old {
        match new.iter().find(|(n, _)| n == name) {
            Some((_, n)) if n == o => {}
            Some((_, n)) => out.push(DefinitionChange {
                kind,
                name: name.clone(),
                old: Some(o.clone()),
                new: Some(n.clone()),
            }),
            None => out.push(DefinitionChange {
                kind,
                name: name.clone(),
                old: Some(o.clone()),
                new: None,
            }),
        }
    }
    for (name, n) in &new {
        if !old.iter().any(|(o, _)| o == name) {
            out.push(DefinitionChange {
                kind,
                name: name.clone(),
                old: None,
                new: Some(n.clone()),
            });
        }
    }
}

/// The definitions that differ between two formulas.
pub fn definitions(old: &Formula, new: &Formula) -> Vec<DefinitionChange> {
    let mut out = Vec::new();
    let measures = |f: &Formula| {
        f.file
            .measures
            .iter()
            .map(|m| (m.name.value.clone(), measure_text(m)))
            .collect()
    };
    compare("measure", measures(old), measures(new), &mut out);
    // Expressions are printed from their trees, with the parentheses
    // their precedence needs (`formulas::expr::Ast`'s Display): the same
    // expression written with other spacing or redundant parentheses is no
    // change.
    let derived = |f: &Formula| {
        f.derived
            .iter()
            .map(|(i, a)| (f.file.derived[*i].name.value.clone(), a.to_string()))
            .collect()
    };
    compare("derived", derived(old), derived(new), &mut out);
    let components = |f: &Formula| {
        f.file
            .components
            .iter()
            .zip(&f.components)
            .map(|(c, a)| {
                let expr = if a.is_atom() {
                    a.to_string()
                } else {
                    format!("({a})")
                };
                (c.name.value.clone(), format!("{} x {expr}", c.weight))
            })
            .collect()
    };
    compare("component", components(old), components(new), &mut out);
    let single = |a: &Option<formulas::expr::Ast>| {
        a.iter()
            .map(|a| (String::new(), a.to_string()))
            .collect::<Vec<_>>()
    };
    compare(
        "score.expr",
        single(&old.score),
        single(&new.score),
        &mut out,
    );
    compare(
        "rollup.weight",
        single(&old.weight),
        single(&new.weight),
        &mut out,
    );
    out
}

/// Pairs the result rows of both formulas by period and group (groups
/// present in either).
pub fn results(old: &[ResultRow], new: &[ResultRow]) -> Vec<GroupDiff> {
    let key = |r: &ResultRow| (r.period, r.dimension.clone(), r.value.clone());
    let mut keys: Vec<_> = old.iter().chain(new).map(key).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let find = |rows: &[ResultRow]| rows.iter().find(|r| key(r) == k).and_then(|r| r.score);
            let (o, n) = (find(old), find(new));
            GroupDiff {
                period: k.0,
                dimension: k.1,
                value: k.2,
                old: o,
                new: n,
                change: o.zip(n).map(|(o, n)| n - o),
            }
        })
        .collect()
}
