//! Tokens of the `?filter=` language: identifiers, quoted strings, numbers and punctuation,
//! each with the column where it starts.

use super::FilterError;

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// `[A-Za-z][A-Za-z0-9_/]*`; keywords (`and`, `or`, `not`, `in`, `contains`, `matches`,
    /// `is`, `empty`) are identifiers that the parser recognises by position.
    Ident(String),
    /// A `"double"` (escapes expanded) or `` `raw` `` string, unquoted.
    Str(String),
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, as written.
    Num(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Eq,
    Ne,
    Eof,
}

impl Tok {
    /// How the token is named in error messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(n) => format!("number {n}"),
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::LBracket => "\"[\"".into(),
            Tok::RBracket => "\"]\"".into(),
            Tok::Dot => "\".\"".into(),
            Tok::Eq => "\"==\"".into(),
            Tok::Ne => "\"!=\"".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// A token, the 1-based column (in characters) where it starts, and whether whitespace
/// precedes it (selectors may not contain whitespace around `.` and before `[`).
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tok: Tok,
    pub pos: usize,
    pub space_before: bool,
}

fn syntax(pos: usize, message: impl Into<String>) -> FilterError {
    FilterError::Syntax {
        position: pos,
        message: message.into(),
    }
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut space_before = false;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            space_before = true;
            i += 1;
            continue;
        }
        let (tok, next) = match c {
            '(' => (Tok::LParen, i + 1),
            ')' => (Tok::RParen, i + 1),
            '[' => (Tok::LBracket, i + 1),
            ']' => (Tok::RBracket, i + 1),
            '.' => (Tok::Dot, i + 1),
            '=' if chars.get(i + 1) == Some(&'=') => (Tok::Eq, i + 2),
            '!' if chars.get(i + 1) == Some(&'=') => (Tok::Ne, i + 2),
            '"' => lex_double(&chars, i)?,
            '`' => lex_raw(&chars, i)?,
            c if c.is_ascii_alphabetic() => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric() || matches!(chars[j], '_' | '/'))
                {
                    j += 1;
                }
                (Tok::Ident(chars[i..j].iter().collect()), j)
            }
            c if c.is_ascii_digit() => lex_number(&chars, i)?,
            '-' if chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => lex_number(&chars, i)?,
            '=' => return Err(syntax(pos, "unknown operator \"=\" (did you mean \"==\"?)")),
            '!' => {
                return Err(syntax(
                    pos,
                    "unknown operator \"!\" (did you mean \"!=\" or \"not\"?)",
                ))
            }
            '-' if out.last().is_some_and(|t: &Token| matches!(t.tok, Tok::Ident(_))) && !space_before => {
                return Err(syntax(
                    pos,
                    "unexpected character '-' (quote map keys and values that are not plain identifiers: \
                     Meta[\"a-b\"] == \"x-y\")",
                ))
            }
            other => return Err(syntax(pos, format!("unexpected character {other:?}"))),
        };
        out.push(Token {
            tok,
            pos,
            space_before,
        });
        space_before = false;
        i = next;
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len() + 1,
        space_before,
    });
    Ok(out)
}

fn lex_number(chars: &[char], start: usize) -> Result<(Tok, usize), FilterError> {
    let mut j = start;
    if chars[j] == '-' {
        j += 1;
    }
    let int_start = j;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    let bad = |at: usize| {
        syntax(
            start + 1,
            format!(
                "invalid number literal {:?}",
                chars[start..at.min(chars.len())].iter().collect::<String>()
            ),
        )
    };
    if chars[int_start] == '0' && j - int_start > 1 {
        return Err(bad(j));
    }
    if j + 1 < chars.len() && chars[j] == '.' && chars[j + 1].is_ascii_digit() {
        j += 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
    }
    // A number must be followed by whitespace, the end, a closing parenthesis or (inside a
    // selector such as `Foo.0.Bar`) a dot; `80x` is not a number.
    if let Some(&c) = chars.get(j) {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '"' | '`' | '-') {
            let mut end = j;
            while end < chars.len() && !chars[end].is_whitespace() && chars[end] != ')' {
                end += 1;
            }
            return Err(bad(end));
        }
    }
    Ok((Tok::Num(chars[start..j].iter().collect()), j))
}

fn lex_raw(chars: &[char], start: usize) -> Result<(Tok, usize), FilterError> {
    let mut j = start + 1;
    while j < chars.len() && chars[j] != '`' {
        j += 1;
    }
    if j >= chars.len() {
        return Err(syntax(start + 1, "unterminated string literal"));
    }
    Ok((Tok::Str(chars[start + 1..j].iter().collect()), j + 1))
}

/// A double-quoted string with Go's escapes (`\n`, `\t`, `\\`, `\"`, `\xHH`, `\uHHHH`,
/// `\UHHHHHHHH`, octal `\NNN`, ...).
fn lex_double(chars: &[char], start: usize) -> Result<(Tok, usize), FilterError> {
    let mut out = String::new();
    let mut j = start + 1;
    loop {
        let Some(&c) = chars.get(j) else {
            return Err(syntax(start + 1, "unterminated string literal"));
        };
        match c {
            '"' => return Ok((Tok::Str(out), j + 1)),
            '\n' => return Err(syntax(j + 1, "newline in string literal")),
            '\\' => {
                let esc_pos = j + 1;
                let Some(&e) = chars.get(j + 1) else {
                    return Err(syntax(start + 1, "unterminated string literal"));
                };
                j += 2;
                let simple = match e {
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    '\'' => Some('\''),
                    _ => None,
                };
                if let Some(s) = simple {
                    out.push(s);
                    continue;
                }
                let (digits, radix) = match e {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => {
                        j -= 1;
                        (3, 8)
                    }
                    other => {
                        return Err(syntax(
                            esc_pos,
                            format!("invalid escape sequence \"\\{other}\" in string literal"),
                        ));
                    }
                };
                let hex: String = chars.iter().skip(j).take(digits).collect();
                let code = if hex.chars().count() == digits {
                    u32::from_str_radix(&hex, radix).ok()
                } else {
                    None
                };
                let ch = code.and_then(char::from_u32);
                match ch {
                    Some(ch) if radix == 16 || code.is_some_and(|c| c <= 0xff) => out.push(ch),
                    _ => {
                        return Err(syntax(esc_pos, "invalid escape sequence in string literal"));
                    }
                }
                j += digits;
            }
            other => {
                out.push(other);
                j += 1;
            }
        }
    }
}
