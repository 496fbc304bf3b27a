//! Flags and JSON/HCL config files, resolved into one [`Config`]. Nothing outside this module
//! knows how a setting was spelled or where it came from.
//!
//! The pipeline ([`from_agent_args`]):
//! 1. `flags`: `muster agent`'s Go-style flags parsed with clap into an overlay of config keys,
//!    the ordered list of `-config-file`/`-config-dir` paths and `-hcl` fragments.
//! 2. `file`: each path read (directories in lexical order) and parsed (JSON or HCL) into a
//!    JSON value; parse errors name the file, line and column.
//! 3. `schema`: each document checked against Consul's documented keys and their types, and
//!    rewritten into one canonical spelling; unknown keys and wrong types are errors naming the
//!    file and key path, documented keys Muster does not implement yet become warnings.
//! 4. `build`: the canonical documents merged in order (later scalars win, lists append,
//!    objects merge), flags last, and applied over the built-in defaults.
//! 5. `validate`: the resolved `Config` checked as a whole (Consul's messages where it has
//!    them) and normalised (node name from the hostname, lower-case datacenter, ...).
//!
//! Invariant: this module does no networking and starts nothing; it reads only the files and
//! directories it is told about, `/proc/sys/kernel/hostname`, and stats `data_dir`.

pub mod advertise;
mod build;
mod duration;
mod file;
mod flags;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::parse_duration;

/// Listener ports; `None` means disabled (`-1` in Consul's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub dns: Option<u16>,
    pub server: Option<u16>,
    pub serf_lan: Option<u16>,
    pub serf_wan: Option<u16>,
    pub grpc: Option<u16>,
    pub grpc_tls: Option<u16>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: Some(8500),
            https: None,
            dns: Some(8600),
            server: Some(8300),
            serf_lan: Some(8301),
            serf_wan: Some(8302),
            grpc: None,
            grpc_tls: None,
        }
    }
}

/// Per-listener bind addresses (Consul's `addresses { http = "...", dns = "..." }`); `None` means
/// "use `client_addr`". Only the listeners Muster has are here; the others are accepted in files
/// with a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    pub http: Option<Vec<IpAddr>>,
    pub https: Option<Vec<IpAddr>>,
    pub dns: Option<Vec<IpAddr>>,
}

/// The lowest TLS version a listener accepts (Consul's `tls_min_version`). rustls implements
/// TLS 1.2 and 1.3 only, so Consul's `TLSv1_0` and `TLSv1_1` are refused when the config is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// `TLSv1_2`, also what Consul's default `TLS_AUTO` means.
    #[default]
    Tls12,
    /// `TLSv1_3`.
    Tls13,
}

/// TLS of one listener kind (HTTPS, the server RPC), resolved as Consul does: each setting
/// from `tls.https` (`tls.internal_rpc`), else `tls.defaults`, else the deprecated top-level
/// key (`ca_file`, `cert_file`, ..., `verify_incoming_https` (`verify_incoming_rpc`) before
/// `verify_incoming`). Paths are as written (relative to the working directory); empty strings
/// mean "not set". The files are read when the listener starts (`http::tls`), not here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM CA certificates that client certificates must chain to (`verify_incoming`).
    pub ca_file: Option<PathBuf>,
    /// A directory of PEM CA certificate files; unused when `ca_file` is set.
    pub ca_path: Option<PathBuf>,
    /// The PEM certificate (chain) the listener presents.
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Require a client certificate signed by the CA.
    pub verify_incoming: bool,
    pub min_version: TlsVersion,
}

/// TLS of the server RPC (Consul's `tls.internal_rpc`): the listener's settings (a server
/// with a certificate accepts TLS; with `verify_incoming` only TLS with a client certificate
/// signed by the CA) and the calling side's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcTls {
    pub listener: ListenerTls,
    /// Calls to servers use TLS and check the server's certificate against the CA
    /// (`verify_outgoing`; implied by `verify_server_hostname`, as in Consul since 1.4.1).
    pub verify_outgoing: bool,
    /// The server's certificate must also be valid for `server.<datacenter>.<domain>`.
    pub verify_server_hostname: bool,
}

