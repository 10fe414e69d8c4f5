//! The per-customer table an uncertainty analysis draws from: every
//! component under each of its declared alternatives (normalisation x
//! imputation), computed by the engine in one run of a variant formula
//! whose components are those variants, and a second run without the
//! measures' `winsorise` when `[score] alternatives.winsorise = [false]`.

use std::collections::HashMap;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type};
use formulas::{Component, ComponentAlternatives, Formula, Impute, Method, Normalise};

use crate::columns::{KEY, PERIOD, WEIGHT, dim_col};
use crate::error::{Error, Result};

/// One way of computing a component: a normalisation (`None`: the
/// expression's own) and an imputation.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub normalise: Option<Normalise>,
    pub impute: Option<Impute>,
}

/// The variants of a component: the nominal first, then every pairing of
/// the declared normalisations (its own included) with the declared
/// imputations (its own included), normalisation major.
pub fn of(c: &Component, own: Option<Normalise>) -> (Vec<Option<Normalise>>, Vec<Option<Impute>>) {
    let alt: &ComponentAlternatives = &c.alternatives;
    let mut normalise = vec![own];
    for n in &alt.normalise {
        if Some(*n) != own {
            normalise.push(Some(*n));
        }
    }
    let mut impute = vec![c.impute.clone()];
    for i in &alt.impute {
        if !impute.contains(i) {
            impute.push(i.clone());
        }
    }
    (normalise, impute)
}

/// The name an imputation is reported by.
pub fn impute_name(i: &Option<Impute>) -> String {
    match i {
        None => "none".into(),
        Some(Impute::Zero) => "zero".into(),
        Some(Impute::Mean) => "mean".into(),
        Some(Impute::Median) => "median".into(),
        Some(Impute::GroupMedian(d)) => format!("group_median({})", d.value),
    }
}

/// The name a method is reported by.
pub fn method_name(m: Method) -> &'static str {
    Method::ALL
        .iter()
        .find(|(_, x)| *x == m)
        .map_or("?", |(n, _)| *n)
}

/// The column of component `k`'s variant `j` in a variant run.
fn variant_col(k: usize, j: usize) -> String {
    format!("__alternative_{k}_{j}")
}

/// A formula whose components are every variant of `f`'s components
/// (`variants[k]`), combined by a plain arithmetic mean (the analysis
/// combines them itself), without `winsorise` when `unwinsorised`.
pub fn formula(f: &Formula, variants: &[Vec<Variant>], unwinsorised: bool) -> Formula {
    let mut v = f.clone();
    v.file.components.clear();
    v.components.clear();
    for (k, (c, ast)) in f.file.components.iter().zip(&f.components).enumerate() {
        for (j, variant) in variants[k].iter().enumerate() {
            let mut c = c.clone();
            c.name.value = variant_col(k, j);
            c.impute = variant.impute.clone();
            c.alternatives = ComponentAlternatives::default();
            v.file.components.push(c);
            v.components.push(match variant.normalise {
                Some(n) => ast.renormalised(n.func()),
                None => ast.clone(),
            });
        }
    }
    v.file.method = Method::Arithmetic;
    v.file.shift = 0.0;
    v.file.min_coverage = None;
    v.file.alternatives = Default::default();
    v.file.tests.clear();
    if unwinsorised {
        for m in &mut v.file.measures {
            m.winsorise = None;
        }
    }
    v
}

/// The customers of one period with their component variants.
#[derive(Debug, Default)]
pub struct Table {
    pub keys: Vec<String>,
    /// Index into `groups` of each customer.
    pub group: Vec<usize>,
    /// The groups' values, sorted (`None`: the whole population, or
    /// customers without a value of the dimension).
    pub groups: Vec<Option<String>>,
    /// `[state][customer]`: the rollup weight; customers with none or
    /// one <= 0 are never included.
    pub weight: Vec<Vec<f64>>,
    /// `[state][component][variant][customer]`; NaN where the customer
    /// has no value.
    pub values: Vec<Vec<Vec<Vec<f64>>>>,
}

