//! The agent's `watches` config key: each entry parsed (at config load, so a bad one is an
//! error naming `watches[i].field`) into a [`Plan`] and a [`Handler`] (`handler_type`
//! `script` with `args` or the older `handler` string, or `http` with `http_handler_config`),
//! and [`AgentWatches`], which runs them against the agent's own HTTP API from the moment it
//! is up, stops them on shutdown and applies a reload's difference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use muster_api::{Client, ClientConfig};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::handler::{self, Command, Handler, HttpConfig, DEFAULT_HTTP_TIMEOUT};
use super::{parse, reject_leftovers, take_bool, take_string, ParamError, Plan};

/// One watch of the agent's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchDef {
    pub plan: Plan,
    pub handler: Handler,
    /// The entry as written, to tell an unchanged watch on reload.
    pub raw: Value,
}

/// Parses every entry of `watches`; the error names the entry and field
/// (`watches[1].http_handler_config.path: Requires 'path' to be set`).
pub fn parse_all(list: &[Value]) -> Result<Vec<WatchDef>, String> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            parse_one(v).map_err(|e| match e.field {
                Some(f) => format!("watches[{i}].{f}: {}", e.message),
                None => format!("watches[{i}]: {}", e.message),
            })
        })
        .collect()
}

/// Parses one entry (Consul's `makeWatchPlan` for agent config).
pub fn parse_one(value: &Value) -> Result<WatchDef, ParamError> {
    let Value::Object(map) = value else {
        return Err(ParamError::whole("must be an object"));
    };
    let mut params = map.clone();
    let handler_type = take_string(&mut params, "handler_type")?.unwrap_or_default();
    let handler_type = if handler_type.is_empty() {
        "script".to_string()
    } else {
        handler_type
    };
    if let Some(Value::String(t)) = params.get("type") {
        if t.starts_with("connect_") {
            return Err(ParamError::on(
                "type",
                format!("Watch type {t} is not allowed in agent config"),
            ));
        }
    }
    let handler = match handler_type.as_str() {
        "script" => {
            let script = take_string(&mut params, "handler")?.filter(|s| !s.is_empty());
            let args = super::take_strings(&mut params, "args")?;
            match (script, args.is_empty()) {
                (Some(_), false) => {
                    return Err(ParamError::whole(
                        "Only one watch handler allowed: \"handler\" or \"args\"",
                    ))
                }
                (Some(s), true) => Handler::Script {
                    command: Command::Shell(s),
                    inherit: false,
                },
                (None, false) => Handler::Script {
                    command: Command::Args(args),
                    inherit: false,
                },
                (None, true) => {
                    return Err(ParamError::on(
                        "args",
                        "Must define a watch handler: \"args\" (or the older \"handler\")",
                    ))
                }
            }
        }
        "http" => {
            for unused in ["args", "handler"] {
                if params.contains_key(unused) {
                    return Err(ParamError::on(
                        unused,
                        "not used with handler_type \"http\" (give http_handler_config)",
                    ));
                }
            }
            let Some(raw) = params.remove("http_handler_config") else {
                return Err(ParamError::on(
                    "http_handler_config",
                    "Handler type 'http' requires 'http_handler_config' to be set",
                ));
            };
            Handler::Http(parse_http_config(single_object(raw).ok_or_else(|| {
                ParamError::on("http_handler_config", "must be an object")
            })?)?)
        }
        other => {
            return Err(ParamError::on(
                "handler_type",
                format!("Handler type '{other}' not recognized: must be \"script\" or \"http\""),
            ))
        }
    };
    let plan = parse(&mut params)?;
    reject_leftovers(&params)?;
    Ok(WatchDef {
        plan,
        handler,
        raw: value.clone(),
    })
}

