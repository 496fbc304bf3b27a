//! `/v1/kv/<key>`: reads (single, `recurse`, `keys`, `raw`, blocking) and writes (`PUT` with
//! `flags`/`cas`, `DELETE` with `recurse`/`cas`), shaped as Consul's.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use muster_api::KvPair;

use super::acl::Authorizer;
use super::{json, with_meta, HttpError, Params, QueryOptions};
use crate::server::Agent;
use crate::state::kv::{key_topic, prefix_topic};
use crate::state::{Command, KvEntry, Response as Applied};

/// The key named by the request path, percent-decoded (`/v1/kv/a%2Fb` is the key `a/b`).
fn key_of(uri: &Uri) -> Result<String, HttpError> {
    let rest = uri.path().strip_prefix("/v1/kv").unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| HttpError::bad_request("Invalid key: not valid UTF-8"))
}

pub fn to_pair(key: String, e: KvEntry) -> KvPair {
    KvPair {
        lock_index: e.lock_index,
        key,
        flags: e.flags,
        value: if e.value.is_empty() {
            None
        } else {
            Some(e.value.to_vec())
        },
        create_index: e.create_index,
        modify_index: e.modify_index,
        session: e.session,
    }
}

/// What a KV read returns before it is encoded.
enum Found {
    Entries(Vec<(String, KvEntry)>),
    Keys(Vec<String>),
}

pub async fn get(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    let opts = QueryOptions::parse(&params, &agent)?;
    let key = key_of(&uri)?;
    authz.kv_read(&key)?;
    let keys = params.has("keys");
    let recurse = params.has("recurse");
    if !keys && !recurse && key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let separator = params
        .get("separator")
        .or_else(|| params.get("seperator"))
        .map(str::to_string);
    let meta = agent.read_gate(opts.consistency).await?;

    let (index, found) = if keys {
        let topic = prefix_topic(&key);
        agent
            .store
            .blocking(topic, opts.index, opts.wait, |t| {
                let (i, k) = t.kv_keys(&key, separator.as_deref());
                (i, Found::Keys(k))
            })
            .await
    } else if recurse {
        agent
            .store
            .blocking(prefix_topic(&key), opts.index, opts.wait, |t| {
                let (i, e) = t.kv_list(&key);
                (i, Found::Entries(e))
            })
            .await
    } else {
        agent
            .store
            .blocking(key_topic(&key), opts.index, opts.wait, |t| {
                let (i, e) = t.kv_get(&key);
                (
                    i,
                    Found::Entries(e.map(|e| (key.clone(), e)).into_iter().collect()),
                )
            })
            .await
    };

    let resp = match found {
        Found::Keys(k) if k.is_empty() && !key.is_empty() => StatusCode::NOT_FOUND.into_response(),
        Found::Keys(k) => json(StatusCode::OK, &k, opts.pretty),
        Found::Entries(e) if e.is_empty() => StatusCode::NOT_FOUND.into_response(),
        Found::Entries(mut e) if params.has("raw") && !recurse => {
            let (_, entry) = e.swap_remove(0);
            raw(entry.value)
        }
        Found::Entries(e) => {
            let pairs: Vec<KvPair> = e.into_iter().map(|(k, v)| to_pair(k, v)).collect();
            json(StatusCode::OK, &pairs, opts.pretty)
        }
    };
    Ok(with_meta(resp, index, &meta))
}

/// `?raw`: the value's bytes, with the headers that keep a browser from running them.
fn raw(value: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, "sandbox"),
        ],
        value,
    )
        .into_response()
}

pub async fn put(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    let key = key_of(&uri)?;
    if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    authz.kv_write(&key)?;
    params.conflicting(&["acquire", "release"])?;
    let flags = params.u64("flags")?.unwrap_or(0);
    let cas = params.u64("cas")?;
    let session = |name: &str| -> Result<Option<String>, HttpError> {
        match params.get(name) {
            None => Ok(None),
            Some("") => Err(HttpError::bad_request(format!(
                "Missing session: ?{name}= needs a session ID"
            ))),
            Some(s) => Ok(Some(s.to_string())),
        }
    };
    let (acquire, release) = (session("acquire")?, session("release")?);
    let value = read_value(&agent, &headers, body).await?;
    // With `acquire`/`release`, `cas` makes the lock operation conditional on the key's
    // ModifyIndex too (0: only if the key is absent).
    let command = match (acquire, release, cas) {
        (Some(session), _, cas) => Command::KvLock {
            key,
            value,
            flags,
            session,
            cas,
        },
        (None, Some(session), cas) => Command::KvUnlock {
            key,
            value,
            flags,
            session,
            cas,
        },
        (None, None, Some(modify_index)) => Command::KvCas {
            key,
            value,
            flags,
            modify_index,
        },
        (None, None, None) => Command::KvSet { key, value, flags },
    };
    let done = match agent.write(command).await? {
        Applied::Bool(b) | Applied::Lock(Ok(b)) => b,
        // Consul answers a lock with an unknown session with a 500 naming it.
        Applied::Lock(Err(e)) => {
            return Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e));
        }
        _ => false,
    };
    Ok(json(StatusCode::OK, &done, params.has("pretty")))
}

/// Reads the request body, refusing more than the configured value limit with a 413.
async fn read_value(agent: &Agent, headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
    let limit = agent.config.limits.kv_max_value_size;
    let too_large = |size: String| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({size} bytes) too large, max size: {limit} bytes. See kv_max_value_size in the agent's limits configuration."
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            return Err(too_large(len.to_string()));
        }
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over || e.to_string().contains("length limit") {
            too_large(format!("more than {limit}"))
        } else {
            HttpError::bad_request(format!("Failed to read request body: {e}"))
        }
    })?;
    // The body may be a slice of the connection's read buffer; stored as is, it would keep that
    // whole buffer alive for as long as the key exists. Keep a copy of just the value.
    Ok(Bytes::copy_from_slice(&body))
}

pub async fn delete(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    let key = key_of(&uri)?;
    authz.kv_write(&key)?;
    params.conflicting(&["recurse", "cas"])?;
    let command = if params.has("recurse") {
        Command::KvDeleteTree { prefix: key }
    } else if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    } else if let Some(modify_index) = params.u64("cas")? {
        Command::KvDeleteCas { key, modify_index }
    } else {
        Command::KvDelete { key }
    };
    let applied = agent.write(command).await?;
    Ok(json(
        StatusCode::OK,
        &(applied == Applied::Bool(true)),
        params.has("pretty"),
    ))
}
