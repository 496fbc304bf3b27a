//! The HTTP API over HTTPS, end to end: the real `muster agent` with certificates made by the
//! `openssl` CLI (`common/certs.rs`), spoken to by curl (HTTP/1.1 and HTTP/2 by ALPN), the
//! muster CLI (`-http-addr https://...`, `-ca-file`, client certificates) and the harness's
//! own HTTPS client: serving, `verify_incoming`, HTTPS only, startup errors, reload.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Bound of one curl run (its own `--max-time` is shorter).
const CURL_TIMEOUT: Duration = Duration::from_secs(20);

/// What one curl run gave.
#[derive(Debug)]
struct Curl {
    code: Option<i32>,
    stdout: String,
    /// Read through `Debug` in failure messages.
    #[allow(dead_code)]
    stderr: String,
}

impl Curl {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `curl -sS --max-time 10 ARGS` (bounded; killed when it outlives [`CURL_TIMEOUT`]).
async fn curl(args: &[&str]) -> Curl {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--noproxy", "*"])
        .args(args)
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .kill_on_drop(true);
    let out = match tokio::time::timeout(CURL_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("running curl {args:?} (is curl installed?): {e}"),
        Err(_) => panic!("curl {args:?} did not finish within {CURL_TIMEOUT:?}"),
    };
    Curl {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `GET https://127.0.0.1:PORT/v1/status/leader` with `extra` curl flags; the body and the HTTP
/// version curl used (`-w`), or curl's failure.
async fn leader_over_https(port: u16, extra: &[&str]) -> Result<(String, String), Curl> {
    let url = format!("https://127.0.0.1:{port}/v1/status/leader");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["-w", "\n%{http_version}", &url]);
    let out = curl(&args).await;
    if !out.ok() {
        return Err(out);
    }
    match out.stdout.rsplit_once('\n') {
        Some((body, version)) => Ok((body.to_string(), version.to_string())),
        None => Err(out),
    }
}

/// An HCL config serving `cert`/`key` (files of `pki`) on HTTPS, with `extra` HCL inside the
/// `tls.https` block.
fn tls_hcl(pki: &Pki, cert: &str, key: &str, extra: &str) -> String {
    format!(
        "tls {{\n  defaults {{\n    ca_file = \"{ca}\"\n  }}\n  https {{\n    cert_file = \"{cert}\"\n    \
         key_file = \"{key}\"\n    {extra}\n  }}\n}}\nlimits {{\n  https_handshake_timeout = \"1s\"\n}}\n",
        ca = pki.path("ca.pem"),
        cert = pki.path(cert),
        key = pki.path(key),
    )
}

fn pki(dir: &Path) -> Pki {
    Pki::new(dir)
}

#[tokio::test]
async fn https_serves_the_api_with_h2_by_alpn_and_the_cli_speaks_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = pki(tmp.path());
    let ca = pki.path("ca.pem");
    let agent = AgentBuilder::dev()
        .https(&ca)
        .config_file("tls.hcl", &tls_hcl(&pki, "server.pem", "server.key", ""))
        .start()
        .await;
    let port = agent.https_port.expect("https port");
    let leader = format!("\"{}\"", agent.server_addr());

    // curl: ALPN picks HTTP/2 when offered; HTTP/1.1 works too.
    for (flags, version) in [
        (&["--cacert", &ca][..], "2"),
        (&["--cacert", &ca, "--http2"][..], "2"),
        (&["--cacert", &ca, "--http1.1"][..], "1.1"),
    ] {
        match leader_over_https(port, flags).await {
            Ok((body, v)) => assert_eq!((body.as_str(), v.as_str()), (leader.as_str(), version)),
            Err(out) => panic!("curl {flags:?}: {out:?}\n{}", agent.report()),
        }
    }
    // Not a CA curl knows: refused, so curl really checked the agent's certificate.
    let other = pki.path("other-ca.pem");
    assert!(leader_over_https(port, &["--cacert", &other])
        .await
        .is_err());

    // The harness's own client (muster-api's TLS) and /v1/agent/self.
    let me = agent.get("/v1/agent/self").await;
    me.expect_status(200);
    let config = &me.json()["DebugConfig"];
    assert_eq!(config["HTTPSPort"], Value::from(port));
    assert_eq!(config["HTTPPort"], Value::from(agent.ports.http));
    // Plain HTTP is still served beside it.
    let plain = send(
        &http_client(),
        "GET",
        &format!("http://127.0.0.1:{}/v1/status/leader", agent.ports.http),
        None,
        REQUEST_TIMEOUT,
    )
    .await
    .expect("plain HTTP");
    assert_eq!(plain.status, 200);

    // The CLI: `-http-addr https://127.0.0.1:PORT -ca-file ca.pem` (the harness adds both).
    let out = agent.cli(&["kv", "put", "app/color", "blue"]).await;
    out.expect_code(0);
    assert!(
        out.stdout.contains("Success! Data written to: app/color"),
        "{out}"
    );
    let out = agent.cli(&["kv", "get", "app/color"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "blue", "{out}");

    // A connection that never starts its handshake is closed after
    // limits.https_handshake_timeout (1s here), and serves nobody meanwhile.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // Garbage instead of a ClientHello: that handshake fails at once.
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    garbage
        .write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // Neither disturbs anyone else.
    let (body, _) = leader_over_https(port, &["--cacert", &ca])
        .await
        .unwrap_or_else(|out| panic!("curl beside a stalled handshake: {out:?}"));
    assert_eq!(body, leader);
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was not closed: {closed:?}"
    );
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the garbage connection was not closed");
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "plain HTTP was answered on the HTTPS port: {answer:?}"
    );
}

