//! `/v1/operator/raft/configuration` and `DELETE /v1/operator/raft/peer`: the Raft
//! configuration as Consul's operator API shows it, and removing a server from it.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use muster_api::{RaftConfiguration, RaftServer};

use super::{json, HttpError, Params};
use crate::server::Agent;

pub async fn configuration(
    State(agent): State<Arc<Agent>>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    // As Consul's, answered by the leader (which knows how far each server got) unless
    // `?stale`.
    if agent.config.server && !params.has("stale") && !agent.is_leader() {
        let request = crate::rpc::HttpRequest {
            method: "GET".into(),
            uri: match query.as_deref() {
                Some(q) => format!("/v1/operator/raft/configuration?{q}"),
                None => "/v1/operator/raft/configuration".into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        if let Some(answer) = agent.leader_http(request).await? {
            return Ok(super::forward::into_response(answer));
        }
    }
    let config = agent.raft_configuration();
    let body = RaftConfiguration {
        servers: config
            .servers
            .into_iter()
            .map(|s| RaftServer {
                id: s.id,
                node: s.node,
                address: s.address,
                leader: s.leader,
                protocol_version: "3".to_string(),
                voter: s.voter,
                last_index: s.last_index,
            })
            .collect(),
        index: config.index,
    };
    Ok(json(StatusCode::OK, &body, params.has("pretty")))
}

pub async fn remove_peer(
    State(agent): State<Arc<Agent>>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    let id = params.get("id").filter(|s| !s.is_empty());
    let address = params.get("address").filter(|s| !s.is_empty());
    let servers = agent.raft_configuration().servers;
    let target = match (id, address) {
        (Some(id), _) => {
            let raft_id = crate::cluster::parse_raft_id(id);
            servers
                .iter()
                .find(|s| s.id == id || Some(s.raft_id) == raft_id)
                .map(|s| s.raft_id)
                .ok_or_else(|| {
                    HttpError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("id \"{id}\" was not found in the Raft configuration"),
                    )
                })?
        }
        (None, Some(address)) => servers
            .iter()
            .find(|s| s.address == address)
            .map(|s| s.raft_id)
            .ok_or_else(|| {
                HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("address \"{address}\" was not found in the Raft configuration"),
                )
            })?,
        (None, None) => {
            return Err(HttpError::bad_request(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
    };
    agent.remove_raft_peer(target).await?;
    Ok(StatusCode::OK.into_response())
}
