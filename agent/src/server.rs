//! Wiring: from one resolved [`Config`] to a running agent — the state store, the Raft node,
//! the HTTP listeners and the leader's housekeeping — and back down again on a signal or a
//! leave. [`Agent::start`] takes already-bound listeners and a cancellation token from its
//! caller, so tests run agents in-process on port 0; [`run`] is what `muster agent` does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use muster_api::Member;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;

use crate::config::Config;
use crate::error::Error;
use crate::local::definition::{ScriptPolicy, Source};
use crate::local::sync::{CatalogTarget, NodeView};
use crate::local::{LocalState, NodeInfo};
use crate::membership::{MemberInfo, MemberStatus, MembershipView};
use crate::raft::{self, NodeId, Raft};
use crate::state::{Command, Request, Response, Store};

/// How a read may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The leader answers from its state.
    Default,
    /// The leader first confirms with a quorum that it still leads (read-index).
    Consistent,
    /// Any server answers from its state, however old.
    Stale,
}

/// What a read reports about its freshness.
#[derive(Debug, Clone, Copy)]
pub struct ReadMeta {
    pub known_leader: bool,
    pub last_contact: Duration,
    pub consistency: Consistency,
}

/// The bound listeners an agent serves its HTTP API on: plain HTTP, and HTTPS (served with the
/// TLS of `Config::https_tls`, read when the agent starts). A `Vec<TcpListener>` is HTTP only.
#[derive(Debug, Default)]
pub struct ApiListeners {
    pub http: Vec<TcpListener>,
    pub https: Vec<TcpListener>,
}

impl From<Vec<TcpListener>> for ApiListeners {
    fn from(http: Vec<TcpListener>) -> Self {
        ApiListeners {
            http,
            https: Vec::new(),
        }
    }
}