#[tokio::test]
async fn verify_incoming_requires_a_client_certificate_signed_by_the_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = pki(tmp.path());
    pki.leaf_signed_by("other-ca", "stranger", "clientAuth", None);
    let ca = pki.path("ca.pem");
    let port = free_ports(1)[0];
    // Plain HTTP stays on for the harness; HTTPS requires client certificates.
    let agent = AgentBuilder::dev()
        .config_file(
            "tls.hcl",
            &tls_hcl(&pki, "server.pem", "server.key", "verify_incoming = true"),
        )
        .args(["-https-port", &port.to_string()])
        .start()
        .await;
    agent.kv_put("app/color", "red").await;
    let url = format!("https://127.0.0.1:{port}/v1/kv/app/color?raw");

    let without = curl(&["--cacert", &ca, &url]).await;
    assert!(
        !without.ok(),
        "answered without a client certificate: {without:?}"
    );
    assert!(without.stdout.is_empty(), "{without:?}");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let with = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]).await;
    assert!(with.ok(), "{with:?}\n{}", agent.report());
    assert_eq!(with.stdout, "red");
    let (scert, skey) = (pki.path("stranger.pem"), pki.path("stranger.key"));
    let stranger = curl(&["--cacert", &ca, "--cert", &scert, "--key", &skey, &url]).await;
    assert!(
        !stranger.ok() && stranger.stdout.is_empty(),
        "a certificate of another CA was accepted: {stranger:?}"
    );

    // The CLI with its client certificate flags.
    let addr = format!("https://127.0.0.1:{port}");
    let out = run_muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &addr,
            "-ca-file",
            &ca,
            "-client-cert",
            &cert,
            "-client-key",
            &key,
            "app/color",
        ]
        .map(String::from),
        None,
        CLI_TIMEOUT,
    )
    .await;
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "red", "{out}");
}

#[tokio::test]
async fn https_only_with_tls_1_3_at_least_and_watches_over_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = pki(tmp.path());
    let ca = pki.path("ca.pem");
    let seen = tmp.path().join("watch.out");
    let watch = serde_json::json!({"watches": [
        {"type": "key", "key": "only/tls", "handler": format!("cat >> {}", seen.display())}
    ]});
    let agent = AgentBuilder::dev()
        .https_only(&ca)
        .config_file("watch.json", &watch.to_string())
        .config_file(
            "tls.hcl",
            &tls_hcl(
                &pki,
                "server.pem",
                "server.key",
                "tls_min_version = \"TLSv1_3\"",
            ),
        )
        .start()
        .await;
    let port = agent.https_port.expect("https port");
    // Nothing listens on the HTTP port.
    let plain = tokio::net::TcpStream::connect(("127.0.0.1", agent.ports.http)).await;
    assert!(
        plain.is_err(),
        "something listens on the disabled HTTP port"
    );
    let me = agent.get("/v1/agent/self").await;
    let config = &me.json()["DebugConfig"];
    assert_eq!(config["HTTPPort"], Value::from(-1));
    assert_eq!(config["HTTPSPort"], Value::from(port));

    let out = agent.cli(&["kv", "put", "only/tls", "yes"]).await;
    out.expect_code(0);
    assert_eq!(agent.kv_value("only/tls").await, Some(b"yes".to_vec()));
    // The agent's own watches query it over HTTPS.
    let fired = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&seen).unwrap_or_default();
        text.contains("\"Key\":\"only/tls\"").then_some(text)
    })
    .await;
    assert!(
        fired.is_some(),
        "the watch never saw the key\n{}",
        agent.report()
    );

    // TLS 1.2 is refused, TLS 1.3 accepted.
    assert!(
        leader_over_https(port, &["--cacert", &ca, "--tls-max", "1.2"])
            .await
            .is_err()
    );
    assert!(leader_over_https(port, &["--cacert", &ca, "--tlsv1.3"])
        .await
        .is_ok());
}

