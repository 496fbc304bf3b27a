//! What only the leader does to the catalog: reconcile membership into it.
//!
//! Consul's leader registers every live member's node with a `serfHealth` check ("Agent alive
//! and reachable") and every server's `consul` service, marks failed members critical ("Agent
//! not live or unreachable", so their services leave DNS and `?passing`) and removes members
//! that left or were reaped. The members come from the gossip view
//! ([`Agent::membership`](crate::server::Agent::membership)); the leader reconciles when it
//! gains leadership, whenever the view changes, and every [`RECONCILE_INTERVAL`]. Members whose
//! catalog entry already says what the view says are skipped, and writes that change nothing
//! bump no index, so reconciling an unchanged catalog wakes no watcher.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use muster_api::HealthStatus;

use crate::membership::{MemberInfo, MemberStatus};
use crate::server::Agent;
use crate::state::{CheckRow, Command, NodeRow, Registration, ServiceRow};

/// The membership check's ID (Consul's `structs.SerfCheckID`).
pub const SERF_CHECK_ID: &str = "serfHealth";
const SERF_CHECK_NAME: &str = "Serf Health Status";
const ALIVE_OUTPUT: &str = "Agent alive and reachable";
const FAILED_OUTPUT: &str = "Agent not live or unreachable";
/// The service every server runs (Consul's `structs.ConsulServiceID`).
pub const CONSUL_SERVICE: &str = "consul";
/// How often the leader re-checks the catalog against membership.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// Services the leader registers on server nodes; anti-entropy leaves them alone.
pub fn server_owned_service(id: &str) -> bool {
    id == CONSUL_SERVICE
}