/// A running agent, shared by every request handler.
pub struct Agent {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub raft: Raft,
    /// The write path into `raft` (group commit).
    pub(crate) proposer: raft::Proposer,
    /// Connections to the other servers (Raft and forwarding share them).
    pub rpc: Arc<crate::rpc::Pool>,
    /// Who is in the cluster: gossip's view (see [`Agent::membership`]).
    pub membership: MembershipView,
    /// When a leader last sent entries or a heartbeat, in ms since `started` (0: never).
    leader_contact: std::sync::atomic::AtomicU64,
    /// Rotates the server a client agent calls first.
    pub(crate) next_server: std::sync::atomic::AtomicUsize,
    pub raft_id: NodeId,
    /// The node's UUID.
    pub node_id: String,
    /// Cancelled to stop the agent (signal or `PUT /v1/agent/leave`).
    pub shutdown: CancellationToken,
    /// The Raft node itself, for shutdown.
    node: tokio::sync::Mutex<raft::Node>,
    started: std::time::Instant,
    /// User events this agent has seen, and how it fires them.
    pub events: Arc<crate::events::Events>,
    /// The `watches` of the configuration, running once the HTTP API is up.
    pub watches: crate::watch::config::AgentWatches,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    /// The HTTPS listeners' TLS, replaced on reload (`None` without HTTPS listeners).
    https_tls: Option<Arc<crate::http::tls::ServerTls>>,
    /// The services and checks this agent owns, and their runners.
    pub local: Arc<LocalState>,
    /// The leader's session TTL timers (see `session_ttl`).
    pub session_timers: Arc<crate::session_ttl::Timers>,
    /// LAN gossip (`None` when `ports.serf_lan` is -1).
    pub gossip: Option<crate::gossip::Gossip>,
    /// Set when the agent stops because it must (retry-join exhausted): `run` fails with it.
    fatal: std::sync::OnceLock<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Agent {
    /// Starts the store, Raft, the HTTP API on `http` (HTTP and HTTPS listeners) and DNS on
    /// `dns` (already bound). The agent runs until `shutdown` is cancelled; then
    /// [`Agent::stop`] finishes it.
    pub async fn start(
        config: Config,
        http: impl Into<ApiListeners>,
        dns: crate::dns::Sockets,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Agent>, JoinSet<()>), Error> {
        Agent::start_cluster(config, http, dns, None, None, shutdown).await
    }

    /// [`Agent::start`] for a member of a cluster: `rpc` is the bound server RPC listener
    /// (servers). `membership` is who is in the cluster: `None` (what `muster agent` passes)
    /// is gossip's view — or, without a LAN port, a view of this agent alone, which is all
    /// `-dev` and `-bootstrap` need; tests may feed a view of their own.
    pub async fn start_cluster(
        config: Config,
        http: impl Into<ApiListeners>,
        dns: crate::dns::Sockets,
        rpc: Option<TcpListener>,
        membership: Option<MembershipView>,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Agent>, JoinSet<()>), Error> {
        let ApiListeners { http, https } = http.into();
        let config = Arc::new(config);
        // The certificate files first: an agent that cannot serve HTTPS does not start.
        let https_tls = if https.is_empty() {
            None
        } else {
            Some(Arc::new(crate::http::tls::ServerTls::load(
                &config.https_tls,
                config.limits.https_handshake_timeout,
            )?))
        };
        // And the server RPC's (`tls.internal_rpc`): the listener's on a server that has one,
        // the calling side's on every agent with `verify_outgoing`.
        let rpc_server_tls = match &rpc {
            Some(_) => crate::rpc::ServerTls::load(
                &config.rpc_tls.listener,
                config.limits.rpc_handshake_timeout,
            )?
            .map(Arc::new),
            None => None,
        };
        let rpc_client_tls =
            crate::rpc::ClientTls::load(&config.rpc_tls, &config.datacenter, &config.domain)?;
        if let Some(dir) = &config.data_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Storage(format!("cannot create data dir {}: {e}", dir.display()))
            })?;
        }
        let node_id = node_id(&config)?;
        let uuid = uuid::Uuid::parse_str(&node_id)
            .map_err(|e| Error::Storage(format!("node id {node_id:?} is not a UUID: {e}")))?;
        let raft_id = raft::node_id_from_uuid(&uuid);
        let store = Arc::new(Store::default());
        let pool = crate::rpc::Pool::new();
        if let Some(tls) = rpc_client_tls {
            pool.set_tls(Arc::new(tls));
        }
        // Every call says who makes it (datacenter, cluster id once committed), so that another
        // datacenter's or cluster's servers refuse it (see `rpc::refusal`).
        {
            let datacenter = config.datacenter.clone();
            let store = store.clone();
            let server = config.server;
            pool.set_identity(Arc::new(move || crate::rpc::Identity {
                datacenter: datacenter.clone(),
                cluster: if server {
                    store.read().cluster_id
                } else {
                    None
                },
            }));
        }
        // Gossip first: Raft membership (bootstrap-expect, learners, cleanup) and forwarding
        // follow its view. A caller may bring its own view (in-process cluster tests).
        let tags = member_tags(&config, &node_id);
        let (gossip, gossip_view, gossip_task) = start_gossip(&config, tags, &shutdown).await?;
        let membership = membership.unwrap_or(gossip_view);
        let node = raft::start_with_network(
            raft_id,
            server_address(&config),
            // A client agent's Raft node is never initialised (it has no Raft state; its
            // requests go to servers): keep it in memory.
            raft::Storage {
                dir: config.data_dir.as_deref().filter(|_| config.server),
            },
            &config.raft,
            store.clone(),
            config.server && (config.bootstrap || config.dev),
            raft::network::Network::new(pool.clone()),
        )
        .await?;
        let http_addrs = http.iter().filter_map(|l| l.local_addr().ok()).collect();
        let https_addrs = https.iter().filter_map(|l| l.local_addr().ok()).collect();
        let (services, checks) = config.definitions()?;
        let local = LocalState::new(
            NodeInfo {
                id: node_id.clone(),
                name: config.node_name.clone(),
                address: config.advertise().to_string(),
                datacenter: config.datacenter.clone(),
                meta: config.node_meta.clone(),
            },
            config.data_dir.clone(),
            store.clone(),
            shutdown.child_token(),
        );
        let events = {
            let local = local.clone();
            crate::events::Events::new(
                config.node_name.clone(),
                Arc::new(move || {
                    local
                        .services()
                        .into_iter()
                        .map(|s| (s.service, s.tags))
                        .collect()
                }),
            )
        };
        let watch_defs = crate::watch::config::parse_all(&config.watches)
            .map_err(|e| Error::Config(crate::config::ConfigError::Invalid(e)))?;
        let watches = match (http.first(), https.first()) {
            (Some(l), _) => crate::watch::config::AgentWatches::new(
                l.local_addr().ok(),
                None,
                shutdown.child_token(),
            ),
            (None, Some(l)) => crate::watch::config::AgentWatches::new(
                l.local_addr().ok(),
                Some(watch_tls(&config.https_tls)),
                shutdown.child_token(),
            ),
            (None, None) => {
                crate::watch::config::AgentWatches::new(None, None, shutdown.child_token())
            }
        };
        for s in services {
            local
                .add_service(s, Source::Local, false)
                .map_err(local_error)?;
        }
        for c in checks {
            local.add_check(c, Source::Local).map_err(local_error)?;
        }
        let restored = local.load_persisted(&config.datacenter, script_policy(&config));
        if restored > 0 {
            tracing::info!(
                count = restored,
                "restored services and checks registered through the API"
            );
        }
        let agent = Arc::new(Agent {
            gossip,
            fatal: std::sync::OnceLock::new(),
            config,
            store,
            raft: node.raft.clone(),
            proposer: raft::Proposer::spawn(node.raft.clone()),
            rpc: pool,
            membership,
            leader_contact: std::sync::atomic::AtomicU64::new(0),
            next_server: std::sync::atomic::AtomicUsize::new(0),
            raft_id,
            node_id,
            shutdown: shutdown.clone(),
            node: tokio::sync::Mutex::new(node),
            events,
            watches,
            started: std::time::Instant::now(),
            http_addrs,
            https_addrs,
            https_tls: https_tls.clone(),
            local: local.clone(),
            session_timers: Arc::default(),
        });

        let mut tasks = JoinSet::new();
        for listener in http {
            let service = crate::http::service(agent.clone());
            tasks.spawn(crate::http::serve(listener, service, shutdown.clone()));
        }
        if let Some(tls) = &https_tls {
            for listener in https {
                let listener = crate::http::tls::TlsListener::new(listener, tls.clone());
                let service = crate::http::service(agent.clone());
                tasks.spawn(crate::http::serve(listener, service, shutdown.clone()));
            }
        }
        // The HTTP API is serving: the configured watches can query it.
        agent.watches.apply(watch_defs);
        tasks.spawn(crate::dns::serve(agent.clone(), dns, shutdown.clone()));
        if let Some(listener) = rpc {
            let handler = Arc::new(crate::cluster::RpcHandler::new(agent.clone()));
            tasks.spawn(crate::rpc::serve(
                listener,
                handler,
                rpc_server_tls,
                shutdown.clone(),
            ));
        }
        if agent.config.server {
            tasks.spawn(crate::cluster::reconcile::run(agent.clone()));
            if let Some(expect) = agent
                .config
                .bootstrap_expect
                .filter(|_| !agent.config.bootstrap)
            {
                tasks.spawn(crate::cluster::reconcile::bootstrap_expect(
                    agent.clone(),
                    expect,
                ));
            }
        }
        tasks.spawn(reap_tombstones(agent.clone()));
        tasks.spawn(crate::leader::run(agent.clone()));
        tasks.spawn(crate::session_ttl::run(agent.clone()));
        tasks.spawn(crate::local::sync::run(
            local.clone(),
            Arc::new(AgentCatalog(Arc::downgrade(&agent))),
            shutdown.clone(),
        ));
        tasks.spawn(reap_critical(local, shutdown.clone()));
        if let Some(task) = gossip_task {
            tasks.spawn(async move {
                let _ = task.await;
            });
        }
        if let Some(g) = &agent.gossip {
            // User events reach every member through gossip (local delivery otherwise).
            crate::events::gossip::install(&agent.events, g.clone(), shutdown.child_token());
            if !agent.config.retry_join.is_empty() {
                let joined = crate::gossip::join::retry_join(
                    g.clone(),
                    agent.config.retry_join.clone(),
                    agent.config.retry_interval,
                    agent.config.retry_max,
                    shutdown.clone(),
                );
                let weak = Arc::downgrade(&agent);
                tasks.spawn(async move {
                    if let (Err(e), Some(agent)) = (joined.await, weak.upgrade()) {
                        let _ = agent.fatal.set(e);
                    }
                });
            }
        }
        Ok((agent, tasks))
    }

    /// Stops Raft and flushes storage; call after `shutdown` is cancelled and the tasks ended.
    pub async fn stop(&self) {
        if let Err(e) = self.node.lock().await.shutdown().await {
            tracing::error!(error = %e, "raft shutdown");
        }
    }

    /// Re-reads the config files and applies the difference in service and check
    /// definitions and in watches, and re-reads the HTTPS certificate, key and CA files (with
    /// the `tls` settings of the new config) for the connections accepted from then on (`muster
    /// reload`, `PUT /v1/agent/reload`, SIGHUP). Other settings need a restart, as most of
    /// Consul's do. The TLS files are read before anything is applied: a reload with files
    /// that cannot be used fails and keeps the TLS in use.
    pub fn reload(&self) -> Result<(), Error> {
        let config = crate::config::from_agent_args(self.config.args.clone())?;
        let (services, checks) = config.definitions()?;
        let watches = crate::watch::config::parse_all(&config.watches)
            .map_err(|e| Error::Config(crate::config::ConfigError::Invalid(e)))?;
        let tls = match (&self.https_tls, config.ports.https) {
            (Some(tls), Some(_)) => Some((
                tls,
                crate::http::tls::ServerTls::prepare(
                    &config.https_tls,
                    config.limits.https_handshake_timeout,
                )?,
            )),
            _ => None,
        };
        self.local.reload(services, checks).map_err(local_error)?;
        self.watches.apply(watches);
        if let Some((tls, next)) = tls {
            tls.install(next);
            tracing::info!("reloaded the HTTPS certificate and TLS settings");
        }
        tracing::info!("reloaded service and check definitions");
        Ok(())
    }

    /// The HTTP addresses this agent serves on.
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// The HTTPS addresses this agent serves on.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https_addrs
    }

    /// The one write path: commits `command` through Raft (via the proposer's group commit),
    /// stamped with this agent's clock.
    /// On a follower the write is forwarded to the leader (see `cluster`).
    pub async fn write(&self, command: Command) -> Result<Response, Error> {
        self.write_request(Request {
            time_ms: now_ms(),
            command,
        })
        .await
    }

    /// Records that the leader just reached this follower (for `X-Consul-LastContact`).
    pub(crate) fn note_leader_contact(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.leader_contact
            .store(ms.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    fn since_leader_contact(&self) -> Duration {
        match self
            .leader_contact
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => Duration::ZERO,
            at => self
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(at)),
        }
    }

    /// Checks that a read of the given consistency may be answered here, and how fresh it is.
    /// On a follower, default and `consistent` reads first wait until this server has applied
    /// the index the leader names (see `cluster`), then are answered locally.
    pub async fn read_gate(&self, consistency: Consistency) -> Result<ReadMeta, Error> {
        let leader = self.raft.metrics().borrow().current_leader;
        let is_leader = leader == Some(self.raft_id);
        let meta = ReadMeta {
            known_leader: leader.is_some(),
            last_contact: if is_leader {
                Duration::ZERO
            } else {
                self.since_leader_contact()
            },
            consistency,
        };
        match consistency {
            Consistency::Stale => Ok(meta),
            Consistency::Default if is_leader => Ok(meta),
            Consistency::Default | Consistency::Consistent => {
                // Boxed: with openraft's read-index and the RPC inside, this future is
                // kilobytes; inline it would sit in the state machine of every read
                // handler — every parked blocking query — not only in the reads that use it.
                Box::pin(self.follower_read_index(consistency == Consistency::Consistent)).await?;
                let leader = self.raft.metrics().borrow().current_leader;
                Ok(ReadMeta {
                    known_leader: leader.is_some(),
                    last_contact: if leader == Some(self.raft_id) {
                        Duration::ZERO
                    } else {
                        self.since_leader_contact()
                    },
                    consistency,
                })
            }
        }
    }

    /// The leader's server address (`ip:server-port`), if there is a leader.
    pub fn leader_address(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// The voters' server addresses.
    pub fn peer_addresses(&self) -> Vec<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| n.addr.clone()))
            .collect()
    }

    /// The membership view: every gossip member (this agent included) with its tags and
    /// status, republished on every change. The one seam through which Raft membership,
    /// forwarding and the leader's reconcile learn who is in the cluster.
    pub fn membership(&self) -> MembershipView {
        self.membership.clone()
    }

    /// Leaves the cluster gracefully, in Consul's order: a leading server first removes
    /// itself from the Raft configuration, then the LAN pool is told (others see `left`),
    /// then a server that was not the leader waits for the leader to remove it (see
    /// [`Agent::wait_removed_from_raft`]). Gossip alone without a LAN port.
    pub async fn leave(&self) -> Result<(), Error> {
        let was_leader = self.leave_raft_as_leader().await;
        if let Some(g) = &self.gossip {
            g.leave().await?;
        }
        if !was_leader {
            self.wait_removed_from_raft().await;
        }
        Ok(())
    }

    /// This node as a gossip member.
    pub fn member(&self) -> Member {
        let me = self
            .membership
            .borrow()
            .iter()
            .find(|m| m.name == self.config.node_name)
            .cloned();
        match me {
            Some(m) => api_member(&m),
            None => api_member(&MemberInfo {
                name: self.config.node_name.clone(),
                addr: self.config.advertise(),
                port: self.config.ports.serf_lan.unwrap_or(8301),
                tags: member_tags(&self.config, &self.node_id),
                status: MemberStatus::Alive,
            }),
        }
    }
}

