//! Differential test: the compiled, vectorised expression against the
//! `evalexpr` reference interpreter, on many random expressions and Float
//! inputs. Where evalexpr gives a finite number the two must agree; where
//! the compiled expression gives NULL (division or modulo by zero) evalexpr
//! must have failed or given a non-finite number.
//!
//! The same expressions fused into one kernel (`croo_fused`,
//! [`kernels::fused::fuse`]) must give the unfused expression's result bit
//! for bit, also on NULLs, zeros of both signs, NaN and infinities.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::logical_expr::{Expr, ident};
use datafusion::prelude::SessionContext;
use formulas::compile::{Scope, compile};
use formulas::reference::Reference;
use kernels::fused::fuse;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const VARS: [&str; 3] = ["a", "b", "c"];

fn literal(r: &mut Rng) -> String {
    // always with a fractional part, so evalexpr reads a Float
    format!("{:.2}", r.float(0.1, 9.0))
}

/// An expression in croo's syntax and the same for the reference
/// interpreter, where `/` and `%` are `div`/`rem` (which fail on zero).
type Pair = (String, String);

fn same(s: String) -> Pair {
    (s.clone(), s)
}

fn num(r: &mut Rng, depth: u32) -> Pair {
    if depth == 0 || r.below(4) == 0 {
        return same(if r.below(3) == 0 {
            literal(r)
        } else {
            VARS[r.below(3) as usize].to_string()
        });
    }
    let d = depth - 1;
    let bin = |r: &mut Rng, op: &str| {
        let (a, b) = (num(r, d), num(r, d));
        (
            format!("({} {op} {})", a.0, b.0),
            format!("({} {op} {})", a.1, b.1),
        )
    };
    let call = |name: &str, args: Vec<Pair>| {
        let c: Vec<String> = args.iter().map(|a| a.0.clone()).collect();
        let e: Vec<String> = args.iter().map(|a| a.1.clone()).collect();
        (
            format!("{name}({})", c.join(", ")),
            format!("{name}({})", e.join(", ")),
        )
    };
    match r.below(12) {
        0 => bin(r, "+"),
        1 => bin(r, "-"),
        2 => bin(r, "*"),
        3 | 4 => {
            let (a, b) = (num(r, d), num(r, d));
            let (op, f) = if r.below(2) == 0 {
                ("/", "div")
            } else {
                ("%", "rem")
            };
            (
                format!("({} {op} {})", a.0, b.0),
                format!("{f}({}, {})", a.1, b.1),
            )
        }
        5 => {
            let a = num(r, d);
            let p = ["0.5", "2.0", "1.5"][r.below(3) as usize];
            (
                format!("(abs({}) ^ {p})", a.0),
                format!("(abs({}) ^ {p})", a.1),
            )
        }
        6 => {
            let args = vec![num(r, d), num(r, d)];
            call("min", args)
        }
        7 => {
            let args = vec![num(r, d), num(r, d), num(r, d)];
            call("max", args)
        }
        8 => {
            let f = ["abs", "floor", "ceil", "round"][r.below(4) as usize];
            let args = vec![num(r, d)];
            call(f, args)
        }
        9 => {
            let a = num(r, d);
            (format!("sqrt(abs({}))", a.0), format!("sqrt(abs({}))", a.1))
        }
        10 => {
            let args = vec![cond(r, d), num(r, d), num(r, d)];
            call("if", args)
        }
        _ => {
            let a = num(r, d);
            (format!("(-{})", a.0), format!("(-{})", a.1))
        }
    }
}

fn cond(r: &mut Rng, depth: u32) -> Pair {
    let op = ["<", "<=", ">", ">="][r.below(4) as usize];
    let (a, b) = (num(r, depth.min(1)), num(r, depth.min(1)));
    let c = (
        format!("{} {op} {}", a.0, b.0),
        format!("{} {op} {}", a.1, b.1),
    );
    match r.below(4) {
        0 => {
            let v = VARS[r.below(3) as usize];
            (
                format!("({} && {v} > 0.5)", c.0),
                format!("({} && {v} > 0.5)", c.1),
            )
        }
        1 => (format!("!({})", c.0), format!("!({})", c.1)),
        _ => c,
    }
}

struct Cols;

impl Scope for Cols {
    fn ident(&self, name: &str) -> Option<Expr> {
        Some(ident(name))
    }
    fn partition(&self) -> Vec<Expr> {
        Vec::new()
    }
}

