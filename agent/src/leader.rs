//! What only the leader does to the catalog: reconcile membership into it.
//!
//! Consul's leader registers every live member's node with a `serfHealth` check ("Agent alive
//! and reachable") and every server's `consul` service, marks failed members critical and
//! removes members that left. Gossip membership is the cluster issue's; until then the members
//! are this server itself, reconciled when it becomes leader and every
//! [`RECONCILE_INTERVAL`] after. Writes that change nothing bump no index, so reconciling an
//! unchanged catalog wakes no watcher.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use muster_api::HealthStatus;

use crate::server::Agent;
use crate::state::{CheckRow, Command, Registration, ServiceRow};

/// The membership check's ID (Consul's `structs.SerfCheckID`).
pub const SERF_CHECK_ID: &str = "serfHealth";
const SERF_CHECK_NAME: &str = "Serf Health Status";
const ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// The service every server runs (Consul's `structs.ConsulServiceID`).
pub const CONSUL_SERVICE: &str = "consul";
/// How often the leader re-checks the catalog against membership.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// Services the leader registers on server nodes; anti-entropy leaves them alone.
pub fn server_owned_service(id: &str) -> bool {
    id == CONSUL_SERVICE
}

/// Runs while the agent runs: reconciles on gaining leadership and periodically.
pub async fn run(agent: Arc<Agent>) {
    let mut metrics = agent.raft.metrics();
    let mut was_leader = false;
    let mut next = tokio::time::Instant::now();
    loop {
        let leader = metrics.borrow().current_leader == Some(agent.raft_id);
        if leader && (!was_leader || tokio::time::Instant::now() >= next) {
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
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Registers this server as an alive member: node, `serfHealth`, and the `consul` service.
async fn reconcile(agent: &Agent) -> Result<(), crate::error::Error> {
    let node = agent.local.node().row();
    let member = agent.member();
    let service = agent.config.server.then(|| ServiceRow {
        node: node.name.clone(),
        id: CONSUL_SERVICE.into(),
        name: CONSUL_SERVICE.into(),
        port: agent.config.ports.server.unwrap_or(8300),
        meta: BTreeMap::from([
            ("raft_version".to_string(), "3".to_string()),
            (
                "serf_protocol_current".to_string(),
                member.protocol_cur.to_string(),
            ),
            (
                "serf_protocol_max".to_string(),
                member.protocol_max.to_string(),
            ),
            (
                "serf_protocol_min".to_string(),
                member.protocol_min.to_string(),
            ),
            ("version".to_string(), crate::CONSUL_API_VERSION.to_string()),
        ]),
        weights_passing: 1,
        weights_warning: 1,
        ..Default::default()
    });
    let check = CheckRow {
        node: node.name.clone(),
        id: SERF_CHECK_ID.into(),
        name: SERF_CHECK_NAME.into(),
        status: HealthStatus::Passing,
        output: ALIVE_OUTPUT.into(),
        check_type: "serf".into(),
        definition: "{}".into(),
        ..Default::default()
    };
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