/// Raft tuning (Consul's `raft_snapshot_threshold`, `raft_snapshot_interval`,
/// `raft_trailing_logs`, `performance.raft_multiplier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTuning {
    /// Take a snapshot after this many log entries since the last one.
    pub snapshot_threshold: u64,
    /// How often to check whether a snapshot is due.
    pub snapshot_interval: Duration,
    /// Log entries kept after a snapshot (for followers that lag).
    pub trailing_logs: u64,
    /// Scales election and heartbeat timings (1 = fastest, Consul's default is 5).
    pub raft_multiplier: u8,
}

/// LAN gossip tuning, Consul's `gossip_lan` block with memberlist's meaning for each key.
///
/// The defaults probe twice as often as Consul's (500 ms against 1 s, the timeout halved too),
/// so a dead member is failed on every other one within about 4 s in a cluster of ten: one
/// probe period to be probed, one to time out, then `suspicion_mult` × log10(members) probe
/// periods of suspicion (at least `suspicion_mult` periods, 2 s) and a few gossip intervals to
/// spread the news. A live member wrongly suspected has those 2 s to refute it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipLan {
    /// Time between probes of a random member.
    pub probe_interval: Duration,
    /// How long a direct probe waits for its ack before asking others (indirect probe).
    pub probe_timeout: Duration,
    /// Suspicion lasts `suspicion_mult` × max(1, log10(members)) × `probe_interval`.
    pub suspicion_mult: u32,
    /// Each update is sent `retransmit_mult` × ceil(log10(members + 1)) times.
    pub retransmit_mult: u32,
    /// Members sent pending updates every `gossip_interval` (0 turns that off).
    pub gossip_nodes: u32,
    pub gossip_interval: Duration,
}

impl Default for GossipLan {
    fn default() -> Self {
        GossipLan {
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(250),
            suspicion_mult: 4,
            retransmit_mult: 4,
            gossip_nodes: 3,
            gossip_interval: Duration::from_millis(200),
        }
    }
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            snapshot_threshold: 16384,
            snapshot_interval: Duration::from_secs(30),
            trailing_logs: 10240,
            raft_multiplier: 5,
        }
    }
}

/// Consul's `limits { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest KV value accepted (bytes); 512 KiB as Consul.
    pub kv_max_value_size: usize,
    /// Most operations in one transaction.
    pub txn_max_ops: usize,
    /// Largest transaction request body (bytes); 512 KiB as Consul (`limits.txn_max_req_len`).
    pub txn_max_req_len: usize,
    /// Longest an HTTPS client may take to finish its TLS handshake (Consul's
    /// `limits.https_handshake_timeout`, 5 s).
    pub https_handshake_timeout: Duration,
    /// Longest a connection to the server RPC may take to send its first byte and, over TLS,
    /// finish its handshake (Consul's `limits.rpc_handshake_timeout`, 5 s).
    pub rpc_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            kv_max_value_size: 512 * 1024,
            txn_max_ops: 64,
            txn_max_req_len: 512 * 1024,
            https_handshake_timeout: Duration::from_secs(5),
            rpc_handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// The one resolved configuration of an agent.
