//! Consul's documented config-file keys, their types and whether Muster uses them; checks one
//! parsed document against that table and rewrites it into canonical form.
//!
//! Canonical form: keys spelled as in the table (Consul matches keys case-insensitively, so do
//! we), aliases folded into their target (`service` into `services`, `start_join` into
//! `retry_join`), `null` values dropped, keys Muster does not implement removed (each leaves one
//! warning), lists always arrays, IP addresses and durations checked (kept as strings), ports as
//! integers with `-1` for "disabled". Every error names the source and the key path.
//!
//! The table of top-level keys follows Consul's agent configuration reference (and its
//! `agent/config/config.go`, including deprecated spellings still accepted there).

use std::net::IpAddr;
use std::net::SocketAddr;

use serde_json::Map;
use serde_json::Value;

use super::duration::parse_duration;
use super::ConfigError;

/// The type a key's value must have.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Bool,
    /// Any integer (range checked later, with Consul's messages).
    Int,
    /// An integer >= 0.
    UInt,
    Str,
    /// A Go duration string ("30s").
    Duration,
    /// An object whose values are Go duration strings (`dns_config.service_ttl`).
    DurationMap,
    /// A list of strings; a single string is taken as a list of one.
    StrList,
    /// An object whose values are strings (`node_meta`).
    StrMap,
    /// One IP address.
    Ip,
    /// Space-separated IP addresses in one string (`client_addr`); replaced, not appended.
    IpList,
    /// Like `IpList`, for `addresses.*`: a `unix://` socket is accepted with a warning and ignored.
    ListenAddrs,
    /// A list of "IP" or "IP:port" strings (`recursors`).
    AddrList,
    /// A port; zero or negative disables the listener (stored as -1), above 65535 is an error.
    Port,
    /// An object with these keys.
    Obj(&'static [Field]),
    /// An object or a list of objects (HCL repeats blocks), kept raw as a list.
    ObjList,
    /// Anything, kept raw.
    Any,
}

/// What Muster does with a key.
#[derive(Debug, Clone, Copy)]
pub(super) enum Use {
    /// Read by Muster.
    Yes,
    /// Checked and kept in `Config` for a part of Muster that does not act on it yet: accepted
    /// with a warning.
    KeptWarn,
    /// Documented by Consul, not implemented by Muster: accepted, dropped, one warning.
    No,
    /// Another spelling of the sibling key `to`; `deprecated` adds a warning.
    Alias { to: &'static str, deprecated: bool },
    /// A deprecated key whose setting moved to the key path `to`: kept under its own name (the
    /// new key wins over it whatever the order, as in Consul, which `build` sees to), with a
    /// warning.
    Moved { to: &'static str },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub use_: Use,
}

const fn yes(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        use_: Use::Yes,
    }
}

const fn kept(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        use_: Use::KeptWarn,
    }
}

const fn no(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Any,
        use_: Use::No,
    }
}

const fn moved(name: &'static str, kind: Kind, to: &'static str) -> Field {
    Field {
        name,
        kind,
        use_: Use::Moved { to },
    }
}

const fn alias(name: &'static str, kind: Kind, to: &'static str, deprecated: bool) -> Field {
    Field {
        name,
        kind,
        use_: Use::Alias { to, deprecated },
    }
}

