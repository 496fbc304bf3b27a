//! Handlebars helpers named as confd's template functions, plus `service`, `services` and
//! `nodes` for health. Every helper returns a JSON value, so each works inline
//! (`{{getv "/a"}}`) and as a subexpression (`{{#each (gets "/upstream/*")}}`).
//!
//! The values a render may read ([`RenderData`]) are installed for the current thread by
//! [`with_data`] around one render; helpers read them from there. A helper asking for a service
//! or catalog list the resource did not declare records it as missing (and answers an empty
//! list): the renderer then fetches it and renders again.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use serde_json::{json, Map, Value};

use crate::backend::{Dep, Instance, KvMap, NodeInfo};

/// Everything one render of one resource may read.
#[derive(Debug, Default, Clone)]
pub struct RenderData {
    /// KV pairs, keys relative to the resource's prefix (`/nginx/port`).
    pub kv: Arc<KvMap>,
    /// Instances of every service fetched so far, by name.
    pub services: HashMap<String, Arc<Vec<Instance>>>,
    /// The catalog's services (name → tags), once fetched.
    pub catalog_services: Option<Arc<BTreeMap<String, Vec<String>>>>,
    /// The catalog's nodes, once fetched.
    pub nodes: Option<Arc<Vec<NodeInfo>>>,
}

thread_local! {
    static CURRENT: RefCell<Option<(Arc<RenderData>, Vec<Dep>)>> = const { RefCell::new(None) };
}

/// Runs `f` (a render) with `data` installed for the helpers; returns its result and the
/// dependencies the helpers found missing.
pub fn with_data<T>(data: Arc<RenderData>, f: impl FnOnce() -> T) -> (T, Vec<Dep>) {
    let previous = CURRENT.with(|c| c.borrow_mut().replace((data, Vec::new())));
    let out = f();
    let missing = CURRENT.with(|c| {
        let mut slot = c.borrow_mut();
        let missing = slot.take().map(|(_, m)| m).unwrap_or_default();
        *slot = previous;
        missing
    });
    (out, missing)
}

fn data() -> Arc<RenderData> {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|(d, _)| d.clone())
            .unwrap_or_default()
    })
}

fn note_missing(dep: Dep) {
    CURRENT.with(|c| {
        if let Some((_, missing)) = c.borrow_mut().as_mut() {
            if !missing.contains(&dep) {
                missing.push(dep);
            }
        }
    });
}

/// The arguments of one helper call.
pub struct Args {
    name: &'static str,
    params: Vec<Value>,
    hash: BTreeMap<String, Value>,
}

impl Args {
    pub fn new(name: &'static str, params: Vec<Value>) -> Args {
        Args {
            name,
            params,
            hash: BTreeMap::new(),
        }
    }

    pub fn with_hash(mut self, key: &str, value: Value) -> Args {
        self.hash.insert(key.to_string(), value);
        self
    }

    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("{}: {msg}", self.name))
    }

    fn len(&self) -> usize {
        self.params.len()
    }

    fn need(&self, n: usize) -> Result<(), String> {
        if self.params.len() < n {
            return self.err(format!(
                "needs {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                self.params.len()
            ));
        }
        Ok(())
    }

    fn value(&self, i: usize) -> Result<&Value, String> {
        self.need(i + 1)?;
        Ok(&self.params[i])
    }

    fn str(&self, i: usize) -> Result<String, String> {
        match self.value(i)? {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Ok(String::new()),
            other => self.err(format!("argument {} must be a string, got {other}", i + 1)),
        }
    }

    fn opt_str(&self, i: usize) -> Result<Option<String>, String> {
        if i < self.params.len() {
            self.str(i).map(Some)
        } else {
            Ok(None)
        }
    }

    fn int(&self, i: usize) -> Result<i64, String> {
        match self.value(i)? {
            Value::Number(n) => match n.as_i64() {
                Some(v) => Ok(v),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 => Ok(f as i64),
                    _ => self.err(format!("argument {} must be an integer, got {n}", i + 1)),
                },
            },
            Value::String(s) => s
                .trim()
                .parse()
                .or_else(|_| self.err(format!("argument {} is not an integer: {s:?}", i + 1))),
            other => self.err(format!(
                "argument {} must be an integer, got {other}",
                i + 1
            )),
        }
    }

    fn list(&self, i: usize) -> Result<Vec<Value>, String> {
        match self.value(i)? {
            Value::Array(a) => Ok(a.clone()),
            other => self.err(format!("argument {} must be a list, got {other}", i + 1)),
        }
    }

    fn hash_str(&self, key: &str) -> Option<String> {
        self.hash.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    fn hash_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.hash.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_bool(s)
                .map(Some)
                .or_else(|e| self.err(format!("{key}: {e}"))),
            Some(other) => self.err(format!("{key} must be true or false, got {other}")),
        }
    }
}

