//! `croo_fused(program, args...)`: a whole formula expression evaluated as
//! one vectorised kernel instead of one arrow kernel per operator.
//!
//! A compiled formula is a tree of DataFusion expressions: `+`, `*`,
//! comparisons, `croo_div`, `croo_if`, `croo_least`, ... Evaluated as it is,
//! every operator is one kernel that reads its inputs' whole batch and
//! writes a new batch-sized buffer (8192 or 32768 rows): the time goes to
//! memory traffic and allocation, not arithmetic. [`fuse`] replaces each
//! largest subtree of such operators (two or more) by one call of
//! `croo_fused`, whose first argument is a literal program (a straight-line
//! list of instructions, text) and whose other arguments are the subtree's
//! leaves (columns, and anything it does not fuse: windows, `power`, casts
//! of other types, ...). The kernel runs the program over chunks of
//! [`CHUNK`] rows whose registers stay in the CPU's caches; each
//! instruction is one tight loop the compiler vectorises, and the next
//! chunk's inputs are prefetched while one computes.
//!
//! **Semantics are those of the unfused expression, bit for bit** (tested
//! in `tests/differential.rs` on random expressions with NULLs, zeros, -0,
//! NaN and infinities): Float64 arithmetic; NULL when any operand is NULL;
//! `croo_div`/`croo_mod` NULL on a zero divisor; comparisons as
//! DataFusion's: -0 made 0, then IEEE total order (`NaN = NaN`, NaN above
//! infinity);
//! `croo_and`/`croo_or` NULL when either side is; `NOT` keeps NULL;
//! `croo_if` takes the else branch on a false or NULL condition;
//! `croo_least`/`croo_greatest` in total order. Booleans are held as 0.0
//! and 1.0 inside the kernel.
//!
//! Ballista: the call serialises as a function name and a string literal
//! like every other call, and the function is in croo's one registry
//! ([`crate::register`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable as _, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

use crate::strict::order_key as key;

/// The function's name in the registry.
pub const NAME: &str = "croo_fused";

/// Rows per chunk: 1024 rows of every register (8 KiB each) stay in the
/// L2 cache. Measured on the formula benchmark (rows/s, columns streamed
/// from memory / batch in the caches), without prefetching: 512: 93 M /
/// 197 M, 1024: 112 M / 205 M, 2048: 115 M / 179 M, 4096: 117 M / 178 M
/// (128 was slower than 512); with it: 512: 131 M / 186 M, 1024: 146 M /
/// 198 M, 2048: 128 M / 175 M.
pub const CHUNK: usize = 1024;

/// How far ahead of the chunk being computed its Float64 inputs are
/// prefetched (into L2, a share before each instruction). A chunk of a
/// column is two 4 KiB pages, and the hardware's prefetchers stop at each
/// page: without this, every chunk began by waiting for memory. Measured
/// with 1024-row chunks: 112 → 146 M rows/s streamed (1 chunk ahead; 2:
/// 138 M; into L1: 143 M and slower on cached batches).
const PREFETCH_AHEAD: usize = CHUNK;

/// The type of a value in a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    F64,
    Bool,
}

impl Ty {
    fn of(t: &DataType) -> Option<Ty> {
        match t {
            DataType::Float64 => Some(Ty::F64),
            DataType::Boolean => Some(Ty::Bool),
            _ => None,
        }
    }

    fn letter(self) -> char {
        match self {
            Ty::F64 => 'f',
            Ty::Bool => 'b',
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Ty::F64 => DataType::Float64,
            Ty::Bool => DataType::Boolean,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Neg,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Not,
    If,
    Least,
    Greatest,
}

const OPS: [Op; 18] = [
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::Div,
    Op::Mod,
    Op::Neg,
    Op::Lt,
    Op::Le,
    Op::Gt,
    Op::Ge,
    Op::Eq,
    Op::Ne,
    Op::And,
    Op::Or,
    Op::Not,
    Op::If,
    Op::Least,
    Op::Greatest,
];

impl Op {
    fn mnemonic(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Mod => "mod",
            Op::Neg => "neg",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::And => "and",
            Op::Or => "or",
            Op::Not => "not",
            Op::If => "if",
            Op::Least => "least",
            Op::Greatest => "greatest",
        }
    }

    fn arity(self) -> usize {
        match self {
            Op::Neg | Op::Not => 1,
            Op::If => 3,
            _ => 2,
        }
    }

    /// The type of the result.
    fn ty(self) -> Ty {
        match self {
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne | Op::And | Op::Or | Op::Not => {
                Ty::Bool
            }
            _ => Ty::F64,
        }
    }

    /// The type of operand `i`.
    fn operand(self, i: usize) -> Ty {
        match self {
            Op::And | Op::Or | Op::Not => Ty::Bool,
            Op::If if i == 0 => Ty::Bool,
            _ => Ty::F64,
        }
    }
}

/// Where an instruction reads a value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Operand {
    /// Argument `i` of the call (after the program).
    Arg(usize),
    /// A constant (booleans as 0.0 and 1.0).
    Const(f64),
    /// The result of instruction `i`.
    Reg(usize),
}

