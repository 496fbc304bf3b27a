//! Flags and JSON/HCL config files, resolved into one [`Config`]. Nothing outside this module
//! knows how a setting was spelled or where it came from.

use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            kv_max_value_size: 512 * 1024,
            txn_max_ops: 64,
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
    pub datacenter: String,
    pub primary_datacenter: Option<String>,
    pub domain: String,
    pub alt_domain: Option<String>,
    pub bind_addr: IpAddr,
    pub advertise_addr: Option<IpAddr>,
    /// Addresses the client interfaces (HTTP, DNS) listen on.
    pub client_addr: Vec<IpAddr>,
    pub ports: Ports,
    pub log_level: String,
    pub log_json: bool,
    pub pid_file: Option<PathBuf>,
    pub ui: bool,
    pub raft: RaftTuning,
    pub limits: Limits,
    /// How long KV tombstones are kept before the leader reaps them.
    pub tombstone_ttl: Duration,
    pub retry_join: Vec<String>,
    pub recursors: Vec<String>,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    /// Raw `service`/`services` definitions from config files, for the service-discovery layer.
    pub services: Vec<serde_json::Value>,
    /// Raw `check`/`checks` definitions from config files.
    pub checks: Vec<serde_json::Value>,
    /// Documented Consul keys this agent accepted but does not implement yet, one message each.
    pub warnings: Vec<String>,
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
            ports: Ports::default(),
            log_level: "info".to_string(),
            log_json: false,
            pid_file: None,
            ui: false,
            raft: RaftTuning::default(),
            limits: Limits::default(),
            tombstone_ttl: Duration::from_secs(15 * 60),
            retry_join: Vec::new(),
            recursors: Vec::new(),
            enable_script_checks: false,
            enable_local_script_checks: false,
            services: Vec::new(),
            checks: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// The `-dev` defaults: one in-memory server on 127.0.0.1 with the UI on.
    pub fn dev() -> Self {
        Config {
            dev: true,
            server: true,
            bootstrap: true,
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ui: true,
            ..Config::default()
        }
    }

    /// The address other agents reach this one at.
    pub fn advertise(&self) -> IpAddr {
        match self.advertise_addr {
            Some(a) => a,
            None if self.bind_addr.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => self.bind_addr,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

/// Resolves `muster agent` arguments (without `agent` itself) and the config files they name.
pub fn from_agent_args(args: Vec<String>) -> Result<Config, ConfigError> {
    if args.iter().any(|a| a == "-dev" || a == "--dev") {
        Ok(Config::dev())
    } else {
        Err(ConfigError::Invalid("only -dev for now".into()))
    }
}
