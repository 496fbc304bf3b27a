//! HTTPS end to end: a throwaway CA and certificates made with the `openssl` CLI (the
//! workspace's one helper, `agent/tests/common/certs.rs`), the real
//! `muster agent -dev` (plain HTTP on loopback) behind a real nginx terminating TLS on three
//! ports — a certificate for 127.0.0.1 (HTTP/2 by ALPN), a certificate for the name
//! `muster.test` only, and mutual TLS (`ssl_verify_client on`) — then the real `muster` CLI and
//! `templater` through them.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Runs `program args` in `dir` to completion (bounded): (exit code, stdout+stderr).
fn run(program: &Path, args: &[&str], env: &[(&str, &str)], dir: &Path) -> (Option<i32>, String) {
    let log = dir.join("run.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    for var in [
        "CONSUL_HTTP_ADDR",
        "CONSUL_HTTP_SSL",
        "CONSUL_HTTP_SSL_VERIFY",
        "CONSUL_CACERT",
        "CONSUL_CAPATH",
        "CONSUL_CLIENT_CERT",
        "CONSUL_CLIENT_KEY",
        "CONSUL_TLS_SERVER_NAME",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut p = Proc::spawn(&name, &mut cmd, log);
    let status = p.wait_exit(WAIT);
    let out = p.output();
    assert!(
        status.is_some(),
        "{name} {args:?} did not exit within {WAIT:?}:\n{out}"
    );
    (status.and_then(|s| s.code()), out)
}

/// nginx terminating TLS in front of the agent's HTTP port.
struct TlsProxy {
    paths: NginxPaths,
    /// Certificate for 127.0.0.1, HTTP/2 offered.
    plain: u16,
    /// Certificate for `muster.test` only.
    named: u16,
    /// Mutual TLS: a client certificate signed by the CA is required.
    mutual: u16,
    _nginx: Proc,
}

impl TlsProxy {
    fn start(dir: &Path, pki: &Pki, agent: u16) -> TlsProxy {
        let paths = NginxPaths::new(dir);
        let ports = free_ports(2);
        let (plain, named, mutual) = (paths.port, ports[0], ports[1]);
        let temp = paths.prefix.join("temp").display().to_string();
        let server = |port: u16, cert: &str, extra: &str, http2: &str| {
            format!(
                "    server {{\n        listen 127.0.0.1:{port} ssl{http2};\n        \
                 ssl_certificate {cert};\n        ssl_certificate_key {key};\n        {extra}\n        \
                 location / {{ proxy_pass http://127.0.0.1:{agent}; }}\n    }}\n",
                cert = pki.path(&format!("{cert}.pem")),
                key = pki.path(&format!("{cert}.key")),
            )
        };
        let conf = format!(
            "worker_processes 1;\npid {pid};\nerror_log {error_log} info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    log_format tls '$server_port $server_protocol $status $ssl_client_verify';\n    \
             access_log {access_log} tls;\n    \
             client_body_temp_path {temp}/body;\n    proxy_temp_path {temp}/proxy;\n    \
             fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n    \
             scgi_temp_path {temp}/scgi;\n    proxy_http_version 1.1;\n    \
             proxy_buffering off;\n    proxy_read_timeout 120s;\n{a}{b}{c}}}\n",
            pid = paths.pid.display(),
            error_log = paths.error_log.display(),
            access_log = paths.prefix.join("logs/access.log").display(),
            a = server(plain, "server", "", " http2"),
            b = server(named, "named", "", ""),
            c = server(
                mutual,
                "server",
                &format!(
                    "ssl_client_certificate {};\n        ssl_verify_client on;",
                    pki.path("ca.pem")
                ),
                " http2"
            ),
        );
        std::fs::write(&paths.conf, conf).expect("nginx.conf");
        let nginx = start_nginx(&paths, dir);
        TlsProxy {
            paths,
            plain,
            named,
            mutual,
            _nginx: nginx,
        }
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.paths.prefix.join("logs/access.log")).unwrap_or_default()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    proxy: TlsProxy,
    _agent: Agent,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let agent = Agent::start(dir.path());
    let proxy = TlsProxy::start(dir.path(), &pki, agent.http);
    Setup {
        dir,
        pki,
        proxy,
        _agent: agent,
    }
}

impl Setup {
    fn muster(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        run(&muster_bin(), args, env, self.dir.path())
    }

    fn https(&self, port: u16) -> String {
        format!("https://127.0.0.1:{port}")
    }
}

#[test]
fn muster_cli_over_https() {
    let s = setup();
    let ca = s.pki.path("ca.pem");
    let addr = s.https(s.proxy.plain);

    let (code, out) = s.muster(
        &[
            "kv",
            "put",
            "-http-addr",
            &addr,
            "-ca-file",
            &ca,
            "app/color",
            "blue",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Success! Data written to: app/color"), "{out}");
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &addr,
            "-ca-file",
            &ca,
            "app/color",
        ],
        &[],
    );
    assert_eq!((code, out.trim()), (Some(0), "blue"), "{out}");
    // The CLI asked for h2 and nginx agreed (ALPN).
    assert!(
        s.proxy
            .access_log()
            .contains(&format!("{} HTTP/2.0 200", s.proxy.plain)),
        "{}",
        s.proxy.access_log()
    );

    // Consul's variables: CONSUL_HTTP_SSL turns a scheme-less address to https.
    let plain_addr = format!("127.0.0.1:{}", s.proxy.plain);
    let (code, out) = s.muster(
        &["kv", "get", "app/color"],
        &[
            ("CONSUL_HTTP_ADDR", &plain_addr),
            ("CONSUL_HTTP_SSL", "true"),
            ("CONSUL_CACERT", &ca),
        ],
    );
    assert_eq!((code, out.trim()), (Some(0), "blue"), "{out}");
    // A directory of CAs does as well.
    let ca_dir = s.dir.path().join("cas");
    std::fs::create_dir_all(&ca_dir).expect("cas");
    std::fs::copy(&ca, ca_dir.join("ca.pem")).expect("copy");
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &addr,
            "-ca-path",
            &ca_dir.display().to_string(),
            "app/color",
        ],
        &[],
    );
    assert_eq!((code, out.trim()), (Some(0), "blue"), "{out}");
    // Verification off: no CA needed.
    let (code, out) = s.muster(
        &["kv", "get", "-http-addr", &addr, "app/color"],
        &[("CONSUL_HTTP_SSL_VERIFY", "false")],
    );
    assert_eq!((code, out.trim()), (Some(0), "blue"), "{out}");

    // Another CA: refused, and the message says what to do.
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &addr,
            "-ca-file",
            &s.pki.path("other-ca.pem"),
            "app/color",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("tls: invalid peer certificate") && out.contains("-ca-file"),
        "{out}"
    );
    // No CA at all: the system's roots do not know this one (or there are none).
    let (code, out) = s.muster(&["kv", "get", "-http-addr", &addr, "app/color"], &[]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("certificate"), "{out}");
    // An unreadable CA file is named.
    let missing = s.dir.path().join("missing.pem").display().to_string();
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &addr,
            "-ca-file",
            &missing,
            "app/color",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("CA file {missing}: No such file")),
        "{out}"
    );

    // A certificate for another name: only with -tls-server-name.
    let named = s.https(s.proxy.named);
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &named,
            "-ca-file",
            &ca,
            "app/color",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("-tls-server-name"), "{out}");
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &named,
            "-ca-file",
            &ca,
            "-tls-server-name",
            "muster.test",
            "app/color",
        ],
        &[],
    );
    assert_eq!((code, out.trim()), (Some(0), "blue"), "{out}");

    // Mutual TLS: the client certificate opens the door; without it nginx refuses.
    let mutual = s.https(s.proxy.mutual);
    let (cert, key) = (s.pki.path("client.pem"), s.pki.path("client.key"));
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &mutual,
            "-ca-file",
            &ca,
            "-client-cert",
            &cert,
            "-client-key",
            &key,
            "app/color",
        ],
        &[],
    );
    assert_eq!((code, out.trim()), (Some(0), "blue"), "{out}");
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &mutual,
            "-ca-file",
            &ca,
            "app/color",
        ],
        &[
            ("CONSUL_CLIENT_CERT", cert.as_str()),
            ("CONSUL_CLIENT_KEY", key.as_str()),
        ],
    );
    assert_eq!((code, out.trim()), (Some(0), "blue"), "{out}");
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &mutual,
            "-ca-file",
            &ca,
            "app/color",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("400"), "{out}");
    // A key that is not the certificate's, and a certificate without a key.
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &mutual,
            "-ca-file",
            &ca,
            "-client-cert",
            &cert,
            "-client-key",
            &s.pki.path("server.key"),
            "app/color",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("client certificate {cert} and key")),
        "{out}"
    );
    let (code, out) = s.muster(
        &[
            "kv",
            "get",
            "-http-addr",
            &mutual,
            "-client-cert",
            &cert,
            "app/color",
        ],
        &[],
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("given without its key"), "{out}");
}

