//! The parsed form of a filter expression (the AST) and the recursive-descent parser that
//! builds it from tokens, compiling regular expressions and pre-parsing literals on the way.

use regex::Regex;

use super::lexer::{Tok, Token};
use super::FilterError;

/// How deeply parentheses and `not`s may nest; deeper input is refused rather than risking
/// the stack.
const MAX_DEPTH: usize = 128;

/// A boolean expression. `and`/`or` chains are flat so that evaluation depth is bounded by
/// the nesting of parentheses, not by the length of the expression.
#[derive(Debug)]
pub(super) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Match(Box<Match>),
}

/// One matching expression: a selector, a test and whether the test is negated
/// (`!=`, `not in`, `not contains`, `is not empty`, `not matches`).
#[derive(Debug)]
pub(super) struct Match {
    pub selector: Selector,
    pub test: Test,
    pub negate: bool,
    /// The operator as written, for error messages.
    pub op_name: &'static str,
}

impl Match {
    /// The result when the selector names a map key (or list index) that is not there, or a
    /// null: as bexpr, `==`, `in`/`contains`, `is not empty` and `matches` are false, their
    /// negations (and `is empty`) true.
    pub(super) fn when_absent(&self) -> bool {
        matches!(self.test, Test::Empty) != self.negate
    }
}

/// The positive form of a matching operator.
#[derive(Debug)]
pub(super) enum Test {
    Equal(Literal),
    Contains(Literal),
    Empty,
    Matches(Box<Regex>),
}

/// A selector: the path of field names / map keys / list indexes.
#[derive(Debug, Clone)]
pub(super) struct Selector {
    pub path: Vec<String>,
}

impl Selector {
    /// The selector as a user would write it: `Service.Meta.env`, `Meta["a-b"]`.
    pub(super) fn display(&self, upto: usize) -> String {
        let mut out = String::new();
        for (i, seg) in self.path.iter().take(upto).enumerate() {
            let plain = seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/');
            let index = !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit());
            if plain || (index && i > 0) {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(seg);
            } else {
                out.push_str(&format!("[{seg:?}]"));
            }
        }
        out
    }

    pub(super) fn full(&self) -> String {
        self.display(self.path.len())
    }
}

/// A value from the expression, kept as written and pre-converted to each type a field may
/// have, so that evaluating 10,000 items converts nothing.
#[derive(Debug)]
pub(super) struct Literal {
    pub raw: String,
    pub int: Option<i64>,
    pub uint: Option<u64>,
    pub float: Option<f64>,
    pub boolean: Option<bool>,
}

