//! The watch engine (Consul's `api/watch`), shared by `muster watch` and the agent's `watches`
//! config: a [`Plan`] parsed from Consul's parameter map (`type`, `key`, `prefix`, `service`,
//! `tag`, `passingonly`, `state`, `name`, `datacenter`, `token`, `stale`), run as a loop of
//! blocking queries through [`muster_api::Client`] that hands each *change* to a handler.
//!
//! Rules (Consul's plan loop):
//! * a result is handed on only when the index moved *and* the data differs from the last one
//!   handed on (an index bump that changes nothing — a write elsewhere in a prefix's table —
//!   fires nothing);
//! * an index that goes backwards restarts the query from 0;
//! * a failed query is logged and retried with a growing pause (at most 3 minutes);
//! * the handler runs beside the loop: at most one run at a time, and of the results that
//!   arrive while it runs only the latest is kept ([`handler::spawn`]).
//!
//! Knows nothing about the agent's internals: only the HTTP API.

pub mod config;
pub mod handler;

use std::collections::BTreeMap;
use std::time::Duration;

use muster_api::{Client, HealthCheck, KvPair, Node, QueryOptions, ServiceEntry, UserEvent};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// How long each blocking query may be held (the server's default).
pub const QUERY_WAIT: Duration = Duration::from_secs(300);

/// First pause after a failed query; the n-th consecutive failure waits n² times this.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Longest pause between failed queries (Consul's `maxBackoffTime`).
const MAX_BACKOFF: Duration = Duration::from_secs(180);

/// What is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Key {
        key: String,
    },
    KeyPrefix {
        prefix: String,
    },
    Services,
    Nodes,
    Service {
        service: String,
        tags: Vec<String>,
        passing_only: bool,
    },
    /// Checks in `state` (`any` when neither is given), or of `service`.
    Checks {
        service: Option<String>,
        state: Option<String>,
        tags: Vec<String>,
    },
    Event {
        name: Option<String>,
    },
}

/// A parsed watch: what to query and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    pub datacenter: Option<String>,
    pub token: Option<String>,
    pub stale: bool,
}

/// A parameter that could not be used: which one (`None`: the set as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub field: Option<String>,
    pub message: String,
}

impl ParamError {
    fn on(field: &str, message: impl Into<String>) -> Self {
        ParamError {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        ParamError {
            field: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Takes a string parameter out of `params` (Consul's `assignValue`).
pub(crate) fn take_string(
    params: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, ParamError> {
    match params.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParamError::on(
            name,
            format!("Expecting {name} to be a string"),
        )),
    }
}

/// Takes a boolean parameter (Consul's `assignValueBool`).
pub(crate) fn take_bool(params: &mut Map<String, Value>, name: &str) -> Result<bool, ParamError> {
    match params.remove(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(ParamError::on(
            name,
            format!("Expecting {name} to be a boolean"),
        )),
    }
}

/// Takes a string-or-list parameter (Consul's `assignValueStringSlice`).
pub(crate) fn take_strings(
    params: &mut Map<String, Value>,
    name: &str,
) -> Result<Vec<String>, ParamError> {
    match params.remove(name) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                _ => Err(ParamError::on(
                    &format!("{name}[{i}]"),
                    format!("Index {i} of {name} expected to be string"),
                )),
            })
            .collect(),
        Some(_) => Err(ParamError::on(
            name,
            format!("Expecting {name} to be a string or []string"),
        )),
    }
}

/// Parses the query part of a watch (Consul's `watch.Parse` for the parameters it owns). Every
/// parameter it uses is removed from `params`; the caller rejects what is left.
pub fn parse(params: &mut Map<String, Value>) -> Result<Plan, ParamError> {
    let datacenter = take_string(params, "datacenter")?.filter(|s| !s.is_empty());
    let token = take_string(params, "token")?.filter(|s| !s.is_empty());
    let typ = take_string(params, "type")?.unwrap_or_default();
    if typ.is_empty() {
        return Err(ParamError::on("type", "Watch type must be specified"));
    }
    let stale = if typ == "event" {
        false
    } else {
        take_bool(params, "stale")?
    };
    let required =
        |params: &mut Map<String, Value>, name: &str, what: &str| match take_string(params, name)?
            .filter(|s| !s.is_empty())
        {
            Some(v) => Ok(v),
            None => Err(ParamError::on(
                name,
                format!("Must specify a single {what} to watch"),
            )),
        };
    let kind = match typ.as_str() {
        "key" => Kind::Key {
            key: required(params, "key", "key")?,
        },
        "keyprefix" => Kind::KeyPrefix {
            prefix: required(params, "prefix", "prefix")?,
        },
        "services" => Kind::Services,
        "nodes" => Kind::Nodes,
        "service" => {
            let service = required(params, "service", "service")?;
            let tags = take_strings(params, "tag")?;
            let passing_only = take_bool(params, "passingonly")?;
            Kind::Service {
                service,
                tags,
                passing_only,
            }
        }
        "checks" => {
            let service = take_string(params, "service")?.filter(|s| !s.is_empty());
            let state = take_string(params, "state")?.filter(|s| !s.is_empty());
            if service.is_some() && state.is_some() {
                return Err(ParamError::whole("Cannot specify service and state"));
            }
            if let Some(s) = &state {
                if !matches!(s.as_str(), "any" | "passing" | "warning" | "critical") {
                    return Err(ParamError::on(
                        "state",
                        format!("Invalid state {s:?}: must be any, passing, warning or critical"),
                    ));
                }
            }
            let state = if service.is_none() && state.is_none() {
                Some("any".to_string())
            } else {
                state
            };
            let tags = take_strings(params, "tag")?;
            Kind::Checks {
                service,
                state,
                tags,
            }
        }
        "event" => Kind::Event {
            name: take_string(params, "name")?.filter(|s| !s.is_empty()),
        },
        other => {
            return Err(ParamError::on(
                "type",
                format!("Unsupported watch type: {other}"),
            ))
        }
    };
    Ok(Plan {
        kind,
        datacenter,
        token,
        stale,
    })
}

/// Fails with Consul's "Invalid parameters" when `params` still holds keys nobody used.
pub fn reject_leftovers(params: &Map<String, Value>) -> Result<(), ParamError> {
    if params.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = params.keys().map(String::as_str).collect();
    Err(ParamError {
        field: names.first().map(|n| n.to_string()),
        message: format!("Invalid parameters: [{}]", names.join(" ")),
    })
}

/// One result of a watch, in Consul's JSON shape (`null` for a missing key or an empty prefix,
/// as Consul's handlers see a nil value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Data {
    Key(Option<KvPair>),
    KeyPrefix(Option<Vec<KvPair>>),
    Services(BTreeMap<String, Vec<String>>),
    Nodes(Vec<Node>),
    Service(Vec<ServiceEntry>),
    Checks(Vec<HealthCheck>),
    Events(Vec<UserEvent>),
}

