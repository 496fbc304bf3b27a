//! The `/v1` HTTP API (axum): one route table, one module per endpoint family. Handlers return
//! a response or an [`HttpError`]; every error is a status with a plain-text body saying what
//! was wrong. No handler writes state except through [`crate::server::Agent::write`].

pub mod acl;
pub mod agent;
pub mod agent_services;
pub mod catalog;
pub mod event;
pub mod forward;
pub mod health;
pub mod kv;
pub mod operator;
pub mod session;
pub mod status;
pub mod tls;
pub mod txn;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::server::{Agent, Consistency, ReadMeta};

/// Longest a blocking query may wait, and the default when `index` is given without `wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// Builds the whole `/v1` router for `agent`.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/kv", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/v1/kv/", get(kv::get).put(kv::put).delete(kv::delete))
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        .route(
            "/v1/operator/raft/configuration",
            get(operator::configuration),
        )
        .route(
            "/v1/operator/raft/peer",
            axum::routing::delete(operator::remove_peer),
        )
        .route("/v1/agent/self", get(agent::self_))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/monitor", get(agent::monitor))
        .route("/v1/agent/leave", put(agent::leave))
        .route("/v1/agent/join/{*address}", put(agent::join))
        .route("/v1/agent/force-leave/{*node}", put(agent::force_leave))
        .route("/v1/agent/reload", put(agent_services::reload))
        .route("/v1/agent/services", get(agent_services::services))
        .route("/v1/agent/service/{*id}", get(agent_services::service))
        .route(
            "/v1/agent/service/register",
            put(agent_services::register_service),
        )
        .route(
            "/v1/agent/service/deregister/{*id}",
            put(agent_services::deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{*id}",
            put(agent_services::service_maintenance),
        )
        .route(
            "/v1/agent/maintenance",
            put(agent_services::node_maintenance),
        )
        .route("/v1/agent/checks", get(agent_services::checks))
        .route(
            "/v1/agent/check/register",
            put(agent_services::register_check),
        )
        .route(
            "/v1/agent/check/deregister/{*id}",
            put(agent_services::deregister_check),
        )
        .route("/v1/agent/check/pass/{*id}", put(agent_services::pass))
        .route("/v1/agent/check/warn/{*id}", put(agent_services::warn))
        .route("/v1/agent/check/fail/{*id}", put(agent_services::fail))
        .route("/v1/agent/check/update/{*id}", put(agent_services::update))
        .route(
            "/v1/agent/health/service/id/{*id}",
            get(agent_services::health_by_id),
        )
        .route(
            "/v1/agent/health/service/name/{*name}",
            get(agent_services::health_by_name),
        )
        .route("/v1/event/fire", put(event::fire))
        .route("/v1/event/fire/", put(event::fire))
        .route("/v1/event/fire/{*name}", put(event::fire))
        .route("/v1/event/list", get(event::list))
        .route("/v1/catalog/register", put(catalog::register))
        .route("/v1/catalog/deregister", put(catalog::deregister))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route(
            "/v1/catalog/node-services/{node}",
            get(catalog::node_services),
        )
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/checks/{name}", get(health::checks))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/state/{state}", get(health::state))
        .route("/v1/session/create", put(session::create))
        .route("/v1/session/destroy/{id}", put(session::destroy))
        .route("/v1/session/renew/{id}", put(session::renew))
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/session/list", get(session::list))
        .route("/v1/txn", put(txn::txn))
        .merge(ui::routes(agent.config.ui))
        .pipe(harden)
        .with_state(agent)
}

/// Plain-text 404 and 405 answers for what no route matches.
fn harden<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The HTTP service for `agent`: [`router`] wrapped, once, in what every request gets — a
/// panic in a handler turned into a 500 for that one request instead of taking the agent
/// down, and `Connection: close` on an error that may have left the request's body unread.
///
/// The layers wrap the router as a whole rather than each route (`Router::layer`): each
/// per-route layer adds a boxed future holding its own copy of the request's state, and a
/// parked blocking query keeps all of them for minutes.
pub fn service(agent: Arc<Agent>) -> impl HttpService {
    // A client agent sends everything but `/v1/agent/*` to a server; a server has no such
    // layer at all (its role never changes), so its requests carry no forwarding state.
    let forwarding = (!agent.config.server)
        .then(|| axum::middleware::from_fn_with_state(agent.clone(), forward::client_forward));
    hardened(tower::Layer::layer(
        &tower::util::option_layer(forwarding),
        router(agent),
    ))
}

