//! `/v1/catalog/*`: nodes and service instances across the datacenter, shaped as Consul's, with
//! blocking queries on targeted topics and `?filter=`. Also the row → wire conversions the
//! health endpoints share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use muster_api::{
    AgentService, CatalogDeregistration, CatalogNode, CatalogNodeServiceList, CatalogRegistration,
    CatalogService, HealthCheck, HealthCheckDefinition, Node, ServiceAddress, Weights,
};

use super::acl::Authorizer;
use super::{json, with_meta, HttpError, Params, QueryOptions};
use crate::filter::{Filter, FilterError};
use crate::server::Agent;
use crate::state::{
    CheckRow, Command, NodeRow, Registration, Response as Applied, ServiceRow, Tables, Topic,
};

// ---- shapes ---------------------------------------------------------------------------

pub fn node_api(n: &NodeRow, dc: &str) -> Node {
    Node {
        id: n.id.clone(),
        node: n.name.clone(),
        address: n.address.clone(),
        datacenter: dc.to_string(),
        tagged_addresses: n.tagged_addresses.clone(),
        meta: n.meta.clone(),
        create_index: n.create_index,
        modify_index: n.modify_index,
    }
}

pub fn service_api(s: &ServiceRow, dc: &str) -> AgentService {
    AgentService {
        kind: s.kind.clone(),
        id: s.id.clone(),
        service: s.name.clone(),
        tags: s.tags.clone(),
        meta: s.meta.clone(),
        port: s.port,
        address: s.address.clone(),
        tagged_addresses: tagged(s),
        weights: Weights {
            passing: s.weights_passing,
            warning: s.weights_warning,
        },
        enable_tag_override: s.enable_tag_override,
        create_index: s.create_index,
        modify_index: s.modify_index,
        content_hash: String::new(),
        datacenter: dc.to_string(),
    }
}

fn tagged(s: &ServiceRow) -> BTreeMap<String, ServiceAddress> {
    s.tagged_addresses
        .iter()
        .map(|(k, (address, port))| {
            (
                k.clone(),
                ServiceAddress {
                    address: address.clone(),
                    port: *port,
                },
            )
        })
        .collect()
}

pub fn check_api(c: &CheckRow) -> HealthCheck {
    HealthCheck {
        node: c.node.clone(),
        check_id: c.id.clone(),
        name: c.name.clone(),
        status: c.status,
        notes: c.notes.clone(),
        output: c.output.clone(),
        service_id: c.service_id.clone(),
        service_name: c.service_name.clone(),
        service_tags: c.service_tags.clone(),
        check_type: c.check_type.clone(),
        interval: c.interval.clone(),
        timeout: c.timeout.clone(),
        exposed_port: 0,
        definition: serde_json::from_str::<HealthCheckDefinition>(&c.definition)
            .unwrap_or_default(),
        create_index: c.create_index,
        modify_index: c.modify_index,
    }
}

fn catalog_service(n: &NodeRow, s: &ServiceRow, dc: &str) -> CatalogService {
    CatalogService {
        id: n.id.clone(),
        node: n.name.clone(),
        address: n.address.clone(),
        datacenter: dc.to_string(),
        tagged_addresses: n.tagged_addresses.clone(),
        node_meta: n.meta.clone(),
        service_kind: s.kind.clone(),
        service_id: s.id.clone(),
        service_name: s.name.clone(),
        service_tags: s.tags.clone(),
        service_address: s.address.clone(),
        service_tagged_addresses: tagged(s),
        service_weights: Weights {
            passing: s.weights_passing,
            warning: s.weights_warning,
        },
        service_meta: s.meta.clone(),
        service_port: s.port,
        service_enable_tag_override: s.enable_tag_override,
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

// ---- shared query helpers ------------------------------------------------------------

/// `?filter=`, parsed once per request; a bad expression is a 400 naming the problem.
pub fn filter_param(params: &Params) -> Result<Option<Filter>, HttpError> {
    match params.get("filter") {
        None | Some("") => Ok(None),
        Some(expr) => Filter::parse(expr).map(Some).map_err(filter_error),
    }
}

pub fn filter_error(e: FilterError) -> HttpError {
    let status = if e.is_bad_request() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    HttpError::new(status, e.to_string())
}

/// Applies an optional filter to a result list.
pub fn filtered<T: serde::Serialize>(
    filter: &Option<Filter>,
    items: Vec<T>,
) -> Result<Vec<T>, HttpError> {
    match filter {
        Some(f) => f.apply(items).map_err(filter_error),
        None => Ok(items),
    }
}

/// `node-meta=key:value` (repeatable): every pair must match the node's meta.
pub fn node_meta_param(params: &Params) -> Vec<(String, String)> {
    params
        .all("node-meta")
        .map(|v| match v.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (v.to_string(), String::new()),
        })
        .collect()
}

/// Whether an instance has every tag asked for; tags compare case-insensitively, as Consul's
/// state store does.
pub fn has_tags(s: &ServiceRow, wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|w| s.tags.iter().any(|t| t.eq_ignore_ascii_case(w)))
}