impl Literal {
    pub(super) fn new(raw: String) -> Literal {
        Literal {
            int: parse_go_int(&raw),
            uint: parse_go_uint(&raw),
            float: parse_go_float(&raw),
            boolean: parse_go_bool(&raw),
            raw,
        }
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: decimal, `0x`, `0o`, `0b` or a leading-zero octal.
fn parse_go_uint(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    let lower = s.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        u64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        u64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') {
        u64::from_str_radix(&lower[1..], 8).ok()
    } else if !lower.is_empty() && lower.chars().all(|c| c.is_ascii_digit()) {
        lower.parse().ok()
    } else {
        None
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let magnitude = parse_go_uint(digits)?;
    if neg {
        if magnitude == 1u64 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseFloat(s, 64)`, near enough: decimal and exponent forms, `inf`, `nan`.
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.replace('_', "");
    if t.is_empty() || t.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    t.parse::<f64>().ok()
}

fn syntax(pos: usize, message: impl Into<String>) -> FilterError {
    FilterError::Syntax {
        position: pos,
        message: message.into(),
    }
}

/// Parses a whole expression.
pub(super) fn parse(tokens: Vec<Token>) -> Result<Expr, FilterError> {
    let mut p = Parser {
        toks: tokens,
        i: 0,
        depth: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Err(syntax(p.peek().pos, "empty expression"));
    }
    let expr = p.parse_or()?;
    let t = p.peek();
    match t.tok {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(syntax(
            t.pos,
            "unbalanced parentheses: \")\" without a matching \"(\"",
        )),
        _ => Err(syntax(
            t.pos,
            format!(
                "expected \"and\", \"or\" or the end of the expression, found {}",
                t.tok.describe()
            ),
        )),
    }
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // `tokenize` always ends with Eof and the parser never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.toks[(self.i + ahead).min(self.toks.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn is_kw(&self, ahead: usize, kw: &str) -> bool {
        matches!(&self.peek_at(ahead).tok, Tok::Ident(s) if s == kw)
    }

    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(
                pos,
                format!("expression nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_and()?];
        while self.is_kw(0, "or") {
            self.advance();
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_not()?];
        while self.is_kw(0, "and") {
            self.advance();
            items.push(self.parse_not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Expr, FilterError> {
        if self.is_kw(0, "not") {
            let t = self.advance();
            self.enter(t.pos)?;
            let inner = self.parse_not()?;
            self.depth -= 1;
            return Ok(match inner {
                Expr::Not(e) => *e,
                e => Expr::Not(Box::new(e)),
            });
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, FilterError> {
        if self.peek().tok == Tok::LParen {
            let open = self.advance();
            self.enter(open.pos)?;
            let inner = self.parse_or()?;
            self.depth -= 1;
            let close = self.peek().clone();
            if close.tok != Tok::RParen {
                return Err(syntax(
                    close.pos,
                    format!(
                        "unbalanced parentheses: expected \")\" to close the \"(\" at position {}, found {}",
                        open.pos,
                        close.tok.describe()
                    ),
                ));
            }
            self.advance();
            return Ok(inner);
        }
        self.parse_match().map(|m| Expr::Match(Box::new(m)))
    }

    /// `in` / `not in` next? Consumes them and says which.
    fn take_in(&mut self) -> Option<(bool, &'static str)> {
        if self.is_kw(0, "in") {
            self.advance();
            Some((false, "in"))
        } else if self.is_kw(0, "not") && self.is_kw(1, "in") {
            self.advance();
            self.advance();
            Some((true, "not in"))
        } else {
            None
        }
    }

    fn parse_match(&mut self) -> Result<Match, FilterError> {
        let first = self.peek().clone();
        match &first.tok {
            Tok::Str(s) => {
                self.advance();
                if let Some((negate, op_name)) = self.take_in() {
                    let selector = self.parse_selector_after(op_name)?;
                    return Ok(Match {
                        selector,
                        test: Test::Contains(Literal::new(s.clone())),
                        negate,
                        op_name,
                    });
                }
                if s.starts_with('/') {
                    let selector = json_pointer(s, first.pos)?;
                    return self.parse_operator(selector);
                }
                let t = self.peek();
                Err(syntax(
                    t.pos,
                    format!(
                        "expected \"in\" or \"not in\" after the value {s:?}, found {}",
                        t.tok.describe()
                    ),
                ))
            }
            Tok::Num(n) => {
                self.advance();
                let Some((negate, op_name)) = self.take_in() else {
                    let t = self.peek();
                    return Err(syntax(
                        t.pos,
                        format!(
                            "expected \"in\" or \"not in\" after the value {n}, found {}",
                            t.tok.describe()
                        ),
                    ));
                };
                let selector = self.parse_selector_after(op_name)?;
                Ok(Match {
                    selector,
                    test: Test::Contains(Literal::new(n.clone())),
                    negate,
                    op_name,
                })
            }
            Tok::Ident(_) => {
                let sel = self.parse_selector()?;
                if let Some((negate, op_name)) = self.take_in() {
                    // `web in Tags`: the unquoted identifier was the value.
                    let value = sel.path.join(".");
                    let selector = self.parse_selector_after(op_name)?;
                    return Ok(Match {
                        selector,
                        test: Test::Contains(Literal::new(value)),
                        negate,
                        op_name,
                    });
                }
                self.parse_operator(sel)
            }
            Tok::RParen => Err(syntax(
                first.pos,
                "unbalanced parentheses: expected an expression before \")\"",
            )),
            other => Err(syntax(
                first.pos,
                format!("expected a selector or a value, found {}", other.describe()),
            )),
        }
    }

    fn parse_selector_after(&mut self, op_name: &str) -> Result<Selector, FilterError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Ident(_) => self.parse_selector(),
            Tok::Str(s) if s.starts_with('/') => {
                self.advance();
                json_pointer(s, t.pos)
            }
            other => Err(syntax(
                t.pos,
                format!(
                    "expected a selector after {op_name:?}, found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// `Ident ( "." Ident | "." digits | "[" string "]" )*`, without whitespace around the
    /// dots or before the brackets.
    fn parse_selector(&mut self) -> Result<Selector, FilterError> {
        let first = self.advance();
        let Tok::Ident(name) = first.tok else {
            return Err(syntax(
                first.pos,
                format!("expected a selector, found {}", first.tok.describe()),
            ));
        };
        let mut path = vec![name];
        loop {
            let t = self.peek().clone();
            if t.space_before {
                break;
            }
            match t.tok {
                Tok::Dot => {
                    self.advance();
                    let seg = self.advance();
                    if seg.space_before {
                        return Err(syntax(seg.pos, "expected a field name right after \".\""));
                    }
                    match seg.tok {
                        Tok::Ident(s) => path.push(s),
                        Tok::Num(n) if !n.starts_with('-') => {
                            path.extend(n.split('.').map(str::to_owned))
                        }
                        other => {
                            return Err(syntax(
                                seg.pos,
                                format!(
                                    "expected a field name after \".\", found {}",
                                    other.describe()
                                ),
                            ))
                        }
                    }
                }
                Tok::LBracket => {
                    self.advance();
                    let key = self.advance();
                    let Tok::Str(k) = key.tok else {
                        return Err(syntax(
                            key.pos,
                            format!(
                                "invalid index: expected a quoted map key inside \"[ ]\", found {}",
                                key.tok.describe()
                            ),
                        ));
                    };
                    let close = self.advance();
                    if close.tok != Tok::RBracket {
                        return Err(syntax(
                            close.pos,
                            format!(
                                "unclosed index expression: expected \"]\", found {}",
                                close.tok.describe()
                            ),
                        ));
                    }
                    path.push(k);
                }
                _ => break,
            }
        }
        Ok(Selector { path })
    }

    fn parse_operator(&mut self, selector: Selector) -> Result<Match, FilterError> {
        let t = self.peek().clone();
        let (kind, negate, op_name) = match &t.tok {
            Tok::Eq => (Binary::Equal, false, "=="),
            Tok::Ne => (Binary::Equal, true, "!="),
            Tok::Ident(k) if k == "contains" => (Binary::Contains, false, "contains"),
            Tok::Ident(k) if k == "matches" => (Binary::Matches, false, "matches"),
            Tok::Ident(k) if k == "not" && self.is_kw(1, "contains") => (Binary::Contains, true, "not contains"),
            Tok::Ident(k) if k == "not" && self.is_kw(1, "matches") => (Binary::Matches, true, "not matches"),
            Tok::Ident(k) if k == "is" => {
                self.advance();
                let negate = if self.is_kw(0, "not") {
                    self.advance();
                    true
                } else {
                    false
                };
                let e = self.advance();
                if !matches!(&e.tok, Tok::Ident(s) if s == "empty") {
                    return Err(syntax(
                        e.pos,
                        format!(
                            "expected \"empty\" after \"is{}\", found {}",
                            if negate { " not" } else { "" },
                            e.tok.describe()
                        ),
                    ));
                }
                return Ok(Match {
                    selector,
                    test: Test::Empty,
                    negate,
                    op_name: if negate { "is not empty" } else { "is empty" },
                });
            }
            Tok::Eof => {
                return Err(syntax(
                    t.pos,
                    format!("expected an operator after the selector {:?}, found end of input", selector.full()),
                ))
            }
            other => {
                return Err(syntax(
                    t.pos,
                    format!(
                        "unknown operator {} after the selector {:?} (expected ==, !=, contains, not contains, \
                         matches, not matches, is empty or is not empty)",
                        other.describe(),
                        selector.full()
                    ),
                ))
            }
        };
        self.advance();
        if negate && op_name.starts_with("not") {
            self.advance();
        }
        let value_tok = self.peek().clone();
        let raw = match &value_tok.tok {
            Tok::Str(s) => {
                self.advance();
                s.clone()
            }
            Tok::Num(n) => {
                self.advance();
                n.clone()
            }
            Tok::Ident(_) => self.parse_selector()?.path.join("."),
            other => {
                return Err(syntax(
                    value_tok.pos,
                    format!(
                        "expected a value after {op_name:?}, found {}",
                        other.describe()
                    ),
                ))
            }
        };
        let test = match kind {
            Binary::Equal => Test::Equal(Literal::new(raw)),
            Binary::Contains => Test::Contains(Literal::new(raw)),
            Binary::Matches => match Regex::new(&raw) {
                Ok(re) => Test::Matches(Box::new(re)),
                Err(e) => {
                    return Err(FilterError::Regex {
                        position: value_tok.pos,
                        pattern: raw,
                        reason: e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    })
                }
            },
        };
        Ok(Match {
            selector,
            test,
            negate,
            op_name,
        })
    }
}

/// The operators that take a value on their right.
enum Binary {
    Equal,
    Contains,
    Matches,
}

/// A JSON-pointer selector (`"/Service/Meta/env"`), with `~1` for `/` and `~0` for `~`.
fn json_pointer(s: &str, pos: usize) -> Result<Selector, FilterError> {
    let path: Vec<String> = s[1..]
        .split('/')
        .map(|seg| seg.replace("~1", "/").replace("~0", "~"))
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(syntax(
            pos,
            format!("invalid JSON pointer selector {s:?}: empty segment"),
        ));
    }
    Ok(Selector { path })
}