/// A member as `/v1/agent/members` answers it.
pub fn api_member(m: &MemberInfo) -> Member {
    Member {
        name: m.name.clone(),
        addr: m.addr.to_string(),
        port: m.port,
        tags: m.tags.clone(),
        status: m.status as u8,
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    }
}

/// Binds the gossip socket and starts gossip; without a LAN port, a fixed view of this agent.
async fn start_gossip(
    config: &Config,
    tags: BTreeMap<String, String>,
    shutdown: &CancellationToken,
) -> Result<
    (
        Option<crate::gossip::Gossip>,
        MembershipView,
        Option<tokio::task::JoinHandle<()>>,
    ),
    Error,
> {
    let Some(port) = config.ports.serf_lan else {
        let me = MemberInfo {
            name: config.node_name.clone(),
            addr: config.advertise(),
            port: 0,
            tags,
            status: MemberStatus::Alive,
        };
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(vec![me]));
        // Keep the sender alive as long as the agent: the view never changes.
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            drop(tx);
        });
        return Ok((None, rx, None));
    };
    let bind = SocketAddr::new(config.bind_addr, port);
    let socket = tokio::net::UdpSocket::bind(bind).await.map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("Error starting agent: Failed to start LAN gossip: listen udp {bind}: {e}"),
        ))
    })?;
    let key = match &config.encrypt {
        Some(k) => Some(
            crate::gossip::crypto::Keyring::from_base64(k)
                .map_err(|e| Error::Config(crate::config::ConfigError::Invalid(e)))?,
        ),
        None => None,
    };
    let settings = crate::gossip::Settings {
        name: config.node_name.clone(),
        advertise: SocketAddr::new(config.advertise(), port),
        tags,
        key,
        reconnect_timeout: config.reconnect_timeout,
        timings: config.gossip_lan.clone(),
    };
    let (gossip, task) = crate::gossip::Gossip::start(settings, socket, shutdown.clone())?;
    let view = gossip.view();
    Ok((Some(gossip), view, Some(task)))
}

