//! The DNS server's settings, resolved once from [`Config`]: the domains, `dns_config` (already
//! type-checked against Consul's keys by the config module, durations still Go strings) with
//! Consul's defaults, and the recursors as socket addresses.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use crate::config::{parse_duration, Config};

/// Consul's hard cap on `udp_answer_limit` (`maxUDPAnswerLimit`).
pub const MAX_UDP_ANSWER_LIMIT: usize = 8;

/// The SOA fields (Consul's `dns_config.soa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Soa {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for Soa {
    fn default() -> Self {
        Soa {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

/// How the recursors are tried (`dns_config.recursor_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecursorStrategy {
    /// In the configured order.
    Sequential,
    /// In a random order per query.
    Random,
}

/// Everything the DNS server needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The primary domain, lower case, without the trailing dot ("consul").
    pub domain: String,
    pub alt_domain: Option<String>,
    /// This agent's datacenter (lower case).
    pub datacenter: String,
    pub node_ttl: Duration,
    /// `service_ttl` keys without a trailing `*`: exact service names.
    pub service_ttl_exact: BTreeMap<String, Duration>,
    /// `service_ttl` keys that ended in `*`, without it: longest prefix wins (`""` is `*`).
    pub service_ttl_prefix: Vec<(String, Duration)>,
    pub allow_stale: bool,
    pub max_stale: Duration,
    pub only_passing: bool,
    /// Set TC on a UDP answer that lost records. Muster's default is `true` (see the module
    /// docs of `dns`); `false` trims silently, as Consul's default does.
    pub enable_truncate: bool,
    /// Answers in a UDP response to a query without EDNS (at most [`MAX_UDP_ANSWER_LIMIT`]).
    pub udp_answer_limit: usize,
    /// Most A/AAAA answers for a service lookup; 0 means no limit.
    pub a_record_limit: usize,
    /// TXT records of node meta in the additional section of node and SRV answers.
    pub node_meta_txt: bool,
    pub recursors: Vec<SocketAddr>,
    pub recursor_timeout: Duration,
    pub recursor_strategy: RecursorStrategy,
    pub soa: Soa,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            domain: "consul".into(),
            alt_domain: None,
            datacenter: "dc1".into(),
            node_ttl: Duration::ZERO,
            service_ttl_exact: BTreeMap::new(),
            service_ttl_prefix: Vec::new(),
            allow_stale: true,
            max_stale: Duration::from_secs(87600 * 3600),
            only_passing: false,
            enable_truncate: true,
            udp_answer_limit: 3,
            a_record_limit: 0,
            node_meta_txt: true,
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
            recursor_strategy: RecursorStrategy::Sequential,
            soa: Soa::default(),
        }
    }
}

