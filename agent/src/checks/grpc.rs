//! gRPC checks (Consul's `CheckGRPC`): one `grpc.health.v1.Health/Check` call over HTTP/2,
//! plaintext (h2c, prior knowledge) or TLS, with the tiny protobuf messages encoded by hand.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::either::Either;

use super::net::{self, Alpn};
use super::{capped, HealthStatus, OUTPUT_MAX};

/// The health service's method path.
const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Largest response message accepted (a health response is 2 bytes).
const MAX_MESSAGE: usize = OUTPUT_MAX;

/// HTTP/2 flow-control windows: bounds what a server can make us buffer.
const H2_WINDOW: u32 = 64 * 1024;

/// Runs one gRPC health check against `target` (`host:port` or `host:port/service`):
/// passing with `gRPC check <target>: success` when the answer is SERVING; critical with
/// `gRPC <target> serving status: NOT_SERVING` for another status, or with grpc-go's
/// `rpc error: code = ... desc = ...` text when the call fails.
pub(super) async fn check(
    target: &str,
    use_tls: bool,
    tls_skip_verify: bool,
    timeout: Duration,
) -> (HealthStatus, String) {
    let (server, service) = target.split_once('/').unwrap_or((target, ""));
    let call = probe(server, service, use_tls, tls_skip_verify);
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(SERVING)) => (
            HealthStatus::Passing,
            format!("gRPC check {target}: success"),
        ),
        Ok(Ok(status)) => (
            HealthStatus::Critical,
            format!(
                "gRPC {target} serving status: {}",
                serving_status_name(status)
            ),
        ),
        Ok(Err(e)) => (HealthStatus::Critical, e),
        Err(_) => (
            HealthStatus::Critical,
            rpc_error(Code::DeadlineExceeded, "context deadline exceeded"),
        ),
    }
}

/// grpc-go's status codes, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Unknown = 2,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// grpc-go's name of status code `n`.
fn code_name(n: u64) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("Code({n})"), |s| s.to_string())
}

/// grpc-go's error text: `rpc error: code = <Code> desc = <message>`.
fn rpc_error(code: Code, desc: &str) -> String {
    rpc_error_n(code as u64, desc)
}

/// [`rpc_error`] for a code received as a number.
fn rpc_error_n(code: u64, desc: &str) -> String {
    capped(format!(
        "rpc error: code = {} desc = {desc}",
        code_name(code)
    ))
}

/// A connection failure as grpc-go reports it.
fn unavailable(what: &str, detail: &str) -> String {
    rpc_error(
        Code::Unavailable,
        &format!(
            "connection error: desc = {:?}",
            format!("transport: {what}: {detail}")
        ),
    )
}

/// The name of a `ServingStatus` (protobuf-go prints unknown values as their number).
fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        n => n.to_string(),
    }
}

/// Makes the call; returns the serving status or the error text.
async fn probe(
    server: &str,
    service: &str,
    use_tls: bool,
    tls_skip_verify: bool,
) -> Result<u64, String> {
    // grpc-go's default port when the target names none.
    let (host, port) = match net::split_host_port(server) {
        Ok((host, port)) => (host, port),
        Err(_) => (server, "443"),
    };
    let port = net::parse_port(port)
        .map_err(|e| unavailable("Error while dialing", &format!("dial tcp: {e}")))?;
    let tcp = net::dial_tcp(host, port)
        .await
        .map_err(|e| unavailable("Error while dialing", &e))?;
    let stream: net::Stream = if use_tls {
        let name = net::server_name(host)
            .map_err(|e| unavailable("authentication handshake failed", &e))?;
        let tls = net::connect_tls(tcp, name, tls_skip_verify, Alpn::Grpc)
            .await
            .map_err(|e| unavailable("authentication handshake failed", &e))?;
        Either::Right(tls)
    } else {
        Either::Left(tcp)
    };
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(H2_WINDOW)
        .initial_connection_window_size(H2_WINDOW)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable("Error while dialing", &net::error_chain(&e)))?;
    let _connection = net::spawn_conn(connection);

    let scheme = if use_tls { "https" } else { "http" };
    let authority = if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:{port}")
    };
    let request = Request::post(format!("{scheme}://{authority}{CHECK_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(encode_request(service)))
        .map_err(|e| rpc_error(Code::Internal, &net::error_chain(&e)))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| rpc_error(Code::Unavailable, &net::error_chain(&e)))?;

    let http_status = response.status();
    if http_status != StatusCode::OK {
        return Err(rpc_error(
            http_status_code(http_status),
            &format!(
                "unexpected HTTP status code received from server: {} ({})",
                http_status.as_u16(),
                http_status.canonical_reason().unwrap_or_default()
            ),
        ));
    }
    // A "trailers-only" answer carries the status in its headers.
    if let Some(result) = grpc_status(response.headers()) {
        result?;
    }
    let (message, trailers) = read_response(response.into_body()).await?;
    match trailers.as_ref().and_then(grpc_status) {
        Some(result) => result?,
        None => {
            return Err(rpc_error(
                Code::Internal,
                "server closed the stream without sending trailers",
            ))
        }
    }
    let Some(message) = message else {
        return Err(rpc_error(
            Code::Internal,
            "cardinality violation: expected <EOF> for non server-streaming RPCs, but received 0 messages",
        ));
    };
    decode_status(&message).map_err(|e| rpc_error(Code::Internal, &e))
}

