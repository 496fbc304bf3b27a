//! Anti-entropy: copies the agent's services and checks into the catalog.
//!
//! Changes are synced as they happen (the state wakes the loop); a periodic full sync also
//! compares the catalog's view of this node with the local state, re-writes what differs and
//! removes what the agent no longer has. Writes go through a [`CatalogTarget`]: on a server the
//! local Raft write path; on a client agent (the cluster issue) a forwarder to the servers.
//! Independent registrations are sent concurrently so the write path can group-commit them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Inner, LocalState};
use crate::error::Error;
use crate::state::{CheckRow, Command, NodeRow, Registration, Response, ServiceRow};

/// How often the full sync runs (Consul's minimum for small clusters).
pub const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// Most catalog writes in flight at once.
const CONCURRENCY: usize = 256;

/// The catalog's current view of one node.
#[derive(Debug, Default)]
pub struct NodeView {
    pub node: Option<NodeRow>,
    pub services: Vec<ServiceRow>,
    pub checks: Vec<CheckRow>,
}

/// Where anti-entropy writes, and how it reads the catalog back.
pub trait CatalogTarget: Send + Sync + 'static {
    /// Commits a catalog command.
    fn write(&self, command: Command) -> BoxFuture<'_, Result<Response, Error>>;
    /// The catalog's view of `node`.
    fn node_view(&self, node: &str) -> BoxFuture<'_, Result<NodeView, Error>>;
    /// Whether writes can succeed now (a leader is known).
    fn ready(&self) -> bool;
}

/// One unit of work for the catalog, with the versions it carries.
enum Op {
    Register {
        reg: Box<Registration>,
        service: Option<(String, u64)>,
        checks: Vec<(String, u64)>,
        node: Option<u64>,
    },
    DeregisterService(String),
    DeregisterCheck(String),
}