/// `muster agent -dev` with `args` on free ports: must exit 1 with `want` in its output.
async fn refused(args: &[&str], want: &str) {
    let mut full: Vec<String> = vec!["agent".into(), "-dev".into()];
    full.extend(Ports::free().args());
    full.extend(args.iter().map(|s| s.to_string()));
    let out = run_muster(&full, None, CLI_TIMEOUT).await;
    out.expect_code(1);
    assert!(out.stderr.contains(want), "{want:?} not in:\n{out}");
}

#[tokio::test]
async fn an_https_port_needs_a_usable_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = pki(tmp.path());
    let port = free_ports(1)[0].to_string();
    let hcl = |cert: &str, key: &str| {
        format!(
            "tls {{\n  https {{\n    cert_file = \"{cert}\"\n    key_file = \"{key}\"\n  }}\n}}\n"
        )
    };
    refused(
        &["-https-port", &port],
        &format!(
            "==> HTTPS port {port} is set (ports.https, -https-port) but no TLS certificate is"
        ),
    )
    .await;
    let missing = tmp.path().join("missing.pem").display().to_string();
    refused(
        &[
            "-https-port",
            &port,
            "-hcl",
            &hcl(&missing, &pki.path("server.key")),
        ],
        &format!("==> HTTPS TLS: cert_file {missing}: No such file or directory"),
    )
    .await;
    // A certificate where the key should be.
    let cert = pki.path("server.pem");
    refused(
        &["-https-port", &port, "-hcl", &hcl(&cert, &cert)],
        &format!("HTTPS TLS: key_file {cert}: no PEM private key"),
    )
    .await;
    // The key of another certificate.
    refused(
        &[
            "-https-port",
            &port,
            "-hcl",
            &hcl(&cert, &pki.path("client.key")),
        ],
        &format!(
            "HTTPS TLS: cert_file {cert} and key_file {}: ",
            pki.path("client.key")
        ),
    )
    .await;
    refused(
        &[
            "-https-port",
            &port,
            "-hcl",
            "tls {\n  https {\n    verify_incoming = true\n  }\n}\n",
        ],
        "VerifyIncoming set but no CA certificates were provided",
    )
    .await;
    refused(
        &["-hcl", "tls_min_version = \"tls11\""],
        "tls_min_version: TLSv1_1 is not supported",
    )
    .await;
}

#[tokio::test]
async fn reload_serves_new_certificate_files_and_keeps_the_old_on_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = pki(tmp.path());
    pki.leaf_signed_by("other-ca", "server2", "serverAuth", Some("IP:127.0.0.1"));
    let (ca, other) = (pki.path("ca.pem"), pki.path("other-ca.pem"));
    let install = |name: &str| {
        for ext in ["pem", "key"] {
            std::fs::copy(
                pki.dir.join(format!("{name}.{ext}")),
                pki.dir.join(format!("live.{ext}")),
            )
            .expect("copy certificate files");
        }
    };
    install("server");
    let port = free_ports(1)[0];
    let mut agent = AgentBuilder::dev()
        .config_file("tls.hcl", &tls_hcl(&pki, "live.pem", "live.key", ""))
        .args(["-https-port", &port.to_string()])
        .start()
        .await;
    assert!(leader_over_https(port, &["--cacert", &ca]).await.is_ok());
    assert!(leader_over_https(port, &["--cacert", &other])
        .await
        .is_err());

    // New files, `muster reload`: new connections get the new certificate.
    install("server2");
    let out = agent.cli(&["reload"]).await;
    out.expect_code(0);
    assert!(
        out.stdout.contains("Configuration reload triggered"),
        "{out}"
    );
    assert!(
        leader_over_https(port, &["--cacert", &other]).await.is_ok(),
        "{}",
        agent.report()
    );
    assert!(leader_over_https(port, &["--cacert", &ca]).await.is_err());

    // A broken key: the reload fails, names the file, and the certificate in use stays.
    let live_key = pki.path("live.key");
    std::fs::write(&live_key, "not a key\n").expect("write");
    let r = agent.put("/v1/agent/reload", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text()
            .contains(&format!("key_file {live_key}: no PEM private key")),
        "{}",
        r.text()
    );
    assert!(leader_over_https(port, &["--cacert", &other]).await.is_ok());

    // SIGHUP reloads as well.
    install("server");
    agent.signal(nix::sys::signal::Signal::SIGHUP);
    let back = eventually(Duration::from_secs(10), || async {
        leader_over_https(port, &["--cacert", &ca]).await.ok()
    })
    .await;
    if back.is_none() {
        agent.fail("SIGHUP did not bring back the first certificate");
    }
}
