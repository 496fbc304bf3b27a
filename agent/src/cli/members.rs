//! `muster members`: the gossip members from `/v1/agent/members` as Consul prints them (the
//! standard and `-detailed` tables, the `-status` regular-expression filter, exit 2 when nothing
//! matches), with the table building as pure functions.

use std::cmp::Ordering;
use std::net::IpAddr;

use muster_api::client::MembersOptions;
use muster_api::types::Member;

use super::http_flags;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Lists the members of a Muster cluster";

/// Consul's `api.AllSegments`: the default of `-segment`.
pub const ALL_SEGMENTS: &str = "_all";

pub fn spec() -> Spec {
    let mut flags = http_flags::all();
    flags.extend([
        Flag::bool("detailed", "Provides detailed information about nodes."),
        Flag::bool(
            "wan",
            "If the agent is in server mode, this can be used to return the other peers in \
             the WAN pool.",
        ),
        Flag::string(
            "status",
            "string",
            "If provided, output is filtered to only nodes matching the regular expression for \
             status.",
        ),
        Flag::string(
            "segment",
            "string",
            "(Enterprise-only) If provided, output is filtered to only nodes in the given \
             segment.",
        ),
        Flag::string("filter", "string", "Filter to use with the request"),
    ]);
    Spec {
        name: "members",
        help: HELP,
        flags,
    }
}

const HELP: &str = "
Usage: muster members [options]

  Outputs the members of a running Muster agent.
";

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let parsed = match spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let status = parsed.string("status").unwrap_or_else(|| ".*".to_string());
    let status_re = match Regex::new(&status) {
        Ok(re) => re,
        Err(e) => {
            ui.error(&format!("Failed to compile status regexp: {e}"));
            return 1;
        }
    };
    let Some((client, _)) = super::http_flags::connect(&parsed, ui) else {
        return 1;
    };
    let segment = parsed
        .string("segment")
        .unwrap_or_else(|| ALL_SEGMENTS.to_string());
    let opts = MembersOptions {
        wan: parsed.flag("wan"),
        // Muster has no network segments: "_all" and none mean the same, so only an explicit
        // segment is sent.
        segment: Some(segment.clone()).filter(|s| s != ALL_SEGMENTS),
        filter: parsed.string("filter"),
    };
    let members = match client.agent_members_with(&opts).await {
        Ok(m) => m,
        Err(e) => {
            ui.error(&format!("Error retrieving members: {e}"));
            return 1;
        }
    };
    let members = prepare(members, &segment, &status_re);
    if members.is_empty() {
        return 2;
    }
    let lines = if parsed.flag("detailed") {
        detailed_lines(&members)
    } else {
        standard_lines(&members)
    };
    ui.output(&columnize(&lines));
    0
}

/// Fills in the partition/segment tags as Consul's command does, keeps the members whose status
/// matches, and sorts them: servers first, then the default partition, then by segment,
/// partition and name.
pub fn prepare(members: Vec<Member>, segment: &str, status: &Regex) -> Vec<Member> {
    let mut kept: Vec<Member> = members
        .into_iter()
        .map(|mut m| {
            let partition = m.tags.entry("ap".to_string()).or_default();
            if partition.is_empty() {
                *partition = "default".to_string();
            }
            if is_default(&tag(&m, "ap")) {
                if segment == ALL_SEGMENTS && tag(&m, "role") == "consul" {
                    m.tags.insert("segment".into(), "<all>".into());
                } else if tag(&m, "segment").is_empty() {
                    m.tags.insert("segment".into(), "<default>".into());
                }
            } else {
                m.tags.insert("segment".into(), String::new());
            }
            m
        })
        .filter(|m| status.is_match(m.status_name()))
        .collect();
    kept.sort_by(compare);
    kept
}

fn tag(m: &Member, key: &str) -> String {
    m.tags.get(key).cloned().unwrap_or_default()
}

fn is_default(partition: &str) -> bool {
    partition.is_empty() || partition == "default"
}

fn compare(a: &Member, b: &Member) -> Ordering {
    let server = |m: &Member| tag(m, "role") != "consul";
    let non_default = |m: &Member| !is_default(&tag(m, "ap"));
    server(a)
        .cmp(&server(b))
        .then_with(|| non_default(a).cmp(&non_default(b)))
        .then_with(|| tag(a, "segment").cmp(&tag(b, "segment")))
        .then_with(|| tag(a, "ap").cmp(&tag(b, "ap")))
        .then_with(|| a.name.cmp(&b.name))
}

/// Go's `net.TCPAddr{IP, Port}.String()`.
pub fn tcp_addr(addr: &str, port: u16) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => format!("{v4}:{port}"),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{port}"),
            None => format!("[{v6}]:{port}"),
        },
        Err(_) => format!(":{port}"),
    }
}

