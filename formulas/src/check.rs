//! Validation of a formula file: names, references, cycles, population
//! functions, types and measure SQL. Collects every problem in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use crate::diagnostic::{Diagnostic, SourceFile, nearest};
use crate::expr::{self, Ast, BinOp, Func};
use crate::measure;
use crate::model::*;
use crate::syntax;

/// A checked formula: the file plus the parsed expressions, with derived
/// values in dependency order.
#[derive(Debug, Clone)]
pub struct Formula {
    pub file: FormulaFile,
    /// `(index into file.derived, expression)`, dependencies first.
    pub derived: Vec<(usize, Ast)>,
    /// One per `file.components`, same order.
    pub components: Vec<Ast>,
    pub score: Option<Ast>,
    pub weight: Option<Ast>,
    /// Columns each measure reads (expr and filter), by measure index.
    pub measure_columns: Vec<Vec<(String, Range<usize>)>>,
}

impl Formula {
    pub fn name(&self) -> &str {
        &self.file.name.value
    }
}

/// Value types of the formula syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Num,
    Bool,
}

/// Reads, parses and checks a formula file. The formula is `Some` only when
/// there is no error (warnings may remain).
pub fn check(file: &SourceFile) -> (Option<Formula>, Vec<Diagnostic>) {
    let (parsed, mut diags) = syntax::parse(file);
    let Some(f) = parsed else {
        return (None, diags);
    };
    let mut c = Checker {
        f: &f,
        file,
        diags: Vec::new(),
        earlier_errors: diags.iter().any(Diagnostic::is_error),
    };
    let checked = c.run();
    diags.append(&mut c.diags);
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    if diags.iter().any(Diagnostic::is_error) {
        return (None, diags);
    }
    (checked, diags)
}

struct Checker<'a> {
    f: &'a FormulaFile,
    file: &'a SourceFile,
    diags: Vec<Diagnostic>,
    /// Whether reading the file found errors: its warnings would then be
    /// knock-on effects (a measure "never used" by a component whose
    /// definition is broken), so they wait until the errors are fixed.
    earlier_errors: bool,
}

/// Where an expression appears, which decides what it may name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Derived,
    Component,
    Score,
    Weight,
}

