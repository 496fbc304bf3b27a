//! Service and check definitions: decoding Consul's spellings, and validation.
//!
//! The same definition reaches the agent three ways: a config file (`service { ... }`, usually
//! snake_case), an HTTP body (`{"Name": ..., "Check": {"HTTP": ...}}`, any case: Go's JSON
//! decoder matches field names case-insensitively and Consul translates snake_case), and the
//! CLI. All of them go through [`parse_service`] / [`parse_check`], which match keys against
//! one table per object (case and underscores ignored), check each value's type, and produce
//! the canonical wire types; a wrong key or value is an error naming its path
//! (`service.check.interval`). [`validate_service`] / [`validate_check`] then apply Consul's
//! rules and defaults and produce what the agent runs.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_api::{
    AgentService, CheckRegistration, HealthCheckDefinition, HealthStatus, ServiceRegistration,
    Weights,
};
use serde_json::{Map, Value};

use crate::checks::CheckKind;
use crate::config::Sourced;

/// A definition that cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DefinitionError(pub String);

fn err(path: &str, msg: impl std::fmt::Display) -> DefinitionError {
    DefinitionError(format!("{path}: {msg}"))
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    U16,
    U32,
    Bool,
    StrList,
    StrMap,
    Header,
    Duration,
    Weights,
    TaggedAddresses,
    Check,
    Checks,
    /// Accepted and ignored (enterprise or ACL fields with no effect here).
    Ignored,
    /// A Consul field Muster does not run; the text says what to use instead.
    Unsupported(&'static str),
}

struct Field {
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        aliases: &[],
        kind,
    }
}

const SERVICE: &[Field] = &[
    f("Kind", Kind::Str),
    f("ID", Kind::Str),
    f("Name", Kind::Str),
    f("Tags", Kind::StrList),
    f("Port", Kind::U16),
    f("Address", Kind::Str),
    f("TaggedAddresses", Kind::TaggedAddresses),
    f("EnableTagOverride", Kind::Bool),
    f("Meta", Kind::StrMap),
    f("Weights", Kind::Weights),
    f("Check", Kind::Check),
    f("Checks", Kind::Checks),
    f("Token", Kind::Ignored),
    f("Namespace", Kind::Ignored),
    f("Partition", Kind::Ignored),
    f("Locality", Kind::Ignored),
    f(
        "SocketPath",
        Kind::Unsupported("unix-socket services are not supported"),
    ),
    f(
        "Connect",
        Kind::Unsupported("Connect (service mesh) is not supported"),
    ),
    f(
        "Proxy",
        Kind::Unsupported("Connect proxies are not supported"),
    ),
];

const CHECK: &[Field] = &[
    f("CheckID", Kind::Str),
    f("ID", Kind::Str),
    f("Name", Kind::Str),
    f("Notes", Kind::Str),
    f("ServiceID", Kind::Str),
    Field {
        name: "Args",
        aliases: &["scriptargs"],
        kind: Kind::StrList,
    },
    f("Interval", Kind::Duration),
    f("Timeout", Kind::Duration),
    f("TTL", Kind::Duration),
    f("HTTP", Kind::Str),
    f("Header", Kind::Header),
    f("Method", Kind::Str),
    f("Body", Kind::Str),
    f("DisableRedirects", Kind::Bool),
    f("TCP", Kind::Str),
    f("UDP", Kind::Str),
    f("GRPC", Kind::Str),
    f("GRPCUseTLS", Kind::Bool),
    f("TLSServerName", Kind::Str),
    f("TLSSkipVerify", Kind::Bool),
    f("AliasNode", Kind::Str),
    f("AliasService", Kind::Str),
    f("Status", Kind::Str),
    f("SuccessBeforePassing", Kind::U32),
    f("FailuresBeforeWarning", Kind::U32),
    f("FailuresBeforeCritical", Kind::U32),
    f("DeregisterCriticalServiceAfter", Kind::Duration),
    f("Token", Kind::Ignored),
    f("Namespace", Kind::Ignored),
    f("Partition", Kind::Ignored),
    f("OutputMaxSize", Kind::Ignored),
    f("Shell", Kind::Ignored),
    f(
        "TCPUseTLS",
        Kind::Unsupported("TCP checks over TLS are not supported"),
    ),
    f(
        "H2PING",
        Kind::Unsupported("H2PING checks are not supported; use an HTTP check"),
    ),
    f(
        "H2PingUseTLS",
        Kind::Unsupported("H2PING checks are not supported"),
    ),
    f(
        "DockerContainerID",
        Kind::Unsupported("Docker checks are not supported; use a script check"),
    ),
    f(
        "OSService",
        Kind::Unsupported("OSService checks are not supported"),
    ),
    f(
        "Script",
        Kind::Unsupported("\"script\" was removed in Consul 1.1; use \"args\""),
    ),
];

