//! `/v1/agent/self`, `/v1/agent/members`, `/v1/agent/leave`: what this agent is and how to
//! stop it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use muster_api::{AgentSelf, AgentSelfConfig};

use super::acl::Authorizer;
use super::{json, HttpError, Params};
use crate::server::Agent;

pub async fn self_(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.agent_read()?;
    let params = Params::parse(query.as_deref());
    let c = &agent.config;
    let body = AgentSelf {
        config: AgentSelfConfig {
            datacenter: c.datacenter.clone(),
            primary_datacenter: c
                .primary_datacenter
                .clone()
                .unwrap_or_else(|| c.datacenter.clone()),
            node_name: c.node_name.clone(),
            node_id: agent.node_id.clone(),
            server: c.server,
            revision: String::new(),
            version: crate::CONSUL_API_VERSION.to_string(),
            version_prerelease: String::new(),
            muster_version: crate::MUSTER_VERSION.to_string(),
        },
        debug_config: agent.debug_config(),
        member: agent.member(),
        meta: BTreeMap::from([("consul-network-segment".to_string(), String::new())]),
        stats: agent.stats(),
    };
    Ok(json(StatusCode::OK, &body, params.has("pretty")))
}

pub async fn members(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.agent_read()?;
    let params = Params::parse(query.as_deref());
    if params.has("wan") {
        // No WAN pool yet: servers answer only themselves, clients nothing (as Consul's
        // clients do).
        let wan: Vec<muster_api::Member> = if agent.config.server {
            vec![agent.member()]
        } else {
            Vec::new()
        };
        return Ok(json(StatusCode::OK, &wan, params.has("pretty")));
    }
    let members: Vec<muster_api::Member> = agent
        .membership()
        .borrow()
        .iter()
        .map(crate::server::api_member)
        .collect();
    Ok(json(StatusCode::OK, &members, params.has("pretty")))
}

/// `PUT /v1/agent/join/:address`: joins the LAN pool through the agent at `address`.
pub async fn join(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(address): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.agent_write()?;
    let params = Params::parse(query.as_deref());
    if params.has("wan") {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "WAN join is not implemented".to_string(),
        ));
    }
    let gossip = agent.gossip.as_ref().ok_or_else(|| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "gossip is disabled (ports.serf_lan = -1)".to_string(),
        )
    })?;
    gossip.join(&[address]).await?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /v1/agent/force-leave/:node[?prune]`: a failed member becomes `left` (or, with
/// `prune`, is forgotten).
pub async fn force_leave(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.agent_write()?;
    let params = Params::parse(query.as_deref());
    let gossip = agent.gossip.as_ref().ok_or_else(|| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "gossip is disabled (ports.serf_lan = -1)".to_string(),
        )
    })?;
    gossip.force_leave(&node, params.has("prune")).await?;
    Ok(StatusCode::OK.into_response())
}

/// Graceful leave: answers, then the agent shuts down.
pub async fn leave(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
) -> Result<Response, HttpError> {
    authz.agent_write()?;
    tracing::info!("leave requested over HTTP: leaving the cluster and shutting down");
    if let Err(e) = agent.leave().await {
        tracing::warn!(error = %e, "leaving the cluster failed; shutting down anyway");
    }
    agent.shutdown.cancel();
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/agent/monitor?loglevel=&logjson`: this agent's log lines as they happen, one per
/// line (text, or JSON with `logjson`), at `loglevel` (default info) whatever the agent's own
/// `-log-level`; until the client goes away or the agent stops.
pub async fn monitor(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.agent_read()?;
    let params = Params::parse(query.as_deref());
    let level = match params.get("loglevel").filter(|l| !l.is_empty()) {
        None => tracing::Level::INFO,
        Some(l) => crate::logs::parse_level(l).ok_or_else(|| {
            HttpError::new(StatusCode::BAD_REQUEST, format!("Unknown log level: {l}"))
        })?,
    };
    let json = params.has("logjson");
    let monitor = crate::logs::tap().subscribe(level);
    let stop = agent.shutdown.clone();
    let lines = futures::stream::unfold((monitor, stop), move |(mut monitor, stop)| async move {
        let next = tokio::select! {
            () = stop.cancelled() => return None,
            next = monitor.next() => next,
        };
        let text = match next {
            crate::logs::Next::Line(line) => line.render(json),
            crate::logs::Next::Dropped(n) => crate::logs::Line::notice(
                tracing::Level::WARN,
                "agent.monitor",
                format!("Monitor dropped {n} logs during monitor request"),
            )
            .render(json),
            crate::logs::Next::Closed => return None,
        };
        Some((
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(text)),
            (monitor, stop),
        ))
    });
    let mut resp = Response::new(axum::body::Body::from_stream(lines));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}
