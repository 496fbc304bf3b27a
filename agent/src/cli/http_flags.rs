//! The HTTP flags every agent-talking command shares (`-http-addr`, `-token`, `-token-file`,
//! the TLS flags `-ca-file`, `-ca-path`, `-client-cert`, `-client-key`, `-tls-server-name`,
//! `-datacenter`, `-stale`), their Consul help texts, and how they become a [`Client`] and
//! [`QueryOptions`]. Flags win over the environment (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`,
//! `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_HTTP_SSL`, `CONSUL_HTTP_SSL_VERIFY`, `CONSUL_CACERT`,
//! `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`), which
//! wins over the default `127.0.0.1:8500`.

use std::path::PathBuf;

use muster_api::{Client, ClientConfig, QueryOptions};

use super::{Flag, FlagKind, Parsed};

/// Client flags: where the agent is, which token to send and how to reach it over TLS.
pub fn client_flags() -> Vec<Flag> {
    vec![
        Flag {
            name: "http-addr",
            kind: FlagKind::String,
            example: "address",
            usage: "The address and port of the Muster HTTP agent. The value can be an IP \
                    address or DNS address, but it must also include the port. This can also \
                    be specified via the CONSUL_HTTP_ADDR environment variable. The default \
                    value is http://127.0.0.1:8500.",
            http: true,
        },
        Flag {
            name: "token",
            kind: FlagKind::String,
            example: "value",
            usage: "ACL token to use in the request. This can also be specified via the \
                    CONSUL_HTTP_TOKEN environment variable. If unspecified, the query will \
                    default to the token of the agent at the HTTP address.",
            http: true,
        },
        Flag {
            name: "token-file",
            kind: FlagKind::String,
            example: "value",
            usage: "File containing the ACL token to use in the request instead of one \
                    specified via the -token argument or CONSUL_HTTP_TOKEN environment \
                    variable. This can also be specified via the CONSUL_HTTP_TOKEN_FILE \
                    environment variable.",
            http: true,
        },
        Flag {
            name: "ca-file",
            kind: FlagKind::String,
            example: "value",
            usage: "Path to a CA file to use for TLS when communicating with Muster. This can \
                    also be specified via the CONSUL_CACERT environment variable.",
            http: true,
        },
        Flag {
            name: "ca-path",
            kind: FlagKind::String,
            example: "value",
            usage: "Path to a directory of CA certificates to use for TLS when communicating \
                    with Muster. This can also be specified via the CONSUL_CAPATH environment \
                    variable.",
            http: true,
        },
        Flag {
            name: "client-cert",
            kind: FlagKind::String,
            example: "value",
            usage: "Path to a client cert file to use for TLS when 'verify_incoming' is \
                    enabled. This can also be specified via the CONSUL_CLIENT_CERT environment \
                    variable.",
            http: true,
        },
        Flag {
            name: "client-key",
            kind: FlagKind::String,
            example: "value",
            usage: "Path to a client key file to use for TLS when 'verify_incoming' is \
                    enabled. This can also be specified via the CONSUL_CLIENT_KEY environment \
                    variable.",
            http: true,
        },
        Flag {
            name: "tls-server-name",
            kind: FlagKind::String,
            example: "value",
            usage: "The server name the agent's TLS certificate is verified against, instead \
                    of the host of -http-addr (the SNI sent stays that host). This can also be \
                    specified via the CONSUL_TLS_SERVER_NAME environment variable.",
            http: true,
        },
    ]
}

/// Server flags: which datacenter answers, and whether a non-leader may.
pub fn server_flags() -> Vec<Flag> {
    vec![
        Flag {
            name: "datacenter",
            kind: FlagKind::String,
            example: "value",
            usage: "Name of the datacenter to query. If unspecified, this will default to the \
                    datacenter of the queried agent.",
            http: true,
        },
        Flag {
            name: "stale",
            kind: FlagKind::Bool,
            example: "",
            usage: "Permit any server (non-leader) to respond to this request. This allows \
                    for lower latency and higher throughput, but can result in stale data. \
                    This option has no effect on non-read operations. The default value is \
                    false.",
            http: true,
        },
    ]
}

