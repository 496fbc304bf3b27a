//! Networking shared by the runners: `host:port` parsing, dialing with Go-style error texts
//! (Consul's outputs are Go's error strings), the process-wide TLS client configurations, and
//! a guard that stops a connection task when a run ends.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

/// A connection to a check's target: plain TCP or TLS over it.
pub(super) type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// The application protocols a TLS client offers (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alpn {
    /// HTTP checks: `h2` then `http/1.1`, as Go's HTTP client.
    Http,
    /// gRPC checks: `h2` only.
    Grpc,
}

/// Splits `host:port` like Go's `net.SplitHostPort` (`[::1]:80` too); the host is returned
/// without brackets. Errors are Go's texts (`address x: missing port in address`).
pub(super) fn split_host_port(address: &str) -> Result<(&str, &str), String> {
    let missing = || format!("address {address}: missing port in address");
    if let Some(rest) = address.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("address {address}: missing ']' in address"));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(missing());
        };
        return Ok((host, port));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(missing());
    };
    if host.contains(':') {
        return Err(format!("address {address}: too many colons in address"));
    }
    Ok((host, port))
}

/// Parses a port as Go's dialer does for numeric ports.
pub(super) fn parse_port(port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("lookup tcp/{port}: unknown port"))
}

/// Resolves `host` (a name or an IP literal) to socket addresses for `port`.
pub(super) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // Go resolves an empty host to the local system.
    let name = if host.is_empty() { "localhost" } else { host };
    match tokio::net::lookup_host((name, port)).await {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("lookup {host}: no such host"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("lookup {host}: {}", io_error_text(&e))),
    }
}

/// Connects to `host:port`, trying each resolved address in turn. The error is Go's
/// `dial tcp 127.0.0.1:1: connect: connection refused` shape; the caller bounds the time.
pub(super) async fn dial_tcp(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs = resolve(host, port)
        .await
        .map_err(|e| format!("dial tcp: {e}"))?;
    let mut first_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    format!("dial tcp {addr}: connect: {}", io_error_text(&e))
                });
            }
        }
    }
    Err(first_error.unwrap_or_else(|| format!("dial tcp {host}: no address")))
}

/// Connects to an `address` written `host:port`.
pub(super) async fn dial_tcp_address(address: &str) -> Result<TcpStream, String> {
    let (host, port) = split_host_port(address).map_err(|e| format!("dial tcp: {e}"))?;
    let port = parse_port(port).map_err(|e| format!("dial tcp: {e}"))?;
    dial_tcp(host, port).await
}

/// An I/O error as Go prints a syscall error: `connection refused`, not
/// `Connection refused (os error 111)`.
pub(super) fn io_error_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => lowercase_first(nix::errno::Errno::from_raw(code).desc()),
        None => e.to_string(),
    }
}

/// `s` with its first letter in lower case (Go's error strings are).
fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An error and its sources joined with `: `, as Go wraps errors.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = match s.downcast_ref::<std::io::Error>() {
            Some(io) => io_error_text(io),
            None => s.to_string(),
        };
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The TLS server name for `name` (a DNS name or an IP literal, brackets allowed).
pub(super) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_string()).map_err(|_| format!("tls: invalid server name {name:?}"))
}

/// Runs the TLS handshake on `tcp` as a client of `name`.
pub(super) async fn connect_tls(
    tcp: TcpStream,
    name: ServerName<'static>,
    skip_verify: bool,
    alpn: Alpn,
) -> Result<TlsStream<TcpStream>, String> {
    let config = tls_config(skip_verify, alpn)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {}", error_chain(&e)))
}

/// Whether a TLS stream agreed on HTTP/2.
pub(super) fn negotiated_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// The process-wide client configuration for (verify or not, ALPN): built once, shared by
/// every check, so 10,000 HTTPS checks hold four configurations, not 10,000.
fn tls_config(skip_verify: bool, alpn: Alpn) -> Result<Arc<ClientConfig>, String> {
    static CONFIGS: [OnceLock<Result<Arc<ClientConfig>, String>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let slot = usize::from(skip_verify) * 2 + usize::from(alpn == Alpn::Grpc);
    CONFIGS[slot]
        .get_or_init(|| build_tls_config(skip_verify, alpn))
        .clone()
}

/// Builds one client configuration with the `ring` provider.
fn build_tls_config(skip_verify: bool, alpn: Alpn) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(muster_api::tls::AcceptAnyCertificate::new(
                provider,
            )))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(system_roots())
            .with_no_client_auth()
    };
    config.alpn_protocols = match alpn {
        Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::Grpc => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(config))
}

/// The system's trusted roots (as Go uses), loaded once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "loading system TLS roots for health checks");
            }
            let mut store = RootCertStore::empty();
            let (_, ignored) = store.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::debug!(ignored, "unparsable system TLS roots ignored");
            }
            Arc::new(store)
        })
        .clone()
}

/// A spawned connection task (hyper's connection driver) that is aborted when the run that
/// owns it ends, however it ends.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `conn` (a hyper connection future) for the length of one run.
pub(super) fn spawn_conn<F>(conn: F) -> AbortOnDrop
where
    F: Future + Send + 'static,
{
    AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_go() {
        assert_eq!(split_host_port("127.0.0.1:80"), Ok(("127.0.0.1", "80")));
        assert_eq!(split_host_port("[::1]:8500"), Ok(("::1", "8500")));
        assert_eq!(split_host_port("web:http"), Ok(("web", "http")));
        assert_eq!(
            split_host_port("localhost"),
            Err("address localhost: missing port in address".to_string())
        );
        assert_eq!(
            split_host_port("::1:80"),
            Err("address ::1:80: too many colons in address".to_string())
        );
    }

    #[test]
    fn errors_read_like_go() {
        let e = std::io::Error::from_raw_os_error(nix::libc::ECONNREFUSED);
        assert_eq!(io_error_text(&e), "connection refused");
    }

    #[tokio::test]
    async fn dial_refused_names_the_address() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = dial_tcp("127.0.0.1", port).await.unwrap_err();
        assert_eq!(
            err,
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }

    #[test]
    fn tls_configs_are_shared() {
        let a = tls_config(true, Alpn::Http).unwrap();
        let b = tls_config(true, Alpn::Http).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = tls_config(true, Alpn::Grpc).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
