//! The reference interpreter: evaluates formula syntax one row at a time
//! with `evalexpr`, for differential tests and benchmarks. Never used to
//! compute results.

use evalexpr::{
    ContextWithMutableFunctions, ContextWithMutableVariables, EvalexprError, Function,
    HashMapContext, Node, Value,
};

/// Rewrites croo's function names to evalexpr's (`sqrt` → `math::sqrt`).
pub fn to_evalexpr_syntax(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let is_call = rest[end..].trim_start().starts_with('(');
        match word {
            "sqrt" | "ln" | "exp" | "abs" if is_call => {
                out.push_str("math::");
                out.push_str(word);
            }
            _ => out.push_str(word),
        }
        rest = &rest[end..];
    }
    out
}

/// A compiled evalexpr tree with the names of its variables.
pub struct Reference {
    node: Node,
    names: Vec<String>,
    ctx: HashMapContext,
}

impl Reference {
    /// Parses formula syntax for the reference interpreter.
    pub fn new(text: &str, names: &[&str]) -> Result<Self, String> {
        let node =
            evalexpr::build_operator_tree(&to_evalexpr_syntax(text)).map_err(|e| e.to_string())?;
        let mut ctx = HashMapContext::new();
        // `div(x, y)` and `rem(x, y)`: `/` and `%` that fail on a zero
        // divisor, so that rows where croo gives NULL are recognisable.
        for (name, modulo) in [("div", false), ("rem", true)] {
            ctx.set_function(
                name.into(),
                Function::new(move |arg| {
                    let t = arg.as_fixed_len_tuple(2)?;
                    let (x, y) = (t[0].as_number()?, t[1].as_number()?);
                    if y == 0.0 {
                        return Err(EvalexprError::CustomMessage("division by zero".into()));
                    }
                    Ok(Value::Float(if modulo { x % y } else { x / y }))
                }),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            node,
            names: names.iter().map(|s| s.to_string()).collect(),
            ctx,
        })
    }

    /// Evaluates the expression for one row of Float values. `None` when
    /// evalexpr fails (for instance a division error) or yields no number.
    pub fn eval(&mut self, values: &[f64]) -> Option<f64> {
        for (n, v) in self.names.iter().zip(values) {
            self.ctx.set_value(n.clone(), Value::Float(*v)).ok()?;
        }
        match self.node.eval_with_context(&self.ctx).ok()? {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_math_functions_only_in_calls() {
        assert_eq!(
            to_evalexpr_syntax("sqrt(x) + exp_total"),
            "math::sqrt(x) + exp_total"
        );
        assert_eq!(to_evalexpr_syntax("abs (a-b)"), "math::abs (a-b)");
    }

    #[test]
    fn evaluates_floats() {
        let mut r = Reference::new("a / b + min(a, 2)", &["a", "b"]).unwrap();
        assert_eq!(r.eval(&[7.0, 2.0]), Some(5.5));
        let mut r = Reference::new("div(a, b) + rem(a, b)", &["a", "b"]).unwrap();
        assert_eq!(r.eval(&[7.0, 2.0]), Some(4.5));
        assert_eq!(r.eval(&[7.0, 0.0]), None);
    }
}
