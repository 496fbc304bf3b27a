//! `/v1/event/fire/:name` and `/v1/event/list`: user events, answered from the agent's own
//! [`crate::events::Events`] (not from Raft), shaped as Consul's.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;

use super::acl::Authorizer;
use super::{check_datacenter, json, HttpError, Params, DEFAULT_WAIT, MAX_WAIT};
use crate::events::{EventError, FireRequest};
use crate::server::Agent;

impl Authorizer {
    /// May fire the event `name` (allow-all until ACLs exist).
    pub fn event_write(&self, _name: &str) -> Result<(), HttpError> {
        Ok(())
    }
    /// May see events named `name` (allow-all until ACLs exist).
    pub fn event_read(&self, _name: &str) -> Result<bool, HttpError> {
        Ok(true)
    }
}

impl From<EventError> for HttpError {
    fn from(e: EventError) -> Self {
        let status = match &e {
            EventError::Invalid(_) => StatusCode::BAD_REQUEST,
            EventError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EventError::Delivery(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError::new(status, e.to_string())
    }
}

/// `PUT /v1/event/fire/:name[?node=&service=&tag=]`, the body as the payload.
pub async fn fire(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    check_datacenter(&params, &agent)?;
    let raw = uri.path().strip_prefix("/v1/event/fire").unwrap_or("");
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    let name = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| HttpError::bad_request("Invalid event name: not valid UTF-8"))?
        .into_owned();
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing name"));
    }
    authz.event_write(&name)?;
    let filter = |k: &str| params.get(k).unwrap_or("").to_string();
    let event = agent.events.fire(FireRequest {
        name,
        payload: body.to_vec(),
        node_filter: filter("node"),
        service_filter: filter("service"),
        tag_filter: filter("tag"),
    })?;
    Ok(json(StatusCode::OK, &event.to_api(), params.has("pretty")))
}

/// `GET /v1/event/list[?name=]`: blocking on the agent's event notifier; the index is the last
/// listed event's ID folded to 64 bits, so `index=` only ever compares for equality.
pub async fn list(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    check_datacenter(&params, &agent)?;
    let index = params.u64("index")?.unwrap_or(0);
    let wait = match params.get("wait") {
        None => DEFAULT_WAIT,
        Some(w) => muster_api::duration::parse(w)
            .map_err(|e| HttpError::bad_request(format!("Invalid wait parameter {w:?}: {e}")))?,
    }
    .min(MAX_WAIT);
    let name = params.get("name").filter(|n| !n.is_empty());
    let (index, events) = agent.events.list(name, index, wait).await;
    let mut visible = Vec::with_capacity(events.len());
    for e in events {
        if authz.event_read(&e.name)? {
            visible.push(e.to_api());
        }
    }
    let mut resp = json(StatusCode::OK, &visible, params.has("pretty"));
    resp.headers_mut()
        .insert("X-Consul-Index", axum::http::HeaderValue::from(index));
    Ok(resp)
}