/// A helper: arguments in, one JSON value out.
pub type HelperFn = fn(&Args) -> Result<Value, String>;

struct FnHelper {
    name: &'static str,
    f: HelperFn,
}

impl HelperDef for FnHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let args = Args {
            name: self.name,
            params: h.params().iter().map(|p| p.value().clone()).collect(),
            hash: h
                .hash()
                .iter()
                .map(|(k, v)| (k.to_string(), v.value().clone()))
                .collect(),
        };
        (self.f)(&args)
            .map(ScopedJson::Derived)
            .map_err(|e| RenderErrorReason::Other(e).into())
    }
}

/// Every helper, by its name in templates.
pub const HELPERS: &[(&str, HelperFn)] = &[
    ("getv", getv),
    ("get", get),
    ("gets", gets),
    ("getvs", getvs),
    ("ls", ls),
    ("lsdir", lsdir),
    ("exists", exists),
    ("json", json_object),
    ("jsonArray", json_array),
    ("base", base),
    ("dir", dir),
    ("split", split),
    ("join", join),
    ("toUpper", to_upper),
    ("toLower", to_lower),
    ("contains", contains),
    ("replace", replace),
    ("trimSuffix", trim_suffix),
    ("base64Encode", base64_encode),
    ("base64Decode", base64_decode),
    ("parseBool", parse_bool_helper),
    ("atoi", atoi),
    ("add", add),
    ("sub", sub),
    ("mul", mul),
    ("div", div),
    ("mod", modulo),
    ("seq", seq),
    ("map", map),
    ("datetime", datetime),
    ("getenv", getenv),
    ("lookupIP", lookup_ip),
    ("lookupSRV", lookup_srv),
    ("reverse", reverse),
    ("sortByLength", sort_by_length),
    ("service", service),
    ("services", services),
    ("nodes", nodes),
];

/// Registers every helper on `hb`.
pub fn register(hb: &mut Handlebars<'_>) {
    for (name, f) in HELPERS {
        hb.register_helper(name, Box::new(FnHelper { name, f: *f }));
    }
}

/// Calls a helper by name (for tests and tools).
pub fn call(name: &str, args: Args) -> Result<Value, String> {
    let f = HELPERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("no helper {name}"))?;
    f(&args)
}

// ---- KV -------------------------------------------------------------------------------------

fn key_arg(a: &Args, i: usize) -> Result<String, String> {
    Ok(crate::backend::normalize_key(&a.str(i)?))
}

fn pair(key: &str, value: &str) -> Value {
    json!({"Key": key, "Value": value})
}

fn getv(a: &Args) -> Result<Value, String> {
    let key = key_arg(a, 0)?;
    match data().kv.get(&key) {
        Some(v) => Ok(Value::String(v.clone())),
        None => match a.opt_str(1)? {
            Some(default) => Ok(Value::String(default)),
            None => a.err(format!(
                "key {key:?} does not exist (give a default: getv {key:?} \"value\")"
            )),
        },
    }
}

fn get(a: &Args) -> Result<Value, String> {
    let key = key_arg(a, 0)?;
    match data().kv.get(&key) {
        Some(v) => Ok(pair(&key, v)),
        None => a.err(format!("key {key:?} does not exist")),
    }
}

