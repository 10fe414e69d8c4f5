//! The formula syntax (`derived`, component `expr`, `score.expr`,
//! `rollup.weight`): parsed with `evalexpr` and turned into a small typed
//! tree that the checker and the compiler share.

use std::ops::Range;

use evalexpr::{Node, Operator, Value};

/// Binary operators of the formula syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Neq,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Neq => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// Functions of the formula syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Min,
    Max,
    Abs,
    Floor,
    Ceil,
    Round,
    Sqrt,
    Ln,
    Exp,
    Clamp,
    If,
    Coalesce,
    IsNull,
    Goalpost,
    MinMax,
    ZScore,
    PctRank,
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl Func {
    pub const ALL: [(&'static str, Func); 17] = [
        ("min", Func::Min),
        ("max", Func::Max),
        ("abs", Func::Abs),
        ("floor", Func::Floor),
        ("ceil", Func::Ceil),
        ("round", Func::Round),
        ("sqrt", Func::Sqrt),
        ("ln", Func::Ln),
        ("exp", Func::Exp),
        ("clamp", Func::Clamp),
        ("if", Func::If),
        ("coalesce", Func::Coalesce),
        ("is_null", Func::IsNull),
        ("goalpost", Func::Goalpost),
        ("minmax", Func::MinMax),
        ("zscore", Func::ZScore),
        ("pct_rank", Func::PctRank),
    ];

    pub fn from_name(name: &str) -> Option<Func> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    pub fn arity(self) -> Arity {
        match self {
            Func::Min | Func::Max | Func::Coalesce => Arity::AtLeast(2),
            Func::Clamp | Func::If | Func::Goalpost => Arity::Exactly(3),
            _ => Arity::Exactly(1),
        }
    }

    /// Population functions are computed over the customers of one period.
    pub fn is_population(self) -> bool {
        matches!(self, Func::MinMax | Func::ZScore | Func::PctRank)
    }
}

/// A parsed formula-syntax expression. Spans are byte ranges inside the
/// expression text.
#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    Num(f64),
    Bool(bool),
    Ident(String, Range<usize>),
    Neg(Box<Ast>),
    Not(Box<Ast>),
    Bin(BinOp, Box<Ast>, Box<Ast>),
    Call(Func, Vec<Ast>, Range<usize>),
}

impl Ast {
    /// Calls `f` on this node and every node below it, parents first.
    #[recursive::recursive]
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Ast)) {
        f(self);
        match self {
            Ast::Neg(a) | Ast::Not(a) => a.walk(f),
            Ast::Bin(_, l, r) => {
                l.walk(f);
                r.walk(f);
            }
            Ast::Call(_, args, _) => args.iter().for_each(|a| a.walk(f)),
            Ast::Num(_) | Ast::Bool(_) | Ast::Ident(..) => {}
        }
    }

    /// Identifiers read by this expression, in source order, with repeats.
    pub fn identifiers(&self) -> Vec<(&str, Range<usize>)> {
        let mut out = Vec::new();
        self.walk(&mut |a| {
            if let Ast::Ident(n, s) = a {
                out.push((n.as_str(), s.clone()));
            }
        });
        out
    }

    /// The population functions this expression calls, each once, in
    /// first-call order.
    pub fn population_functions(&self) -> Vec<Func> {
        let mut out = Vec::new();
        self.walk(&mut |a| {
            if let Ast::Call(f, ..) = a
                && f.is_population()
                && !out.contains(f)
            {
                out.push(*f);
            }
        });
        out
    }

    /// The expression with every population function call replaced by a
    /// call of `to` on the same argument.
    #[recursive::recursive]
    pub fn renormalised(&self, to: Func) -> Ast {
        match self {
            Ast::Neg(a) => Ast::Neg(Box::new(a.renormalised(to))),
            Ast::Not(a) => Ast::Not(Box::new(a.renormalised(to))),
            Ast::Bin(op, l, r) => Ast::Bin(
                *op,
                Box::new(l.renormalised(to)),
                Box::new(r.renormalised(to)),
            ),
            Ast::Call(f, args, span) => Ast::Call(
                if f.is_population() { to } else { *f },
                args.iter().map(|a| a.renormalised(to)).collect(),
                span.clone(),
            ),
            Ast::Num(_) | Ast::Bool(_) | Ast::Ident(..) => self.clone(),
        }
    }

    pub fn has_population_function(&self) -> bool {
        let mut found = false;
        self.walk(&mut |a| {
            if let Ast::Call(f, ..) = a {
                found |= f.is_population();
            }
        });
        found
    }
}