#[test]
fn templater_renders_over_mutual_tls() {
    let s = setup();
    let ca = s.pki.path("ca.pem");
    let (cert, key) = (s.pki.path("client.pem"), s.pki.path("client.key"));
    let (code, out) = s.muster(
        &[
            "kv",
            "put",
            "-http-addr",
            &s.https(s.proxy.plain),
            "-ca-file",
            &ca,
            "app/color",
            "green",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");

    let confdir = Confdir::new(s.dir.path());
    confdir.template("color.hbs", "color={{getv \"/app/color\"}}\n");
    let dest = s.dir.path().join("color.conf");
    confdir.resource(
        "color.toml",
        &format!(
            "[template]\nsrc = \"color.hbs\"\ndest = \"{}\"\nkeys = [\"/app\"]\n",
            dest.display()
        ),
    );
    let node = format!("127.0.0.1:{}", s.proxy.mutual);
    let base = [
        "-onetime",
        "-backend",
        "consul",
        "-confdir",
        &confdir.path.display().to_string(),
        "-node",
        &node,
    ]
    .map(String::from);
    let log = s.dir.path().join("templater.log");

    // confd's flags.
    let mut args = base.to_vec();
    args.extend(strings(&[
        "-scheme",
        "https",
        "-client-ca-keys",
        &ca,
        "-client-cert",
        &cert,
        "-client-key",
        &key,
    ]));
    let (code, out) = run_templater(&args, &[], log.clone());
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(&dest).expect("rendered"),
        "color=green\n"
    );
    assert!(
        s.proxy
            .access_log()
            .contains(&format!("{} HTTP/2.0 200 SUCCESS", s.proxy.mutual)),
        "templater negotiated h2 and presented its certificate: {}",
        s.proxy.access_log()
    );

    // confd's toml keys.
    std::fs::remove_file(&dest).expect("rm");
    let config = s.dir.path().join("templater.toml");
    std::fs::write(
        &config,
        format!(
            "scheme = \"https\"\nclient_cakeys = \"{ca}\"\nclient_cert = \"{cert}\"\n\
             client_key = \"{key}\"\n"
        ),
    )
    .expect("config file");
    let mut args = base.to_vec();
    args.extend(strings(&["-config-file", &config.display().to_string()]));
    let (code, out) = run_templater(&args, &[], log.clone());
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(&dest).expect("rendered"),
        "color=green\n"
    );

    // Without the client certificate the agent cannot be read: nothing is written.
    std::fs::remove_file(&dest).expect("rm");
    let mut args = base.to_vec();
    args.extend(strings(&["-scheme", "https", "-client-ca-keys", &ca]));
    let (code, out) = run_templater(&args, &[], log.clone());
    assert_ne!(code, Some(0), "{out}");
    assert!(!dest.exists());

    // A CA file that is not there is named.
    let mut args = base.to_vec();
    args.extend(strings(&[
        "-scheme",
        "https",
        "-client-ca-keys",
        "/nonexistent/ca.pem",
    ]));
    let (code, out) = run_templater(&args, &[], log);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("CA file /nonexistent/ca.pem"), "{out}");
}
