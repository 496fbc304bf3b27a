//! The HTTP flags every agent-talking command shares (`-http-addr`, `-token`, `-token-file`,
//! `-datacenter`, `-stale`), their Consul help texts, and how they become a [`Client`] and
//! [`QueryOptions`]. Flags win over `CONSUL_HTTP_ADDR` / `CONSUL_HTTP_TOKEN` /
//! `CONSUL_HTTP_TOKEN_FILE`, which win over the default `127.0.0.1:8500`.

use std::path::PathBuf;

use muster_api::{Client, ClientConfig, QueryOptions};

use super::{Flag, FlagKind, Parsed};

/// Client flags: where the agent is and which token to send.
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
    pub datacenter: Option<String>,
    pub stale: bool,
}

impl HttpFlags {
    pub fn from_parsed(p: &Parsed) -> Self {
        HttpFlags {
            address: p.string("http-addr"),
            token: p.string("token"),
            token_file: p.string("token-file"),
            datacenter: p.string("datacenter"),
            stale: p.flag("stale"),
        }
    }

    /// The client configuration: the environment (as `lookup` reads it), then the flags.
    pub fn config(&self, lookup: impl Fn(&str) -> Option<String>) -> ClientConfig {
        let mut config = ClientConfig::from_lookup(lookup);
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
        config
    }

    /// A client for the agent these flags (and the environment) name.
    pub fn client(&self) -> Result<Client, muster_api::Error> {
        Client::new(self.config(|name| std::env::var(name).ok()))
    }

    /// Read options: `-stale`.
    pub fn query_options(&self) -> QueryOptions {
        QueryOptions {
            stale: self.stale,
            ..Default::default()
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
        let config = flags.config(env);
        assert_eq!(config.address, "http://127.0.0.2:18500");
        assert_eq!(config.token.as_deref(), Some("flag-token"));
        assert_eq!(config.datacenter.as_deref(), Some("dc2"));
        assert!(flags.query_options().stale);
    }

    #[test]
    fn env_then_default() {
        let config = parse(&[]).config(env);
        assert_eq!(config.address, "10.0.0.1:8500");
        assert_eq!(config.token.as_deref(), Some("env-token"));
        let config = parse(&[]).config(|_| None);
        assert_eq!(config.address, "127.0.0.1:8500");
        assert_eq!(config.token, None);
        assert!(!parse(&[]).query_options().stale);
    }
}