#[derive(Debug, Clone)]
pub struct Config {
    pub dev: bool,
    pub server: bool,
    pub bootstrap: bool,
    pub bootstrap_expect: Option<u32>,
    /// `None` only in `-dev` (everything in memory).
    pub data_dir: Option<PathBuf>,
    pub node_name: String,
    /// A UUID; generated (and persisted under data_dir) when not given.
    pub node_id: Option<String>,
    /// Lower case, as Consul.
    pub datacenter: String,
    pub primary_datacenter: Option<String>,
    /// The DNS domain without a trailing dot ("consul").
    pub domain: String,
    /// Without a trailing dot.
    pub alt_domain: Option<String>,
    pub bind_addr: IpAddr,
    pub advertise_addr: Option<IpAddr>,
    /// Addresses the client interfaces (HTTP, DNS) listen on.
    pub client_addr: Vec<IpAddr>,
    /// Per-listener overrides of `client_addr`; see [`Config::http_addrs`] and
    /// [`Config::dns_addrs`].
    pub addresses: Addresses,
    pub ports: Ports,
    /// TLS of the HTTPS listener (`tls { defaults {...} https {...} }` and the deprecated
    /// top-level keys); checked against `ports.https` when the config is resolved.
    pub https_tls: ListenerTls,
    /// TLS of the server RPC, both directions (`tls.internal_rpc`, `tls.defaults` and the
    /// deprecated top-level keys).
    pub rpc_tls: RpcTls,
    /// One of trace, debug, info, warn, error (lower case; Consul's `err` becomes `error`).
    pub log_level: String,
    pub log_json: bool,
    pub pid_file: Option<PathBuf>,
    pub ui: bool,
    pub raft: RaftTuning,
    pub limits: Limits,
    /// How long KV tombstones are kept before the leader reaps them.
    pub tombstone_ttl: Duration,
    /// Addresses to join (`retry_join`, `start_join`, `-join`, `-retry-join`), in order.
    pub retry_join: Vec<String>,
    /// Time between join attempts (`retry_interval`, default 30s).
    pub retry_interval: Duration,
    /// Join attempts before giving up; 0 retries forever (`retry_max`).
    pub retry_max: u32,
    /// How long a failed gossip member is kept before it is reaped (`reconnect_timeout`,
    /// default 72h, at least 8h).
    pub reconnect_timeout: Duration,
    /// LAN gossip timings (`gossip_lan`).
    pub gossip_lan: GossipLan,
    /// Upstream DNS servers, as written ("8.8.8.8" or "8.8.8.8:53"); each is an IP address with
    /// an optional port (checked).
    pub recursors: Vec<String>,
    /// Gossip encryption key (base64 of 16, 24 or 32 bytes; checked).
    pub encrypt: Option<String>,
    /// Consul's `node_meta` / `-node-meta key:value`.
    pub node_meta: BTreeMap<String, String>,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    /// Consul's `leave_on_terminate`: leave the cluster gracefully on SIGTERM (unset: client
    /// agents do, servers do not; see [`Config::leave_on_terminate`]).
    pub leave_on_terminate: Option<bool>,
    /// Consul's `skip_leave_on_interrupt`: stop on SIGINT without leaving (unset: servers do,
    /// client agents leave; see [`Config::skip_leave_on_interrupt`]).
    pub skip_leave_on_interrupt: Option<bool>,
    /// Raw `service`/`services` definitions from config files with the file each came from;
    /// checked when the config is loaded (`local::definition::from_config`).
    pub services: Vec<Sourced>,
    /// Raw `check`/`checks` definitions from config files.
    pub checks: Vec<Sourced>,
    /// Raw `watches` definitions from config files; checked when the config is loaded
    /// (`watch::config::parse_all`).
    pub watches: Vec<serde_json::Value>,
    /// The `acl { ... }` block, keys checked against Consul's documented ones and spelled in lower
    /// case; `Null` when absent. Accepted with a warning until ACLs exist.
    pub acl: serde_json::Value,
    /// The `dns_config { ... }` block, keys and types checked against Consul's documented ones and
    /// spelled in lower case (durations stay Go duration strings, see [`parse_duration`]); an
    /// empty object when absent.
    pub dns_config: serde_json::Value,
    /// Messages about accepted configuration the operator should see at startup: documented
    /// Consul keys and flags Muster does not implement yet (one message each, naming the key and
    /// the file), deprecated spellings, ignored settings, skipped files.
    pub warnings: Vec<String>,
    /// The `muster agent` arguments this config was resolved from, so a reload can resolve
    /// them again (and re-read the files they name).
    pub args: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dev: false,
            server: false,
            bootstrap: false,
            bootstrap_expect: None,
            data_dir: None,
            node_name: "muster".to_string(),
            node_id: None,
            datacenter: "dc1".to_string(),
            primary_datacenter: None,
            domain: "consul".to_string(),
            alt_domain: None,
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise_addr: None,
            client_addr: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            addresses: Addresses::default(),
            ports: Ports::default(),
            https_tls: ListenerTls::default(),
            rpc_tls: RpcTls::default(),
            log_level: "info".to_string(),
            log_json: false,
            pid_file: None,
            ui: false,
            raft: RaftTuning::default(),
            limits: Limits::default(),
            tombstone_ttl: Duration::from_secs(15 * 60),
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
            reconnect_timeout: Duration::from_secs(72 * 3600),
            gossip_lan: GossipLan::default(),
            recursors: Vec::new(),
            encrypt: None,
            node_meta: BTreeMap::new(),
            enable_script_checks: false,
            leave_on_terminate: None,
            skip_leave_on_interrupt: None,
            enable_local_script_checks: false,
            services: Vec::new(),
            checks: Vec::new(),
            watches: Vec::new(),
            acl: serde_json::Value::Null,
            dns_config: serde_json::Value::Object(serde_json::Map::new()),
            warnings: Vec::new(),
            args: Vec::new(),
        }
    }
}