/// Serves `service` on `listener` until `stop` is cancelled: a plain [`tokio::net::TcpListener`]
/// for HTTP, a [`tls::TlsListener`] for HTTPS. Both go through axum's server, which hands each
/// connection to hyper-util's auto builder in its own task (HTTP/1.1, or HTTP/2 by its preface,
/// which over TLS follows ALPN) and, once `stop` fires, stops accepting and lets open
/// connections finish gracefully.
pub async fn serve<L>(listener: L, service: impl HttpService, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let served = axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(service),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// What [`service`] answers with: an HTTP service that never fails and can be shared.
pub trait HttpService:
    tower::Service<
        axum::extract::Request,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<T> HttpService for T where
    T: tower::Service<
            axum::extract::Request,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// `inner` with the layers every request gets (see [`service`]).
fn hardened<S>(inner: S) -> impl HttpService
where
    S: tower::Service<
            axum::extract::Request,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    tower::ServiceBuilder::new()
        .layer_fn(CloseAfterUnreadBody)
        .map_response(|r: axum::http::Response<_>| r.map(axum::body::Body::new))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .service(inner)
}

/// A request refused before its body was read (413, or 400 on a bad parameter) leaves that body
/// on the connection; the server then cannot reuse it. Saying `Connection: close` lets a
/// keep-alive client open a new connection instead of failing its next request.
///
/// A plain service rather than `axum::middleware::from_fn`: that one boxes a future per request
/// (two, with its `Next`), which a parked blocking query keeps for minutes; this one adds a
/// flag to the inner future, in place.
#[derive(Clone)]
struct CloseAfterUnreadBody<S>(S);

type Answer = Result<Response, std::convert::Infallible>;

impl<S> tower::Service<axum::extract::Request> for CloseAfterUnreadBody<S>
where
    S: tower::Service<
        axum::extract::Request,
        Response = Response,
        Error = std::convert::Infallible,
    >,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        futures::future::Either<S::Future, futures::future::Map<S::Future, fn(Answer) -> Answer>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        use futures::FutureExt;
        let headers = req.headers();
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        let answer = self.0.call(req);
        if has_body {
            futures::future::Either::Right(answer.map(close_on_error as fn(Answer) -> Answer))
        } else {
            futures::future::Either::Left(answer)
        }
    }
}

/// `Connection: close` on a 4xx/5xx answer (to a request that had a body).
fn close_on_error(answer: Answer) -> Answer {
    let Ok(mut resp) = answer;
    if resp.status().is_client_error() || resp.status().is_server_error() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

/// `x.pipe(f)` is `f(x)`: keeps the route table reading top to bottom.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<S> Pipe for Router<S> {}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "404 page not found")
}

async fn method_not_allowed(method: axum::http::Method) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed"),
    )
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("an HTTP handler panicked; the request failed, the agent goes on");
    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// A failed request: status plus a plain-text reason.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut body = self.message;
        if !body.ends_with('\n') {
            body.push('\n');
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Config(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError::new(status, e.to_string())
    }
}

/// The query string as Consul reads it: flags present without a value (`?recurse`), values,
/// and repeated keys.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        Params(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (`?tag=a&tag=b`), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An unsigned integer parameter; a malformed one is a 400 naming it.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, HttpError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                HttpError::bad_request(format!(
                    "Invalid {name} parameter {v:?}: must be a non-negative integer"
                ))
            }),
        }
    }

    /// Fails with Consul's "Conflicting flags" when more than one of `names` is present.
    pub fn conflicting(&self, names: &[&str]) -> Result<(), HttpError> {
        let present: Vec<&str> = names.iter().copied().filter(|n| self.has(n)).collect();
        if present.len() > 1 {
            return Err(HttpError::bad_request(format!(
                "Conflicting flags: {} cannot be used together",
                present.join(", ")
            )));
        }
        Ok(())
    }
}

/// Read options common to every read endpoint.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub index: Option<u64>,
    pub wait: Duration,
    pub consistency: Consistency,
    pub pretty: bool,
}

