//! TLS for `https://` agent addresses: Consul's client settings (a CA file or directory, a client
//! certificate and key for mutual TLS, a server name, verification on/off) turned into the
//! rustls configuration (ring provider) that the client's reqwest uses as is.
//!
//! * A CA file (`-ca-file`, `CONSUL_CACERT`) or else a CA directory (`-ca-path`,
//!   `CONSUL_CAPATH`) replaces the system's roots, as in Consul; without either the system's
//!   roots (rustls-native-certs) are trusted.
//! * A server name (`-tls-server-name`, `CONSUL_TLS_SERVER_NAME`) is the name the agent's
//!   certificate must be valid for, whatever host the address names. The name sent in SNI stays
//!   the address's host (reqwest offers no way to change it; an IP address sends none).
//! * ALPN offers `h2` then `http/1.1`: the server picks.
//!
//! Every file problem is an [`Error::Tls`] naming the file and what is wrong with it.
//!
//! The PEM readers ([`read_certificates`], [`read_private_key`], [`read_ca_roots`]) are public:
//! the agent's HTTPS listener reads its certificate, key and CAs with them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::client::Error;

/// TLS settings for an `https://` agent address (Consul's `api.TLSConfig`). Ignored for a
/// plain `http://` address, as Consul's client does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust instead of the system's (`CONSUL_CACERT`).
    pub ca_file: Option<PathBuf>,
    /// A directory of PEM CA certificate files (`CONSUL_CAPATH`); unused when `ca_file` is set.
    pub ca_path: Option<PathBuf>,
    /// A PEM client certificate (chain) for mutual TLS (`CONSUL_CLIENT_CERT`).
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert` (`CONSUL_CLIENT_KEY`).
    pub client_key: Option<PathBuf>,
    /// The name the agent's certificate is verified against instead of the address's host
    /// (`CONSUL_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
    /// Accept any certificate (`CONSUL_HTTP_SSL_VERIFY=false`). For tests only.
    pub insecure_skip_verify: bool,
}

fn tls_error(what: &str, path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Tls(file_error(what, path, reason))
}

impl TlsConfig {
    /// The rustls client configuration these settings stand for: reads and checks every file.
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("TLS protocol versions: {e}")))?;
        let server_name = match self.server_name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => {
                Some(ServerName::try_from(name.to_string()).map_err(|_| {
                    Error::Tls(format!(
                        "TLS server name {name:?}: not a valid DNS name or IP address"
                    ))
                })?)
            }
            _ => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(AcceptAnyCertificate {
                provider: provider.clone(),
            })
        } else {
            let roots = self.roots()?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::Tls(format!("CA certificates: {e}")))?;
            match server_name {
                Some(name) => Arc::new(VerifyAsName {
                    inner: webpki,
                    name,
                }),
                None => webpki,
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates(cert, "client certificate").map_err(Error::Tls)?;
                let key_der = read_private_key(key, "client key").map_err(Error::Tls)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    Error::Tls(format!(
                        "client certificate {} and key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
            (Some(cert), None) => {
                return Err(tls_error(
                    "client certificate",
                    cert,
                    "given without its key (-client-key, CONSUL_CLIENT_KEY)",
                ))
            }
            (None, Some(key)) => {
                return Err(tls_error(
                    "client key",
                    key,
                    "given without its certificate (-client-cert, CONSUL_CLIENT_CERT)",
                ))
            }
            (None, None) => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The trusted roots: the CA file, else the CA directory, else the system's.
    fn roots(&self) -> Result<RootCertStore, Error> {
        if let Some(roots) =
            read_ca_roots(self.ca_file.as_deref(), self.ca_path.as_deref()).map_err(Error::Tls)?
        {
            return Ok(roots);
        }
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _unusable) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            let why = native
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::Tls(format!(
                "no system CA certificates found{}{why}: name the agent's CA with a CA file \
                 (-ca-file, CONSUL_CACERT) or directory (-ca-path, CONSUL_CAPATH)",
                if why.is_empty() { "" } else { ": " }
            )));
        }
        Ok(roots)
    }
}

// Reading PEM files for rustls, shared with the agent's HTTPS listener. Every error is a message
// naming the file (as `what path: reason`).

fn file_error(what: &str, path: &Path, reason: impl std::fmt::Display) -> String {
    format!("{what} {}: {reason}", path.display())
}

/// The CA certificates of a CA file, else of every file under a CA directory (as Consul's
/// `ca_file` and `ca_path`: the file wins); `None` when neither is given. A directory without
/// files, or any file without a usable certificate, is an error.
pub fn read_ca_roots(
    ca_file: Option<&Path>,
    ca_path: Option<&Path>,
) -> Result<Option<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    if let Some(file) = ca_file {
        add_roots(&mut roots, file, "CA file")?;
    } else if let Some(dir) = ca_path {
        let mut files = Vec::new();
        ca_path_files(dir, &mut files)?;
        if files.is_empty() {
            return Err(file_error("CA path", dir, "holds no certificate files"));
        }
        files.sort();
        for file in files {
            add_roots(&mut roots, &file, "CA path file")?;
        }
    } else {
        return Ok(None);
    }
    Ok(Some(roots))
}

/// Every regular file under `dir` (symbolic links followed, subdirectories walked), as
/// go-rootcerts' `LoadCAPath` reads a CA directory.
fn ca_path_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| file_error("CA path", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| file_error("CA path", dir, e))?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| file_error("CA path file", &path, e))?;
        if meta.is_dir() {
            ca_path_files(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| file_error(what, path, e))
}

