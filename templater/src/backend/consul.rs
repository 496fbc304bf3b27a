//! The `consul` backend: Muster or Consul through `muster-api`'s client.
//!
//! Every dependency task shares one client per agent address. The first request to an address
//! (and the first after it failed) probes it: HTTP/2 with prior knowledge first, so that every
//! blocking query travels as a stream of one connection (Muster answers h2c), and HTTP/1.1 with
//! a small keep-alive pool when the agent does not speak it (Consul). Several `-node` addresses
//! are tried in turn; a transport error moves on to the next one. Over https (`-scheme https` or
//! an `https://` node) there is no h2c to probe: TLS's ALPN picks HTTP/2 or HTTP/1.1.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use muster_api::client::percent_encode;
use muster_api::{
    Client, ClientConfig, Error as ApiError, HealthStatus, QueryOptions, ServiceEntry, TlsConfig,
};
use tokio::sync::Mutex;

use super::{Dep, DepData, FetchError, Instance, KvMap, NodeInfo};

/// How long the agent may hold one blocking query.
pub const BLOCKING_WAIT: Duration = Duration::from_secs(60);

/// Which protocol an agent address speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http2,
    Http1,
}

/// Options of the consul backend.
#[derive(Debug, Clone, Default)]
pub struct ConsulOptions {
    /// `host:port`, `http://host:port` or `https://host:port`, tried in order.
    pub nodes: Vec<String>,
    pub token: Option<String>,
    /// Reach scheme-less (and `http://`) nodes over https (`-scheme https`).
    pub https: bool,
    /// CA, client certificate and key, ... for https nodes.
    pub tls: TlsConfig,
    /// `None`: probe h2c, fall back to HTTP/1.1. `Some(Http1)`: never try h2c.
    pub force_proto: Option<Proto>,
}

struct NodeClients {
    address: String,
    /// Over https this is `h1` again: ALPN negotiates the protocol, there is no h2c.
    h2: Client,
    h1: Client,
    tls: bool,
}

struct State {
    /// The node in use.
    current: usize,
    /// Its protocol once a probe found it; `None` until then (and after a failure).
    proto: Option<Proto>,
    /// Bumped on every failure, so a hundred tasks that see the same failure move on once.
    generation: u64,
}

/// A Consul-API backend over one or more agent addresses.
pub struct ConsulBackend {
    nodes: Vec<NodeClients>,
    force_proto: Option<Proto>,
    state: Mutex<State>,
}

impl ConsulBackend {
    pub fn new(opts: ConsulOptions) -> Result<ConsulBackend, String> {
        let addresses = if opts.nodes.is_empty() {
            vec![muster_api::client::DEFAULT_ADDRESS.to_string()]
        } else {
            opts.nodes.clone()
        };
        let mut nodes = Vec::new();
        for address in addresses {
            let config = |h2: bool| ClientConfig {
                address: address.clone(),
                token: opts.token.clone(),
                https: opts.https,
                tls: opts.tls.clone(),
                connect_timeout: Duration::from_secs(5),
                request_timeout: Some(Duration::from_secs(30)),
                http2_prior_knowledge: h2,
                ..Default::default()
            };
            let h1 = Client::new(config(false)).map_err(|e| format!("-node {address}: {e}"))?;
            let tls = h1.address().starts_with("https://");
            let h2 = if tls {
                h1.clone()
            } else {
                Client::new(config(true)).map_err(|e| format!("-node {address}: {e}"))?
            };
            nodes.push(NodeClients {
                address,
                h2,
                h1,
                tls,
            });
        }
        Ok(ConsulBackend {
            nodes,
            force_proto: opts.force_proto,
            state: Mutex::new(State {
                current: 0,
                proto: None,
                generation: 0,
            }),
        })
    }

    pub fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The protocol in use, once known (for tests and the bench).
    pub async fn proto(&self) -> Option<Proto> {
        self.state.lock().await.proto
    }

    /// The client to use now, probing the current node (and the next ones) when needed.
    async fn client(&self) -> Result<(Client, u64), FetchError> {
        let mut state = self.state.lock().await;
        if let Some(proto) = state.proto {
            let node = &self.nodes[state.current];
            let client = if proto == Proto::Http2 {
                &node.h2
            } else {
                &node.h1
            };
            return Ok((client.clone(), state.generation));
        }
        let mut errors = Vec::new();
        for step in 0..self.nodes.len() {
            let i = (state.current + step) % self.nodes.len();
            let node = &self.nodes[i];
            match self.probe(node).await {
                Ok(proto) => {
                    if proto == Proto::Http1 && self.force_proto.is_none() && !node.tls {
                        tracing::debug!(agent = %node.address, "no h2c: using HTTP/1.1");
                    }
                    state.current = i;
                    state.proto = Some(proto);
                    let client = if proto == Proto::Http2 {
                        &node.h2
                    } else {
                        &node.h1
                    };
                    return Ok((client.clone(), state.generation));
                }
                Err(e) => errors.push(format!("{}: {e}", node.address)),
            }
        }
        Err(FetchError::Unavailable(errors.join("; ")))
    }