const SEP: char = '\u{1f}';

/// The standard table's lines (columns separated by 0x1f): Node, Address, Status, Type, Build,
/// Protocol, DC, Partition, Segment. `role` `consul` is a server, `node` a client.
pub fn standard_lines(members: &[Member]) -> Vec<String> {
    let mut lines = vec![[
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ]
    .join(&SEP.to_string())];
    for m in members {
        let addr = tcp_addr(&m.addr, m.port);
        let mut build = tag(m, "build");
        if build.is_empty() {
            build = "< 0.3".to_string();
        } else if let Some(i) = build.find(':') {
            build.truncate(i);
        }
        let kind = match tag(m, "role").as_str() {
            "node" => Some("client"),
            "consul" => Some("server"),
            _ => None,
        };
        let fields: Vec<String> = match kind {
            Some(kind) => vec![
                m.name.clone(),
                addr,
                m.status_name().to_string(),
                kind.to_string(),
                build,
                tag(m, "vsn"),
                tag(m, "dc"),
                tag(m, "ap"),
                tag(m, "segment"),
            ],
            None => vec![
                m.name.clone(),
                addr,
                m.status_name().to_string(),
                "unknown".to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
        };
        lines.push(fields.join(&SEP.to_string()));
    }
    lines
}

/// The `-detailed` table's lines: Node, Address, Status, and all tags as `k=v,...` sorted.
pub fn detailed_lines(members: &[Member]) -> Vec<String> {
    let mut lines = vec![["Node", "Address", "Status", "Tags"].join(&SEP.to_string())];
    for m in members {
        let tags = m
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        lines.push(
            [
                m.name.clone(),
                tcp_addr(&m.addr, m.port),
                m.status_name().to_string(),
                tags,
            ]
            .join(&SEP.to_string()),
        );
    }
    lines
}

/// `columnize.Format` with delimiter 0x1f and glue "  ": cells trimmed, every column but a
/// line's last padded to the column's width, no trailing newline.
pub fn columnize(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split(SEP).map(str::trim).collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str("  ");
            }
        }
        out.push('\n');
    }
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// The subset of Go's regular expressions `-status` needs: literals, `.`, classes `[...]`,
/// groups `(...)`/`(?:...)`, alternation `|`, `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` (all
/// greedy, `?` suffix accepted for lazy), anchors `^` `$`, and escapes (`\d`, `\w`, `\s`, ...).
/// Unanchored search, as Go's `MatchString`. Member statuses are a few letters long, so a
/// backtracking matcher is plenty.
#[derive(Debug, Clone)]
pub struct Regex {
    alternatives: Vec<Vec<Node>>,
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat {
        node: Box<Node>,
        min: usize,
        max: Option<usize>,
    },
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl ClassItem {
    fn matches(&self, c: char) -> bool {
        match self {
            ClassItem::Range(a, b) => *a <= c && c <= *b,
            ClassItem::Digit(neg) => c.is_ascii_digit() != *neg,
            ClassItem::Word(neg) => (c.is_ascii_alphanumeric() || c == '_') != *neg,
            ClassItem::Space(neg) => matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c') != *neg,
        }
    }
}

impl Regex {
    /// Compiles `pattern`; the error reads like Go's (`error parsing regexp: ...`).
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parser = Parser {
            chars: &chars,
            pos: 0,
        };
        let fail = |what: &str| format!("error parsing regexp: {what}: `{pattern}`");
        let alternatives = parser.alternation().map_err(|e| fail(&e))?;
        if parser.pos < chars.len() {
            return Err(fail("unexpected )"));
        }
        Ok(Regex { alternatives })
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let input: Vec<char> = text.chars().collect();
        let m = Matcher { input: &input };
        (0..=input.len()).any(|start| m.alt(&self.alternatives, start, &mut |_| true))
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Vec<Vec<Node>>, String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, String> {
        let mut nodes = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            let atom = self.quantified(atom)?;
            nodes.push(atom);
        }
        Ok(nodes)
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let mut node = atom;
        loop {
            let Some(op) = self.peek() else {
                return Ok(node);
            };
            let (min, max) = match op {
                '*' => (0, None),
                '+' => (1, None),
                '?' => (0, Some(1)),
                '{' => match self.braces() {
                    Some(bounds) => bounds,
                    None => return Ok(node),
                },
                _ => return Ok(node),
            };
            if op != '{' {
                self.pos += 1;
            }
            if matches!(node, Node::Start | Node::End) || matches!(node, Node::Repeat { .. }) {
                return Err(format!("invalid nested repetition operator: `{op}`"));
            }
            if self.peek() == Some('?') {
                // Lazy: same matches for a yes/no question.
                self.pos += 1;
            }
            node = Node::Repeat {
                node: Box::new(node),
                min,
                max,
            };
        }
    }

