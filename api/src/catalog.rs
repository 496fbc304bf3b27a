//! Consul's service-discovery JSON shapes: agent services and checks, catalog nodes and
//! services, health entries. Field names are Consul's (PascalCase, `ID` spelled out).
//!
//! Output types serialise every field Consul always sends; input types (`*Registration`)
//! accept Consul's PascalCase keys with every field optional. The agent accepts other
//! spellings (snake_case, any case) by normalising keys before decoding into these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A check's status. `maintenance` is only a filter value in Consul's API; checks themselves
/// are passing, warning or critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Passing,
    Warning,
    Critical,
    Maintenance,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
            HealthStatus::Maintenance => "maintenance",
        }
    }

    /// Parses Consul's spelling of a check status (`passing`, `warning`, `critical`).
    pub fn parse_check(s: &str) -> Option<HealthStatus> {
        match s {
            "passing" => Some(HealthStatus::Passing),
            "warning" => Some(HealthStatus::Warning),
            "critical" => Some(HealthStatus::Critical),
            _ => None,
        }
    }

    /// The worse of two statuses (critical > warning > passing), as Consul aggregates them.
    pub fn worst(self, other: HealthStatus) -> HealthStatus {
        fn rank(s: HealthStatus) -> u8 {
            match s {
                HealthStatus::Passing => 0,
                HealthStatus::Warning => 1,
                HealthStatus::Critical => 2,
                HealthStatus::Maintenance => 3,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DNS SRV weights of a service instance by health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: i32,
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// An address with a port, as in `TaggedAddresses` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceAddress {
    #[serde(rename = "Address", alias = "address", default)]
    pub address: String,
    #[serde(rename = "Port", alias = "port", default)]
    pub port: u16,
}

/// A service as the agent reports it (`/v1/agent/services`, `/v1/agent/service/:id`) and as the
/// `Service` of a health entry or a node's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentService {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    /// Present in catalog answers (the Raft indexes of the catalog row), absent from the
    /// agent's own view.
    #[serde(skip_serializing_if = "is_zero")]
    pub create_index: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub modify_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    pub datacenter: String,
}

/// The `Definition` of a health check: how it is run, as Consul reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheckDefinition {
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false")]
    pub tls_skip_verify: bool,
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    #[serde(rename = "UDP", skip_serializing_if = "String::is_empty")]
    pub udp: String,
    #[serde(rename = "GRPC", skip_serializing_if = "String::is_empty")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "is_false")]
    pub grpc_use_tls: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub script_args: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_service: String,
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty")]
    pub ttl: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deregister_critical_service_after: String,
}

/// A health check as `/v1/agent/checks`, `/v1/health/*` and the catalog report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: HealthStatus,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub check_type: String,
    pub interval: String,
    pub timeout: String,
    pub exposed_port: u16,
    pub definition: HealthCheckDefinition,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            node: String::new(),
            check_id: String::new(),
            name: String::new(),
            status: HealthStatus::Critical,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            check_type: String::new(),
            interval: String::new(),
            timeout: String::new(),
            exposed_port: 0,
            definition: HealthCheckDefinition::default(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// A catalog node (`/v1/catalog/nodes`, and the `Node` of health entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One instance of a service joined with its node (`/v1/catalog/service/:name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogService {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_kind: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub service_address: String,
    pub service_tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub service_weights: Weights,
    pub service_meta: BTreeMap<String, String>,
    pub service_port: u16,
    pub service_enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `/v1/catalog/node/:node`: a node and its services by ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogNode {
    pub node: Node,
    pub services: BTreeMap<String, AgentService>,
}

/// `/v1/catalog/node-services/:node`: a node and its services as a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogNodeServiceList {
    pub node: Node,
    pub services: Vec<AgentService>,
}

/// `/v1/health/service/:name`: an instance with its node and every check that applies to it
/// (the node's checks and the service's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceEntry {
    pub node: Node,
    pub service: AgentService,
    pub checks: Vec<HealthCheck>,
}

/// `/v1/agent/health/service/...`: an instance of a local service with its aggregated status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceChecksInfo {
    pub aggregated_status: HealthStatus,
    pub service: AgentService,
    pub checks: Vec<HealthCheck>,
}

/// A check as a service registration or `/v1/agent/check/register` carries it. Every field is
/// optional; the agent validates the combination (exactly one of HTTP, TCP, UDP, GRPC, Args,
/// TTL, AliasService...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckRegistration {
    #[serde(rename = "CheckID", skip_serializing_if = "String::is_empty")]
    pub check_id: String,
    /// `/v1/agent/check/register` spells the check's ID `ID`.
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub notes: String,
    #[serde(rename = "ServiceID", skip_serializing_if = "String::is_empty")]
    pub service_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty")]
    pub ttl: String,
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(skip_serializing_if = "is_false")]
    pub disable_redirects: bool,
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    #[serde(rename = "UDP", skip_serializing_if = "String::is_empty")]
    pub udp: String,
    #[serde(rename = "GRPC", skip_serializing_if = "String::is_empty")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "is_false")]
    pub grpc_use_tls: bool,
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false")]
    pub tls_skip_verify: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_service: String,
    /// Initial status (`passing`, `warning`, `critical`); critical when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub success_before_passing: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub failures_before_warning: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub failures_before_critical: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deregister_critical_service_after: String,
}

/// A service registration (`PUT /v1/agent/service/register`, and a `service` block in a
/// config file after key normalisation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistration {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    #[serde(skip_serializing_if = "is_false")]
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckRegistration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRegistration>,
}

/// `PUT /v1/catalog/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogRegistration {
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub node: String,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<AgentService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<HealthCheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HealthCheck>,
    #[serde(skip_serializing_if = "is_false")]
    pub skip_node_update: bool,
}

/// `PUT /v1/catalog/deregister`: the node, or one of its services or checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogDeregistration {
    pub node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(rename = "CheckID", skip_serializing_if = "String::is_empty")]
    pub check_id: String,
    #[serde(rename = "ServiceID", skip_serializing_if = "String::is_empty")]
    pub service_id: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_worst() {
        use HealthStatus::*;
        assert_eq!(Passing.worst(Warning), Warning);
        assert_eq!(Critical.worst(Warning), Critical);
        assert_eq!(Passing.worst(Passing), Passing);
    }

    /// From Consul's docs: `GET /v1/agent/services`.
    #[test]
    fn agent_service_golden() {
        let s: AgentService = serde_json::from_str(
            r#"{"ID":"redis","Service":"redis","Tags":[],"Meta":{"redis_version":"4.0"},"Port":8000,"Address":"","EnableTagOverride":false,"Datacenter":"dc1","Weights":{"Passing":10,"Warning":1}}"#,
        )
        .expect("parse");
        assert_eq!(s.weights.passing, 10);
        let out = serde_json::to_string(&s).expect("ser");
        assert!(!out.contains("CreateIndex"), "{out}");
        assert!(
            out.contains(r#""Weights":{"Passing":10,"Warning":1}"#),
            "{out}"
        );
    }

    #[test]
    fn registration_defaults() {
        let r: ServiceRegistration =
            serde_json::from_str(r#"{"Name":"web","Check":{"HTTP":"http://x","Interval":"10s"}}"#)
                .expect("parse");
        assert_eq!(r.name, "web");
        assert_eq!(r.check.as_ref().map(|c| c.interval.as_str()), Some("10s"));
        assert!(r.weights.is_none());
    }
}