/// This agent's serf tags (role, dc, id, build, versions, and a server's port/bootstrap/expect).
pub fn member_tags(c: &Config, node_id: &str) -> BTreeMap<String, String> {
    {
        let mut tags = BTreeMap::from([
            (
                "role".to_string(),
                if c.server { "consul" } else { "node" }.to_string(),
            ),
            ("dc".to_string(), c.datacenter.clone()),
            ("segment".to_string(), String::new()),
            ("id".to_string(), node_id.to_string()),
            (
                "build".to_string(),
                format!(
                    "{}:muster-{}",
                    crate::CONSUL_API_VERSION,
                    crate::MUSTER_VERSION
                ),
            ),
            ("vsn".to_string(), "2".to_string()),
            ("vsn_min".to_string(), "2".to_string()),
            ("vsn_max".to_string(), "3".to_string()),
            ("raft_vsn".to_string(), "3".to_string()),
        ]);
        if c.server {
            if let Some(p) = c.ports.server {
                tags.insert("port".to_string(), p.to_string());
            }
            if c.bootstrap || c.dev {
                tags.insert("bootstrap".to_string(), "1".to_string());
            }
            if let Some(n) = c.bootstrap_expect {
                tags.insert("expect".to_string(), n.to_string());
            }
        }
        tags
    }
}