/// Top-level keys, in Consul's documentation order where it has one (alphabetical here).
pub(super) const TOP: &[Field] = &[
    kept("acl", Kind::Obj(ACL)),
    no("acl_agent_master_token"),
    no("acl_agent_token"),
    no("acl_datacenter"),
    no("acl_default_policy"),
    no("acl_down_policy"),
    no("acl_enable_key_list_policy"),
    no("acl_master_token"),
    no("acl_replication_token"),
    no("acl_token"),
    no("acl_ttl"),
    yes("addresses", Kind::Obj(ADDRESSES)),
    yes("advertise_addr", Kind::Ip),
    no("advertise_addr_ipv4"),
    no("advertise_addr_ipv6"),
    no("advertise_addr_wan"),
    no("advertise_addr_wan_ipv4"),
    no("advertise_addr_wan_ipv6"),
    no("advertise_reconnect_timeout"),
    yes("alt_domain", Kind::Str),
    no("audit"),
    no("auto_config"),
    no("auto_encrypt"),
    no("auto_reload_config"),
    no("autopilot"),
    yes("bind_addr", Kind::Ip),
    yes("bootstrap", Kind::Bool),
    yes("bootstrap_expect", Kind::Int),
    moved("ca_file", Kind::Str, "tls.defaults.ca_file"),
    moved("ca_path", Kind::Str, "tls.defaults.ca_path"),
    no("cache"),
    moved("cert_file", Kind::Str, "tls.defaults.cert_file"),
    alias("check", Kind::ObjList, "checks", false),
    no("check_output_max_size"),
    no("check_update_interval"),
    yes("checks", Kind::ObjList),
    yes("client_addr", Kind::IpList),
    no("cloud"),
    no("config_entries"),
    no("connect"),
    yes("data_dir", Kind::Str),
    yes("datacenter", Kind::Str),
    no("default_query_time"),
    no("disable_anonymous_signature"),
    no("disable_coordinates"),
    no("disable_host_node_id"),
    no("disable_http_unprintable_char_filter"),
    no("disable_keyring_file"),
    no("disable_remote_exec"),
    no("disable_update_check"),
    no("discard_check_output"),
    no("discovery_max_stale"),
    yes("dns_config", Kind::Obj(DNS_CONFIG)),
    yes("domain", Kind::Str),
    no("enable_acl_replication"),
    no("enable_agent_tls_for_checks"),
    no("enable_central_service_config"),
    no("enable_debug"),
    yes("enable_local_script_checks", Kind::Bool),
    yes("enable_script_checks", Kind::Bool),
    no("enable_syslog"),
    yes("encrypt", Kind::Str),
    no("encrypt_verify_incoming"),
    no("encrypt_verify_outgoing"),
    no("experiments"),
    yes("gossip_lan", Kind::Obj(GOSSIP_LAN)),
    no("gossip_wan"),
    no("http_config"),
    moved("key_file", Kind::Str, "tls.defaults.key_file"),
    yes("leave_on_terminate", Kind::Bool),
    no("license_path"),
    yes("limits", Kind::Obj(LIMITS)),
    no("locality"),
    no("log_file"),
    yes("log_json", Kind::Bool),
    yes("log_level", Kind::Str),
    no("log_rotate_bytes"),
    no("log_rotate_duration"),
    no("log_rotate_max_files"),
    no("log_sublevels"),
    no("max_query_time"),
    yes("node_id", Kind::Str),
    yes("node_meta", Kind::StrMap),
    yes("node_name", Kind::Str),
    no("non_voting_server"),
    no("partition"),
    no("peering"),
    yes("performance", Kind::Obj(PERFORMANCE)),
    yes("pid_file", Kind::Str),
    yes("ports", Kind::Obj(PORTS)),
    yes("primary_datacenter", Kind::Str),
    no("primary_gateways"),
    no("primary_gateways_interval"),
    no("protocol"),
    no("raft_boltdb"),
    no("raft_logstore"),
    no("raft_protocol"),
    yes("raft_snapshot_interval", Kind::Duration),
    yes("raft_snapshot_threshold", Kind::UInt),
    yes("raft_trailing_logs", Kind::UInt),
    no("read_replica"),
    yes("reconnect_timeout", Kind::Duration),
    no("reconnect_timeout_wan"),
    yes("recursors", Kind::AddrList),
    no("rejoin_after_leave"),
    no("reporting"),
    yes("retry_interval", Kind::Duration),
    no("retry_interval_wan"),
    yes("retry_join", Kind::StrList),
    no("retry_join_wan"),
    yes("retry_max", Kind::UInt),
    no("retry_max_wan"),
    no("rpc"),
    no("segment"),
    no("segments"),
    no("serf_lan"),
    no("serf_lan_allowed_cidrs"),
    no("serf_wan"),
    no("serf_wan_allowed_cidrs"),
    yes("server", Kind::Bool),
    no("server_name"),
    no("server_rejoin_age_max"),
    alias("service", Kind::ObjList, "services", false),
    yes("services", Kind::ObjList),
    no("session_ttl_min"),
    yes("skip_leave_on_interrupt", Kind::Bool),
    no("snapshot_agent"),
    alias("start_join", Kind::StrList, "retry_join", true),
    no("start_join_wan"),
    no("syslog_facility"),
    no("tagged_addresses"),
    no("telemetry"),
    yes("tls", Kind::Obj(TLS)),
    no("tls_cipher_suites"),
    moved("tls_min_version", Kind::Str, "tls.defaults.tls_min_version"),
    no("tls_prefer_server_cipher_suites"),
    no("translate_wan_addrs"),
    yes("ui", Kind::Bool),
    yes("ui_config", Kind::Obj(UI_CONFIG)),
    no("ui_content_path"),
    no("ui_dir"),
    no("unix_sockets"),
    no("use_streaming_backend"),
    moved(
        "verify_incoming",
        Kind::Bool,
        "tls.defaults.verify_incoming",
    ),
    moved(
        "verify_incoming_https",
        Kind::Bool,
        "tls.https.verify_incoming",
    ),
    moved(
        "verify_incoming_rpc",
        Kind::Bool,
        "tls.internal_rpc.verify_incoming",
    ),
    moved(
        "verify_outgoing",
        Kind::Bool,
        "tls.defaults.verify_outgoing",
    ),
    moved(
        "verify_server_hostname",
        Kind::Bool,
        "tls.internal_rpc.verify_server_hostname",
    ),
    yes("watches", Kind::ObjList),
    no("xds"),
];