fn column(b: &RecordBatch, name: &str) -> Result<std::sync::Arc<dyn Array>> {
    b.schema()
        .index_of(name)
        .map(|i| b.column(i).clone())
        .map_err(|_| Error::User(format!("internal: per-customer column `{name}` missing")))
}

fn floats(a: &dyn Array) -> Result<Vec<f64>> {
    let a = cast(a, &DataType::Float64).map_err(|e| Error::User(format!("internal: {e}")))?;
    let a = a.as_primitive::<Float64Type>();
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
        .collect())
}

impl Table {
    /// Adds the per-customer rows of `period` from a variant run as the
    /// next winsorisation state. The first state fixes the customers and
    /// their groups (dimension `by`); later ones are matched by key.
    pub fn add_state(
        &mut self,
        detail: &[RecordBatch],
        period: NaiveDate,
        by: Option<usize>,
        variants: &[Vec<Variant>],
    ) -> Result<()> {
        let first = self.values.is_empty();
        let mut keys = Vec::new();
        let mut groups = Vec::new();
        let mut weight = Vec::new();
        let mut values: Vec<Vec<Vec<f64>>> =
            variants.iter().map(|v| vec![Vec::new(); v.len()]).collect();
        for b in detail {
            let periods = column(b, PERIOD)?;
            let periods = periods.as_primitive::<Date32Type>();
            let rows: Vec<usize> = (0..b.num_rows())
                .filter(|r| periods.value_as_date(*r) == Some(period))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let key = cast(column(b, KEY)?.as_ref(), &DataType::Utf8)
                .map_err(|e| Error::User(format!("internal: {e}")))?;
            let key = key.as_string::<i32>();
            let dim = match by {
                Some(i) => Some(
                    cast(column(b, &dim_col(i))?.as_ref(), &DataType::Utf8)
                        .map_err(|e| Error::User(format!("internal: {e}")))?,
                ),
                None => None,
            };
            let w = floats(column(b, WEIGHT)?.as_ref())?;
            let cols: Vec<Vec<Vec<f64>>> = variants
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    (0..v.len())
                        .map(|j| floats(column(b, &variant_col(k, j))?.as_ref()))
                        .collect::<Result<_>>()
                })
                .collect::<Result<_>>()?;
            for r in rows {
                keys.push(key.value(r).to_string());
                groups.push(dim.as_ref().and_then(|d| {
                    let d = d.as_string::<i32>();
                    (!d.is_null(r)).then(|| d.value(r).to_string())
                }));
                weight.push(w[r]);
                for (k, vk) in cols.iter().enumerate() {
                    for (j, c) in vk.iter().enumerate() {
                        values[k][j].push(c[r]);
                    }
                }
            }
        }
        let order: Vec<usize> = if first {
            // Customers in key order: the analysis does not depend on the
            // order the engine returned them in.
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
            let mut names: Vec<Option<String>> = groups.clone();
            names.sort();
            names.dedup();
            self.group = order
                .iter()
                .map(|i| names.binary_search(&groups[*i]).unwrap_or(0))
                .collect();
            self.groups = names;
            self.keys = order.iter().map(|i| keys[*i].clone()).collect();
            order
        } else {
            let at: HashMap<&str, usize> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect();
            self.keys
                .iter()
                .map(|k| {
                    at.get(k.as_str()).copied().ok_or_else(|| {
                        Error::User(format!(
                            "internal: customer `{k}` is missing from the run without winsorisation"
                        ))
                    })
                })
                .collect::<Result<_>>()?
        };
        self.weight.push(order.iter().map(|i| weight[*i]).collect());
        self.values.push(
            values
                .iter()
                .map(|vk| {
                    vk.iter()
                        .map(|c| order.iter().map(|i| c[*i]).collect())
                        .collect()
                })
                .collect(),
        );
        Ok(())
    }
}