impl Agent {
    /// `DebugConfig` of `/v1/agent/self`: the resolved configuration, Consul's names.
    pub fn debug_config(&self) -> serde_json::Value {
        let c = &self.config;
        let port = |p: Option<u16>| p.map(i64::from).unwrap_or(-1);
        serde_json::json!({
            "Datacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": self.node_id,
            "ServerMode": c.server,
            "Bootstrap": c.bootstrap,
            "BootstrapExpect": c.bootstrap_expect.unwrap_or(0),
            "DevMode": c.dev,
            "DataDir": c.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            "BindAddr": c.bind_addr.to_string(),
            "AdvertiseAddrLAN": c.advertise().to_string(),
            "ClientAddrs": c.client_addr.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "HTTPPort": port(c.ports.http),
            "HTTPSPort": port(c.ports.https),
            "DNSPort": port(c.ports.dns),
            "ServerPort": port(c.ports.server),
            "SerfPortLAN": port(c.ports.serf_lan),
            "SerfPortWAN": port(c.ports.serf_wan),
            "GRPCPort": port(c.ports.grpc),
            "DNSDomain": c.domain,
            "LogLevel": c.log_level,
            "UIConfig": { "Enabled": c.ui },
            "KVMaxValueSize": c.limits.kv_max_value_size,
            "TxnMaxReqLen": c.limits.txn_max_ops,
            "RaftSnapshotThreshold": c.raft.snapshot_threshold,
            "RaftTrailingLogs": c.raft.trailing_logs,
            "EnableScriptChecks": c.enable_script_checks,
            "EnableLocalScriptChecks": c.enable_local_script_checks,
            "Version": crate::CONSUL_API_VERSION,
            "MusterVersion": crate::MUSTER_VERSION,
        })
    }