const PORTS: &[Field] = &[
    yes("dns", Kind::Port),
    no("expose_max_port"),
    no("expose_min_port"),
    yes("grpc", Kind::Port),
    yes("grpc_tls", Kind::Port),
    yes("http", Kind::Port),
    yes("https", Kind::Port),
    no("proxy_max_port"),
    no("proxy_min_port"),
    yes("serf_lan", Kind::Port),
    yes("serf_wan", Kind::Port),
    yes("server", Kind::Port),
    no("sidecar_max_port"),
    no("sidecar_min_port"),
];

const ADDRESSES: &[Field] = &[
    yes("dns", Kind::ListenAddrs),
    no("grpc"),
    no("grpc_tls"),
    yes("http", Kind::ListenAddrs),
    yes("https", Kind::ListenAddrs),
];

/// Consul 1.12's `tls` block: HTTPS and the server RPC; `grpc` is accepted with a warning.
const TLS: &[Field] = &[
    yes("defaults", Kind::Obj(TLS_DEFAULTS)),
    no("grpc"),
    yes("https", Kind::Obj(TLS_HTTPS)),
    yes("internal_rpc", Kind::Obj(TLS_INTERNAL_RPC)),
];

/// `tls.defaults`. `verify_server_hostname` and `use_auto_cert` are kept so that `build`
/// refuses them with Consul's messages (they belong to `internal_rpc` and `grpc`);
/// `verify_outgoing` applies to the server RPC (Muster makes no other outgoing TLS
/// connections that it would govern).
const TLS_DEFAULTS: &[Field] = &[
    yes("ca_file", Kind::Str),
    yes("ca_path", Kind::Str),
    yes("cert_file", Kind::Str),
    yes("key_file", Kind::Str),
    no("tls_cipher_suites"),
    yes("tls_min_version", Kind::Str),
    yes("use_auto_cert", Kind::Bool),
    yes("verify_incoming", Kind::Bool),
    yes("verify_outgoing", Kind::Bool),
    yes("verify_server_hostname", Kind::Bool),
];

/// `tls.https`; see [`TLS_DEFAULTS`].
const TLS_HTTPS: &[Field] = &[
    yes("ca_file", Kind::Str),
    yes("ca_path", Kind::Str),
    yes("cert_file", Kind::Str),
    yes("key_file", Kind::Str),
    no("tls_cipher_suites"),
    yes("tls_min_version", Kind::Str),
    yes("use_auto_cert", Kind::Bool),
    yes("verify_incoming", Kind::Bool),
    no("verify_outgoing"),
    yes("verify_server_hostname", Kind::Bool),
];

/// `tls.internal_rpc`: the server RPC, both directions; the same keys as [`TLS_DEFAULTS`].
const TLS_INTERNAL_RPC: &[Field] = TLS_DEFAULTS;

const PERFORMANCE: &[Field] = &[
    no("grpc_keepalive_interval"),
    no("grpc_keepalive_timeout"),
    no("leave_drain_time"),
    yes("raft_multiplier", Kind::Int),
    no("rpc_hold_timeout"),
];