fn matching(a: &Args) -> Result<Vec<(String, String)>, String> {
    let pattern = crate::backend::normalize_key(&a.str(0)?);
    let d = data();
    Ok(d.kv
        .iter()
        .filter(|(k, _)| glob_match(&pattern, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

fn gets(a: &Args) -> Result<Value, String> {
    Ok(Value::Array(
        matching(a)?.iter().map(|(k, v)| pair(k, v)).collect(),
    ))
}

fn getvs(a: &Args) -> Result<Value, String> {
    let mut values: Vec<String> = matching(a)?.into_iter().map(|(_, v)| v).collect();
    values.sort();
    Ok(json!(values))
}

/// The key's part below `dir` (`/a/b/c` below `/a` is `b/c`), if it is below.
fn below<'k>(key: &'k str, dir: &str) -> Option<&'k str> {
    if dir == "/" {
        return Some(key.trim_start_matches('/'));
    }
    key.strip_prefix(dir)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
}

fn ls(a: &Args) -> Result<Value, String> {
    let dir = key_arg(a, 0)?;
    let d = data();
    let mut names: Vec<String> = Vec::new();
    for key in d.kv.keys() {
        let name = if *key == dir {
            base_of(key)
        } else if let Some(rest) = below(key, &dir) {
            rest.split('/').next().unwrap_or_default().to_string()
        } else {
            continue;
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(json!(names))
}

fn lsdir(a: &Args) -> Result<Value, String> {
    let dir = key_arg(a, 0)?;
    let d = data();
    let mut names: Vec<String> = Vec::new();
    for key in d.kv.keys() {
        if let Some(rest) = below(key, &dir) {
            if let Some((first, _)) = rest.split_once('/') {
                if !names.iter().any(|n| n == first) {
                    names.push(first.to_string());
                }
            }
        }
    }
    names.sort();
    Ok(json!(names))
}

fn exists(a: &Args) -> Result<Value, String> {
    let key = key_arg(a, 0)?;
    Ok(Value::Bool(data().kv.contains_key(&key)))
}

// ---- JSON, paths, strings -------------------------------------------------------------------

fn json_object(a: &Args) -> Result<Value, String> {
    let text = a.str(0)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => a.err(format!("not a JSON object: {other}")),
        Err(e) => a.err(format!("invalid JSON: {e}")),
    }
}

fn json_array(a: &Args) -> Result<Value, String> {
    let text = a.str(0)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Array(_)) => Ok(v),
        Ok(other) => a.err(format!("not a JSON array: {other}")),
        Err(e) => a.err(format!("invalid JSON: {e}")),
    }
}

/// Go's `path.Clean`.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `path.Base`.
fn base_of(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_string();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn base(a: &Args) -> Result<Value, String> {
    Ok(Value::String(base_of(&a.str(0)?)))
}

fn dir(a: &Args) -> Result<Value, String> {
    let p = a.str(0)?;
    let head = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    Ok(Value::String(clean_path(head)))
}

fn split(a: &Args) -> Result<Value, String> {
    let (s, sep) = (a.str(0)?, a.str(1)?);
    let parts: Vec<String> = if sep.is_empty() {
        s.chars().map(String::from).collect()
    } else {
        s.split(sep.as_str()).map(str::to_string).collect()
    };
    Ok(json!(parts))
}

fn join(a: &Args) -> Result<Value, String> {
    let items = a.list(0)?;
    let sep = a.str(1)?;
    let strs: Vec<String> = items
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    Ok(Value::String(strs.join(&sep)))
}

fn to_upper(a: &Args) -> Result<Value, String> {
    Ok(Value::String(a.str(0)?.to_uppercase()))
}

fn to_lower(a: &Args) -> Result<Value, String> {
    Ok(Value::String(a.str(0)?.to_lowercase()))
}

fn contains(a: &Args) -> Result<Value, String> {
    Ok(Value::Bool(a.str(0)?.contains(&a.str(1)?)))
}

fn replace(a: &Args) -> Result<Value, String> {
    let (s, old, new) = (a.str(0)?, a.str(1)?, a.str(2)?);
    let n = if a.len() > 3 { a.int(3)? } else { -1 };
    Ok(Value::String(if n < 0 {
        s.replace(&old, &new)
    } else {
        s.replacen(&old, &new, n as usize)
    }))
}

fn trim_suffix(a: &Args) -> Result<Value, String> {
    let (s, suffix) = (a.str(0)?, a.str(1)?);
    Ok(Value::String(
        s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_string(),
    ))
}

fn base64_encode(a: &Args) -> Result<Value, String> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(a.str(0)?),
    ))
}

fn base64_decode(a: &Args) -> Result<Value, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.str(0)?.trim())
        .or_else(|e| a.err(format!("not base64: {e}")))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .or_else(|_| a.err("the decoded bytes are not UTF-8"))
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean")),
    }
}

fn parse_bool_helper(a: &Args) -> Result<Value, String> {
    parse_bool(&a.str(0)?)
        .map(Value::Bool)
        .or_else(|e| a.err(e))
}

fn atoi(a: &Args) -> Result<Value, String> {
    let s = a.str(0)?;
    s.parse::<i64>()
        .map(|v| json!(v))
        .or_else(|_| a.err(format!("{s:?} is not an integer")))
}

// ---- arithmetic and lists -------------------------------------------------------------------