/// A problem in an expression's text, with the byte range it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub span: Range<usize>,
    pub help: Option<String>,
}

/// A name token of the expression text (identifier or function name).
#[derive(Debug, Clone)]
struct NameToken {
    span: Range<usize>,
}

fn is_operator_char(c: char) -> bool {
    matches!(
        c,
        '+' | '-'
            | '*'
            | '/'
            | '%'
            | '^'
            | '='
            | '!'
            | '<'
            | '>'
            | '&'
            | '|'
            | '('
            | ')'
            | ','
            | ';'
            | '"'
    )
}

/// Finds the identifier-like tokens of `text` in order, as evalexpr's lexer
/// splits them (numbers and booleans excluded).
fn name_tokens(text: &str) -> Vec<NameToken> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            // skip a string literal
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    break;
                }
            }
            continue;
        }
        if c.is_whitespace() || is_operator_char(c) {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek() {
            if d.is_whitespace() || is_operator_char(d) {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        let tok = &text[i..end];
        let literal = tok.parse::<i64>().is_ok()
            || tok.parse::<f64>().is_ok()
            || tok == "true"
            || tok == "false"
            || (tok.starts_with("0x") && i64::from_str_radix(&tok[2..], 16).is_ok());
        if !literal {
            out.push(NameToken { span: i..end });
        }
    }
    out
}

/// Parses formula syntax into an [`Ast`].
pub fn parse(text: &str) -> Result<Ast, ParseError> {
    let whole = 0..text.len();
    if text.trim().is_empty() {
        return Err(ParseError {
            message: "the expression is empty".into(),
            span: whole,
            help: None,
        });
    }
    if let Err(e) = crate::limits::check_formula(text) {
        return Err(ParseError {
            message: e.message,
            span: e.span,
            help: Some(e.help.into()),
        });
    }
    if let Some(span) = unbalanced(text) {
        return Err(ParseError {
            message: "unmatched parenthesis".into(),
            span,
            help: None,
        });
    }
    let node = evalexpr::build_operator_tree(text).map_err(|e| ParseError {
        message: format!("cannot parse the expression: {e}"),
        span: whole.clone(),
        help: None,
    })?;
    let tokens = name_tokens(text);
    let mut conv = Converter {
        tokens,
        next: 0,
        whole,
    };
    conv.convert(&node)
}

fn unbalanced(text: &str) -> Option<Range<usize>> {
    let mut stack = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '(' => stack.push(i),
            ')' if stack.pop().is_none() => return Some(i..i + 1),
            _ => {}
        }
    }
    stack.pop().map(|i| i..i + 1)
}

struct Converter {
    tokens: Vec<NameToken>,
    next: usize,
    whole: Range<usize>,
}

