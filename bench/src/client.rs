//! A lean HTTP client on hyper's connection API: a fixed set of keep-alive connections to one
//! loopback address, HTTP/1.1 (one request in flight per connection) or HTTP/2 with prior
//! knowledge (many). The load generator shares two cores with the server it measures, so every
//! CPU cycle spent here is one the server does not get: no pooling logic, no redirects, no
//! cookies, no TLS.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

pub type Body = Full<Bytes>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "http/1.1",
            Proto::Http2 => "h2c",
        }
    }
}

/// Where requests go. Only loopback addresses are accepted: this tool generates load and must
/// never aim it at another machine.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub proto: Proto,
    host: HeaderValue,
}

impl Endpoint {
    pub fn new(addr: &str, proto: Proto) -> Result<Endpoint> {
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("address {addr:?} is not IP:PORT"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing to send load to {addr}: only loopback addresses are allowed");
        }
        let host = HeaderValue::from_str(&addr.to_string())?;
        Ok(Endpoint { addr, proto, host })
    }

    /// A request to `path_and_query` ("/v1/kv/a?stale"). HTTP/2 needs the scheme and authority
    /// in the URI (they become `:scheme` and `:authority`); HTTP/1.1 sends the origin form and a
    /// Host header (Go's server refuses a request without one).
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Request<Body>> {
        let uri = match self.proto {
            Proto::Http1 => path_and_query.to_string(),
            Proto::Http2 => format!("http://{}{}", self.addr, path_and_query),
        };
        let mut b = Request::builder().method(method).uri(uri);
        if self.proto == Proto::Http1 {
            b = b.header(HOST, self.host.clone());
        }
        if let Some(ct) = content_type {
            b = b.header(CONTENT_TYPE, ct);
        }
        Ok(b.body(Full::new(body))?)
    }
}

/// A finished response with its whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

async fn dial(ep: &Endpoint) -> Result<Sender> {
    let stream = TcpStream::connect(ep.addr)
        .await
        .with_context(|| format!("connecting to {}", ep.addr))?;
    stream.set_nodelay(true)?;
    let io = TokioIo::new(stream);
    match ep.proto {
        Proto::Http1 => {
            let (tx, conn) = http1::handshake(io).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H1(tx))
        }
        Proto::Http2 => {
            let (tx, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H2(tx))
        }
    }
}

/// One keep-alive connection, dialled on first use and again after it breaks. HTTP/1.1 holds
/// the connection for the whole exchange (workers sharing it take turns); HTTP/2 clones the
/// sender and multiplexes.
pub struct Conn {
    ep: Endpoint,
    h1: Mutex<Option<http1::SendRequest<Body>>>,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
}

impl Conn {
    pub fn new(ep: Endpoint) -> Conn {
        Conn {
            ep,
            h1: Mutex::new(None),
            h2: Mutex::new(None),
        }
    }

    /// Sends `req` and reads the whole answer, within `timeout`.
    pub async fn send(&self, req: Request<Body>, timeout: Duration) -> Result<Answer> {
        match tokio::time::timeout(timeout, self.send_inner(req)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("no answer within {timeout:?}")),
        }
    }

    async fn send_inner(&self, req: Request<Body>) -> Result<Answer> {
        match self.ep.proto {
            Proto::Http1 => {
                let mut slot = self.h1.lock().await;
                let result = async {
                    if slot.as_ref().is_none_or(|tx| tx.is_closed()) {
                        match dial(&self.ep).await? {
                            Sender::H1(tx) => *slot = Some(tx),
                            Sender::H2(_) => bail!("dialled h2 for an http/1.1 connection"),
                        }
                    }
                    let tx = slot.as_mut().ok_or_else(|| anyhow!("no connection"))?;
                    tx.ready().await?;
                    let resp = tx.send_request(req).await?;
                    collect(resp).await
                }
                .await;
                if result.is_err() {
                    // A timeout drops this future with the lock, and the half-read exchange
                    // with it; an error drops the connection so the next request redials.
                    *slot = None;
                }
                result
            }
            Proto::Http2 => {
                let mut tx = self.h2_sender().await?;
                let result = async {
                    tx.ready().await?;
                    let resp = tx.send_request(req).await?;
                    collect(resp).await
                }
                .await;
                if result.is_err() && tx.is_closed() {
                    *self.h2.lock().await = None;
                }
                result
            }
        }
    }

    async fn h2_sender(&self) -> Result<http2::SendRequest<Body>> {
        let mut slot = self.h2.lock().await;
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        match dial(&self.ep).await? {
            Sender::H2(tx) => Ok(slot.insert(tx).clone()),
            Sender::H1(_) => bail!("dialled http/1.1 for an h2 connection"),
        }
    }
}

async fn collect(resp: Response<Incoming>) -> Result<Answer> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends `req` on a connection of its own and hands back the response with its body unread, for
/// answers that stream (etcd's watch). The connection lives as long as the body.
pub async fn send_streaming(ep: &Endpoint, req: Request<Body>) -> Result<Response<Incoming>> {
    match dial(ep).await? {
        Sender::H1(mut tx) => {
            tx.ready().await?;
            Ok(tx.send_request(req).await?)
        }
        Sender::H2(mut tx) => {
            tx.ready().await?;
            Ok(tx.send_request(req).await?)
        }
    }
}

/// One GET on a fresh connection, for polling a process that is starting (each attempt must
/// see a refused connection as "not yet", not reuse a dead one).
pub async fn get_once(ep: &Endpoint, path: &str, timeout: Duration) -> Result<Answer> {
    let conn = Conn::new(ep.clone());
    let req = ep.request(Method::GET, path, None, Bytes::new())?;
    conn.send(req, timeout).await
}

/// A fixed set of connections; worker `i` uses connection `i % len`.
pub struct Pool {
    conns: Vec<Conn>,
}

impl Pool {
    pub fn new(ep: &Endpoint, connections: usize) -> Pool {
        Pool {
            conns: (0..connections.max(1))
                .map(|_| Conn::new(ep.clone()))
                .collect(),
        }
    }

    pub fn for_worker(&self, worker: usize) -> &Conn {
        &self.conns[worker % self.conns.len()]
    }
}

/// A loopback port nobody listens on right now (bind port 0, read it, close).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_loopback_addresses() {
        assert!(Endpoint::new("127.0.0.1:8500", Proto::Http1).is_ok());
        assert!(Endpoint::new("[::1]:8500", Proto::Http2).is_ok());
        assert!(Endpoint::new("10.0.0.1:8500", Proto::Http1).is_err());
        assert!(Endpoint::new("localhost:8500", Proto::Http1).is_err());
    }

    #[test]
    fn builds_origin_form_for_http1_and_absolute_for_h2() -> Result<()> {
        let e1 = Endpoint::new("127.0.0.1:8500", Proto::Http1)?;
        let r = e1.request(Method::GET, "/v1/kv/a?stale", None, Bytes::new())?;
        assert_eq!(r.uri().to_string(), "/v1/kv/a?stale");
        assert_eq!(r.headers()[HOST], "127.0.0.1:8500");
        let e2 = Endpoint::new("127.0.0.1:8500", Proto::Http2)?;
        let r = e2.request(Method::GET, "/v1/kv/a", None, Bytes::new())?;
        assert_eq!(r.uri().to_string(), "http://127.0.0.1:8500/v1/kv/a");
        Ok(())
    }
}
