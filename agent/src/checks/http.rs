//! HTTP(S) checks (Consul's `CheckHTTP`): one request per run on a fresh connection (Consul
//! disables keep-alive), HTTP/1.1 or HTTP/2 (ALPN over TLS), Go's redirect rules, a body read
//! no further than 4 KiB.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;
use tokio_util::either::Either;
use url::{Position, Url};

use super::net::{self, AbortOnDrop, Alpn};
use super::{capped, HealthStatus, OUTPUT_MAX};

/// Consul's `User-Agent` for HTTP checks.
pub(super) const USER_AGENT: &str = "Consul Health Check";

/// Consul's default `Accept` for HTTP checks.
pub(super) const ACCEPT: &str = "text/plain, text/*, */*";

/// Go's text for a request that ran out of time before the response head.
const TIMEOUT_TEXT: &str =
    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";

/// Go's client follows at most this many redirects.
const MAX_REDIRECTS: usize = 10;

/// Largest response head (status line and headers) accepted over HTTP/1.
const MAX_HEAD: usize = 64 * 1024;

/// HTTP/2 flow-control windows: what a server may send before we read is bounded by these.
const H2_WINDOW: u32 = 64 * 1024;

/// One HTTP check's settings, borrowed from its [`super::CheckKind::Http`].
pub(super) struct HttpCheck<'a> {
    pub url: &'a str,
    pub method: &'a str,
    pub header: &'a BTreeMap<String, Vec<String>>,
    pub body: &'a str,
    pub tls_skip_verify: bool,
    pub tls_server_name: &'a str,
    pub disable_redirects: bool,
}

/// Runs one HTTP check: 2xx passing, 429 warning, any other status critical, each with
/// `HTTP <METHOD> <url>: <code> <reason> Output: <body, at most 4 KiB>`; a failed request
/// (connect, TLS, protocol, timeout) is critical with Go's `Get "<url>": <error>` text.
pub(super) async fn check(c: HttpCheck<'_>, timeout: Duration) -> (HealthStatus, String) {
    let method = if c.method.is_empty() { "GET" } else { c.method };
    let deadline = Instant::now() + timeout;
    match fetch(&c, method, deadline).await {
        Err(e) => (HealthStatus::Critical, e),
        Ok((code, status_text, body)) => {
            let result = format!("HTTP {method} {}: {status_text} Output: {body}", c.url);
            let status = if code.is_success() {
                HealthStatus::Passing
            } else if code == StatusCode::TOO_MANY_REQUESTS {
                HealthStatus::Warning
            } else {
                HealthStatus::Critical
            };
            (status, result)
        }
    }
}