impl Converter {
    fn take_name(&mut self) -> Range<usize> {
        let span = self
            .tokens
            .get(self.next)
            .map(|t| t.span.clone())
            .unwrap_or(self.whole.clone());
        self.next += 1;
        span
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            message: message.into(),
            span: self.whole.clone(),
            help: None,
        })
    }

    #[recursive::recursive]
    fn convert(&mut self, n: &Node) -> Result<Ast, ParseError> {
        let k = n.children();
        let bin = |op| Some(op);
        let binop = match n.operator() {
            Operator::Add => bin(BinOp::Add),
            Operator::Sub => bin(BinOp::Sub),
            Operator::Mul => bin(BinOp::Mul),
            Operator::Div => bin(BinOp::Div),
            Operator::Mod => bin(BinOp::Mod),
            Operator::Exp => bin(BinOp::Pow),
            Operator::Eq => bin(BinOp::Eq),
            Operator::Neq => bin(BinOp::Neq),
            Operator::Gt => bin(BinOp::Gt),
            Operator::Lt => bin(BinOp::Lt),
            Operator::Geq => bin(BinOp::Ge),
            Operator::Leq => bin(BinOp::Le),
            Operator::And => bin(BinOp::And),
            Operator::Or => bin(BinOp::Or),
            _ => None,
        };
        if let Some(op) = binop {
            if k.len() != 2 {
                return self.err(format!("`{}` needs an operand on each side", op.symbol()));
            }
            let l = self.convert(&k[0])?;
            let r = self.convert(&k[1])?;
            return Ok(Ast::Bin(op, Box::new(l), Box::new(r)));
        }
        match n.operator() {
            Operator::RootNode => match k {
                [c] => self.convert(c),
                [] => self.err("empty parentheses where a value is expected"),
                _ => self.err("two values without an operator between them"),
            },
            Operator::Neg | Operator::Not => {
                if k.len() != 1 {
                    return self.err("a unary operator needs exactly one operand");
                }
                let a = Box::new(self.convert(&k[0])?);
                Ok(if matches!(n.operator(), Operator::Neg) {
                    Ast::Neg(a)
                } else {
                    Ast::Not(a)
                })
            }
            Operator::Const { value } => match value {
                Value::Int(i) => Ok(Ast::Num(*i as f64)),
                Value::Float(f) => Ok(Ast::Num(*f)),
                Value::Boolean(b) => Ok(Ast::Bool(*b)),
                Value::String(_) => self.err("strings are not values of the formula syntax"),
                _ => self.err("unexpected value"),
            },
            Operator::VariableIdentifierRead { identifier } => {
                let span = self.take_name();
                Ok(Ast::Ident(identifier.clone(), span))
            }
            Operator::FunctionIdentifier { identifier } => {
                let span = self.take_name();
                let Some(func) = Func::from_name(identifier) else {
                    let names: Vec<&str> = Func::ALL.iter().map(|(n, _)| *n).collect();
                    return Err(ParseError {
                        message: format!("unknown function `{identifier}`"),
                        help: crate::diagnostic::nearest(identifier, names.iter().copied())
                            .map(|n| format!("did you mean `{n}`?"))
                            .or_else(|| Some(format!("known functions: {}", names.join(", ")))),
                        span,
                    });
                };
                let args = match k {
                    [arg] => self.args(arg)?,
                    _ => return self.err(format!("malformed call of `{identifier}`")),
                };
                let ok = match func.arity() {
                    Arity::Exactly(n) => args.len() == n,
                    Arity::AtLeast(n) => args.len() >= n,
                };
                if !ok {
                    let want = match func.arity() {
                        Arity::Exactly(1) => "exactly 1 argument".to_string(),
                        Arity::Exactly(n) => format!("exactly {n} arguments"),
                        Arity::AtLeast(n) => format!("at least {n} arguments"),
                    };
                    return Err(ParseError {
                        message: format!(
                            "`{identifier}` takes {want}, but {} {} given",
                            args.len(),
                            if args.len() == 1 { "was" } else { "were" }
                        ),
                        span,
                        help: None,
                    });
                }
                Ok(Ast::Call(func, args, span))
            }
            Operator::Tuple => self.err("unexpected `,` outside a function call"),
            Operator::Chain => self.err("unexpected `;`: a formula is a single expression"),
            Operator::VariableIdentifierWrite { .. }
            | Operator::Assign
            | Operator::AddAssign
            | Operator::SubAssign
            | Operator::MulAssign
            | Operator::DivAssign
            | Operator::ModAssign
            | Operator::ExpAssign
            | Operator::AndAssign
            | Operator::OrAssign => Err(ParseError {
                message: "assignment is not allowed in a formula".into(),
                span: self.whole.clone(),
                help: Some("to compare, use `==`".into()),
            }),
            _ => self.err("unsupported operator"),
        }
    }

    fn args(&mut self, arg: &Node) -> Result<Vec<Ast>, ParseError> {
        if let Operator::RootNode = arg.operator() {
            match arg.children() {
                [] => return Ok(Vec::new()),
                [inner] if matches!(inner.operator(), Operator::Tuple) => {
                    return inner.children().iter().map(|c| self.convert(c)).collect();
                }
                _ => {}
            }
        }
        if let Operator::Tuple = arg.operator() {
            return arg.children().iter().map(|c| self.convert(c)).collect();
        }
        Ok(vec![self.convert(arg)?])
    }
}

