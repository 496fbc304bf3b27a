//! `/v1/session/*`: create, destroy, renew, and the blocking reads (info, node, list), shaped as
//! Consul's. Creation is validated twice: the request here (TTL range, behavior, lock-delay),
//! the catalog in apply (node and checks exist, no check critical).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use muster_api::{ServiceCheck, SessionEntry};
use serde_json::Value;

use super::acl::Authorizer;
use super::{json, with_meta, HttpError, Params, QueryOptions};
use crate::leader::SERF_CHECK_ID;
use crate::server::Agent;
use crate::session_ttl::ttl_of;
use crate::state::{Behavior, Command, Response as Applied, SessionRow, Tables, Topic};

/// Consul's bounds on a session TTL and its lock-delay.
const MIN_TTL: Duration = Duration::from_secs(10);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);

/// The wire shape of a session.
pub fn session_api(s: &SessionRow) -> SessionEntry {
    SessionEntry {
        id: s.id.clone(),
        name: s.name.clone(),
        node: s.node.clone(),
        lock_delay: s.lock_delay_ms.saturating_mul(1_000_000),
        behavior: s.behavior.as_str().to_string(),
        ttl: s.ttl.clone(),
        node_checks: (!s.node_checks.is_empty()).then(|| s.node_checks.clone()),
        // The deprecated `Checks`, left out when it would only say `serfHealth` (Consul 1.7+).
        checks: (!s.node_checks.is_empty() && s.node_checks != [SERF_CHECK_ID])
            .then(|| s.node_checks.clone()),
        service_checks: (!s.service_checks.is_empty()).then(|| {
            s.service_checks
                .iter()
                .map(|id| ServiceCheck {
                    id: id.clone(),
                    namespace: String::new(),
                })
                .collect()
        }),
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

/// A field of a JSON object, matched regardless of case as Go's decoder does.
fn field<'a>(body: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn string_field(body: &serde_json::Map<String, Value>, name: &str) -> Result<String, HttpError> {
    match field(body, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(HttpError::bad_request(format!(
            "Request decode failed: {name} must be a string, not {other}"
        ))),
    }
}

fn string_list(
    body: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, HttpError> {
    let bad = || {
        HttpError::bad_request(format!(
            "Request decode failed: {name} must be a list of check IDs"
        ))
    };
    match field(body, name) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                // ServiceChecks entries are {"ID": ..., "Namespace": ...}.
                Value::Object(o) => match field(o, "ID") {
                    Some(Value::String(s)) => Ok(s.clone()),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// `LockDelay`: a Go duration string, or a number — seconds below 1000 (Consul's
/// `lockDelayMinThreshold`), nanoseconds otherwise.
fn lock_delay(body: &serde_json::Map<String, Value>) -> Result<Duration, HttpError> {
    let delay = match field(body, "LockDelay") {
        None => DEFAULT_LOCK_DELAY,
        Some(Value::String(s)) => muster_api::duration::parse(s).map_err(|e| {
            HttpError::bad_request(format!("Request decode failed: LockDelay {s:?}: {e}"))
        })?,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if n < 1000 => Duration::from_secs(n),
            Some(n) => Duration::from_nanos(n),
            None => {
                return Err(HttpError::bad_request(format!(
                    "Request decode failed: LockDelay {n} must be a non-negative number"
                )))
            }
        },
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "Request decode failed: LockDelay must be a duration, not {other}"
            )))
        }
    };
    // Consul reads a zero lock-delay as "unset": the default applies (the least is 1ms).
    let delay = if delay.is_zero() {
        DEFAULT_LOCK_DELAY
    } else {
        delay
    };
    if delay > MAX_LOCK_DELAY {
        return Err(HttpError::bad_request(format!(
            "Invalid Lock Delay '{delay:?}', must be at most 60s"
        )));
    }
    Ok(delay)
}

/// Parses and validates a create request into a row (indexes are set by apply).
pub fn parse_create(body: &[u8], default_node: &str, id: String) -> Result<SessionRow, HttpError> {
    let map = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => serde_json::Map::new(),
            Ok(_) => {
                return Err(HttpError::bad_request(
                    "Request decode failed: the body must be a JSON object",
                ))
            }
            Err(e) => {
                return Err(HttpError::bad_request(format!(
                    "Request decode failed: {e}"
                )))
            }
        }
    };
    let behavior = match string_field(&map, "Behavior")?.as_str() {
        "" | "release" => Behavior::Release,
        "delete" => Behavior::Delete,
        other => {
            return Err(HttpError::bad_request(format!(
                "Invalid Behavior setting '{other}'"
            )))
        }
    };
    let ttl = string_field(&map, "TTL")?;
    if !ttl.is_empty() {
        let d = muster_api::duration::parse(&ttl).map_err(|e| {
            HttpError::bad_request(format!("Request decode failed: TTL {ttl:?}: {e}"))
        })?;
        if !d.is_zero() && (d < MIN_TTL || d > MAX_TTL) {
            return Err(HttpError::bad_request(format!(
                "Invalid Session TTL '{ttl}', must be between [10s=24h0m0s]"
            )));
        }
    }
    let node = match string_field(&map, "Node")? {
        n if n.is_empty() => default_node.to_string(),
        n => n,
    };
    let checks = string_list(&map, "Checks")?;
    let node_checks = string_list(&map, "NodeChecks")?;
    let service_checks = string_list(&map, "ServiceChecks")?;
    let node_checks = match (checks, node_checks, &service_checks) {
        (None, None, None) => vec![SERF_CHECK_ID.to_string()],
        (c, n, _) => {
            let mut all = c.unwrap_or_default();
            for id in n.unwrap_or_default() {
                if !all.contains(&id) {
                    all.push(id);
                }
            }
            all
        }
    };
    Ok(SessionRow {
        id,
        name: string_field(&map, "Name")?,
        node,
        node_checks,
        service_checks: service_checks.unwrap_or_default(),
        lock_delay_ms: lock_delay(&map)?.as_millis() as u64,
        behavior,
        ttl,
        create_index: 0,
        modify_index: 0,
    })
}

