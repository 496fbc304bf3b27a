//! Evaluation of a parsed filter against one item's JSON value: walking selectors through
//! objects and lists, and applying each operator to the value found.

use serde_json::{Number, Value};

use super::parser::{Expr, Literal, Match, Test};
use super::FilterError;

/// Evaluates `expr` against `item`; `and`/`or` short-circuit.
pub(super) fn eval(expr: &Expr, item: &Value) -> Result<bool, FilterError> {
    match expr {
        Expr::And(items) => {
            for e in items {
                if !eval(e, item)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Or(items) => {
            for e in items {
                if eval(e, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::Not(e) => Ok(!eval(e, item)?),
        Expr::Match(m) => walk(m, item, 0),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Follows the selector from segment `depth` on. A list met before the selector's end is
/// searched element by element with the same remaining selector, and matches if any element
/// does (bexpr's implicit "any"; an empty list matches nothing, whatever the operator). A
/// numeric segment on a list indexes it instead. A missing key, index or a null gives the
/// operator's "absent" result (see [`Match::when_absent`]).
fn walk(m: &Match, value: &Value, depth: usize) -> Result<bool, FilterError> {
    let Some(seg) = m.selector.path.get(depth) else {
        return leaf(m, value);
    };
    match value {
        Value::Object(map) => match map.get(seg) {
            Some(v) => walk(m, v, depth + 1),
            None => Ok(m.when_absent()),
        },
        Value::Array(items) => {
            if let Ok(idx) = seg.parse::<usize>() {
                return match items.get(idx) {
                    Some(v) => walk(m, v, depth + 1),
                    None => Ok(m.when_absent()),
                };
            }
            for v in items {
                if walk(m, v, depth)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Value::Null => Ok(m.when_absent()),
        other => Err(FilterError::NotNestable {
            selector: m.selector.display(depth),
            kind: kind(other),
            field: seg.clone(),
        }),
    }
}

fn bad_operator(m: &Match, value: &Value) -> FilterError {
    FilterError::Operator {
        operator: m.op_name,
        selector: m.selector.full(),
        kind: kind(value),
    }
}

fn coerce_error(m: &Match, lit: &Literal, expected: &'static str) -> FilterError {
    FilterError::Coerce {
        value: lit.raw.clone(),
        selector: m.selector.full(),
        expected,
    }
}

/// Equality of a JSON number with the literal, converted as bexpr converts it for the
/// field's type: integers must be written as integers, floats as numbers.
fn number_eq(n: &Number, lit: &Literal) -> Result<bool, &'static str> {
    if let Some(i) = n.as_i64() {
        match (lit.int, lit.uint) {
            (Some(l), _) => Ok(l == i),
            (None, Some(_)) => Ok(false),
            (None, None) => Err("an integer"),
        }
    } else if let Some(u) = n.as_u64() {
        lit.uint.map(|l| l == u).ok_or("an unsigned integer")
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        lit.float.map(|l| l == f).ok_or("a number")
    }
}

/// Applies the operator to the value the selector reached.
fn leaf(m: &Match, value: &Value) -> Result<bool, FilterError> {
    let positive = match (&m.test, value) {
        (_, Value::Null) => return Ok(m.when_absent()),
        (Test::Equal(lit), Value::String(s)) => *s == lit.raw,
        (Test::Equal(lit), Value::Number(n)) => {
            number_eq(n, lit).map_err(|e| coerce_error(m, lit, e))?
        }
        (Test::Equal(lit), Value::Bool(b)) => {
            *b == lit
                .boolean
                .ok_or_else(|| coerce_error(m, lit, "true or false"))?
        }
        (Test::Contains(lit), Value::String(s)) => s.contains(lit.raw.as_str()),
        (Test::Contains(lit), Value::Object(map)) => map.contains_key(&lit.raw),
        (Test::Contains(lit), Value::Array(items)) => items.iter().any(|item| match item {
            Value::String(s) => *s == lit.raw,
            // Elements the literal cannot be converted to simply do not match (bexpr's rule
            // for lists of mixed types).
            Value::Number(n) => number_eq(n, lit).unwrap_or(false),
            Value::Bool(b) => lit.boolean == Some(*b),
            _ => false,
        }),
        (Test::Empty, Value::String(s)) => s.is_empty(),
        (Test::Empty, Value::Array(items)) => items.is_empty(),
        (Test::Empty, Value::Object(map)) => map.is_empty(),
        (Test::Matches(re), Value::String(s)) => re.is_match(s),
        (_, other) => return Err(bad_operator(m, other)),
    };
    Ok(positive != m.negate)
}