impl Data {
    /// The compact JSON a handler gets on stdin or in a POST body (with Go's trailing newline).
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| b"null".to_vec());
        out.push(b'\n');
        out
    }

    /// The indented JSON `muster watch` prints (Go's `MarshalIndent` with four spaces).
    pub fn to_pretty(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        match self.serialize(&mut ser) {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            Err(_) => "null".to_string(),
        }
    }
}

/// Runs one query of `plan` blocking on `index` (0: answer at once); `last` is the index the
/// previous result had, for pruning already-seen events.
pub async fn fetch(
    client: &Client,
    plan: &Plan,
    index: u64,
    last: Option<u64>,
) -> Result<(u64, Data), muster_api::Error> {
    let opts = QueryOptions {
        index: (index > 0).then_some(index),
        wait: Some(QUERY_WAIT),
        stale: plan.stale,
        datacenter: plan.datacenter.clone(),
        token: plan.token.clone(),
        ..Default::default()
    };
    let enc = muster_api::client::encode_key;
    let pe = muster_api::client::percent_encode;
    let tag_params = |tags: &[String]| -> Vec<muster_api::client::Param> {
        tags.iter()
            .map(|t| ("tag".to_string(), Some(t.clone())))
            .collect()
    };
    Ok(match &plan.kind {
        Kind::Key { key } => {
            let (pairs, meta) = client
                .get_json_optional::<Option<Vec<KvPair>>>(
                    &format!("/v1/kv/{}", enc(key)),
                    &[],
                    &opts,
                )
                .await?;
            let pair = pairs.flatten().and_then(|p| p.into_iter().next());
            (meta.last_index, Data::Key(pair))
        }
        Kind::KeyPrefix { prefix } => {
            let (pairs, meta) = client
                .get_json_optional::<Option<Vec<KvPair>>>(
                    &format!("/v1/kv/{}", enc(prefix)),
                    &[("recurse".to_string(), None)],
                    &opts,
                )
                .await?;
            let pairs = pairs.flatten().filter(|p| !p.is_empty());
            (meta.last_index, Data::KeyPrefix(pairs))
        }
        Kind::Services => {
            let (services, meta) = client
                .get_json::<Option<BTreeMap<String, Vec<String>>>>("/v1/catalog/services", &opts)
                .await?;
            (
                meta.last_index,
                Data::Services(services.unwrap_or_default()),
            )
        }
        Kind::Nodes => {
            let (nodes, meta) = client
                .get_json::<Option<Vec<Node>>>("/v1/catalog/nodes", &opts)
                .await?;
            (meta.last_index, Data::Nodes(nodes.unwrap_or_default()))
        }
        Kind::Service {
            service,
            tags,
            passing_only,
        } => {
            let mut params = tag_params(tags);
            if *passing_only {
                params.push(("passing".to_string(), Some("1".to_string())));
            }
            let (entries, meta) = client
                .get_json_with::<Option<Vec<ServiceEntry>>>(
                    &format!("/v1/health/service/{}", pe(service)),
                    &params,
                    &opts,
                )
                .await?;
            (meta.last_index, Data::Service(entries.unwrap_or_default()))
        }
        Kind::Checks {
            service,
            state,
            tags,
        } => {
            let path = match (state, service) {
                (Some(state), _) => format!("/v1/health/state/{}", pe(state)),
                (None, Some(service)) => format!("/v1/health/checks/{}", pe(service)),
                (None, None) => "/v1/health/state/any".to_string(),
            };
            let params = if state.is_some() {
                tag_params(tags)
            } else {
                Vec::new()
            };
            let (checks, meta) = client
                .get_json_with::<Option<Vec<HealthCheck>>>(&path, &params, &opts)
                .await?;
            (meta.last_index, Data::Checks(checks.unwrap_or_default()))
        }
        Kind::Event { name } => {
            let (mut events, meta) = client.event_list(name.as_deref(), &opts).await?;
            // Only the events after the last one already handed on.
            if let Some(last) = last {
                if let Some(at) = events
                    .iter()
                    .position(|e| muster_api::event::id_to_index(&e.id) == Some(last))
                {
                    events.drain(..=at);
                }
            }
            (meta.last_index, Data::Events(events))
        }
    })
}

