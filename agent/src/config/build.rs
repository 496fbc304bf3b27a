//! Merging canonical config documents in order (later scalars win, lists append, objects
//! merge) and applying the result over the built-in defaults of a [`Config`]. The documents were
//! checked by `schema`, so types are known here; range checks that Consul words its own way
//! happen here or in `validate`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Map;
use serde_json::Value;

use super::duration::parse_duration;
use super::schema::merge_value_into;
use super::schema::parse_ip;
use super::schema::parse_ip_list;
use super::Config;
use super::ConfigError;

/// Merges `doc` into `acc`; `doc` is the later source.
pub(super) fn merge(acc: &mut Map<String, Value>, doc: Map<String, Value>) {
    for (k, v) in doc {
        merge_value_into(acc, &k, v);
    }
}

/// Applies the merged documents over `config` (the defaults, or the `-dev` defaults).
pub(super) fn apply(
    config: &mut Config,
    m: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if let Some(b) = bool_at(m, "server") {
        config.server = b;
    }
    if let Some(b) = bool_at(m, "bootstrap") {
        config.bootstrap = b;
    }
    if let Some(n) = int_at(m, "bootstrap_expect") {
        config.bootstrap_expect = Some(bootstrap_expect(n)?);
    }
    if let Some(dir) = str_at(m, "data_dir") {
        if config.dev {
            warnings.push(format!(
                "data_dir \"{dir}\" is ignored in -dev mode: everything is kept in memory"
            ));
        } else if !dir.is_empty() {
            config.data_dir = Some(PathBuf::from(dir));
        }
    }
    if let Some(s) = str_at(m, "node_name") {
        config.node_name = s.to_string();
    }
    if let Some(s) = str_at(m, "node_id") {
        config.node_id = Some(s.to_string());
    }
    if let Some(s) = str_at(m, "datacenter") {
        config.datacenter = s.to_string();
    }
    if let Some(s) = str_at(m, "primary_datacenter") {
        config.primary_datacenter = Some(s.to_string());
    }
    if let Some(s) = str_at(m, "domain") {
        config.domain = s.to_string();
    }
    if let Some(s) = str_at(m, "alt_domain") {
        config.alt_domain = Some(s.to_string());
    }
    if let Some(s) = str_at(m, "bind_addr") {
        config.bind_addr = ip("bind_addr", s)?;
    }
    if let Some(s) = str_at(m, "advertise_addr") {
        config.advertise_addr = Some(ip("advertise_addr", s)?);
    }
    if let Some(s) = str_at(m, "client_addr") {
        config.client_addr = ips("client_addr", s)?;
    }
    if let Some(addresses) = obj_at(m, "addresses") {
        if let Some(s) = str_at(addresses, "http") {
            config.addresses.http = Some(ips("addresses.http", s)?);
        }
        if let Some(s) = str_at(addresses, "https") {
            config.addresses.https = Some(ips("addresses.https", s)?);
        }
        if let Some(s) = str_at(addresses, "dns") {
            config.addresses.dns = Some(ips("addresses.dns", s)?);
        }
    }
    if let Some(ports) = obj_at(m, "ports") {
        let p = &mut config.ports;
        for (key, slot) in [
            ("http", &mut p.http),
            ("https", &mut p.https),
            ("dns", &mut p.dns),
            ("server", &mut p.server),
            ("serf_lan", &mut p.serf_lan),
            ("serf_wan", &mut p.serf_wan),
            ("grpc", &mut p.grpc),
            ("grpc_tls", &mut p.grpc_tls),
        ] {
            if let Some(n) = int_at(ports, key) {
                // Checked by the schema: -1 (disabled) or 1..=65535.
                *slot = u16::try_from(n).ok().filter(|p| *p > 0);
            }
        }
    }
    if let Some(s) = str_at(m, "log_level") {
        config.log_level = s.to_string();
    }
    if let Some(b) = bool_at(m, "log_json") {
        config.log_json = b;
    }
    if let Some(s) = str_at(m, "pid_file") {
        config.pid_file = (!s.is_empty()).then(|| PathBuf::from(s));
    }
    // `ui_config.enabled` wins over the older `ui`, as in Consul.
    if let Some(b) = bool_at(m, "ui") {
        config.ui = b;
    }
    if let Some(b) = obj_at(m, "ui_config").and_then(|u| bool_at(u, "enabled")) {
        config.ui = b;
    }

    if let Some(n) = uint_at(m, "raft_snapshot_threshold") {
        config.raft.snapshot_threshold = n;
    }
    if let Some(s) = str_at(m, "raft_snapshot_interval") {
        config.raft.snapshot_interval = duration("raft_snapshot_interval", s)?;
    }
    if let Some(n) = uint_at(m, "raft_trailing_logs") {
        config.raft.trailing_logs = n;
    }
    if let Some(n) = obj_at(m, "performance").and_then(|p| int_at(p, "raft_multiplier")) {
        config.raft.raft_multiplier = u8::try_from(n)
            .ok()
            .filter(|n| (1..=10).contains(n))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "performance.raft_multiplier cannot be {n}. Must be between 1 and 10"
                ))
            })?;
    }
    if let Some(limits) = obj_at(m, "limits") {
        if let Some(n) = uint_at(limits, "kv_max_value_size") {
            config.limits.kv_max_value_size = positive_size("limits.kv_max_value_size", n)?;
        }
        if let Some(n) = uint_at(limits, "txn_max_req_len") {
            config.limits.txn_max_req_len = positive_size("limits.txn_max_req_len", n)?;
        }
        for (key, slot) in [
            (
                "https_handshake_timeout",
                &mut config.limits.https_handshake_timeout,
            ),
            (
                "rpc_handshake_timeout",
                &mut config.limits.rpc_handshake_timeout,
            ),
        ] {
            if let Some(s) = str_at(limits, key) {
                let d = duration(&format!("limits.{key}"), s)?;
                if d.is_zero() {
                    return Err(ConfigError::Invalid(format!(
                        "limits.{key} must be greater than zero, got {s:?}"
                    )));
                }
                *slot = d;
            }
        }
    }
    config.https_tls = listener_tls(m, "https", warnings)?;
    config.rpc_tls = rpc_tls(m, warnings)?;

    if let Some(list) = strings_at(m, "retry_join") {
        for addr in list {
            if addr.contains("provider=") {
                warnings.push(format!(
                    "retry_join \"{addr}\" uses cloud auto-join, which is not implemented yet; \
                     it is ignored"
                ));
            } else {
                config.retry_join.push(addr);
            }
        }
    }
    if let Some(s) = str_at(m, "retry_interval") {
        config.retry_interval = duration("retry_interval", s)?;
    }
    if let Some(s) = str_at(m, "reconnect_timeout") {
        config.reconnect_timeout = duration("reconnect_timeout", s)?;
    }
    if let Some(g) = obj_at(m, "gossip_lan") {
        gossip_lan(&mut config.gossip_lan, g)?;
    }
    if let Some(n) = uint_at(m, "retry_max") {
        config.retry_max = u32::try_from(n).map_err(|_| {
            ConfigError::Invalid(format!(
                "retry_max cannot be {n}. Must be at most {}",
                u32::MAX
            ))
        })?;
    }
    if let Some(list) = strings_at(m, "recursors") {
        config.recursors.extend(list);
    }
    if let Some(s) = str_at(m, "encrypt") {
        config.encrypt = (!s.is_empty()).then(|| s.to_string());
    }
    if let Some(meta) = obj_at(m, "node_meta") {
        for (k, v) in meta {
            if let Value::String(v) = v {
                config.node_meta.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(b) = bool_at(m, "enable_script_checks") {
        config.enable_script_checks = b;
    }
    if let Some(b) = bool_at(m, "enable_local_script_checks") {
        config.enable_local_script_checks = b;
    }
    if let Some(b) = bool_at(m, "leave_on_terminate") {
        config.leave_on_terminate = Some(b);
    }
    if let Some(b) = bool_at(m, "skip_leave_on_interrupt") {
        config.skip_leave_on_interrupt = Some(b);
    }

    if let Some(list) = array_at(m, "watches") {
        config.watches.extend(list.iter().cloned());
    }
    if let Some(acl) = m.get("acl") {
        config.acl = acl.clone();
    }
    if let Some(Value::Object(dns)) = m.get("dns_config") {
        let mut merged = match std::mem::take(&mut config.dns_config) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        merge(&mut merged, dns.clone());
        config.dns_config = Value::Object(merged);
    }
    Ok(())
}

/// The TLS settings of one listener kind (`stanza`: `https` or `internal_rpc`), as Consul's
/// `buildTLSConfig` and `applyDeprecatedTLSConfig` resolve them: `tls.STANZA.KEY`, else
/// `tls.defaults.KEY`, else the deprecated top-level `KEY` (`verify_incoming_https` or
/// `verify_incoming_rpc` comes before `tls.defaults.verify_incoming`). A key set in a later
/// file does not beat a newer spelling set in an earlier one: the newer spelling always wins.
fn listener_tls(
    m: &Map<String, Value>,
    stanza: &str,
    warnings: &mut Vec<String>,
) -> Result<super::ListenerTls, ConfigError> {
    let tls = obj_at(m, "tls");
    let defaults = tls.and_then(|t| obj_at(t, "defaults"));
    let own = tls.and_then(|t| obj_at(t, stanza));
    for (name, block) in [("defaults", defaults), (stanza, own)] {
        let Some(block) = block else { continue };
        if name != "internal_rpc" && block.contains_key("verify_server_hostname") {
            return Err(ConfigError::Invalid(
                "verify_server_hostname is only valid in the tls.internal_rpc stanza".to_string(),
            ));
        }
        if block.contains_key("use_auto_cert") {
            return Err(ConfigError::Invalid(
                "use_auto_cert is only valid in the tls.grpc stanza".to_string(),
            ));
        }
    }
    let blocks = [own, defaults, Some(m)];
    let path = |key: &str| {
        blocks
            .iter()
            .flatten()
            .find_map(|b| str_at(b, key))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let deprecated_incoming = if stanza == "https" {
        "verify_incoming_https"
    } else {
        "verify_incoming_rpc"
    };
    let verify_incoming = own
        .and_then(|b| bool_at(b, "verify_incoming"))
        .or_else(|| bool_at(m, deprecated_incoming))
        .or_else(|| defaults.and_then(|b| bool_at(b, "verify_incoming")))
        .or_else(|| bool_at(m, "verify_incoming"))
        .unwrap_or(false);
    // Every spelling given is checked, even one a newer spelling overrides.
    let mut min_version = None;
    for (key, block, deprecated) in [
        (format!("tls.{stanza}.tls_min_version"), own, false),
        ("tls.defaults.tls_min_version".to_string(), defaults, false),
        ("tls_min_version".to_string(), Some(m), true),
    ] {
        if let Some(s) = block.and_then(|b| str_at(b, "tls_min_version")) {
            // The deprecated spelling's warning once, with the HTTPS settings.
            let mut ignored = Vec::new();
            let w = if stanza == "https" {
                &mut *warnings
            } else {
                &mut ignored
            };
            let v = tls_version(&key, s, deprecated, w)?;
            min_version = min_version.or(v);
        }
    }
    Ok(super::ListenerTls {
        ca_file: path("ca_file"),
        ca_path: path("ca_path"),
        cert_file: path("cert_file"),
        key_file: path("key_file"),
        verify_incoming,
        min_version: min_version.unwrap_or_default(),
    })
}

/// The server RPC's TLS (`tls.internal_rpc`): the listener's settings, `verify_outgoing`
/// (`tls.internal_rpc`, else `tls.defaults`, else the top-level key) and
/// `verify_server_hostname` (`tls.internal_rpc`, else the top-level key), which implies
/// `verify_outgoing` as in Consul's builder (CVE-2018-19653).
fn rpc_tls(
    m: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<super::RpcTls, ConfigError> {
    let listener = listener_tls(m, "internal_rpc", warnings)?;
    let tls = obj_at(m, "tls");
    let defaults = tls.and_then(|t| obj_at(t, "defaults"));
    let own = tls.and_then(|t| obj_at(t, "internal_rpc"));
    let verify_server_hostname = own
        .and_then(|b| bool_at(b, "verify_server_hostname"))
        .or_else(|| bool_at(m, "verify_server_hostname"))
        .unwrap_or(false);
    let verify_outgoing = own
        .and_then(|b| bool_at(b, "verify_outgoing"))
        .or_else(|| defaults.and_then(|b| bool_at(b, "verify_outgoing")))
        .or_else(|| bool_at(m, "verify_outgoing"))
        .unwrap_or(false)
        || verify_server_hostname;
    Ok(super::RpcTls {
        listener,
        verify_outgoing,
        verify_server_hostname,
    })
}

/// One `tls_min_version` value in Consul's spelling (`None`: empty, i.e. not set). The
/// deprecated top-level key also takes Consul's older `tls12` spelling, with Consul's warning.
/// rustls has no TLS 1.0 or 1.1: those are refused.
fn tls_version(
    key: &str,
    value: &str,
    deprecated_spellings: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<super::TlsVersion>, ConfigError> {
    use super::TlsVersion;
    let old = if deprecated_spellings {
        match value {
            "tls10" => Some("TLSv1_0"),
            "tls11" => Some("TLSv1_1"),
            "tls12" => Some("TLSv1_2"),
            "tls13" => Some("TLSv1_3"),
            _ => None,
        }
    } else {
        None
    };
    if let Some(new) = old {
        warnings.push(format!(
            "'tls_min_version' value '{value}' is deprecated, please specify '{new}' instead"
        ));
    }
    match old.unwrap_or(value) {
        "" => Ok(None),
        "TLS_AUTO" | "TLSv1_2" => Ok(Some(TlsVersion::Tls12)),
        "TLSv1_3" => Ok(Some(TlsVersion::Tls13)),
        v @ ("TLSv1_0" | "TLSv1_1") => Err(ConfigError::Invalid(format!(
            "{key}: {v} is not supported: Muster's TLS library (rustls) implements TLS 1.2 and \
             1.3 only; specify TLSv1_2 or TLSv1_3"
        ))),
        _ => Err(ConfigError::Invalid(format!(
            "{key}: invalid TLS version: no matching TLS version found for {value}, please \
             specify one of [TLS_AUTO, TLSv1_2, TLSv1_3]"
        ))),
    }
}

/// Consul's checks on `bootstrap_expect`'s value; Muster also refuses 0 (leave the key out).
fn bootstrap_expect(n: i64) -> Result<u32, ConfigError> {
    if n < 0 {
        return Err(ConfigError::Invalid(format!(
            "bootstrap_expect cannot be {n}. Must be greater than or equal to zero"
        )));
    }
    if n == 0 {
        return Err(ConfigError::Invalid(
            "bootstrap_expect cannot be 0. Must be at least 1 (leave it out when the server \
             should not wait for others)"
                .to_string(),
        ));
    }
    u32::try_from(n).map_err(|_| ConfigError::Invalid(format!("bootstrap_expect cannot be {n}")))
}

fn positive_size(key: &str, n: u64) -> Result<usize, ConfigError> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ConfigError::Invalid(format!("{key} cannot be {n}. Must be greater than 0")))
}

// The schema has checked these values already; the errors below guard against a mismatch
// between the schema and this file rather than against user input.

fn ip(key: &str, s: &str) -> Result<IpAddr, ConfigError> {
    parse_ip(s).map_err(|m| ConfigError::Invalid(format!("{key}: {m}")))
}

fn ips(key: &str, s: &str) -> Result<Vec<IpAddr>, ConfigError> {
    parse_ip_list(s).map_err(|m| ConfigError::Invalid(format!("{key}: {m}")))
}

/// Applies one `gossip_lan` block (its keys already type-checked by the schema).
fn gossip_lan(lan: &mut super::GossipLan, g: &Map<String, Value>) -> Result<(), ConfigError> {
    let positive = |key: &str| -> Result<Option<std::time::Duration>, ConfigError> {
        let Some(s) = str_at(g, key) else {
            return Ok(None);
        };
        let d = duration(&format!("gossip_lan.{key}"), s)?;
        if d.is_zero() {
            return Err(ConfigError::Invalid(format!(
                "gossip_lan.{key} must be greater than zero, got {s:?}"
            )));
        }
        Ok(Some(d))
    };
    if let Some(d) = positive("probe_interval")? {
        lan.probe_interval = d;
    }
    if let Some(d) = positive("probe_timeout")? {
        lan.probe_timeout = d;
    }
    if let Some(s) = str_at(g, "gossip_interval") {
        lan.gossip_interval = duration("gossip_lan.gossip_interval", s)?;
    }
    let count = |key: &str, min: i64| -> Result<Option<u32>, ConfigError> {
        let Some(n) = int_at(g, key) else {
            return Ok(None);
        };
        u32::try_from(n)
            .ok()
            .filter(|v| i64::from(*v) >= min)
            .map(Some)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "gossip_lan.{key} cannot be {n}. Must be at least {min}"
                ))
            })
    };
    if let Some(n) = count("suspicion_mult", 1)? {
        lan.suspicion_mult = n;
    }
    if let Some(n) = count("retransmit_mult", 1)? {
        lan.retransmit_mult = n;
    }
    if let Some(n) = count("gossip_nodes", 0)? {
        lan.gossip_nodes = n;
    }
    Ok(())
}

fn duration(key: &str, s: &str) -> Result<std::time::Duration, ConfigError> {
    parse_duration(s).map_err(|m| ConfigError::Invalid(format!("{key}: {m}")))
}

fn str_at<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

fn bool_at(m: &Map<String, Value>, key: &str) -> Option<bool> {
    m.get(key).and_then(Value::as_bool)
}

fn int_at(m: &Map<String, Value>, key: &str) -> Option<i64> {
    m.get(key).and_then(Value::as_i64)
}

fn uint_at(m: &Map<String, Value>, key: &str) -> Option<u64> {
    m.get(key).and_then(Value::as_u64)
}

fn obj_at<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    m.get(key).and_then(Value::as_object)
}

fn array_at<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Vec<Value>> {
    m.get(key).and_then(Value::as_array)
}

fn strings_at(m: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    array_at(m, key).map(|list| {
        list.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}