#[derive(Clone, Debug, PartialEq)]
struct Instr {
    op: Op,
    operands: Vec<Operand>,
}

/// A straight-line program: its arguments' types and its instructions; the
/// last instruction's result is the function's result.
///
/// Text form: `args=ffb;add a0 a1;lt r0 c3ff0000000000000;if r1 r0 a0`:
/// `aN` is argument N, `rN` the result of instruction N, `c` and 16 hex
/// digits a constant's IEEE 754 bits (exact).
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    args: Vec<Ty>,
    code: Vec<Instr>,
    /// The buffer each instruction writes: a result's buffer is reused once
    /// its last reader has run, so a chunk's working set stays small.
    slot: Vec<usize>,
    slots: usize,
}

impl Program {
    fn text(&self) -> String {
        let mut s = String::from("args=");
        s.extend(self.args.iter().map(|t| t.letter()));
        for i in &self.code {
            s.push(';');
            s.push_str(i.op.mnemonic());
            for o in &i.operands {
                match o {
                    Operand::Arg(k) => s.push_str(&format!(" a{k}")),
                    Operand::Reg(k) => s.push_str(&format!(" r{k}")),
                    Operand::Const(c) => s.push_str(&format!(" c{:016x}", c.to_bits())),
                }
            }
        }
        s
    }

    /// Reads and checks a program's text (indices in range, types right).
    pub fn parse(text: &str) -> Result<Program> {
        let mut parts = text.split(';');
        let Some(args) = parts.next().and_then(|h| h.strip_prefix("args=")) else {
            return plan_err!("{NAME}: a program starts with `args=`");
        };
        let args: Vec<Ty> = args
            .chars()
            .map(|c| match c {
                'f' => Ok(Ty::F64),
                'b' => Ok(Ty::Bool),
                other => plan_err!("{NAME}: unknown argument type `{other}`"),
            })
            .collect::<Result<_>>()?;
        let mut code: Vec<Instr> = Vec::new();
        for ins in parts {
            let mut words = ins.split(' ');
            let m = words.next().unwrap_or("");
            let Some(op) = OPS.iter().copied().find(|o| o.mnemonic() == m) else {
                return plan_err!("{NAME}: unknown instruction `{m}`");
            };
            let mut operands = Vec::new();
            for (i, w) in words.enumerate() {
                let num = |w: &str| w[1..].parse::<usize>().ok();
                let (o, ty) = match w.as_bytes().first() {
                    Some(b'a') => match num(w).filter(|k| *k < args.len()) {
                        Some(k) => (Operand::Arg(k), Some(args[k])),
                        None => return plan_err!("{NAME}: bad argument `{w}`"),
                    },
                    Some(b'r') => match num(w).filter(|k| *k < code.len()) {
                        Some(k) => (Operand::Reg(k), Some(code[k].op.ty())),
                        None => return plan_err!("{NAME}: bad register `{w}`"),
                    },
                    Some(b'c') if w.len() == 17 => match u64::from_str_radix(&w[1..], 16) {
                        Ok(bits) => (Operand::Const(f64::from_bits(bits)), None),
                        Err(_) => return plan_err!("{NAME}: bad constant `{w}`"),
                    },
                    _ => return plan_err!("{NAME}: bad operand `{w}`"),
                };
                if ty.is_some_and(|t| t != op.operand(i)) {
                    return plan_err!("{NAME}: operand {i} of `{ins}` has the wrong type");
                }
                operands.push(o);
            }
            if operands.len() != op.arity() {
                return plan_err!("{NAME}: `{ins}` takes {} operands", op.arity());
            }
            code.push(Instr { op, operands });
        }
        if code.is_empty() {
            return plan_err!("{NAME}: an empty program");
        }
        Ok(Program::new(args, code))
    }

    fn new(args: Vec<Ty>, code: Vec<Instr>) -> Program {
        let mut last_read: Vec<usize> = (0..code.len()).collect();
        for (j, ins) in code.iter().enumerate() {
            for o in &ins.operands {
                if let Operand::Reg(r) = o {
                    last_read[*r] = j;
                }
            }
        }
        // The result is read after the last instruction.
        if let Some(l) = last_read.last_mut() {
            *l = usize::MAX;
        }
        let (mut slot, mut free, mut slots) = (Vec::with_capacity(code.len()), Vec::new(), 0);
        for (j, ins) in code.iter().enumerate() {
            let s = free.pop().unwrap_or_else(|| {
                slots += 1;
                slots - 1
            });
            slot.push(s);
            // Operands whose last reader is this instruction free their
            // buffer for the next one (not this one: it reads them while
            // it writes).
            for o in &ins.operands {
                if let Operand::Reg(r) = o
                    && last_read[*r] == j
                    && !free.contains(&slot[*r])
                {
                    free.push(slot[*r]);
                }
            }
            if last_read[j] == j {
                free.push(s);
            }
        }
        Program {
            args,
            code,
            slot,
            slots,
        }
    }