impl Config {
    /// The `-dev` defaults: one in-memory server on 127.0.0.1 with the UI on and the fastest Raft
    /// timings (Consul's dev mode sets `performance.raft_multiplier = 1` too).
    pub fn dev() -> Self {
        Config {
            dev: true,
            server: true,
            bootstrap: true,
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client_addr: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ui: true,
            raft: RaftTuning {
                raft_multiplier: 1,
                ..RaftTuning::default()
            },
            ..Config::default()
        }
    }

    /// The address other agents reach this one at. `muster agent` has resolved a bind of "any"
    /// into the host's address by now ([`advertise::resolve`]); a config built in-process
    /// without that step falls back to loopback.
    pub fn advertise(&self) -> IpAddr {
        match self.advertise_addr {
            Some(a) => a,
            None if self.bind_addr.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => self.bind_addr,
        }
    }

    /// Addresses the HTTP API listens on: `addresses.http`, else `client_addr`.
    pub fn http_addrs(&self) -> &[IpAddr] {
        self.addresses.http.as_deref().unwrap_or(&self.client_addr)
    }

    /// Whether SIGTERM makes the agent leave the cluster before it stops: `leave_on_terminate`,
    /// by default true for client agents and false for servers (as Consul's).
    pub fn leave_on_terminate(&self) -> bool {
        self.leave_on_terminate.unwrap_or(!self.server)
    }

    /// Whether SIGINT (Ctrl-C) stops the agent without leaving: `skip_leave_on_interrupt`, by
    /// default true for servers and false for client agents (as Consul's).
    pub fn skip_leave_on_interrupt(&self) -> bool {
        self.skip_leave_on_interrupt.unwrap_or(self.server)
    }

    /// Addresses the HTTPS API listens on: `addresses.https`, else `client_addr`.
    pub fn https_addrs(&self) -> &[IpAddr] {
        self.addresses.https.as_deref().unwrap_or(&self.client_addr)
    }

    /// Addresses the DNS server listens on: `addresses.dns`, else `client_addr`.
    pub fn dns_addrs(&self) -> &[IpAddr] {
        self.addresses.dns.as_deref().unwrap_or(&self.client_addr)
    }
}