fn arith(a: &Args, op: fn(i64, i64) -> Option<i64>) -> Result<Value, String> {
    let (x, y) = (a.int(0)?, a.int(1)?);
    op(x, y)
        .map(|v| json!(v))
        .ok_or_else(|| format!("{}: {x}, {y}: overflow or division by zero", a.name))
}

fn add(a: &Args) -> Result<Value, String> {
    arith(a, i64::checked_add)
}
fn sub(a: &Args) -> Result<Value, String> {
    arith(a, i64::checked_sub)
}
fn mul(a: &Args) -> Result<Value, String> {
    arith(a, i64::checked_mul)
}
fn div(a: &Args) -> Result<Value, String> {
    arith(a, i64::checked_div)
}
fn modulo(a: &Args) -> Result<Value, String> {
    arith(a, i64::checked_rem)
}

fn seq(a: &Args) -> Result<Value, String> {
    let (start, end) = (a.int(0)?, a.int(1)?);
    if end >= start && end - start > 1_000_000 {
        return a.err("more than a million numbers");
    }
    Ok(json!((start..=end).collect::<Vec<_>>()))
}

fn map(a: &Args) -> Result<Value, String> {
    if !a.len().is_multiple_of(2) {
        return a.err("needs key/value pairs (an even number of arguments)");
    }
    let mut m = Map::new();
    for i in (0..a.len()).step_by(2) {
        m.insert(a.str(i)?, a.params[i + 1].clone());
    }
    Ok(Value::Object(m))
}

fn reverse(a: &Args) -> Result<Value, String> {
    match a.value(0)? {
        Value::Array(items) => Ok(Value::Array(items.iter().rev().cloned().collect())),
        Value::String(s) => Ok(Value::String(s.chars().rev().collect())),
        other => a.err(format!("needs a list, got {other}")),
    }
}

fn sort_by_length(a: &Args) -> Result<Value, String> {
    let mut items = a.list(0)?;
    let len = |v: &Value| match v {
        Value::String(s) => s.chars().count(),
        Value::Object(o) => o
            .get("Key")
            .and_then(Value::as_str)
            .map(|k| k.chars().count())
            .unwrap_or(0),
        other => other.to_string().len(),
    };
    items.sort_by_key(len);
    Ok(Value::Array(items))
}

// ---- environment, time, DNS -----------------------------------------------------------------

fn getenv(a: &Args) -> Result<Value, String> {
    let name = a.str(0)?;
    let value = std::env::var(&name).ok().filter(|v| !v.is_empty());
    Ok(Value::String(match value {
        Some(v) => v,
        None => a.opt_str(1)?.unwrap_or_default(),
    }))
}

fn datetime(_: &Args) -> Result<Value, String> {
    Ok(Value::String(
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    ))
}

/// Runs a DNS lookup on a thread of its own (a render is synchronous and may run on a Tokio
/// worker), bounded in time.
fn resolve<T: Send + 'static>(
    what: String,
    f: impl FnOnce(&tokio::runtime::Runtime) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        f(&rt)
    });
    handle
        .join()
        .map_err(|_| format!("{what}: the lookup panicked"))?
}

const DNS_TIMEOUT: Duration = Duration::from_secs(5);

fn lookup_ip(a: &Args) -> Result<Value, String> {
    use std::net::ToSocketAddrs as _;
    let name = a.str(0)?;
    let what = format!("lookupIP {name}");
    let ips = resolve(what.clone(), move |_| {
        let mut ips: Vec<String> = (name.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| format!("{what}: {e}"))?
            .map(|sa| sa.ip().to_string())
            .collect();
        ips.sort();
        ips.dedup();
        Ok(ips)
    })?;
    Ok(json!(ips))
}

