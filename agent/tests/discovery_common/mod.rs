//! Helpers shared by the service-discovery end-to-end tests (`discovery_http`,
//! `discovery_checks`, `discovery_config`): JSON requests against a running agent, bounded
//! polling of the agent's and the catalog's view of a check or service, blocking queries on
//! another task, and the small local servers the checks are pointed at (an HTTP server whose
//! answer a test flips, a TCP port that opens and closes). Every server stops when dropped.
//!
//! Nothing here asserts on speed: waits are polls with a deadline that fail with the last state
//! seen, and blocking queries are told apart by their index first.

#![allow(dead_code)] // each test binary uses a different part of these helpers

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::common::{send, Agent, Resp};

/// How long anti-entropy may take to copy a change into the catalog (it syncs at once; this
/// bound is generous for a loaded machine).
pub const SYNC: Duration = Duration::from_secs(15);
/// How long a check may take to reach a status its target already has (1s intervals).
pub const SETTLE: Duration = Duration::from_secs(15);
/// Margin added to a blocking query's client timeout (wait + jitter + scheduling).
pub const MARGIN: Duration = Duration::from_secs(20);

// ---- requests ----------------------------------------------------------------------------

/// `PUT path` with `body` serialized as JSON.
pub async fn put_json(a: &Agent, path: &str, body: &Value) -> Resp {
    a.put(path, body.to_string()).await
}

/// `PUT /v1/agent/service/register` that must answer 200.
pub async fn register_service(a: &Agent, body: Value) {
    let r = put_json(a, "/v1/agent/service/register", &body).await;
    assert_eq!(
        r.status,
        200,
        "registering {body} answered {}: {:?}",
        r.status,
        r.text()
    );
}

/// `PUT /v1/agent/check/register` that must answer 200.
pub async fn register_check(a: &Agent, body: Value) {
    let r = put_json(a, "/v1/agent/check/register", &body).await;
    assert_eq!(
        r.status,
        200,
        "registering check {body} answered {}: {:?}",
        r.status,
        r.text()
    );
}

/// `PUT /v1/agent/check/{pass,warn,fail}/ID` that must answer 200.
pub async fn ttl(a: &Agent, verb: &str, check_id: &str) {
    let r = a
        .put(&format!("/v1/agent/check/{verb}/{check_id}"), "")
        .await;
    assert_eq!(
        r.status,
        200,
        "PUT /v1/agent/check/{verb}/{check_id} answered {}: {:?}",
        r.status,
        r.text()
    );
}

/// `GET path` that must answer 200 with JSON.
pub async fn get_json(a: &Agent, path: &str) -> Value {
    let r = a.get(path).await;
    assert_eq!(
        r.status,
        200,
        "GET {path} answered {}: {:?}",
        r.status,
        r.text()
    );
    r.json()
}

/// `GET path?filter=EXPR` (the expression URL-encoded).
pub async fn get_filtered(a: &Agent, path: &str, expr: &str) -> Resp {
    let sep = if path.contains('?') { '&' } else { '?' };
    a.get(&format!("{path}{sep}filter={}", urlencode(expr)))
        .await
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// This agent's node name (`/v1/agent/self`).
pub async fn node_name(a: &Agent) -> String {
    get_json(a, "/v1/agent/self").await["Config"]["NodeName"]
        .as_str()
        .expect("Config.NodeName is a string")
        .to_string()
}

pub async fn agent_services(a: &Agent) -> Map<String, Value> {
    match get_json(a, "/v1/agent/services").await {
        Value::Object(m) => m,
        other => panic!("/v1/agent/services is not an object: {other}"),
    }
}

pub async fn agent_checks(a: &Agent) -> Map<String, Value> {
    match get_json(a, "/v1/agent/checks").await {
        Value::Object(m) => m,
        other => panic!("/v1/agent/checks is not an object: {other}"),
    }
}

/// The checks the catalog holds for `node` (`/v1/health/node/:node`).
pub async fn catalog_node_checks(a: &Agent, node: &str) -> Vec<Value> {
    array(get_json(a, &format!("/v1/health/node/{node}")).await)
}

/// A JSON array's items; panics with the value otherwise.
pub fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => panic!("not a JSON array: {other}"),
    }
}

/// The string field `field` of every item.
pub fn strings(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            i[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} is not a string in {i}"))
                .to_string()
        })
        .collect()
}

/// The sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

pub fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not an unsigned number in {v}"))
}

// ---- bounded waits -----------------------------------------------------------------------

/// Polls `f` until it returns `Ok`, at most `timeout`; on the deadline fails the test with
/// `what` and the last state `f` described in its `Err`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until the agent's check `id` has `status`; returns the check.
pub async fn wait_agent_check(a: &Agent, id: &str, status: &str) -> Value {
    wait_for(
        &format!("agent check {id} to be {status}"),
        SETTLE,
        || async {
            let checks = agent_checks(a).await;
            match checks.get(id) {
                Some(c) if c["Status"] == status => Ok(c.clone()),
                Some(c) => Err(c.to_string()),
                None => Err(format!("no check {id} in {}", Value::Object(checks))),
            }
        },
    )
    .await
}