/// Go's `url.Error` operation name: the method with only its first letter upper case.
fn op_name(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The request headers a check sends, and the `Host` override if one was given.
struct Headers {
    map: HeaderMap,
    host: Option<String>,
}

/// Builds the headers: the check's own, then Consul's `User-Agent` and `Accept` when absent.
fn build_headers(header: &BTreeMap<String, Vec<String>>) -> Result<Headers, String> {
    let mut map = HeaderMap::new();
    let mut host = None;
    for (name, values) in header {
        if name.eq_ignore_ascii_case("host") {
            host = values.first().filter(|h| !h.is_empty()).cloned();
            continue;
        }
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
        for value in values {
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            map.append(header_name.clone(), value);
        }
    }
    if !map.contains_key(header::USER_AGENT) {
        map.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    if !map.contains_key(header::ACCEPT) {
        map.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
    }
    Ok(Headers { map, host })
}

/// Performs the request, following redirects unless disabled; returns the final status code,
/// Go's status text (`200 OK`) and the body's first 4 KiB.
async fn fetch(
    c: &HttpCheck<'_>,
    method: &str,
    deadline: Instant,
) -> Result<(StatusCode, String, String), String> {
    let op = op_name(method);
    let fail = |url: &str, e: String| capped(format!("{op} {url:?}: {e}"));
    let mut url = Url::parse(c.url).map_err(|e| format!("parse {:?}: {e}", c.url))?;
    // Errors quote the URL as configured until a redirect replaces it.
    let mut url_text = c.url.to_string();
    let mut method = Method::from_bytes(method.as_bytes())
        .map_err(|_| fail(&url_text, format!("net/http: invalid method {method:?}")))?;
    let mut headers = build_headers(c.header).map_err(|e| fail(&url_text, e))?;
    let original_host = url.host_str().unwrap_or_default().to_string();
    let mut body = Bytes::copy_from_slice(c.body.as_bytes());
    let mut redirects = 0;
    loop {
        let attempt =
            tokio::time::timeout_at(deadline, send(&url, &method, &headers, body.clone(), c)).await;
        let (response, connection) = match attempt {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(fail(&url_text, e)),
            Err(_) => return Err(fail(&url_text, TIMEOUT_TEXT.to_string())),
        };
        let code = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        match (c.disable_redirects, redirect_rule(code), location) {
            (false, Some(keep_method), Some(location)) => {
                let next = url.join(&location).map_err(|e| {
                    fail(
                        &url_text,
                        format!("failed to parse Location header {location:?}: {e}"),
                    )
                })?;
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(fail(
                        next.as_str(),
                        format!("stopped after {MAX_REDIRECTS} redirects"),
                    ));
                }
                if !keep_method {
                    if method != Method::HEAD {
                        method = Method::GET;
                    }
                    body = Bytes::new();
                }
                redirect_headers(&mut headers, &url, &next, &original_host, &location);
                url_text = next.to_string();
                url = next;
                drop(connection);
            }
            _ => {
                let status_text = status_text(&response);
                let body = read_body(response.into_body(), deadline).await;
                drop(connection);
                return Ok((code, status_text, body));
            }
        }
    }
}

/// Go's redirect rule for `code`: `Some(true)` follow keeping the method and body (307, 308),
/// `Some(false)` follow as GET without a body (301, 302, 303), `None` not a redirect.
fn redirect_rule(code: StatusCode) -> Option<bool> {
    match code.as_u16() {
        301..=303 => Some(false),
        307 | 308 => Some(true),
        _ => None,
    }
}

/// Adjusts the headers for a redirect to `next`, as Go's client does: a `Host` override
/// survives only a relative `Location`; credentials and cookies only a redirect to the same
/// host or a subdomain of it; `Referer` names the previous URL unless leaving HTTPS.
fn redirect_headers(
    headers: &mut Headers,
    from: &Url,
    next: &Url,
    original_host: &str,
    location: &str,
) {
    if Url::parse(location).is_ok() {
        headers.host = None;
    }
    let next_host = next.host_str().unwrap_or_default();
    let same_site = next_host == original_host
        || next_host
            .strip_suffix(original_host)
            .is_some_and(|prefix| prefix.ends_with('.'));
    if !same_site {
        for name in ["authorization", "www-authenticate", "cookie", "cookie2"] {
            headers.map.remove(name);
        }
    }
    headers.map.remove(header::REFERER);
    if !(from.scheme() == "https" && next.scheme() == "http") {
        let mut referer = from.clone();
        referer.set_fragment(None);
        let _ = referer.set_username("");
        let _ = referer.set_password(None);
        if let Ok(value) = HeaderValue::from_str(referer.as_str()) {
            headers.map.insert(header::REFERER, value);
        }
    }
}

/// Go's `Response.Status`: the code and the reason phrase the server sent (or the standard
/// one).
fn status_text(response: &Response<Incoming>) -> String {
    let code = response.status();
    let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => String::from_utf8_lossy(reason.as_bytes()).into_owned(),
        None => code.canonical_reason().unwrap_or_default().to_string(),
    };
    format!("{} {reason}", code.as_u16()).trim_end().to_string()
}

