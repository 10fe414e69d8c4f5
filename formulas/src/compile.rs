//! Compiles the formula syntax into vectorised DataFusion expressions with
//! the semantics of FORMULA.md: Float64 arithmetic, `x / 0` and `x % 0` are
//! NULL, NULL propagates through every operator and function (also `min`,
//! `max`, `clamp` and `&&`/`||`), `if` takes the else branch on NULL.
//!
//! Besides DataFusion built-ins, only the functions of [`kernels`]
//! are used (exact sums, so that population statistics are the same bits on
//! any number of threads); plans serialise by name (Ballista) with that one
//! registry.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::functions::math::expr_fn as math;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_window::rank::percent_rank_udwf;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, ExprSchemable as _, WindowFrame, WindowFrameBound, WindowFrameUnits, lit, when,
};
use datafusion::prelude::cast;

use crate::expr::{Ast, BinOp, Func};
use kernels::strict;
use kernels::sum::{sum_udaf, var_pop_udaf};

/// What an expression can refer to while it is compiled.
pub trait Scope {
    /// The column holding a named value (measure, derived value or
    /// component), as a Float64 expression.
    fn ident(&self, name: &str) -> Option<Expr>;

    /// Columns that partition the population: one partition is one period.
    fn partition(&self) -> Vec<Expr>;

    /// A boolean column marking the customers population functions are
    /// normalised against (an experiment's control arm); `None`: all of
    /// the period's population.
    fn reference(&self) -> Option<Expr> {
        None
    }

    /// Statistics a population function takes from elsewhere (another
    /// period's population) instead of a window over this one.
    fn fixed(&self, _f: Func, _arg: &Ast) -> Option<Fixed> {
        None
    }
}

/// A population function's statistics, given: `minmax` takes `min` and
/// `max`, `zscore` `mean` and the population standard deviation `sd`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fixed {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub sd: f64,
}

/// `minmax` and `zscore` of `x` by given statistics; `pct_rank` needs the
/// reference's values, not statistics, and is refused.
pub fn fixed_population(f: Func, x: Expr, s: Fixed) -> Result<Expr> {
    match f {
        Func::MinMax if s.max == s.min => when(x.is_null(), null_f64()).otherwise(lit(0.5)),
        Func::MinMax => Ok(when(x.clone().is_null(), null_f64())
            .otherwise((f64c(x) - lit(s.min)) / lit(s.max - s.min))?),
        Func::ZScore if s.sd == 0.0 => when(x.is_null(), null_f64()).otherwise(lit(0.0)),
        Func::ZScore => {
            Ok(when(x.clone().is_null(), null_f64())
                .otherwise((f64c(x) - lit(s.mean)) / lit(s.sd))?)
        }
        other => plan_err!(
            "`{}` cannot be normalised by another period's statistics (it ranks against the reference's values): use the control arm as the reference",
            other.name()
        ),
    }
}

/// Compiles `ast` in `scope`. Population functions become window
/// expressions partitioned by [`Scope::partition`].
pub fn compile(ast: &Ast, scope: &dyn Scope) -> Result<Expr> {
    Compiler { scope }.expr(ast)
}

struct Compiler<'a> {
    scope: &'a dyn Scope,
}

fn null_f64() -> Expr {
    lit(datafusion::scalar::ScalarValue::Float64(None))
}

fn f64c(e: Expr) -> Expr {
    cast(e, DataType::Float64)
}

/// `l / r` and `l % r` with a zero divisor (0 or -0) giving NULL.
fn safe_div(l: Expr, r: Expr, modulo: bool) -> Result<Expr> {
    let (l, r) = (f64c(l), f64c(r));
    Ok(if modulo {
        strict::modulo(l, r)
    } else {
        strict::div(l, r)
    })
}

fn window(
    fun: impl Into<datafusion::logical_expr::expr::WindowFunctionDefinition>,
    args: Vec<Expr>,
    partition: Vec<Expr>,
) -> Expr {
    let mut w = WindowFunction::new(fun, args);
    w.params.partition_by = partition;
    Expr::WindowFunction(Box::new(w))
}

