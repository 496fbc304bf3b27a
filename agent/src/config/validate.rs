//! Whole-configuration checks and normalisation after all sources are applied: required
//! settings, settings that contradict each other, Consul's spellings normalised (log level,
//! datacenter, domain, node ID), the node name defaulted to the hostname, and Consul's startup
//! warnings. Messages are Consul's where it has them.

use std::path::Path;

use super::Config;
use super::ConfigError;

/// Where Linux keeps the hostname; read rather than calling gethostname(2), which needs a nix
/// feature this crate does not enable.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// Checks and normalises `config` in place; appends Consul's warnings.
pub(super) fn resolve(config: &mut Config, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));

    // Required settings first, as Consul.
    config.datacenter = config.datacenter.to_lowercase();
    check_basic_name("datacenter", &config.datacenter, false)?;
    if let Some(p) = &mut config.primary_datacenter {
        *p = p.to_lowercase();
        check_basic_name("primary_datacenter", p, true)?;
    }
    if config.primary_datacenter.as_deref() == Some("") {
        config.primary_datacenter = None;
    }
    if !config.dev {
        match &config.data_dir {
            None => return invalid("data_dir cannot be empty".to_string()),
            Some(dir) => check_data_dir(dir)?,
        }
    }

    if config.node_name.is_empty() {
        config.node_name = hostname().map_err(|why| {
            ConfigError::Invalid(format!(
                "node_name cannot be empty: could not read the hostname ({why}); set -node or \
                 node_name"
            ))
        })?;
    }
    if !is_dns_label(&config.node_name) {
        warnings.push(format!(
            "Node name \"{}\" will not be discoverable via DNS due to invalid characters. Valid \
             characters include all alpha-numerics and dashes.",
            config.node_name
        ));
    }

    if let Some(id) = &mut config.node_id {
        let lower = id.trim().to_lowercase();
        if lower.len() != 36 || uuid::Uuid::try_parse(&lower).is_err() {
            return invalid(format!(
                "node_id \"{id}\" is not a valid UUID (expected the form \
                 xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
            ));
        }
        *id = lower;
    }

    config.log_level = normalize_log_level(&config.log_level)?;

    config.domain = normalize_domain(&config.domain);
    if config.domain.is_empty() {
        return invalid("domain cannot be empty".to_string());
    }
    if let Some(alt) = &mut config.alt_domain {
        *alt = normalize_domain(alt);
    }
    if config.alt_domain.as_deref() == Some("") {
        config.alt_domain = None;
    }
    if let Some(alt) = &config.alt_domain {
        let first = alt.split('.').next().unwrap_or_default();
        if ["service", "connect", "node", "query", "addr"].contains(&first)
            || first == config.datacenter
        {
            return invalid(format!(
                "alt_domain cannot start with {{service,connect,node,query,addr,{}}}",
                config.datacenter
            ));
        }
    }

    if let Some(a) = config.advertise_addr {
        if a.is_unspecified() {
            return invalid("Advertise address cannot be 0.0.0.0, :: or [::]".to_string());
        }
    }
    for r in &config.recursors {
        let host = r
            .parse::<std::net::SocketAddr>()
            .map(|s| s.ip())
            .or_else(|_| super::schema::parse_ip(r));
        if matches!(host, Ok(ip) if ip.is_unspecified()) {
            return invalid("DNS recursor address cannot be 0.0.0.0, :: or [::]".to_string());
        }
    }

    // Server and bootstrap settings, in Consul's order.
    if config.bootstrap && !config.server {
        return invalid("'bootstrap = true' requires 'server = true'".to_string());
    }
    if let Some(n) = config.bootstrap_expect {
        if !config.server {
            return invalid("'bootstrap_expect > 0' requires 'server = true'".to_string());
        }
        if config.dev {
            return invalid("'bootstrap_expect > 0' not allowed in dev mode".to_string());
        }
        if config.bootstrap {
            return invalid(
                "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive".to_string(),
            );
        }
        if n == 2 {
            warnings.push(
                "bootstrap_expect = 2: A cluster with 2 servers will provide no failure \
                 tolerance. See https://www.consul.io/docs/internals/consensus.html#deployment-table"
                    .to_string(),
            );
        } else if n > 2 && n % 2 == 0 {
            warnings.push(
                "bootstrap_expect is even number: A cluster with an even number of servers does \
                 not achieve optimum fault tolerance. See \
                 https://www.consul.io/docs/internals/consensus.html#deployment-table"
                    .to_string(),
            );
        }
    }
    if config.server && config.bootstrap && !config.dev {
        warnings.push("bootstrap = true: do not enable unless necessary".to_string());
    }

    let lan = &config.gossip_lan;
    if lan.probe_timeout >= lan.probe_interval {
        return Err(ConfigError::Invalid(format!(
            "gossip_lan.probe_timeout ({:?}) must be shorter than gossip_lan.probe_interval ({:?}): \
             the rest of the interval is left for indirect probes",
            lan.probe_timeout, lan.probe_interval
        )));
    }
    if config.reconnect_timeout < std::time::Duration::from_secs(8 * 3600) {
        return Err(ConfigError::Invalid(
            "reconnect_timeout must be >= 8h".to_string(),
        ));
    }
    if let Some(key) = &config.encrypt {
        check_encrypt_key(key)?;
    }
    check_node_meta(config)?;
    check_https(config)?;
    check_internal_rpc(config)?;

    if config.enable_script_checks {
        warnings.push(
            "using enable-script-checks without ACLs and without allow_write_http_from is \
             DANGEROUS, use enable-local-script-checks instead; see \
             https://www.hashicorp.com/blog/protecting-consul-from-rce-risk-in-specific-configurations/"
                .to_string(),
        );
    }
    Ok(())
}