/// Runs while the agent runs: reconciles on gaining leadership, on membership changes and
/// periodically.
pub async fn run(agent: Arc<Agent>) {
    let mut metrics = agent.raft.metrics();
    let mut members = agent.membership();
    let mut members_open = true;
    let mut dirty = false;
    let mut was_leader = false;
    let mut next = tokio::time::Instant::now();
    loop {
        let leader = metrics.borrow().current_leader == Some(agent.raft_id);
        if leader && (!was_leader || dirty || tokio::time::Instant::now() >= next) {
            dirty = false;
            match reconcile(&agent).await {
                Ok(()) => next = tokio::time::Instant::now() + RECONCILE_INTERVAL,
                Err(e) => {
                    tracing::warn!(error = %e, "leader: reconciling members into the catalog failed; retrying");
                    next = tokio::time::Instant::now() + Duration::from_secs(1);
                }
            }
        }
        was_leader = leader;
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            changed = members.changed(), if members_open => match changed {
                Ok(()) => dirty = true,
                Err(_) => members_open = false,
            },
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Brings the catalog in line with the member set: this server first, then every other
/// member by its status, then nodes that carry a `serfHealth` check but are no longer members.
async fn reconcile(agent: &Agent) -> Result<(), crate::error::Error> {
    reconcile_self(agent).await?;
    let members = agent.membership().borrow().clone();
    let me = agent.config.node_name.as_str();
    for m in members.iter().filter(|m| m.name != me) {
        match m.status {
            MemberStatus::Alive | MemberStatus::Leaving => alive(agent, m).await?,
            MemberStatus::Failed => failed(agent, m).await?,
            MemberStatus::Left => deregister(agent, &m.name).await?,
        }
    }
    // Reaped (or never gossiped): a node with a serfHealth check that is not a member.
    let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let stale: Vec<String> = {
        let t = agent.store.read();
        t.catalog
            .nodes
            .keys()
            .filter(|n| n.as_str() != me && !names.contains(n.as_str()))
            .filter(|n| t.node_checks(n).any(|c| c.id == SERF_CHECK_ID))
            .cloned()
            .collect()
    };
    for node in stale {
        deregister(agent, &node).await?;
    }
    Ok(())
}

fn serf_check(node: &str, status: HealthStatus) -> CheckRow {
    CheckRow {
        node: node.to_string(),
        id: SERF_CHECK_ID.into(),
        name: SERF_CHECK_NAME.into(),
        status,
        output: if status == HealthStatus::Passing {
            ALIVE_OUTPUT
        } else {
            FAILED_OUTPUT
        }
        .into(),
        check_type: "serf".into(),
        definition: "{}".into(),
        ..Default::default()
    }
}

fn consul_service(node: &str, port: u16) -> ServiceRow {
    ServiceRow {
        node: node.to_string(),
        id: CONSUL_SERVICE.into(),
        name: CONSUL_SERVICE.into(),
        port,
        meta: BTreeMap::from([
            ("raft_version".to_string(), "3".to_string()),
            ("serf_protocol_current".to_string(), "2".to_string()),
            ("serf_protocol_max".to_string(), "5".to_string()),
            ("serf_protocol_min".to_string(), "1".to_string()),
            ("version".to_string(), crate::CONSUL_API_VERSION.to_string()),
        ]),
        weights_passing: 1,
        weights_warning: 1,
        ..Default::default()
    }
}

/// Registers this server as an alive member: node, `serfHealth`, and the `consul` service.
async fn reconcile_self(agent: &Agent) -> Result<(), crate::error::Error> {
    let node = agent.local.node().row();
    let service = agent
        .config
        .server
        .then(|| consul_service(&node.name, agent.config.ports.server.unwrap_or(8300)));
    let check = serf_check(&node.name, HealthStatus::Passing);
    agent
        .write(Command::CatalogRegister(Box::new(Registration {
            node,
            skip_node_update: false,
            service,
            checks: vec![check],
        })))
        .await?;
    Ok(())
}

/// What the catalog holds about a member: its address, its serfHealth status, whether it has
/// the `consul` service.
fn catalog_state(agent: &Agent, node: &str) -> Option<(String, Option<HealthStatus>, bool)> {
    let t = agent.store.read();
    let row = t.catalog.nodes.get(node)?;
    let serf = t
        .node_checks(node)
        .find(|c| c.id == SERF_CHECK_ID)
        .map(|c| c.status);
    let consul = t.node_services(node).any(|s| s.id == CONSUL_SERVICE);
    Some((row.address.clone(), serf, consul))
}

fn node_row(m: &MemberInfo) -> NodeRow {
    let address = m.addr.to_string();
    let family = if m.addr.is_ipv6() { "ipv6" } else { "ipv4" };
    let mut tagged = BTreeMap::new();
    for k in ["lan", "wan"] {
        tagged.insert(k.to_string(), address.clone());
        tagged.insert(format!("{k}_{family}"), address.clone());
    }
    NodeRow {
        id: m.node_id().unwrap_or_default().to_string(),
        name: m.name.clone(),
        address,
        tagged_addresses: tagged,
        meta: BTreeMap::from([("consul-network-segment".to_string(), String::new())]),
        ..Default::default()
    }
}

async fn alive(agent: &Agent, m: &MemberInfo) -> Result<(), crate::error::Error> {
    let server_port = m
        .server_rpc_addr()
        .map(|a| a.port())
        .or_else(|| m.is_server().then_some(8300));
    let address = m.addr.to_string();
    let existing = catalog_state(agent, &m.name);
    if let Some((addr, Some(HealthStatus::Passing), consul)) = &existing {
        if *addr == address && (*consul || server_port.is_none()) {
            return Ok(());
        }
    }
    let same_address = existing.as_ref().is_some_and(|(a, _, _)| *a == address);
    tracing::debug!(member = %m.name, "leader: registering alive member");
    agent
        .write(Command::CatalogRegister(Box::new(Registration {
            node: node_row(m),
            // Keep the meta and tagged addresses the node's own agent registered.
            skip_node_update: same_address,
            service: server_port.map(|p| consul_service(&m.name, p)),
            checks: vec![serf_check(&m.name, HealthStatus::Passing)],
        })))
        .await?;
    Ok(())
}

async fn failed(agent: &Agent, m: &MemberInfo) -> Result<(), crate::error::Error> {
    let existing = catalog_state(agent, &m.name);
    if let Some((_, Some(HealthStatus::Critical), _)) = &existing {
        return Ok(());
    }
    tracing::info!(member = %m.name, "leader: member failed; serfHealth critical");
    agent
        .write(Command::CatalogRegister(Box::new(Registration {
            node: node_row(m),
            skip_node_update: existing.is_some(),
            service: None,
            checks: vec![serf_check(&m.name, HealthStatus::Critical)],
        })))
        .await?;
    Ok(())
}

async fn deregister(agent: &Agent, node: &str) -> Result<(), crate::error::Error> {
    if node == agent.config.node_name || !agent.store.read().catalog.nodes.contains_key(node) {
        return Ok(());
    }
    tracing::info!(member = %node, "leader: member left or was reaped; deregistering its node");
    agent
        .write(Command::CatalogDeregister {
            node: node.to_string(),
            service_id: None,
            check_id: None,
        })
        .await?;
    Ok(())
}