    /// `Stats` of `/v1/agent/self` (what `muster info` prints).
    pub fn stats(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let s = |v: &dyn ToString| v.to_string();
        let is_leader = m.current_leader == Some(self.raft_id);
        let tables = self.store.read();
        let section = |pairs: Vec<(&str, String)>| {
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>()
        };
        BTreeMap::from([
            (
                "agent".to_string(),
                section(vec![
                    ("checks", s(&0)),
                    ("check_monitors", s(&0)),
                    ("check_ttls", s(&0)),
                    ("services", s(&0)),
                ]),
            ),
            (
                "build".to_string(),
                section(vec![
                    ("version", crate::CONSUL_API_VERSION.to_string()),
                    ("muster_version", crate::MUSTER_VERSION.to_string()),
                    ("prerelease", String::new()),
                    ("revision", String::new()),
                ]),
            ),
            (
                "consul".to_string(),
                section(vec![
                    ("server", s(&self.config.server)),
                    ("leader", s(&is_leader)),
                    (
                        "leader_addr",
                        m.current_leader
                            .and_then(|l| m.membership_config.membership().get_node(&l))
                            .map(|n| n.addr.clone())
                            .unwrap_or_default(),
                    ),
                    ("bootstrap", s(&self.config.bootstrap)),
                    ("known_datacenters", s(&1)),
                    ("acl", "disabled".to_string()),
                ]),
            ),
            (
                "raft".to_string(),
                section(vec![
                    ("state", format!("{:?}", m.state)),
                    ("term", s(&m.current_term)),
                    ("last_log_index", s(&m.last_log_index.unwrap_or(0))),
                    (
                        "applied_index",
                        s(&m.last_applied.map(|l| l.index).unwrap_or(0)),
                    ),
                    (
                        "last_snapshot_index",
                        s(&m.snapshot.map(|l| l.index).unwrap_or(0)),
                    ),
                    (
                        "num_peers",
                        s(&m.membership_config
                            .membership()
                            .voter_ids()
                            .count()
                            .saturating_sub(1)),
                    ),
                    ("protocol_version", s(&3)),
                ]),
            ),
            (
                "runtime".to_string(),
                section(vec![
                    ("os", std::env::consts::OS.to_string()),
                    ("arch", std::env::consts::ARCH.to_string()),
                    (
                        "cpu_count",
                        s(&std::thread::available_parallelism()
                            .map(|n| n.get())
                            .unwrap_or(1)),
                    ),
                    ("uptime", format!("{:?}", self.started.elapsed())),
                ]),
            ),
            (
                "kv".to_string(),
                section(vec![
                    ("keys", s(&tables.kv.len())),
                    ("tombstones", s(&tables.tombstones.len())),
                ]),
            ),
            (
                "serf_lan".to_string(),
                self.gossip.as_ref().map(|g| g.stats()).unwrap_or_default(),
            ),
        ])
    }
}

/// This agent as an alive member of a view of its own (for callers of
/// [`Agent::start_cluster`] that bring their view, such as in-process cluster tests).
pub fn self_member(c: &Config, node_id: &str) -> MemberInfo {
    MemberInfo {
        name: c.node_name.clone(),
        addr: c.advertise(),
        port: c.ports.serf_lan.unwrap_or(8301),
        tags: member_tags(c, node_id),
        status: MemberStatus::Alive,
    }
}

/// The server RPC address other servers (and `/v1/status/leader`) know this one by.
fn server_address(config: &Config) -> String {
    SocketAddr::new(config.advertise(), config.ports.server.unwrap_or(8300)).to_string()
}

/// The node's UUID: configured, else persisted in `<data-dir>/node-id` (created once), else
/// random for `-dev`.
fn node_id(config: &Config) -> Result<String, Error> {
    if let Some(id) = &config.node_id {
        return Ok(id.clone());
    }
    let Some(dir) = &config.data_dir else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            uuid::Uuid::parse_str(&id)
                .map_err(|e| Error::Storage(format!("{} is not a UUID: {e}", path.display())))?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            write_atomically(&path, id.as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(Error::Storage(format!("read {}: {e}", path.display()))),
    }
}

/// Writes `bytes` to `path` via a staged file in the same directory, fsynced and renamed, with
/// the directory fsynced after.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stage: PathBuf = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&stage)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&stage, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&stage);
    }
    result.map_err(|e| Error::Storage(format!("write {}: {e}", path.display())))
}

/// How the agent's watches speak to its own HTTPS listener when it serves no plain HTTP, as
/// Consul's do: the agent's certificate and key as the client certificate (for
/// `verify_incoming`), and the listener's certificate not verified (Consul verifies it only with
/// `tls.https.verify_outgoing`, which Muster does not implement).
fn watch_tls(tls: &crate::config::ListenerTls) -> muster_api::TlsConfig {
    muster_api::TlsConfig {
        client_cert: tls.cert_file.clone(),
        client_key: tls.key_file.clone(),
        insecure_skip_verify: true,
        ..Default::default()
    }
}

fn local_error(e: crate::local::LocalError) -> Error {
    Error::Config(crate::config::ConfigError::Invalid(e.to_string()))
}

fn script_policy(config: &Config) -> ScriptPolicy {
    ScriptPolicy {
        enable_script_checks: config.enable_script_checks,
        enable_local_script_checks: config.enable_local_script_checks,
    }
}

/// Anti-entropy's target: [`Agent::write`] (which forwards from a follower or a client agent),
/// and the node's catalog rows — a server's own tables, or, on a client agent, a server's.
struct AgentCatalog(std::sync::Weak<Agent>);