/// Consul's rule for datacenter names.
fn check_basic_name(field: &str, value: &str, allow_empty: bool) -> Result<(), ConfigError> {
    if value.is_empty() {
        if allow_empty {
            return Ok(());
        }
        return Err(ConfigError::Invalid(format!("{field} cannot be empty")));
    }
    let ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{field} can only contain lowercase alphanumeric, - or _ characters. received: \"{value}\""
        )))
    }
}

fn check_data_dir(dir: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(ConfigError::Invalid(format!(
            "data_dir \"{}\" is not a directory",
            dir.display()
        ))),
        Ok(_) => Ok(()),
        // Created at startup.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConfigError::Invalid(format!(
            "Error getting info on data_dir: {e}"
        ))),
    }
}

/// The machine's hostname (Linux), trimmed.
fn hostname() -> Result<String, String> {
    let raw =
        std::fs::read_to_string(HOSTNAME_FILE).map_err(|e| format!("{HOSTNAME_FILE}: {e}"))?;
    let name = raw.trim();
    if name.is_empty() {
        Err(format!("{HOSTNAME_FILE} is empty"))
    } else {
        Ok(name.to_string())
    }
}

/// Whether `name` can be a DNS label (alphanumerics and dashes, at most 63 bytes).
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Lower case; `err` becomes `error`, `warning` becomes `warn`.
fn normalize_log_level(level: &str) -> Result<String, ConfigError> {
    let lower = level.trim().to_lowercase();
    match lower.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => Ok(lower),
        "err" => Ok("error".to_string()),
        "warning" => Ok("warn".to_string()),
        _ => Err(ConfigError::Invalid(format!(
            "Invalid log level: \"{level}\". Valid log levels are: [trace debug info warn err]"
        ))),
    }
}

/// Lower case, without the trailing dot(s) Consul's docs sometimes write ("consul.").
fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_lowercase()
}

/// A gossip key is base64 of 16, 24 or 32 bytes (AES-128/192/256), as `consul keygen` makes.
fn check_encrypt_key(key: &str) -> Result<(), ConfigError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| ConfigError::Invalid(format!("encrypt has invalid key: {e}")))?;
    match bytes.len() {
        16 | 24 | 32 => Ok(()),
        n => Err(ConfigError::Invalid(format!(
            "encrypt has invalid key: the key must be 16, 24 or 32 bytes, got {n}"
        ))),
    }
}

/// The HTTPS listener's TLS settings against `ports.https`: Consul's messages for
/// `verify_incoming` (checked whether or not the port is set, as Consul does), Muster's for an
/// HTTPS port without a certificate (Consul would start and fail every handshake). The files
/// themselves are read when the listener starts (`http::tls`).
fn check_https(config: &Config) -> Result<(), ConfigError> {
    let tls = &config.https_tls;
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if tls.verify_incoming {
        if tls.ca_file.is_none() && tls.ca_path.is_none() {
            return invalid(
                "VerifyIncoming set but no CA certificates were provided: set tls.https.ca_file \
                 or ca_path (or tls.defaults.ca_file or ca_path) to the CA that signs the \
                 client certificates"
                    .to_string(),
            );
        }
        if tls.cert_file.is_none() || tls.key_file.is_none() {
            return invalid(
                "VerifyIncoming requires a Cert and Key pair in the configuration file: set \
                 tls.https.cert_file and key_file (or tls.defaults.cert_file and key_file)"
                    .to_string(),
            );
        }
    }
    let Some(port) = config.ports.https else {
        return Ok(());
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), Some(_)) => Ok(()),
        (None, None) => invalid(format!(
            "HTTPS port {port} is set (ports.https, -https-port) but no TLS certificate is: set \
             tls.https.cert_file and key_file (or tls.defaults.cert_file and key_file) to PEM \
             files"
        )),
        (Some(cert), None) => invalid(format!(
            "HTTPS port {port}: cert_file {} is set but key_file is not: set tls.https.key_file \
             (or tls.defaults.key_file) to its PEM private key",
            cert.display()
        )),
        (None, Some(key)) => invalid(format!(
            "HTTPS port {port}: key_file {} is set but cert_file is not: set \
             tls.https.cert_file (or tls.defaults.cert_file) to its PEM certificate",
            key.display()
        )),
    }
}