    fn ty(&self) -> Ty {
        self.code.last().map_or(Ty::F64, |i| i.op.ty())
    }
}

// ---------------------------------------------------------------------------
// Fusing an expression
// ---------------------------------------------------------------------------

/// Replaces every largest subtree of fusable operators (two or more) in `e`
/// by one `croo_fused` call. `schema` is the schema `e` is evaluated in
/// (the types of the leaves decide what fuses: Float64 and Boolean only).
/// Expressions with nothing to fuse come back unchanged.
pub fn fuse(e: Expr, schema: &DFSchema) -> Result<Expr> {
    if fusable(&e, schema).is_some() {
        let mut b = Builder {
            schema,
            args: Vec::new(),
            tys: Vec::new(),
            code: Vec::new(),
            memo: HashMap::new(),
        };
        let root = b.build(&e)?;
        if b.code.len() >= 2 && root == Operand::Reg(b.code.len() - 1) {
            let program = Program::new(b.tys, b.code);
            let mut call = vec![lit(program.text())];
            call.extend(b.args);
            return Ok(udf().call(call));
        }
    }
    e.map_children(|c| fuse(c, schema).map(Transformed::yes))
        .map(|t| t.data)
}

fn ty_in(e: &Expr, schema: &DFSchema) -> Option<Ty> {
    e.get_type(schema).ok().as_ref().and_then(Ty::of)
}

/// `e` without casts to Float64 of what is already Float64.
fn strip<'a>(mut e: &'a Expr, schema: &DFSchema) -> &'a Expr {
    while let Expr::Cast(Cast { expr, field }) = e
        && *field.data_type() == DataType::Float64
        && ty_in(expr, schema) == Some(Ty::F64)
    {
        e = expr;
    }
    e
}

/// The operator at the root of `e` and its operands, when it fuses: a
/// known operator whose operands (and result) have the types it takes.
fn fusable<'a>(e: &'a Expr, schema: &DFSchema) -> Option<(Op, Vec<&'a Expr>)> {
    let e = strip(e, schema);
    let (op, kids): (Op, Vec<&Expr>) = match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let op = match op {
                Operator::Plus => Op::Add,
                Operator::Minus => Op::Sub,
                Operator::Multiply => Op::Mul,
                Operator::Lt => Op::Lt,
                Operator::LtEq => Op::Le,
                Operator::Gt => Op::Gt,
                Operator::GtEq => Op::Ge,
                Operator::Eq => Op::Eq,
                Operator::NotEq => Op::Ne,
                _ => return None,
            };
            (op, vec![left.as_ref(), right.as_ref()])
        }
        Expr::Negative(x) => (Op::Neg, vec![x.as_ref()]),
        Expr::Not(x) => (Op::Not, vec![x.as_ref()]),
        Expr::ScalarFunction(ScalarFunction { func, args }) => {
            let op = match func.name() {
                "croo_div" => Op::Div,
                "croo_mod" => Op::Mod,
                "croo_and" => Op::And,
                "croo_or" => Op::Or,
                "croo_if" => Op::If,
                "croo_least" if args.len() >= 2 => Op::Least,
                "croo_greatest" if args.len() >= 2 => Op::Greatest,
                _ => return None,
            };
            if !matches!(op, Op::Least | Op::Greatest) && args.len() != op.arity() {
                return None;
            }
            (op, args.iter().collect())
        }
        _ => return None,
    };
    if ty_in(e, schema) != Some(op.ty()) {
        return None;
    }
    for (i, k) in kids.iter().enumerate() {
        if ty_in(k, schema) != Some(op.operand(i)) {
            return None;
        }
    }
    Some((op, kids))
}

/// `1 / d` when `d` is a power of two (of either sign) whose reciprocal is
/// a normal number, so that dividing by `d` and multiplying by `1 / d`
/// round the same real value: the same bits for every dividend.
fn exact_reciprocal(d: f64) -> Option<f64> {
    let r = 1.0 / d;
    let power_of_two = |x: f64| x.is_normal() && x.to_bits() & ((1u64 << 52) - 1) == 0;
    (power_of_two(d) && power_of_two(r)).then_some(r)
}

struct Builder<'a> {
    schema: &'a DFSchema,
    args: Vec<Expr>,
    tys: Vec<Ty>,
    code: Vec<Instr>,
    /// Each distinct subexpression once (common subexpressions share a
    /// register or an argument).
    memo: HashMap<Expr, Operand>,
}