/// Parses, compiles and evaluates formula syntax over every row of `batch`,
/// fused into `croo_fused` calls when `fused`.
async fn eval_as(
    ctx: &SessionContext,
    batch: &RecordBatch,
    text: &str,
    fused: bool,
) -> Float64Array {
    let ast = formulas::expr::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
    let mut expr = compile(&ast, &Cols).unwrap();
    let df = ctx.read_batch(batch.clone()).unwrap();
    if fused {
        expr = fuse(expr, df.schema()).unwrap();
    }
    let out = df
        .select(vec![
            datafusion::prelude::cast(expr, DataType::Float64).alias("v"),
        ])
        .unwrap()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let parts: Vec<&dyn Array> = out.iter().map(|b| b.column(0).as_ref()).collect();
    datafusion::arrow::compute::concat(&parts)
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone()
}

async fn eval(ctx: &SessionContext, batch: &RecordBatch, text: &str) -> Float64Array {
    eval_as(ctx, batch, text, false).await
}

/// The fused and the unfused evaluation of `text` give the same bits and
/// the same NULLs.
async fn assert_fused_same(ctx: &SessionContext, batch: &RecordBatch, text: &str) {
    let plain = eval_as(ctx, batch, text, false).await;
    let fused = eval_as(ctx, batch, text, true).await;
    assert_eq!(plain.len(), fused.len(), "{text}");
    for i in 0..plain.len() {
        assert_eq!(plain.is_null(i), fused.is_null(i), "{text} row {i}: NULL");
        if !plain.is_null(i) {
            assert_eq!(
                plain.value(i).to_bits(),
                fused.value(i).to_bits(),
                "{text} row {i}: {} vs {}",
                plain.value(i),
                fused.value(i)
            );
        }
    }
}

#[tokio::test]
#[allow(
    clippy::needless_range_loop,
    reason = "rows index three parallel columns"
)]
async fn compiled_agrees_with_evalexpr() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let rows = 64;
    let cols: Vec<Vec<f64>> = (0..3)
        .map(|_| {
            (0..rows)
                .map(|i| {
                    if i % 16 == 0 {
                        0.0
                    } else {
                        r.float(-10.0, 10.0)
                    }
                })
                .collect()
        })
        .collect();
    let schema = Arc::new(Schema::new(
        VARS.iter()
            .map(|v| Field::new(*v, DataType::Float64, false))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema,
        cols.iter()
            .map(|c| Arc::new(Float64Array::from(c.clone())) as _)
            .collect(),
    )
    .unwrap();
    let ctx = SessionContext::new();
    let (mut compared, mut nulls) = (0usize, 0usize);
    for case in 0..400 {
        let (text, reference_text) = num(&mut r, 4);
        let got = eval(&ctx, &batch, &text).await;
        assert_fused_same(&ctx, &batch, &text).await;
        let mut reference = Reference::new(&reference_text, &VARS).unwrap();
        for i in 0..rows {
            let want = reference.eval(&[cols[0][i], cols[1][i], cols[2][i]]);
            match want {
                Some(w) if w.is_finite() => {
                    assert!(
                        !got.is_null(i),
                        "case {case}: {text} row {i}: compiled NULL, evalexpr {w}"
                    );
                    let g = got.value(i);
                    assert!(
                        (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                        "case {case}: {text} row {i}: compiled {g}, evalexpr {w}"
                    );
                    compared += 1;
                }
                _ => {
                    if got.is_null(i) {
                        nulls += 1;
                    }
                }
            }
        }
    }
    // the test is only meaningful if most rows were compared
    assert!(compared > 400 * rows / 2, "only {compared} rows compared");
    assert!(nulls > 0, "division by zero never produced NULL");
}

/// FORMULA.md rule 3 and 4 on one row where `a = 3`, `b` is NULL and
/// `z = 0`; expected values worked out by hand.
#[tokio::test]
async fn null_and_zero_semantics_by_hand() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Float64, true),
        Field::new("b", DataType::Float64, true),
        Field::new("z", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Float64Array::from(vec![Some(3.0)])),
            Arc::new(Float64Array::from(vec![None::<f64>])),
            Arc::new(Float64Array::from(vec![Some(0.0)])),
        ],
    )
    .unwrap();
    let cases: &[(&str, Option<f64>)] = &[
        ("7 / 2", Some(3.5)),
        ("a / z", None),
        ("a % z", None),
        ("a / -z", None),
        ("-7 % a", Some(-1.0)),
        ("2 ^ 3 ^ 2", Some(64.0)),
        ("-a ^ 2", Some(-9.0)),
        ("a + b", None),
        ("min(a, b)", None),
        ("max(a, 1, 2)", Some(3.0)),
        ("clamp(a, 0, 1)", Some(1.0)),
        ("clamp(b, 0, 1)", None),
        ("goalpost(a, 1, 5)", Some(0.5)),
        ("goalpost(a, 5, 5)", None),
        ("goalpost(a, 4, 8)", Some(0.0)),
        ("if(b > 0, 1, 2)", Some(2.0)),
        ("if(a > 0, 1, 2)", Some(1.0)),
        ("if(b > 0 || a > 0, 1, 2)", Some(2.0)),
        ("if(!(b > 0), 1, 2)", Some(2.0)),
        ("round(2.5) + round(-2.5)", Some(0.0)),
        ("round(a + 0.5)", Some(4.0)),
        ("floor(-1.5) + ceil(1.2)", Some(0.0)),
        ("abs(-a) + sqrt(16) + ln(exp(2))", Some(9.0)),
        ("sqrt(b)", None),
    ];
    let ctx = SessionContext::new();
    for (text, want) in cases {
        for fused in [false, true] {
            let v = eval_as(&ctx, &batch, text, fused).await;
            let got = (!v.is_null(0)).then(|| v.value(0));
            assert_eq!(got, *want, "{text} (fused: {fused})");
        }
    }
}

