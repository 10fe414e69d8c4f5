//! Checks of a measure's SQL (`expr` and `filter`) that need no data: it
//! parses, every column sits inside an aggregate, and aggregates do not nest.

use std::collections::BTreeSet;
use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Spanned, visit_expressions};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Location;

/// Names (and aliases) of DataFusion's aggregate functions, lower case.
static AGGREGATES: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    let mut out = BTreeSet::new();
    for f in datafusion::functions_aggregate::all_default_aggregate_functions() {
        out.insert(f.name().to_lowercase());
        out.extend(f.aliases().iter().map(|a| a.to_lowercase()));
    }
    out
});

pub fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name.to_lowercase())
}

/// Aggregates whose result is never a number, whatever their argument
/// (lists and text). Others (`min`, `max`, `first_value`, ...) are numbers
/// when their argument is; that is checked against the source's schema.
pub fn is_never_a_number(name: &str) -> bool {
    matches!(
        name.to_lowercase().as_str(),
        "array_agg" | "string_agg" | "listagg" | "group_concat"
    )
}

/// A problem in a measure's SQL, with a byte range inside the SQL text.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlProblem {
    pub message: String,
    pub span: Range<usize>,
    pub label: String,
}

/// The columns a SQL expression reads, with their byte ranges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlColumns {
    pub columns: Vec<(String, Range<usize>)>,
    /// Aggregate calls (name, byte range), outermost first.
    pub aggregates: Vec<(String, Range<usize>)>,
}

fn offset(text: &str, loc: Location) -> usize {
    if loc.line == 0 {
        return 0;
    }
    let mut line = 1;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if line == loc.line {
            break;
        }
        if c == '\n' {
            line += 1;
            start = i + 1;
        }
    }
    text[start..]
        .char_indices()
        .nth((loc.column as usize).saturating_sub(1))
        .map(|(i, _)| start + i)
        .unwrap_or(text.len())
}

fn range_of(text: &str, e: &SqlExpr) -> Range<usize> {
    let s = e.span();
    let a = offset(text, s.start);
    let b = offset(text, s.end).max(a);
    a..b
}

fn parse_sql(text: &str) -> Result<SqlExpr, SqlProblem> {
    if let Err(e) = crate::limits::check_sql(text) {
        return Err(SqlProblem {
            message: format!("{} ({})", e.message, e.help),
            span: e.span,
            label: "over the limit".into(),
        });
    }
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            p.expect_token(&datafusion::sql::sqlparser::tokenizer::Token::EOF)?;
            Ok(e)
        })
        .map_err(|e| SqlProblem {
            message: format!(
                "invalid SQL: {}",
                e.to_string().trim_start_matches("sql parser error: ")
            ),
            span: 0..text.len(),
            label: "cannot parse this".into(),
        })
}

fn column_name(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Identifier(i) => Some(if i.quote_style.is_some() {
            i.value.clone()
        } else {
            i.value.to_lowercase()
        }),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(|i| {
            if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_lowercase()
            }
        }),
        _ => None,
    }
}

/// The whole text of a function call that starts at `r.start`: through
/// the parenthesis matching the first `(` (sqlparser's span of a call may
/// stop before its arguments end).
fn call_extent(text: &str, r: Range<usize>) -> Range<usize> {
    let Some(open) = text[r.start..].find('(').map(|i| r.start + i) else {
        return r;
    };
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, ch) in text[open..].char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(ch),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return r.start..open + i + 1;
                }
            }
            _ => {}
        }
    }
    r
}