pub async fn create(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    let row = parse_create(
        &body,
        &agent.config.node_name,
        uuid::Uuid::new_v4().to_string(),
    )?;
    authz.node_write(&row.node)?;
    let id = row.id.clone();
    let ttl = ttl_of(&row.ttl);
    match agent.write(Command::SessionCreate(Box::new(row))).await? {
        Applied::Session(Ok(())) => {}
        Applied::Session(Err(e)) => {
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Failed session create: {e}"),
            ))
        }
        other => {
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("unexpected apply result {other:?}"),
            ))
        }
    }
    if let Some(ttl) = ttl {
        agent.session_timers.reset(&id, ttl);
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "ID": id }),
        params.has("pretty"),
    ))
}

pub async fn destroy(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    if id.is_empty() {
        return Err(HttpError::bad_request("Missing session"));
    }
    if let Some(s) = agent.store.read().session_get(&id) {
        authz.node_write(&s.node)?;
    }
    agent.write(Command::SessionDestroy { id }).await?;
    Ok(json(StatusCode::OK, &true, params.has("pretty")))
}

pub async fn renew(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    super::check_datacenter(&params, &agent)?;
    // Renewal resets the leader's timer; it is not replicated (as in Consul).
    agent.read_gate(crate::server::Consistency::Default).await?;
    let Some(row) = agent.store.read().session_get(&id).cloned() else {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!("Session id '{id}' not found"),
        ));
    };
    authz.node_write(&row.node)?;
    if let Some(ttl) = ttl_of(&row.ttl) {
        agent.session_timers.reset(&id, ttl);
    }
    Ok(json(
        StatusCode::OK,
        &vec![session_api(&row)],
        params.has("pretty"),
    ))
}

/// A blocking read of the sessions table.
async fn read(
    agent: &Agent,
    query: Option<&str>,
    select: impl Fn(&Tables) -> Vec<SessionEntry>,
) -> Result<Response, HttpError> {
    let params = Params::parse(query);
    let opts = QueryOptions::parse(&params, agent)?;
    let (index, list, meta) = super::catalog::blocking_read(agent, &opts, Topic::Sessions, |t| {
        (t.sessions_index(), select(t))
    })
    .await?;
    Ok(with_meta(
        json(StatusCode::OK, &list, opts.pretty),
        index,
        &meta,
    ))
}

pub async fn info(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    read(&agent, query.as_deref(), |t| {
        t.session_get(&id).map(session_api).into_iter().collect()
    })
    .await
}

pub async fn node(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    read(&agent, query.as_deref(), |t| {
        t.node_sessions(&node)
            .into_iter()
            .map(session_api)
            .collect()
    })
    .await
}

pub async fn list(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    authz.node_read()?;
    read(&agent, query.as_deref(), |t| {
        t.sessions.rows.values().map(session_api).collect()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_defaults_and_validation() {
        let row = parse_create(b"", "n1", "id".into()).expect("empty body");
        assert_eq!(row.node, "n1");
        assert_eq!(row.node_checks, vec!["serfHealth".to_string()]);
        assert_eq!(row.lock_delay_ms, 15_000);
        assert_eq!(row.behavior, Behavior::Release);

        let row = parse_create(
            br#"{"name":"x","LockDelay":5,"Behavior":"delete","TTL":"10s","Checks":[]}"#,
            "n1",
            "id".into(),
        )
        .expect("valid");
        assert_eq!((row.name.as_str(), row.lock_delay_ms), ("x", 5_000));
        assert!(row.node_checks.is_empty());
        assert_eq!(row.behavior, Behavior::Delete);
        let row = parse_create(br#"{"LockDelay":2000000000}"#, "n", "i".into()).expect("ns");
        assert_eq!(row.lock_delay_ms, 2_000);
        let row = parse_create(br#"{"LockDelay":"0s"}"#, "n", "i".into()).expect("zero");
        assert_eq!(row.lock_delay_ms, 15_000, "zero means the default");
        let row = parse_create(br#"{"LockDelay":"1ms"}"#, "n", "i".into()).expect("1ms");
        assert_eq!(row.lock_delay_ms, 1);

        for bad in [
            &br#"{"TTL":"5s"}"#[..],
            br#"{"TTL":"25h"}"#,
            br#"{"TTL":"soon"}"#,
            br#"{"Behavior":"explode"}"#,
            br#"{"LockDelay":"2m"}"#,
            br#"{"Checks":"serfHealth"}"#,
            br#"[1]"#,
            br#"{"#,
        ] {
            let err = parse_create(bad, "n", "i".into()).expect_err("refused");
            assert_eq!(
                err.status,
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
