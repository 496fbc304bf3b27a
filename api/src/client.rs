//! Async HTTP client for the agent's `/v1` API: address and token resolution, query options
//! (blocking queries, consistency modes, datacenter), response metadata, KV/agent/status calls,
//! and generic JSON helpers that later endpoint families wrap thinly.
//!
//! `http://` and `https://` addresses: TLS is rustls (ring provider) with Consul's client
//! settings in [`TlsConfig`] (CA file or directory, client certificate for mutual TLS, server
//! name, verification off), read from `CONSUL_CACERT` and friends by
//! [`ClientConfig::from_env`]. Over TLS, HTTP/2 is negotiated by ALPN.
//!
//! ```no_run
//! use std::time::Duration;
//! use muster_api::{Client, ClientConfig, QueryOptions};
//!
//! # async fn demo() -> Result<(), muster_api::Error> {
//! // CONSUL_HTTP_ADDR / CONSUL_HTTP_TOKEN, or 127.0.0.1:8500 without a token.
//! let client = Client::new(ClientConfig::from_env()?)?;
//! client.kv_put("app/config", b"v1", None, None).await?;
//!
//! // Read the key, then block until it changes (or 30 s pass).
//! let (pair, meta) = client.kv_get("app/config", &QueryOptions::default()).await?;
//! assert_eq!(pair.and_then(|p| p.value).as_deref(), Some(&b"v1"[..]));
//! let opts = QueryOptions {
//!     index: Some(meta.last_index),
//!     wait: Some(Duration::from_secs(30)),
//!     ..Default::default()
//! };
//! let (_pair, meta) = client.kv_get("app/config", &opts).await?;
//! println!("index is now {}", meta.last_index);
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::tls::TlsConfig;
use crate::types::{AgentSelf, KvPair, Member};

/// The agent address used when neither a flag nor `CONSUL_HTTP_ADDR` names one.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";

/// How long a blocking query waits when it gives an index but no `wait` (the server's default).
pub const DEFAULT_BLOCKING_WAIT: Duration = Duration::from_secs(5 * 60);

/// Extra time a blocking request is given beyond `wait + wait/16` for the answer to travel.
pub const BLOCKING_MARGIN: Duration = Duration::from_secs(5);

/// Everything that can go wrong talking to an agent. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The agent answered with a non-success status; `message` is the body it sent.
    #[error("Unexpected response code: {status} ({message})")]
    Http { status: u16, message: String },
    /// The request did not get an answer: connection refused, reset, timed out, ...
    #[error("{0}")]
    Transport(String),
    /// The answer was not what the endpoint documents (bad JSON, wrong shape).
    #[error("Failed to decode response: {0}")]
    Decode(String),
    /// The configured agent address cannot be used.
    #[error("Invalid agent address {0}")]
    InvalidAddress(String),
    /// A KV key the API cannot take (it starts with '/').
    #[error("Invalid key. Key must not begin with a '/': {0}")]
    InvalidKey(String),
    /// The token file could not be read.
    #[error("Error loading token file {0}")]
    TokenFile(String),
    /// The TLS settings cannot be used (a file that cannot be read or holds no usable PEM, a
    /// certificate without its key, ...): the text names the setting and the file.
    #[error("Invalid TLS configuration: {0}")]
    Tls(String),
    /// An environment variable holds a value it cannot take.
    #[error("Invalid environment variable {0}")]
    InvalidEnv(String),
}

impl Error {
    /// The HTTP status the agent answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where the agent is and who we are to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub address: String,
    /// Reach a scheme-less or `http://` address over https (`CONSUL_HTTP_SSL=true`; as in
    /// Consul, an explicit request for TLS is never reverted to http).
    pub https: bool,
    /// TLS settings for an https address (ignored for http, as Consul's client does).
    pub tls: TlsConfig,
    /// Sent as `X-Consul-Token` when non-empty.
    pub token: Option<String>,
    /// A file holding the token; when set and non-empty it wins over `token` (as in Consul).
    pub token_file: Option<PathBuf>,
    /// Sent as `?dc=` on every request unless a [`QueryOptions`] names another.
    pub datacenter: Option<String>,
    /// Time allowed to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for a non-blocking request; blocking queries get at least
    /// `wait + wait/16 + BLOCKING_MARGIN`. `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Speak HTTP/2 over cleartext (h2c) with prior knowledge: every request, blocking queries
    /// included, shares one connection. Muster's agent answers h2c; Consul's does not (keep
    /// this `false` for it: HTTP/1.1 with a connection pool). Cleartext only: over https,
    /// HTTP/2 is negotiated by ALPN whatever this says.
    pub http2_prior_knowledge: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            address: DEFAULT_ADDRESS.to_string(),
            https: false,
            tls: TlsConfig::default(),
            token: None,
            token_file: None,
            datacenter: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(60)),
            http2_prior_knowledge: false,
        }
    }
}

impl ClientConfig {
    /// A configuration for the agent at `address`, everything else default.
    pub fn new(address: impl Into<String>) -> Self {
        ClientConfig {
            address: address.into(),
            ..Default::default()
        }
    }