const GOSSIP_LAN: &[Field] = &[
    yes("gossip_interval", Kind::Duration),
    yes("gossip_nodes", Kind::Int),
    yes("probe_interval", Kind::Duration),
    yes("probe_timeout", Kind::Duration),
    yes("retransmit_mult", Kind::Int),
    yes("suspicion_mult", Kind::Int),
];

const LIMITS: &[Field] = &[
    no("http_max_conns_per_client"),
    yes("https_handshake_timeout", Kind::Duration),
    yes("kv_max_value_size", Kind::UInt),
    no("request_limits"),
    no("rpc_client_timeout"),
    yes("rpc_handshake_timeout", Kind::Duration),
    no("rpc_max_burst"),
    no("rpc_max_conns_per_client"),
    no("rpc_rate"),
    yes("txn_max_req_len", Kind::UInt),
    no("xds_server"),
];

const UI_CONFIG: &[Field] = &[
    no("content_path"),
    no("dashboard_url_templates"),
    no("dir"),
    yes("enabled", Kind::Bool),
    no("metrics_provider"),
    no("metrics_provider_files"),
    no("metrics_provider_options_json"),
    no("metrics_proxy"),
];

const DNS_CONFIG: &[Field] = &[
    yes("a_record_limit", Kind::Int),
    yes("allow_stale", Kind::Bool),
    yes("cache_max_age", Kind::Duration),
    yes("disable_compression", Kind::Bool),
    yes("enable_additional_node_meta_txt", Kind::Bool),
    yes("enable_truncate", Kind::Bool),
    yes("max_stale", Kind::Duration),
    yes("node_ttl", Kind::Duration),
    yes("only_passing", Kind::Bool),
    yes("prefer_namespace", Kind::Bool),
    yes("recursor_strategy", Kind::Str),
    yes("recursor_timeout", Kind::Duration),
    yes("service_ttl", Kind::DurationMap),
    yes("soa", Kind::Obj(SOA)),
    yes("udp_answer_limit", Kind::Int),
    yes("use_cache", Kind::Bool),
];

const SOA: &[Field] = &[
    yes("expire", Kind::UInt),
    yes("min_ttl", Kind::UInt),
    yes("refresh", Kind::UInt),
    yes("retry", Kind::UInt),
];

const ACL: &[Field] = &[
    yes("default_policy", Kind::Str),
    yes("down_policy", Kind::Str),
    yes("enable_key_list_policy", Kind::Bool),
    yes("enable_token_persistence", Kind::Bool),
    yes("enable_token_replication", Kind::Bool),
    yes("enabled", Kind::Bool),
    yes("msp_disable_bootstrap", Kind::Bool),
    yes("policy_ttl", Kind::Duration),
    yes("role_ttl", Kind::Duration),
    yes("token_ttl", Kind::Duration),
    yes("tokens", Kind::Obj(ACL_TOKENS)),
];

const ACL_TOKENS: &[Field] = &[
    yes("agent", Kind::Str),
    alias("agent_master", Kind::Str, "agent_recovery", true),
    yes("agent_recovery", Kind::Str),
    yes("config_file_service_registration", Kind::Str),
    yes("default", Kind::Str),
    yes("dns", Kind::Str),
    yes("initial_management", Kind::Str),
    yes("managed_service_provider", Kind::Any),
    alias("master", Kind::Str, "initial_management", true),
    yes("replication", Kind::Str),
];

/// Checks one parsed document (the whole file) and returns its canonical form. Warnings for
/// accepted-but-unimplemented and deprecated keys are appended to `warnings`.
pub(super) fn check(
    doc: Value,
    source: &str,
    warnings: &mut Vec<String>,
) -> Result<Map<String, Value>, ConfigError> {
    match doc {
        Value::Object(map) => {
            let mut cx = Cx { source, warnings };
            cx.object(map, TOP, "")
        }
        other => Err(ConfigError::Parse {
            source_name: source.to_string(),
            message: format!(
                "the top level must be an object of config keys, not {}",
                describe(&other)
            ),
        }),
    }
}

/// The warning for a documented key Muster does not implement yet.
pub(super) fn unimplemented_warning(path: &str, source: &str) -> String {
    format!("config key \"{path}\" in {source} is not implemented yet and is ignored")
}

/// The checking context: which source is being read, and where warnings go.
struct Cx<'a> {
    source: &'a str,
    warnings: &'a mut Vec<String>,
}