/// Any expression of the syntax, for the fused-vs-unfused comparison
/// (no reference interpreter: NULLs and non-finite values are fine).
fn wide(r: &mut Rng, depth: u32) -> String {
    // 4 and -0.125 as divisors become multiplications by their reciprocals
    const LEAVES: [&str; 10] = ["a", "b", "c", "a", "b", "0", "0.5", "-2.25", "4", "-0.125"];
    if depth == 0 || r.below(5) == 0 {
        return LEAVES[r.below(LEAVES.len() as u64) as usize].to_string();
    }
    let d = depth - 1;
    match r.below(16) {
        0 => format!("({} + {})", wide(r, d), wide(r, d)),
        1 => format!("({} - {})", wide(r, d), wide(r, d)),
        2 => format!("({} * {})", wide(r, d), wide(r, d)),
        3 => format!("({} / {})", wide(r, d), wide(r, d)),
        4 => format!("({} % {})", wide(r, d), wide(r, d)),
        5 => format!("min({}, {})", wide(r, d), wide(r, d)),
        6 => format!("max({}, {}, {})", wide(r, d), wide(r, d), wide(r, d)),
        7 => format!("clamp({}, 0, 1)", wide(r, d)),
        8 => format!("goalpost({}, {}, 4)", wide(r, d), wide(r, d)),
        9 => format!("if({}, {}, {})", truth(r, d), wide(r, d), wide(r, d)),
        10 => format!("(-{})", wide(r, d)),
        11 => format!("sqrt(abs({}))", wide(r, d)),
        12 => format!("({} ^ 2)", wide(r, d)),
        13 => format!("abs({})", wide(r, d)),
        _ => format!("({} + {} * {})", wide(r, d), wide(r, d), wide(r, d)),
    }
}

fn truth(r: &mut Rng, depth: u32) -> String {
    let d = depth.saturating_sub(1);
    match if depth == 0 { 4 } else { r.below(5) } {
        0 => format!("({} && {})", truth(r, d), truth(r, d)),
        1 => format!("({} || {})", truth(r, d), truth(r, d)),
        2 => format!("!({})", truth(r, d)),
        _ => {
            let op = ["<", "<=", ">", ">=", "==", "!="][r.below(6) as usize];
            format!("{} {op} {}", wide(r, d), wide(r, d))
        }
    }
}

#[tokio::test]
async fn fused_matches_unfused_bit_for_bit() {
    let mut r = Rng(0xD1B5_4A32_D192_ED03);
    // more rows than one chunk, not a multiple of it
    let rows = kernels::fused::CHUNK * 2 + 37;
    let special = [
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1.0,
        0.5,
        -3.0,
    ];
    let col = |r: &mut Rng, nulls: bool| -> Float64Array {
        (0..rows)
            .map(|_| match r.below(10) {
                0 if nulls => None,
                1 | 2 => Some(special[r.below(special.len() as u64) as usize]),
                _ => Some(r.float(-5.0, 5.0)),
            })
            .collect()
    };
    let schema = Arc::new(Schema::new(
        VARS.iter()
            .map(|v| Field::new(*v, DataType::Float64, true))
            .collect::<Vec<_>>(),
    ));
    let (a, b, c) = (col(&mut r, true), col(&mut r, true), col(&mut r, false));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(a), Arc::new(b), Arc::new(c)]).unwrap();
    let ctx = SessionContext::new();
    let mut fused_calls = 0;
    for _ in 0..500 {
        let text = wide(&mut r, 4);
        let ast = formulas::expr::parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let df = ctx.read_batch(batch.clone()).unwrap();
        let e = fuse(compile(&ast, &Cols).unwrap(), df.schema()).unwrap();
        if format!("{e}").contains("croo_fused") {
            fused_calls += 1;
        }
        assert_fused_same(&ctx, &batch, &text).await;
    }
    assert!(
        fused_calls > 250,
        "only {fused_calls} of 500 expressions fused"
    );
}