    /// `{n}`, `{n,}`, `{n,m}`; consumes them. `None` (nothing consumed) if not a repetition.
    fn braces(&mut self) -> Option<(usize, Option<usize>)> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let end = rest.find('}')?;
        let body = &rest[1..end];
        let (min, max) = match body.split_once(',') {
            None => {
                let n = body.parse().ok()?;
                (n, Some(n))
            }
            Some((a, "")) => (a.parse().ok()?, None),
            Some((a, b)) => (a.parse().ok()?, Some(b.parse().ok()?)),
        };
        self.pos += rest[..=end].chars().count();
        Some((min, max))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let Some(c) = self.peek() else {
            return Err("missing argument".into());
        };
        self.pos += 1;
        match c {
            '.' => Ok(Node::Any),
            '^' => Ok(Node::Start),
            '$' => Ok(Node::End),
            '*' | '+' | '?' => Err(format!("missing argument to repetition operator: `{c}`")),
            '(' => {
                if self.chars[self.pos..].starts_with(&['?', ':']) {
                    self.pos += 2;
                }
                let alts = self.alternation()?;
                if self.peek() != Some(')') {
                    return Err("missing closing )".into());
                }
                self.pos += 1;
                Ok(Node::Group(alts))
            }
            '[' => self.class(),
            '\\' => match self.escape()? {
                Escaped::Char(c) => Ok(Node::Char(c)),
                Escaped::Class(item) => Ok(Node::Class {
                    negated: false,
                    items: vec![item],
                }),
            },
            c => Ok(Node::Char(c)),
        }
    }

    fn escape(&mut self) -> Result<Escaped, String> {
        let Some(c) = self.peek() else {
            return Err("trailing backslash at end of expression".into());
        };
        self.pos += 1;
        Ok(match c {
            'd' => Escaped::Class(ClassItem::Digit(false)),
            'D' => Escaped::Class(ClassItem::Digit(true)),
            'w' => Escaped::Class(ClassItem::Word(false)),
            'W' => Escaped::Class(ClassItem::Word(true)),
            's' => Escaped::Class(ClassItem::Space(false)),
            'S' => Escaped::Class(ClassItem::Space(true)),
            'n' => Escaped::Char('\n'),
            't' => Escaped::Char('\t'),
            c if c.is_ascii_alphanumeric() => {
                return Err(format!("invalid escape sequence: `\\{c}`"))
            }
            c => Escaped::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err("missing closing ]".into());
            };
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                match self.escape()? {
                    Escaped::Char(c) => c,
                    Escaped::Class(item) => {
                        items.push(item);
                        continue;
                    }
                }
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|n| *n != ']') {
                self.pos += 1;
                let Some(mut hi) = self.peek() else {
                    return Err("missing closing ]".into());
                };
                self.pos += 1;
                if hi == '\\' {
                    match self.escape()? {
                        Escaped::Char(c) => hi = c,
                        Escaped::Class(_) => return Err("invalid character class range".into()),
                    }
                }
                if hi < lo {
                    return Err(format!("invalid character class range: `{lo}-{hi}`"));
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Range(lo, lo));
            }
        }
        Ok(Node::Class { negated, items })
    }
}

enum Escaped {
    Char(char),
    Class(ClassItem),
}

struct Matcher<'a> {
    input: &'a [char],
}