const WEIGHTS: &[Field] = &[f("Passing", Kind::U32), f("Warning", Kind::U32)];
const ADDRESS: &[Field] = &[f("Address", Kind::Str), f("Port", Kind::U16)];

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// HCL blocks decode as a list of one object; accept both shapes.
fn single_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, DefinitionError> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Array(items) if items.len() == 1 => single_object(&items[0], path),
        other => Err(err(
            path,
            format!("must be an object, got {}", describe(other)),
        )),
    }
}

fn normalize(
    v: &Value,
    fields: &[Field],
    path: &str,
    strict: bool,
) -> Result<Map<String, Value>, DefinitionError> {
    let obj = single_object(v, path)?;
    let mut out = Map::new();
    for (key, value) in obj {
        let folded = fold(key);
        let field = fields
            .iter()
            .find(|f| fold(f.name) == folded || f.aliases.contains(&folded.as_str()));
        let here = format!("{path}.{key}");
        let Some(field) = field else {
            if strict {
                return Err(err(&here, "unknown field"));
            }
            continue;
        };
        if value.is_null() {
            continue;
        }
        let canonical = match field.kind {
            Kind::Ignored => continue,
            Kind::Unsupported(why) => return Err(err(&here, why)),
            Kind::Str => match value {
                Value::String(_) => value.clone(),
                // HCL and hand-written JSON sometimes give numbers for IDs and names.
                Value::Number(n) => Value::String(n.to_string()),
                other => {
                    return Err(err(
                        &here,
                        format!("must be a string, got {}", describe(other)),
                    ))
                }
            },
            Kind::U16 | Kind::U32 => {
                let max = if matches!(field.kind, Kind::U16) {
                    u64::from(u16::MAX)
                } else {
                    u64::from(u32::MAX)
                };
                let n = match value {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if n <= max => Value::from(n),
                    _ => {
                        return Err(err(
                            &here,
                            format!(
                                "must be a whole number from 0 to {max}, got {}",
                                describe(value)
                            ),
                        ))
                    }
                }
            }
            Kind::Bool => match value {
                Value::Bool(_) => value.clone(),
                Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
                other => {
                    return Err(err(
                        &here,
                        format!("must be true or false, got {}", describe(other)),
                    ))
                }
            },
            Kind::StrList => match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if !item.is_string() {
                            return Err(err(
                                &format!("{here}[{i}]"),
                                format!("must be a string, got {}", describe(item)),
                            ));
                        }
                    }
                    value.clone()
                }
                other => {
                    return Err(err(
                        &here,
                        format!("must be a list of strings, got {}", describe(other)),
                    ))
                }
            },
            Kind::StrMap => {
                let m = single_object(value, &here)?;
                for (k, item) in m {
                    if !item.is_string() {
                        return Err(err(
                            &format!("{here}.{k}"),
                            format!("must be a string, got {}", describe(item)),
                        ));
                    }
                }
                Value::Object(m.clone())
            }
            Kind::Header => {
                let m = single_object(value, &here)?;
                let mut headers = Map::new();
                for (k, item) in m {
                    let list = match item {
                        Value::String(s) => vec![Value::String(s.clone())],
                        Value::Array(items) if items.iter().all(Value::is_string) => items.clone(),
                        other => {
                            return Err(err(
                                &format!("{here}.{k}"),
                                format!("must be a list of strings, got {}", describe(other)),
                            ))
                        }
                    };
                    headers.insert(k.clone(), Value::Array(list));
                }
                Value::Object(headers)
            }
            Kind::Duration => match value {
                Value::String(s) => {
                    muster_api::duration::parse(s)
                        .map_err(|e| err(&here, format!("invalid duration {s:?}: {e}")))?;
                    value.clone()
                }
                // Consul's ReadableDuration also takes nanoseconds as a number.
                Value::Number(n) => match n.as_u64() {
                    Some(ns) => {
                        Value::String(muster_api::duration::format(Duration::from_nanos(ns)))
                    }
                    None => return Err(err(&here, format!("invalid duration {n}"))),
                },
                other => {
                    return Err(err(
                        &here,
                        format!(
                            "must be a duration such as \"10s\", got {}",
                            describe(other)
                        ),
                    ))
                }
            },
            Kind::Weights => Value::Object(normalize(value, WEIGHTS, &here, strict)?),
            Kind::TaggedAddresses => {
                let m = single_object(value, &here)?;
                let mut addrs = Map::new();
                for (k, item) in m {
                    addrs.insert(
                        k.clone(),
                        Value::Object(normalize(item, ADDRESS, &format!("{here}.{k}"), strict)?),
                    );
                }
                Value::Object(addrs)
            }
            Kind::Check => Value::Object(normalize(value, CHECK, &here, strict)?),
            Kind::Checks => {
                let items: Vec<&Value> = match value {
                    Value::Array(items) => items.iter().collect(),
                    Value::Object(_) => vec![value],
                    other => {
                        return Err(err(
                            &here,
                            format!("must be a list of checks, got {}", describe(other)),
                        ))
                    }
                };
                let mut list = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    list.push(Value::Object(normalize(
                        item,
                        CHECK,
                        &format!("{here}[{i}]"),
                        strict,
                    )?));
                }
                Value::Array(list)
            }
        };
        if out.insert(field.name.to_string(), canonical).is_some() {
            return Err(err(&here, format!("{} is given twice", field.name)));
        }
    }
    Ok(out)
}