impl AgentCatalog {
    fn agent(&self) -> Result<Arc<Agent>, Error> {
        self.0
            .upgrade()
            .ok_or_else(|| Error::Raft("the agent is shutting down".into()))
    }
}

impl CatalogTarget for AgentCatalog {
    fn write(&self, command: Command) -> BoxFuture<'_, Result<Response, Error>> {
        Box::pin(async move { self.agent()?.write(command).await })
    }

    fn node_view(&self, node: &str) -> BoxFuture<'_, Result<NodeView, Error>> {
        let node = node.to_string();
        Box::pin(async move {
            let agent = self.agent()?;
            if !agent.config.server {
                let rows = agent.client_node_rows(&node).await?;
                return Ok(NodeView {
                    node: rows.node,
                    services: rows.services,
                    checks: rows.checks,
                });
            }
            let t = agent.store.read();
            Ok(NodeView {
                node: t.catalog.nodes.get(&node).cloned(),
                services: t.node_services(&node).cloned().collect(),
                checks: t.node_checks(&node).cloned().collect(),
            })
        })
    }

    /// A server that knows a leader can sync (a follower's writes are forwarded to it); a
    /// client agent once it knows a server.
    fn ready(&self) -> bool {
        self.0.upgrade().is_some_and(|a| {
            if a.config.server {
                a.raft.metrics().borrow().current_leader.is_some()
            } else {
                !a.server_addrs().is_empty()
            }
        })
    }
}

/// Removes services whose checks stayed critical past `deregister_critical_service_after`.
async fn reap_critical(local: Arc<LocalState>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        local.reap_critical();
    }
}

/// The leader's tombstone reaper: tombstones older than `tombstone_ttl` are dropped by a
/// replicated command (apply stays clock-free).
async fn reap_tombstones(agent: Arc<Agent>) {
    let ttl = agent.config.tombstone_ttl;
    let every = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let leader = agent.raft.metrics().borrow().current_leader == Some(agent.raft_id);
        let before = now_ms().saturating_sub(ttl.as_millis() as u64);
        let due = agent
            .store
            .read()
            .oldest_tombstone_ms()
            .is_some_and(|t| t < before);
        if leader && due {
            if let Err(e) = agent
                .write(Command::TombstoneReap { before_ms: before })
                .await
            {
                tracing::warn!(error = %e, "tombstone reap failed; will retry");
            }
        }
    }
}

fn init_logging(config: &Config) {
    crate::logs::init(&config.log_level, config.log_json);
}

/// Binds the HTTP and HTTPS listeners: one per address (`addresses.http`/`addresses.https`,
/// else `client_addr`) and enabled port.
async fn bind_api(config: &Config) -> Result<ApiListeners, Error> {
    Ok(ApiListeners {
        http: bind_tcp(config.http_addrs(), config.ports.http).await?,
        https: bind_tcp(config.https_addrs(), config.ports.https).await?,
    })
}

/// One TCP listener on `port` of each of `ips`; none when the port is disabled.
async fn bind_tcp(ips: &[std::net::IpAddr], port: Option<u16>) -> Result<Vec<TcpListener>, Error> {
    let Some(port) = port else {
        return Ok(Vec::new());
    };
    let mut listeners = Vec::new();
    for ip in ips {
        let addr = SocketAddr::new(*ip, port);
        let l = TcpListener::bind(addr).await.map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("Error starting agent: listen tcp {addr}: {e}"),
            ))
        })?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Binds the server RPC listener on the bind address (servers only; `-dev` has no peers and
/// binds none).
async fn bind_rpc(config: &Config) -> Result<Option<TcpListener>, Error> {
    let Some(port) = config.ports.server.filter(|_| config.server && !config.dev) else {
        return Ok(None);
    };
    let addr = SocketAddr::new(config.bind_addr, port);
    let l = TcpListener::bind(addr).await.map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("Error starting agent: listen tcp {addr}: {e}"),
        ))
    })?;
    Ok(Some(l))
}

/// Binds the DNS sockets (UDP and TCP on each DNS address); none when the port is disabled.
async fn bind_dns(config: &Config) -> Result<crate::dns::Sockets, Error> {
    match config.ports.dns {
        Some(port) => Ok(crate::dns::bind(config.dns_addrs(), port).await?),
        None => Ok(crate::dns::Sockets::default()),
    }
}