pub fn node_meta_matches(node: &NodeRow, wanted: &[(String, String)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| node.meta.get(k).is_some_and(|have| have == v))
}

/// Runs a blocking read: the consistency gate, then the query re-run on `topic`'s changes.
pub async fn blocking_read<T>(
    agent: &Agent,
    opts: &QueryOptions,
    topic: Topic,
    query: impl Fn(&Tables) -> (u64, T),
) -> Result<(u64, T, crate::server::ReadMeta), HttpError> {
    let meta = agent.read_gate(opts.consistency).await?;
    let (index, value) = agent
        .store
        .blocking(topic, opts.index, opts.wait, query)
        .await;
    Ok((index, value, meta))
}

/// What every catalog and health list read takes from the query string: read options, the
/// `?filter=` expression, `node-meta` pairs and `tag`s, parsed (and refused with a 400) before
/// anything is read.
pub struct ListQuery {
    pub params: Params,
    pub opts: QueryOptions,
    pub filter: Option<Filter>,
    pub node_meta: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub dc: String,
}

impl ListQuery {
    pub fn parse(agent: &Agent, query: Option<&str>) -> Result<ListQuery, HttpError> {
        let params = Params::parse(query);
        let opts = QueryOptions::parse(&params, agent)?;
        let filter = filter_param(&params)?;
        let node_meta = node_meta_param(&params);
        let tags = params.all("tag").map(str::to_string).collect();
        Ok(ListQuery {
            params,
            opts,
            filter,
            node_meta,
            tags,
            dc: agent.config.datacenter.clone(),
        })
    }

    /// Runs the blocking read `query` on `topic`.
    pub async fn read<T>(
        &self,
        agent: &Agent,
        topic: Topic,
        query: impl Fn(&Tables) -> (u64, T),
    ) -> Result<(u64, T, crate::server::ReadMeta), HttpError> {
        blocking_read(agent, &self.opts, topic, query).await
    }

    /// Filters `items` and answers them with the blocking-query headers.
    pub fn reply<T: serde::Serialize>(
        &self,
        items: Vec<T>,
        index: u64,
        meta: &crate::server::ReadMeta,
    ) -> Result<Response, HttpError> {
        let items = filtered(&self.filter, items)?;
        Ok(with_meta(
            json(StatusCode::OK, &items, self.opts.pretty),
            index,
            meta,
        ))
    }
}

// ---- reads -----------------------------------------------------------------------------

pub async fn datacenters(
    State(agent): State<Arc<Agent>>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    Ok(json(
        StatusCode::OK,
        &[&agent.config.datacenter],
        params.has("pretty"),
    ))
}

pub async fn nodes(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    let q = ListQuery::parse(&agent, query.as_deref())?;
    let (index, list, meta) = q
        .read(&agent, Topic::Nodes, |t| {
            let list: Vec<Node> = t
                .catalog
                .nodes
                .values()
                .filter(|n| node_meta_matches(n, &q.node_meta))
                .map(|n| node_api(n, &q.dc))
                .collect();
            (t.nodes_index(), list)
        })
        .await?;
    q.reply(list, index, &meta)
}

