//! `/v1/agent/self`, `/v1/agent/members`, `/v1/agent/leave`: what this agent is and how to
//! stop it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
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
    Ok(json(
        StatusCode::OK,
        &[agent.member()],
        params.has("pretty"),
    ))
}

/// Graceful leave: answers, then the agent shuts down.
pub async fn leave(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
) -> Result<Response, HttpError> {
    authz.agent_write()?;
    tracing::info!("leave requested over HTTP: shutting down");
    agent.shutdown.cancel();
    Ok(StatusCode::OK.into_response())
}
