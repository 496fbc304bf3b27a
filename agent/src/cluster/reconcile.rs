//! The Raft configuration following the membership view.
//!
//! * [`bootstrap_expect`] (every server started with `-bootstrap-expect N`, until it has Raft
//!   state): once N alive servers of this datacenter advertising the same `expect` are seen,
//!   each is asked over the RPC whether it already has Raft state or knows a leader; if none
//!   does, the one with the lowest Raft id initializes the cluster with all of them as voters.
//!   It cannot happen twice: a server with Raft state never bootstraps, and a newcomer seeing a
//!   cluster that has state (or a leader) waits to be added by that leader.
//! * [`run`] (on the leader): alive servers missing from the configuration are added as
//!   learners, and promoted to voters once caught up (`add_learner` blocks until then);
//!   voters whose member is `failed` or `left` are removed (autopilot's dead-server cleanup),
//!   `left` always, `failed` only while the healthy voters left stay a quorum of the current
//!   configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};

use super::{is_gone, member_raft_id};
use crate::membership::{tags, MemberInfo, MemberStatus};
use crate::raft::NodeId;
use crate::rpc::{RpcRequest, RpcResponse};
use crate::server::Agent;

/// How often the view is looked at even when it did not change.
const TICK: Duration = Duration::from_secs(1);
/// How long one removal of a dead server may wait for its commit.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Alive servers of this agent's datacenter, by Raft id, with their RPC address.
fn alive_servers(agent: &Agent, members: &[MemberInfo]) -> BTreeMap<NodeId, (String, MemberInfo)> {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive && m.is_server())
        .filter(|m| m.tags.get(tags::DC) == Some(&agent.config.datacenter))
        .filter_map(|m| {
            let id = member_raft_id(m)?;
            let addr = m.server_rpc_addr()?;
            Some((id, (addr.to_string(), m.clone())))
        })
        .collect()
}