fn lookup_srv(a: &Args) -> Result<Value, String> {
    use hickory_resolver::proto::rr::{RData, RecordType};
    let (service, proto, name) = (a.str(0)?, a.str(1)?, a.str(2)?);
    let query = if service.is_empty() && proto.is_empty() {
        name.clone()
    } else {
        format!("_{service}._{proto}.{name}")
    };
    let what = format!("lookupSRV {query}");
    let mut records = resolve(what.clone(), move |rt| {
        rt.block_on(async {
            let mut builder = hickory_resolver::TokioResolver::builder_tokio()
                .map_err(|e| format!("{what}: {e}"))?;
            builder.options_mut().timeout = DNS_TIMEOUT;
            builder.options_mut().attempts = 1;
            let resolver = builder.build().map_err(|e| format!("{what}: {e}"))?;
            let answer = tokio::time::timeout(
                DNS_TIMEOUT * 2,
                resolver.lookup(query.as_str(), RecordType::SRV),
            )
            .await
            .map_err(|_| format!("{what}: timed out"))?
            .map_err(|e| format!("{what}: {e}"))?;
            let mut out = Vec::new();
            for record in answer.answers() {
                if let RData::SRV(srv) = &record.data {
                    out.push((srv.target.to_string(), srv.port, srv.priority, srv.weight));
                }
            }
            Ok(out)
        })
    })?;
    records.sort();
    Ok(Value::Array(
        records
            .into_iter()
            .map(|(target, port, priority, weight)| {
                json!({"Target": target, "Port": port, "Priority": priority, "Weight": weight})
            })
            .collect(),
    ))
}

// ---- health ---------------------------------------------------------------------------------

fn service(a: &Args) -> Result<Value, String> {
    let name = a.str(0)?;
    let tag = a.hash_str("tag").filter(|t| !t.is_empty());
    let passing_only = a.hash_bool("passing")?.unwrap_or(true);
    let d = data();
    let Some(instances) = d.services.get(&name) else {
        note_missing(Dep::Service(name));
        return Ok(Value::Array(Vec::new()));
    };
    let selected: Vec<&Instance> = instances
        .iter()
        .filter(|i| !passing_only || i.status == "passing")
        .filter(|i| tag.as_ref().is_none_or(|t| i.tags.contains(t)))
        .collect();
    serde_json::to_value(selected).map_err(|e| format!("service: {e}"))
}

fn services(_: &Args) -> Result<Value, String> {
    let d = data();
    let Some(list) = &d.catalog_services else {
        note_missing(Dep::Services);
        return Ok(Value::Array(Vec::new()));
    };
    Ok(Value::Array(
        list.iter()
            .map(|(name, tags)| json!({"Name": name, "Tags": tags}))
            .collect(),
    ))
}

fn nodes(_: &Args) -> Result<Value, String> {
    let d = data();
    let Some(list) = &d.nodes else {
        note_missing(Dep::Nodes);
        return Ok(Value::Array(Vec::new()));
    };
    serde_json::to_value(list.as_ref()).map_err(|e| format!("nodes: {e}"))
}

// ---- glob -----------------------------------------------------------------------------------

/// Go's `path.Match`: `*` matches any run of characters but `/`, `?` one character but `/`,
/// `[a-z]`/`[^a-z]` a class, `\` escapes. A malformed pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n).unwrap_or(false)
}

fn glob_at(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    while pi < p.len() {
        match p[pi] {
            '*' => {
                let rest = &p[pi + 1..];
                // Try every split that does not cross a '/'.
                let mut k = ni;
                loop {
                    if glob_at(rest, &n[k..])? {
                        return Some(true);
                    }
                    if k >= n.len() || n[k] == '/' {
                        return Some(false);
                    }
                    k += 1;
                }
            }
            '?' => {
                if ni >= n.len() || n[ni] == '/' {
                    return Some(false);
                }
                pi += 1;
                ni += 1;
            }
            '[' => {
                if ni >= n.len() || n[ni] == '/' {
                    return Some(false);
                }
                let (matched, next) = class(p, pi + 1, n[ni])?;
                if !matched {
                    return Some(false);
                }
                pi = next;
                ni += 1;
            }
            '\\' => {
                let c = *p.get(pi + 1)?;
                if ni >= n.len() || n[ni] != c {
                    return Some(false);
                }
                pi += 2;
                ni += 1;
            }
            c => {
                if ni >= n.len() || n[ni] != c {
                    return Some(false);
                }
                pi += 1;
                ni += 1;
            }
        }
    }
    Some(ni == n.len())
}