    /// Which protocol `node` answers: any HTTP answer (even an error status) counts.
    async fn probe(&self, node: &NodeClients) -> Result<Proto, ApiError> {
        let answered = |r: &Result<String, ApiError>| !matches!(r, Err(ApiError::Transport(_)));
        if self.force_proto != Some(Proto::Http1) && !node.tls {
            let r = node.h2.status_leader().await;
            if answered(&r) {
                return Ok(Proto::Http2);
            }
        }
        let r = node.h1.status_leader().await;
        match r {
            Err(e @ ApiError::Transport(_)) => Err(e),
            _ => Ok(Proto::Http1),
        }
    }

    /// After a transport error on the client of `generation`: forget the protocol and move to
    /// the next node (once, however many tasks saw the error).
    async fn failed(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation == generation {
            state.generation += 1;
            state.proto = None;
            state.current = (state.current + 1) % self.nodes.len();
        }
    }

    pub async fn fetch(
        &self,
        dep: &Dep,
        index: u64,
        blocking: bool,
    ) -> Result<(DepData, u64), FetchError> {
        let (client, generation) = self.client().await?;
        let opts = QueryOptions {
            index: (blocking && index > 0).then_some(index),
            wait: (blocking && index > 0).then_some(BLOCKING_WAIT),
            ..Default::default()
        };
        let result = fetch_with(&client, dep, &opts).await;
        match result {
            Ok(v) => Ok(v),
            Err(ApiError::Transport(e)) => {
                self.failed(generation).await;
                Err(FetchError::Unavailable(e))
            }
            Err(e) => Err(FetchError::Failed(e.to_string())),
        }
    }
}

async fn fetch_with(
    client: &Client,
    dep: &Dep,
    opts: &QueryOptions,
) -> Result<(DepData, u64), ApiError> {
    match dep {
        Dep::Kv(prefix) => {
            let raw = prefix.trim_start_matches('/');
            let (pairs, meta) = client.kv_list(raw, opts).await?;
            let mut map = KvMap::new();
            for pair in pairs {
                if pair.key.ends_with('/') {
                    continue; // a "folder" marker, not a value
                }
                let key = format!("/{}", pair.key);
                if !super::under_prefix(&key, prefix) {
                    continue;
                }
                let value = pair
                    .value
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                map.insert(key, value);
            }
            Ok((DepData::Kv(Arc::new(map)), meta.last_index))
        }
        Dep::Service(name) => {
            let path = format!("/v1/health/service/{}", percent_encode(name));
            let (entries, meta) = client.get_json::<Vec<ServiceEntry>>(&path, opts).await?;
            let instances = entries.into_iter().map(instance).collect();
            Ok((DepData::Service(Arc::new(instances)), meta.last_index))
        }
        Dep::Services => {
            let (services, meta) = client
                .get_json::<BTreeMap<String, Vec<String>>>("/v1/catalog/services", opts)
                .await?;
            Ok((DepData::Services(Arc::new(services)), meta.last_index))
        }
        Dep::Nodes => {
            let (nodes, meta) = client
                .get_json::<Vec<muster_api::Node>>("/v1/catalog/nodes", opts)
                .await?;
            let nodes = nodes
                .into_iter()
                .map(|n| NodeInfo {
                    node: n.node,
                    address: n.address,
                    id: n.id,
                    datacenter: n.datacenter,
                    meta: n.meta,
                })
                .collect();
            Ok((DepData::Nodes(Arc::new(nodes)), meta.last_index))
        }
    }
}

/// A health entry reduced to what the `service` helper shows.
pub fn instance(entry: ServiceEntry) -> Instance {
    let status = entry
        .checks
        .iter()
        .fold(HealthStatus::Passing, |acc, c| acc.worst(c.status));
    let address = if entry.service.address.is_empty() {
        entry.node.address.clone()
    } else {
        entry.service.address.clone()
    };
    Instance {
        node: entry.node.node,
        address,
        port: entry.service.port,
        id: entry.service.id,
        name: entry.service.service,
        tags: entry.service.tags,
        meta: entry.service.meta,
        status: status.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_api::{AgentService, HealthCheck, Node};

    #[test]
    fn an_instance_takes_the_worst_check_and_the_node_address_as_fallback() {
        let entry = ServiceEntry {
            node: Node {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            service: AgentService {
                id: "web-1".into(),
                service: "web".into(),
                port: 80,
                tags: vec!["v1".into()],
                ..Default::default()
            },
            checks: vec![
                HealthCheck {
                    status: HealthStatus::Passing,
                    ..Default::default()
                },
                HealthCheck {
                    status: HealthStatus::Warning,
                    ..Default::default()
                },
            ],
        };
        let i = instance(entry);
        assert_eq!(i.address, "10.0.0.1");
        assert_eq!(i.status, "warning");
        assert_eq!(
            (i.id.as_str(), i.name.as_str(), i.port),
            ("web-1", "web", 80)
        );
    }
}
