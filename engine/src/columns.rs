//! Names of the columns the engine's tables share: the per-customer table
//! that `plan` builds and `rollup`, `score` and `uncertainty` read, and the
//! tables sources are registered as.

/// The entity key, cast to the common key type.
pub const KEY: &str = "__key";
/// The period's first day (`Date32`).
pub const PERIOD: &str = "__period";
/// The customer's score (Float64).
pub const SCORE: &str = "__score";
/// The customer's rollup weight (Float64).
pub const WEIGHT: &str = "__weight";
/// Whether the customer counts in rollups (score and weight not NULL,
/// weight > 0).
pub const INCLUDED: &str = "__included";

/// The table an experiment registers its cohort under
/// (`engine::experiment`): `__ckey` (the unit's key), `__arm` (text),
/// `__exposed` (the first exposure, a UTC timestamp) and `__ref` (whether
/// the arm is the reference population functions normalise against).
/// When it is registered, a period's population is the cohort's customers
/// first exposed before the period starts.
pub const COHORT_TABLE: &str = "croo_cohort";
/// The customer's arm in the per-customer table (with a cohort).
pub const ARM: &str = "__arm";
/// Whether the customer is in the reference arm (with a cohort).
pub const REFERENCE: &str = "__ref";

/// Column name of dimension `i` in the per-customer table.
pub fn dim_col(i: usize) -> String {
    format!("__dim_{i}")
}

/// Table name a source is registered under.
pub fn table_name(source: &str) -> String {
    format!("croo_src_{source}")
}

/// The column names of `schema` and their public names
/// ([`detail_names`]), in the schema's order.
pub fn detail_names_of(
    f: &formulas::Formula,
    schema: &datafusion::arrow::datatypes::Schema,
) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = schema.fields().iter().map(|c| c.name().clone()).collect();
    let public = detail_names(f, &names);
    (names, public)
}

/// The names the per-customer detail file (`detail.parquet`) gives the
/// columns of the per-customer table: the entity key under its source
/// column's name, `period`, each dimension under its name, `score`,
/// `rollup_weight`, `included`, `rows_<source>`; measures, derived values
/// and components keep their names. A name that a definition of the
/// formula already uses keeps its internal one (`docs/results-store.md`).
pub fn detail_names(f: &formulas::Formula, names: &[String]) -> Vec<String> {
    let key = f
        .file
        .entity()
        .map_or_else(|| "customer".to_string(), |e| e.key.value.clone());
    let public = |n: &str| -> Option<String> {
        Some(match n {
            KEY => key.clone(),
            PERIOD => "period".into(),
            SCORE => "score".into(),
            WEIGHT => "rollup_weight".into(),
            INCLUDED => "included".into(),
            _ => {
                if let Some(i) = n
                    .strip_prefix("__dim_")
                    .and_then(|i| i.parse::<usize>().ok())
                {
                    f.file.dimensions.get(i)?.name.value.clone()
                } else {
                    n.strip_prefix("__")?.to_string()
                }
            }
        })
    };
    let mut taken: std::collections::BTreeSet<String> = names
        .iter()
        .filter(|n| !n.starts_with("__"))
        .cloned()
        .collect();
    names
        .iter()
        .map(|n| match public(n) {
            Some(p) if !n.starts_with("__") => p,
            Some(p) if taken.insert(p.clone()) => p,
            _ => n.clone(),
        })
        .collect()
}

/// A column holding instants, as a UTC timestamp expression.
pub(crate) fn as_instant(
    column: &str,
    ty: &datafusion::arrow::datatypes::DataType,
) -> Option<datafusion::logical_expr::Expr> {
    use datafusion::arrow::datatypes::DataType;
    let c = datafusion::logical_expr::ident(column);
    match ty {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => Some(
            datafusion::prelude::cast(c, kernels::instant::instant_type()),
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Some(datafusion::prelude::cast(
                datafusion::prelude::cast(c, DataType::Utf8),
                kernels::instant::instant_type(),
            ))
        }
        _ => None,
    }
}

/// How a population function call is named in `fixed`: `minmax(margin)`.
pub fn population_key(func: &str, arg: &formulas::expr::Ast) -> String {
    format!("{func}({})", show(arg))
}

/// Formula syntax text of an expression.
#[recursive::recursive]
pub fn show(a: &formulas::expr::Ast) -> String {
    use formulas::expr::Ast;
    match a {
        Ast::Num(n) => format!("{n}"),
        Ast::Bool(b) => format!("{b}"),
        Ast::Ident(n, _) => n.clone(),
        Ast::Neg(x) => format!("-{}", show(x)),
        Ast::Not(x) => format!("!{}", show(x)),
        Ast::Bin(op, l, r) => format!("({} {} {})", show(l), op.symbol(), show(r)),
        Ast::Call(f, args, _) => format!(
            "{}({})",
            f.name(),
            args.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
    }
}