/// Matches `c` against the class starting at `p[i]` (after `[`); returns (matched, index after
/// `]`), or `None` for a malformed class.
fn class(p: &[char], mut i: usize, c: char) -> Option<(bool, usize)> {
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            i += 1;
            let h = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            h
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Arc<RenderData> {
        Arc::new(RenderData {
            kv: Arc::new(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        })
    }

    fn s(v: &str) -> Value {
        Value::String(v.to_string())
    }

    fn run(
        data: &Arc<RenderData>,
        name: &'static str,
        params: Vec<Value>,
    ) -> Result<Value, String> {
        with_data(data.clone(), || call(name, Args::new(name, params))).0
    }

    fn sample() -> Arc<RenderData> {
        kv(&[
            ("/app/db/user", "u"),
            ("/app/db/pass", "p"),
            ("/app/name", "shop"),
            ("/app/upstream/b", "10.0.0.2:80"),
            ("/app/upstream/a", "10.0.0.1:80"),
            ("/app/upstream/c/deep", "x"),
        ])
    }

    #[test]
    fn getv_with_and_without_default() {
        let d = sample();
        assert_eq!(run(&d, "getv", vec![s("/app/name")]).unwrap(), s("shop"));
        assert_eq!(run(&d, "getv", vec![s("app/name/")]).unwrap(), s("shop"));
        assert_eq!(
            run(&d, "getv", vec![s("/nope"), s("dflt")]).unwrap(),
            s("dflt")
        );
        let err = run(&d, "getv", vec![s("/nope")]).unwrap_err();
        assert!(err.contains("\"/nope\" does not exist"), "{err}");
    }

    #[test]
    fn get_gets_getvs() {
        let d = sample();
        assert_eq!(
            run(&d, "get", vec![s("/app/name")]).unwrap(),
            json!({"Key": "/app/name", "Value": "shop"})
        );
        assert!(run(&d, "get", vec![s("/x")]).is_err());
        assert_eq!(
            run(&d, "gets", vec![s("/app/upstream/*")]).unwrap(),
            json!([
                {"Key": "/app/upstream/a", "Value": "10.0.0.1:80"},
                {"Key": "/app/upstream/b", "Value": "10.0.0.2:80"},
            ])
        );
        assert_eq!(
            run(&d, "getvs", vec![s("/app/db/*")]).unwrap(),
            json!(["p", "u"])
        );
    }

    #[test]
    fn ls_lsdir_exists() {
        let d = sample();
        assert_eq!(
            run(&d, "ls", vec![s("/app/upstream")]).unwrap(),
            json!(["a", "b", "c"])
        );
        assert_eq!(
            run(&d, "ls", vec![s("/app/name")]).unwrap(),
            json!(["name"])
        );
        assert_eq!(
            run(&d, "lsdir", vec![s("/app")]).unwrap(),
            json!(["db", "upstream"])
        );
        assert_eq!(
            run(&d, "lsdir", vec![s("/app/upstream")]).unwrap(),
            json!(["c"])
        );
        assert_eq!(
            run(&d, "exists", vec![s("/app/name")]).unwrap(),
            json!(true)
        );
        assert_eq!(run(&d, "exists", vec![s("/app")]).unwrap(), json!(false));
    }

    #[test]
    fn json_helpers() {
        let d = sample();
        assert_eq!(
            run(&d, "json", vec![s(r#"{"a": 1}"#)]).unwrap(),
            json!({"a": 1})
        );
        assert!(run(&d, "json", vec![s("[1]")]).is_err());
        assert_eq!(
            run(&d, "jsonArray", vec![s("[1, 2]")]).unwrap(),
            json!([1, 2])
        );
        assert!(run(&d, "jsonArray", vec![s("{")]).is_err());
    }

    #[test]
    fn paths() {
        let d = sample();
        for (p, b, dd) in [
            ("/a/b/c", "c", "/a/b"),
            ("/a/b/", "b", "/a/b"),
            ("c", "c", "."),
            ("/", "/", "/"),
            ("", ".", "."),
        ] {
            assert_eq!(run(&d, "base", vec![s(p)]).unwrap(), s(b), "base {p}");
            assert_eq!(run(&d, "dir", vec![s(p)]).unwrap(), s(dd), "dir {p}");
        }
    }

    #[test]
    fn strings() {
        let d = sample();
        assert_eq!(
            run(&d, "split", vec![s("a:b:c"), s(":")]).unwrap(),
            json!(["a", "b", "c"])
        );
        assert_eq!(
            run(&d, "join", vec![json!(["a", "b"]), s(", ")]).unwrap(),
            s("a, b")
        );
        assert_eq!(run(&d, "toUpper", vec![s("aB")]).unwrap(), s("AB"));
        assert_eq!(run(&d, "toLower", vec![s("aB")]).unwrap(), s("ab"));
        assert_eq!(
            run(&d, "contains", vec![s("abc"), s("bc")]).unwrap(),
            json!(true)
        );
        assert_eq!(
            run(&d, "contains", vec![s("abc"), s("x")]).unwrap(),
            json!(false)
        );
        assert_eq!(
            run(&d, "replace", vec![s("aaa"), s("a"), s("b"), json!(2)]).unwrap(),
            s("bba")
        );
        assert_eq!(
            run(&d, "replace", vec![s("aaa"), s("a"), s("b"), json!(-1)]).unwrap(),
            s("bbb")
        );
        assert_eq!(
            run(&d, "replace", vec![s("aaa"), s("a"), s("b")]).unwrap(),
            s("bbb")
        );
        assert_eq!(
            run(&d, "trimSuffix", vec![s("web.conf"), s(".conf")]).unwrap(),
            s("web")
        );
        assert_eq!(
            run(&d, "trimSuffix", vec![s("web"), s(".x")]).unwrap(),
            s("web")
        );
        assert_eq!(run(&d, "base64Encode", vec![s("hi!")]).unwrap(), s("aGkh"));
        assert_eq!(run(&d, "base64Decode", vec![s("aGkh")]).unwrap(), s("hi!"));
        assert!(run(&d, "base64Decode", vec![s("***")]).is_err());
    }

    #[test]
    fn conversions_and_arithmetic() {
        let d = sample();
        assert_eq!(run(&d, "parseBool", vec![s("True")]).unwrap(), json!(true));
        assert_eq!(run(&d, "parseBool", vec![s("0")]).unwrap(), json!(false));
        assert!(run(&d, "parseBool", vec![s("yes")]).is_err());
        assert_eq!(run(&d, "atoi", vec![s("42")]).unwrap(), json!(42));
        assert!(run(&d, "atoi", vec![s("4x")]).is_err());
        assert_eq!(run(&d, "add", vec![json!(2), s("3")]).unwrap(), json!(5));
        assert_eq!(run(&d, "sub", vec![json!(2), json!(3)]).unwrap(), json!(-1));
        assert_eq!(run(&d, "mul", vec![json!(4), json!(3)]).unwrap(), json!(12));
        assert_eq!(run(&d, "div", vec![json!(7), json!(2)]).unwrap(), json!(3));
        assert_eq!(run(&d, "mod", vec![json!(7), json!(2)]).unwrap(), json!(1));
        assert!(run(&d, "div", vec![json!(1), json!(0)]).is_err());
        assert_eq!(
            run(&d, "seq", vec![json!(1), json!(3)]).unwrap(),
            json!([1, 2, 3])
        );
        assert_eq!(run(&d, "seq", vec![json!(3), json!(1)]).unwrap(), json!([]));
    }

    #[test]
    fn map_reverse_sort() {
        let d = sample();
        assert_eq!(
            run(&d, "map", vec![s("a"), json!(1), s("b"), s("x")]).unwrap(),
            json!({"a": 1, "b": "x"})
        );
        assert!(run(&d, "map", vec![s("a")]).is_err());
        assert_eq!(
            run(&d, "reverse", vec![json!([1, 2, 3])]).unwrap(),
            json!([3, 2, 1])
        );
        assert_eq!(
            run(&d, "sortByLength", vec![json!(["ccc", "a", "bb"])]).unwrap(),
            json!(["a", "bb", "ccc"])
        );
        assert_eq!(
            run(
                &d,
                "sortByLength",
                vec![json!([{"Key": "/aaa"}, {"Key": "/a"}])]
            )
            .unwrap(),
            json!([{"Key": "/a"}, {"Key": "/aaa"}])
        );
    }

    #[test]
    fn env_time_dns() {
        let d = sample();
        std::env::set_var("TEMPLATER_HELPER_TEST", "v");
        assert_eq!(
            run(&d, "getenv", vec![s("TEMPLATER_HELPER_TEST")]).unwrap(),
            s("v")
        );
        assert_eq!(
            run(&d, "getenv", vec![s("TEMPLATER_HELPER_NOPE"), s("d")]).unwrap(),
            s("d")
        );
        assert_eq!(
            run(&d, "getenv", vec![s("TEMPLATER_HELPER_NOPE")]).unwrap(),
            s("")
        );
        let now = run(&d, "datetime", vec![]).unwrap();
        assert!(
            humantime::parse_rfc3339(now.as_str().unwrap()).is_ok(),
            "{now}"
        );
        let ips = run(&d, "lookupIP", vec![s("localhost")]).unwrap();
        assert!(
            ips.as_array()
                .unwrap()
                .iter()
                .any(|ip| ip == "127.0.0.1" || ip == "::1"),
            "{ips}"
        );
        assert!(run(&d, "lookupIP", vec![s("no-such-host.invalid")]).is_err());
    }

    /// SRV answers come from a tiny DNS server on loopback named by a resolv.conf the test
    /// cannot swap in, so this checks the failure path only: an error naming the query.
    #[test]
    fn lookup_srv_reports_failures() {
        let d = sample();
        let err = run(
            &d,
            "lookupSRV",
            vec![s("x"), s("tcp"), s("no-such.invalid")],
        )
        .unwrap_err();
        assert!(err.contains("_x._tcp.no-such.invalid"), "{err}");
    }

    #[test]
    fn service_filters_passing_and_tags_and_notes_missing() {
        let inst = |id: &str, status: &str, tags: &[&str]| Instance {
            node: "n1".into(),
            address: "127.0.0.1".into(),
            port: 80,
            id: id.into(),
            name: "web".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            meta: BTreeMap::new(),
            status: status.into(),
        };
        let mut data = RenderData::default();
        data.services.insert(
            "web".into(),
            Arc::new(vec![
                inst("w1", "passing", &["v1"]),
                inst("w2", "critical", &["v1"]),
                inst("w3", "passing", &["v2"]),
            ]),
        );
        let d = Arc::new(data);
        let ids = |v: Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| i["ID"].as_str().unwrap().to_string())
                .collect()
        };
        let call_service = |hash: Vec<(&str, Value)>| {
            with_data(d.clone(), || {
                let mut args = Args::new("service", vec![s("web")]);
                for (k, v) in hash {
                    args = args.with_hash(k, v);
                }
                call("service", args)
            })
        };
        assert_eq!(ids(call_service(vec![]).0.unwrap()), ["w1", "w3"]);
        assert_eq!(
            ids(call_service(vec![("passing", json!(false))]).0.unwrap()),
            ["w1", "w2", "w3"]
        );
        assert_eq!(ids(call_service(vec![("tag", s("v1"))]).0.unwrap()), ["w1"]);
        let first = call_service(vec![]).0.unwrap();
        assert_eq!(first[0]["Status"], "passing");
        assert_eq!(first[0]["Port"], 80);

        let (out, missing) = with_data(d.clone(), || {
            (
                call("service", Args::new("service", vec![s("api")])),
                call("services", Args::new("services", vec![])),
                call("nodes", Args::new("nodes", vec![])),
            )
        });
        assert_eq!(out.0.unwrap(), json!([]));
        assert_eq!(
            missing,
            vec![Dep::Service("api".into()), Dep::Services, Dep::Nodes]
        );
    }

    #[test]
    fn catalog_lists() {
        let data = RenderData {
            catalog_services: Some(Arc::new(
                [("web".to_string(), vec!["v1".to_string()])].into(),
            )),
            nodes: Some(Arc::new(vec![NodeInfo {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                id: "id".into(),
                datacenter: "dc1".into(),
                meta: BTreeMap::new(),
            }])),
            ..Default::default()
        };
        let d = Arc::new(data);
        assert_eq!(
            run(&d, "services", vec![]).unwrap(),
            json!([{"Name": "web", "Tags": ["v1"]}])
        );
        assert_eq!(run(&d, "nodes", vec![]).unwrap()[0]["Address"], "10.0.0.1");
    }

    #[test]
    fn glob_is_go_path_match() {
        assert!(glob_match("/a/*", "/a/b"));
        assert!(!glob_match("/a/*", "/a/b/c"));
        assert!(glob_match("/a/*/c", "/a/b/c"));
        assert!(glob_match("/a/?", "/a/b"));
        assert!(!glob_match("/a/?", "/a/bc"));
        assert!(glob_match("/a/[a-c]x", "/a/bx"));
        assert!(!glob_match("/a/[^a-c]x", "/a/bx"));
        assert!(glob_match("/a/\\*", "/a/*"));
        assert!(!glob_match("/a/[", "/a/["));
        assert!(glob_match("*", "abc"));
        assert!(glob_match("/a/*b", "/a/xxb"));
    }

    #[test]
    fn every_helper_is_registered() {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        register(&mut hb);
        for (name, _) in HELPERS {
            // A registered helper answers (perhaps with its own complaint about arguments);
            // an unknown name would be a missing variable in strict mode.
            let out = hb.render_template(&format!("{{{{{name}}}}}"), &json!({}));
            if let Err(e) = out {
                let msg = e.to_string();
                assert!(msg.contains(&format!("{name}:")), "{name}: {msg}");
            }
        }
        assert_eq!(HELPERS.len(), 38);
    }
}