/// A population function over one period's population as window
/// expressions, skipping customers whose argument is NULL.
pub fn window_population(f: Func, x: Expr, partition: Vec<Expr>) -> Result<Expr> {
    window_population_against(f, x, partition, None)
}

/// The same with the statistics taken over the customers `reference`
/// marks only (every customer is normalised, by the reference's
/// statistics): `minmax` by the reference's min and max, `zscore` by its
/// mean and population standard deviation, `pct_rank` as the share of the
/// reference below the customer's value, `#(r < x) / (n_ref - 1)` for a
/// reference customer (its percent rank among the reference) and
/// `#(r < x) / n_ref` for another.
pub fn window_population_against(
    f: Func,
    x: Expr,
    partition: Vec<Expr>,
    reference: Option<Expr>,
) -> Result<Expr> {
    let Some(reference) = reference else {
        return whole_population(f, x, partition);
    };
    let is_ref = reference.is_true();
    let xr = when(is_ref.clone(), x.clone()).otherwise(null_f64())?;
    match f {
        Func::MinMax | Func::ZScore => whole_population_of(f, x, xr, partition),
        Func::PctRank => {
            let one = |c: Expr| when(c, lit(1.0)).otherwise(lit(0.0));
            let counted = one(is_ref.clone().and(x.clone().is_not_null()))?;
            let n_ref = window(sum_udaf(), vec![counted.clone()], partition.clone());
            // References at or below x (the default frame with an order:
            // up to the last peer), less those equal to x (its peers), in
            // one window over the period ordered by x.
            let ordered = |frame: WindowFrame| {
                let mut w = WindowFunction::new(sum_udaf(), vec![counted.clone()]);
                w.params.partition_by = partition.clone();
                w.params.order_by = vec![x.clone().sort(true, false)];
                w.params.window_frame = frame;
                Expr::WindowFunction(Box::new(w))
            };
            let at_or_below = ordered(WindowFrame::new(Some(false)));
            let equal = ordered(WindowFrame::new_bounds(
                WindowFrameUnits::Range,
                WindowFrameBound::CurrentRow,
                WindowFrameBound::CurrentRow,
            ));
            let below = at_or_below - equal;
            let den = n_ref - one(is_ref)?;
            when(x.is_null(), null_f64())
                .when(den.clone().lt_eq(lit(0.0)), lit(0.0))
                .otherwise(below / den)
        }
        other => plan_err!("`{}` is not a population function", other.name()),
    }
}

fn whole_population(f: Func, x: Expr, partition: Vec<Expr>) -> Result<Expr> {
    match f {
        Func::MinMax | Func::ZScore => whole_population_of(f, x.clone(), x, partition),
        _ => whole_population_rank(f, x, partition),
    }
}

/// `minmax` and `zscore` of `x` with the statistics of `stats` (`x`
/// itself, or its values in a reference).
fn whole_population_of(f: Func, x: Expr, stats: Expr, partition: Vec<Expr>) -> Result<Expr> {
    match f {
        Func::MinMax => {
            let mn = window(min_udaf(), vec![stats.clone()], partition.clone());
            let mx = window(max_udaf(), vec![stats], partition);
            when(x.clone().is_null(), null_f64())
                .when(mx.clone().eq(mn.clone()), lit(0.5))
                .otherwise((x - mn.clone()) / (mx - mn))
        }
        Func::ZScore => {
            // Exact sums: the same bits whatever the row order.
            let s64 = f64c(stats);
            let sum = window(sum_udaf(), vec![s64.clone()], partition.clone());
            let n = window(count_udaf(), vec![s64.clone()], partition.clone());
            let mean = sum / f64c(n);
            let sd = math::sqrt(window(var_pop_udaf(), vec![s64], partition));
            when(x.clone().is_null(), null_f64())
                .when(sd.clone().eq(lit(0.0)), lit(0.0))
                .otherwise((x - mean) / sd)
        }
        other => plan_err!("`{}` is not a population function", other.name()),
    }
}

fn whole_population_rank(f: Func, x: Expr, partition: Vec<Expr>) -> Result<Expr> {
    match f {
        Func::PctRank => {
            let mut by = partition;
            by.push(x.clone().is_null());
            let mut w = WindowFunction::new(percent_rank_udwf(), vec![]);
            w.params.partition_by = by;
            w.params.order_by = vec![x.clone().sort(true, false)];
            when(x.is_null(), null_f64()).otherwise(Expr::WindowFunction(Box::new(w)))
        }
        other => plan_err!("`{}` is not a population function", other.name()),
    }
}