    /// Reads Consul's client variables: `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`,
    /// `CONSUL_HTTP_TOKEN_FILE`, and for TLS `CONSUL_HTTP_SSL` (true: https), `CONSUL_CACERT`,
    /// `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`,
    /// `CONSUL_HTTP_SSL_VERIFY` (false: accept any certificate). Unset or empty variables leave
    /// the defaults; a boolean that is not one of Go's (`1 t T TRUE true True`, `0 f F FALSE
    /// false False`) is an error naming the variable.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`ClientConfig::from_env`] with the environment given as a function (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let get_bool = |name: &str| -> Result<Option<bool>, Error> {
            get(name)
                .map(|v| {
                    parse_go_bool(&v).ok_or_else(|| {
                        Error::InvalidEnv(format!("{name}={v:?}: expected true or false"))
                    })
                })
                .transpose()
        };
        let mut config = ClientConfig::default();
        if let Some(addr) = get("CONSUL_HTTP_ADDR") {
            config.address = addr;
        }
        config.token = get("CONSUL_HTTP_TOKEN");
        config.token_file = get("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from);
        config.https = get_bool("CONSUL_HTTP_SSL")?.unwrap_or(false);
        config.tls = TlsConfig {
            ca_file: get("CONSUL_CACERT").map(PathBuf::from),
            ca_path: get("CONSUL_CAPATH").map(PathBuf::from),
            client_cert: get("CONSUL_CLIENT_CERT").map(PathBuf::from),
            client_key: get("CONSUL_CLIENT_KEY").map(PathBuf::from),
            server_name: get("CONSUL_TLS_SERVER_NAME"),
            insecure_skip_verify: !get_bool("CONSUL_HTTP_SSL_VERIFY")?.unwrap_or(true),
        };
        Ok(config)
    }

    /// The base URL (`http://host:port` or `https://host:port`) that
    /// [`ClientConfig::address`] and [`ClientConfig::https`] name.
    pub fn base_url(&self) -> Result<Url, Error> {
        let mut url = parse_address(&self.address)?;
        if self.https && url.scheme() == "http" {
            url.set_scheme("https").map_err(|()| {
                Error::InvalidAddress(format!("{}: cannot be reached over https", self.address))
            })?;
        }
        Ok(url)
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses an agent address: `host:port` (http), `http://host:port` or `https://host:port` (a
/// trailing `/` is allowed). An empty address means [`DEFAULT_ADDRESS`].
pub fn parse_address(address: &str) -> Result<Url, Error> {
    let trimmed = address.trim();
    let trimmed = if trimmed.is_empty() {
        DEFAULT_ADDRESS
    } else {
        trimmed
    };
    let with_scheme = match trimmed.split_once("://") {
        Some(("http" | "https", _)) => trimmed.to_string(),
        Some(("unix", _)) => {
            return Err(Error::InvalidAddress(format!(
                "{trimmed}: unix sockets are not supported"
            )))
        }
        Some((scheme, _)) => {
            return Err(Error::InvalidAddress(format!(
                "{trimmed}: Unknown protocol scheme: {scheme}"
            )))
        }
        None => format!("http://{trimmed}"),
    };
    let url =
        Url::parse(&with_scheme).map_err(|e| Error::InvalidAddress(format!("{trimmed}: {e}")))?;
    if url.host_str().map(str::is_empty).unwrap_or(true) {
        return Err(Error::InvalidAddress(format!("{trimmed}: missing host")));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidAddress(format!(
            "{trimmed}: an agent address is host:port, without a path"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::InvalidAddress(format!(
            "{trimmed}: credentials in the address are not supported (use a token)"
        )));
    }
    Ok(url)
}

/// Per-request read options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Blocking query: answer once the result's index is greater than this.
    pub index: Option<u64>,
    /// How long a blocking query may be held (server default 5 min, max 10 min).
    pub wait: Option<Duration>,
    /// `?consistent`: the leader confirms its leadership before answering.
    pub consistent: bool,
    /// `?stale`: any server may answer.
    pub stale: bool,
    /// `?dc=`: overrides [`ClientConfig::datacenter`].
    pub datacenter: Option<String>,
    /// `?filter=`: a filter expression.
    pub filter: Option<String>,
    /// Overrides the client's token for this request.
    pub token: Option<String>,
}

impl QueryOptions {
    /// Whether this request may be held by the server (it carries an index or a wait).
    pub fn is_blocking(&self) -> bool {
        self.index.is_some() || self.wait.is_some()
    }
}

/// What the agent says about a read beyond its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Consul-Index`: feed it back as [`QueryOptions::index`] to block.
    pub last_index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact` (milliseconds since the answering server heard from the leader).
    pub last_contact: Duration,
}

/// Parses `X-Consul-Index`, `X-Consul-KnownLeader` and `X-Consul-LastContact`; a missing or
/// malformed header leaves the default.
pub fn parse_query_meta(headers: &HeaderMap) -> QueryMeta {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    QueryMeta {
        last_index: text("X-Consul-Index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        known_leader: text("X-Consul-KnownLeader")
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(false),
        last_contact: text("X-Consul-LastContact")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or_default(),
    }
}

/// Formats a wait time in Go's duration syntax: whole seconds as `30s`, otherwise `1500ms`.
pub fn format_wait(wait: Duration) -> String {
    if wait.subsec_nanos() == 0 {
        format!("{}s", wait.as_secs())
    } else {
        format!("{}ms", wait.as_millis().max(1))
    }
}

/// The time a request with these options may take before the client gives up: a blocking query
/// gets `wait + wait/16 + BLOCKING_MARGIN` (the server adds up to `wait/16` of jitter), so the
/// client never gives up before the server answers.
pub fn request_timeout(opts: &QueryOptions, base: Option<Duration>) -> Option<Duration> {
    if !opts.is_blocking() {
        return base;
    }
    let wait = opts.wait.unwrap_or(DEFAULT_BLOCKING_WAIT);
    let blocking = wait + wait / 16 + BLOCKING_MARGIN;
    Some(base.map_or(blocking, |b| b.max(blocking)))
}

/// One query-string parameter: a name, and a value (`None` for a bare flag like `?recurse`).
pub type Param = (String, Option<String>);

/// The query-string parameters that `opts` (and the client's default datacenter) stand for.
pub fn query_params(opts: &QueryOptions, default_dc: Option<&str>) -> Vec<Param> {
    let mut params = Vec::new();
    if let Some(dc) = opts
        .datacenter
        .as_deref()
        .or(default_dc)
        .filter(|d| !d.is_empty())
    {
        params.push(("dc".to_string(), Some(dc.to_string())));
    }
    if opts.stale {
        params.push(("stale".to_string(), None));
    }
    if opts.consistent {
        params.push(("consistent".to_string(), None));
    }
    if let Some(index) = opts.index {
        params.push(("index".to_string(), Some(index.to_string())));
    }
    if let Some(wait) = opts.wait {
        params.push(("wait".to_string(), Some(format_wait(wait))));
    }
    if let Some(filter) = opts.filter.as_deref().filter(|f| !f.is_empty()) {
        params.push(("filter".to_string(), Some(filter.to_string())));
    }
    params
}

/// Encodes parameters as a query string (without the `?`): `a=1&recurse&b=x%2Fy`.
pub fn encode_query(params: &[Param]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&percent_encode(name));
        if let Some(value) = value {
            out.push('=');
            out.push_str(&percent_encode(value));
        }
    }
    out
}

/// Percent-encodes every byte except RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Encodes a KV key for the URL path: each `/`-separated segment percent-encoded, the `/`s kept.
/// A leading `/` is dropped, as Consul's Go client does for reads and deletes.
pub fn encode_key(key: &str) -> String {
    key.strip_prefix('/')
        .unwrap_or(key)
        .split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Options of a KV write beyond the key and value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvWriteOptions {
    /// `?flags=`: an opaque number stored with the key.
    pub flags: Option<u64>,
    /// `?cas=`: write only if the key's ModifyIndex is this (0: only if the key is absent).
    pub cas: Option<u64>,
    /// `?acquire=<session>`: take the key's lock for this session.
    pub acquire: Option<String>,
    /// `?release=<session>`: give the key's lock back.
    pub release: Option<String>,
}

/// Options of `GET /v1/agent/members`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersOptions {
    /// `?wan=1`: the WAN pool (servers of all datacenters).
    pub wan: bool,
    /// `?segment=`: a network segment (Consul Enterprise); `None` for the default.
    pub segment: Option<String>,
    /// `?filter=`.
    pub filter: Option<String>,
}

/// An async client for one agent. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    datacenter: Option<String>,
    request_timeout: Option<Duration>,
}

impl Client {
    /// Builds a client; fails only on an unusable address, an unreadable token file or (for an
    /// https address) unusable TLS settings. Nothing is sent until the first call.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let base = config.base_url()?;
        let mut token = config.token.filter(|t| !t.is_empty());
        if let Some(path) = &config.token_file {
            let data = std::fs::read_to_string(path)
                .map_err(|e| Error::TokenFile(format!("{}: {e}", path.display())))?;
            let from_file = data.trim();
            if !from_file.is_empty() {
                token = Some(from_file.to_string());
            }
        }
        let mut builder = reqwest::Client::builder().connect_timeout(config.connect_timeout);
        if base.scheme() == "https" {
            builder = builder.use_preconfigured_tls(config.tls.rustls_config()?);
        } else if config.http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        let http = builder
            .build()
            .map_err(|e| Error::Transport(error_chain(&e)))?;
        Ok(Client {
            http,
            base,
            token,
            datacenter: config.datacenter.filter(|d| !d.is_empty()),
            request_timeout: config.request_timeout,
        })
    }

    /// The agent's base URL, e.g. `http://127.0.0.1:8500`.
    pub fn address(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    // ---- KV ---------------------------------------------------------------------------------

    /// `GET /v1/kv/<key>`: the entry, or `None` when the key does not exist.
    pub async fn kv_get(
        &self,
        key: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<KvPair>, QueryMeta), Error> {
        let path = format!("/v1/kv/{}", encode_key(key));
        let (pairs, meta) = self
            .get_json_optional::<Vec<KvPair>>(&path, &[], opts)
            .await?;
        Ok((pairs.and_then(|p| p.into_iter().next()), meta))
    }

    /// `GET /v1/kv/<prefix>?recurse`: every entry under the prefix (empty when there is none).
    pub async fn kv_list(
        &self,
        prefix: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<KvPair>, QueryMeta), Error> {
        let path = format!("/v1/kv/{}", encode_key(prefix));
        let params = [("recurse".to_string(), None)];
        let (pairs, meta) = self
            .get_json_optional::<Vec<KvPair>>(&path, &params, opts)
            .await?;
        Ok((pairs.unwrap_or_default(), meta))
    }

    /// `GET /v1/kv/<prefix>?keys[&separator=]`: key names under the prefix, folded at the
    /// separator when one is given.
    pub async fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<String>, QueryMeta), Error> {
        let path = format!("/v1/kv/{}", encode_key(prefix));
        let mut params = vec![("keys".to_string(), None)];
        if let Some(sep) = separator.filter(|s| !s.is_empty()) {
            params.push(("separator".to_string(), Some(sep.to_string())));
        }
        let (keys, meta) = self
            .get_json_optional::<Vec<String>>(&path, &params, opts)
            .await?;
        Ok((keys.unwrap_or_default(), meta))
    }

    /// `PUT /v1/kv/<key>`: writes the value; `false` when a check-and-set did not match.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        flags: Option<u64>,
        cas: Option<u64>,
    ) -> Result<bool, Error> {
        let opts = KvWriteOptions {
            flags,
            cas,
            ..Default::default()
        };
        self.kv_put_with(key, value, &opts).await
    }

    /// `PUT /v1/kv/<key>` with every write option (lock acquire/release included).
    pub async fn kv_put_with(
        &self,
        key: &str,
        value: &[u8],
        opts: &KvWriteOptions,
    ) -> Result<bool, Error> {
        if key.starts_with('/') {
            return Err(Error::InvalidKey(key.to_string()));
        }
        let mut params = Vec::new();
        if let Some(flags) = opts.flags {
            params.push(("flags".to_string(), Some(flags.to_string())));
        }
        if let Some(cas) = opts.cas {
            params.push(("cas".to_string(), Some(cas.to_string())));
        }
        if let Some(session) = &opts.acquire {
            params.push(("acquire".to_string(), Some(session.clone())));
        }
        if let Some(session) = &opts.release {
            params.push(("release".to_string(), Some(session.clone())));
        }
        let path = format!("/v1/kv/{}", encode_key(key));
        let body = Body::Raw(value.to_vec(), "application/octet-stream");
        let (status, _, bytes) = self.send(Method::PUT, &path, params, body, None).await?;
        if !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes).contains("true"))
    }

    /// `DELETE /v1/kv/<key>[?recurse][&cas=]`: `false` when a check-and-set did not match.
    pub async fn kv_delete(
        &self,
        key: &str,
        recurse: bool,
        cas: Option<u64>,
    ) -> Result<bool, Error> {
        let mut params = Vec::new();
        if recurse {
            params.push(("recurse".to_string(), None));
        }
        if let Some(cas) = cas {
            params.push(("cas".to_string(), Some(cas.to_string())));
        }
        let path = format!("/v1/kv/{}", encode_key(key));
        let (status, _, bytes) = self
            .send(Method::DELETE, &path, params, Body::Empty, None)
            .await?;
        if !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes).contains("true"))
    }

    // ---- agent and status -------------------------------------------------------------------

    /// `GET /v1/agent/self`.
    pub async fn agent_self(&self) -> Result<AgentSelf, Error> {
        let (value, _) = self
            .get_json("/v1/agent/self", &QueryOptions::default())
            .await?;
        Ok(value)
    }

    /// `GET /v1/agent/members` (LAN pool).
    pub async fn agent_members(&self) -> Result<Vec<Member>, Error> {
        self.agent_members_with(&MembersOptions::default()).await
    }

    /// `GET /v1/agent/members` with the WAN/segment/filter options.
    pub async fn agent_members_with(&self, opts: &MembersOptions) -> Result<Vec<Member>, Error> {
        let mut params = Vec::new();
        if let Some(segment) = opts.segment.as_deref().filter(|s| !s.is_empty()) {
            params.push(("segment".to_string(), Some(segment.to_string())));
        }
        if opts.wan {
            params.push(("wan".to_string(), Some("1".to_string())));
        }
        if let Some(filter) = opts.filter.as_deref().filter(|f| !f.is_empty()) {
            params.push(("filter".to_string(), Some(filter.to_string())));
        }
        let (members, _) = self
            .get_json_with("/v1/agent/members", &params, &QueryOptions::default())
            .await?;
        Ok(members)
    }

    /// `PUT /v1/agent/leave`: the agent leaves the cluster gracefully and shuts down.
    pub async fn agent_leave(&self) -> Result<(), Error> {
        self.put_json::<(), serde::de::IgnoredAny>("/v1/agent/leave", None)
            .await
            .map(|_| ())
    }

    /// `PUT /v1/agent/join/:address`: joins the LAN pool through the agent at `address`.
    pub async fn agent_join(&self, address: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/join/{}", percent_encode(address));
        self.put_json::<(), serde::de::IgnoredAny>(&path, None)
            .await
            .map(|_| ())
    }

    /// `PUT /v1/agent/force-leave/:node[?prune]`.
    pub async fn agent_force_leave(&self, node: &str, prune: bool) -> Result<(), Error> {
        let path = format!("/v1/agent/force-leave/{}", percent_encode(node));
        let params = if prune {
            vec![("prune".to_string(), None)]
        } else {
            Vec::new()
        };
        self.put_json_with::<(), serde::de::IgnoredAny>(&path, &params, None)
            .await
            .map(|_| ())
    }

    /// `GET /v1/status/leader`: the leader's server address, `""` when there is none.
    pub async fn status_leader(&self) -> Result<String, Error> {
        let (leader, _) = self
            .get_json("/v1/status/leader", &QueryOptions::default())
            .await?;
        Ok(leader)
    }

    /// `GET /v1/status/peers`: the Raft peers' server addresses.
    pub async fn status_peers(&self) -> Result<Vec<String>, Error> {
        let (peers, _) = self
            .get_json("/v1/status/peers", &QueryOptions::default())
            .await?;
        Ok(peers)
    }

    // ---- generic ----------------------------------------------------------------------------

    /// `GET <path>` decoded as JSON. `path` is already URL-encoded and starts with `/v1/`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(T, QueryMeta), Error> {
        self.get_json_with(path, &[], opts).await
    }

    /// [`Client::get_json`] with extra query parameters.
    pub async fn get_json_with<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[Param],
        opts: &QueryOptions,
    ) -> Result<(T, QueryMeta), Error> {
        let (status, meta, bytes) = self.get_raw(path, params, opts).await?;
        if !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        Ok((decode(&bytes)?, meta))
    }

    /// [`Client::get_json_with`], with a 404 answered as `None`.
    pub async fn get_json_optional<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[Param],
        opts: &QueryOptions,
    ) -> Result<(Option<T>, QueryMeta), Error> {
        let (status, meta, bytes) = self.get_raw(path, params, opts).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok((None, meta));
        }
        if !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        Ok((Some(decode(&bytes)?), meta))
    }

    /// `PUT <path>` with an optional JSON body, the answer decoded as JSON (an empty answer
    /// decodes as `null`, so `()` or `Option<_>` fit endpoints that send nothing).
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Error> {
        self.put_json_with(path, &[], body).await
    }

    /// [`Client::put_json`] with extra query parameters.
    pub async fn put_json_with<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[Param],
        body: Option<&B>,
    ) -> Result<T, Error> {
        self.write_json(Method::PUT, path, params, body).await
    }

    /// `DELETE <path>`, the answer decoded as JSON (empty decodes as `null`).
    pub async fn delete_json<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[Param],
    ) -> Result<T, Error> {
        self.write_json::<(), T>(Method::DELETE, path, params, None)
            .await
    }

    async fn write_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[Param],
        body: Option<&B>,
    ) -> Result<T, Error> {
        let body = match body {
            Some(b) => Body::Raw(
                serde_json::to_vec(b).map_err(|e| Error::Decode(e.to_string()))?,
                "application/json",
            ),
            None => Body::Empty,
        };
        let (status, _, bytes) = self.send(method, path, params.to_vec(), body, None).await?;
        if !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        decode(&bytes)
    }

    async fn get_raw(
        &self,
        path: &str,
        params: &[Param],
        opts: &QueryOptions,
    ) -> Result<(StatusCode, QueryMeta, Vec<u8>), Error> {
        let mut all = query_params(opts, None);
        all.extend(params.iter().cloned());
        self.send(Method::GET, path, all, Body::Empty, Some(opts))
            .await
    }

    /// Sends one request. The client's datacenter and token apply unless `opts` overrides them.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        params: Vec<Param>,
        body: Body,
        opts: Option<&QueryOptions>,
    ) -> Result<(StatusCode, QueryMeta, Vec<u8>), Error> {
        let (mut request, url) = self.request(method.clone(), path, params, opts)?;
        let timeout = match opts {
            Some(o) => request_timeout(o, self.request_timeout),
            None => self.request_timeout,
        };
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        if let Body::Raw(bytes, content_type) = body {
            request = request.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let describe = |e: &reqwest::Error| {
            Error::Transport(format!(
                "{} \"{}\": {}",
                go_method(&method),
                url,
                transport_reason(e, &url)
            ))
        };
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        let meta = parse_query_meta(response.headers());
        let bytes = response.bytes().await.map_err(|e| describe(&e))?;
        Ok((status, meta, bytes.to_vec()))
    }

    /// A request to `path` with the client's datacenter (unless `params` names one) and token
    /// (unless `opts` carries another); no timeout (the caller sets one, or streams).
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        mut params: Vec<Param>,
        opts: Option<&QueryOptions>,
    ) -> Result<(reqwest::RequestBuilder, Url), Error> {
        let has_dc = params.iter().any(|(name, _)| name == "dc");
        if !has_dc {
            if let Some(dc) = &self.datacenter {
                params.insert(0, ("dc".to_string(), Some(dc.clone())));
            }
        }
        let url = self.url(path, &params)?;
        let mut request = self.http.request(method, url.clone());
        let token = opts
            .and_then(|o| o.token.as_deref())
            .or(self.token.as_deref())
            .filter(|t| !t.is_empty());
        if let Some(token) = token {
            let value = HeaderValue::from_str(token)
                .map_err(|_| Error::Transport("the token is not a valid header value".into()))?;
            request = request.header("X-Consul-Token", value);
        }
        Ok((request, url))
    }

    fn url(&self, path: &str, params: &[Param]) -> Result<Url, Error> {
        let mut text = self.address();
        if !path.starts_with('/') {
            text.push('/');
        }
        text.push_str(path);
        if !params.is_empty() {
            text.push('?');
            text.push_str(&encode_query(params));
        }
        Url::parse(&text).map_err(|e| Error::InvalidAddress(format!("{text}: {e}")))
    }
}