impl Settings {
    /// Resolves the settings from a checked configuration. Values the config module has not
    /// vetted (a recursor that is not an address, an unknown strategy) are errors naming the key.
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let mut s = Settings {
            domain: config.domain.trim_end_matches('.').to_ascii_lowercase(),
            alt_domain: config
                .alt_domain
                .as_deref()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty()),
            datacenter: config.datacenter.to_ascii_lowercase(),
            ..Settings::default()
        };
        for r in &config.recursors {
            s.recursors.push(recursor_addr(r)?);
        }
        let empty = serde_json::Map::new();
        let dns = config.dns_config.as_object().unwrap_or(&empty);
        let duration = |key: &str| -> Result<Option<Duration>, String> {
            match dns.get(key) {
                Some(Value::String(v)) => parse_duration(v)
                    .map(Some)
                    .map_err(|e| format!("dns_config.{key}: {e}")),
                _ => Ok(None),
            }
        };
        let boolean = |key: &str| dns.get(key).and_then(Value::as_bool);
        let count = |key: &str| dns.get(key).and_then(Value::as_i64);

        if let Some(d) = duration("node_ttl")? {
            s.node_ttl = d;
        }
        if let Some(d) = duration("max_stale")? {
            s.max_stale = d;
        }
        if let Some(d) = duration("recursor_timeout")? {
            s.recursor_timeout = d;
        }
        if let Some(b) = boolean("allow_stale") {
            s.allow_stale = b;
        }
        if let Some(b) = boolean("only_passing") {
            s.only_passing = b;
        }
        if let Some(b) = boolean("enable_truncate") {
            s.enable_truncate = b;
        }
        if let Some(b) = boolean("enable_additional_node_meta_txt") {
            s.node_meta_txt = b;
        }
        if let Some(n) = count("udp_answer_limit") {
            s.udp_answer_limit = usize::try_from(n.max(0)).unwrap_or(0);
        }
        if let Some(n) = count("a_record_limit") {
            s.a_record_limit = usize::try_from(n.max(0)).unwrap_or(0);
        }
        match dns.get("recursor_strategy").and_then(Value::as_str) {
            None | Some("") | Some("sequential") => {}
            Some("random") => s.recursor_strategy = RecursorStrategy::Random,
            Some(other) => {
                return Err(format!(
                "dns_config.recursor_strategy: {other:?} is not one of \"sequential\", \"random\""
            ))
            }
        }
        if let Some(Value::Object(ttls)) = dns.get("service_ttl") {
            for (name, v) in ttls {
                let Some(text) = v.as_str() else { continue };
                let ttl = parse_duration(text)
                    .map_err(|e| format!("dns_config.service_ttl.{name}: {e}"))?;
                match name.strip_suffix('*') {
                    Some(prefix) => s.service_ttl_prefix.push((prefix.to_string(), ttl)),
                    None => {
                        s.service_ttl_exact.insert(name.clone(), ttl);
                    }
                }
            }
            // Longest prefix first, so the first match is the longest.
            s.service_ttl_prefix
                .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        }
        if let Some(Value::Object(soa)) = dns.get("soa") {
            let field = |key: &str| {
                soa.get(key)
                    .and_then(Value::as_u64)
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            };
            s.soa = Soa {
                refresh: field("refresh").unwrap_or(s.soa.refresh),
                retry: field("retry").unwrap_or(s.soa.retry),
                expire: field("expire").unwrap_or(s.soa.expire),
                min_ttl: field("min_ttl").unwrap_or(s.soa.min_ttl),
            };
        }
        Ok(s)
    }

    /// The TTL of a service's records: `service_ttl[name]`, else the longest matching
    /// `prefix*`, else 0 (Consul's `GetTTLForService`).
    pub fn service_ttl(&self, service: &str) -> u32 {
        let ttl = self.service_ttl_exact.get(service).copied().or_else(|| {
            self.service_ttl_prefix
                .iter()
                .find(|(p, _)| service.starts_with(p.as_str()))
                .map(|(_, d)| *d)
        });
        secs(ttl.unwrap_or(Duration::ZERO))
    }

    /// The TTL of node records.
    pub fn node_ttl_secs(&self) -> u32 {
        secs(self.node_ttl)
    }

    /// The UDP answer limit actually applied.
    pub fn udp_answer_limit(&self) -> usize {
        self.udp_answer_limit.min(MAX_UDP_ANSWER_LIMIT)
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// "IP" or "IP:port" (port 53 when omitted), as Consul's `recursorAddr`.
pub fn recursor_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = t.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("recursors: {t:?} is not an IP address or IP:port"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_consuls_but_truncate() {
        let s = Settings::from_config(&Config::default()).unwrap();
        assert_eq!(s.domain, "consul");
        assert_eq!(s.node_ttl, Duration::ZERO);
        assert_eq!(s.service_ttl("web"), 0);
        assert!(s.allow_stale);
        assert!(!s.only_passing);
        assert!(s.enable_truncate);
        assert_eq!(s.udp_answer_limit(), 3);
        assert_eq!(s.a_record_limit, 0);
        assert_eq!(s.recursor_timeout, Duration::from_secs(2));
        assert_eq!(s.soa, Soa::default());
        assert_eq!(
            (s.soa.refresh, s.soa.retry, s.soa.expire, s.soa.min_ttl),
            (3600, 600, 86400, 0)
        );
    }

    #[test]
    fn dns_config_is_read() {
        let config = Config {
            recursors: vec!["127.0.0.1".into(), "[::1]:5353".into()],
            dns_config: json!({
                "node_ttl": "10s",
                "service_ttl": {"*": "5s", "web*": "7s", "web-api": "9s"},
                "only_passing": true,
                "enable_truncate": false,
                "udp_answer_limit": 20,
                "a_record_limit": 2,
                "recursor_timeout": "500ms",
                "recursor_strategy": "random",
                "soa": {"refresh": 1, "retry": 2, "expire": 3, "min_ttl": 4}
            }),
            ..Config::default()
        };
        let s = Settings::from_config(&config).unwrap();
        assert_eq!(s.node_ttl_secs(), 10);
        assert_eq!(s.service_ttl("db"), 5);
        assert_eq!(s.service_ttl("web"), 7);
        assert_eq!(s.service_ttl("web-x"), 7);
        assert_eq!(s.service_ttl("web-api"), 9);
        assert!(s.only_passing);
        assert!(!s.enable_truncate);
        assert_eq!(s.udp_answer_limit(), MAX_UDP_ANSWER_LIMIT);
        assert_eq!(s.a_record_limit, 2);
        assert_eq!(s.recursor_timeout, Duration::from_millis(500));
        assert_eq!(s.recursor_strategy, RecursorStrategy::Random);
        assert_eq!(
            s.soa,
            Soa {
                refresh: 1,
                retry: 2,
                expire: 3,
                min_ttl: 4
            }
        );
        assert_eq!(
            s.recursors,
            vec![
                "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
    }
}