/// All HTTP flags.
pub fn all() -> Vec<Flag> {
    let mut flags = client_flags();
    flags.extend(server_flags());
    flags
}

/// The HTTP flags as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpFlags {
    pub address: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub ca_file: Option<String>,
    pub ca_path: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub tls_server_name: Option<String>,
    pub datacenter: Option<String>,
    pub stale: bool,
}

impl HttpFlags {
    pub fn from_parsed(p: &Parsed) -> Self {
        HttpFlags {
            address: p.string("http-addr"),
            token: p.string("token"),
            token_file: p.string("token-file"),
            ca_file: p.string("ca-file"),
            ca_path: p.string("ca-path"),
            client_cert: p.string("client-cert"),
            client_key: p.string("client-key"),
            tls_server_name: p.string("tls-server-name"),
            datacenter: p.string("datacenter"),
            stale: p.flag("stale"),
        }
    }

    /// The client configuration: the environment (as `lookup` reads it), then the flags. Fails
    /// on an environment variable that cannot be used (`CONSUL_HTTP_SSL=maybe`).
    pub fn config(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, muster_api::Error> {
        let mut config = ClientConfig::from_lookup(lookup)?;
        if let Some(addr) = self.address.as_deref().filter(|a| !a.is_empty()) {
            config.address = addr.to_string();
        }
        if let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) {
            config.token = Some(token.to_string());
        }
        if let Some(file) = self.token_file.as_deref().filter(|f| !f.is_empty()) {
            config.token_file = Some(PathBuf::from(file));
        }
        if let Some(dc) = self.datacenter.as_deref().filter(|d| !d.is_empty()) {
            config.datacenter = Some(dc.to_string());
        }
        let path =
            |flag: &Option<String>| flag.as_deref().filter(|f| !f.is_empty()).map(PathBuf::from);
        let tls = &mut config.tls;
        if let Some(file) = path(&self.ca_file) {
            tls.ca_file = Some(file);
        }
        if let Some(dir) = path(&self.ca_path) {
            tls.ca_path = Some(dir);
            // A directory named on the command line is used even when CONSUL_CACERT is set
            // (a CA file wins over a CA directory given the same way).
            if path(&self.ca_file).is_none() {
                tls.ca_file = None;
            }
        }
        if let Some(file) = path(&self.client_cert) {
            tls.client_cert = Some(file);
        }
        if let Some(file) = path(&self.client_key) {
            tls.client_key = Some(file);
        }
        if let Some(name) = self.tls_server_name.as_deref().filter(|n| !n.is_empty()) {
            tls.server_name = Some(name.to_string());
        }
        Ok(config)
    }

    /// A client for the agent these flags (and the environment) name.
    pub fn client(&self) -> Result<Client, muster_api::Error> {
        Client::new(self.config(|name| std::env::var(name).ok())?)
    }

    /// Read options: `-stale`.
    pub fn query_options(&self) -> QueryOptions {
        QueryOptions {
            stale: self.stale,
            ..Default::default()
        }
    }
}

