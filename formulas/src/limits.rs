//! How large one expression may be, checked on its text before any parser
//! sees it, so that no input can exhaust the stack of the parsers, the
//! checker, the compiler or DataFusion's planner, and so that checking and
//! planning stay linear in a file's size.
//!
//! The same limits hold for the formula syntax (`derived`, components,
//! `score.expr`, `rollup.weight`) and for a measure's SQL (`expr`,
//! `filter`), and `docs/formula-reference.md` states them:
//!
//! - parentheses (function calls included) nest at most [`MAX_NESTING`]
//!   deep;
//! - an expression has at most [`MAX_OPERATORS`] operators (arithmetic,
//!   comparison and logical ones, unary ones included; in SQL also `AND`,
//!   `OR`, `NOT`, `WHEN`);
//! - a formula-syntax expression has at most [`MAX_NESTING`] power
//!   operators `^`: each is a call of `power` around what stands on its
//!   left, so a chain of them nests as deep as parentheses do (and
//!   DataFusion's planner, which names every nested call in full, slows
//!   with the cube of the depth).
//!
//! and a formula file has at most [`MAX_DEFINITIONS`] definitions of each
//! kind (sources, dimensions, measures, derived values, components).
//!
//! Real formulas are far below all of these (the sample's longest expression has 9
//! operators); a longer computation is split into derived values, which
//! have no depth at all between them.

use std::ops::Range;

/// Most definitions of one kind (sources, dimensions, measures, derived
/// values, components) in one formula file. DataFusion's schemas look
/// columns up by name, so a plan's time grows with the square of its
/// columns: about 3 s for 1000 measures, 10 s for 2000 (release build).
pub const MAX_DEFINITIONS: usize = 1000;

/// Deepest nesting of parentheses in one expression.
pub const MAX_NESTING: usize = 32;
/// Most operators in one expression.
pub const MAX_OPERATORS: usize = 256;

/// An expression over a limit: the message and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub message: String,
    /// Byte range inside the expression's text.
    pub span: Range<usize>,
    pub help: &'static str,
}

const HELP: &str = "split the expression into derived values";

fn nesting(depth: usize, at: usize) -> Exceeded {
    Exceeded {
        message: format!(
            "parentheses nest {depth} deep here; an expression may nest at most {MAX_NESTING}"
        ),
        span: at..at + 1,
        help: HELP,
    }
}

fn operators(n: usize, at: usize) -> Exceeded {
    Exceeded {
        message: format!(
            "the expression has more than {MAX_OPERATORS} operators (at least {n}); an expression may have at most {MAX_OPERATORS}"
        ),
        span: at..at + 1,
        help: HELP,
    }
}