/// An object, or an HCL block's one-element list of it.
fn single_object(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Array(mut items) if items.len() == 1 => match items.pop() {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

/// Consul's `parseHttpHandlerConfig`: `path` required, `method` POST, `timeout` 10s.
fn parse_http_config(mut m: Map<String, Value>) -> Result<HttpConfig, ParamError> {
    let at = |f: &str| format!("http_handler_config.{f}");
    let lift = |f: &str, e: ParamError| ParamError {
        field: Some(at(e.field.as_deref().unwrap_or(f))),
        message: e.message,
    };
    let path = take_string(&mut m, "path")
        .map_err(|e| lift("path", e))?
        .unwrap_or_default();
    if path.is_empty() {
        return Err(ParamError::on(&at("path"), "Requires 'path' to be set"));
    }
    match url::Url::parse(&path) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(ParamError::on(
                &at("path"),
                format!("{path:?} is not an http:// or https:// URL"),
            ))
        }
    }
    let method = take_string(&mut m, "method")
        .map_err(|e| lift("method", e))?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "POST".to_string())
        .to_uppercase();
    let timeout = match take_string(&mut m, "timeout").map_err(|e| lift("timeout", e))? {
        None => DEFAULT_HTTP_TIMEOUT,
        Some(t) if t.is_empty() => DEFAULT_HTTP_TIMEOUT,
        Some(t) => muster_api::duration::parse(&t)
            .map_err(|e| ParamError::on(&at("timeout"), format!("Failed to parse timeout: {e}")))?,
    };
    let tls_skip_verify =
        take_bool(&mut m, "tls_skip_verify").map_err(|e| lift("tls_skip_verify", e))?;
    let mut header = BTreeMap::new();
    if let Some(raw) = m.remove("header") {
        let obj = single_object(raw)
            .ok_or_else(|| ParamError::on(&at("header"), "must be an object of lists"))?;
        for (name, values) in obj {
            let list = match values {
                Value::String(s) => vec![s],
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(ParamError::on(
                            &at(&format!("header.{name}")),
                            "must be a list of strings",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => {
                    return Err(ParamError::on(
                        &at(&format!("header.{name}")),
                        "must be a list of strings",
                    ))
                }
            };
            header.insert(name, list);
        }
    }
    if let Some(extra) = m.keys().next() {
        return Err(ParamError::on(
            &at(extra),
            "unknown key (path, method, header, timeout, tls_skip_verify)",
        ));
    }
    Ok(HttpConfig {
        path,
        method,
        header,
        timeout,
        tls_skip_verify,
    })
}

/// A watch the agent runs.
struct Running {
    raw: Value,
    stop: CancellationToken,
}

/// The agent's running watches.
pub struct AgentWatches {
    /// The agent's own HTTP API, `None` when it has none.
    address: Option<String>,
    /// TLS settings when `address` is the HTTPS listener.
    tls: muster_api::TlsConfig,
    parent: CancellationToken,
    running: Mutex<Vec<Running>>,
}

impl AgentWatches {
    /// Watches that query the agent at `http` (its first HTTP listener; an unspecified address
    /// is reached over loopback) and stop with `parent`. With `tls` the address is the HTTPS
    /// listener (the agent serves no plain HTTP), spoken to with those settings.
    pub fn new(
        http: Option<SocketAddr>,
        tls: Option<muster_api::TlsConfig>,
        parent: CancellationToken,
    ) -> Self {
        let address = http.map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(match a {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            match tls {
                Some(_) => format!("https://{a}"),
                None => a.to_string(),
            }
        });
        AgentWatches {
            address,
            tls: tls.unwrap_or_default(),
            parent,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Runs exactly `defs`: watches no longer configured stop, new ones start, unchanged ones
    /// go on undisturbed (a reload does not re-run their handlers).
    pub fn apply(&self, defs: Vec<WatchDef>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut keep: Vec<Running> = Vec::new();
        let mut wanted = defs;
        for r in running.drain(..) {
            match wanted.iter().position(|d| d.raw == r.raw) {
                Some(i) => {
                    wanted.remove(i);
                    keep.push(r);
                }
                None => r.stop.cancel(),
            }
        }
        for def in wanted {
            if let Some(r) = self.start(def) {
                keep.push(r);
            }
        }
        *running = keep;
    }

    fn start(&self, def: WatchDef) -> Option<Running> {
        let Some(address) = &self.address else {
            tracing::error!("watches need the HTTP API, which is disabled; not starting them");
            return None;
        };
        let client = match Client::new(ClientConfig {
            request_timeout: Some(Duration::from_secs(60)),
            tls: self.tls.clone(),
            ..ClientConfig::new(address.clone())
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a watch");
                return None;
            }
        };
        let stop = self.parent.child_token();
        let kind = format!("{:?}", def.plan.kind);
        let on_error = {
            let kind = kind.clone();
            move |e: &str| tracing::error!(watch = %kind, error = %e, "watch handler failed")
        };
        let (feed, _) = handler::spawn(def.handler, stop.clone(), on_error);
        tokio::spawn(super::run(client, def.plan, stop.clone(), move |i, d| {
            feed.send(i, d)
        }));
        tracing::debug!(watch = %kind, "watch started");
        Some(Running { raw: def.raw, stop })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Kind;
    use super::*;

    fn err(v: Value) -> String {
        parse_all(&[json!({"type": "key", "key": "k", "args": ["true"]}), v]).expect_err("refused")
    }

    #[test]
    fn script_and_http_watches_parse() {
        let defs = parse_all(&[
            json!({"type": "keyprefix", "prefix": "app/", "args": ["/bin/h", "x"]}),
            json!({"type": "service", "service": "web", "tag": ["a", "b"], "passingonly": true,
                   "handler_type": "script", "handler": "echo hi", "datacenter": "dc1",
                   "token": "t"}),
            json!({"type": "checks", "state": "critical", "handler_type": "http",
                   "http_handler_config": {"path": "https://h:1/x", "method": "put",
                     "header": {"X-A": ["1", "2"]}, "timeout": "3s", "tls_skip_verify": true}}),
            json!({"type": "event", "name": "deploy", "args": ["true"]}),
        ])
        .expect("valid");
        assert_eq!(
            defs[0].plan.kind,
            Kind::KeyPrefix {
                prefix: "app/".into()
            }
        );
        assert_eq!(
            defs[0].handler,
            Handler::Script {
                command: Command::Args(vec!["/bin/h".into(), "x".into()]),
                inherit: false
            }
        );
        assert_eq!(
            defs[1].plan.kind,
            Kind::Service {
                service: "web".into(),
                tags: vec!["a".into(), "b".into()],
                passing_only: true
            }
        );
        assert_eq!(defs[1].plan.token.as_deref(), Some("t"));
        assert_eq!(
            defs[1].handler,
            Handler::Script {
                command: Command::Shell("echo hi".into()),
                inherit: false
            }
        );
        let Handler::Http(h) = &defs[2].handler else {
            panic!("http handler expected: {:?}", defs[2].handler);
        };
        assert_eq!(h.method, "PUT");
        assert_eq!(h.timeout, Duration::from_secs(3));
        assert!(h.tls_skip_verify);
        assert_eq!(h.header["X-A"], vec!["1", "2"]);
        assert_eq!(
            defs[3].plan.kind,
            Kind::Event {
                name: Some("deploy".into())
            }
        );
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        assert_eq!(
            err(json!({"key": "k", "args": ["x"]})),
            "watches[1].type: Watch type must be specified"
        );
        assert_eq!(
            err(json!({"type": "key", "args": ["x"]})),
            "watches[1].key: Must specify a single key to watch"
        );
        assert_eq!(
            err(json!({"type": "nope", "args": ["x"]})),
            "watches[1].type: Unsupported watch type: nope"
        );
        assert_eq!(
            err(json!({"type": "key", "key": "k"})),
            "watches[1].args: Must define a watch handler: \"args\" (or the older \"handler\")"
        );
        assert_eq!(
            err(json!({"type": "key", "key": 5, "args": ["x"]})),
            "watches[1].key: Expecting key to be a string"
        );
        assert_eq!(
            err(json!({"type": "key", "key": "k", "args": ["x"], "keyy": 1})),
            "watches[1].keyy: Invalid parameters: [keyy]"
        );
        assert_eq!(
            err(json!({"type": "key", "key": "k", "handler_type": "http"})),
            "watches[1].http_handler_config: Handler type 'http' requires \
             'http_handler_config' to be set"
        );
        assert_eq!(
            err(json!({"type": "key", "key": "k", "handler_type": "http",
                       "http_handler_config": {"method": "POST"}})),
            "watches[1].http_handler_config.path: Requires 'path' to be set"
        );
        assert_eq!(
            err(json!({"type": "key", "key": "k", "handler_type": "http",
                       "http_handler_config": {"path": "http://x/", "timeout": "soon"}}))
            .split(':')
            .next(),
            Some("watches[1].http_handler_config.timeout")
        );
        assert_eq!(
            err(json!({"type": "key", "key": "k", "handler_type": "mail", "args": ["x"]})),
            "watches[1].handler_type: Handler type 'mail' not recognized: must be \"script\" \
             or \"http\""
        );
        assert_eq!(
            err(json!({"type": "checks", "service": "a", "state": "passing", "args": ["x"]})),
            "watches[1]: Cannot specify service and state"
        );
        assert_eq!(
            err(json!({"type": "service", "service": "a", "passingonly": "yes", "args": ["x"]})),
            "watches[1].passingonly: Expecting passingonly to be a boolean"
        );
    }
}
