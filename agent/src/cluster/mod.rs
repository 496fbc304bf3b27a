//! The cluster side of a server: what it answers over the server RPC, how writes and reads
//! reach the leader from a follower, how the Raft configuration follows the membership view
//! (`-bootstrap-expect`, learners promoted once caught up, dead servers removed), and the
//! operator's view of the Raft configuration.
//!
//! * Writes: the leader proposes through its own `Proposer` (group commit); a follower sends
//!   the stamped `Request` to the leader (`RpcRequest::Write`) and the leader proposes it the
//!   same way. A write is retried (until [`HOLD_TIMEOUT`], Consul's `rpc_hold_timeout`) only
//!   when it certainly was not carried out: no leader, the leader said it is not one, or the
//!   connection to it could not be opened.
//! * Default and `?consistent` reads on a follower: the leader names an index (its applied
//!   index; for `consistent` the index read-index confirmed with a quorum), the follower waits
//!   until its own state machine has applied it and answers locally. Blocking queries thus
//!   block on the follower's own watch sets, and nothing but an index crosses the network.
//!
//! Knows nothing of HTTP: handlers call `Agent::write` / `Agent::read_gate`.

pub mod reconcile;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::ChangeMembers;

use crate::error::Error;
use crate::membership::{MemberInfo, MemberStatus};
use crate::raft::{self, NodeId};
use crate::rpc::{HttpRequest, HttpResponse, NodeRows, RemoteError, RpcRequest, RpcResponse};
use crate::server::Agent;
use crate::state::{Request, Response};

/// How long a write or read waits for a leader (Consul's `rpc_hold_timeout`, 7 s).
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(7);
/// How long a write may take to commit at `raft_multiplier` 1.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A forwarded DNS query: well inside a resolver's own timeout (dig's is 5 s).
pub const DNS_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A client agent's read that does not block (an HTTP GET without `index`, its node's rows):
/// the server answers at once, or waits up to [`HOLD_TIMEOUT`] for a leader; a few seconds
/// more, then the next server is asked.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a leaving server waits for the leader to remove it from the Raft configuration
/// (Consul's `raftRemoveGracePeriod`). The leader learns of the leave from the gossip
/// broadcast at once and removes it with one commit, so it is not scaled by `raft_multiplier`.
pub const RAFT_REMOVE_GRACE: Duration = Duration::from_secs(5);

/// Takes the leader's answer apart: the result a call expects, or the unexpected answer.
type LeaderAnswer<T> = fn(RpcResponse) -> Result<Result<T, RemoteError>, Box<RpcResponse>>;

/// The Raft id of a member that advertises a node id.
pub fn member_raft_id(m: &MemberInfo) -> Option<NodeId> {
    let id = uuid::Uuid::parse_str(m.node_id()?).ok()?;
    Some(raft::node_id_from_uuid(&id))
}

/// Parses an operator-given server id: a node UUID or a Raft id number.
pub fn parse_raft_id(s: &str) -> Option<NodeId> {
    match uuid::Uuid::parse_str(s) {
        Ok(u) => Some(raft::node_id_from_uuid(&u)),
        Err(_) => s.parse().ok(),
    }
}