impl Builder<'_> {
    fn push(&mut self, op: Op, operands: Vec<Operand>) -> Operand {
        self.code.push(Instr { op, operands });
        Operand::Reg(self.code.len() - 1)
    }

    #[recursive::recursive]
    fn build(&mut self, e: &Expr) -> Result<Operand> {
        let e = strip(e, self.schema);
        if let Some(o) = self.memo.get(e) {
            return Ok(*o);
        }
        let o = if let Some((op, kids)) = fusable(e, self.schema) {
            let mut ops = Vec::with_capacity(kids.len());
            for k in kids {
                ops.push(self.build(k)?);
            }
            if op == Op::Div
                && let [x, Operand::Const(d)] = ops[..]
                && let Some(r) = exact_reciprocal(d)
            {
                // `x / 2^k` is `x * 2^-k` bit for bit (the same real
                // value, rounded once), and a multiplication is several
                // times cheaper than a division; the divisor is not zero,
                // so no row becomes NULL either way.
                self.push(Op::Mul, vec![x, Operand::Const(r)])
            } else if matches!(op, Op::Least | Op::Greatest) {
                // n-ary as a chain: the same left fold as the function.
                let mut acc = ops[0];
                for x in &ops[1..] {
                    acc = self.push(op, vec![acc, *x]);
                }
                acc
            } else {
                self.push(op, ops)
            }
        } else {
            match e {
                Expr::Literal(ScalarValue::Float64(Some(c)), _) => Operand::Const(*c),
                Expr::Literal(ScalarValue::Boolean(Some(b)), _) => {
                    Operand::Const(if *b { 1.0 } else { 0.0 })
                }
                _ => {
                    let Some(t) = ty_in(e, self.schema) else {
                        return plan_err!(
                            "{NAME}: cannot fuse an operand of type other than Float64 or Boolean"
                        );
                    };
                    self.args.push(fuse(e.clone(), self.schema)?);
                    self.tys.push(t);
                    Operand::Arg(self.args.len() - 1)
                }
            }
        };
        self.memo.insert(e.clone(), o);
        Ok(o)
    }
}

// ---------------------------------------------------------------------------
// The function
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, Hash)]
struct Fused {
    signature: Signature,
}

/// The `croo_fused` function.
pub fn udf() -> Arc<ScalarUDF> {
    static F: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::from(Fused {
            signature: Signature::variadic_any(Volatility::Immutable),
        }))
    });
    Arc::clone(&F)
}

/// Parsed programs by text: a program is parsed once, not once per batch.
fn program(text: &str) -> Result<Arc<Program>> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Program>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = cache.get(text) {
        return Ok(Arc::clone(p));
    }
    let p = Arc::new(Program::parse(text)?);
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(text.to_string(), Arc::clone(&p));
    Ok(p)
}

fn program_text(v: Option<&ScalarValue>) -> Result<&str> {
    match v {
        Some(ScalarValue::Utf8(Some(s)))
        | Some(ScalarValue::LargeUtf8(Some(s)))
        | Some(ScalarValue::Utf8View(Some(s))) => Ok(s),
        _ => plan_err!("{NAME}: the first argument must be a program literal"),
    }
}