pub async fn services(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    let q = ListQuery::parse(&agent, query.as_deref())?;
    let (index, instances, meta) = q
        .read(&agent, Topic::Services, |t| {
            let list: Vec<CatalogService> = t
                .catalog
                .services
                .values()
                .filter_map(|s| t.catalog.nodes.get(&s.node).map(|n| (n, s)))
                .filter(|(n, _)| node_meta_matches(n, &q.node_meta))
                .map(|(n, s)| catalog_service(n, s, &q.dc))
                .collect();
            (t.services_index(), list)
        })
        .await?;
    let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in filtered(&q.filter, instances)? {
        by_name
            .entry(s.service_name)
            .or_default()
            .extend(s.service_tags);
    }
    Ok(with_meta(
        json(StatusCode::OK, &by_name, q.opts.pretty),
        index,
        &meta,
    ))
}

pub async fn service(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    let q = ListQuery::parse(&agent, query.as_deref())?;
    let (index, list, meta) = q
        .read(&agent, Topic::Service(name.clone()), |t| {
            let list: Vec<CatalogService> = t
                .service_instances(&name)
                .into_iter()
                .filter(|s| has_tags(s, &q.tags))
                .filter_map(|s| t.catalog.nodes.get(&s.node).map(|n| (n, s)))
                .filter(|(n, _)| node_meta_matches(n, &q.node_meta))
                .map(|(n, s)| catalog_service(n, s, &q.dc))
                .collect();
            (t.service_query_index(&name), list)
        })
        .await?;
    q.reply(list, index, &meta)
}

/// A node and its services (filtered), with the query's index and read metadata; `None` when
/// the node does not exist. Shared by `catalog/node` and `catalog/node-services`.
async fn node_with_services(
    agent: &Agent,
    node: String,
    query: Option<String>,
) -> Result<
    (
        Option<(Node, Vec<AgentService>)>,
        u64,
        crate::server::ReadMeta,
        bool,
    ),
    HttpError,
> {
    let params = Params::parse(query.as_deref());
    let opts = QueryOptions::parse(&params, agent)?;
    let filter = filter_param(&params)?;
    let dc = agent.config.datacenter.clone();
    let (index, found, meta) = blocking_read(agent, &opts, Topic::Node(node.clone()), |t| {
        let found = t.catalog.nodes.get(&node).map(|n| {
            (
                node_api(n, &dc),
                t.node_services(&node)
                    .map(|s| service_api(s, &dc))
                    .collect::<Vec<_>>(),
            )
        });
        (t.services_index(), found)
    })
    .await?;
    let found = match found {
        Some((n, services)) => Some((n, filtered(&filter, services)?)),
        None => None,
    };
    Ok((found, index, meta, opts.pretty))
}

pub async fn node(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    let (found, index, meta, pretty) = node_with_services(&agent, node, query).await?;
    // Consul answers a missing node with `null`.
    let body = found.map(|(node, services)| CatalogNode {
        node,
        services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
    });
    Ok(with_meta(json(StatusCode::OK, &body, pretty), index, &meta))
}

pub async fn node_services(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    let (found, index, meta, pretty) = node_with_services(&agent, node, query).await?;
    let body = found.map(|(node, services)| CatalogNodeServiceList { node, services });
    Ok(with_meta(json(StatusCode::OK, &body, pretty), index, &meta))
}

// ---- writes ----------------------------------------------------------------------------

/// Decodes a JSON body, with Consul's wording for a malformed one.
pub fn decode_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))
}

/// Field names of the catalog's request bodies. Consul decodes bodies with Go's JSON decoder,
/// which matches field names regardless of case (py-consul sends `{"node": ..., "address":
/// ...}`), so keys are mapped onto these before decoding.
const CATALOG_FIELDS: &[&str] = &[
    "ID",
    "Node",
    "Address",
    "TaggedAddresses",
    "NodeMeta",
    "Datacenter",
    "Service",
    "Check",
    "Checks",
    "SkipNodeUpdate",
    "Kind",
    "Tags",
    "Meta",
    "Port",
    "Weights",
    "Passing",
    "Warning",
    "EnableTagOverride",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "Definition",
    "HTTP",
    "TCP",
    "UDP",
    "GRPC",
    "Method",
    "Body",
    "Header",
    "TLSSkipVerify",
    "TLSServerName",
    "GRPCUseTLS",
    "DeregisterCriticalServiceAfter",
    "TTL",
    "ScriptArgs",
    "AliasNode",
    "AliasService",
];
/// Fields whose keys are the user's (not field names) and are kept as they are.
const OPAQUE_FIELDS: &[&str] = &["Meta", "NodeMeta", "ServiceMeta", "Header"];