/// The status in `grpc-status`/`grpc-message` headers: `None` when absent, `Some(Ok)` for
/// OK, `Some(Err(text))` for any other code.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), String>> {
    let code = headers.get("grpc-status")?;
    let code = code
        .to_str()
        .ok()
        .and_then(|c| c.trim().parse::<u64>().ok());
    let message = headers
        .get("grpc-message")
        .map(HeaderValue::as_bytes)
        .map(|m| {
            percent_encoding::percent_decode(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Some(match code {
        Some(0) => Ok(()),
        Some(code) => Err(rpc_error_n(code, &message)),
        None => Err(rpc_error(Code::Internal, "malformed grpc-status")),
    })
}

/// grpc-go's mapping of a non-200 HTTP status to a gRPC code.
fn http_status_code(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Reads the response: the first message (bounded) and the trailers.
async fn read_response(mut body: Incoming) -> Result<(Option<Bytes>, Option<HeaderMap>), String> {
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| rpc_error(Code::Unavailable, &net::error_chain(&e)))?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > MAX_MESSAGE + 5 {
                    return Err(rpc_error(
                        Code::ResourceExhausted,
                        &format!("grpc: received message larger than max ({MAX_MESSAGE} bytes)"),
                    ));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    if data.is_empty() {
        return Ok((None, trailers));
    }
    // Length-prefixed message: compressed flag, 4-byte big-endian length, payload.
    if data.len() < 5 {
        return Err(rpc_error(Code::Internal, "grpc: truncated message"));
    }
    if data[0] != 0 {
        return Err(rpc_error(
            Code::Internal,
            "grpc: compressed message received but no compression was requested",
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data.len() < 5 + len {
        return Err(rpc_error(Code::Internal, "grpc: truncated message"));
    }
    Ok((Some(data.freeze().slice(5..5 + len)), trailers))
}

/// A length-prefixed `HealthCheckRequest { string service = 1; }`.
fn encode_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    framed.freeze()
}

/// Appends `v` as a protobuf varint.
fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Reads a protobuf varint from the front of `buf`.
fn take_varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or_else(|| {
            "grpc: failed to unmarshal the received message: unexpected EOF".to_string()
        })?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("grpc: failed to unmarshal the received message: varint overflow".to_string())
}

/// Decodes `HealthCheckResponse { ServingStatus status = 1; }`, skipping unknown fields; an
/// absent status is UNKNOWN (0).
fn decode_status(mut buf: &[u8]) -> Result<u64, String> {
    let invalid =
        || "grpc: failed to unmarshal the received message: invalid wire data".to_string();
    let mut status = 0;
    while !buf.is_empty() {
        let key = take_varint(&mut buf)?;
        let skip = match (key >> 3, key & 7) {
            (1, 0) => {
                status = take_varint(&mut buf)?;
                0
            }
            (_, 0) => {
                take_varint(&mut buf)?;
                0
            }
            (_, 1) => 8,
            (_, 2) => usize::try_from(take_varint(&mut buf)?).map_err(|_| invalid())?,
            (_, 5) => 4,
            _ => return Err(invalid()),
        };
        buf = buf.get(skip..).ok_or_else(invalid)?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper::service::service_fn;
    use hyper::Response;
    use tokio::net::TcpListener;

    use super::*;

    /// Decodes the `service` of a framed `HealthCheckRequest` (test server side).
    fn decode_service(body: &[u8]) -> String {
        let mut msg = &body[5..];
        let mut service = String::new();
        while !msg.is_empty() {
            let key = take_varint(&mut msg).unwrap();
            assert_eq!(key, 0x0a);
            let len = take_varint(&mut msg).unwrap() as usize;
            service = String::from_utf8(msg[..len].to_vec()).unwrap();
            msg = &msg[len..];
        }
        service
    }

    type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

    /// A gRPC health answer: `status` as the message, then OK trailers.
    fn answer(status: u8) -> Response<Body> {
        let message = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = futures::stream::iter(vec![
            Ok::<_, Infallible>(Frame::data(message)),
            Ok(Frame::trailers(trailers)),
        ]);
        let mut response = Response::new(StreamBody::new(frames).boxed());
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        response
    }

    /// A "trailers-only" error answer.
    fn error(code: &'static str, message: &'static str) -> Response<Body> {
        let mut response = Response::new(Full::new(Bytes::new()).boxed());
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert("grpc-message", HeaderValue::from_static(message));
        response
    }

    /// A health server: "" and "web" are SERVING, "db" NOT_SERVING, anything else NotFound.
    async fn health_server(tls: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let acceptor = tls.then(|| super::super::test_support::tls_acceptor(&[b"h2"]));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<Incoming>| async move {
                        assert_eq!(req.uri().path(), CHECK_PATH);
                        assert_eq!(req.headers()["content-type"], "application/grpc");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        Ok::<_, Infallible>(match decode_service(&body).as_str() {
                            "" | "web" => answer(1),
                            "db" => answer(2),
                            _ => error("5", "unknown%20service"),
                        })
                    });
                    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn serving_not_serving_and_errors() {
        let address = health_server(false).await;
        let timeout = Duration::from_secs(2);

        let (status, output) = check(&address, false, false, timeout).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(output, format!("gRPC check {address}: success"));

        let target = format!("{address}/web");
        let (status, output) = check(&target, false, false, timeout).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(output, format!("gRPC check {target}: success"));

        let target = format!("{address}/db");
        let (status, output) = check(&target, false, false, timeout).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(output, format!("gRPC {target} serving status: NOT_SERVING"));

        let target = format!("{address}/nope");
        let (status, output) = check(&target, false, false, timeout).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(output, "rpc error: code = NotFound desc = unknown service");
    }

    #[tokio::test]
    async fn tls_with_skip_verify() {
        let address = health_server(true).await;
        let timeout = Duration::from_secs(2);
        let target = format!("{address}/db");
        let (status, output) = check(&target, true, true, timeout).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(output, format!("gRPC {target} serving status: NOT_SERVING"));
        let (status, output) = check(&address, true, true, timeout).await;
        assert_eq!(status, HealthStatus::Passing, "{output}");

        // The self-signed certificate is refused when verifying.
        let (status, output) = check(&address, true, false, timeout).await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(
            output.starts_with("rpc error: code = Unavailable desc = connection error"),
            "{output}"
        );
    }

    #[tokio::test]
    async fn unreachable_and_silent_servers() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (status, output) = check(
            &format!("127.0.0.1:{port}"),
            false,
            false,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            format!(
                "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:{port}: connect: connection refused\""
            )
        );

        // Accepts and never speaks HTTP/2: the deadline.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let (status, output) = check(&address, false, false, Duration::from_millis(300)).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
        );
        hold.abort();
    }

    #[test]
    fn protobuf_round_trip() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        let framed = encode_request("web");
        assert_eq!(&framed[..], &[0, 0, 0, 0, 5, 0x0a, 3, b'w', b'e', b'b']);
        assert_eq!(decode_service(&framed), "web");
        assert_eq!(decode_status(&[0x08, 0x01]), Ok(1));
        assert_eq!(decode_status(&[]), Ok(0));
        // Unknown fields are skipped; the last status wins.
        assert_eq!(
            decode_status(&[0x12, 2, b'h', b'i', 0x08, 2, 0x08, 1]),
            Ok(1)
        );
        assert!(decode_status(&[0x08]).is_err());
        assert!(decode_status(&[0x12, 9, 1]).is_err());
        assert!(decode_status(&[0x0b]).is_err());
    }
}