impl ScalarUDFImpl for Fused {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        // The type depends on the program: see `return_field_from_args`.
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let text = program_text(args.scalar_arguments.first().copied().flatten())?;
        let p = program(text)?;
        if args.arg_fields.len() != p.args.len() + 1 {
            return plan_err!(
                "{NAME}: the program takes {} arguments, got {}",
                p.args.len(),
                args.arg_fields.len() - 1
            );
        }
        for (i, (f, t)) in args.arg_fields[1..].iter().zip(&p.args).enumerate() {
            if Ty::of(f.data_type()) != Some(*t) {
                return plan_err!(
                    "{NAME}: argument {i} is {}, the program takes {}",
                    f.data_type(),
                    t.data_type()
                );
            }
        }
        Ok(Arc::new(Field::new(NAME, p.ty().data_type(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let text = match args.args.first() {
            Some(ColumnarValue::Scalar(s)) => program_text(Some(s))?,
            _ => return exec_err!("{NAME}: the first argument must be a program literal"),
        };
        let p = program(text)?;
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(n))
            .collect::<Result<_>>()?;
        let out = run(&p, &arrays, n)?;
        if scalar && n == 1 {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

// ---------------------------------------------------------------------------
// The kernel
// ---------------------------------------------------------------------------

/// An operand's values over one chunk.
#[derive(Clone, Copy)]
enum V<'a> {
    S(&'a [f64]),
    C(f64),
}

/// An operand's validity over one chunk (1 valid, 0 NULL).
#[derive(Clone, Copy)]
enum M<'a> {
    All,
    S(&'a [u8]),
}

/// The bits a comparison sees: DataFusion compares floats in total order
/// after turning -0 into 0 (`normalize_float_zero`), so `-0 = 0`.
#[inline(always)]
fn cmp_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b << 1 == 0 { 0 } else { b }
}

/// [`key`] of [`cmp_bits`].
#[inline(always)]
fn cmp_key(x: f64) -> i64 {
    key(f64::from_bits(cmp_bits(x)))
}

#[inline(always)]
fn map1(a: V, o: &mut [f64], f: impl Fn(f64) -> f64) {
    match a {
        V::S(x) => {
            for (o, x) in o.iter_mut().zip(x) {
                *o = f(*x);
            }
        }
        V::C(c) => o.fill(f(c)),
    }
}

#[inline(always)]
fn map2(a: V, b: V, o: &mut [f64], f: impl Fn(f64, f64) -> f64) {
    match (a, b) {
        (V::S(x), V::S(y)) => {
            for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                *o = f(*x, *y);
            }
        }
        (V::S(x), V::C(c)) => {
            for (o, x) in o.iter_mut().zip(x) {
                *o = f(*x, c);
            }
        }
        (V::C(c), V::S(y)) => {
            for (o, y) in o.iter_mut().zip(y) {
                *o = f(c, *y);
            }
        }
        (V::C(c), V::C(d)) => o.fill(f(c, d)),
    }
}

/// The validity of an operator that is NULL when any operand is; `false`
/// when `o` was written, `true` when every row is valid (`o` untouched).
#[inline(always)]
fn valid2(a: M, b: M, o: &mut [u8]) -> bool {
    match (a, b) {
        (M::All, M::All) => true,
        (M::S(x), M::All) | (M::All, M::S(x)) => {
            o.copy_from_slice(x);
            false
        }
        (M::S(x), M::S(y)) => {
            for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                *o = x & y;
            }
            false
        }
    }
}

fn truth(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// One input of the kernel.
enum Input<'a> {
    F64(&'a [f64], Option<&'a NullBuffer>),
    Bool(&'a BooleanBuffer, Option<&'a NullBuffer>),
}

/// Runs `p` over `n` rows of `arrays`: with AVX2 where the CPU has it
/// (4 doubles per instruction instead of SSE2's 2: 1.7x on the formula
/// benchmark; AVX-512 measured no faster). The same IEEE 754 operations,
/// so the same bits: Rust never contracts `a * b + c` into a fused
/// multiply-add. The one `unsafe` of the workspace: calling a function
/// compiled for a CPU feature after checking that the CPU has it.
fn run(p: &Program, arrays: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `run_avx2` only needs AVX2, which the CPU has (checked
        // just above); the code it runs is the same safe code as `run_any`.
        #[allow(unsafe_code)]
        return unsafe { run_avx2(p, arrays, n) };
    }
    run_any(p, arrays, n, |_| {})
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2(p: &Program, arrays: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
    // Safe code: a prefetch has no effect but on the caches, and a
    // closure in this function has its CPU features (SSE's prefetch
    // included).
    run_any(p, arrays, n, |x: &[f64]| {
        _mm_prefetch::<_MM_HINT_T1>(x.as_ptr().cast())
    })
}

#[inline(always)]
fn run_any(
    p: &Program,
    arrays: &[ArrayRef],
    n: usize,
    prefetch: impl Fn(&[f64]),
) -> Result<ArrayRef> {
    if arrays.len() != p.args.len() {
        return exec_err!(
            "{NAME}: the program takes {} arguments, got {}",
            p.args.len(),
            arrays.len()
        );
    }
    let mut inputs = Vec::with_capacity(arrays.len());
    for (a, t) in arrays.iter().zip(&p.args) {
        if a.len() != n {
            return exec_err!("{NAME}: an argument has {} rows, not {n}", a.len());
        }
        inputs.push(match t {
            Ty::F64 => match a.as_primitive_opt::<Float64Type>() {
                Some(x) => Input::F64(x.values(), x.nulls().filter(|n| n.null_count() > 0)),
                None => return exec_err!("{NAME}: expected Float64, got {}", a.data_type()),
            },
            Ty::Bool => match a.as_boolean_opt() {
                Some(x) => Input::Bool(x.values(), x.nulls().filter(|n| n.null_count() > 0)),
                None => return exec_err!("{NAME}: expected Boolean, got {}", a.data_type()),
            },
        });
    }
    // Taken out and put back (no closure: the kernel must be inlined into
    // `run_avx2` to be compiled for AVX2).
    let mut scratch = SCRATCH.take();
    let out = chunks(p, &inputs, n, &mut scratch, prefetch);
    SCRATCH.set(scratch);
    out
}

/// Buffers reused from one call to the next on the same thread.
#[derive(Default)]
struct Scratch {
    vals: Vec<Vec<f64>>,
    valid: Vec<Vec<u8>>,
    arg_vals: Vec<Vec<f64>>,
    arg_valid: Vec<Vec<u8>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn grow<T: Clone + Default>(v: &mut Vec<Vec<T>>, k: usize) {
    if v.len() < k {
        v.resize_with(k, || vec![T::default(); CHUNK]);
    }
}

#[inline(always)]
fn chunks(
    p: &Program,
    inputs: &[Input],
    n: usize,
    scratch: &mut Scratch,
    prefetch: impl Fn(&[f64]),
) -> Result<ArrayRef> {
    grow(&mut scratch.vals, p.slots);
    grow(&mut scratch.valid, p.slots);
    grow(&mut scratch.arg_vals, inputs.len());
    grow(&mut scratch.arg_valid, inputs.len());
    let Scratch {
        vals,
        valid,
        arg_vals,
        arg_valid,
    } = scratch;
    // Whether every row of a slot's current value is valid.
    let mut all_valid = vec![true; p.slots];
    let mut take = [0u8; CHUNK];
    let mut out: Vec<f64> = Vec::with_capacity(n);
    let mut out_valid: Vec<u8> = Vec::new();
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        for (k, input) in inputs.iter().enumerate() {
            let nulls = match input {
                Input::F64(_, nulls) => *nulls,
                Input::Bool(bits, nulls) => {
                    for (d, v) in arg_vals[k][..len]
                        .iter_mut()
                        .zip(bits.slice(start, len).iter())
                    {
                        *d = truth(v);
                    }
                    *nulls
                }
            };
            if let Some(nb) = nulls {
                for (d, v) in arg_valid[k][..len]
                    .iter_mut()
                    .zip(nb.inner().slice(start, len).iter())
                {
                    *d = v as u8;
                }
            }
        }
        for (j, ins) in p.code.iter().enumerate() {
            // A share of the input lines PREFETCH_AHEAD rows on, so that
            // they arrive while this chunk computes.
            let lo = start + PREFETCH_AHEAD + (CHUNK * j / p.code.len()) / 8 * 8;
            let hi = start + PREFETCH_AHEAD + (CHUNK * (j + 1) / p.code.len()) / 8 * 8;
            for input in inputs {
                if let Input::F64(v, _) = input {
                    let mut r = lo;
                    while r < hi.min(v.len()) {
                        prefetch(&v[r..]);
                        r += 8;
                    }
                }
            }
            let sj = p.slot[j];
            let mut o_buf = std::mem::take(&mut vals[sj]);
            let mut ov_buf = std::mem::take(&mut valid[sj]);
            let o = &mut o_buf[..len];
            let ov = &mut ov_buf[..len];
            let (vals_r, valid_r, arg_vals_r, arg_valid_r) =
                (&*vals, &*valid, &*arg_vals, &*arg_valid);
            let all_r = &all_valid;
            let view = |x: &Operand| -> V {
                match *x {
                    Operand::Const(c) => V::C(c),
                    Operand::Reg(r) => V::S(&vals_r[p.slot[r]][..len]),
                    Operand::Arg(k) => match &inputs[k] {
                        Input::F64(v, _) => V::S(&v[start..start + len]),
                        Input::Bool(..) => V::S(&arg_vals_r[k][..len]),
                    },
                }
            };
            let mask = |x: &Operand| -> M {
                match *x {
                    Operand::Const(_) => M::All,
                    Operand::Reg(r) if all_r[p.slot[r]] => M::All,
                    Operand::Reg(r) => M::S(&valid_r[p.slot[r]][..len]),
                    Operand::Arg(k) => match &inputs[k] {
                        Input::F64(_, None) | Input::Bool(_, None) => M::All,
                        _ => M::S(&arg_valid_r[k][..len]),
                    },
                }
            };
            let ops = &ins.operands;
            let a = view(&ops[0]);
            let am = mask(&ops[0]);
            let all = match ins.op {
                op @ (Op::Neg | Op::Not) => {
                    match op {
                        Op::Neg => map1(a, o, |x| -x),
                        _ => map1(a, o, |x| truth(x == 0.0)),
                    }
                    match am {
                        M::All => true,
                        M::S(x) => {
                            ov.copy_from_slice(x);
                            false
                        }
                    }
                }
                Op::If => {
                    let (b, c) = (view(&ops[1]), view(&ops[2]));
                    let (bm, cm) = (mask(&ops[1]), mask(&ops[2]));
                    let take = &mut take[..len];
                    match a {
                        V::S(x) => {
                            for (t, x) in take.iter_mut().zip(x) {
                                *t = (*x != 0.0) as u8;
                            }
                        }
                        V::C(x) => take.fill((x != 0.0) as u8),
                    }
                    if let M::S(m) = am {
                        for (t, m) in take.iter_mut().zip(m) {
                            *t &= m;
                        }
                    }
                    select(take, b, c, o);
                    match (bm, cm) {
                        (M::All, M::All) => true,
                        _ => {
                            let ones = [1u8; CHUNK];
                            let bm = match bm {
                                M::S(m) => m,
                                M::All => &ones[..len],
                            };
                            let cm = match cm {
                                M::S(m) => m,
                                M::All => &ones[..len],
                            };
                            for (((o, t), b), c) in ov.iter_mut().zip(take.iter()).zip(bm).zip(cm) {
                                *o = if *t != 0 { *b } else { *c };
                            }
                            false
                        }
                    }
                }
                op => {
                    let b = view(&ops[1]);
                    let bm = mask(&ops[1]);
                    match op {
                        Op::Add => map2(a, b, o, |x, y| x + y),
                        Op::Sub => map2(a, b, o, |x, y| x - y),
                        Op::Mul => map2(a, b, o, |x, y| x * y),
                        Op::Div => map2(a, b, o, |x, y| x / y),
                        Op::Mod => map2(a, b, o, |x, y| x % y),
                        Op::Lt => map2(a, b, o, |x, y| truth(cmp_key(x) < cmp_key(y))),
                        Op::Le => map2(a, b, o, |x, y| truth(cmp_key(x) <= cmp_key(y))),
                        Op::Gt => map2(a, b, o, |x, y| truth(cmp_key(x) > cmp_key(y))),
                        Op::Ge => map2(a, b, o, |x, y| truth(cmp_key(x) >= cmp_key(y))),
                        Op::Eq => map2(a, b, o, |x, y| truth(cmp_bits(x) == cmp_bits(y))),
                        Op::Ne => map2(a, b, o, |x, y| truth(cmp_bits(x) != cmp_bits(y))),
                        Op::And => map2(a, b, o, |x, y| truth((x != 0.0) & (y != 0.0))),
                        Op::Or => map2(a, b, o, |x, y| truth((x != 0.0) | (y != 0.0))),
                        Op::Least => map2(a, b, o, |x, y| if key(y) < key(x) { y } else { x }),
                        Op::Greatest => map2(a, b, o, |x, y| if key(y) > key(x) { y } else { x }),
                        _ => unreachable!("unary and ternary operators are handled above"),
                    }
                    let all = valid2(am, bm, ov);
                    if matches!(op, Op::Div | Op::Mod) {
                        // NULL where the divisor is 0 or -0.
                        match b {
                            V::C(d) if d.to_bits() << 1 == 0 => {
                                ov.fill(0);
                                false
                            }
                            V::C(_) => all,
                            V::S(y) => {
                                if all {
                                    for (o, y) in ov.iter_mut().zip(y) {
                                        *o = (*y != 0.0) as u8;
                                    }
                                } else {
                                    for (o, y) in ov.iter_mut().zip(y) {
                                        *o &= (*y != 0.0) as u8;
                                    }
                                }
                                // Mostly no divisor is zero: then the
                                // instructions after this one skip
                                // their validity work.
                                !ov.contains(&0)
                            }
                        }
                    } else {
                        all
                    }
                }
            };
            vals[sj] = o_buf;
            valid[sj] = ov_buf;
            all_valid[sj] = all;
        }
        let last = p.slot[p.code.len() - 1];
        out.extend_from_slice(&vals[last][..len]);
        if !all_valid[last] || !out_valid.is_empty() {
            if out_valid.is_empty() {
                out_valid.resize(start, 1);
            }
            if all_valid[last] {
                out_valid.resize(start + len, 1);
            } else {
                out_valid.extend_from_slice(&valid[last][..len]);
            }
        }
        start += len;
    }
    let nulls = out_valid
        .contains(&0)
        .then(|| NullBuffer::new(pack(&out_valid)));
    Ok(match p.ty() {
        Ty::F64 => Arc::new(Float64Array::new(out.into(), nulls)),
        Ty::Bool => Arc::new(BooleanArray::new(
            BooleanBuffer::collect_bool(n, |i| out[i] != 0.0),
            nulls,
        )),
    })
}

/// Bytes (0 or 1) as a bitmap, 64 rows per word.
#[inline(always)]
fn pack(bytes: &[u8]) -> BooleanBuffer {
    let words: Vec<u64> = bytes
        .chunks(64)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u64, |w, (i, b)| w | (u64::from(*b & 1) << i))
        })
        .collect();
    BooleanBuffer::new(words.into(), 0, bytes.len())
}