/// Checks formula-syntax text (`evalexpr`'s lexer: strings in double
/// quotes, `//` and `/* */` comments). Linear in the text's length.
pub fn check_formula(text: &str) -> Result<(), Exceeded> {
    let bytes = text.as_bytes();
    let (mut depth, mut ops, mut powers) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        match c {
            b'"' => {
                // A string literal: skip to its closing quote.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if next == Some(b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if next == Some(b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(nesting(depth, i));
                }
            }
            b')' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'!' | b'<' | b'>' | b'=' | b'&' | b'|' => {
                if c == b'^' {
                    powers += 1;
                    if powers > MAX_NESTING {
                        return Err(Exceeded {
                            message: format!(
                                "the expression has more than {MAX_NESTING} `^`; each nests a call of `power`, and an expression may nest at most {MAX_NESTING}"
                            ),
                            span: i..i + 1,
                            help: HELP,
                        });
                    }
                }
                ops += 1;
                if ops > MAX_OPERATORS {
                    return Err(operators(ops, i));
                }
                // Two-character operators count once.
                if matches!(
                    (c, next),
                    (b'=' | b'!' | b'<' | b'>', Some(b'='))
                        | (b'&', Some(b'&'))
                        | (b'|', Some(b'|'))
                ) {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Checks SQL text (a measure's `expr` or `filter`) with sqlparser's own
/// tokenizer, so that strings, quoted identifiers and comments are what
/// the parser will see. Text that does not tokenize is left to the parser
/// to report.
pub fn check_sql(text: &str) -> Result<(), Exceeded> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize_with_location() else {
        return Ok(());
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let at = |t: &datafusion::sql::sqlparser::tokenizer::TokenWithSpan| -> usize {
        let loc = t.span.start;
        let line = (loc.line as usize).saturating_sub(1);
        let start = line_starts.get(line).copied().unwrap_or(0);
        text[start..]
            .char_indices()
            .nth((loc.column as usize).saturating_sub(1))
            .map_or(text.len(), |(i, _)| start + i)
            .min(text.len().saturating_sub(1))
    };
    let (mut depth, mut ops) = (0usize, 0usize);
    for t in &tokens {
        let is_operator = match &t.token {
            Token::LParen => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(nesting(depth, at(t)));
                }
                false
            }
            Token::RParen => {
                depth = depth.saturating_sub(1);
                false
            }
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::StringConcat
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe => true,
            Token::Word(w) => matches!(
                w.keyword,
                Keyword::AND | Keyword::OR | Keyword::NOT | Keyword::WHEN
            ),
            _ => false,
        };
        if is_operator {
            ops += 1;
            if ops > MAX_OPERATORS {
                return Err(operators(ops, at(t)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_nesting_and_operators() {
        let deep = format!("{}x{}", "abs(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert_eq!(check_formula(&deep), Ok(()));
        let deeper = format!("abs({deep})");
        let e = check_formula(&deeper).unwrap_err();
        // The 33rd `(`: the outer one, then 32 of `deep`, four bytes apart.
        assert_eq!(e.span, 4 * MAX_NESTING + 3..4 * MAX_NESTING + 4);
        assert!(e.message.contains("33 deep"), "{}", e.message);

        let chain = |n: usize| format!("1{}", " + 1".repeat(n));
        assert_eq!(check_formula(&chain(MAX_OPERATORS)), Ok(()));
        assert!(check_formula(&chain(MAX_OPERATORS + 1)).is_err());
        // Unary operators count; two-character operators count once.
        assert!(check_formula(&format!("{}x", "-".repeat(MAX_OPERATORS + 1))).is_err());
        let cmp = vec!["a <= b"; MAX_OPERATORS].join(" || ");
        assert!(check_formula(&cmp).is_err());
        let cmp = vec!["a <= b"; MAX_OPERATORS / 2].join(" || ");
        assert_eq!(check_formula(&cmp), Ok(()));
        // Powers nest.
        let powers = |n: usize| format!("x{}", " ^ 1".repeat(n));
        assert_eq!(check_formula(&powers(MAX_NESTING)), Ok(()));
        assert!(check_formula(&powers(MAX_NESTING + 1)).is_err());
        // Strings and comments do not count.
        let s = format!("\"{}\" // {}", "(".repeat(100), "+".repeat(1000));
        assert_eq!(check_formula(&s), Ok(()));
    }

    #[test]
    fn sql_nesting_and_operators() {
        let n = MAX_NESTING - 1;
        let deep = format!("sum({}amount{})", "(".repeat(n), ")".repeat(n));
        assert_eq!(check_sql(&deep), Ok(()));
        let deeper = format!("sum({}amount{})", "(".repeat(n + 1), ")".repeat(n + 1));
        let e = check_sql(&deeper).unwrap_err();
        assert_eq!(&deeper[e.span.clone()], "(");
        let long = format!("sum(amount{})", " + 1".repeat(MAX_OPERATORS + 1));
        assert!(check_sql(&long).is_err());
        let quoted = format!("count(*) FILTER (WHERE note <> '{}')", "+".repeat(1000));
        assert_eq!(check_sql(&quoted), Ok(()));
        let cases = format!("sum(CASE {} ELSE 0 END)", "WHEN x > 1 THEN 1 ".repeat(200));
        assert!(check_sql(&cases).is_err());
    }
}
