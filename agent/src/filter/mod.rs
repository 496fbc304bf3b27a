//! Consul's `?filter=` expressions (go-bexpr syntax), parsed once and evaluated against the
//! JSON shape of each result item.
//!
//! This module knows nothing about HTTP or the state store: a handler parses the query
//! parameter with [`Filter::parse`] (a [`FilterError`] there is a 400), then filters the
//! wire-shaped items it was about to return with [`Filter::apply`].
//!
//! # Grammar (as go-bexpr's)
//!
//! ```text
//! expr      := and ("or" and)*
//! and       := not ("and" not)*
//! not       := "not" not | "(" expr ")" | match
//! match     := selector ("==" | "!=" | "contains" | "not contains"
//!                        | "matches" | "not matches") value
//!            | selector "is" ["not"] "empty"
//!            | value ("in" | "not in") selector
//! selector  := ident ("." ident | "." digits | "[" string "]")*   -- no spaces inside
//!            | "\"/json/pointer\""                               -- bexpr's pointer form
//! ident     := [A-Za-z][A-Za-z0-9_/]*
//! value     := string | number | selector (taken as its dotted text, e.g. `web` or `a.b`)
//! string    := "double-quoted, Go escapes" | `backtick, raw`
//! number    := -?(0|[1-9][0-9]*)(.[0-9]+)?
//! ```
//!
//! `not` binds tighter than `and`, which binds tighter than `or`.
//!
//! # Semantics (as go-bexpr's reflection evaluator, which Consul's docs describe)
//!
//! * Strings: `==`/`!=` compare, `in`/`contains` is substring, `matches` is a regular
//!   expression (RE2 syntax, compiled at parse time), `is empty` is the empty string.
//! * Numbers and bools: `==`/`!=` only; the literal is converted to the field's type as bexpr
//!   does (`Port == 8080`, `Port == "8080"`, `EnableTagOverride == true`, Go's `ParseBool`
//!   spellings); a literal that does not convert (`Port == web`) is an error.
//! * Lists: `in`/`contains` is membership, `is empty` the length; maps: `in`/`contains` is
//!   key presence, `is empty` the length. `==` on a list or map is an error.
//! * Selectors walk objects by key. A list met *before* the selector's end is searched element
//!   by element, and the match expression is true if it is true for any element
//!   (`Checks.Status == critical`: some check is critical; `Checks.Status != passing`: some
//!   check is not passing); an empty list makes it false whatever the operator. A numeric
//!   segment indexes a list (`Checks.0.Status`).
//! * A key missing below the top level (a map key such as `Meta.env`) or a null is "absent":
//!   `==`, `in`/`contains`, `is not empty`, `matches` are false; `!=`, `not in`,
//!   `not contains`, `is empty`, `not matches` are true.
//! * Unknown selectors: Consul checks selectors against the Go type and answers
//!   `Selector "Foo" is not valid`. Without static types the rule here is: when the item is a
//!   JSON object, the first segment of every selector in the expression must be one of its
//!   keys (checked before evaluating, so short-circuiting does not hide a typo); otherwise
//!   [`FilterError::UnknownSelector`]. Below the first segment Muster cannot tell a struct
//!   field from a map key, so a missing key is "absent" as above. Wire types should therefore
//!   serialize every field Consul documents as filterable, even when empty.

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use serde::Serialize;
use serde_json::Value;