impl QueryOptions {
    /// Parses `index`, `wait`, `stale`, `consistent`, `dc` and `pretty`.
    pub fn parse(params: &Params, agent: &Agent) -> Result<Self, HttpError> {
        let index = params.u64("index")?;
        let wait = parse_wait(params)?;
        // Spread the return of many queries that started together (Consul adds up to wait/16).
        let jitter_ms = max_jitter(wait).as_millis() as u64;
        let wait = if index.unwrap_or(0) > 0 && jitter_ms > 0 {
            wait + Duration::from_millis(rand::thread_rng().gen_range(0..=jitter_ms))
        } else {
            wait
        };
        let consistency = match (params.has("stale"), params.has("consistent")) {
            (true, true) => {
                return Err(HttpError::bad_request(
                    "Cannot specify ?stale with ?consistent, conflicting semantics.",
                ))
            }
            (true, false) => Consistency::Stale,
            (false, true) => Consistency::Consistent,
            (false, false) => Consistency::Default,
        };
        check_datacenter(params, agent)?;
        Ok(QueryOptions {
            index,
            wait,
            consistency,
            pretty: params.has("pretty"),
        })
    }
}

/// A blocking query's `wait` as Consul reads it: [`DEFAULT_WAIT`] when absent, at most
/// [`MAX_WAIT`], before the jitter (see [`max_jitter`]). The one parser of `wait`: a client
/// agent derives its forwarding timeout from it too.
pub fn parse_wait(params: &Params) -> Result<Duration, HttpError> {
    let wait = match params.get("wait") {
        None => DEFAULT_WAIT,
        Some(w) => muster_api::duration::parse(w)
            .map_err(|e| HttpError::bad_request(format!("Invalid wait parameter {w:?}: {e}")))?,
    };
    Ok(wait.min(MAX_WAIT))
}

/// The most a blocking query adds to `wait` at random (Consul's `wait / 16`).
pub fn max_jitter(wait: Duration) -> Duration {
    wait / 16
}

/// `?dc=` naming another datacenter cannot be served until WAN federation exists.
pub fn check_datacenter(params: &Params, agent: &Agent) -> Result<(), HttpError> {
    match params.get("dc") {
        Some(dc) if !dc.is_empty() && dc != agent.config.datacenter => Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("No path to datacenter {dc:?}"),
        )),
        _ => Ok(()),
    }
}

/// Serialises `body` as Consul does (4-space indent with `?pretty`).
pub fn json<T: Serialize>(status: StatusCode, body: &T, pretty: bool) -> Response {
    let encoded = if pretty {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        body.serialize(&mut ser).map(|_| {
            out.push(b'\n');
            out
        })
    } else {
        serde_json::to_vec(body)
    };
    match encoded {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding response: {e}"),
        )
        .into_response(),
    }
}

/// Adds the blocking-query headers to a read's response.
pub fn with_meta(mut resp: Response, index: u64, meta: &ReadMeta) -> Response {
    let h: &mut HeaderMap = resp.headers_mut();
    h.insert("X-Consul-Index", HeaderValue::from(index));
    h.insert(
        "X-Consul-KnownLeader",
        HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
    );
    h.insert(
        "X-Consul-LastContact",
        HeaderValue::from(meta.last_contact.as_millis() as u64),
    );
    h.insert(
        "X-Consul-Effective-Consistency",
        HeaderValue::from_static(match meta.consistency {
            Consistency::Default => "leader",
            Consistency::Consistent => "consistent",
            Consistency::Stale => "stale",
        }),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("handler bug")
    }

    async fn status_of(service: impl HttpService, method: &str, uri: &str) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let resp = service.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_and_the_router_goes_on() {
        let router = hardened(harden(
            Router::new()
                .route("/boom", get(boom))
                .route("/ok", get(|| async { "ok" })),
        ));
        let (status, body) = status_of(router.clone(), "GET", "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "internal error\n");
        assert_eq!(
            status_of(router.clone(), "GET", "/ok").await.0,
            StatusCode::OK
        );
        let (status, body) = status_of(router.clone(), "POST", "/ok").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "method POST not allowed\n")
        );
        assert_eq!(
            status_of(router, "GET", "/nope").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn params_read_flags_values_and_bad_integers() {
        let p = Params::parse(Some("recurse&index=5&flags=x&sep=%2F"));
        assert!(p.has("recurse"));
        assert_eq!(p.u64("index").expect("ok"), Some(5));
        let err = p.u64("flags").expect_err("bad");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("flags"), "{}", err.message);
        assert_eq!(p.get("sep"), Some("/"));
        assert!(p.conflicting(&["recurse", "index"]).is_err());
        assert!(p.conflicting(&["recurse", "cas"]).is_ok());
    }
}