fn decode<T: serde::de::DeserializeOwned>(
    m: Map<String, Value>,
    path: &str,
) -> Result<T, DefinitionError> {
    // Every value was type-checked above; a failure here is a bug, reported rather than hidden.
    serde_json::from_value(Value::Object(m)).map_err(|e| err(path, e))
}

/// Decodes a service definition from a config file (unknown fields are errors). `path` names
/// it in errors, e.g. `service` or `services[1]`.
pub fn parse_service_at(
    v: &Value,
    path: &str,
    strict: bool,
) -> Result<ServiceRegistration, DefinitionError> {
    decode(normalize(v, SERVICE, path, strict)?, path)
}

/// Decodes a service definition as a config file or `muster services register` gives it.
pub fn parse_service(v: &Value) -> Result<ServiceRegistration, DefinitionError> {
    parse_service_at(v, "service", true)
}

/// Decodes a check definition (config file spelling; unknown fields are errors).
pub fn parse_check_at(
    v: &Value,
    path: &str,
    strict: bool,
) -> Result<CheckRegistration, DefinitionError> {
    decode(normalize(v, CHECK, path, strict)?, path)
}

/// Decodes a check definition as a config file gives it.
pub fn parse_check(v: &Value) -> Result<CheckRegistration, DefinitionError> {
    parse_check_at(v, "check", true)
}

/// Where a definition came from: scripts are allowed by different switches, and Consul's
/// messages differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Source {
    /// A config file (reloaded with the config; not persisted separately).
    Local,
    /// The HTTP API (persisted under the data dir).
    Remote,
}

/// Which script checks this agent allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScriptPolicy {
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
}