/// Why an expression could not be parsed or evaluated. Every variant except
/// [`FilterError::Serialize`] is the client's fault (HTTP 400), and its `Display` is written
/// to be returned as the response body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// Malformed expression; `position` is the 1-based column (in characters).
    #[error("Failed to create boolean expression evaluator: syntax error at position {position}: {message}")]
    Syntax { position: usize, message: String },
    /// The value of `matches` / `not matches` is not a valid regular expression.
    #[error(
        "Failed to create boolean expression evaluator: Failed to compile regular expression {pattern:?} at position {position}: {reason}"
    )]
    Regex {
        position: usize,
        pattern: String,
        reason: String,
    },
    /// The selector's first segment is not a field of the item.
    #[error("Failed to create boolean expression evaluator: Selector {selector:?} is not valid: no field {field:?}")]
    UnknownSelector { selector: String, field: String },
    /// The operator cannot apply to the kind of value the selector reached.
    #[error("Failed to create boolean expression evaluator: Invalid match operator {operator:?} for selector {selector:?}: it selects {kind}")]
    Operator {
        operator: &'static str,
        selector: String,
        kind: &'static str,
    },
    /// The literal cannot be converted to the type of the selected field.
    #[error("Failed to create boolean expression evaluator: Failed to coerce value {value:?} for selector {selector:?}: expected {expected}")]
    Coerce {
        value: String,
        selector: String,
        expected: &'static str,
    },
    /// The selector goes on below a string, number or bool.
    #[error(
        "Failed to create boolean expression evaluator: Value at selector {selector:?} is {kind} and has no field {field:?}"
    )]
    NotNestable {
        selector: String,
        kind: &'static str,
        field: String,
    },
    /// An item could not be turned into JSON (a server-side bug, HTTP 500).
    #[error("Failed to serialize an item for filtering: {0}")]
    Serialize(String),
}

impl FilterError {
    /// True when the request is at fault (HTTP 400); false for [`FilterError::Serialize`].
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, FilterError::Serialize(_))
    }
}

/// A parsed `?filter=` expression: parse once, evaluate against many items.
#[derive(Debug)]
pub struct Filter {
    expr: parser::Expr,
    /// Distinct first segments of the selectors, with a selector to name in errors.
    roots: Vec<(String, String)>,
}

impl Filter {
    /// Parses `expr`, compiling its regular expressions and converting its literals.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let tokens = lexer::tokenize(expr)?;
        let expr = parser::parse(tokens)?;
        let mut roots: Vec<(String, String)> = Vec::new();
        collect_roots(&expr, &mut roots);
        Ok(Filter { expr, roots })
    }

    /// Whether `item` (the JSON shape of one result, PascalCase keys) matches.
    pub fn matches(&self, item: &Value) -> Result<bool, FilterError> {
        if let Value::Object(map) = item {
            for (field, selector) in &self.roots {
                if !map.contains_key(field) {
                    return Err(FilterError::UnknownSelector {
                        selector: selector.clone(),
                        field: field.clone(),
                    });
                }
            }
        }
        eval::eval(&self.expr, item)
    }

    /// Keeps the items whose JSON form matches, in order. An item that cannot be evaluated
    /// (unknown selector, wrong operator for its type) makes the whole call fail.
    pub fn apply<T: Serialize>(&self, items: Vec<T>) -> Result<Vec<T>, FilterError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let value =
                serde_json::to_value(&item).map_err(|e| FilterError::Serialize(e.to_string()))?;
            if self.matches(&value)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Keeps the entries of a map-shaped response (`/v1/agent/services`, keyed by ID) whose
    /// *value* matches, as bexpr filters a Go map; works for any map type (`BTreeMap`,
    /// `HashMap`, ...).
    pub fn apply_values<K, V, M>(&self, map: M) -> Result<M, FilterError>
    where
        V: Serialize,
        M: IntoIterator<Item = (K, V)> + FromIterator<(K, V)>,
    {
        let mut kept = Vec::new();
        for (k, v) in map {
            let value =
                serde_json::to_value(&v).map_err(|e| FilterError::Serialize(e.to_string()))?;
            if self.matches(&value)? {
                kept.push((k, v));
            }
        }
        Ok(kept.into_iter().collect())
    }
}

fn collect_roots(expr: &parser::Expr, roots: &mut Vec<(String, String)>) {
    match expr {
        parser::Expr::And(items) | parser::Expr::Or(items) => {
            for e in items {
                collect_roots(e, roots);
            }
        }
        parser::Expr::Not(e) => collect_roots(e, roots),
        parser::Expr::Match(m) => {
            if let Some(first) = m.selector.path.first() {
                if !roots.iter().any(|(f, _)| f == first) {
                    roots.push((first.clone(), m.selector.full()));
                }
            }
        }
    }
}
