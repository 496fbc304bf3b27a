//! `/v1/agent/service*`, `/v1/agent/check*`, `/v1/agent/maintenance`, `/v1/agent/health/*`,
//! `/v1/agent/reload`: the services and checks this agent owns (its local state, not the
//! catalog), shaped as Consul's.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use muster_api::{AgentService, AgentServiceChecksInfo, HealthCheck, HealthStatus};
use serde::Deserialize;

use super::acl::Authorizer;
use super::catalog::{filter_error, filter_param};
use super::health::parse_bool;
use super::{json, HttpError, Params};
use crate::local::definition::{self, ScriptPolicy, Source};
use crate::local::LocalError;
use crate::server::Agent;

impl From<LocalError> for HttpError {
    fn from(e: LocalError) -> Self {
        let status = match &e {
            LocalError::UnknownService(_) | LocalError::UnknownCheck(_) => StatusCode::NOT_FOUND,
            LocalError::MissingService(_) | LocalError::Invalid(_) => StatusCode::BAD_REQUEST,
            LocalError::NotTtl(_) | LocalError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError::new(status, e.to_string())
    }
}

fn scripts(agent: &Agent) -> ScriptPolicy {
    ScriptPolicy {
        enable_script_checks: agent.config.enable_script_checks,
        enable_local_script_checks: agent.config.enable_local_script_checks,
    }
}

fn body_value(body: &Bytes) -> Result<serde_json::Value, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::bad_request("Request decode failed: empty body"));
    }
    super::catalog::decode_body(body)
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

pub async fn services(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    keyed_reply(query.as_deref(), agent.local.services(), |s| s.id.clone())
}

/// `/v1/agent/services` and `/v1/agent/checks`: a map by ID, `?filter=` applied to its values.
fn keyed_reply<T: serde::Serialize>(
    query: Option<&str>,
    items: Vec<T>,
    key: impl Fn(&T) -> String,
) -> Result<Response, HttpError> {
    let params = Params::parse(query);
    let filter = filter_param(&params)?;
    let map: BTreeMap<String, T> = items.into_iter().map(|i| (key(&i), i)).collect();
    let map = match filter {
        Some(f) => f.apply_values(map).map_err(filter_error)?,
        None => map,
    };
    Ok(json(StatusCode::OK, &map, params.has("pretty")))
}

pub async fn service(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    let params = Params::parse(query.as_deref());
    let (mut service, _) = agent.local.service(&id).ok_or_else(|| {
        HttpError::new(StatusCode::NOT_FOUND, format!("unknown service ID: {id}"))
    })?;
    service.content_hash = content_hash(&service);
    Ok(json(StatusCode::OK, &service, params.has("pretty")))
}

/// A stable digest of the service definition (Consul returns one for hash-based blocking).
fn content_hash(s: &AgentService) -> String {
    let bytes = serde_json::to_vec(s).unwrap_or_default();
    format!("{:016x}", crate::local::fnv1a64(&bytes))
}

pub async fn checks(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    keyed_reply(query.as_deref(), agent.local.checks(), |c| {
        c.check_id.clone()
    })
}

pub async fn register_service(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    let replace = match params.get("replace-existing-checks") {
        None => false,
        Some("") => true,
        Some(v) => parse_bool(v).ok_or_else(|| {
            HttpError::bad_request(format!("Invalid value for replace-existing-checks: {v:?}"))
        })?,
    };
    let value = body_value(&body)?;
    let reg = definition::parse_service_at(&value, "body", false)
        .map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?;
    authz.service_write(&reg.name)?;
    let def = definition::validate_service(
        &reg,
        &agent.config.datacenter,
        Source::Remote,
        scripts(&agent),
    )
    .map_err(|e| HttpError::bad_request(e.0))?;
    agent.local.add_service(def, Source::Remote, replace)?;
    Ok(ok())
}

pub async fn deregister_service(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    authz.service_write(&id)?;
    if !agent.local.remove_service(&id) {
        return Err(LocalError::UnknownService(id).into());
    }
    Ok(ok())
}

pub async fn register_check(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    body: Bytes,
) -> Result<Response, HttpError> {
    authz.node_write("")?;
    let value = body_value(&body)?;
    let reg = definition::parse_check_at(&value, "body", false)
        .map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?;
    let def = definition::validate_check(&reg, Source::Remote, scripts(&agent))
        .map_err(|e| HttpError::bad_request(e.0))?;
    agent.local.add_check(def, Source::Remote)?;
    Ok(ok())
}

pub async fn deregister_check(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    authz.node_write("")?;
    if !agent.local.remove_check(&id) {
        return Err(LocalError::UnknownCheck(id).into());
    }
    Ok(ok())
}

async fn set_ttl(
    agent: &Agent,
    id: &str,
    status: HealthStatus,
    query: Option<&str>,
) -> Result<Response, HttpError> {
    let params = Params::parse(query);
    let note = params.get("note").unwrap_or_default();
    agent.local.update_ttl(id, status, note)?;
    Ok(ok())
}

