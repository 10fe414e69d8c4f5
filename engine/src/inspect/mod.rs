//! `croo inspect`: what a formula's components and measures look like in
//! one period, and whether the components measure what the score claims
//! (docs/methods.md, "Inspecting a formula"). [`inspect`] scores the
//! period with per-customer rows and describes them with
//! [`crate::describe`].

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use serde::Serialize;

use crate::columns::{INCLUDED, SCORE};
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::score::{ScoreOptions, score};
use crate::session::SessionOptions;

/// One component's or measure's distribution over the period's customers.
#[derive(Debug, Clone, Serialize)]
pub struct Describe {
    pub name: String,
    /// `component` or `measure`.
    pub kind: String,
    /// Customers with a value.
    pub n: usize,
    /// The share of the period's customers without one (NULL).
    pub missing: f64,
    pub min: Option<f64>,
    pub p5: Option<f64>,
    pub median: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    pub skewness: Option<f64>,
    pub kurtosis: Option<f64>,
}

/// A component against the score.
#[derive(Debug, Clone, Serialize)]
pub struct Weighting {
    pub component: String,
    pub nominal_weight: f64,
    /// `weight x cov(component, score) / var(score)`: the share of the
    /// score's variance the component carries (they add up to 1); absent
    /// with `[score] expr`.
    pub effective_weight: Option<f64>,
    pub pearson_with_score: Option<f64>,
    pub spearman_with_score: Option<f64>,
}

/// What `croo inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub formula: String,
    pub period: NaiveDate,
    pub customers: usize,
    pub describe: Vec<Describe>,
    pub components: Vec<String>,
    /// Component x component, pairwise over customers with both values.
    pub pearson: Vec<Vec<Option<f64>>>,
    pub spearman: Vec<Vec<Option<f64>>>,
    pub weights: Vec<Weighting>,
    pub warnings: Vec<String>,
}

fn column(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<f64>>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(name)
            .ok_or_else(|| Error::User(format!("no column `{name}` in the scored rows")))?;
        let a = cast(a, &DataType::Float64).map_err(|e| Error::engine("inspecting")(e.into()))?;
        out.extend(a.as_primitive::<Float64Type>().iter());
    }
    Ok(out)
}

fn describe(name: &str, kind: &str, v: &[Option<f64>]) -> Describe {
    let mut s: Vec<f64> = v
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    s.sort_by(f64::total_cmp);
    Describe {
        name: name.to_string(),
        kind: kind.to_string(),
        n: s.len(),
        missing: if v.is_empty() {
            0.0
        } else {
            1.0 - s.len() as f64 / v.len() as f64
        },
        min: s.first().copied(),
        p5: crate::describe::quantile(&s, 0.05),
        median: crate::describe::quantile(&s, 0.5),
        p95: crate::describe::quantile(&s, 0.95),
        max: s.last().copied(),
        skewness: crate::describe::skewness(&s),
        kurtosis: crate::describe::kurtosis(&s),
    }
}

/// The pairs of `a` and `b` where both have a value.
fn pairs(a: &[Option<f64>], b: &[Option<f64>]) -> (Vec<f64>, Vec<f64>) {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .unzip()
}