impl Agent {
    /// True while this server is the Raft leader.
    pub(crate) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.raft_id)
    }

    /// The server RPC address of Raft node `id`, from the Raft configuration.
    pub(crate) fn raft_addr(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Waits a little for the leader to change (or appear).
    async fn wait_for_leader_change(&self, seen: Option<NodeId>) {
        let mut rx = self.raft.metrics();
        let _ = tokio::time::timeout(Duration::from_millis(100), async {
            loop {
                if rx.changed().await.is_err() {
                    return;
                }
                if rx.borrow().current_leader != seen {
                    return;
                }
            }
        })
        .await;
    }

    /// Commits `request` through the leader, wherever it is.
    pub(crate) async fn write_request(&self, request: Request) -> Result<Response, Error> {
        if !self.config.server {
            return self.client_write(request).await;
        }
        self.on_leader(
            || self.propose(request.clone()),
            || RpcRequest::Write(request.clone()),
            |answer| match answer {
                RpcResponse::Write(r) => Ok(r),
                other => Err(Box::new(other)),
            },
        )
        .await
    }

    /// Runs a call on the leader, wherever it is: `local` when this server leads, else
    /// `remote()` sent to the leader over the RPC and its answer taken apart by `answer`.
    /// Without a leader, or with one that could not be reached before the call was sent, it
    /// waits for the leader to change and tries again, until [`HOLD_TIMEOUT`] (Consul's
    /// `rpc_hold_timeout`).
    async fn on_leader<T, Fut>(
        &self,
        local: impl Fn() -> Fut,
        remote: impl Fn() -> RpcRequest,
        answer: LeaderAnswer<T>,
    ) -> Result<T, Error>
    where
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let deadline = tokio::time::Instant::now() + HOLD_TIMEOUT;
        loop {
            let leader = self.raft.metrics().borrow().current_leader;
            let result = match leader {
                Some(l) if l == self.raft_id => local().await,
                Some(l) => self.call_leader(l, remote(), answer).await,
                None => Err(Error::NoLeader),
            };
            match result {
                Err(Error::NoLeader)
                    if tokio::time::Instant::now() < deadline && !self.shutdown.is_cancelled() =>
                {
                    self.wait_for_leader_change(leader).await;
                }
                r => return r,
            }
        }
    }

    /// One call to the leader `leader` over the RPC; not reaching it counts as no leader.
    async fn call_leader<T>(
        &self,
        leader: NodeId,
        request: RpcRequest,
        answer: LeaderAnswer<T>,
    ) -> Result<T, Error> {
        let addr = self.raft_addr(leader).ok_or(Error::NoLeader)?;
        match self
            .rpc
            .call(&addr, request, self.leader_call_timeout())
            .await
        {
            Ok(r) => match answer(r) {
                Ok(r) => r.map_err(Error::from),
                Err(other) => Err(Error::Raft(format!("leader answered {other:?}"))),
            },
            Err(e) if e.not_sent() => Err(Error::NoLeader),
            Err(e) => Err(e.into()),
        }
    }

    /// How long the leader waits for a write to commit: a leader cut off from its quorum must
    /// not hold requests forever. Scaled like the Raft timings.
    fn commit_timeout(&self) -> Duration {
        COMMIT_TIMEOUT * u32::from(self.config.raft.raft_multiplier.max(1))
    }

    /// The voters of the Raft configuration as this server knows it (the latest one in its
    /// log, committed or not; both halves of a joint one).
    pub(crate) fn raft_voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// The Raft half of a server's graceful leave, before the LAN pool is told (Consul's
    /// `Server.Leave`): a leader with other voters removes itself from the configuration, so
    /// the others keep a quorum of the smaller one and elect a leader among themselves.
    /// Answers whether this server was the leader.
    pub(crate) async fn leave_raft_as_leader(&self) -> bool {
        if !self.config.server || !self.is_leader() {
            return false;
        }
        if self.raft_voters().len() > 1 {
            tracing::info!("leader leaving: removing itself from the Raft configuration");
            let removal = self.raft.change_membership(
                ChangeMembers::RemoveVoters(BTreeSet::from([self.raft_id])),
                false,
            );
            match tokio::time::timeout(self.commit_timeout(), removal).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "failed to remove ourself as a Raft peer");
                }
                Err(_) => tracing::error!(
                    "failed to remove ourself as a Raft peer: no commit within {:?}",
                    self.commit_timeout()
                ),
            }
        }
        true
    }

    /// The other half, once the LAN pool knows this server `left`: a server that was not the
    /// leader waits (up to [`RAFT_REMOVE_GRACE`]) until the
    /// leader has removed it. Stopping at once would leave it a voter, and Raft's joint
    /// consensus needs the departing voter's own acknowledgement to remove it from a
    /// configuration of two: `leave` on two of three servers one after the other would leave
    /// the last one without a quorum.
    pub(crate) async fn wait_removed_from_raft(&self) {
        let voters = self.raft_voters();
        if !self.config.server
            || self.gossip.is_none()
            || !voters.contains(&self.raft_id)
            || voters.len() < 2
        {
            return;
        }
        let Some(me) = self.raft_addr(self.raft_id) else {
            return;
        };
        let removed = tokio::time::timeout(RAFT_REMOVE_GRACE, async {
            while self.raft_voters().contains(&self.raft_id) && !self.leader_dropped(&me).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match removed {
            Ok(()) => tracing::info!("removed from the Raft configuration by the leader"),
            Err(_) => tracing::warn!(
                "failed to leave raft configuration gracefully, timeout after {RAFT_REMOVE_GRACE:?}"
            ),
        }
    }

    /// Whether the leader's Raft configuration no longer holds the server at `addr` (asked as
    /// `/v1/operator/raft/configuration` over the RPC). Asked rather than read from this
    /// server's log: a leader stops replicating to a server as soon as it appends the
    /// configuration without it, so that configuration never reaches the removed server.
    async fn leader_dropped(&self, addr: &str) -> bool {
        let request = HttpRequest {
            method: "GET".into(),
            uri: "/v1/operator/raft/configuration".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        match self.leader_http(request).await {
            Ok(Some(r)) if r.status == 200 => {
                serde_json::from_slice::<muster_api::operator::RaftConfiguration>(&r.body)
                    .is_ok_and(|c| c.servers.iter().all(|s| s.address != addr))
            }
            _ => false,
        }
    }

    /// How long a call that waits on the leader's commit (or its read-index) may take: the
    /// leader's own bound and the answer's way back, so the caller never gives up first.
    fn leader_call_timeout(&self) -> Duration {
        self.commit_timeout() + Duration::from_secs(3)
    }

    /// A client agent's write: the server may first wait for a leader ([`HOLD_TIMEOUT`]), then
    /// for the commit.
    pub fn client_write_timeout(&self) -> Duration {
        HOLD_TIMEOUT + self.leader_call_timeout()
    }

    /// Proposes on this server (the leader) through the group commit, bounded in time. A write
    /// that times out may still commit later, so it is reported, never retried.
    async fn propose(&self, request: Request) -> Result<Response, Error> {
        match tokio::time::timeout(self.commit_timeout(), self.proposer.write(request)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Raft(
                "timed out waiting for the write to commit (is a quorum of servers up?)".into(),
            )),
        }
    }

    /// On a server that does not lead: `request` answered by the leader's own router (over the
    /// RPC, as client agents send theirs). `None` when this server leads (by now): the caller
    /// answers it itself.
    pub(crate) async fn leader_http(
        &self,
        request: HttpRequest,
    ) -> Result<Option<HttpResponse>, Error> {
        self.on_leader(
            || async { Ok(None) },
            || RpcRequest::Http(request.clone()),
            |answer| match answer {
                RpcResponse::Http(r) => Ok(Ok(Some(r))),
                other => Err(Box::new(other)),
            },
        )
        .await
    }

    /// On a follower: the index a default (or `consistent`) read must see, from the leader,
    /// then waits until this server has applied it.
    pub(crate) async fn follower_read_index(&self, consistent: bool) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + HOLD_TIMEOUT;
        // On the leader itself, `ensure_linearizable` also waits for its own apply.
        let index = self
            .on_leader(
                || self.leader_read_index(consistent),
                || RpcRequest::ReadIndex { consistent },
                |answer| match answer {
                    RpcResponse::ReadIndex(r) => Ok(r),
                    other => Err(Box::new(other)),
                },
            )
            .await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.raft
            .wait(Some(left.max(Duration::from_secs(1))))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| Error::NoLeader)
    }

    /// On the leader: the index a read must see (read-index when `consistent`).
    pub(crate) async fn leader_read_index(&self, consistent: bool) -> Result<u64, Error> {
        if !self.is_leader() {
            return Err(Error::NoLeader);
        }
        if consistent {
            let confirmed =
                tokio::time::timeout(self.commit_timeout(), self.raft.ensure_linearizable())
                    .await
                    .map_err(|_| {
                        Error::Raft(
                            "timed out confirming leadership (is a quorum of servers up?)".into(),
                        )
                    })?;
            let log_id = confirmed.map_err(|e| {
                tracing::debug!(error = %e, "read index not confirmed");
                Error::NoLeader
            })?;
            Ok(log_id.map(|l| l.index).unwrap_or(0))
        } else {
            Ok(self
                .raft
                .metrics()
                .borrow()
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0))
        }
    }

    /// Removes server `id` from the Raft configuration, on the leader (forwarded there).
    pub async fn remove_raft_peer(&self, id: NodeId) -> Result<(), Error> {
        self.on_leader(
            || self.leader_remove_peer(id),
            || RpcRequest::RemovePeer { id },
            |answer| match answer {
                RpcResponse::RemovePeer(r) => Ok(r),
                other => Err(Box::new(other)),
            },
        )
        .await
    }

    async fn leader_remove_peer(&self, id: NodeId) -> Result<(), Error> {
        if !self.is_leader() {
            return Err(Error::NoLeader);
        }
        let (voters, learners): (BTreeSet<NodeId>, BTreeSet<NodeId>) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().collect(),
                membership.learner_ids().collect(),
            )
        };
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if learners.contains(&id) {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(Error::Raft(format!(
                "id {id} was not found in the Raft configuration"
            )));
        };
        self.raft
            .change_membership(change, false)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ForwardToLeader(_),
                ) => Error::NoLeader,
                e => Error::Raft(format!("remove peer: {e}")),
            })
    }

    /// What `/v1/operator/raft/configuration` lists: every server of the Raft configuration.
    pub fn raft_configuration(&self) -> RaftConfiguration {
        let members = self.membership.borrow().clone();
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut servers = Vec::new();
        for (id, node) in membership.nodes() {
            let member = members
                .iter()
                .find(|mi| mi.is_server() && member_raft_id(mi) == Some(*id));
            let (uuid, name) = if *id == self.raft_id {
                (self.node_id.clone(), self.config.node_name.clone())
            } else {
                match member {
                    Some(mi) => (
                        mi.node_id().unwrap_or_default().to_string(),
                        mi.name.clone(),
                    ),
                    None => (id.to_string(), String::new()),
                }
            };
            servers.push(RaftServer {
                id: uuid,
                node: name,
                address: node.addr.clone(),
                leader: m.current_leader == Some(*id),
                voter: voters.contains(id),
                raft_id: *id,
                last_index: if *id == self.raft_id {
                    m.last_log_index.unwrap_or(0)
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                        .unwrap_or(0)
                },
            });
        }
        servers.sort_by(|a, b| a.node.cmp(&b.node).then(a.address.cmp(&b.address)));
        RaftConfiguration {
            servers,
            index: m.membership_config.log_id().map(|l| l.index).unwrap_or(0),
        }
    }

    /// Who this agent is on the server RPC: its datacenter and its cluster's id (servers).
    pub fn identity(&self) -> crate::rpc::Identity {
        crate::rpc::Identity {
            datacenter: self.config.datacenter.clone(),
            cluster: if self.config.server {
                self.store.read().cluster_id
            } else {
                None
            },
        }
    }

    /// Answers one server RPC; forwarded HTTP requests run through `http`, this agent's HTTP
    /// service.
    async fn answer<S: crate::http::HttpService>(
        self: Arc<Self>,
        http: S,
        request: RpcRequest,
    ) -> RpcResponse {
        match request {
            RpcRequest::AppendEntries(req) => {
                self.note_leader_contact();
                RpcResponse::AppendEntries(
                    self.raft
                        .append_entries(req)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            RpcRequest::Vote(req) => {
                RpcResponse::Vote(self.raft.vote(req).await.map_err(|e| e.to_string()))
            }
            RpcRequest::InstallSnapshot(req) => {
                self.note_leader_contact();
                RpcResponse::InstallSnapshot(
                    self.raft
                        .install_snapshot(req)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            RpcRequest::Write(req) => {
                if !self.is_leader() {
                    return RpcResponse::Write(Err(RemoteError::NoLeader));
                }
                RpcResponse::Write(self.propose(req).await.map_err(RemoteError::from))
            }
            RpcRequest::ReadIndex { consistent } => RpcResponse::ReadIndex(
                self.leader_read_index(consistent)
                    .await
                    .map_err(RemoteError::from),
            ),
            RpcRequest::Status => RpcResponse::Status {
                initialized: self.raft.is_initialized().await.unwrap_or(true),
                leader: self.raft.metrics().borrow().current_leader,
            },
            RpcRequest::RemovePeer { id } => RpcResponse::RemovePeer(
                self.leader_remove_peer(id).await.map_err(RemoteError::from),
            ),
            RpcRequest::ClientWrite(req) => {
                RpcResponse::ClientWrite(self.write_request(req).await.map_err(RemoteError::from))
            }
            RpcRequest::NodeView { node } => {
                RpcResponse::NodeView(self.node_rows(&node).await.map_err(RemoteError::from))
            }
            RpcRequest::Http(req) => {
                RpcResponse::Http(crate::http::forward::serve_forwarded(http, req).await)
            }
            RpcRequest::Dns { query, tcp } => {
                RpcResponse::Dns(crate::dns::answer_forwarded(self, query, tcp).await)
            }
            RpcRequest::Whoami => RpcResponse::Whoami(self.identity()),
            // Unwrapped (and checked) by `RpcHandler::handle`; a nested one is refused there.
            RpcRequest::Identified { .. } => {
                RpcResponse::Error("malformed request: nested identity".into())
            }
        }
    }

    /// The catalog rows of `node` after a default read gate.
    async fn node_rows(&self, node: &str) -> Result<NodeRows, Error> {
        self.read_gate(crate::server::Consistency::Default).await?;
        let t = self.store.read();
        Ok(NodeRows {
            node: t.catalog.nodes.get(node).cloned(),
            services: t.node_services(node).cloned().collect(),
            checks: t.node_checks(node).cloned().collect(),
        })
    }

    // ---- client agents ------------------------------------------------------------------------

    /// The RPC addresses of the alive servers of this datacenter, starting at a rotating
    /// offset so client agents spread their calls.
    pub fn server_addrs(&self) -> Vec<String> {
        let members = self.membership.borrow().clone();
        let mut addrs: Vec<String> = members
            .iter()
            .filter(|m| m.status == MemberStatus::Alive && m.is_server())
            .filter(|m| m.tags.get(crate::membership::tags::DC) == Some(&self.config.datacenter))
            .filter_map(|m| m.server_rpc_addr())
            .map(|a| a.to_string())
            .collect();
        if !addrs.is_empty() {
            let n = addrs.len();
            let start = self
                .next_server
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % n;
            addrs.rotate_left(start);
        }
        addrs
    }

    /// Sends `request` to a server of this datacenter; on failure the next one, as `retry`
    /// allows. Servers whose calls timed out lately are tried last
    /// ([`crate::rpc::Pool::prefer_responsive`]).
    async fn call_server(
        &self,
        request: impl Fn() -> RpcRequest,
        timeout: Duration,
        retry: Retry,
    ) -> Result<RpcResponse, Error> {
        let mut addrs = self.server_addrs();
        if addrs.is_empty() {
            return Err(Error::Raft("No known Consul servers".into()));
        }
        self.rpc.prefer_responsive(&mut addrs);
        let mut last = None;
        for addr in addrs {
            match self.rpc.call(&addr, request(), timeout).await {
                Ok(r) => return Ok(r),
                Err(e) if e.not_sent() || (retry == Retry::Unanswered && e.unanswered()) => {
                    tracing::debug!(server = addr, error = %e, "server call failed; trying the next server");
                    last = Some(e);
                }
                // The server answered with an error (it refused the call).
                Err(e @ crate::rpc::RpcError::Remote(..)) => return Err(e.into()),
                // A write that may have reached the server: it may still be carried out, so
                // it is not sent again anywhere; the caller gets the error (a 500 over HTTP,
                // as Consul answers an RPC error).
                Err(e) => {
                    return Err(Error::Raft(format!(
                        "rpc error making call: {e} (the request may still be carried out)"
                    )))
                }
            }
        }
        Err(last
            .map(Error::from)
            .unwrap_or_else(|| Error::Raft("No known Consul servers".into())))
    }

    /// A client agent's write: through a server to the leader.
    async fn client_write(&self, request: Request) -> Result<Response, Error> {
        match self
            .call_server(
                || RpcRequest::ClientWrite(request.clone()),
                self.client_write_timeout(),
                Retry::NotSent,
            )
            .await?
        {
            RpcResponse::ClientWrite(r) => r.map_err(Error::from),
            other => Err(Error::Raft(format!("server answered {other:?}"))),
        }
    }

    /// A client agent's anti-entropy read of its node's catalog rows.
    pub async fn client_node_rows(&self, node: &str) -> Result<NodeRows, Error> {
        match self
            .call_server(
                || RpcRequest::NodeView {
                    node: node.to_string(),
                },
                READ_TIMEOUT,
                Retry::Unanswered,
            )
            .await?
        {
            RpcResponse::NodeView(r) => r.map_err(Error::from),
            other => Err(Error::Raft(format!("server answered {other:?}"))),
        }
    }

    /// A client agent's HTTP request, answered by a server within `timeout` (the caller knows
    /// how long the request may block); `retry` says whether another server may be asked
    /// when the first does not answer.
    pub async fn forward_http(
        &self,
        request: HttpRequest,
        timeout: Duration,
        retry: Retry,
    ) -> Result<HttpResponse, Error> {
        match self
            .call_server(|| RpcRequest::Http(request.clone()), timeout, retry)
            .await?
        {
            RpcResponse::Http(r) => Ok(r),
            other => Err(Error::Raft(format!("server answered {other:?}"))),
        }
    }

    /// A client agent's DNS query, answered by a server.
    pub async fn forward_dns(&self, query: Vec<u8>, tcp: bool) -> Result<Option<Vec<u8>>, Error> {
        match self
            .call_server(
                || RpcRequest::Dns {
                    query: query.clone(),
                    tcp,
                },
                DNS_CALL_TIMEOUT,
                Retry::Unanswered,
            )
            .await?
        {
            RpcResponse::Dns(r) => Ok(r),
            other => Err(Error::Raft(format!("server answered {other:?}"))),
        }
    }
}

/// What the server RPC listener answers with: the agent, and the HTTP service that client
/// agents' forwarded requests run through, built once when the listener starts rather than per
/// request. The service holds an `Arc<Agent>`, so it lives here, beside the agent, and not in
/// it (that would be a reference cycle keeping every stopped agent alive); it goes when the
/// listener's tasks end.
///
/// It also checks who calls ([`crate::rpc::refusal`]): a call from another datacenter, or a
/// Raft call from a server of another cluster, is answered with an error and logged, and never
/// reaches openraft.
pub struct RpcHandler<S> {
    agent: Arc<Agent>,
    http: S,
    /// When a refusal was last logged at error level (they come with every heartbeat).
    refusal_logged: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often a repeated refusal is logged as an error (the others at debug).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl RpcHandler<()> {
    pub fn new(agent: Arc<Agent>) -> RpcHandler<impl crate::http::HttpService + Sync> {
        RpcHandler {
            http: crate::http::service(agent.clone()),
            agent,
            refusal_logged: std::sync::Mutex::new(None),
        }
    }
}

impl<S> RpcHandler<S> {
    fn log_refusal(&self, why: &str) {
        let now = std::time::Instant::now();
        let mut last = self
            .refusal_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY) {
            *last = Some(now);
            tracing::error!(
                "server RPC: {why} (repeats are logged at debug for {REFUSAL_LOG_EVERY:?})"
            );
        } else {
            tracing::debug!("server RPC: {why}");
        }
    }
}

impl<S: crate::http::HttpService + Sync> crate::rpc::Handler for RpcHandler<S> {
    fn handle(self: Arc<Self>, request: RpcRequest) -> BoxFuture<'static, RpcResponse> {
        let request = match request {
            RpcRequest::Identified { from, request } => {
                if let Some(why) = crate::rpc::refusal(&self.agent.identity(), &from, &request) {
                    self.log_refusal(&why);
                    return Box::pin(std::future::ready(RpcResponse::Error(why)));
                }
                *request
            }
            r => r,
        };
        Box::pin(self.agent.clone().answer(self.http.clone(), request))
    }
}

/// When a client agent's call may be sent to another server after the first failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Only when it certainly never reached the server ([`crate::rpc::RpcError::not_sent`]):
    /// writes, which must not be carried out twice.
    NotSent,
    /// Whenever the server did not answer (timeout, broken connection, unreachable): reads.
    Unanswered,
}

/// One server of the Raft configuration.
#[derive(Debug, Clone)]
pub struct RaftServer {
    /// The node UUID when known, else the Raft id.
    pub id: String,
    pub node: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    pub raft_id: NodeId,
    /// The last log index known to be on the server (the leader knows its followers').
    pub last_index: u64,
}

/// The Raft configuration and the index it was committed at.
#[derive(Debug, Clone)]
pub struct RaftConfiguration {
    pub servers: Vec<RaftServer>,
    pub index: u64,
}

/// True when `status` counts as gone for dead-server cleanup.
pub fn is_gone(status: MemberStatus) -> bool {
    matches!(status, MemberStatus::Failed | MemberStatus::Left)
}