/// Runs anti-entropy until `cancel` fires.
pub async fn run(
    state: Arc<LocalState>,
    target: Arc<dyn CatalogTarget>,
    cancel: CancellationToken,
) {
    let mut next_full = Instant::now();
    let mut retry = Duration::from_millis(200);
    loop {
        if !target.ready() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        }
        let full = Instant::now() >= next_full;
        let result = async {
            if full {
                full_diff(&state, target.as_ref()).await?;
            }
            sync_changes(&state, target.as_ref()).await
        }
        .await;
        let wake = match result {
            Ok(()) => {
                retry = Duration::from_millis(200);
                if full {
                    next_full = Instant::now() + FULL_SYNC_INTERVAL;
                }
                state
                    .next_output_due()
                    .map_or(next_full, |d| d.min(next_full))
            }
            Err(e) => {
                tracing::warn!(error = %e, "anti-entropy: syncing with the catalog failed; retrying");
                retry = (retry * 2).min(Duration::from_secs(10));
                Instant::now() + retry
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = state.sync_now.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Compares the catalog's view of this node with the local state: marks what differs as
/// unsynced and what the agent no longer has as removed.
async fn full_diff(state: &LocalState, target: &dyn CatalogTarget) -> Result<(), Error> {
    let view = target.node_view(&state.node.name).await?;
    let mut inner = state.lock();
    let node_row = state.node.row();
    let node_same = view.node.as_ref().is_some_and(|n| {
        let mut n = n.clone();
        n.create_index = 0;
        n.modify_index = 0;
        n == node_row
    });
    if !node_same {
        inner.node_version = inner.bump();
    }
    let catalog_services: std::collections::BTreeMap<&str, &ServiceRow> =
        view.services.iter().map(|s| (s.id.as_str(), s)).collect();
    let catalog_checks: std::collections::BTreeMap<&str, &CheckRow> =
        view.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    for s in view.services.iter() {
        if !inner.services.contains_key(&s.id) && !crate::leader::server_owned_service(&s.id) {
            inner.removed_services.insert(s.id.clone());
        }
    }
    for c in view.checks.iter() {
        if !inner.checks.contains_key(&c.id) && !LocalState::foreign_check(&c.id) {
            inner.removed_checks.insert(c.id.clone());
        }
    }
    let stale_services: Vec<String> = inner
        .services
        .iter()
        .filter(|(id, s)| {
            let want = state.service_row(&s.def.service);
            catalog_services
                .get(id.as_str())
                .is_none_or(|have| !same_service(have, &want))
        })
        .map(|(id, _)| id.clone())
        .collect();
    let stale_checks: Vec<String> = inner
        .checks
        .iter()
        .filter(|(id, c)| {
            let service = inner
                .services
                .get(&c.def.service_id)
                .map(|s| &s.def.service);
            let want = state.check_row(c, service);
            catalog_checks
                .get(id.as_str())
                .is_none_or(|have| !same_check(have, &want))
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in stale_services {
        let v = inner.bump();
        if let Some(s) = inner.services.get_mut(&id) {
            s.version = v;
        }
    }
    for id in stale_checks {
        let v = inner.bump();
        if let Some(c) = inner.checks.get_mut(&id) {
            c.version = v;
        }
    }
    Ok(())
}

fn same_service(have: &ServiceRow, want: &ServiceRow) -> bool {
    let mut have = have.clone();
    have.create_index = 0;
    have.modify_index = 0;
    have == *want
}

fn same_check(have: &CheckRow, want: &CheckRow) -> bool {
    // Service name and tags are the catalog's copy of the service's; compare the rest.
    have.id == want.id
        && have.name == want.name
        && have.status == want.status
        && have.notes == want.notes
        && have.output == want.output
        && have.service_id == want.service_id
        && have.check_type == want.check_type
        && have.interval == want.interval
        && have.timeout == want.timeout
        && have.definition == want.definition
}

/// Writes every unsynced change.
async fn sync_changes(state: &LocalState, target: &dyn CatalogTarget) -> Result<(), Error> {
    let (node_op, ops) = plan(state);
    if let Some(op) = node_op {
        execute(state, target, op).await?;
    }
    let mut pending = ops.into_iter();
    let mut running = FuturesUnordered::new();
    let mut first_error = None;
    loop {
        while running.len() < CONCURRENCY {
            match pending.next() {
                Some(op) => running.push(execute(state, target, op)),
                None => break,
            }
        }
        match running.next().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What must be written now: the node first (when it changed), then everything else.
fn plan(state: &LocalState) -> (Option<Op>, Vec<Op>) {
    let now = Instant::now();
    let mut inner = state.lock();
    // Output-only changes whose grace period is over become real changes.
    let due: Vec<String> = inner
        .checks
        .iter()
        .filter(|(_, c)| c.output_due.is_some_and(|d| d <= now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in due {
        let v = inner.bump();
        if let Some(c) = inner.checks.get_mut(&id) {
            c.output_due = None;
            c.version = v;
        }
    }

    let node_row = state.node.row();
    let node_op = (inner.node_synced != inner.node_version).then(|| Op::Register {
        reg: Box::new(Registration {
            node: node_row.clone(),
            skip_node_update: false,
            service: None,
            checks: Vec::new(),
        }),
        service: None,
        checks: Vec::new(),
        node: Some(inner.node_version),
    });

    // Something removed and added again is simply registered again (a deregistration racing
    // the registration could land second).
    let Inner {
        services,
        checks,
        removed_services,
        removed_checks,
        ..
    } = &mut *inner;
    removed_services.retain(|id| !services.contains_key(id));
    removed_checks.retain(|id| !checks.contains_key(id));
    let mut ops: Vec<Op> = Vec::new();
    ops.extend(
        inner
            .removed_services
            .iter()
            .cloned()
            .map(Op::DeregisterService),
    );
    ops.extend(
        inner
            .removed_checks
            .iter()
            .cloned()
            .map(Op::DeregisterCheck),
    );

    // Each service's checks, found in one pass (not one scan per service).
    let mut by_service: BTreeMap<&str, Vec<&super::LocalCheck>> = BTreeMap::new();
    for c in inner
        .checks
        .values()
        .filter(|c| !c.def.service_id.is_empty())
    {
        by_service
            .entry(c.def.service_id.as_str())
            .or_default()
            .push(c);
    }
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for (id, s) in inner.services.iter().filter(|(_, s)| s.synced != s.version) {
        let own = by_service.remove(id.as_str()).unwrap_or_default();
        covered.extend(own.iter().map(|c| c.def.id.clone()));
        ops.push(Op::Register {
            reg: Box::new(Registration {
                node: node_row.clone(),
                skip_node_update: true,
                service: Some(state.service_row(&s.def.service)),
                checks: own
                    .iter()
                    .map(|c| state.check_row(c, Some(&s.def.service)))
                    .collect(),
            }),
            service: Some((id.clone(), s.version)),
            checks: own.iter().map(|c| (c.def.id.clone(), c.version)).collect(),
            node: None,
        });
    }
    for (id, c) in inner.checks.iter() {
        if c.synced == c.version || covered.contains(id) {
            continue;
        }
        let service = inner
            .services
            .get(&c.def.service_id)
            .map(|s| &s.def.service);
        if !c.def.service_id.is_empty() && service.is_none() {
            continue;
        }
        ops.push(Op::Register {
            reg: Box::new(Registration {
                node: node_row.clone(),
                skip_node_update: true,
                service: None,
                checks: vec![state.check_row(c, service)],
            }),
            service: None,
            checks: vec![(id.clone(), c.version)],
            node: None,
        });
    }
    // A node that is not in the catalog yet must be written before anything on it.
    if node_op.is_some() {
        for op in &mut ops {
            if let Op::Register { reg, .. } = op {
                reg.skip_node_update = false;
            }
        }
    }
    drop(inner);
    (node_op, ops)
}

async fn execute(state: &LocalState, target: &dyn CatalogTarget, op: Op) -> Result<(), Error> {
    let node = state.node.name.clone();
    match op {
        Op::Register {
            reg,
            service,
            checks,
            node: node_version,
        } => {
            if let Response::Register(Err(e)) = target.write(Command::CatalogRegister(reg)).await? {
                return Err(Error::Raft(format!("catalog register: {e}")));
            }
            let mut inner = state.lock();
            if let Some(v) = node_version {
                if inner.node_version == v {
                    inner.node_synced = v;
                }
            }
            if let Some((id, v)) = service {
                if let Some(s) = inner.services.get_mut(&id) {
                    if s.version == v {
                        s.synced = v;
                    }
                }
            }
            for (id, v) in checks {
                if let Some(c) = inner.checks.get_mut(&id) {
                    if c.version == v {
                        c.synced = v;
                    }
                }
            }
        }
        Op::DeregisterService(id) => {
            target
                .write(Command::CatalogDeregister {
                    node,
                    service_id: Some(id.clone()),
                    check_id: None,
                })
                .await?;
            let mut inner = state.lock();
            if !inner.services.contains_key(&id) {
                inner.removed_services.remove(&id);
            }
        }
        Op::DeregisterCheck(id) => {
            target
                .write(Command::CatalogDeregister {
                    node,
                    service_id: None,
                    check_id: Some(id.clone()),
                })
                .await?;
            let mut inner = state.lock();
            if !inner.checks.contains_key(&id) {
                inner.removed_checks.remove(&id);
            }
        }
    }
    Ok(())
}

impl LocalState {
    /// The earliest time an output-only change must be synced.
    fn next_output_due(&self) -> Option<Instant> {
        self.lock()
            .checks
            .values()
            .filter_map(|c| c.output_due)
            .min()
    }
}