/// `-bootstrap-expect`: forms the cluster once enough servers are seen; returns when this
/// server has Raft state (bootstrapped by it or joined by a leader) or the agent stops.
pub async fn bootstrap_expect(agent: Arc<Agent>, expect: u32) {
    let mut view = agent.membership.clone();
    loop {
        match agent.raft.is_initialized().await {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
        let members = view.borrow_and_update().clone();
        let servers = alive_servers(&agent, &members);
        let same: BTreeMap<_, _> = servers
            .into_iter()
            .filter(|(_, (_, m))| {
                let theirs = m.tags.get(tags::EXPECT).and_then(|e| e.parse::<u32>().ok());
                if theirs.is_some_and(|t| t != expect) {
                    tracing::warn!(
                        member = m.name,
                        "member has a different bootstrap-expect value; ignoring it"
                    );
                }
                theirs == Some(expect)
            })
            .collect();
        if same.len() >= expect as usize && same.contains_key(&agent.raft_id) {
            if let Err(e) = try_bootstrap(&agent, &same).await {
                tracing::info!("bootstrap-expect: {e}");
            }
        }
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            _ = view.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn try_bootstrap(
    agent: &Agent,
    servers: &BTreeMap<NodeId, (String, MemberInfo)>,
) -> Result<(), String> {
    // Any server that already has Raft state or follows a leader means the cluster exists.
    for (id, (addr, m)) in servers {
        if *id == agent.raft_id {
            continue;
        }
        match agent
            .rpc
            .call(addr, RpcRequest::Status, Duration::from_secs(2))
            .await
        {
            Ok(RpcResponse::Status {
                initialized,
                leader,
            }) => {
                if initialized || leader.is_some() {
                    return Err(format!(
                        "server {} already has Raft state; waiting to be added by its leader",
                        m.name
                    ));
                }
            }
            Ok(other) => return Err(format!("server {} answered {other:?}", m.name)),
            Err(e) => return Err(format!("server {} not reachable yet: {e}", m.name)),
        }
    }
    let Some(first) = servers.keys().next() else {
        return Err("no servers".into());
    };
    if *first != agent.raft_id {
        return Err("waiting for the server with the lowest id to bootstrap".into());
    }
    let voters: BTreeMap<NodeId, BasicNode> = servers
        .iter()
        .map(|(id, (addr, _))| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    tracing::info!(
        servers = voters.len(),
        "bootstrap-expect: found enough servers, bootstrapping the cluster"
    );
    agent
        .raft
        .initialize(voters)
        .await
        .map_err(|e| format!("initialize: {e}"))
}

/// The leader's membership reconcile loop; runs on every server, acts while it leads.
pub async fn run(agent: Arc<Agent>) {
    let mut view = agent.membership.clone();
    // Servers of another cluster already reported (once each, not every tick).
    let mut foreign = BTreeSet::new();
    loop {
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            _ = view.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        if agent.raft.metrics().borrow().current_leader != Some(agent.raft_id) {
            continue;
        }
        ensure_cluster_id(&agent).await;
        let members = view.borrow_and_update().clone();
        reconcile_once(&agent, &members, &mut foreign).await;
    }
}

/// On the leader: commits the cluster's identity when the state has none (right after
/// bootstrap, or a cluster formed before ids existed). Should an earlier leader's id be
/// committed but not yet applied here, the state machine keeps that first one and ignores this
/// one, so every server ends up with the same id. `-dev` has no peers and skips it.
async fn ensure_cluster_id(agent: &Agent) {
    if agent.config.dev || agent.store.read().cluster_id.is_some() {
        return;
    }
    let id = uuid::Uuid::new_v4();
    match agent
        .write(crate::state::Command::ClusterId { id: id.as_u128() })
        .await
    {
        Ok(_) => tracing::info!(cluster_id = %id, "committed the cluster id"),
        Err(e) => tracing::warn!(error = %e, "could not commit the cluster id; will retry"),
    }
}

/// The cluster id a newcomer server reports (`None`: it has none yet), or why it did not say.
async fn newcomer_cluster(agent: &Agent, addr: &str) -> Result<Option<u128>, String> {
    match agent
        .rpc
        .call(addr, RpcRequest::Whoami, Duration::from_secs(2))
        .await
    {
        Ok(RpcResponse::Whoami(theirs)) => Ok(theirs.cluster),
        Ok(other) => Err(format!("server answered {other:?}")),
        Err(e) => Err(format!("server not reachable yet: {e}")),
    }
}

async fn reconcile_once(agent: &Agent, members: &[MemberInfo], foreign: &mut BTreeSet<String>) {
    let (voters, nodes): (BTreeSet<NodeId>, BTreeMap<NodeId, BasicNode>) = {
        let metrics = agent.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        (
            membership.voter_ids().collect(),
            membership.nodes().map(|(k, v)| (*k, v.clone())).collect(),
        )
    };
    let alive = alive_servers(agent, members);

    // Newcomers: learner first (blocks until caught up), then voter.
    for (id, (addr, m)) in &alive {
        if voters.contains(id) {
            continue;
        }
        // Consul's guard (leader.go, joinConsulServer): a server started with `-bootstrap`
        // formed its own cluster; while another bootstrap-mode server is in the pool, adding
        // it would merge two Raft histories. Refuse, as Consul does, and say why.
        if !nodes.contains_key(id) && m.tags.contains_key(tags::BOOTSTRAP) {
            let other = alive
                .values()
                .any(|(_, o)| o.name != m.name && o.tags.contains_key(tags::BOOTSTRAP));
            if other {
                tracing::error!(
                    member = m.name,
                    "Two nodes are in bootstrap mode. Only one node should be in bootstrap mode, not adding Raft peer."
                );
                continue;
            }
        }
        if !nodes.contains_key(id) {
            // Only a server of no cluster yet, or of this one, is added: one of another
            // cluster (gossiping in the same pool and datacenter) would refuse every append,
            // and add_learner would wait out its minute each round.
            let ours = agent.store.read().cluster_id;
            match newcomer_cluster(agent, addr).await {
                Err(why) => {
                    tracing::debug!(member = m.name, "{why}; not adding it yet");
                    continue;
                }
                Ok(Some(theirs)) if ours.is_some_and(|ours| ours != theirs) => {
                    if foreign.insert(m.name.clone()) {
                        tracing::error!(
                            member = m.name,
                            cluster_id = %uuid::Uuid::from_u128(theirs),
                            this_cluster_id = ?ours.map(uuid::Uuid::from_u128),
                            "server belongs to another cluster; not adding it as a Raft peer"
                        );
                    }
                    continue;
                }
                Ok(_) => {
                    foreign.remove(&m.name);
                }
            }
            tracing::info!(member = m.name, addr, "adding server as a learner");
            let added = tokio::time::timeout(
                Duration::from_secs(60),
                agent
                    .raft
                    .add_learner(*id, BasicNode { addr: addr.clone() }, true),
            )
            .await;
            match added {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(member = m.name, error = %e, "add learner failed");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(member = m.name, "learner did not catch up in time");
                    continue;
                }
            }
        }
        tracing::info!(member = m.name, "promoting server to voter");
        if let Err(e) = agent
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), true)
            .await
        {
            tracing::warn!(member = m.name, error = %e, "promotion failed");
        }
    }

    // Dead-server cleanup.
    let gone: Vec<(NodeId, &MemberInfo)> = members
        .iter()
        .filter(|m| m.is_server() && is_gone(m.status))
        .filter_map(|m| Some((member_raft_id(m)?, m)))
        .filter(|(id, _)| voters.contains(id) && *id != agent.raft_id)
        .collect();
    if gone.is_empty() {
        return;
    }
    let quorum = voters.len() / 2 + 1;
    let failed = gone
        .iter()
        .filter(|(_, m)| m.status == MemberStatus::Failed)
        .count();
    let healthy = voters.len() - gone.len();
    for (id, m) in gone {
        if m.status == MemberStatus::Failed && (healthy < quorum || failed > voters.len() - quorum)
        {
            tracing::warn!(
                member = m.name,
                "failed server kept: removing it would leave fewer than a quorum"
            );
            continue;
        }
        tracing::info!(
            member = m.name,
            status = m.status.as_str(),
            "removing dead server"
        );
        // Bounded: a removal that cannot commit (the departed voter was one of two, and joint
        // consensus wants its acknowledgement) must not stall the reconcile loop for good.
        let removal = agent
            .raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false);
        match tokio::time::timeout(REMOVE_TIMEOUT, removal).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(member = m.name, error = %e, "removing dead server failed")
            }
            Err(_) => tracing::warn!(
                member = m.name,
                "removing dead server did not commit within {REMOVE_TIMEOUT:?}"
            ),
        }
    }
}