impl ScriptPolicy {
    fn check(&self, source: Source) -> Result<(), DefinitionError> {
        match source {
            Source::Remote if !self.enable_script_checks => Err(DefinitionError(
                "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true".into(),
            )),
            Source::Local if !self.enable_script_checks && !self.enable_local_script_checks => Err(DefinitionError(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// How a check produces its status.
#[derive(Debug, Clone, PartialEq)]
pub enum Runner {
    /// Run by the agent on an interval (HTTP, TCP, UDP, script, gRPC).
    Interval(CheckKind),
    /// Set from outside (`/v1/agent/check/pass/...`), critical when not refreshed within the TTL.
    Ttl(Duration),
    /// Mirrors the health of another service (on this agent's node unless `node` is set), or
    /// of a node when `service_id` is empty.
    Alias { node: String, service_id: String },
    /// Set by the agent itself (maintenance); never run.
    Static,
}

/// A validated check, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckDef {
    pub id: String,
    pub name: String,
    pub notes: String,
    pub service_id: String,
    pub initial_status: HealthStatus,
    pub runner: Runner,
    /// `http`, `tcp`, `udp`, `script`, `grpc`, `ttl`, `alias` or `maintenance`.
    pub check_type: &'static str,
    pub interval: Duration,
    pub timeout: Duration,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
    pub deregister_after: Option<Duration>,
    pub definition: HealthCheckDefinition,
    /// The definition as registered, for persistence and reload comparison.
    pub registration: CheckRegistration,
}

/// A validated service with its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDef {
    pub service: AgentService,
    pub checks: Vec<CheckDef>,
    pub registration: ServiceRegistration,
}

/// Consul's shortest check interval; shorter ones are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

fn dur(s: &str) -> Result<Duration, DefinitionError> {
    if s.is_empty() {
        return Ok(Duration::ZERO);
    }
    muster_api::duration::parse(s)
        .map_err(|e| DefinitionError(format!("invalid duration {s:?}: {e}")))
}

/// Validates a service registration and its checks (Consul's rules and defaults).
pub fn validate_service(
    reg: &ServiceRegistration,
    datacenter: &str,
    source: Source,
    scripts: ScriptPolicy,
) -> Result<ServiceDef, DefinitionError> {
    if reg.name.is_empty() {
        return Err(DefinitionError("Missing service name".into()));
    }
    if !reg.kind.is_empty() && reg.kind != "typical" {
        return Err(DefinitionError(format!(
            "Invalid service kind {:?}: only typical services are supported",
            reg.kind
        )));
    }
    let id = if reg.id.is_empty() {
        reg.name.clone()
    } else {
        reg.id.clone()
    };
    let weights = reg.weights.unwrap_or_default();
    if weights.passing < 1 {
        return Err(DefinitionError("Passing must be greater than 0".into()));
    }
    let service = AgentService {
        kind: String::new(),
        id: id.clone(),
        service: reg.name.clone(),
        tags: reg.tags.clone(),
        meta: reg.meta.clone(),
        port: reg.port,
        address: reg.address.clone(),
        tagged_addresses: reg.tagged_addresses.clone(),
        weights: Weights {
            passing: weights.passing,
            warning: weights.warning,
        },
        enable_tag_override: reg.enable_tag_override,
        datacenter: datacenter.to_string(),
        ..AgentService::default()
    };
    let all: Vec<&CheckRegistration> = reg.check.iter().chain(reg.checks.iter()).collect();
    let numbered = all.len() > 1;
    let mut checks = Vec::with_capacity(all.len());
    for (i, c) in all.into_iter().enumerate() {
        let mut c = c.clone();
        c.service_id = id.clone();
        if c.check_id.is_empty() && c.id.is_empty() {
            c.check_id = if numbered {
                format!("service:{id}:{}", i + 1)
            } else {
                format!("service:{id}")
            };
        }
        if c.name.is_empty() {
            c.name = format!("Service '{}' check", reg.name);
        }
        let def = validate_check(&c, source, scripts)
            .map_err(|e| DefinitionError(format!("Invalid check: {}", e.0)))?;
        checks.push(def);
    }
    Ok(ServiceDef {
        service,
        checks,
        registration: reg.clone(),
    })
}

/// Validates one check (standalone, or a service's after [`validate_service`] filled its ID,
/// name and service).
pub fn validate_check(
    c: &CheckRegistration,
    source: Source,
    scripts: ScriptPolicy,
) -> Result<CheckDef, DefinitionError> {
    let id = if !c.check_id.is_empty() {
        c.check_id.clone()
    } else if !c.id.is_empty() {
        c.id.clone()
    } else {
        c.name.clone()
    };
    if c.name.is_empty() {
        return Err(DefinitionError("Missing check name".into()));
    }
    if id.is_empty() {
        return Err(DefinitionError("CheckID missing".into()));
    }
    let interval = dur(&c.interval)?;
    let ttl = dur(&c.ttl)?;
    // Zero: the runner's per-kind default (30s for scripts, 10s otherwise, as Consul).
    let timeout = dur(&c.timeout)?;
    let deregister_after = match dur(&c.deregister_critical_service_after)? {
        Duration::ZERO => None,
        d => Some(d),
    };
    let initial_status = if c.status.is_empty() {
        HealthStatus::Critical
    } else {
        HealthStatus::parse_check(&c.status).ok_or_else(|| {
            DefinitionError(format!(
                "Invalid status {:?}: must be passing, warning or critical",
                c.status
            ))
        })?
    };
    let kinds = [
        !c.http.is_empty(),
        !c.tcp.is_empty(),
        !c.udp.is_empty(),
        !c.grpc.is_empty(),
        !c.args.is_empty(),
        !c.alias_service.is_empty(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err(DefinitionError(
            "a check must have exactly one of HTTP, TCP, UDP, GRPC, Args, AliasService or TTL"
                .into(),
        ));
    }
    let is_alias = !c.alias_service.is_empty() || !c.alias_node.is_empty();
    let interval_check = kinds[..5].iter().any(|k| *k);
    if interval > Duration::ZERO && ttl > Duration::ZERO {
        return Err(DefinitionError(
            "Interval and TTL cannot both be specified".into(),
        ));
    }
    if interval_check && interval == Duration::ZERO {
        return Err(DefinitionError(
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks".into(),
        ));
    }
    if is_alias && (ttl > Duration::ZERO || interval > Duration::ZERO) {
        return Err(DefinitionError(
            "TTL and Interval must not be set for Alias checks".into(),
        ));
    }
    if !interval_check && !is_alias && ttl == Duration::ZERO {
        return Err(DefinitionError(
            "Must provide TTL or Script/HTTP/TCP/UDP/GRPC/Alias interval".into(),
        ));
    }
    let interval = if interval_check {
        interval.max(MIN_INTERVAL)
    } else {
        interval
    };
    let (runner, check_type) = if !c.http.is_empty() {
        let url = url::Url::parse(&c.http)
            .map_err(|e| DefinitionError(format!("invalid HTTP URL {:?}: {e}", c.http)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(DefinitionError(format!(
                "invalid HTTP URL {:?}: scheme must be http or https",
                c.http
            )));
        }
        (
            Runner::Interval(CheckKind::Http {
                url: c.http.clone(),
                method: if c.method.is_empty() {
                    "GET".into()
                } else {
                    c.method.to_uppercase()
                },
                header: c.header.clone(),
                body: c.body.clone(),
                tls_skip_verify: c.tls_skip_verify,
                tls_server_name: c.tls_server_name.clone(),
                disable_redirects: c.disable_redirects,
            }),
            "http",
        )
    } else if !c.tcp.is_empty() {
        (
            Runner::Interval(CheckKind::Tcp {
                address: c.tcp.clone(),
            }),
            "tcp",
        )
    } else if !c.udp.is_empty() {
        (
            Runner::Interval(CheckKind::Udp {
                address: c.udp.clone(),
            }),
            "udp",
        )
    } else if !c.grpc.is_empty() {
        (
            Runner::Interval(CheckKind::Grpc {
                target: c.grpc.clone(),
                use_tls: c.grpc_use_tls,
                tls_skip_verify: c.tls_skip_verify,
            }),
            "grpc",
        )
    } else if !c.args.is_empty() {
        scripts.check(source)?;
        (
            Runner::Interval(CheckKind::Script {
                args: c.args.clone(),
            }),
            "script",
        )
    } else if is_alias {
        (
            Runner::Alias {
                node: c.alias_node.clone(),
                service_id: c.alias_service.clone(),
            },
            "alias",
        )
    } else {
        (Runner::Ttl(ttl), "ttl")
    };
    let show = |d: Duration| {
        if d.is_zero() {
            String::new()
        } else {
            muster_api::duration::format(d)
        }
    };
    let definition = HealthCheckDefinition {
        http: c.http.clone(),
        header: c.header.clone(),
        method: c.method.clone(),
        body: c.body.clone(),
        tls_server_name: c.tls_server_name.clone(),
        tls_skip_verify: c.tls_skip_verify,
        tcp: c.tcp.clone(),
        udp: c.udp.clone(),
        grpc: c.grpc.clone(),
        grpc_use_tls: c.grpc_use_tls,
        script_args: c.args.clone(),
        alias_node: c.alias_node.clone(),
        alias_service: c.alias_service.clone(),
        ttl: show(ttl),
        interval: show(interval),
        timeout: show(timeout),
        deregister_critical_service_after: deregister_after.map(show).unwrap_or_default(),
    };
    Ok(CheckDef {
        id,
        name: c.name.clone(),
        notes: c.notes.clone(),
        service_id: c.service_id.clone(),
        initial_status,
        runner,
        check_type,
        interval,
        timeout,
        success_before_passing: c.success_before_passing,
        failures_before_warning: c.failures_before_warning,
        failures_before_critical: c.failures_before_critical,
        deregister_after,
        definition,
        registration: c.clone(),
    })
}

/// Every service and check definition of a config, validated; errors name the source file.
pub fn from_config(
    services: &[Sourced],
    checks: &[Sourced],
    datacenter: &str,
    scripts: ScriptPolicy,
) -> Result<(Vec<ServiceDef>, Vec<CheckDef>), DefinitionError> {
    let mut out_services = Vec::new();
    let mut ids = BTreeMap::new();
    for (i, Sourced { source, value: v }) in services.iter().enumerate() {
        let in_file =
            |e: DefinitionError| DefinitionError(format!("Error parsing {source}: {}", e.0));
        let reg = parse_service_at(v, &format!("services[{i}]"), true).map_err(in_file)?;
        let def = validate_service(&reg, datacenter, Source::Local, scripts)
            .map_err(|e| in_file(DefinitionError(format!("service {:?}: {}", reg.name, e.0))))?;
        if let Some(other) = ids.insert(def.service.id.clone(), source.clone()) {
            return Err(in_file(DefinitionError(format!(
                "service ID {:?} is also defined in {other}",
                def.service.id
            ))));
        }
        out_services.push(def);
    }
    let mut out_checks = Vec::new();
    for (i, Sourced { source, value: v }) in checks.iter().enumerate() {
        let in_file =
            |e: DefinitionError| DefinitionError(format!("Error parsing {source}: {}", e.0));
        let mut reg = parse_check_at(v, &format!("checks[{i}]"), true).map_err(in_file)?;
        // A config file's check may leave the name out: it is then its ID, as in Consul.
        if reg.name.is_empty() {
            reg.name = if reg.check_id.is_empty() {
                reg.id.clone()
            } else {
                reg.check_id.clone()
            };
        }
        out_checks.push(validate_check(&reg, Source::Local, scripts).map_err(in_file)?);
    }
    Ok((out_services, out_checks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_case_and_any_case() {
        let v = json!({"name": "web", "port": 80, "enable_tag_override": true,
            "check": {"http": "http://127.0.0.1/", "interval": "10s", "tls_skip_verify": true,
                      "deregister_critical_service_after": "1m", "Header": {"X": "y"}}});
        let r = parse_service(&v).expect("parse");
        assert_eq!(r.name, "web");
        assert!(r.enable_tag_override);
        let c = r.check.expect("check");
        assert!(c.tls_skip_verify);
        assert_eq!(c.deregister_critical_service_after, "1m");
        assert_eq!(c.header["X"], vec!["y".to_string()]);
        let v = json!({"NAME": "web", "Check": [{"TTL": "5s"}], "script_args": null});
        assert!(parse_service(&v).is_err(), "script_args is a check field");
        let r = parse_service_at(
            &json!({"NAME": "web", "Check": [{"TTL": "5s"}]}),
            "service",
            true,
        )
        .expect("hcl shape");
        assert_eq!(r.check.map(|c| c.ttl), Some("5s".into()));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_service(&json!({"name": "web", "port": "abc"})).expect_err("port");
        assert!(e.0.starts_with("service.port:"), "{e}");
        let e =
            parse_service(&json!({"name": "web", "check": {"interval": "10x"}})).expect_err("dur");
        assert!(
            e.0.starts_with("service.check.interval: invalid duration"),
            "{e}"
        );
        let e = parse_service(&json!({"name": "web", "prot": 80})).expect_err("unknown");
        assert_eq!(e.0, "service.prot: unknown field");
        // Lenient (HTTP bodies) ignores unknown fields.
        assert!(parse_service_at(&json!({"Name": "web", "Bogus": 1}), "body", false).is_ok());
    }

    #[test]
    fn defaults_and_ids() {
        let r = parse_service(&json!({"name": "web", "checks": [{"ttl": "10s"}, {"tcp": "127.0.0.1:1", "interval": "100ms"}]})).expect("parse");
        let d = validate_service(&r, "dc1", Source::Local, ScriptPolicy::default()).expect("valid");
        assert_eq!(d.service.id, "web");
        assert_eq!(d.checks[0].id, "service:web:1");
        assert_eq!(d.checks[1].id, "service:web:2");
        assert_eq!(d.checks[0].name, "Service 'web' check");
        assert_eq!(d.checks[1].interval, MIN_INTERVAL);
        assert_eq!(
            d.checks[1].timeout,
            Duration::ZERO,
            "the runner's default applies"
        );
        assert_eq!(d.checks[0].initial_status, HealthStatus::Critical);
    }

    #[test]
    fn consul_rules() {
        let check = |v: Value| {
            let c = parse_check(&v).expect("parse");
            validate_check(&c, Source::Remote, ScriptPolicy::default())
        };
        assert!(check(json!({"name": "a", "http": "http://x/"}))
            .unwrap_err()
            .0
            .contains("Interval must be > 0"));
        assert!(check(json!({"name": "a", "ttl": "1s", "interval": "1s"}))
            .unwrap_err()
            .0
            .contains("cannot both"));
        assert!(check(json!({"name": "a"}))
            .unwrap_err()
            .0
            .contains("Must provide TTL"));
        assert!(
            check(json!({"name": "a", "args": ["true"], "interval": "1s"}))
                .unwrap_err()
                .0
                .contains("from remote calls")
        );
        assert!(check(json!({"id": "x", "ttl": "1s"}))
            .unwrap_err()
            .0
            .contains("Missing check name"));
        assert_eq!(
            check(json!({"name": "a", "ttl": "1s"})).expect("ttl").id,
            "a"
        );
        let local = validate_check(
            &parse_check(&json!({"name": "a", "args": ["true"], "interval": "1s"})).expect("parse"),
            Source::Local,
            ScriptPolicy {
                enable_script_checks: false,
                enable_local_script_checks: true,
            },
        );
        assert!(local.is_ok());
    }
}