/// The client `parsed`'s HTTP flags describe, with Consul's message on stderr when they are
/// unusable (`None`: the command exits 1).
pub fn connect(
    parsed: &super::Parsed,
    ui: &mut super::Ui<'_>,
) -> Option<(muster_api::Client, HttpFlags)> {
    let flags = HttpFlags::from_parsed(parsed);
    match flags.client() {
        Ok(c) => Some((c, flags)),
        Err(e) => {
            ui.error(&format!("Error connecting to Consul agent: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Spec;
    use super::*;

    fn parse(args: &[&str]) -> HttpFlags {
        let spec = Spec {
            name: "t",
            help: "",
            flags: all(),
        };
        let p = spec
            .try_parse(args.iter().map(|s| s.to_string()).collect())
            .expect("parse");
        HttpFlags::from_parsed(&p)
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "CONSUL_HTTP_ADDR" => Some("10.0.0.1:8500".into()),
            "CONSUL_HTTP_TOKEN" => Some("env-token".into()),
            _ => None,
        }
    }

    #[test]
    fn flags_win_over_env() {
        let flags = parse(&[
            "-http-addr=http://127.0.0.2:18500",
            "-token",
            "flag-token",
            "-datacenter=dc2",
            "-stale",
        ]);
        let config = flags.config(env).expect("config");
        assert_eq!(config.address, "http://127.0.0.2:18500");
        assert_eq!(config.token.as_deref(), Some("flag-token"));
        assert_eq!(config.datacenter.as_deref(), Some("dc2"));
        assert!(flags.query_options().stale);
    }

    #[test]
    fn env_then_default() {
        let config = parse(&[]).config(env).expect("config");
        assert_eq!(config.address, "10.0.0.1:8500");
        assert_eq!(config.token.as_deref(), Some("env-token"));
        let config = parse(&[]).config(|_| None).expect("config");
        assert_eq!(config.address, "127.0.0.1:8500");
        assert_eq!(config.token, None);
        assert!(!parse(&[]).query_options().stale);
    }

    fn tls_env(name: &str) -> Option<String> {
        match name {
            "CONSUL_HTTP_ADDR" => Some("127.0.0.1:8501".into()),
            "CONSUL_HTTP_SSL" => Some("true".into()),
            "CONSUL_CACERT" => Some("/env/ca.pem".into()),
            "CONSUL_CLIENT_CERT" => Some("/env/cli.pem".into()),
            "CONSUL_CLIENT_KEY" => Some("/env/cli.key".into()),
            "CONSUL_TLS_SERVER_NAME" => Some("env.example".into()),
            _ => None,
        }
    }

    #[test]
    fn tls_flags_win_over_env() {
        let config = parse(&[]).config(tls_env).expect("config");
        assert!(config.https);
        assert_eq!(config.tls.ca_file, Some(PathBuf::from("/env/ca.pem")));
        assert_eq!(config.tls.server_name.as_deref(), Some("env.example"));
        assert_eq!(
            config.base_url().expect("url").as_str(),
            "https://127.0.0.1:8501/"
        );

        let flags = parse(&[
            "-http-addr",
            "https://127.0.0.1:9501",
            "-ca-file=/flag/ca.pem",
            "-client-cert",
            "/flag/cli.pem",
            "-client-key",
            "/flag/cli.key",
            "-tls-server-name=server.dc1.consul",
        ]);
        let config = flags.config(tls_env).expect("config");
        assert_eq!(config.address, "https://127.0.0.1:9501");
        assert_eq!(config.tls.ca_file, Some(PathBuf::from("/flag/ca.pem")));
        assert_eq!(config.tls.ca_path, None);
        assert_eq!(config.tls.client_cert, Some(PathBuf::from("/flag/cli.pem")));
        assert_eq!(config.tls.client_key, Some(PathBuf::from("/flag/cli.key")));
        assert_eq!(config.tls.server_name.as_deref(), Some("server.dc1.consul"));
        assert!(!config.tls.insecure_skip_verify);

        // -ca-path on the command line beats CONSUL_CACERT.
        let config = parse(&["-ca-path", "/flag/cas"])
            .config(tls_env)
            .expect("config");
        assert_eq!(config.tls.ca_path, Some(PathBuf::from("/flag/cas")));
        assert_eq!(config.tls.ca_file, None);
    }

    #[test]
    fn bad_env_and_tls_files_are_errors() {
        let e = parse(&[])
            .config(|n| (n == "CONSUL_HTTP_SSL_VERIFY").then(|| "nope".to_string()))
            .expect_err("bad bool");
        assert!(e.to_string().contains("CONSUL_HTTP_SSL_VERIFY"), "{e}");
        let flags = parse(&[
            "-http-addr=https://127.0.0.1:8501",
            "-ca-file",
            "/nonexistent/ca.pem",
        ]);
        let config = flags.config(|_| None).expect("config");
        let e = Client::new(config).expect_err("unreadable CA file");
        assert!(
            e.to_string()
                .starts_with("Invalid TLS configuration: CA file /nonexistent/ca.pem: "),
            "{e}"
        );
        let flags = parse(&["-http-addr=https://127.0.0.1:8501", "-client-cert=/c.pem"]);
        let e = Client::new(flags.config(|_| None).expect("config")).expect_err("no key");
        assert!(e.to_string().contains("given without its key"), "{e}");
    }
}
