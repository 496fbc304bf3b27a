//! The HTTPS listener's TLS: the rustls server configuration built from the resolved
//! [`ListenerTls`] settings (also the server RPC's, [`Listener::InternalRpc`], without ALPN) (ring provider, ALPN `h2` then `http/1.1`, client certificates required
//! and checked against the CA with `verify_incoming`, not requested otherwise), the holder that
//! lets a reload swap it for new connections, and [`TlsListener`], the listener axum serves:
//! TCP connections are accepted as for HTTP, each handshake runs in its own task bounded by
//! `limits.https_handshake_timeout`, and only finished handshakes reach the HTTP server.
//!
//! * Every file is read when the listener starts and on every reload; a problem is an
//!   [`Error::Tls`] naming the setting, the file and what is wrong with it. A reload that fails
//!   keeps the configuration in use.
//! * A failed or timed-out handshake is logged at debug level and costs only its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ListenerTls, TlsVersion};
use crate::error::Error;

/// Which listener a TLS server configuration is for: names the settings in errors and sets
/// the ALPN protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The HTTPS API: ALPN `h2`, `http/1.1`.
    Https,
    /// The server RPC (`tls.internal_rpc`): no ALPN.
    InternalRpc,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Https => "HTTPS",
            Listener::InternalRpc => "RPC",
        }
    }

    fn stanza(self) -> &'static str {
        match self {
            Listener::Https => "https",
            Listener::InternalRpc => "internal_rpc",
        }
    }
}

/// Builds the rustls server configuration `settings` stand for, reading every file.
pub fn server_config(
    settings: &ListenerTls,
    listener: Listener,
) -> Result<rustls::ServerConfig, Error> {
    let tls = |m: String| Error::Tls(format!("{} TLS: {m}", listener.label()));
    let (Some(cert_file), Some(key_file)) = (&settings.cert_file, &settings.key_file) else {
        return Err(tls(format!(
            "no certificate: set tls.{}.cert_file and key_file (or tls.defaults.*)",
            listener.stanza()
        )));
    };
    let chain = muster_api::tls::read_certificates(cert_file, "cert_file").map_err(tls)?;
    let key = muster_api::tls::read_private_key(key_file, "key_file").map_err(tls)?;
    let roots =
        muster_api::tls::read_ca_roots(settings.ca_file.as_deref(), settings.ca_path.as_deref())
            .map_err(tls)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(settings.min_version))
        .map_err(|e| tls(format!("protocol versions: {e}")))?;
    let builder = match (settings.verify_incoming, roots) {
        (true, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls(format!("CA certificates for verify_incoming: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        (true, None) => {
            return Err(tls(
                "VerifyIncoming set but no CA certificates were provided".to_string(),
            ))
        }
        (false, _) => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        tls(format!(
            "cert_file {} and key_file {}: {e}",
            cert_file.display(),
            key_file.display()
        ))
    })?;
    if listener == Listener::Https {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(config)
}

/// The TLS versions from `min` up (rustls has 1.2 and 1.3).
pub fn protocol_versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS12_UP: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        TlsVersion::Tls12 => &TLS12_UP,
        TlsVersion::Tls13 => &TLS13,
    }
}

/// What new HTTPS connections are accepted with; swapped whole by a reload.
struct Current {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

/// The HTTPS listeners' TLS, shared by all of them; a reload replaces it
/// ([`ServerTls::prepare`], [`ServerTls::install`]).
pub struct ServerTls {
    current: ArcSwap<Current>,
}

impl ServerTls {
    /// Reads the files of `settings` and builds the configuration.
    pub fn load(settings: &ListenerTls, handshake_timeout: Duration) -> Result<ServerTls, Error> {
        Ok(ServerTls {
            current: ArcSwap::from_pointee(current(settings, handshake_timeout)?),
        })
    }

    /// Reads the files of `settings` for a reload, changing nothing yet: [`ServerTls::install`]
    /// puts the result in use.
    pub fn prepare(settings: &ListenerTls, handshake_timeout: Duration) -> Result<Prepared, Error> {
        current(settings, handshake_timeout).map(Prepared)
    }

    /// Uses `next` for every connection accepted from now on; connections already open keep
    /// the TLS they were accepted with.
    pub fn install(&self, next: Prepared) {
        self.current.store(Arc::new(next.0));
    }
}

/// A configuration read by [`ServerTls::prepare`], not in use yet.
pub struct Prepared(Current);

fn current(settings: &ListenerTls, handshake_timeout: Duration) -> Result<Current, Error> {
    Ok(Current {
        acceptor: TlsAcceptor::from(Arc::new(server_config(settings, Listener::Https)?)),
        handshake_timeout,
    })
}

/// A finished handshake, or `None` for one that failed (already logged).
type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// A TCP listener whose connections come out TLS-terminated: what axum serves for HTTPS.
pub struct TlsListener {
    tcp: TcpListener,
    tls: Arc<ServerTls>,
    handshakes: JoinSet<Handshake>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: Arc<ServerTls>) -> TlsListener {
        TlsListener {
            tcp,
            tls,
            handshakes: JoinSet::new(),
        }
    }

    /// Starts the handshake of one accepted connection in its own task.
    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let current = self.tls.current.load_full();
        self.handshakes.spawn(async move {
            let timeout = current.handshake_timeout;
            match tokio::time::timeout(timeout, current.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTPS: TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, ?timeout, "HTTPS: TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                // axum's TCP accept: it logs and backs off on errors such as EMFILE itself.
                (stream, peer) = axum::serve::Listener::accept(&mut self.tcp) => {
                    self.start_handshake(stream, peer);
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_certificate_is_an_error() {
        let e = server_config(&ListenerTls::default(), Listener::Https).expect_err("no cert");
        assert!(e.to_string().contains("no certificate"), "{e}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let settings = ListenerTls {
            cert_file: Some("/nonexistent/server.pem".into()),
            key_file: Some("/nonexistent/server.key".into()),
            ..ListenerTls::default()
        };
        let e = server_config(&settings, Listener::Https).expect_err("missing files");
        assert!(
            e.to_string()
                .starts_with("HTTPS TLS: cert_file /nonexistent/server.pem: No such file"),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("c.key");
        std::fs::write(&cert, "not a certificate\n").expect("write");
        std::fs::write(&key, "not a key\n").expect("write");
        let settings = ListenerTls {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..ListenerTls::default()
        };
        let e = server_config(&settings, Listener::Https).expect_err("garbage");
        assert!(
            e.to_string()
                .contains(&format!("cert_file {}: no PEM certificate", cert.display())),
            "{e}"
        );
    }
}