/// Runs `plan` against the agent `client` talks to until `stop`, calling `on_change` with the
/// index and the data of every change (first result included). `on_change` must not block: it
/// hands the data to a handler task ([`handler::spawn`]).
pub async fn run(
    client: Client,
    plan: Plan,
    stop: CancellationToken,
    mut on_change: impl FnMut(u64, Data) + Send,
) {
    let mut last_index: Option<u64> = None;
    let mut next_index: u64 = 0;
    let mut last_data: Option<Data> = None;
    let mut failures: u32 = 0;
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = fetch(&client, &plan, next_index, last_index) => r,
        };
        let (index, data) = match result {
            Ok(r) => r,
            Err(e) => {
                failures = failures.saturating_add(1);
                let retry = RETRY_INTERVAL
                    .saturating_mul(failures.saturating_mul(failures))
                    .min(MAX_BACKOFF);
                tracing::error!(error = %e, retry = ?retry, kind = ?plan.kind, "watch errored");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(retry) => continue,
                }
            }
        };
        failures = 0;
        if last_index == Some(index) {
            continue;
        }
        let previous = last_index.replace(index);
        // An index that goes backwards (a restored snapshot, another server) restarts from 0.
        next_index = match previous {
            Some(p) if index < p && !matches!(plan.kind, Kind::Event { .. }) => 0,
            _ => index,
        };
        if previous.is_some() && last_data.as_ref() == Some(&data) {
            continue;
        }
        last_data = Some(data.clone());
        on_change(index, data);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use axum::extract::{RawQuery, State};
    use axum::response::IntoResponse;
    use serde_json::json;

    use super::*;

    /// Scripted answers of a fake agent, and the `index` each request asked for.
    #[derive(Default)]
    struct Script {
        answers: VecDeque<(u64, Value)>,
        asked: Vec<Option<u64>>,
    }

    async fn services(
        State(script): State<Arc<Mutex<Script>>>,
        RawQuery(query): RawQuery,
    ) -> axum::response::Response {
        let next = {
            let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
            let params = crate::http::Params::parse(query.as_deref());
            s.asked.push(params.u64("index").ok().flatten());
            s.answers.pop_front()
        };
        match next {
            Some((index, body)) => {
                ([("X-Consul-Index", index.to_string())], axum::Json(body)).into_response()
            }
            None => {
                // Out of answers: hold the query as an idle agent would.
                tokio::time::sleep(Duration::from_secs(60)).await;
                axum::http::StatusCode::GATEWAY_TIMEOUT.into_response()
            }
        }
    }

    #[tokio::test]
    async fn only_real_changes_are_handed_on_and_a_backward_index_restarts_from_zero() {
        let script = Arc::new(Mutex::new(Script {
            answers: VecDeque::from([
                (5, json!({"a": []})),
                (6, json!({"a": []})), // index moved, same data: nothing handed on
                (6, json!({"a": []})), // the wait ended, same index: nothing
                (7, json!({"b": []})),
                (3, json!({"b": []})), // backwards: next query from 0; same data
                (4, json!({"c": []})),
            ]),
            asked: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/v1/catalog/services", axum::routing::get(services))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let server_stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { server_stop.cancelled().await })
                .await;
        });
        let client = Client::new(muster_api::ClientConfig::new(addr.to_string())).expect("client");
        let plan = Plan {
            kind: Kind::Services,
            datacenter: None,
            token: None,
            stale: false,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(run(client, plan, stop.clone(), move |i, d| {
            let _ = tx.send((i, d));
        }));
        let mut got = Vec::new();
        while got.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(change)) => got.push(change),
                other => panic!("watch ended early: {other:?}; got {got:?}"),
            }
        }
        let names: Vec<(u64, Vec<String>)> = got
            .iter()
            .map(|(i, d)| match d {
                Data::Services(m) => (*i, m.keys().cloned().collect()),
                other => panic!("unexpected data {other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                (5, vec!["a".to_string()]),
                (7, vec!["b".to_string()]),
                (4, vec!["c".to_string()])
            ]
        );
        stop.cancel();
        task.await.expect("join");
        let asked = script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .asked
            .clone();
        assert_eq!(
            &asked[..6],
            &[None, Some(5), Some(6), Some(6), Some(7), None]
        );
    }
}
