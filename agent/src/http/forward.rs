//! A client agent's HTTP forwarding: it has no state store of its own, so every request outside
//! `/v1/agent/` is carried whole over the server RPC to a server, which runs it through its own
//! router (and from there to the leader when needed) and sends the answer back. Blocking
//! queries block on the server; the call's timeout covers the longest wait.
//!
//! On a server this layer passes every request through untouched.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::HttpError;
use crate::rpc::{HttpRequest, HttpResponse};
use crate::server::Agent;

/// Largest request body a client agent forwards (Consul's transaction limit is far below).
const MAX_BODY: usize = 8 << 20;

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
    let answer = agent.forward_http(request).await?;
    Ok(into_response(answer))
}

fn into_response(answer: HttpResponse) -> Response {
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

/// On a server: runs a forwarded request through this server's own router.
pub async fn serve_forwarded(agent: Arc<Agent>, request: HttpRequest) -> HttpResponse {
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
    let resp = match super::service(agent).oneshot(req).await {
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
