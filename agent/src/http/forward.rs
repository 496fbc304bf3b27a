//! A client agent's HTTP forwarding: it has no state store of its own, so every request outside
//! `/v1/agent/` is carried whole over the server RPC to a server, which runs it through its own
//! router (and from there to the leader when needed) and sends the answer back. Blocking
//! queries block on the server.
//!
//! The call's timeout comes from the request ([`call_timeout`]): a blocking query's `wait`
//! (parsed by the same [`super::parse_wait`] the handlers use, jitter and a margin added),
//! else a short one. A server that does not answer in time (a SIGSTOPped server still accepts
//! TCP) costs one timeout: a read (GET, HEAD) is asked of the next server, a write only when it
//! certainly was not sent (else a 500 with the RPC error, as Consul answers, since it may still
//! be carried out); and the pool tries that server last for a while.
//!
//! On a server this layer passes every request through untouched.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{HttpError, Params};
use crate::cluster::{Retry, HOLD_TIMEOUT, READ_TIMEOUT};
use crate::rpc::{HttpRequest, HttpResponse};
use crate::server::Agent;

/// Largest request body a client agent forwards (Consul's transaction limit is far below).
const MAX_BODY: usize = 8 << 20;

/// Added to a blocking query's longest wait: before it starts waiting, the server may wait up
/// to [`HOLD_TIMEOUT`] for a leader; then the answer has to travel back.
pub const BLOCKING_MARGIN: Duration = HOLD_TIMEOUT.saturating_add(Duration::from_secs(3));

/// True for the methods that only read (safe to ask another server).
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// How long a client agent waits for a server to answer a forwarded request.
///
/// * A blocking query (a read with `index` > 0): its `wait` (default 5 min, at most 10 min)
///   plus the most jitter the server may add (wait/16) plus [`BLOCKING_MARGIN`]. Consul's
///   client sizes its RPC timeout the same way (hold timeout + wait + wait/16).
/// * Any other read: [`READ_TIMEOUT`].
/// * A write: `write` (`Agent::client_write_timeout`: the server may wait for a leader, then
///   for the commit).
///
/// A bad `index` or `wait` is the server's to refuse (400); the call is then a short one.
pub fn call_timeout(method: &Method, query: Option<&str>, write: Duration) -> Duration {
    if !is_read(method) {
        return write;
    }
    let params = Params::parse(query);
    match (params.u64("index"), super::parse_wait(&params)) {
        (Ok(Some(index)), Ok(wait)) if index > 0 => {
            wait + super::max_jitter(wait) + BLOCKING_MARGIN
        }
        _ => READ_TIMEOUT,
    }
}

/// Headers that describe one hop, not the request.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade"
    )
}

/// True for the requests a client agent answers itself.
fn local(path: &str) -> bool {
    path.starts_with("/v1/agent/") || !path.starts_with("/v1/")
}

pub async fn client_forward(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    if agent.config.server || local(req.uri().path()) {
        return next.run(req).await;
    }
    // Boxed: the forwarding future is large, and every local request would otherwise carry
    // room for it.
    match Box::pin(forward(&agent, req)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn forward(agent: &Agent, req: Request) -> Result<Response, HttpError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large or unreadable: {e}"),
        )
    })?;
    let request = HttpRequest {
        method: parts.method.as_str().to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        headers: parts
            .headers
            .iter()
            .filter(|(n, _)| !hop_by_hop(n.as_str()))
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    };
    let timeout = call_timeout(
        &parts.method,
        parts.uri.query(),
        agent.client_write_timeout(),
    );
    let retry = if is_read(&parts.method) {
        Retry::Unanswered
    } else {
        Retry::NotSent
    };
    let answer = agent.forward_http(request, timeout, retry).await?;
    Ok(into_response(answer))
}

pub(super) fn into_response(answer: HttpResponse) -> Response {
    let mut resp = Response::new(Body::from(answer.body));
    *resp.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if hop_by_hop(&name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// On a server: runs a forwarded request through this server's own HTTP service (built once,
/// see `cluster::RpcHandler`).
pub async fn serve_forwarded<S: super::HttpService>(
    service: S,
    request: HttpRequest,
) -> HttpResponse {
    use tower::ServiceExt;
    let mut builder = axum::http::Request::builder()
        .method(request.method.as_str())
        .uri(request.uri.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let req = match builder.body(Body::from(request.body)) {
        Ok(r) => r,
        Err(e) => {
            return HttpResponse {
                status: 400,
                headers: Vec::new(),
                body: format!("bad forwarded request: {e}\n").into_bytes(),
            }
        }
    };
    let resp = match service.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return HttpResponse {
                status: 500,
                headers: Vec::new(),
                body: format!("reading the answer: {e}\n").into_bytes(),
            }
        }
    };
    HttpResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: Duration = Duration::from_secs(60);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_blocking_read_waits_its_wait_plus_jitter_and_margin() {
        let t = call_timeout(&Method::GET, Some("index=5&wait=2s"), WRITE);
        assert_eq!(t, secs(2) + Duration::from_millis(125) + BLOCKING_MARGIN);
        // HEAD is a read too; other parameters do not matter.
        let t = call_timeout(&Method::HEAD, Some("recurse&index=5&wait=1m&stale"), WRITE);
        assert_eq!(t, secs(60) + Duration::from_millis(3750) + BLOCKING_MARGIN);
    }

    #[test]
    fn a_blocking_read_without_wait_gets_the_default_and_a_long_one_the_maximum() {
        assert_eq!(
            call_timeout(&Method::GET, Some("index=5"), WRITE),
            secs(300) + Duration::from_millis(18750) + BLOCKING_MARGIN
        );
        assert_eq!(
            call_timeout(&Method::GET, Some("index=5&wait=2h"), WRITE),
            secs(600) + Duration::from_millis(37500) + BLOCKING_MARGIN
        );
    }

    #[test]
    fn reads_that_do_not_block_are_short() {
        for q in [
            None,
            Some(""),
            Some("recurse"),
            Some("index=0&wait=10m"),
            Some("wait=10m"),
            // Bad values: the server answers 400 at once.
            Some("index=abc&wait=10m"),
            Some("index=3&wait=forever"),
        ] {
            assert_eq!(call_timeout(&Method::GET, q, WRITE), READ_TIMEOUT, "{q:?}");
        }
    }

    #[test]
    fn writes_get_the_call_timeout_whatever_the_query() {
        for m in [Method::PUT, Method::POST, Method::DELETE, Method::PATCH] {
            assert_eq!(call_timeout(&m, Some("index=5&wait=10m"), WRITE), WRITE);
            assert_eq!(call_timeout(&m, None, WRITE), WRITE);
        }
    }
}