impl Compiler<'_> {
    #[recursive::recursive]
    fn expr(&self, a: &Ast) -> Result<Expr> {
        Ok(match a {
            Ast::Num(n) => lit(*n),
            Ast::Bool(b) => lit(*b),
            Ast::Ident(name, _) => match self.scope.ident(name) {
                Some(e) => e,
                None => return plan_err!("unknown identifier `{name}`"),
            },
            Ast::Neg(x) => Expr::Negative(Box::new(self.expr(x)?)),
            Ast::Not(x) => !self.expr(x)?,
            Ast::Bin(op, l, r) => {
                let (l, r) = (self.expr(l)?, self.expr(r)?);
                match op {
                    BinOp::Add => l + r,
                    BinOp::Sub => l - r,
                    BinOp::Mul => l * r,
                    BinOp::Div => safe_div(l, r, false)?,
                    BinOp::Mod => safe_div(l, r, true)?,
                    BinOp::Pow => strict::pow(f64c(l), f64c(r)),
                    BinOp::Eq => l.eq(r),
                    BinOp::Neq => l.not_eq(r),
                    BinOp::Lt => l.lt(r),
                    BinOp::Le => l.lt_eq(r),
                    BinOp::Gt => l.gt(r),
                    BinOp::Ge => l.gt_eq(r),
                    BinOp::And => strict::and(l, r),
                    BinOp::Or => strict::or(l, r),
                }
            }
            Ast::Call(f, args, _) => self.call(*f, args)?,
        })
    }

    fn call(&self, f: Func, args: &[Ast]) -> Result<Expr> {
        if f.is_population() {
            let x = self.expr(&args[0])?;
            if let Some(s) = self.scope.fixed(f, &args[0]) {
                return fixed_population(f, x, s);
            }
            return window_population_against(f, x, self.scope.partition(), self.scope.reference());
        }
        let a: Vec<Expr> = args.iter().map(|x| self.expr(x)).collect::<Result<_>>()?;
        Ok(match f {
            Func::Min => strict::least(a.into_iter().map(f64c).collect()),
            Func::Max => strict::greatest(a.into_iter().map(f64c).collect()),
            Func::Abs => math::abs(a[0].clone()),
            Func::Floor => math::floor(a[0].clone()),
            Func::Ceil => math::ceil(a[0].clone()),
            Func::Round => math::round(vec![a[0].clone()]),
            Func::Sqrt => strict::sqrt(f64c(a[0].clone())),
            Func::Ln => strict::ln(f64c(a[0].clone())),
            Func::Exp => math::exp(a[0].clone()),
            Func::Clamp => clamp(a[0].clone(), a[1].clone(), a[2].clone())?,
            Func::Goalpost => {
                let (x, lo, hi) = (a[0].clone(), a[1].clone(), a[2].clone());
                let ratio = safe_div(x - lo.clone(), hi - lo, false)?;
                clamp(ratio, lit(0.0), lit(1.0))?
            }
            Func::If => strict::if_then(a[0].clone(), a[1].clone(), a[2].clone()),
            Func::Coalesce => datafusion::functions::core::expr_fn::coalesce(a),
            Func::IsNull => a[0].clone().is_null(),
            Func::MinMax | Func::ZScore | Func::PctRank => unreachable_population()?,
        })
    }
}

fn unreachable_population() -> Result<Expr> {
    datafusion::common::internal_err!("population functions are compiled separately")
}

fn clamp(x: Expr, lo: Expr, hi: Expr) -> Result<Expr> {
    // NULL when any of the three is NULL: each step is NULL-strict.
    Ok(strict::least(vec![
        strict::greatest(vec![f64c(x), f64c(lo)]),
        f64c(hi),
    ]))
}

/// The Arrow type of an expression in a schema; used by tests.
pub fn expr_type(e: &Expr, schema: &datafusion::common::DFSchema) -> Result<DataType> {
    e.get_type(schema)
}