#[inline(always)]
fn select(take: &[u8], a: V, b: V, o: &mut [f64]) {
    match (a, b) {
        (V::S(x), V::S(y)) => {
            for (((o, t), x), y) in o.iter_mut().zip(take).zip(x).zip(y) {
                *o = if *t != 0 { *x } else { *y };
            }
        }
        (V::S(x), V::C(c)) => {
            for ((o, t), x) in o.iter_mut().zip(take).zip(x) {
                *o = if *t != 0 { *x } else { c };
            }
        }
        (V::C(c), V::S(y)) => {
            for ((o, t), y) in o.iter_mut().zip(take).zip(y) {
                *o = if *t != 0 { c } else { *y };
            }
        }
        (V::C(c), V::C(d)) => {
            for (o, t) in o.iter_mut().zip(take) {
                *o = if *t != 0 { c } else { d };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::execution::context::ExecutionProps;
    use datafusion::logical_expr::col;
    use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
    use datafusion::physical_expr::create_physical_expr;

    fn evaluate(e: &Expr, batch: &RecordBatch) -> ArrayRef {
        let schema = DFSchema::try_from(batch.schema().as_ref().clone()).unwrap();
        create_physical_expr(
            e,
            &schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .unwrap()
        .evaluate(batch)
        .unwrap()
        .into_array(batch.num_rows())
        .unwrap()
    }

    /// Boolean columns as arguments (with NULLs) and a Boolean result,
    /// which formulas over Float64 measures never produce: the fused and
    /// unfused results are the same array.
    #[test]
    fn boolean_arguments_and_results() {
        let rows = CHUNK + 5;
        let x: Float64Array = (0..rows)
            .map(|i| (i % 7 != 3).then_some(i as f64 - 40.0))
            .collect();
        let flag: BooleanArray = (0..rows)
            .map(|i| (i % 5 != 0).then_some(i % 3 == 0))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("flag", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(x), Arc::new(flag)]).unwrap();
        let df_schema = DFSchema::try_from(batch.schema().as_ref().clone()).unwrap();
        let numeric =
            crate::strict::if_then(col("flag"), col("x") + lit(1.0), col("x") * lit(-2.0));
        let logical = crate::strict::or(
            crate::strict::and(col("flag"), (col("x") + lit(0.5)).gt(lit(0.0))),
            !col("flag"),
        );
        for e in [numeric, logical] {
            let fused = fuse(e.clone(), &df_schema).unwrap();
            assert!(format!("{fused}").contains(NAME), "{fused}");
            assert_eq!(
                evaluate(&e, &batch).to_data(),
                evaluate(&fused, &batch).to_data(),
                "{e}"
            );
        }
    }

    /// A lone operator is left as it is; the registers of a longer program
    /// are reused once read for the last time.
    #[test]
    fn what_fuses_and_register_reuse() {
        let schema = DFSchema::try_from(Schema::new(vec![
            Field::new("a", DataType::Float64, true),
            Field::new("b", DataType::Float64, true),
        ]))
        .unwrap();
        let lone = col("a") + col("b");
        assert_eq!(fuse(lone.clone(), &schema).unwrap(), lone);
        let chain = ((col("a") + col("b")) * col("a") - col("b")) * lit(2.0) + col("a");
        let Expr::ScalarFunction(f) = fuse(chain, &schema).unwrap() else {
            panic!("not fused");
        };
        let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = &f.args[0] else {
            panic!("no program");
        };
        let p = Program::parse(text).unwrap();
        assert_eq!(p.code.len(), 5);
        assert_eq!(f.args.len(), 3, "a and b once each");
        // each result is read once, by the next instruction: two buffers
        assert_eq!(p.slots, 2);
    }

    /// Only powers of two with normal reciprocals turn a division into a
    /// multiplication; the bits are the division's.
    #[test]
    fn division_by_a_power_of_two_is_a_multiplication() {
        assert_eq!(exact_reciprocal(4.0), Some(0.25));
        assert_eq!(exact_reciprocal(-0.125), Some(-8.0));
        for d in [
            3.0,
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NAN,
            2f64.powi(1023),
            0.1,
        ] {
            assert_eq!(exact_reciprocal(d), None, "{d}");
        }
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let x: Float64Array = (0..CHUNK + 9)
            .map(|i| (i % 11 != 0).then_some((i as f64 - 300.0) * 1.37e-3 + f64::EPSILON))
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(x)]).unwrap();
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        for (d, op) in [(4.0, "mul"), (-0.125, "mul"), (3.0, "div")] {
            let e = crate::strict::div(col("x") + lit(1.0), lit(d));
            let fused = fuse(e.clone(), &df_schema).unwrap();
            assert!(format!("{fused}").contains(&format!(";{op} ")), "{fused}");
            assert_eq!(
                evaluate(&e, &batch).to_data(),
                evaluate(&fused, &batch).to_data()
            );
        }
    }

    /// A division by a column with no zero leaves every row valid (no
    /// null buffer), one zero makes exactly that row NULL.
    #[test]
    fn division_validity() {
        let rows = 2 * CHUNK + 3;
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, false),
            Field::new("y", DataType::Float64, false),
        ]));
        let x: Float64Array = (0..rows).map(|i| Some(i as f64)).collect();
        let e = crate::strict::div(col("x") * lit(3.0), col("y") + lit(1.0)) - lit(1.0);
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let fused = fuse(e.clone(), &df_schema).unwrap();
        assert!(format!("{fused}").contains(NAME), "{fused}");
        for zero_at in [None, Some(CHUNK + 1)] {
            let y: Float64Array = (0..rows)
                .map(|i| Some(if Some(i) == zero_at { -1.0 } else { i as f64 }))
                .collect();
            let batch =
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(x.clone()), Arc::new(y)])
                    .unwrap();
            let got = evaluate(&fused, &batch);
            assert_eq!(got.null_count(), usize::from(zero_at.is_some()));
            assert_eq!(got.nulls().is_some(), zero_at.is_some());
            if let Some(z) = zero_at {
                assert!(got.is_null(z));
            }
            assert_eq!(evaluate(&e, &batch).to_data(), got.to_data());
        }
    }

    #[test]
    fn program_text_round_trips_and_bad_programs_are_refused() {
        let text = "args=fb;add a0 c3ff0000000000000;if a1 r0 c8000000000000000;lt r1 a0";
        let p = Program::parse(text).unwrap();
        assert_eq!(p.text(), text);
        assert_eq!(p.ty(), Ty::Bool);
        assert_eq!(p.code[1].operands[2], Operand::Const(-0.0));
        for bad in [
            "add a0 a0",
            "args=f",
            "args=f;add a0 a1",
            "args=f;add a0 r0",
            "args=f;add a0",
            "args=f;frob a0 a0",
            "args=b;add a0 a0",
            "args=f;and a0 a0",
            "args=f;add a0 c12",
        ] {
            assert!(Program::parse(bad).is_err(), "{bad}");
        }
    }
}