impl Checker<'_> {
    fn run(&mut self) -> Option<Formula> {
        self.sizes();
        self.unique_names();
        let measure_columns = self.measures();
        self.dimensions();
        self.imputation();
        self.alternatives();
        self.test_expectations();

        let measures: BTreeSet<&str> = self
            .f
            .measures
            .iter()
            .map(|m| m.name.value.as_str())
            .collect();
        let derived_names: BTreeSet<&str> = self
            .f
            .derived
            .iter()
            .map(|d| d.name.value.as_str())
            .collect();
        let component_names: BTreeSet<&str> = self
            .f
            .components
            .iter()
            .map(|c| c.name.value.as_str())
            .collect();

        let mut derived_ast: BTreeMap<usize, Ast> = BTreeMap::new();
        for (i, d) in self.f.derived.iter().enumerate() {
            if let Some(a) = self.expression(
                &d.expr,
                Place::Derived,
                &measures,
                &derived_names,
                &component_names,
            ) {
                derived_ast.insert(i, a);
            }
        }
        let order = self.derived_order(&derived_ast);

        let mut components = Vec::new();
        for c in &self.f.components {
            components.push(self.expression(
                &c.expr,
                Place::Component,
                &measures,
                &derived_names,
                &component_names,
            ));
        }
        let score =
            self.f.score_expr.as_ref().map(|t| {
                self.expression(t, Place::Score, &measures, &derived_names, &component_names)
            });
        let weight = self.f.rollup_weight.as_ref().map(|t| {
            self.expression(
                t,
                Place::Weight,
                &measures,
                &derived_names,
                &component_names,
            )
        });
        if !self.earlier_errors && !self.diags.iter().any(Diagnostic::is_error) {
            self.warnings(&components, &derived_ast, &score, &weight);
        }

        let derived = order?
            .into_iter()
            .map(|i| derived_ast.remove(&i).map(|a| (i, a)))
            .collect::<Option<Vec<_>>>()?;
        Some(Formula {
            file: self.f.clone(),
            derived,
            components: components.into_iter().collect::<Option<Vec<_>>>()?,
            score: score.flatten(),
            weight: weight.flatten(),
            measure_columns,
        })
    }

    /// At most `limits::MAX_DEFINITIONS` of each kind (see `limits`).
    fn sizes(&mut self) {
        let max = crate::limits::MAX_DEFINITIONS;
        let kinds: [(&str, Vec<&Range<usize>>); 5] = [
            (
                "sources",
                self.f.sources.iter().map(|s| &s.name.span).collect(),
            ),
            (
                "dimensions",
                self.f.dimensions.iter().map(|d| &d.name.span).collect(),
            ),
            (
                "measures",
                self.f.measures.iter().map(|m| &m.name.span).collect(),
            ),
            (
                "derived values",
                self.f.derived.iter().map(|d| &d.name.span).collect(),
            ),
            (
                "components",
                self.f.components.iter().map(|c| &c.name.span).collect(),
            ),
        ];
        for (kind, spans) in kinds {
            if let Some(span) = spans.get(max) {
                self.diags.push(
                    Diagnostic::error(
                        "croo::too-many",
                        (*span).clone(),
                        format!(
                            "the formula has {} {kind}; a formula may have at most {max}",
                            spans.len()
                        ),
                    )
                    .with_label(format!("the {}th", max + 1)),
                );
            }
        }
    }

    fn unique_names(&mut self) {
        let mut seen: BTreeMap<&str, (&str, Range<usize>)> = BTreeMap::new();
        let all = self
            .f
            .measures
            .iter()
            .map(|m| ("measure", &m.name))
            .chain(self.f.derived.iter().map(|d| ("derived value", &d.name)))
            .chain(self.f.components.iter().map(|c| ("component", &c.name)));
        for (kind, name) in all {
            if let Some((first_kind, first)) = seen.get(name.value.as_str()) {
                let (l, c) = self.file.line_col(first.start);
                self.diags.push(
                    Diagnostic::error(
                        "croo::duplicate-name",
                        name.span.clone(),
                        format!("the name `{}` is used twice", name.value),
                    )
                    .with_label(format!("this {kind} has the name of a {first_kind}"))
                    .with_help(format!(
                        "measures, derived values and components share one namespace; the first `{}` is at line {l}, column {c}",
                        name.value
                    )),
                );
            } else {
                seen.insert(&name.value, (kind, name.span.clone()));
            }
        }
    }

    fn measures(&mut self) -> Vec<Vec<(String, Range<usize>)>> {
        let mut out = Vec::new();
        let sources: Vec<&str> = self
            .f
            .sources
            .iter()
            .map(|s| s.name.value.as_str())
            .collect();
        for m in &self.f.measures {
            let mut cols = Vec::new();
            if self.f.source(&m.source.value).is_some_and(|s| s.history) {
                self.diags.push(
                    Diagnostic::error(
                        "croo::measure-of-history",
                        m.source.span.clone(),
                        format!(
                            "measure `{}` reads history source `{}`",
                            m.name.value, m.source.value
                        ),
                    )
                    .with_label(
                        "a history source gives dimensions as of each period, not measures",
                    ),
                );
            }
            if self.f.source(&m.source.value).is_none() && !self.f.broken.contains(&m.source.value)
            {
                let mut d = Diagnostic::error(
                    "croo::unknown-source",
                    m.source.span.clone(),
                    format!(
                        "measure `{}` reads unknown source `{}`",
                        m.name.value, m.source.value
                    ),
                )
                .with_label("no such source");
                if let Some(n) = nearest(&m.source.value, sources.iter().copied()) {
                    d = d.with_help(format!("did you mean `{n}`?"));
                }
                self.diags.push(d);
            }
            match measure::check_measure_expr(&m.expr.value) {
                Ok(c) => {
                    for (name, r) in &c.aggregates {
                        if measure::is_never_a_number(name) {
                            self.diags.push(
                                Diagnostic::error(
                                    "croo::measure-type",
                                    m.expr.sub_span(r.clone()),
                                    format!(
                                        "measure `{}`: `{name}` gives a list or text, not a number",
                                        m.name.value
                                    ),
                                )
                                .with_label("not a number")
                                .with_help("a measure is one number per customer and period: count, sum, average, min or max the values"),
                            );
                        }
                    }
                    cols.extend(c.columns.into_iter().map(|(n, r)| (n, m.expr.sub_span(r))))
                }
                Err(problems) => {
                    for p in problems {
                        self.diags.push(
                            Diagnostic::error(
                                "croo::measure-expr",
                                m.expr.sub_span(p.span),
                                format!("measure `{}`: {}", m.name.value, p.message),
                            )
                            .with_label(p.label),
                        );
                    }
                }
            }
            if let Some(filter) = &m.filter {
                match measure::check_filter(&filter.value) {
                    Ok(c) => {
                        cols.extend(c.columns.into_iter().map(|(n, r)| (n, filter.sub_span(r))))
                    }
                    Err(problems) => {
                        for p in problems {
                            self.diags.push(
                                Diagnostic::error(
                                    "croo::measure-filter",
                                    filter.sub_span(p.span),
                                    format!("measure `{}`: {}", m.name.value, p.message),
                                )
                                .with_label(p.label),
                            );
                        }
                    }
                }
            }
            out.push(cols);
        }
        out
    }

    /// Every `[tests.expect]` key names a known dimension and component
    /// (each unknown one reported, with the known names).
    fn test_expectations(&mut self) {
        let dims: Vec<&str> = self
            .f
            .dimensions
            .iter()
            .map(|d| d.name.value.as_str())
            .collect();
        let comps: Vec<&str> = self
            .f
            .components
            .iter()
            .map(|c| c.name.value.as_str())
            .collect();
        let list = |names: &[&str]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        for t in &self.f.tests {
            for e in &t.expect {
                let key = match crate::ExpectKey::parse(&e.key.value) {
                    Ok(k) => k,
                    Err(why) => {
                        self.diags.push(
                            Diagnostic::error("croo::test-expect", e.key.span.clone(), why)
                                .with_label("unknown expectation"),
                        );
                        continue;
                    }
                };
                if let Some((d, _)) = &key.group
                    && !dims.contains(&d.as_str())
                {
                    let mut diag = Diagnostic::error(
                        "croo::test-expect",
                        e.key.span.clone(),
                        format!("unknown dimension `{d}` in an expectation"),
                    )
                    .with_label(format!("the dimensions are: {}", list(&dims)));
                    if let Some(n) = nearest(d, dims.iter().copied()) {
                        diag = diag.with_help(format!("did you mean `{n}`?"));
                    }
                    self.diags.push(diag);
                }
                if let crate::ExpectWhat::Rollup(c) | crate::ExpectWhat::Contribution(c) = &key.what
                    && !comps.contains(&c.as_str())
                {
                    let mut diag = Diagnostic::error(
                        "croo::test-expect",
                        e.key.span.clone(),
                        format!("unknown component `{c}` in an expectation"),
                    )
                    .with_label(format!("the components are: {}", list(&comps)));
                    if let Some(n) = nearest(c, comps.iter().copied()) {
                        diag = diag.with_help(format!("did you mean `{n}`?"));
                    }
                    self.diags.push(diag);
                }
            }
        }
    }

    /// `impute = { group_median = "D" }` names a dimension of the formula.
    fn imputation(&mut self) {
        for c in &self.f.components {
            if let Some(Impute::GroupMedian(d)) = &c.impute
                && !self.f.dimensions.iter().any(|x| x.name.value == d.value)
            {
                let known: Vec<&str> = self
                    .f
                    .dimensions
                    .iter()
                    .map(|x| x.name.value.as_str())
                    .collect();
                self.diags.push(
                    Diagnostic::error(
                        "croo::unknown-dimension",
                        d.span.clone(),
                        format!(
                            "`group_median = \"{}\"`: the formula has no dimension `{}`",
                            d.value, d.value
                        ),
                    )
                    .with_help(if known.is_empty() {
                        "declare it under [dimensions]".to_string()
                    } else {
                        format!("its dimensions: {}", known.join(", "))
                    }),
                );
            }
        }
    }

    /// Components' and the score's `alternatives` (what `croo explain
    /// --uncertainty` draws): a default combination of the components, a
    /// normalisation to replace, a known dimension, a winsorised measure;
    /// a warning when a geometric or harmonic alternative may meet a
    /// component at or below `-shift`.
    fn alternatives(&mut self) {
        let f = self.f;
        let declared = f
            .components
            .iter()
            .filter_map(|c| c.alternatives.span.clone())
            .chain(f.alternatives.span.clone());
        if let Some(expr) = &f.score_expr {
            for span in declared {
                self.diags.push(
                    Diagnostic::error(
                        "croo::invalid-key",
                        span,
                        "`alternatives` are drawn in the default combination of the components; `[score] expr` is a combination of its own",
                    )
                    .with_label(format!("`expr = \"{}\"`", expr.value)),
                );
            }
            return;
        }
        for c in &f.components {
            let Some(span) = c.alternatives.span.clone() else {
                continue;
            };
            if !c.alternatives.normalise.is_empty() {
                let used = expr::parse(&c.expr.value)
                    .map(|a| a.population_functions())
                    .unwrap_or_default();
                if used.len() != 1 {
                    self.diags.push(
                        Diagnostic::error(
                            "croo::invalid-value",
                            span.clone(),
                            format!(
                                "`alternatives.normalise` replaces the population function of component `{}`, which calls {}",
                                c.name.value,
                                if used.is_empty() {
                                    "none".to_string()
                                } else {
                                    used.iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(" and ")
                                }
                            ),
                        )
                        .with_help("normalise the component with exactly one of minmax, zscore or pct_rank"),
                    );
                }
            }
            for i in c.alternatives.impute.iter().flatten() {
                if let Impute::GroupMedian(d) = i
                    && !f.dimensions.iter().any(|x| x.name.value == d.value)
                {
                    self.diags.push(Diagnostic::error(
                        "croo::unknown-dimension",
                        d.span.clone(),
                        format!(
                            "`group_median = \"{}\"`: the formula has no dimension `{}`",
                            d.value, d.value
                        ),
                    ));
                }
            }
        }
        if let Some(span) = f.alternatives.span.clone()
            && f.alternatives.unwinsorised
            && f.measures.iter().all(|m| m.winsorise.is_none())
        {
            self.diags.push(
                Diagnostic::error(
                    "croo::invalid-value",
                    span,
                    "`alternatives.winsorise = [false]` draws scores without the measures' `winsorise`, but no measure declares one",
                )
                .with_help("add `winsorise` to a measure, or remove the alternative"),
            );
        }
        let span = f.alternatives.span.clone().unwrap_or(0..0);
        for method in &f.alternatives.method {
            if *method == Method::Arithmetic || *method == f.method {
                continue;
            }
            for c in &f.components {
                let Ok(a) = expr::parse(&c.expr.value) else {
                    continue;
                };
                let mut forms = vec![a.clone()];
                forms.extend(
                    c.alternatives
                        .normalise
                        .iter()
                        .map(|n| a.renormalised(n.func())),
                );
                if forms
                    .iter()
                    .any(|a| lower_bound(a).is_none_or(|b| b + f.shift <= 0.0))
                {
                    self.diags.push(
                        Diagnostic::warning(
                            "croo::not-positive",
                            span.clone(),
                            format!(
                                "component `{}` (or one of its normalisations) is not known to stay above {}: an uncertainty draw of the {} mean stops at the first customer without",
                                c.name.value,
                                if f.shift == 0.0 { 0.0 } else { -f.shift },
                                if *method == Method::Geometric { "geometric" } else { "harmonic" }
                            ),
                        )
                        .with_help("declare `shift` in [score], or keep the alternative to bounded normalisations"),
                    );
                }
            }
        }
    }

    fn dimensions(&mut self) {
        let mut seen = BTreeSet::new();
        let histories: Vec<&str> = self
            .f
            .sources
            .iter()
            .filter(|s| s.history)
            .map(|s| s.name.value.as_str())
            .collect();
        for d in &self.f.dimensions {
            if let Some(src) = &d.source
                && !self.f.broken.contains(&src.value)
            {
                match self.f.source(&src.value) {
                    Some(s) if s.history => {}
                    found => {
                        let mut e = Diagnostic::error(
                            "croo::not-a-history",
                            src.span.clone(),
                            match found {
                                Some(_) => format!(
                                    "dimension `{}` reads source `{}`, which is not a history source",
                                    d.name.value, src.value
                                ),
                                None => format!(
                                    "dimension `{}` reads unknown source `{}`",
                                    d.name.value, src.value
                                ),
                            },
                        )
                        .with_label("a history dimension reads a source with `role = \"history\"`");
                        if let Some(n) = nearest(&src.value, histories.iter().copied()) {
                            e = e.with_help(format!("did you mean `{n}`?"));
                        }
                        self.diags.push(e);
                    }
                }
            }
            if !seen.insert(d.name.value.as_str()) {
                self.diags.push(
                    Diagnostic::error(
                        "croo::duplicate-name",
                        d.name.span.clone(),
                        format!("dimension `{}` is declared twice", d.name.value),
                    )
                    .with_label("declared again here"),
                );
            }
        }
    }

    fn expression(
        &mut self,
        t: &Text,
        place: Place,
        measures: &BTreeSet<&str>,
        derived: &BTreeSet<&str>,
        components: &BTreeSet<&str>,
    ) -> Option<Ast> {
        let ast = match expr::parse(&t.value) {
            Ok(a) => a,
            Err(e) => {
                let mut d =
                    Diagnostic::error("croo::formula-syntax", t.sub_span(e.span), e.message)
                        .with_label("here");
                if let Some(h) = e.help {
                    d = d.with_help(h);
                }
                self.diags.push(d);
                return None;
            }
        };
        let mut ok = true;
        // identifiers
        for (name, span) in ast.identifiers() {
            let known = measures.contains(name)
                || derived.contains(name)
                || (place == Place::Score && components.contains(name))
                || self.f.broken.iter().any(|b| b == name);
            if known {
                continue;
            }
            ok = false;
            let mut candidates: Vec<&str> =
                measures.iter().chain(derived.iter()).copied().collect();
            if place == Place::Score {
                candidates.extend(components.iter().copied());
            }
            let mut d = Diagnostic::error(
                "croo::unknown-identifier",
                t.sub_span(span),
                format!("unknown identifier `{name}`"),
            )
            .with_label("not a measure or derived value");
            if let Some(n) = nearest(name, candidates.iter().copied()) {
                d = d.with_help(format!("did you mean `{n}`?"));
            } else if components.contains(name) {
                d = d.with_help("components can only be named in `score.expr`");
            }
            self.diags.push(d);
        }
        // population functions
        ok &= self.population_functions(&ast, t, place, false);
        // types
        match type_of(&ast) {
            Ok(Ty::Num) => {}
            Ok(Ty::Bool) => {
                ok = false;
                self.diags.push(
                    Diagnostic::error(
                        "croo::type",
                        t.sub_span(0..t.value.len()),
                        "this expression is a condition (true/false), but a number is needed",
                    )
                    .with_label("a boolean")
                    .with_help("use `if(condition, a, b)` to turn a condition into a number"),
                );
            }
            Err(msg) => {
                ok = false;
                self.diags.push(
                    Diagnostic::error("croo::type", t.sub_span(0..t.value.len()), msg)
                        .with_label("type mismatch"),
                );
            }
        }
        ok.then_some(ast)
    }

    #[recursive::recursive]
    fn population_functions(&mut self, ast: &Ast, t: &Text, place: Place, inside: bool) -> bool {
        let mut ok = true;
        match ast {
            Ast::Call(f, args, span) => {
                let pop = f.is_population();
                if pop && place == Place::Weight {
                    ok = false;
                    self.diags.push(
                        Diagnostic::error(
                            "croo::population-in-weight",
                            t.sub_span(span.clone()),
                            format!("population function `{}` cannot be used in `rollup.weight`", f.name()),
                        )
                        .with_label("population function")
                        .with_help("a rollup weight is a property of one customer; move the normalisation into a component"),
                    );
                } else if pop && inside {
                    ok = false;
                    self.diags.push(
                        Diagnostic::error(
                            "croo::nested-population",
                            t.sub_span(span.clone()),
                            format!(
                                "population function `{}` is nested in another population function",
                                f.name()
                            ),
                        )
                        .with_label("nested here")
                        .with_help("compute the inner one as a derived value first"),
                    );
                }
                for a in args {
                    ok &= self.population_functions(a, t, place, inside || pop);
                }
            }
            Ast::Neg(a) | Ast::Not(a) => ok &= self.population_functions(a, t, place, inside),
            Ast::Bin(_, l, r) => {
                ok &= self.population_functions(l, t, place, inside);
                ok &= self.population_functions(r, t, place, inside);
            }
            _ => {}
        }
        ok
    }

    /// Orders derived values so that each comes after what it uses; reports
    /// cycles. `None` when a cycle exists.
    fn derived_order(&mut self, asts: &BTreeMap<usize, Ast>) -> Option<Vec<usize>> {
        let index: BTreeMap<&str, usize> = self
            .f
            .derived
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.value.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = (0..self.f.derived.len())
            .map(|i| {
                asts.get(&i)
                    .map(|a| {
                        a.identifiers()
                            .iter()
                            .filter_map(|(n, _)| index.get(n).copied())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        // 0 = new, 1 = visiting, 2 = done
        let mut state = vec![0u8; deps.len()];
        let mut order = Vec::new();
        let mut cyclic = false;
        fn visit(
            i: usize,
            deps: &[Vec<usize>],
            state: &mut [u8],
            stack: &mut Vec<usize>,
            order: &mut Vec<usize>,
        ) -> Option<Vec<usize>> {
            match state[i] {
                2 => return None,
                1 => {
                    let pos = stack.iter().position(|&s| s == i).unwrap_or(0);
                    let mut cycle = stack[pos..].to_vec();
                    cycle.push(i);
                    return Some(cycle);
                }
                _ => {}
            }
            state[i] = 1;
            stack.push(i);
            for &d in &deps[i] {
                if let Some(c) = visit(d, deps, state, stack, order) {
                    return Some(c);
                }
            }
            stack.pop();
            state[i] = 2;
            order.push(i);
            None
        }
        for i in 0..deps.len() {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(i, &deps, &mut state, &mut stack, &mut order) {
                cyclic = true;
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&j| self.f.derived[j].name.value.as_str())
                    .collect();
                let first = &self.f.derived[cycle[0]];
                self.diags.push(
                    Diagnostic::error(
                        "croo::cycle",
                        first.name.span.clone(),
                        format!("derived values form a cycle: {}", names.join(" -> ")),
                    )
                    .with_label("this value depends on itself")
                    .with_help("break the cycle: a derived value cannot use itself, directly or through others"),
                );
                for &j in &cycle {
                    state[j] = 2;
                }
            }
        }
        (!cyclic).then_some(order)
    }

    fn warnings(
        &mut self,
        components: &[Option<Ast>],
        derived: &BTreeMap<usize, Ast>,
        score: &Option<Option<Ast>>,
        weight: &Option<Option<Ast>>,
    ) {
        let mut used: BTreeSet<String> = BTreeSet::new();
        let all = components
            .iter()
            .flatten()
            .chain(derived.values())
            .chain(score.iter().flatten())
            .chain(weight.iter().flatten());
        for a in all {
            used.extend(a.identifiers().into_iter().map(|(n, _)| n.to_string()));
        }
        for m in &self.f.measures {
            if !used.contains(&m.name.value) {
                self.diags.push(
                    Diagnostic::warning(
                        "croo::unused-measure",
                        m.name.span.clone(),
                        format!("measure `{}` is never used", m.name.value),
                    )
                    .with_label("not used by any derived value, component or weight"),
                );
            }
        }
        // A default applies to a customer with no rows in the period. A
        // measure over the entity source itself, with no time column and no
        // filter, always has the customer's own row: its default can never
        // apply (for a `count` it is always at least 1).
        for m in &self.f.measures {
            let Some(span) = m.default_span.clone() else {
                continue;
            };
            let Some(src) = self
                .f
                .sources
                .iter()
                .find(|s| s.name.value == m.source.value)
            else {
                continue;
            };
            if src.entity && src.time.is_none() && m.filter.is_none() {
                let is_count = m
                    .expr
                    .value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("count(");
                self.diags.push(
                    Diagnostic::warning(
                        "croo::redundant-default",
                        span,
                        format!(
                            "the default of measure `{}` never applies",
                            m.name.value
                        ),
                    )
                    .with_label(format!(
                        "every customer of the population has its own row in `{}`",
                        src.name.value
                    ))
                    .with_help(if is_count {
                        "a count over the entity source is at least 1 for every customer; remove `default`"
                    } else {
                        "`default` is for customers with no rows in the period; remove it, or add a `filter`"
                    }),
                );
            }
        }
        if self.f.method != Method::Arithmetic {
            for c in &self.f.components {
                let bound = expr::parse(&c.expr.value)
                    .ok()
                    .as_ref()
                    .and_then(lower_bound);
                if bound.is_none_or(|b| b + self.f.shift <= 0.0) {
                    self.diags.push(
                        Diagnostic::warning(
                            "croo::not-positive",
                            c.expr.span.clone(),
                            format!(
                                "component `{}` is not known to stay above {}: the {} mean needs every component + shift > 0, and a run stops at the first customer without",
                                c.name.value,
                                if self.f.shift == 0.0 { 0.0 } else { -self.f.shift },
                                if self.f.method == Method::Geometric { "geometric" } else { "harmonic" }
                            ),
                        )
                        .with_help("declare `shift` in [score] (added to every component, taken off the score), or make the component positive"),
                    );
                }
            }
        }
        if self.f.score_expr.is_none() && !self.f.components.is_empty() {
            let total: f64 = self.f.components.iter().map(|c| c.weight).sum();
            if (total - 1.0).abs() > 1e-9 && total.is_finite() {
                let c = &self.f.components[0];
                self.diags.push(
                    Diagnostic::warning(
                        "croo::weights-sum",
                        c.weight_span.clone(),
                        format!("component weights add up to {total}, not 1"),
                    )
                    .with_label("weights start here")
                    .with_help("scores are easier to read when the weights add up to 1"),
                );
            }
        }
    }
}

/// A lower bound of an expression's values, when its form gives one:
/// numbers, `minmax`, `pct_rank` and `goalpost` (0), `clamp` (its low
/// bound), sums and products of bounded non-negative parts.
#[recursive::recursive]
pub fn lower_bound(a: &Ast) -> Option<f64> {
    match a {
        Ast::Num(n) => Some(*n),
        Ast::Call(
            Func::MinMax | Func::PctRank | Func::Goalpost | Func::Abs | Func::Sqrt | Func::Exp,
            _,
            _,
        ) => Some(0.0),
        Ast::Call(Func::Clamp, args, _) => args.get(1).and_then(lower_bound),
        Ast::Bin(BinOp::Add, l, r) => Some(lower_bound(l)? + lower_bound(r)?),
        Ast::Bin(BinOp::Mul, l, r) => {
            let (a, b) = (lower_bound(l)?, lower_bound(r)?);
            (a >= 0.0 && b >= 0.0).then_some(a * b)
        }
        _ => None,
    }
}

/// The type of an expression, or why it has none.
#[recursive::recursive]
pub fn type_of(a: &Ast) -> Result<Ty, String> {
    let num = |a: &Ast, what: &str| -> Result<(), String> {
        match type_of(a)? {
            Ty::Num => Ok(()),
            Ty::Bool => Err(format!(
                "{what} needs a number, but got a condition (true/false)"
            )),
        }
    };
    let boolean = |a: &Ast, what: &str| -> Result<(), String> {
        match type_of(a)? {
            Ty::Bool => Ok(()),
            Ty::Num => Err(format!(
                "{what} needs a condition (true/false), but got a number"
            )),
        }
    };
    match a {
        Ast::Num(_) | Ast::Ident(..) => Ok(Ty::Num),
        Ast::Bool(_) => Ok(Ty::Bool),
        Ast::Neg(x) => num(x, "`-`").map(|_| Ty::Num),
        Ast::Not(x) => boolean(x, "`!`").map(|_| Ty::Bool),
        Ast::Bin(op, l, r) => {
            let what = format!("`{}`", op.symbol());
            match op {
                BinOp::And | BinOp::Or => {
                    boolean(l, &what)?;
                    boolean(r, &what)?;
                    Ok(Ty::Bool)
                }
                BinOp::Eq | BinOp::Neq => {
                    let (tl, tr) = (type_of(l)?, type_of(r)?);
                    if tl != tr {
                        return Err(format!("{what} compares a number with a condition"));
                    }
                    Ok(Ty::Bool)
                }
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    num(l, &what)?;
                    num(r, &what)?;
                    Ok(Ty::Bool)
                }
                _ => {
                    num(l, &what)?;
                    num(r, &what)?;
                    Ok(Ty::Num)
                }
            }
        }
        Ast::Call(f, args, _) => {
            let what = format!("`{}`", f.name());
            if *f == Func::IsNull {
                type_of(&args[0])?;
                return Ok(Ty::Bool);
            }
            if *f == Func::Coalesce {
                let first = type_of(&args[0])?;
                for x in &args[1..] {
                    if type_of(x)? != first {
                        return Err(
                            "the arguments of `coalesce` must all be numbers or all conditions"
                                .into(),
                        );
                    }
                }
                return Ok(first);
            }
            if *f == Func::If {
                boolean(&args[0], "the condition of `if`")?;
                let (ta, tb) = (type_of(&args[1])?, type_of(&args[2])?);
                if ta != tb {
                    return Err(
                        "the two branches of `if` must both be numbers or both conditions".into(),
                    );
                }
                return Ok(ta);
            }
            for x in args {
                num(x, &what)?;
            }
            Ok(Ty::Num)
        }
    }
}
