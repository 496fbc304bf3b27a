//! `/v1/health/*`: instances with their checks, checks by node, service and state, shaped as
//! Consul's, with blocking queries on targeted topics and `?filter=`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use muster_api::{HealthCheck, HealthStatus, ServiceEntry};

use super::acl::Authorizer;
use super::catalog::{check_api, has_tags, node_api, node_meta_matches, service_api, ListQuery};
use super::{HttpError, Params};
use crate::server::Agent;
use crate::state::Topic;

/// `?passing`, `?passing=true|false` (Go's ParseBool spellings).
fn passing_param(params: &Params) -> Result<bool, HttpError> {
    match params.get("passing") {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => parse_bool(v)
            .ok_or_else(|| HttpError::bad_request(format!("Invalid value for passing: {v:?}"))),
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub async fn service(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    let q = ListQuery::parse(&agent, query.as_deref())?;
    let passing = passing_param(&q.params)?;
    let (index, entries, meta) = q
        .read(&agent, Topic::Service(name.clone()), |t| {
            let entries: Vec<ServiceEntry> = t
                .service_instances(&name)
                .into_iter()
                .filter(|s| has_tags(s, &q.tags))
                .filter_map(|s| t.catalog.nodes.get(&s.node).map(|n| (n, s)))
                .filter(|(n, _)| node_meta_matches(n, &q.node_meta))
                .filter_map(|(n, s)| {
                    let checks = t.instance_checks(&n.name, &s.id);
                    if passing && checks.iter().any(|c| c.status != HealthStatus::Passing) {
                        return None;
                    }
                    Some(ServiceEntry {
                        node: node_api(n, &q.dc),
                        service: service_api(s, &q.dc),
                        checks: checks.into_iter().map(check_api).collect(),
                    })
                })
                .collect();
            (t.service_query_index(&name), entries)
        })
        .await?;
    q.reply(entries, index, &meta)
}

pub async fn checks(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    let q = ListQuery::parse(&agent, query.as_deref())?;
    let (index, list, meta) = q
        .read(&agent, Topic::Service(name.clone()), |t| {
            let mut list: Vec<HealthCheck> = Vec::new();
            for s in t.service_instances(&name) {
                let node_ok = t
                    .catalog
                    .nodes
                    .get(&s.node)
                    .is_some_and(|n| node_meta_matches(n, &q.node_meta));
                if node_ok {
                    list.extend(
                        t.instance_checks(&s.node, &s.id)
                            .into_iter()
                            .filter(|c| c.service_id == s.id)
                            .map(check_api),
                    );
                }
            }
            (t.service_query_index(&name), list)
        })
        .await?;
    q.reply(list, index, &meta)
}

pub async fn node(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    let q = ListQuery::parse(&agent, query.as_deref())?;
    let (index, list, meta) = q
        .read(&agent, Topic::Node(node.clone()), |t| {
            let list: Vec<HealthCheck> = t.node_checks(&node).map(check_api).collect();
            (t.checks_index(), list)
        })
        .await?;
    q.reply(list, index, &meta)
}

pub async fn state(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(state): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    let wanted = match state.as_str() {
        "any" => None,
        s => Some(HealthStatus::parse_check(s).ok_or_else(|| {
            HttpError::bad_request(format!(
                "Invalid check state {s:?}: must be any, passing, warning or critical"
            ))
        })?),
    };
    let q = ListQuery::parse(&agent, query.as_deref())?;
    let (index, list, meta) = q
        .read(&agent, Topic::Checks, |t| {
            let list: Vec<HealthCheck> = t
                .catalog
                .checks
                .values()
                .filter(|c| wanted.is_none_or(|w| c.status == w))
                .filter(|c| {
                    q.node_meta.is_empty()
                        || t.catalog
                            .nodes
                            .get(&c.node)
                            .is_some_and(|n| node_meta_matches(n, &q.node_meta))
                })
                .map(check_api)
                .collect();
            (t.checks_index(), list)
        })
        .await?;
    q.reply(list, index, &meta)
}