impl BinOp {
    /// Binding strength, as the parser (evalexpr) reads it: `||` < `&&` <
    /// comparisons < `+ -` < `* / %` < `^`; every level left-associative.
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Neq | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 7,
        }
    }
}

impl Ast {
    /// Whether the expression prints as one token or call (no operator at
    /// its top): what needs no parentheses anywhere.
    pub fn is_atom(&self) -> bool {
        match self {
            Ast::Num(n) => *n >= 0.0,
            Ast::Bool(_) | Ast::Ident(..) | Ast::Call(..) => true,
            _ => false,
        }
    }
}

/// Prints formula syntax with the parentheses its precedence needs (and
/// around every operand of a unary operator or of `^` that is not an atom,
/// so that the text reads the same to a person and to the parser): parsing
/// the output gives the same tree.
impl std::fmt::Display for Ast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wrapped = |a: &Ast, f: &mut std::fmt::Formatter<'_>| {
            if a.is_atom() {
                write!(f, "{a}")
            } else {
                write!(f, "({a})")
            }
        };
        match self {
            Ast::Num(n) if *n < 0.0 => write!(f, "(-{})", Ast::Num(-n)),
            Ast::Num(n) => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    write!(f, "{}", *n as i64)
                } else if n.abs() >= 1e-4 && n.abs() < 1e15 {
                    write!(f, "{n}")
                } else {
                    write!(f, "{n:e}")
                }
            }
            Ast::Bool(b) => write!(f, "{b}"),
            Ast::Ident(name, _) => f.write_str(name),
            Ast::Neg(a) => {
                f.write_str("-")?;
                wrapped(a, f)
            }
            Ast::Not(a) => {
                f.write_str("!")?;
                wrapped(a, f)
            }
            Ast::Call(func, args, _) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Ast::Bin(op, l, r) => {
                let p = op.precedence();
                let needs = |a: &Ast, right: bool| match a {
                    Ast::Bin(o, ..) => {
                        let q = o.precedence();
                        // Left-associative: a right operand of the same
                        // strength needs them; `^` takes atoms only.
                        q < p || (right && q == p) || *op == BinOp::Pow
                    }
                    Ast::Neg(_) | Ast::Not(_) => true,
                    Ast::Num(n) => *n < 0.0,
                    _ => false,
                };
                if needs(l, false) {
                    write!(f, "({l})")?;
                } else {
                    write!(f, "{l}")?;
                }
                write!(f, " {} ", op.symbol())?;
                if needs(r, true) {
                    write!(f, "({r})")
                } else {
                    write!(f, "{r}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ast {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn parses_calls_and_spans() {
        let a = p("minmax(margin) + max(a, b, 2)");
        let ids = a.identifiers();
        assert_eq!(ids, vec![("margin", 7..13), ("a", 21..22), ("b", 24..25)]);
        match a {
            Ast::Bin(BinOp::Add, l, r) => {
                assert!(
                    matches!(*l, Ast::Call(Func::MinMax, ref args, ref s) if args.len() == 1 && *s == (0..6))
                );
                assert!(matches!(*r, Ast::Call(Func::Max, ref args, _) if args.len() == 3));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The tree without spans.
    fn bare(a: &Ast) -> Ast {
        match a {
            Ast::Ident(n, _) => Ast::Ident(n.clone(), 0..0),
            Ast::Call(f, args, _) => Ast::Call(*f, args.iter().map(bare).collect(), 0..0),
            Ast::Neg(x) => Ast::Neg(Box::new(bare(x))),
            Ast::Not(x) => Ast::Not(Box::new(bare(x))),
            Ast::Bin(o, l, r) => Ast::Bin(*o, Box::new(bare(l)), Box::new(bare(r))),
            other => other.clone(),
        }
    }

    /// A random expression over a few names, numbers, every operator and
    /// some functions (types are not checked: the printer does not care).
    fn random(rng: &mut u64, depth: u32) -> Ast {
        let mut next = |n: u64| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng % n
        };
        if depth == 0 || next(4) == 0 {
            return match next(4) {
                0 => Ast::Num([0.5, 2.0, 3.25, 10.0, 0.0][next(5) as usize]),
                1 => Ast::Bool(next(2) == 0),
                _ => Ast::Ident(["a", "b", "cost", "x_1"][next(4) as usize].into(), 0..0),
            };
        }
        const OPS: [BinOp; 14] = [
            BinOp::Add,
            BinOp::Sub,
            BinOp::Mul,
            BinOp::Div,
            BinOp::Mod,
            BinOp::Pow,
            BinOp::Eq,
            BinOp::Neq,
            BinOp::Lt,
            BinOp::Le,
            BinOp::Gt,
            BinOp::Ge,
            BinOp::And,
            BinOp::Or,
        ];
        match next(6) {
            0 => Ast::Neg(Box::new(random(rng, depth - 1))),
            1 => Ast::Not(Box::new(random(rng, depth - 1))),
            2 => {
                let f = [Func::Min, Func::Abs, Func::If, Func::Coalesce][next(4) as usize];
                let n = match f.arity() {
                    Arity::Exactly(n) | Arity::AtLeast(n) => n,
                };
                Ast::Call(f, (0..n).map(|_| random(rng, depth - 1)).collect(), 0..0)
            }
            _ => {
                let op = OPS[next(OPS.len() as u64) as usize];
                Ast::Bin(
                    op,
                    Box::new(random(rng, depth - 1)),
                    Box::new(random(rng, depth - 1)),
                )
            }
        }
    }

    #[test]
    fn printed_expressions_parse_to_the_same_tree() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..3000 {
            let a = random(&mut rng, 4);
            let text = a.to_string();
            let back = parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(bare(&back), bare(&a), "{text}");
        }
        // The case a reader was misled by.
        let a = p("0.25 * (1 - goalpost(x, 0, 1))");
        assert_eq!(a.to_string(), "0.25 * (1 - goalpost(x, 0, 1))");
        assert_eq!(p("(a - b) - c").to_string(), "a - b - c");
        assert_eq!(p("a - (b - c)").to_string(), "a - (b - c)");
        assert_eq!(p("(-a) ^ 2").to_string(), "(-a) ^ 2");
    }

    #[test]
    fn power_is_left_associative_like_evalexpr() {
        let a = p("2^3^2");
        assert!(
            matches!(a, Ast::Bin(BinOp::Pow, ref l, _) if matches!(**l, Ast::Bin(BinOp::Pow, ..)))
        );
    }

    #[test]
    fn rejects_incomplete_and_unknown() {
        assert!(parse("1 +").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("a = 1").is_err());
        assert!(parse("(a").is_err());
        let e = parse("x + minmx(y)").unwrap_err();
        assert_eq!(e.span, 4..9);
        assert_eq!(e.help.as_deref(), Some("did you mean `minmax`?"));
        let e = parse("clamp(x, 1)").unwrap_err();
        assert!(e.message.contains("exactly 3 arguments"), "{}", e.message);
    }
}