impl Matcher<'_> {
    fn alt(&self, alts: &[Vec<Node>], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        alts.iter().any(|seq| self.seq(seq, pos, k))
    }

    fn seq(&self, nodes: &[Node], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match nodes.split_first() {
            None => k(pos),
            Some((first, rest)) => self.node(first, pos, &mut |p| self.seq(rest, p, k)),
        }
    }

    fn node(&self, node: &Node, pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        let here = self.input.get(pos).copied();
        match node {
            Node::Char(c) => here == Some(*c) && k(pos + 1),
            Node::Any => here.is_some_and(|c| c != '\n') && k(pos + 1),
            Node::Class { negated, items } => {
                here.is_some_and(|c| items.iter().any(|i| i.matches(c)) != *negated) && k(pos + 1)
            }
            Node::Start => pos == 0 && k(pos),
            Node::End => pos == self.input.len() && k(pos),
            Node::Group(alts) => self.alt(alts, pos, k),
            Node::Repeat { node, min, max } => self.repeat(node, *min, *max, 0, pos, k),
        }
    }

    fn repeat(
        &self,
        node: &Node,
        min: usize,
        max: Option<usize>,
        count: usize,
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        if max.is_none_or(|m| count < m)
            && self.node(node, pos, &mut |p| {
                (p != pos || count < min) && self.repeat(node, min, max, count + 1, p, k)
            })
        {
            return true;
        }
        count >= min && k(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn member(name: &str, addr: &str, role: &str, status: u8) -> Member {
        let mut tags = BTreeMap::new();
        for (k, v) in [
            ("role", role),
            ("dc", "dc1"),
            ("vsn", "2"),
            ("build", "1.22.0:abcdef"),
        ] {
            tags.insert(k.to_string(), v.to_string());
        }
        Member {
            name: name.into(),
            addr: addr.into(),
            port: 8301,
            tags,
            status,
            ..Default::default()
        }
    }

    fn all() -> Regex {
        Regex::new(".*").expect("regex")
    }

    #[test]
    fn standard_table() {
        let members = vec![
            member("web-1", "10.0.0.12", "node", 1),
            member("server-b", "10.0.0.2", "consul", 1),
            member("db", "10.0.0.11", "node", 4),
            member("server-a", "10.0.0.1", "consul", 1),
        ];
        let table = columnize(&standard_lines(&prepare(members, ALL_SEGMENTS, &all())));
        assert_eq!(
            table,
            "Node      Address         Status  Type    Build   Protocol  DC   Partition  Segment\n\
             server-a  10.0.0.1:8301   alive   server  1.22.0  2         dc1  default    <all>\n\
             server-b  10.0.0.2:8301   alive   server  1.22.0  2         dc1  default    <all>\n\
             db        10.0.0.11:8301  failed  client  1.22.0  2         dc1  default    <default>\n\
             web-1     10.0.0.12:8301  alive   client  1.22.0  2         dc1  default    <default>"
        );
    }

    #[test]
    fn unknown_role_and_old_build() {
        let mut odd = member("odd", "::1", "", 3);
        odd.tags.remove("build");
        let mut old = member("old", "10.0.0.3", "node", 1);
        old.tags.remove("build");
        let lines = standard_lines(&prepare(vec![odd, old], ALL_SEGMENTS, &all()));
        assert_eq!(
            lines[1],
            "odd\u{1f}[::1]:8301\u{1f}left\u{1f}unknown\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}"
        );
        assert!(lines[2].contains("\u{1f}< 0.3\u{1f}"));
    }

    #[test]
    fn detailed_table() {
        let members = prepare(
            vec![member("s", "10.0.0.1", "consul", 1)],
            ALL_SEGMENTS,
            &all(),
        );
        assert_eq!(
            columnize(&detailed_lines(&members)),
            "Node  Address        Status  Tags\n\
             s     10.0.0.1:8301  alive   ap=default,build=1.22.0:abcdef,dc=dc1,role=consul,segment=<all>,vsn=2"
        );
    }

    #[test]
    fn status_filter() {
        let members = || {
            vec![
                member("a", "10.0.0.1", "node", 1),
                member("b", "10.0.0.2", "node", 3),
                member("c", "10.0.0.3", "node", 4),
            ]
        };
        let names = |re: &str| {
            prepare(members(), ALL_SEGMENTS, &Regex::new(re).expect("regex"))
                .into_iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("alive"), ["a"]);
        assert_eq!(names("(failed|left)"), ["b", "c"]);
        assert_eq!(names("^l"), ["b"]);
        assert_eq!(names("nothing"), Vec::<String>::new());
    }

    #[test]
    fn addresses() {
        assert_eq!(tcp_addr("10.0.0.1", 8301), "10.0.0.1:8301");
        assert_eq!(tcp_addr("::1", 8301), "[::1]:8301");
        assert_eq!(tcp_addr("::ffff:10.0.0.1", 8301), "10.0.0.1:8301");
        assert_eq!(tcp_addr("bogus", 8301), ":8301");
    }

    #[test]
    fn regex_subset() {
        let m = |re: &str, s: &str| Regex::new(re).expect(re).is_match(s);
        assert!(m(".*", ""));
        assert!(m("aliv", "alive"));
        assert!(!m("^liv", "alive"));
        assert!(m("^(alive|left)$", "left"));
        assert!(!m("^(alive|left)$", "leftover"));
        assert!(m("[a-c]l", "xbl"));
        assert!(!m("[^a-z]", "alive"));
        assert!(m("a+l?i{1,2}v*e$", "aaiive"));
        assert!(m("(?:fa)+iled", "fafailed"));
        assert!(m("a{2}", "xaay"));
        assert!(!m("^a{3}$", "aa"));
        assert!(m("\\d\\.", "v1.2"));
        assert!(m("(a*)+b", "b"));
        assert!(m("x|", "anything"));
        for bad in ["(", "a)", "*a", "[a", "a**", "\\", "[z-a]"] {
            let e = Regex::new(bad).expect_err(bad);
            assert!(e.starts_with("error parsing regexp: "), "{e}");
        }
    }
}