/// Why a configuration was refused. The Display of each variant is the whole user-facing
/// message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `-h`/`-help`: the usage text (not a failure of the configuration as such).
    #[error("{0}")]
    Help(String),
    /// A bad command-line flag: unknown, missing or bad value. Names the flag.
    #[error("{0}")]
    Flag(String),
    /// A config file or directory could not be read.
    #[error("Error reading {path}: {message}")]
    Read { path: String, message: String },
    /// A config file is not valid JSON/HCL; `message` carries the line and column.
    #[error("Error parsing {source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    /// A key Consul does not document (a typo, usually).
    #[error("Error parsing {source_name}: unknown config key \"{key}\"{}", suggestion_text(.suggestion))]
    UnknownKey {
        source_name: String,
        key: String,
        suggestion: Option<String>,
    },
    /// A key whose value has the wrong JSON/HCL type.
    #[error("Error parsing {source_name}: config key \"{key}\" must be {expected}, got {found}")]
    WrongType {
        source_name: String,
        key: String,
        expected: String,
        found: String,
    },
    /// A key whose value has the right type but cannot be used (bad IP, duration, port).
    #[error("Error parsing {source_name}: config key \"{key}\": {message}")]
    BadValue {
        source_name: String,
        key: String,
        message: String,
    },
    /// The resolved configuration is inconsistent or incomplete (Consul's messages).
    #[error("{0}")]
    Invalid(String),
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    }
}

/// A raw definition and the config source (file) that gave it, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced {
    pub source: String,
    pub value: serde_json::Value,
}

impl Config {
    /// The service and check definitions of the config files, validated.
    pub fn definitions(
        &self,
    ) -> Result<
        (
            Vec<crate::local::definition::ServiceDef>,
            Vec<crate::local::definition::CheckDef>,
        ),
        ConfigError,
    > {
        crate::local::definition::from_config(
            &self.services,
            &self.checks,
            &self.datacenter,
            crate::local::definition::ScriptPolicy {
                enable_script_checks: self.enable_script_checks,
                enable_local_script_checks: self.enable_local_script_checks,
            },
        )
        .map_err(|e| ConfigError::Invalid(e.0))
    }
}

/// Resolves `muster agent` arguments (without `agent` itself) and the config files they name:
/// built-in defaults (`Config::default()`, or `Config::dev()` with `-dev`) < config files and
/// directories in command-line order < `-hcl` fragments < flags.
pub fn from_agent_args(args: Vec<String>) -> Result<Config, ConfigError> {
    let original = args.clone();
    let flags = flags::parse(args)?;
    let mut warnings = flags.warnings;

    let mut merged = serde_json::Map::new();
    let mut sources = Vec::new();
    for path in &flags.config_paths {
        sources.extend(file::load_path(path, flags.format, &mut warnings)?);
    }
    for (i, fragment) in flags.hcl.iter().enumerate() {
        sources.push(file::Source {
            name: if flags.hcl.len() == 1 {
                "the -hcl flag".to_string()
            } else {
                format!("-hcl flag #{}", i + 1)
            },
            text: fragment.clone(),
            format: file::Format::Hcl,
        });
    }
    let mut services = Vec::new();
    let mut checks = Vec::new();
    for source in &sources {
        let doc = file::parse(source)?;
        let mut checked = schema::check(doc, &source.name, &mut warnings)?;
        // Definitions keep their file, so a bad one can be reported with it.
        for (key, out) in [("services", &mut services), ("checks", &mut checks)] {
            if let Some(serde_json::Value::Array(list)) = checked.remove(key) {
                out.extend(list.into_iter().map(|value| Sourced {
                    source: source.name.clone(),
                    value,
                }));
            }
        }
        build::merge(&mut merged, checked);
    }
    build::merge(&mut merged, flags.overlay);

    let mut config = if flags.dev {
        Config::dev()
    } else {
        Config::default()
    };
    // Empty means "not given": `validate` puts the hostname there, as Consul does.
    config.node_name.clear();
    build::apply(&mut config, &merged, &mut warnings)?;
    validate::resolve(&mut config, &mut warnings)?;
    config.services = services;
    config.checks = checks;
    config.definitions()?;
    crate::watch::config::parse_all(&config.watches).map_err(ConfigError::Invalid)?;
    config.warnings = warnings;
    config.args = original;
    Ok(config)
}