/// Waits until the catalog's check `id` on `node` has `status`; returns it.
pub async fn wait_catalog_check(a: &Agent, node: &str, id: &str, status: &str) -> Value {
    wait_for(
        &format!("catalog check {id} on {node} to be {status}"),
        SYNC,
        || async {
            let checks = catalog_node_checks(a, node).await;
            match checks.iter().find(|c| c["CheckID"] == id) {
                Some(c) if c["Status"] == status => Ok(c.clone()),
                Some(c) => Err(c.to_string()),
                None => Err(format!("no check {id} in {checks:?}")),
            }
        },
    )
    .await
}

/// Waits until the catalog has (or no longer has) an instance with ID `id` of service `name`.
pub async fn wait_catalog_instance(a: &Agent, name: &str, id: &str, present: bool) {
    wait_for(
        &format!(
            "instance {id} of {name} to be {} the catalog",
            if present { "in" } else { "gone from" }
        ),
        SYNC,
        || async {
            let list = array(get_json(a, &format!("/v1/catalog/service/{name}")).await);
            let there = list.iter().any(|s| s["ServiceID"] == id);
            if there == present {
                Ok(())
            } else {
                Err(Value::Array(list).to_string())
            }
        },
    )
    .await
}

// ---- blocking queries --------------------------------------------------------------------

/// A blocking GET started on another task, bounded by `wait` plus [`MARGIN`].
pub fn spawn_get(a: &Agent, path_and_query: &str, wait: Duration) -> tokio::task::JoinHandle<Resp> {
    let client = a.client();
    let url = format!("{}{}", a.base_url(), path_and_query);
    tokio::spawn(async move {
        send(&client, "GET", &url, None, wait + MARGIN)
            .await
            .unwrap_or_else(|e| panic!("blocking GET failed: {e}"))
    })
}

/// Gives a just-started blocking query time to reach the agent and block. Correctness does not
/// depend on it: a change that lands first makes the query return at once with a greater
/// index, which the tests accept too.
pub async fn let_it_block() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

pub async fn join(h: tokio::task::JoinHandle<Resp>) -> Resp {
    h.await.expect("blocking query task panicked")
}

// ---- a local HTTP server whose answer the test flips ---------------------------------------

/// One request the test HTTP server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status it was answered with.
    pub served: u16,
}

#[derive(Clone)]
struct HttpShared {
    status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// An HTTP server on 127.0.0.1 answering every request with the current status (body
/// `"status <code>"`), recording what it received. Stops when dropped.
pub struct TestHttp {
    pub addr: SocketAddr,
    shared: HttpShared,
    task: tokio::task::JoinHandle<()>,
}

impl TestHttp {
    pub async fn start(initial: u16) -> TestHttp {
        use axum::extract::{Request, State};
        use axum::response::IntoResponse;

        async fn answer(State(s): State<HttpShared>, req: Request) -> axum::response::Response {
            let code = s.status.load(Ordering::SeqCst);
            let delay = s.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let method = req.method().to_string();
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            s.seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
                method,
                path,
                headers,
                body,
                served: code,
            });
            let status = axum::http::StatusCode::from_u16(code)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("status {code}")).into_response()
        }

        let shared = HttpShared {
            status: Arc::new(AtomicU16::new(initial)),
            delay_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test HTTP server");
        let addr = listener.local_addr().expect("local_addr");
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestHttp { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer `code` from now on.
    pub fn set(&self, code: u16) {
        self.shared.status.store(code, Ordering::SeqCst);
    }

    /// Wait `delay` before answering from now on.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests were answered so far.
    pub fn count(&self) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for TestHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- a TCP port that listens, then closes ------------------------------------------------

/// A TCP listener on 127.0.0.1 that accepts and drops connections until [`TestTcp::close`] (or
/// drop), after which the port refuses connections.
pub struct TestTcp {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestTcp {
    pub async fn start() -> TestTcp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test TCP listener");
        let addr = listener.local_addr().expect("local_addr");
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        TestTcp {
            addr,
            task: Some(task),
        }
    }

    /// Stops listening; waits (bounded) until a connect is refused.
    pub async fn close(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        let addr = self.addr;
        wait_for(
            "the test TCP port to refuse connections",
            Duration::from_secs(5),
            || async move {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(_) => Err("still accepting".to_string()),
                    Err(_) => Ok(()),
                }
            },
        )
        .await;
    }
}

impl Drop for TestTcp {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

// ---- processes -----------------------------------------------------------------------------

/// Whether `pid` is a live process (a zombie waiting for its reaper counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