/// Checks a measure `expr`: returns the columns it reads, or its problems.
pub fn check_measure_expr(text: &str) -> Result<SqlColumns, Vec<SqlProblem>> {
    let expr = parse_sql(text).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    let mut aggregates: Vec<Range<usize>> = Vec::new();
    let mut columns = SqlColumns::default();
    let _ = visit_expressions(&expr, |e| {
        match e {
            SqlExpr::Function(f) => {
                let name = f.name.to_string().to_lowercase();
                let r = range_of(text, e);
                if f.over.is_some() {
                    problems.push(SqlProblem {
                        message: "window functions (`OVER`) are not allowed in a measure".into(),
                        span: r.clone(),
                        label: "window function".into(),
                    });
                }
                if is_aggregate(&name) {
                    if aggregates
                        .iter()
                        .any(|a| a.start <= r.start && r.end <= a.end)
                    {
                        problems.push(SqlProblem {
                            message: format!("aggregate `{name}` is nested in another aggregate"),
                            span: r.clone(),
                            label: "nested aggregate".into(),
                        });
                    }
                    columns
                        .aggregates
                        .push((name.clone(), call_extent(text, r.clone())));
                    aggregates.push(r);
                }
            }
            SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) => {
                if let Some(c) = column_name(e) {
                    columns.columns.push((c, range_of(text, e)));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    if aggregates.is_empty() {
        problems.push(SqlProblem {
            message: "a measure `expr` must aggregate: no aggregate function found".into(),
            span: 0..text.len(),
            label: "not an aggregate".into(),
        });
    } else {
        for (c, r) in &columns.columns {
            if !aggregates
                .iter()
                .any(|a| a.start <= r.start && r.end <= a.end)
            {
                problems.push(SqlProblem {
                    message: format!("column `{c}` is used outside an aggregate"),
                    span: r.clone(),
                    label: "wrap it in an aggregate, e.g. sum(...) or max(...)".into(),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(columns)
    } else {
        Err(problems)
    }
}

/// Checks a measure `filter`: a row-level SQL boolean without aggregates.
pub fn check_filter(text: &str) -> Result<SqlColumns, Vec<SqlProblem>> {
    let expr = parse_sql(text).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    let mut columns = SqlColumns::default();
    let _ = visit_expressions(&expr, |e| {
        match e {
            SqlExpr::Function(f) if is_aggregate(&f.name.to_string()) => {
                problems.push(SqlProblem {
                    message: "a `filter` applies to single rows and cannot aggregate".into(),
                    span: range_of(text, e),
                    label: "aggregate in a filter".into(),
                });
            }
            SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) => {
                if let Some(c) = column_name(e) {
                    columns.columns.push((c, range_of(text, e)));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    if problems.is_empty() {
        Ok(columns)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_are_found_with_their_arguments() {
        let text = "sum(amount) / count(*) + max(CASE WHEN x = ')' THEN (1) END)";
        let c = check_measure_expr(text).unwrap();
        let found: Vec<&str> = c.aggregates.iter().map(|(_, r)| &text[r.clone()]).collect();
        assert_eq!(
            found,
            [
                "sum(amount)",
                "count(*)",
                "max(CASE WHEN x = ')' THEN (1) END)"
            ]
        );
    }

    #[test]
    fn accepts_aggregates_with_outer_arithmetic() {
        let c = check_measure_expr("sum(handle_seconds * cost_per_second) / 60").unwrap();
        let names: Vec<&str> = c.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["handle_seconds", "cost_per_second"]);
        assert_eq!(c.columns[0].1, 4..18);
        check_measure_expr("count(*)").unwrap();
        check_measure_expr("avg(CASE WHEN channel = 'phone' THEN 1.0 ELSE 0.0 END)").unwrap();
        check_measure_expr("count(DISTINCT product_id)").unwrap();
    }

    #[test]
    fn rejects_bare_columns_and_nesting() {
        let e = check_measure_expr("amount + 1").unwrap_err();
        assert!(e[0].message.contains("must aggregate"));
        let e = check_measure_expr("sum(amount) + fee").unwrap_err();
        assert_eq!(e[0].span, 14..17);
        let e = check_measure_expr("sum(max(amount))").unwrap_err();
        assert!(e[0].message.contains("nested"), "{e:?}");
        assert!(check_measure_expr("sum(amount").is_err());
    }

    #[test]
    fn filter_has_no_aggregates() {
        check_filter("channel <> 'test' AND NOT is_test").unwrap();
        assert!(check_filter("sum(x) > 1").is_err());
    }
}
