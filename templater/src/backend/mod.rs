//! Where values come from: a dependency ([`Dep`]) is one thing a template reads (a KV prefix, a
//! service's instances with their health, the catalog's services or nodes); a backend answers
//! it once ([`Backend::fetch`] with `blocking = false`) or when it changes (`blocking = true`
//! with the index of the last answer).
//!
//! * `consul`: Muster or Consul over HTTP, blocking queries (h2c to Muster, HTTP/1.1 otherwise).
//! * `file`: YAML/JSON files flattened to keys, watched with notify.
//! * `env`: confd's mapping of `/a/b` to the variable `A_B`.

pub mod consul;
pub mod env;
pub mod file;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// One thing templates depend on. Two templates that read the same prefix share one `Dep` (and
/// so one query).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// Every key under a prefix (`/app/nginx`), the prefix itself included; keys are stored with
    /// a leading `/`.
    Kv(String),
    /// Every instance of a service with its aggregated health (`/v1/health/service/:name`).
    Service(String),
    /// The catalog's service names and tags (`/v1/catalog/services`).
    Services,
    /// The catalog's nodes (`/v1/catalog/nodes`).
    Nodes,
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dep::Kv(prefix) => write!(f, "kv {prefix}"),
            Dep::Service(name) => write!(f, "service {name}"),
            Dep::Services => f.write_str("catalog services"),
            Dep::Nodes => f.write_str("catalog nodes"),
        }
    }
}

/// KV pairs by key (`/a/b` → value).
pub type KvMap = BTreeMap<String, String>;

/// The answer to a [`Dep`], reduced to what templates can see (so a change elsewhere, such as a
/// check's output, does not cause a render).
#[derive(Debug, Clone, PartialEq)]
pub enum DepData {
    Kv(Arc<KvMap>),
    Service(Arc<Vec<Instance>>),
    Services(Arc<BTreeMap<String, Vec<String>>>),
    Nodes(Arc<Vec<NodeInfo>>),
}

/// One instance of a service as the `service` helper returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub node: String,
    /// The service's address, or its node's when the service has none.
    pub address: String,
    pub port: u16,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    /// `passing`, `warning` or `critical`: the worst of the node's and the service's checks.
    pub status: String,
}

/// One catalog node as the `nodes` helper returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeInfo {
    pub node: String,
    pub address: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub datacenter: String,
    pub meta: BTreeMap<String, String>,
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The backend cannot be reached (the agent is down or restarting): retry with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// The backend answered, with an error (an ACL denial, a bad request).
    #[error("{0}")]
    Failed(String),
    /// This backend cannot answer this kind of dependency at all.
    #[error("{0}")]
    Unsupported(String),
}

/// The configured backend.
pub enum Backend {
    Consul(consul::ConsulBackend),
    File(Arc<file::FileBackend>),
    Env(env::EnvBackend),
}

impl Backend {
    /// The value of `dep` and its index. With `blocking`, waits (bounded) for an index greater
    /// than `index` first; a backend that cannot tell changes returns at once and says so with
    /// [`Backend::can_block`].
    pub async fn fetch(
        &self,
        dep: &Dep,
        index: u64,
        blocking: bool,
    ) -> Result<(DepData, u64), FetchError> {
        match self {
            Backend::Consul(b) => b.fetch(dep, index, blocking).await,
            Backend::File(b) => b.fetch(dep, index, blocking).await,
            Backend::Env(b) => b.fetch(dep),
        }
    }

    /// Whether a blocking fetch waits for a change (the env backend never sees one).
    pub fn can_block(&self) -> bool {
        !matches!(self, Backend::Env(_))
    }

    /// A short description for logs: `consul 127.0.0.1:8500`, `file a.yaml`, `env`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Consul(b) => format!("consul {}", b.describe()),
            Backend::File(b) => format!("file {}", b.describe()),
            Backend::Env(_) => "env".to_string(),
        }
    }
}

/// Whether `key` is `prefix` or lies under it (`/a` holds `/a` and `/a/b`, not `/ab`).
pub fn under_prefix(key: &str, prefix: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    key == prefix
        || (key.len() > prefix.len()
            && key.starts_with(prefix)
            && key[prefix.len()..].starts_with('/'))
}

/// The pairs of `all` under `prefix`.
pub fn kv_subset(all: &KvMap, prefix: &str) -> KvMap {
    if prefix.is_empty() || prefix == "/" {
        return all.clone();
    }
    all.range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| under_prefix(k, prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Normalises a key or prefix to confd's form: one leading `/`, no trailing `/`, no `//`
/// (`""` and `/` both become `/`).
pub fn normalize_key(key: &str) -> String {
    let parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// Joins prefixes the way confd's `path.Join` does: `/prod` + `/nginx` = `/prod/nginx`.
pub fn join_key(a: &str, b: &str) -> String {
    normalize_key(&format!("{a}/{b}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_path_boundaries() {
        assert!(under_prefix("/a", "/a"));
        assert!(under_prefix("/a/b", "/a"));
        assert!(under_prefix("/a/b", "/a/"));
        assert!(!under_prefix("/ab", "/a"));
        assert!(under_prefix("/anything", "/"));
        let all: KvMap = [("/a", "1"), ("/a/b", "2"), ("/ab", "3"), ("/b", "4")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sub = kv_subset(&all, "/a");
        assert_eq!(sub.keys().collect::<Vec<_>>(), ["/a", "/a/b"]);
        assert_eq!(kv_subset(&all, "/").len(), 4);
    }

    #[test]
    fn keys_normalise_like_confd() {
        assert_eq!(normalize_key("nginx/"), "/nginx");
        assert_eq!(normalize_key("//a//b/"), "/a/b");
        assert_eq!(normalize_key(""), "/");
        assert_eq!(join_key("/prod", "/nginx"), "/prod/nginx");
        assert_eq!(join_key("", "/nginx"), "/nginx");
        assert_eq!(join_key("/", "/"), "/");
    }
}