pub(crate) enum Body {
    Empty,
    Raw(Vec<u8>, &'static str),
}

/// Go's spelling of the method in its client errors (`Get "http://..."`).
fn go_method(method: &Method) -> String {
    let s = method.as_str();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if i == 0 {
            out.push(c);
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Why a request got no answer, worded like Go's client where scripts look for the words:
/// `dial tcp 127.0.0.1:8500: connect: connection refused` for a failed connection, otherwise
/// the chain of causes.
pub(crate) fn transport_reason(e: &reqwest::Error, url: &Url) -> String {
    if let Some(tls) = tls_error(e) {
        return tls_reason(tls);
    }
    if e.is_connect() && !e.is_timeout() {
        if let Some(io) = deepest_io_error(e) {
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(80);
            let reason = io_reason(io);
            if reason.starts_with("failed to lookup address") {
                return format!("dial tcp: lookup {host}: {reason}");
            }
            return format!("dial tcp {host}:{port}: connect: {reason}");
        }
    }
    error_chain(e)
}

/// The rustls error behind a failed request, if TLS is what failed (hyper-rustls hands it on
/// inside an `io::Error`).
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's source() skips the error it wraps: step into that one instead.
        current = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// `tls: <what rustls says>`, with a hint for the certificate errors a setting fixes.
fn tls_reason(e: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError};
    let hint = match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the agent's certificate is not signed by a trusted CA: name its CA with -ca-file \
             or CONSUL_CACERT)"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            " (the agent's certificate is not valid for this host: -tls-server-name or \
             CONSUL_TLS_SERVER_NAME names the one it is for)"
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA,
        ) => {
            " (the agent wants a client certificate it trusts: -client-cert and -client-key, or \
             CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)"
        }
        _ => "",
    };
    format!("tls: {e}{hint}")
}