impl Cx<'_> {
    fn object(
        &mut self,
        map: Map<String, Value>,
        fields: &'static [Field],
        prefix: &str,
    ) -> Result<Map<String, Value>, ConfigError> {
        let mut out = Map::new();
        for (key, value) in map {
            let path = join(prefix, &key);
            let Some(field) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(&key)) else {
                return Err(ConfigError::UnknownKey {
                    source_name: self.source.to_string(),
                    key: path,
                    suggestion: suggest(&key, fields).map(|s| join(prefix, s)),
                });
            };
            if value.is_null() {
                continue;
            }
            let target = match field.use_ {
                Use::No => {
                    self.warnings
                        .push(unimplemented_warning(&path, self.source));
                    continue;
                }
                Use::KeptWarn => {
                    self.warnings
                        .push(unimplemented_warning(&path, self.source));
                    field.name
                }
                Use::Yes => field.name,
                Use::Moved { to } => {
                    self.warnings.push(format!(
                        "config key \"{path}\" in {} is deprecated; use \"{to}\" instead",
                        self.source
                    ));
                    field.name
                }
                Use::Alias { to, deprecated } => {
                    if deprecated {
                        self.warnings.push(format!(
                            "config key \"{path}\" in {} is deprecated; use \"{}\" instead",
                            self.source,
                            join(prefix, to)
                        ));
                    }
                    to
                }
            };
            if let Some(v) = self.value(value, field.kind, &path)? {
                merge_value_into(&mut out, target, v);
            }
        }
        Ok(out)
    }

    /// Checks one value; `None` means "accepted, nothing to keep".
    fn value(&mut self, v: Value, kind: Kind, path: &str) -> Result<Option<Value>, ConfigError> {
        let checked = match kind {
            Kind::Any => v,
            Kind::Bool => match v {
                Value::Bool(_) => v,
                other => return Err(self.wrong(path, "a boolean (true or false)", &other)),
            },
            Kind::Int => match v.as_i64() {
                Some(n) => Value::from(n),
                None => return Err(self.wrong(path, "an integer", &v)),
            },
            Kind::UInt => match v.as_u64() {
                Some(n) => Value::from(n),
                None => return Err(self.wrong(path, "a non-negative integer", &v)),
            },
            Kind::Str => match v {
                Value::String(_) => v,
                other => return Err(self.wrong(path, "a string", &other)),
            },
            Kind::Duration => {
                let s = self.string(v, path, DURATION)?;
                parse_duration(&s).map_err(|m| self.bad(path, m))?;
                Value::String(s)
            }
            Kind::DurationMap => {
                let map = match v {
                    Value::Object(map) => map,
                    other => return Err(self.wrong(path, "an object of duration strings", &other)),
                };
                let mut out = Map::new();
                for (k, v) in map {
                    let p = join(path, &k);
                    let s = self.string(v, &p, DURATION)?;
                    parse_duration(&s).map_err(|m| self.bad(&p, m))?;
                    out.insert(k, Value::String(s));
                }
                Value::Object(out)
            }
            Kind::StrList => Value::Array(
                self.strings(v, path)?
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
            Kind::AddrList => {
                let list = self.strings(v, path)?;
                for (i, s) in list.iter().enumerate() {
                    parse_addr(s).map_err(|m| self.bad(&format!("{path}[{i}]"), m))?;
                }
                Value::Array(list.into_iter().map(Value::String).collect())
            }
            Kind::StrMap => {
                let map = match v {
                    Value::Object(map) => map,
                    other => return Err(self.wrong(path, "an object of strings", &other)),
                };
                let mut out = Map::new();
                for (k, v) in map {
                    let p = join(path, &k);
                    let s = self.string(v, &p, "a string")?;
                    out.insert(k, Value::String(s));
                }
                Value::Object(out)
            }
            Kind::Ip => {
                let s = self.string(v, path, "a string with an IP address")?;
                let ip = parse_ip(&s).map_err(|m| self.bad(path, m))?;
                Value::String(ip.to_string())
            }
            Kind::IpList => {
                let s = self.string(v, path, "a string of space-separated IP addresses")?;
                let ips = parse_ip_list(&s).map_err(|m| self.bad(path, m))?;
                Value::String(join_ips(&ips))
            }
            Kind::ListenAddrs => {
                let s = self.string(v, path, "a string of space-separated IP addresses")?;
                if s.trim_start().starts_with("unix://") {
                    self.warnings.push(format!(
                        "config key \"{path}\" in {}: unix sockets are not implemented yet; \
                         the listener uses client_addr instead",
                        self.source
                    ));
                    return Ok(None);
                }
                let ips = parse_ip_list(&s).map_err(|m| self.bad(path, m))?;
                Value::String(join_ips(&ips))
            }
            Kind::Port => match v.as_i64() {
                Some(n) => Value::from(check_port(n).map_err(|m| self.bad(path, m))?),
                None => return Err(self.wrong(path, "an integer port (-1 disables)", &v)),
            },
            Kind::Obj(fields) => match v {
                Value::Object(map) => Value::Object(self.object(map, fields, path)?),
                // HCL turns a block written twice into a list of bodies: merge them in order.
                Value::Array(items) if items.iter().all(Value::is_object) => {
                    let mut merged = Map::new();
                    for item in items {
                        if let Value::Object(map) = item {
                            let checked = self.object(map, fields, path)?;
                            for (k, v) in checked {
                                merge_value_into(&mut merged, &k, v);
                            }
                        }
                    }
                    Value::Object(merged)
                }
                other => return Err(self.wrong(path, "an object", &other)),
            },
            Kind::ObjList => match v {
                Value::Object(_) => Value::Array(vec![v]),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if !item.is_object() {
                            return Err(self.wrong(&format!("{path}[{i}]"), "an object", item));
                        }
                    }
                    Value::Array(items)
                }
                other => return Err(self.wrong(path, "an object or a list of objects", &other)),
            },
        };
        Ok(Some(checked))
    }

    fn string(&self, v: Value, path: &str, expected: &str) -> Result<String, ConfigError> {
        match v {
            Value::String(s) => Ok(s),
            other => Err(self.wrong(path, expected, &other)),
        }
    }

    fn strings(&self, v: Value, path: &str) -> Result<Vec<String>, ConfigError> {
        match v {
            Value::String(s) => Ok(vec![s]),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| self.string(item, &format!("{path}[{i}]"), "a string"))
                .collect(),
            other => Err(self.wrong(path, "a list of strings", &other)),
        }
    }

    fn wrong(&self, path: &str, expected: &str, found: &Value) -> ConfigError {
        ConfigError::WrongType {
            source_name: self.source.to_string(),
            key: path.to_string(),
            expected: expected.to_string(),
            found: describe(found),
        }
    }

    fn bad(&self, path: &str, message: String) -> ConfigError {
        ConfigError::BadValue {
            source_name: self.source.to_string(),
            key: path.to_string(),
            message,
        }
    }
}