/// Reads at most 4 KiB of `body` before `deadline`; what a failed or slow read got so far is
/// kept (Consul logs the error and reports what it read). The rest is never read.
async fn read_body(mut body: Incoming, deadline: Instant) -> String {
    let mut out = BytesMut::new();
    while out.len() < OUTPUT_MAX {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(OUTPUT_MAX - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "HTTP check: error while reading body");
                break;
            }
            Err(_) => {
                tracing::debug!("HTTP check: timed out reading body");
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects to `url`'s host and sends one request; returns the response head and the guard
/// of the connection task (the body is read through it).
async fn send(
    url: &Url,
    method: &Method,
    headers: &Headers,
    body: Bytes,
    c: &HttpCheck<'_>,
) -> Result<(Response<Incoming>, AbortOnDrop), String> {
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("unsupported protocol scheme {other:?}")),
    };
    let dial_host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("http: no Host in request URL".to_string()),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "http: no port in request URL".to_string())?;
    let tcp = net::dial_tcp(&dial_host, port).await?;
    let stream: net::Stream = if https {
        let name = if c.tls_server_name.is_empty() {
            dial_host.as_str()
        } else {
            c.tls_server_name
        };
        let name = net::server_name(name)?;
        Either::Right(net::connect_tls(tcp, name, c.tls_skip_verify, Alpn::Http).await?)
    } else {
        Either::Left(tcp)
    };
    let h2 = match &stream {
        Either::Right(tls) => net::negotiated_h2(tls),
        Either::Left(_) => false,
    };

    // The authority the request names: the `Host` override, else the URL's host[:port].
    let authority = match &headers.host {
        Some(host) => host.clone(),
        None => match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        },
    };
    let path = &url[Position::BeforePath..Position::AfterQuery];
    let path = if path.is_empty() { "/" } else { path };
    let mut map = headers.map.clone();
    let uri = if h2 {
        // HTTP/2 names the host in `:authority` and has no connection-level headers.
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            map.remove(name);
        }
        format!("{}://{authority}{path}", url.scheme())
    } else {
        let host = HeaderValue::from_str(&authority)
            .map_err(|_| format!("net/http: invalid Host header {authority:?}"))?;
        map.insert(header::HOST, host);
        // Keep-alive off, as Consul: the server may close as soon as it answered.
        map.insert(header::CONNECTION, HeaderValue::from_static("close"));
        path.to_string()
    };
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    if let Some(headers) = builder.headers_mut() {
        *headers = map;
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| net::error_chain(&e))?;
    let io = TokioIo::new(stream);
    let (response, guard) = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(H2_WINDOW)
                .initial_connection_window_size(H2_WINDOW)
                .handshake(io)
                .await
                .map_err(|e| net::error_chain(&e))?;
        let guard = net::spawn_conn(connection);
        (sender.send_request(request).await, guard)
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .handshake(io)
            .await
            .map_err(|e| net::error_chain(&e))?;
        let guard = net::spawn_conn(connection);
        (sender.send_request(request).await, guard)
    };
    let response = response.map_err(|e| net::error_chain(&e))?;
    Ok((response, guard))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};

    use http_body_util::combinators::BoxBody;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::super::test_support::{channel_report, next, spec};
    use super::super::CheckKind;
    use super::*;

    type TestBody = BoxBody<Bytes, Infallible>;

    /// What the test server saw of one request.
    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        uri: String,
        headers: HeaderMap,
        body: Bytes,
    }

    type Handler = Arc<dyn Fn(&Seen) -> Response<TestBody> + Send + Sync>;

    fn full(text: impl Into<Bytes>) -> TestBody {
        Full::new(text.into()).boxed()
    }

    fn respond(code: u16, body: &str) -> Response<TestBody> {
        let mut r = Response::new(full(body.to_string()));
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        r
    }

    /// An HTTP/1.1 server on 127.0.0.1:0 answering with `handler`, recording requests.
    async fn server(handler: Handler) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method,
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            };
                            let response = handler(&seen);
                            log.lock().unwrap().push(seen);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (base, seen)
    }

    fn http_check<'a>(url: &'a str, header: &'a BTreeMap<String, Vec<String>>) -> HttpCheck<'a> {
        HttpCheck {
            url,
            method: "",
            header,
            body: "",
            tls_skip_verify: false,
            tls_server_name: "",
            disable_redirects: false,
        }
    }

    #[tokio::test]
    async fn status_codes_map_like_consul() {
        let code = Arc::new(AtomicU16::new(200));
        let current = code.clone();
        let (base, seen) = server(Arc::new(move |_| {
            respond(current.load(Ordering::SeqCst), "hello")
        }))
        .await;
        let url = format!("{base}/health");
        let no_headers = BTreeMap::new();
        let timeout = Duration::from_secs(2);

        let (status, output) = check(http_check(&url, &no_headers), timeout).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(output, format!("HTTP GET {url}: 200 OK Output: hello"));

        code.store(429, Ordering::SeqCst);
        let (status, output) = check(http_check(&url, &no_headers), timeout).await;
        assert_eq!(status, HealthStatus::Warning);
        assert_eq!(
            output,
            format!("HTTP GET {url}: 429 Too Many Requests Output: hello")
        );

        code.store(500, Ordering::SeqCst);
        let (status, output) = check(http_check(&url, &no_headers), timeout).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            format!("HTTP GET {url}: 500 Internal Server Error Output: hello")
        );

        code.store(204, Ordering::SeqCst);
        assert_eq!(
            check(http_check(&url, &no_headers), timeout).await.0,
            HealthStatus::Passing
        );

        let seen = seen.lock().unwrap();
        let first = &seen[0];
        assert_eq!(first.method, Method::GET);
        assert_eq!(first.uri, "/health");
        assert_eq!(first.headers["user-agent"], USER_AGENT);
        assert_eq!(first.headers["accept"], ACCEPT);
        assert_eq!(first.headers["connection"], "close");
        assert_eq!(
            first.headers["host"],
            url.trim_start_matches("http://")
                .trim_end_matches("/health")
        );
    }

    #[tokio::test]
    async fn method_headers_host_and_body_are_sent() {
        let (base, seen) = server(Arc::new(|_| respond(200, ""))).await;
        let url = format!("{base}/api?x=1");
        let mut header = BTreeMap::new();
        header.insert("Host".to_string(), vec!["web.example".to_string()]);
        header.insert(
            "X-Token".to_string(),
            vec!["a".to_string(), "b".to_string()],
        );
        header.insert("User-Agent".to_string(), vec!["mine".to_string()]);
        let c = HttpCheck {
            method: "POST",
            body: "{\"ping\":1}",
            ..http_check(&url, &header)
        };
        let (status, output) = check(c, Duration::from_secs(2)).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(output, format!("HTTP POST {url}: 200 OK Output: "));
        let seen = seen.lock().unwrap();
        let req = &seen[0];
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.uri, "/api?x=1");
        assert_eq!(req.headers["host"], "web.example");
        assert_eq!(req.headers["user-agent"], "mine");
        let tokens: Vec<_> = req.headers.get_all("x-token").iter().collect();
        assert_eq!(tokens, ["a", "b"]);
        assert_eq!(req.body, "{\"ping\":1}");
    }

    #[tokio::test]
    async fn redirects_followed_or_not() {
        let (base, seen) = server(Arc::new(|req: &Seen| match req.uri.as_str() {
            "/old" => {
                let mut r = respond(301, "moved");
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/new"));
                r
            }
            "/loop" => {
                let mut r = respond(302, "");
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/loop"));
                r
            }
            _ => respond(200, "here"),
        }))
        .await;
        let no_headers = BTreeMap::new();
        let url = format!("{base}/old");
        let (status, output) = check(http_check(&url, &no_headers), Duration::from_secs(2)).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(output, format!("HTTP GET {url}: 200 OK Output: here"));
        assert_eq!(seen.lock().unwrap()[1].uri, "/new");

        let c = HttpCheck {
            disable_redirects: true,
            ..http_check(&url, &no_headers)
        };
        let (status, output) = check(c, Duration::from_secs(2)).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            format!("HTTP GET {url}: 301 Moved Permanently Output: moved")
        );

        let url = format!("{base}/loop");
        let (status, output) = check(http_check(&url, &no_headers), Duration::from_secs(2)).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            format!("Get \"{base}/loop\": stopped after 10 redirects")
        );
    }

    #[tokio::test]
    async fn body_is_not_read_past_4k() {
        // An endless body: the check must stop reading after 4 KiB and report at once.
        let (base, _) = server(Arc::new(|_| {
            let chunks = futures::stream::repeat_with(|| {
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'z'; 1000])))
            });
            Response::new(StreamBody::new(chunks).boxed())
        }))
        .await;
        let url = format!("{base}/big");
        let no_headers = BTreeMap::new();
        let started = std::time::Instant::now();
        let (status, output) = check(http_check(&url, &no_headers), Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(status, HealthStatus::Passing);
        let prefix = format!("HTTP GET {url}: 200 OK Output: ");
        assert_eq!(output, format!("{prefix}{}", "z".repeat(4096)));
    }

    #[tokio::test]
    async fn errors_are_critical_with_gos_text() {
        let no_headers = BTreeMap::new();
        // Nobody listening.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let (status, output) = check(http_check(&url, &no_headers), Duration::from_secs(2)).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            format!("Get \"{url}\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );

        // A server that accepts and never answers: the timeout.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let started = std::time::Instant::now();
        let (status, output) =
            check(http_check(&url, &no_headers), Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
        );
        hold.abort();

        let (status, output) = check(
            http_check("ftp://127.0.0.1/x", &no_headers),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            "Get \"ftp://127.0.0.1/x\": unsupported protocol scheme \"ftp\""
        );
    }

    #[tokio::test]
    async fn spawned_loop_flips_with_the_server() {
        let code = Arc::new(AtomicU16::new(200));
        let current = code.clone();
        let (base, _) = server(Arc::new(move |_| {
            respond(current.load(Ordering::SeqCst), "ok")
        }))
        .await;
        let (report, mut rx) = channel_report();
        let cancel = CancellationToken::new();
        let kind = CheckKind::Http {
            url: format!("{base}/"),
            method: String::new(),
            header: BTreeMap::new(),
            body: String::new(),
            tls_skip_verify: false,
            tls_server_name: String::new(),
            disable_redirects: false,
        };
        let handle = super::super::spawn(spec(kind, 20, 1000), report, cancel.clone());
        assert_eq!(next(&mut rx).await.0, HealthStatus::Passing);
        code.store(500, Ordering::SeqCst);
        loop {
            if next(&mut rx).await.0 == HealthStatus::Critical {
                break;
            }
        }
        code.store(429, Ordering::SeqCst);
        loop {
            if next(&mut rx).await.0 == HealthStatus::Warning {
                break;
            }
        }
        cancel.cancel();
        handle.await.unwrap();
    }

    /// An HTTPS server (HTTP/1.1 or HTTP/2 by ALPN) answering 200 with the protocol version
    /// and the SNI it was sent.
    async fn tls_server(alpn: &'static [&'static [u8]]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let acceptor = super::super::test_support::tls_acceptor(alpn);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let text = format!("{:?} sni={sni}", req.version());
                        async move { Ok::<_, Infallible>(Response::new(full(text))) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        base
    }

    #[tokio::test]
    async fn https_with_skip_verify_server_name_and_h2() {
        let no_headers = BTreeMap::new();
        let base = tls_server(&[b"h2", b"http/1.1"]).await;
        let url = format!("{base}/");
        let timeout = Duration::from_secs(2);

        // Self-signed: refused when verifying...
        let (status, output) = check(http_check(&url, &no_headers), timeout).await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(
            output.starts_with(&format!("Get \"{url}\": tls: ")),
            "{output}"
        );

        // ...accepted with tls_skip_verify, over HTTP/2 when the server offers it.
        let c = HttpCheck {
            tls_skip_verify: true,
            ..http_check(&url, &no_headers)
        };
        let (status, output) = check(c, timeout).await;
        assert_eq!(status, HealthStatus::Passing);
        // An IP address is never sent as SNI.
        assert_eq!(
            output,
            format!("HTTP GET {url}: 200 OK Output: HTTP/2.0 sni=-")
        );

        let c = HttpCheck {
            tls_skip_verify: true,
            tls_server_name: "web.internal",
            ..http_check(&url, &no_headers)
        };
        let (status, output) = check(c, timeout).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(
            output,
            format!("HTTP GET {url}: 200 OK Output: HTTP/2.0 sni=web.internal")
        );

        let base = tls_server(&[b"http/1.1"]).await;
        let url = format!("{base}/");
        let c = HttpCheck {
            tls_skip_verify: true,
            ..http_check(&url, &no_headers)
        };
        let (status, output) = check(c, timeout).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(
            output,
            format!("HTTP GET {url}: 200 OK Output: HTTP/1.1 sni=-")
        );
    }
}