fn canonical_keys(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let Value::Object(m) = v else {
        return match v {
            Value::Array(items) => Value::Array(items.into_iter().map(canonical_keys).collect()),
            v => v,
        };
    };
    let mut out = serde_json::Map::new();
    for (k, v) in m {
        let name = CATALOG_FIELDS
            .iter()
            .find(|f| f.eq_ignore_ascii_case(&k))
            .map_or(k, |f| f.to_string());
        let v = match v {
            v if OPAQUE_FIELDS.contains(&name.as_str()) => v,
            // Keys are address names; their values may be objects with fields.
            Value::Object(m) if name == "TaggedAddresses" => {
                Value::Object(m.into_iter().map(|(k, v)| (k, canonical_keys(v))).collect())
            }
            v => canonical_keys(v),
        };
        out.insert(name, v);
    }
    Value::Object(out)
}

/// [`decode_body`] with Go's case-insensitive field matching.
fn decode_catalog_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, HttpError> {
    let value: serde_json::Value = decode_body(body)?;
    serde_json::from_value(canonical_keys(value))
        .map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))
}

pub async fn register(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    let reg: CatalogRegistration = decode_catalog_body(&body)?;
    authz.node_write(&reg.node)?;
    if reg.node.is_empty() {
        return Err(HttpError::bad_request("Must provide node"));
    }
    if reg.address.is_empty() && !reg.skip_node_update {
        return Err(HttpError::bad_request(
            "Must provide address if SkipNodeUpdate is not set",
        ));
    }
    if !reg.datacenter.is_empty() && reg.datacenter != agent.config.datacenter {
        return Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("No path to datacenter {:?}", reg.datacenter),
        ));
    }
    if !reg.id.is_empty() && uuid::Uuid::parse_str(&reg.id).is_err() {
        return Err(HttpError::bad_request(format!(
            "Invalid node ID {:?}: must be a UUID",
            reg.id
        )));
    }
    let service = match &reg.service {
        Some(s) => {
            if s.service.is_empty() {
                return Err(HttpError::bad_request(
                    "Must provide service name (Service.Service) with valid ID",
                ));
            }
            Some(ServiceRow::from_api(&reg.node, s))
        }
        None => None,
    };
    let mut checks = Vec::new();
    for c in reg.check.iter().chain(reg.checks.iter()) {
        if c.check_id.is_empty() && c.name.is_empty() {
            return Err(HttpError::bad_request("Missing check ID or name"));
        }
        checks.push(CheckRow {
            node: reg.node.clone(),
            id: if c.check_id.is_empty() {
                c.name.clone()
            } else {
                c.check_id.clone()
            },
            name: if c.name.is_empty() {
                c.check_id.clone()
            } else {
                c.name.clone()
            },
            status: c.status,
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            check_type: c.check_type.clone(),
            interval: c.interval.clone(),
            timeout: c.timeout.clone(),
            definition: serde_json::to_string(&c.definition).unwrap_or_else(|_| "{}".into()),
            ..CheckRow::default()
        });
    }
    let command = Command::CatalogRegister(Box::new(Registration {
        node: NodeRow {
            id: reg.id.clone(),
            name: reg.node.clone(),
            address: reg.address.clone(),
            tagged_addresses: reg.tagged_addresses.clone(),
            meta: reg.node_meta.clone(),
            create_index: 0,
            modify_index: 0,
        },
        skip_node_update: reg.skip_node_update,
        service,
        checks,
    }));
    match agent.write(command).await? {
        Applied::Register(Err(e)) => Err(HttpError::bad_request(e.to_string())),
        _ => Ok(json(StatusCode::OK, &true, false)),
    }
}

pub async fn deregister(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    let d: CatalogDeregistration = decode_catalog_body(&body)?;
    authz.node_write(&d.node)?;
    if d.node.is_empty() {
        return Err(HttpError::bad_request("Must provide node"));
    }
    let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
    agent
        .write(Command::CatalogDeregister {
            node: d.node.clone(),
            service_id: nonempty(&d.service_id),
            check_id: nonempty(&d.check_id),
        })
        .await?;
    Ok(json(StatusCode::OK, &true, false))
}