fn deepest_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut found = None;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            found = Some(io);
        }
        current = err.source();
    }
    found
}

/// An I/O error's text without Rust's ` (os error N)` suffix, lower-cased as Go prints it.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The causes of a reqwest error, most specific last, without reqwest's generic wrapper text.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("request timed out".to_string());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

pub(crate) fn http_error(status: StatusCode, body: &[u8]) -> Error {
    Error::Http {
        status: status.as_u16(),
        message: String::from_utf8_lossy(body).trim().to_string(),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| Error::Decode(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn address_forms() {
        let url = |s: &str| parse_address(s).map(|u| u.to_string());
        assert_eq!(
            url("127.0.0.1:8500").as_deref(),
            Ok("http://127.0.0.1:8500/")
        );
        assert_eq!(
            url("http://127.0.0.1:8500").as_deref(),
            Ok("http://127.0.0.1:8500/")
        );
        assert_eq!(
            url("http://localhost:9/").as_deref(),
            Ok("http://localhost:9/")
        );
        assert_eq!(url("[::1]:8500").as_deref(), Ok("http://[::1]:8500/"));
        assert_eq!(url("").as_deref(), Ok("http://127.0.0.1:8500/"));
        assert_eq!(url("  10.0.0.1:1  ").as_deref(), Ok("http://10.0.0.1:1/"));
        assert_eq!(
            url("https://127.0.0.1:8501").as_deref(),
            Ok("https://127.0.0.1:8501/")
        );
        assert_eq!(
            url("https://agent.example:8501/").as_deref(),
            Ok("https://agent.example:8501/")
        );
    }

    #[test]
    fn address_rejections() {
        for bad in [
            "https://",
            "https://x:1/v1",
            "unix:///tmp/s",
            "ftp://x:1",
            "http://x:1/path",
            "x:notaport",
            "http://",
            "http://u:p@x:1",
        ] {
            assert!(
                matches!(parse_address(bad), Err(Error::InvalidAddress(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn config_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = ClientConfig::from_lookup(env(&[])).expect("config");
        assert_eq!(c.address, DEFAULT_ADDRESS);
        assert_eq!(c.token, None);
        assert!(!c.https);
        assert_eq!(c.tls, TlsConfig::default());
        let c = ClientConfig::from_lookup(env(&[
            ("CONSUL_HTTP_ADDR", "http://10.1.2.3:8501"),
            ("CONSUL_HTTP_TOKEN", "secret"),
        ]))
        .expect("config");
        assert_eq!(c.address, "http://10.1.2.3:8501");
        assert_eq!(c.token.as_deref(), Some("secret"));
        let c =
            ClientConfig::from_lookup(env(&[("CONSUL_HTTP_ADDR", ""), ("CONSUL_HTTP_TOKEN", "")]))
                .expect("config");
        assert_eq!(c.address, DEFAULT_ADDRESS);
        assert_eq!(c.token, None);
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn tls_settings_from_env() {
        let c = ClientConfig::from_lookup(lookup(&[
            ("CONSUL_HTTP_ADDR", "10.0.0.1:8501"),
            ("CONSUL_HTTP_SSL", "true"),
            ("CONSUL_HTTP_SSL_VERIFY", "0"),
            ("CONSUL_CACERT", "/etc/consul/ca.pem"),
            ("CONSUL_CAPATH", "/etc/consul/cas"),
            ("CONSUL_CLIENT_CERT", "/etc/consul/cli.pem"),
            ("CONSUL_CLIENT_KEY", "/etc/consul/cli.key"),
            ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"),
        ]))
        .expect("config");
        assert!(c.https);
        assert_eq!(
            c.tls,
            TlsConfig {
                ca_file: Some("/etc/consul/ca.pem".into()),
                ca_path: Some("/etc/consul/cas".into()),
                client_cert: Some("/etc/consul/cli.pem".into()),
                client_key: Some("/etc/consul/cli.key".into()),
                server_name: Some("server.dc1.consul".into()),
                insecure_skip_verify: true,
            }
        );
        assert_eq!(
            c.base_url().expect("url").as_str(),
            "https://10.0.0.1:8501/"
        );
        // Verification stays on unless turned off.
        let c = ClientConfig::from_lookup(lookup(&[("CONSUL_HTTP_SSL_VERIFY", "True")]))
            .expect("config");
        assert!(!c.tls.insecure_skip_verify);
    }

    #[test]
    fn consul_http_ssl_switches_to_https_and_never_back() {
        for (addr, ssl, want) in [
            ("127.0.0.1:8501", "true", "https://127.0.0.1:8501/"),
            ("127.0.0.1:8501", "1", "https://127.0.0.1:8501/"),
            // As Consul's client: TLS explicitly requested is never reverted to http.
            ("http://127.0.0.1:8501", "true", "https://127.0.0.1:8501/"),
            ("https://127.0.0.1:8501", "false", "https://127.0.0.1:8501/"),
            ("127.0.0.1:8500", "false", "http://127.0.0.1:8500/"),
            ("127.0.0.1:8500", "", "http://127.0.0.1:8500/"),
        ] {
            let c = ClientConfig::from_lookup(lookup(&[
                ("CONSUL_HTTP_ADDR", addr),
                ("CONSUL_HTTP_SSL", ssl),
            ]))
            .expect("config");
            assert_eq!(
                c.base_url().expect("url").as_str(),
                want,
                "{addr} ssl={ssl}"
            );
        }
    }

    #[test]
    fn bad_booleans_in_env_are_named() {
        for name in ["CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY"] {
            let e = ClientConfig::from_lookup(lookup(&[(name, "yes")])).expect_err("bad bool");
            assert_eq!(
                e.to_string(),
                format!("Invalid environment variable {name}=\"yes\": expected true or false")
            );
        }
    }

    #[test]
    fn tls_settings_are_checked_for_https_only() {
        let broken = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        // Consul's client ignores TLS settings for an http address; so does this one.
        Client::new(ClientConfig {
            tls: broken.clone(),
            ..ClientConfig::new("127.0.0.1:8500")
        })
        .expect("http ignores TLS settings");
        let e = Client::new(ClientConfig {
            tls: broken,
            ..ClientConfig::new("https://127.0.0.1:8501")
        })
        .expect_err("unreadable CA");
        assert!(matches!(e, Error::Tls(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("Invalid TLS configuration: CA file /nonexistent/ca.pem: "),
            "{e}"
        );
        let client = Client::new(ClientConfig {
            https: true,
            http2_prior_knowledge: true,
            tls: TlsConfig {
                insecure_skip_verify: true,
                ..Default::default()
            },
            ..ClientConfig::new("127.0.0.1:8501")
        })
        .expect("https client");
        assert_eq!(client.address(), "https://127.0.0.1:8501");
    }

    #[tokio::test]
    async fn tls_to_a_plain_http_server_fails_clearly() {
        // A plain HTTP server answering the ClientHello: the TLS handshake cannot succeed.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            if let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = Client::new(ClientConfig {
            tls: TlsConfig {
                insecure_skip_verify: true,
                ..Default::default()
            },
            ..ClientConfig::new(format!("https://{addr}"))
        })
        .expect("client");
        let e = client.status_leader().await.expect_err("no TLS there");
        assert!(matches!(e, Error::Transport(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("Get \"https://{addr}/v1/status/leader\": tls: ")),
            "{e}"
        );
    }

    #[test]
    fn token_file_wins() {
        let dir = std::env::temp_dir().join(format!("muster-api-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "  from-file\n").expect("write");
        let client = Client::new(ClientConfig {
            token: Some("flag".into()),
            token_file: Some(file.clone()),
            ..Default::default()
        })
        .expect("client");
        assert_eq!(client.token.as_deref(), Some("from-file"));
        let missing = Client::new(ClientConfig {
            token_file: Some(dir.join("nope")),
            ..Default::default()
        });
        assert!(matches!(missing, Err(Error::TokenFile(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn query_string() {
        let opts = QueryOptions {
            index: Some(42),
            wait: Some(Duration::from_secs(30)),
            stale: true,
            datacenter: Some("dc 2".into()),
            filter: Some("Service == web".into()),
            ..Default::default()
        };
        assert_eq!(
            encode_query(&query_params(&opts, Some("dc1"))),
            "dc=dc%202&stale&index=42&wait=30s&filter=Service%20%3D%3D%20web"
        );
        let opts = QueryOptions {
            consistent: true,
            ..Default::default()
        };
        assert_eq!(
            encode_query(&query_params(&opts, Some("dc1"))),
            "dc=dc1&consistent"
        );
        assert_eq!(
            encode_query(&query_params(&QueryOptions::default(), None)),
            ""
        );
        assert_eq!(
            encode_query(&[
                ("keys".into(), None),
                ("separator".into(), Some("/".into()))
            ]),
            "keys&separator=%2F"
        );
    }

    #[test]
    fn wait_format() {
        assert_eq!(format_wait(Duration::from_secs(30)), "30s");
        assert_eq!(format_wait(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_wait(Duration::from_micros(10)), "1ms");
        assert_eq!(format_wait(Duration::ZERO), "0s");
    }

    #[test]
    fn blocking_timeout_exceeds_wait() {
        let base = Some(Duration::from_secs(60));
        assert_eq!(request_timeout(&QueryOptions::default(), base), base);
        let opts = QueryOptions {
            index: Some(7),
            wait: Some(Duration::from_secs(160)),
            ..Default::default()
        };
        assert_eq!(
            request_timeout(&opts, base),
            Some(Duration::from_secs(160 + 10) + BLOCKING_MARGIN)
        );
        let opts = QueryOptions {
            index: Some(7),
            ..Default::default()
        };
        let t = request_timeout(&opts, None).expect("timeout");
        assert!(t > DEFAULT_BLOCKING_WAIT + DEFAULT_BLOCKING_WAIT / 16);
        // A short wait still gets at least the base timeout.
        let opts = QueryOptions {
            index: Some(7),
            wait: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(request_timeout(&opts, base), base);
    }

    #[test]
    fn headers_to_meta() {
        let mut h = HeaderMap::new();
        h.insert("X-Consul-Index", HeaderValue::from_static("1234"));
        h.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
        h.insert("X-Consul-LastContact", HeaderValue::from_static("17"));
        assert_eq!(
            parse_query_meta(&h),
            QueryMeta {
                last_index: 1234,
                known_leader: true,
                last_contact: Duration::from_millis(17),
            }
        );
        let mut h = HeaderMap::new();
        h.insert("x-consul-index", HeaderValue::from_static("garbage"));
        h.insert("x-consul-knownleader", HeaderValue::from_static("false"));
        assert_eq!(parse_query_meta(&h), QueryMeta::default());
    }

    #[test]
    fn key_encoding() {
        assert_eq!(encode_key("foo/bar"), "foo/bar");
        assert_eq!(encode_key("/foo"), "foo");
        assert_eq!(encode_key("a b/c?d#e%f"), "a%20b/c%3Fd%23e%25f");
        assert_eq!(encode_key("dir/"), "dir/");
        assert_eq!(encode_key("a//b"), "a//b");
        assert_eq!(encode_key("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(encode_key(""), "");
    }

    #[test]
    fn errors_read_like_consuls() {
        let e = http_error(StatusCode::INTERNAL_SERVER_ERROR, b"No cluster leader\n");
        assert_eq!(
            e.to_string(),
            "Unexpected response code: 500 (No cluster leader)"
        );
        assert_eq!(e.status(), Some(500));
        assert_eq!(go_method(&Method::DELETE), "Delete");
    }

    #[test]
    fn empty_body_decodes_as_null() {
        let unit: () = decode(b"").expect("unit");
        assert_eq!(unit, ());
        let none: Option<u64> = decode(b" \n").expect("none");
        assert_eq!(none, None);
        assert!(matches!(decode::<Vec<u64>>(b"{"), Err(Error::Decode(_))));
    }

    /// A one-shot HTTP/1.1 server on loopback: answers one request with `response` and hands
    /// back the request it received (head and body).
    pub(crate) async fn fake_agent(
        response: &'static str,
    ) -> (String, tokio::sync::oneshot::Receiver<(String, Vec<u8>)>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let Ok(n) = sock.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let Ok(n) = sock.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_end..].to_vec();
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
            let _ = tx.send((head, body));
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn blocking_get_sends_options_and_reads_meta() {
        let (addr, rx) = fake_agent(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 9\r\n\
             X-Consul-KnownLeader: true\r\nX-Consul-LastContact: 0\r\nContent-Length: 86\r\n\
             Connection: close\r\n\r\n\
             [{\"LockIndex\":0,\"Key\":\"a b\",\"Flags\":0,\"Value\":\"YmFy\",\"CreateIndex\":9,\"ModifyIndex\":9}]",
        )
        .await;
        let client = Client::new(ClientConfig {
            token: Some("tok".into()),
            datacenter: Some("dc9".into()),
            ..ClientConfig::new(addr)
        })
        .expect("client");
        let opts = QueryOptions {
            index: Some(5),
            wait: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let (pair, meta) = client.kv_get("a b", &opts).await.expect("get");
        let pair = pair.expect("pair");
        assert_eq!(pair.key, "a b");
        assert_eq!(pair.value.as_deref(), Some(&b"bar"[..]));
        assert_eq!(meta.last_index, 9);
        assert!(meta.known_leader);
        let (head, _) = rx.await.expect("request");
        assert!(
            head.starts_with("GET /v1/kv/a%20b?dc=dc9&index=5&wait=2s HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\nx-consul-token: tok\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn missing_key_is_none() {
        let (addr, _rx) = fake_agent(
            "HTTP/1.1 404 Not Found\r\nX-Consul-Index: 4\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
        )
        .await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        let (pair, meta) = client
            .kv_get("nope", &QueryOptions::default())
            .await
            .expect("get");
        assert_eq!(pair, None);
        assert_eq!(meta.last_index, 4);
    }

    #[tokio::test]
    async fn cas_put_sends_body_and_reads_false() {
        let (addr, rx) =
            fake_agent("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfalse")
                .await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        let ok = client
            .kv_put("k/x", b"v\x00", Some(3), Some(0))
            .await
            .expect("put");
        assert!(!ok);
        let (head, body) = rx.await.expect("request");
        assert!(
            head.starts_with("PUT /v1/kv/k/x?flags=3&cas=0 HTTP/1.1\r\n"),
            "{head}"
        );
        assert_eq!(body, b"v\x00");
    }

    #[tokio::test]
    async fn error_status_carries_the_body() {
        let (addr, _rx) = fake_agent(
            "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 23\r\nConnection: close\r\n\r\n\
             Value exceeds 524288 b\n",
        )
        .await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        let err = client.kv_delete("k", true, None).await.expect_err("413");
        assert_eq!(
            err,
            Error::Http {
                status: 413,
                message: "Value exceeds 524288 b".into()
            }
        );
    }

    #[tokio::test]
    async fn bad_json_is_a_decode_error() {
        let (addr, _rx) =
            fake_agent("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}")
                .await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        assert!(matches!(client.status_peers().await, Err(Error::Decode(_))));
    }

    #[tokio::test]
    async fn put_rejects_leading_slash() {
        let client = Client::new(ClientConfig::new("127.0.0.1:1")).expect("client");
        assert_eq!(
            client.kv_put("/foo", b"x", None, None).await,
            Err(Error::InvalidKey("/foo".into()))
        );
    }

    #[tokio::test]
    async fn transport_error_names_the_url() {
        // Port 1 on localhost: nothing listens there, so the connection is refused.
        let client = Client::new(ClientConfig::new("127.0.0.1:1")).expect("client");
        let err = client
            .kv_get("foo", &QueryOptions::default())
            .await
            .expect_err("no agent");
        let text = err.to_string();
        assert_eq!(
            text,
            "Get \"http://127.0.0.1:1/v1/kv/foo\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }
}