/// Inspects `loaded` in `period`.
pub async fn inspect(
    loaded: &Loaded,
    period: NaiveDate,
    session: SessionOptions,
) -> Result<Inspection> {
    let f = &loaded.formula;
    let file = &f.file;
    let options = ScoreOptions {
        session,
        detail: true,
        ..ScoreOptions::default()
    };
    let c = score(loaded, &[period], &options).await?;
    let comps: Vec<String> = file
        .components
        .iter()
        .map(|c| c.name.value.clone())
        .collect();
    let values: Vec<Vec<Option<f64>>> = comps
        .iter()
        .map(|n| column(&c.detail, n))
        .collect::<Result<_>>()?;
    let included = column(&c.detail, INCLUDED)?;
    let score_col: Vec<Option<f64>> = column(&c.detail, SCORE)?
        .into_iter()
        .zip(&included)
        .map(|(s, inc)| if *inc == Some(1.0) { s } else { None })
        .collect();
    let mut out = Vec::new();
    for (n, v) in comps.iter().zip(&values) {
        out.push(describe(n, "component", v));
    }
    for m in &file.measures {
        out.push(describe(
            &m.name.value,
            "measure",
            &column(&c.detail, &m.name.value)?,
        ));
    }
    let matrix = |corr: fn(&[f64], &[f64]) -> Option<f64>| -> Vec<Vec<Option<f64>>> {
        values
            .iter()
            .map(|a| {
                values
                    .iter()
                    .map(|b| {
                        let (x, y) = pairs(a, b);
                        corr(&x, &y)
                    })
                    .collect()
            })
            .collect()
    };
    let (pearson, spearman) = (
        matrix(crate::describe::pearson),
        matrix(crate::describe::spearman),
    );
    // Effective weights over the customers with every component and a
    // score.
    let complete: Vec<usize> = (0..score_col.len())
        .filter(|&i| score_col[i].is_some() && values.iter().all(|v| v[i].is_some()))
        .collect();
    let s: Vec<f64> = complete.iter().filter_map(|&i| score_col[i]).collect();
    let var_s = crate::describe::covariance(&s, &s);
    let mut weights = Vec::new();
    for (k, c) in file.components.iter().enumerate() {
        let ck: Vec<f64> = complete.iter().filter_map(|&i| values[k][i]).collect();
        let effective = match (
            f.score.is_none() && file.method == formulas::Method::Arithmetic,
            var_s,
        ) {
            (true, Some(v)) if v > 0.0 => {
                crate::describe::covariance(&ck, &s).map(|cv| c.weight * cv / v)
            }
            _ => None,
        };
        let (x, y) = pairs(&values[k], &score_col);
        weights.push(Weighting {
            component: c.name.value.clone(),
            nominal_weight: c.weight,
            effective_weight: effective,
            pearson_with_score: crate::describe::pearson(&x, &y),
            spearman_with_score: crate::describe::spearman(&x, &y),
        });
    }
    let mut warnings = Vec::new();
    for w in &weights {
        if w.pearson_with_score.is_some_and(|r| r < 0.0) {
            warnings.push(format!(
                "component `{}` is negatively correlated with the score ({:.3}): it pulls against the others",
                w.component,
                w.pearson_with_score.unwrap_or_default()
            ));
        }
    }
    for d in &out {
        if d.kind == "component" {
            let spread = match (d.min, d.max) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            };
            let scale = d.max.map_or(1.0, |m| m.abs().max(1.0));
            if d.n > 0 && spread <= 1e-9 * scale {
                warnings.push(format!(
                    "component `{}` has (near) zero variance: it ranks nobody",
                    d.name
                ));
            }
        }
        if d.missing > 0.2 {
            warnings.push(format!(
                "{} `{}` is missing for {:.1}% of the customers (more than 20%)",
                d.kind,
                d.name,
                100.0 * d.missing
            ));
        }
    }
    Ok(Inspection {
        formula: f.name().to_string(),
        period,
        customers: included.len(),
        describe: out,
        components: comps,
        pearson,
        spearman,
        weights,
        warnings,
    })
}

/// An SVG heatmap of a correlation matrix: one cell per pair, blue for
/// positive, red for negative, the value written in each cell.
pub fn heatmap_svg(names: &[String], m: &[Vec<Option<f64>>], title: &str) -> String {
    let cell = 72.0;
    let label = names.iter().map(|n| n.len()).max().unwrap_or(4) as f64 * 8.0 + 16.0;
    let n = names.len() as f64;
    let (w, h) = (label + n * cell + 8.0, label + n * cell + 40.0);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<title>{}</title>\n<text x=\"8\" y=\"20\" font-weight=\"bold\">{}</text>\n",
        esc(title),
        esc(title)
    );
    let top = 32.0 + label;
    for (i, name) in names.iter().enumerate() {
        let c = label + i as f64 * cell + cell / 2.0;
        s += &format!(
            "<text x=\"{c}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            top - 8.0,
            esc(name)
        );
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            label - 8.0,
            top + i as f64 * cell + cell / 2.0 + 4.0,
            esc(name)
        );
    }
    for (i, row) in m.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let (x, y) = (label + j as f64 * cell, top + i as f64 * cell);
            let (fill, text) = match v {
                Some(r) => {
                    let a = r.abs().min(1.0);
                    let (cr, cg, cb) = if *r >= 0.0 {
                        (47.0, 111.0, 223.0)
                    } else {
                        (196.0, 50.0, 10.0)
                    };
                    let mix = |c: f64| (255.0 - a * (255.0 - c)).round();
                    (
                        format!("rgb({},{},{})", mix(cr), mix(cg), mix(cb)),
                        format!("{r:.2}"),
                    )
                }
                None => ("#eeeeee".to_string(), "–".to_string()),
            };
            s += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" stroke=\"#ffffff\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{text}</text>\n",
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
    }
    s += "</svg>\n";
    s
}