const DURATION: &str = "a duration string such as \"30s\" or \"1m30s\"";

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Inserts `v` under `key`, merging with what is there: objects merge, lists append, anything
/// else is replaced (the later source wins). The same rule merges whole documents.
pub(super) fn merge_value_into(map: &mut Map<String, Value>, key: &str, v: Value) {
    match map.get_mut(key) {
        Some(existing) => merge_value(existing, v),
        None => {
            map.insert(key.to_string(), v);
        }
    }
}

fn merge_value(existing: &mut Value, new: Value) {
    match (existing, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge_value_into(a, &k, v);
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b),
        (slot, new) => *slot = new,
    }
}

/// Describes a value's type (and, for scalars, the value) for an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let ellipsis = if s.chars().count() > 40 { "..." } else { "" };
            format!("a string (\"{shown}{ellipsis}\")")
        }
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// The documented key closest to a mistyped one, if any is close.
fn suggest(key: &str, fields: &[Field]) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    fields
        .iter()
        .map(|f| (edit_distance(&key, f.name), f.name))
        .filter(|(d, name)| *d <= 2 && *d < name.len() / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// One IP address, as `bind_addr`/`advertise_addr`/`-bind` take it.
pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    if t.contains("{{") {
        return Err(format!(
            "\"{t}\": go-sockaddr templates are not supported yet; give an IP address"
        ));
    }
    if t.split_whitespace().count() > 1 {
        return Err(format!("\"{t}\" cannot contain multiple addresses"));
    }
    if t.starts_with("unix://") {
        return Err(format!("\"{t}\" cannot be a unix socket"));
    }
    let bare = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    bare.parse::<IpAddr>()
        .map_err(|_| format!("\"{t}\" is not an IP address"))
}

