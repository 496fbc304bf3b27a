//! `/v1/status/leader` and `/v1/status/peers`: the Raft leader's and voters' server addresses.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{json, HttpError, Params};
use crate::server::Agent;

pub async fn leader(
    State(agent): State<Arc<Agent>>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    let leader = agent.leader_address().unwrap_or_default();
    Ok(json(StatusCode::OK, &leader, params.has("pretty")))
}

pub async fn peers(
    State(agent): State<Arc<Agent>>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    Ok(json(
        StatusCode::OK,
        &agent.peer_addresses(),
        params.has("pretty"),
    ))
}