fn banner(agent: &Agent) {
    let c = &agent.config;
    let port = |p: Option<u16>| p.map(i64::from).unwrap_or(-1);
    let clients: Vec<String> = c.client_addr.iter().map(|a| a.to_string()).collect();
    println!("==> Starting Muster agent...");
    println!(
        "               Version: '{}' (Consul API {})",
        crate::MUSTER_VERSION,
        crate::CONSUL_API_VERSION
    );
    println!("               Node ID: '{}'", agent.node_id);
    println!("             Node name: '{}'", c.node_name);
    println!(
        "            Datacenter: '{}' (Segment: '<all>')",
        c.datacenter
    );
    println!(
        "                Server: {} (Bootstrap: {})",
        c.server,
        c.bootstrap || c.dev
    );
    println!(
        "           Client Addr: [{}] (HTTP: {}, HTTPS: {}, gRPC: {}, DNS: {})",
        clients.join(" "),
        port(c.ports.http),
        port(c.ports.https),
        port(c.ports.grpc),
        port(c.ports.dns)
    );
    println!(
        "          Cluster Addr: {} (LAN: {}, WAN: {})",
        c.advertise(),
        port(c.ports.serf_lan),
        port(c.ports.serf_wan)
    );
    println!(
        "             Data Dir: {}",
        c.data_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "(in memory)".to_string())
    );
    println!();
    println!("==> Muster agent running!");
    println!("==> Log data will now stream in as it occurs:");
    println!();
}

/// `muster agent`: runs until SIGINT, SIGTERM or a leave request.
pub async fn run(config: Config) -> Result<(), Error> {
    init_logging(&config);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if config.dev {
        tracing::warn!("dev mode: everything is kept in memory and lost on exit");
    }
    let pid_file = config.pid_file.clone();
    if let Some(path) = &pid_file {
        write_atomically(path, format!("{}\n", std::process::id()).as_bytes())?;
    }
    let listeners = bind_api(&config).await?;
    let dns = bind_dns(&config).await?;
    let rpc = bind_rpc(&config).await?;
    let shutdown = CancellationToken::new();
    let (agent, mut tasks) =
        Agent::start_cluster(config, listeners, dns, rpc, None, shutdown.clone()).await?;
    banner(&agent);

    let mut signals = Signals::install();
    let stop = wait_for_stop(&shutdown, &agent, signals.as_mut()).await;
    // Consul's leave_on_terminate (default: client agents) and skip_leave_on_interrupt
    // (default: servers); a server that stops without leaving shows as failed.
    let leave = match stop {
        Stop::Terminate => agent.config.leave_on_terminate(),
        Stop::Interrupt => !agent.config.skip_leave_on_interrupt(),
        Stop::Requested => false,
    };
    if leave && agent.gossip.as_ref().is_some_and(|g| !g.has_left()) {
        println!("==> Gracefully leaving the cluster...");
        // As Consul's: at most 15 s, and a second signal stops at once.
        let second = async {
            match signals.as_mut() {
                Some(s) => s.next_stop().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            left = tokio::time::timeout(GRACEFUL_LEAVE_TIMEOUT, agent.leave()) => match left {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "leaving the cluster failed"),
                Err(_) => tracing::warn!("leaving the cluster took longer than {GRACEFUL_LEAVE_TIMEOUT:?}"),
            },
            _ = second => tracing::warn!("second signal: stopping without finishing the leave"),
        }
    }
    println!("==> Gracefully shutting down agent...");
    shutdown.cancel();
    // In-flight requests get a moment to finish; blocking queries end with the server.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
    agent.stop().await;
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    println!("==> Graceful shutdown complete");
    match agent.fatal.get() {
        Some(e) => Err(Error::Gossip(e.clone())),
        None => Ok(()),
    }
}

/// How long a signal's graceful leave may take before the agent stops anyway (Consul's 15 s).
const GRACEFUL_LEAVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM.
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// `PUT /v1/agent/leave` (it left already) or a fatal error.
    Requested,
}

/// The signals the agent acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// `None` (logged) when the handlers cannot be installed: the agent then stops only by
    /// `PUT /v1/agent/leave`.
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Some(Signals { term, int, hup }),
            _ => {
                tracing::error!("cannot install signal handlers; stop with PUT /v1/agent/leave");
                None
            }
        }
    }

    /// The next SIGTERM or SIGINT.
    async fn next_stop(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Terminate,
            _ = self.int.recv() => Stop::Interrupt,
        }
    }
}

/// Waits for SIGINT/SIGTERM or the token; SIGHUP reloads the service and check definitions.
async fn wait_for_stop(
    token: &CancellationToken,
    agent: &Agent,
    signals: Option<&mut Signals>,
) -> Stop {
    let Some(signals) = signals else {
        token.cancelled().await;
        return Stop::Requested;
    };
    loop {
        tokio::select! {
            _ = token.cancelled() => return Stop::Requested,
            _ = signals.term.recv() => { tracing::info!("caught SIGTERM"); return Stop::Terminate; }
            _ = signals.int.recv() => { tracing::info!("caught SIGINT"); return Stop::Interrupt; }
            _ = signals.hup.recv() => {
                tracing::info!("caught SIGHUP: reloading");
                if let Err(e) = agent.reload() {
                    tracing::error!(error = %e, "reload failed; the previous definitions stay");
                }
            }
        }
    }
}