pub async fn pass(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_write("")?;
    set_ttl(&agent, &id, HealthStatus::Passing, query.as_deref()).await
}

pub async fn warn(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_write("")?;
    set_ttl(&agent, &id, HealthStatus::Warning, query.as_deref()).await
}

pub async fn fail(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_write("")?;
    set_ttl(&agent, &id, HealthStatus::Critical, query.as_deref()).await
}

#[derive(Deserialize)]
struct CheckUpdate {
    #[serde(alias = "status", default)]
    #[serde(rename = "Status")]
    status: String,
    #[serde(alias = "output", default)]
    #[serde(rename = "Output")]
    output: String,
}

pub async fn update(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, HttpError> {
    authz.node_write("")?;
    let u: CheckUpdate = super::catalog::decode_body(&body)?;
    let status = HealthStatus::parse_check(&u.status)
        .ok_or_else(|| HttpError::bad_request(format!("Invalid check status: {:?}", u.status)))?;
    agent.local.update_ttl(&id, status, &u.output)?;
    Ok(ok())
}

/// `enable` (required) and `reason` of the maintenance endpoints.
fn maintenance_params(query: Option<&str>) -> Result<(bool, String), HttpError> {
    let params = Params::parse(query);
    let enable = match params.get("enable") {
        None | Some("") => return Err(HttpError::bad_request("Missing value for enable")),
        Some(v) => parse_bool(v)
            .ok_or_else(|| HttpError::bad_request(format!("Invalid value for enable: {v:?}")))?,
    };
    Ok((enable, params.get("reason").unwrap_or_default().to_string()))
}

pub async fn node_maintenance(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_write("")?;
    let (enable, reason) = maintenance_params(query.as_deref())?;
    agent.local.node_maintenance(enable, &reason)?;
    Ok(ok())
}

pub async fn service_maintenance(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.service_write(&id)?;
    let (enable, reason) = maintenance_params(query.as_deref())?;
    agent.local.service_maintenance(&id, enable, &reason)?;
    Ok(ok())
}

/// Consul's status codes for an aggregated status: 200, 429 (warning), 503 (critical).
fn health_code(s: HealthStatus) -> StatusCode {
    match s {
        HealthStatus::Passing => StatusCode::OK,
        HealthStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn info(service: AgentService, checks: Vec<HealthCheck>) -> AgentServiceChecksInfo {
    let aggregated_status = checks
        .iter()
        .fold(HealthStatus::Passing, |acc, c| acc.worst(c.status));
    AgentServiceChecksInfo {
        aggregated_status,
        service,
        checks,
    }
}

fn text(code: StatusCode, s: &str) -> Response {
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        s.to_string(),
    )
        .into_response()
}

/// `?format=text`, or `Accept: text/plain` (Consul takes either).
fn wants_text(params: &Params, headers: &HeaderMap) -> bool {
    params.get("format") == Some("text")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with("text/plain"))
}

pub async fn health_by_id(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    let params = Params::parse(query.as_deref());
    let text_format = wants_text(&params, &headers);
    let Some((service, checks)) = agent.local.service(&id) else {
        let msg = format!("ServiceId {id} not found");
        return Ok(if text_format {
            text(StatusCode::NOT_FOUND, &msg)
        } else {
            HttpError::new(StatusCode::NOT_FOUND, msg).into_response()
        });
    };
    let info = info(service, checks);
    let code = health_code(info.aggregated_status);
    Ok(if text_format {
        text(code, info.aggregated_status.as_str())
    } else {
        json(code, &info, params.has("pretty"))
    })
}

pub async fn health_by_name(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    authz.service_read()?;
    let params = Params::parse(query.as_deref());
    let text_format = wants_text(&params, &headers);
    let infos: Vec<AgentServiceChecksInfo> = agent
        .local
        .services()
        .into_iter()
        .filter(|s| s.service == name)
        .filter_map(|s| agent.local.service(&s.id))
        .map(|(s, c)| info(s, c))
        .collect();
    if infos.is_empty() {
        let msg = format!("ServiceName {name} Not Found");
        return Ok(if text_format {
            text(StatusCode::NOT_FOUND, &msg)
        } else {
            json(StatusCode::NOT_FOUND, &infos, params.has("pretty"))
        });
    }
    let worst = infos.iter().fold(HealthStatus::Passing, |acc, i| {
        acc.worst(i.aggregated_status)
    });
    let code = health_code(worst);
    Ok(if text_format {
        text(code, worst.as_str())
    } else {
        json(code, &infos, params.has("pretty"))
    })
}

pub async fn reload(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
) -> Result<Response, HttpError> {
    authz.agent_write()?;
    agent.reload().map_err(|e| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed reloading: {e}"),
        )
    })?;
    Ok(ok())
}