/// The server RPC's TLS settings: Consul's messages for `verify_incoming` and
/// `verify_outgoing` without a CA (`tlsutil.loadProtocolConfig`, checked on client agents too,
/// as Consul does), Muster's for half a certificate. The files are read when the agent starts
/// (`rpc::tls`).
fn check_internal_rpc(config: &Config) -> Result<(), ConfigError> {
    let tls = &config.rpc_tls;
    let l = &tls.listener;
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let no_ca = l.ca_file.is_none() && l.ca_path.is_none();
    if l.verify_incoming {
        if no_ca {
            return invalid(
                "VerifyIncoming set but no CA certificates were provided: set \
                 tls.internal_rpc.ca_file or ca_path (or tls.defaults.ca_file or ca_path) to the \
                 CA that signs the agents' certificates"
                    .to_string(),
            );
        }
        if l.cert_file.is_none() || l.key_file.is_none() {
            return invalid(
                "VerifyIncoming requires a Cert and Key pair in the configuration file: set \
                 tls.internal_rpc.cert_file and key_file (or tls.defaults.cert_file and \
                 key_file)"
                    .to_string(),
            );
        }
    }
    if tls.verify_outgoing && no_ca {
        return invalid(
            "VerifyOutgoing set but no CA certificates were provided: set \
             tls.internal_rpc.ca_file or ca_path (or tls.defaults.ca_file or ca_path) to the CA \
             that signs the servers' certificates"
                .to_string(),
        );
    }
    match (&l.cert_file, &l.key_file) {
        (Some(cert), None) => invalid(format!(
            "tls.internal_rpc: cert_file {} is set but key_file is not: set \
             tls.internal_rpc.key_file (or tls.defaults.key_file) to its PEM private key",
            cert.display()
        )),
        (None, Some(key)) => invalid(format!(
            "tls.internal_rpc: key_file {} is set but cert_file is not: set \
             tls.internal_rpc.cert_file (or tls.defaults.cert_file) to its PEM certificate",
            key.display()
        )),
        _ => Ok(()),
    }
}

/// Consul's node metadata rules (`structs.ValidateNodeMetadata`).
fn check_node_meta(config: &Config) -> Result<(), ConfigError> {
    const MAX_PAIRS: usize = 64;
    const MAX_KEY: usize = 128;
    const MAX_VALUE: usize = 512;
    let invalid = |m: String| Err(ConfigError::Invalid(format!("node_meta invalid: {m}")));
    if config.node_meta.len() > MAX_PAIRS {
        return invalid(format!(
            "Node metadata cannot contain more than {MAX_PAIRS} key/value pairs"
        ));
    }
    for (k, v) in &config.node_meta {
        if k.is_empty() {
            return invalid("Key cannot be blank".to_string());
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(format!(
                "Key contains invalid characters: \"{k}\" (allowed: letters, digits, - and _)"
            ));
        }
        if k.len() > MAX_KEY {
            return invalid(format!("Key is too long (limit: {MAX_KEY} characters)"));
        }
        if k.starts_with("consul-") {
            return invalid(format!(
                "Key prefix 'consul-' is reserved for internal use: \"{k}\""
            ));
        }
        if v.len() > MAX_VALUE {
            return invalid(format!("Value is too long (limit: {MAX_VALUE} characters)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        assert_eq!(normalize_log_level("INFO").ok().as_deref(), Some("info"));
        assert_eq!(normalize_log_level("err").ok().as_deref(), Some("error"));
        assert_eq!(normalize_log_level("Warn").ok().as_deref(), Some("warn"));
        assert!(normalize_log_level("loud").is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(normalize_domain("Consul."), "consul");
        assert_eq!(normalize_domain("example.com"), "example.com");
    }

    #[test]
    fn basic_names() {
        assert!(check_basic_name("datacenter", "dc-1_a", false).is_ok());
        assert!(check_basic_name("datacenter", "", false).is_err());
        assert!(check_basic_name("primary_datacenter", "", true).is_ok());
        let e = check_basic_name("datacenter", "dc 1", false).expect_err("space");
        assert_eq!(
            e.to_string(),
            "datacenter can only contain lowercase alphanumeric, - or _ characters. received: \"dc 1\""
        );
    }

    #[test]
    fn encrypt_keys() {
        assert!(check_encrypt_key("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=").is_ok());
        assert!(check_encrypt_key("cg8StVXbQJ0gPvMd9o7yrg==").is_ok());
        assert!(check_encrypt_key("not base64!").is_err());
        assert!(check_encrypt_key("YWJj").is_err());
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("node-1"));
        assert!(!is_dns_label("node_1"));
        assert!(!is_dns_label(""));
    }
}