/// Every certificate of a PEM file; at least one. `what` names the file's role in errors
/// ("CA file", "client certificate").
pub fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            what,
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ));
    }
    Ok(certs)
}

fn add_roots(roots: &mut RootCertStore, path: &Path, what: &str) -> Result<(), String> {
    for cert in read_certificates(path, what)? {
        roots
            .add(cert)
            .map_err(|e| file_error(what, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(())
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file. `what` names the file's role
/// in errors ("client key").
pub fn read_private_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    let data = read_file(path, what)?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        pem::Error::NoItemsFound => file_error(
            what,
            path,
            "no PEM private key (-----BEGIN PRIVATE KEY-----) in it",
        ),
        other => file_error(what, path, format!("bad PEM: {other}")),
    })
}

/// Verifies the agent's certificate as valid for a configured name rather than the address's
/// host (Go's `tls.Config.ServerName`).
#[derive(Debug)]
struct VerifyAsName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAsName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
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

/// `CONSUL_HTTP_SSL_VERIFY=false` here, and the agent's checks' `tls_skip_verify` (Go's
/// `InsecureSkipVerify`): any certificate and name is accepted, but the handshake's signatures
/// are still checked against the certificate the server sent, so the session is at least with
/// that certificate's owner.
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyCertificate {
    pub fn new(provider: Arc<CryptoProvider>) -> AcceptAnyCertificate {
        AcceptAnyCertificate { provider }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &TlsConfig) -> String {
        match config.rustls_config() {
            Ok(_) => panic!("{config:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn with_ca(path: &Path) -> TlsConfig {
        TlsConfig {
            ca_file: Some(path.to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn unreadable_or_empty_ca_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let text = err(&with_ca(&missing));
        assert!(
            text.starts_with(&format!(
                "Invalid TLS configuration: CA file {}: No such file",
                missing.display()
            )),
            "{text}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let text = err(&with_ca(&garbage));
        assert!(
            text.contains(&format!(
                "CA file {}: no PEM certificate",
                garbage.display()
            )),
            "{text}"
        );

        let truncated = dir.path().join("truncated.pem");
        std::fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").expect("write");
        let text = err(&with_ca(&truncated));
        assert!(
            text.contains(&format!("CA file {}: bad PEM", truncated.display())),
            "{text}"
        );

        // Well-formed PEM around bytes that are no certificate.
        let not_der = dir.path().join("not-der.pem");
        std::fs::write(
            &not_der,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let text = err(&with_ca(&not_der));
        assert!(
            text.contains(&format!(
                "CA file {}: not a usable CA certificate",
                not_der.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn ca_path_problems_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = TlsConfig {
            ca_path: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert!(
            err(&config).contains("holds no certificate files"),
            "{}",
            err(&config)
        );
        let bad = dir.path().join("sub").join("bad.crt");
        std::fs::create_dir_all(bad.parent().expect("parent")).expect("mkdir");
        std::fs::write(&bad, "junk").expect("write");
        let text = err(&config);
        assert!(
            text.contains(&format!(
                "CA path file {}: no PEM certificate",
                bad.display()
            )),
            "{text}"
        );
        let config = TlsConfig {
            ca_path: Some(dir.path().join("nope")),
            ..Default::default()
        };
        assert!(err(&config).contains("CA path "), "{}", err(&config));
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_key_its_certificate() {
        let config = TlsConfig {
            insecure_skip_verify: true,
            client_cert: Some("/c.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            err(&config),
            "Invalid TLS configuration: client certificate /c.pem: given without its key \
             (-client-key, CONSUL_CLIENT_KEY)"
        );
        let config = TlsConfig {
            insecure_skip_verify: true,
            client_key: Some("/c.key".into()),
            ..Default::default()
        };
        assert_eq!(
            err(&config),
            "Invalid TLS configuration: client key /c.key: given without its certificate \
             (-client-cert, CONSUL_CLIENT_CERT)"
        );
    }

    #[test]
    fn client_files_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("c.key");
        let config = TlsConfig {
            insecure_skip_verify: true,
            client_cert: Some(cert.clone()),
            client_key: Some(key.clone()),
            ..Default::default()
        };
        let text = err(&config);
        assert!(
            text.contains(&format!(
                "client certificate {}: No such file",
                cert.display()
            )),
            "{text}"
        );
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let text = err(&config);
        assert!(
            text.contains(&format!("client key {}: No such file", key.display())),
            "{text}"
        );
        // A certificate where the key should be.
        std::fs::copy(&cert, &key).expect("copy");
        let text = err(&config);
        assert!(
            text.contains(&format!("client key {}: no PEM private key", key.display())),
            "{text}"
        );
    }

    #[test]
    fn bad_server_names_are_refused() {
        let config = TlsConfig {
            server_name: Some("not a name!".into()),
            ..Default::default()
        };
        assert_eq!(
            err(&config),
            "Invalid TLS configuration: TLS server name \"not a name!\": not a valid DNS name \
             or IP address"
        );
    }

    #[test]
    fn skipping_verification_needs_no_roots_and_offers_h2() {
        let config = TlsConfig {
            insecure_skip_verify: true,
            server_name: Some("agent.example".into()),
            ..Default::default()
        }
        .rustls_config()
        .expect("config");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
