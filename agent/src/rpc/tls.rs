//! TLS of the server RPC (Consul's `tls.internal_rpc`), both sides.
//!
//! * [`ServerTls`]: a server with a certificate accepts TLS on the RPC port, beside plaintext.
//!   The two are told apart by the first byte: a TLS handshake record starts with `0x16`,
//!   while a plain connection starts with the high byte of a frame length, at most
//!   [`super::MAX_FRAME`] (`0x1000_0000`), so at most `0x10`. With `verify_incoming` plaintext
//!   is refused and the client must present a certificate signed by the CA.
//! * [`ClientTls`]: with `verify_outgoing` every connection of the [`super::Pool`] is TLS, the
//!   server's certificate checked against the CA, and with `verify_server_hostname` also for
//!   the name `server.<datacenter>.<domain>`; `cert_file`/`key_file` are presented as the
//!   client certificate when set.
//!
//! The files are read once, when the agent starts (a reload does not change them).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{ListenerTls, RpcTls};
use crate::error::Error;
use crate::http::tls::{protocol_versions, server_config, Listener};

/// The first byte of a TLS connection (a handshake record).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// What the RPC listener accepts TLS with.
pub struct ServerTls {
    pub(super) acceptor: TlsAcceptor,
    /// Refuse plaintext (and TLS without a client certificate signed by the CA).
    pub(super) verify_incoming: bool,
    /// Bound of the first byte and of the handshake.
    pub(super) handshake_timeout: Duration,
}

impl ServerTls {
    /// The listener's TLS when `settings` has a certificate, reading the files; `None` (plain
    /// TCP only) otherwise.
    pub fn load(
        settings: &ListenerTls,
        handshake_timeout: Duration,
    ) -> Result<Option<ServerTls>, Error> {
        if settings.cert_file.is_none() && settings.key_file.is_none() && !settings.verify_incoming
        {
            return Ok(None);
        }
        let config = server_config(settings, Listener::InternalRpc)?;
        Ok(Some(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            verify_incoming: settings.verify_incoming,
            handshake_timeout,
        }))
    }
}

/// What the [`super::Pool`] connects with when `verify_outgoing` is set.
pub struct ClientTls {
    pub(super) connector: TlsConnector,
    /// `server.<datacenter>.<domain>`: the name checked with `verify_server_hostname` (and sent
    /// as SNI either way).
    pub(super) server_name: ServerName<'static>,
}

impl ClientTls {
    /// The calling side's TLS when `settings.verify_outgoing`, reading the files; `None`
    /// (plain TCP) otherwise.
    pub fn load(
        settings: &RpcTls,
        datacenter: &str,
        domain: &str,
    ) -> Result<Option<ClientTls>, Error> {
        if !settings.verify_outgoing {
            return Ok(None);
        }
        let tls = |m: String| Error::Tls(format!("RPC TLS: {m}"));
        let l = &settings.listener;
        let name = format!("server.{datacenter}.{}", domain.trim_end_matches('.'));
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| tls(format!("server name {name:?}: {e}")))?;
        let roots = muster_api::tls::read_ca_roots(l.ca_file.as_deref(), l.ca_path.as_deref())
            .map_err(tls)?
            .ok_or_else(|| tls("VerifyOutgoing set but no CA certificates were provided".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| tls(format!("CA certificates for verify_outgoing: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if settings.verify_server_hostname {
            webpki
        } else {
            Arc::new(ChainOnly { inner: webpki })
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(protocol_versions(l.min_version))
            .map_err(|e| tls(format!("protocol versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&l.cert_file, &l.key_file) {
            (Some(cert), Some(key)) => {
                let chain = muster_api::tls::read_certificates(cert, "cert_file").map_err(tls)?;
                let key_der = muster_api::tls::read_private_key(key, "key_file").map_err(tls)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    tls(format!(
                        "cert_file {} and key_file {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        }))
    }
}

/// `verify_outgoing` without `verify_server_hostname`: the server's chain must lead to the CA
/// (and every other check of webpki holds: validity, key usage, the handshake's signatures),
/// but the certificate may be for any name, as Consul's Go TLS with `InsecureSkipVerify` and
/// its own chain verification.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name last, after the chain, so a name error means all else held.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