/// Space-separated IP addresses, as `client_addr`/`-client` take them.
pub(super) fn parse_ip_list(s: &str) -> Result<Vec<IpAddr>, String> {
    if s.contains("{{") {
        return Err(format!(
            "\"{}\": go-sockaddr templates are not supported yet; give IP addresses",
            s.trim()
        ));
    }
    let ips = s
        .split_whitespace()
        .map(parse_ip)
        .collect::<Result<Vec<_>, _>>()?;
    if ips.is_empty() {
        return Err("no address given".to_string());
    }
    Ok(ips)
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// "IP" or "IP:port" (IPv6 with a port as "[::1]:53"), as `recursors`/`-recursor` take them.
pub(super) fn parse_addr(s: &str) -> Result<(), String> {
    let t = s.trim();
    if t.parse::<SocketAddr>().is_ok() || parse_ip(t).is_ok() {
        Ok(())
    } else {
        Err(format!("\"{t}\" is not an IP address or IP:port"))
    }
}

/// A port as Consul reads one: zero or negative disables (-1), above 65535 is an error.
pub(super) fn check_port(n: i64) -> Result<i64, String> {
    if n <= 0 {
        Ok(-1)
    } else if n > 65535 {
        Err(format!("invalid port: {n}"))
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value) -> (Result<Map<String, Value>, ConfigError>, Vec<String>) {
        let mut w = Vec::new();
        let r = check(doc, "a.json", &mut w);
        (r, w)
    }

    #[test]
    fn keys_are_case_insensitive_and_canonicalised() {
        let (r, w) = run(json!({"Datacenter": "x", "PORTS": {"Http": 1}}));
        let m = r.expect("ok");
        assert_eq!(m["datacenter"], "x");
        assert_eq!(m["ports"]["http"], 1);
        assert!(w.is_empty());
    }

    #[test]
    fn aliases_fold_into_their_target() {
        let (r, w) = run(json!({
            "service": {"name": "a"},
            "services": [{"name": "b"}],
            "check": [{"id": "c1"}, {"id": "c2"}],
            "start_join": "10.0.0.1",
            "retry_join": ["10.0.0.2"],
        }));
        let m = r.expect("ok");
        assert_eq!(m["services"].as_array().map(Vec::len), Some(2));
        assert_eq!(m["checks"].as_array().map(Vec::len), Some(2));
        assert_eq!(m["retry_join"].as_array().map(Vec::len), Some(2));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("start_join") && w[0].contains("deprecated"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("datacentr", TOP), Some("datacenter"));
        assert_eq!(suggest("htp", PORTS), Some("http"));
        assert_eq!(suggest("zzzzzz", TOP), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn addresses() {
        assert!(parse_ip("10.0.0.1").is_ok());
        assert!(parse_ip("[::1]").is_ok());
        assert!(parse_ip("10.0.0.1 10.0.0.2")
            .unwrap_err()
            .contains("multiple addresses"));
        assert!(parse_ip("{{ GetPrivateIP }}")
            .unwrap_err()
            .contains("go-sockaddr"));
        assert_eq!(parse_ip_list(" 127.0.0.1  ::1 ").map(|v| v.len()), Ok(2));
        assert!(parse_ip_list("  ").is_err());
        assert!(parse_addr("8.8.8.8").is_ok());
        assert!(parse_addr("8.8.8.8:53").is_ok());
        assert!(parse_addr("[2001:4860::8888]:53").is_ok());
        assert!(parse_addr("dns.google").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(check_port(-1), Ok(-1));
        assert_eq!(check_port(0), Ok(-1));
        assert_eq!(check_port(8500), Ok(8500));
        assert!(check_port(70000).is_err());
    }

    #[test]
    fn repeated_hcl_blocks_merge() {
        let (r, _) = run(json!({"ports": [{"http": 1}, {"dns": 2}]}));
        let m = r.expect("ok");
        assert_eq!(m["ports"], json!({"http": 1, "dns": 2}));
    }

    #[test]
    fn unix_socket_listener_is_a_warning() {
        let (r, w) = run(json!({"addresses": {"http": "unix:///tmp/c.sock"}}));
        assert_eq!(r.expect("ok")["addresses"], json!({}));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("addresses.http"));
    }
}
