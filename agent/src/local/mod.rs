//! Agent-local state: the services and checks this agent owns, their check runners, and the
//! anti-entropy that copies them into the catalog.
//!
//! What was registered with this agent (config files, `/v1/agent/...`) lives here, not in the
//! replicated tables: the agent runs the checks, answers `/v1/agent/*` from this state, and
//! [`sync`] copies it into the catalog through a [`sync::CatalogTarget`] (the local Raft write
//! path on a server; the cluster issue plugs in a forwarding target for client agents).
//!
//! Every entry carries a version, bumped on each change the catalog must see, and the version
//! last synced; anti-entropy writes what differs and marks an entry synced only if it did not
//! change meanwhile. A check whose status changes is synced at once; a change of output alone
//! waits up to `CHECK_UPDATE_INTERVAL` (Consul's `check_update_interval`), so 10,000 HTTP
//! checks with chatty bodies do not turn into a write stream.

pub mod definition;
mod persist;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use muster_api::{AgentService, HealthCheck, HealthStatus};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::{self, CheckSpec, TtlTimer};
use crate::state::{CheckRow, NodeRow, ServiceRow, Store, Topic};
use definition::{CheckDef, Runner, ServiceDef, Source};

/// How long a change of check output alone may wait before it is synced (Consul's default).
pub const CHECK_UPDATE_INTERVAL: Duration = Duration::from_secs(300);
/// The node maintenance check's ID.
pub const NODE_MAINT: &str = "_node_maintenance";
/// Prefix of a service maintenance check's ID.
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
const DEFAULT_NODE_MAINT_REASON: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const DEFAULT_SERVICE_MAINT_REASON: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Errors of local-state operations, mapped to HTTP statuses by the handlers.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "Unknown service ID {0:?}. Ensure that the service ID is passed, not the service name."
    )]
    UnknownService(String),
    #[error("Unknown check ID {0:?}. Ensure that the check ID is passed, not the check name.")]
    UnknownCheck(String),
    #[error("CheckID {0:?} does not have associated TTL")]
    NotTtl(String),
    #[error("ServiceID {0:?} does not exist")]
    MissingService(String),
    #[error("{0}")]
    Invalid(String),
    #[error("failed to persist: {0}")]
    Persist(String),
}

/// This node as the catalog should show it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub meta: BTreeMap<String, String>,
}

impl NodeInfo {
    pub fn row(&self) -> NodeRow {
        let mut tagged = BTreeMap::new();
        for k in ["lan", "wan"] {
            tagged.insert(k.to_string(), self.address.clone());
            let family = if self.address.contains(':') {
                "ipv6"
            } else {
                "ipv4"
            };
            tagged.insert(format!("{k}_{family}"), self.address.clone());
        }
        let mut meta = self.meta.clone();
        meta.entry("consul-network-segment".into()).or_default();
        meta.entry("consul-version".into())
            .or_insert_with(|| crate::CONSUL_API_VERSION.to_string());
        NodeRow {
            id: self.id.clone(),
            name: self.name.clone(),
            address: self.address.clone(),
            tagged_addresses: tagged,
            meta,
            create_index: 0,
            modify_index: 0,
        }
    }
}

struct LocalService {
    def: ServiceDef,
    source: Source,
    version: u64,
    synced: u64,
}

struct LocalCheck {
    def: CheckDef,
    source: Source,
    status: HealthStatus,
    output: String,
    version: u64,
    synced: u64,
    /// An output-only change waiting to be synced, and when it must be at the latest.
    output_due: Option<Instant>,
    critical_since: Option<Instant>,
    /// Bumped when the check is replaced, so a stale runner's reports are ignored.
    generation: u64,
    /// Registered as part of a service (not on its own).
    via_service: bool,
    /// Stops the runner (interval, TTL timer or alias watcher) when dropped or replaced.
    _stop: Option<tokio_util::sync::DropGuard>,
    ttl: Option<TtlTimer>,
}

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, LocalService>,
    checks: BTreeMap<String, LocalCheck>,
    /// Removed locally, still to be removed from the catalog.
    removed_services: BTreeSet<String>,
    removed_checks: BTreeSet<String>,
    /// IDs of alias checks (possibly stale: pruned when aliases are recomputed).
    aliases: BTreeSet<String>,
    node_version: u64,
    node_synced: u64,
    next_version: u64,
    next_generation: u64,
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }
}

/// The agent's own services and checks.
pub struct LocalState {
    node: NodeInfo,
    /// `<data-dir>` when registrations made through the API are persisted.
    dir: Option<PathBuf>,
    store: Arc<Store>,
    inner: Mutex<Inner>,
    /// Wakes anti-entropy.
    pub(crate) sync_now: Notify,
    cancel: CancellationToken,
    this: Weak<LocalState>,
}

fn status_rank_changed(a: HealthStatus, b: HealthStatus) -> bool {
    a != b
}

impl LocalState {
    /// Creates the state; runners stop when `cancel` fires.
    pub fn new(
        node: NodeInfo,
        dir: Option<PathBuf>,
        store: Arc<Store>,
        cancel: CancellationToken,
    ) -> Arc<LocalState> {
        Arc::new_cyclic(|this| LocalState {
            node,
            dir,
            store,
            inner: Mutex::new(Inner {
                node_version: 1,
                next_version: 1,
                ..Inner::default()
            }),
            sync_now: Notify::new(),
            cancel,
            this: this.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    fn changed(&self) {
        self.sync_now.notify_one();
    }

    // ---- registration ------------------------------------------------------------------

    /// Adds or replaces a service with its checks. Checks whose definition did not change keep
    /// their runner and status (no flap); with `replace_existing_checks`, the service's other
    /// checks are removed.
    pub fn add_service(
        &self,
        def: ServiceDef,
        source: Source,
        replace_existing_checks: bool,
    ) -> Result<(), LocalError> {
        let id = def.service.id.clone();
        let keep: BTreeSet<String> = def.checks.iter().map(|c| c.id.clone()).collect();
        // A check came with the service (not through `check/register` or a `check` block) when
        // it is `via_service`; only those are replaced by `replace-existing-checks`, and only
        // those are kept in the service's persisted file.
        let is_stale = |c: &LocalCheck| {
            replace_existing_checks
                && c.via_service
                && c.def.service_id == id
                && !keep.contains(&c.def.id)
        };
        // Only a persisting agent needs the service's full check list (a scan of every check).
        if source == Source::Remote && self.dir.is_some() {
            let mut checks: BTreeMap<String, muster_api::CheckRegistration> = self
                .lock()
                .checks
                .values()
                .filter(|c| c.via_service && c.def.service_id == id && !is_stale(c))
                .map(|c| (c.def.id.clone(), c.def.registration.clone()))
                .collect();
            for c in &def.checks {
                checks.insert(c.id.clone(), c.registration.clone());
            }
            self.persist_service(&def, checks.into_values().collect())?;
        }
        let new_checks: Vec<CheckDef> = def.checks.clone();
        {
            let mut inner = self.lock();
            let version = inner.bump();
            let unchanged = inner
                .services
                .get(&id)
                .is_some_and(|s| s.def.service == def.service);
            match inner.services.get_mut(&id) {
                Some(s) => {
                    s.def = def;
                    s.source = source;
                    if !unchanged {
                        s.version = version;
                    }
                }
                None => {
                    inner.services.insert(
                        id.clone(),
                        LocalService {
                            def,
                            source,
                            version,
                            synced: 0,
                        },
                    );
                }
            }
            inner.removed_services.remove(&id);
            let stale: Vec<String> = if replace_existing_checks {
                inner
                    .checks
                    .values()
                    .filter(|c| is_stale(c))
                    .map(|c| c.def.id.clone())
                    .collect()
            } else {
                Vec::new()
            };
            for cid in stale {
                inner.checks.remove(&cid);
                inner.removed_checks.insert(cid.clone());
            }
        }
        for check in new_checks {
            self.put_check(check, source, false, true)?;
        }
        self.changed();
        Ok(())
    }

    /// Removes a service and its checks. Returns whether it existed.
    pub fn remove_service(&self, id: &str) -> bool {
        let existed = {
            let mut inner = self.lock();
            let existed = inner.services.remove(id).is_some();
            if existed {
                inner.removed_services.insert(id.to_string());
                let owned: Vec<String> = inner
                    .checks
                    .iter()
                    .filter(|(_, c)| c.def.service_id == id)
                    .map(|(cid, _)| cid.clone())
                    .collect();
                for cid in owned {
                    inner.checks.remove(&cid);
                    // The catalog drops a service's checks with it.
                    self.unpersist_check(&cid);
                }
            }
            existed
        };
        if existed {
            self.unpersist_service(id);
            self.recompute_aliases();
            self.changed();
        }
        existed
    }

    /// Adds or replaces a standalone check (or a service's, with `service_id` set).
    pub fn add_check(&self, def: CheckDef, source: Source) -> Result<(), LocalError> {
        if !def.service_id.is_empty() && !self.lock().services.contains_key(&def.service_id) {
            return Err(LocalError::MissingService(def.service_id.clone()));
        }
        self.put_check(def, source, source == Source::Remote, false)?;
        self.changed();
        Ok(())
    }

    fn put_check(
        &self,
        def: CheckDef,
        source: Source,
        persist: bool,
        via_service: bool,
    ) -> Result<(), LocalError> {
        if persist {
            self.persist_check(&def, false)?;
        }
        let mut inner = self.lock();
        if let Some(existing) = inner.checks.get_mut(&def.id) {
            if existing.def == def {
                existing.source = source;
                existing.via_service = via_service;
                return Ok(());
            }
        }
        let version = inner.bump();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let id = def.id.clone();
        // A replaced check keeps its current status (no flap); a new TTL check takes the state
        // it had before a restart if that is still within its TTL; others start as defined.
        let (status, output) = match inner.checks.get(&id) {
            Some(old) => (old.status, old.output.clone()),
            None => match &def.runner {
                Runner::Ttl(_) => self
                    .restore_ttl_state(&id)
                    .unwrap_or((def.initial_status, String::new())),
                _ => (def.initial_status, String::new()),
            },
        };
        let (stop, ttl) = self.start_runner(&def, generation);
        inner.removed_checks.remove(&id);
        if matches!(def.runner, Runner::Alias { .. }) {
            inner.aliases.insert(id.clone());
        }
        inner.checks.insert(
            id,
            LocalCheck {
                def,
                source,
                critical_since: (status == HealthStatus::Critical).then(Instant::now),
                status,
                output,
                version,
                synced: 0,
                output_due: None,
                generation,
                via_service,
                _stop: stop,
                ttl,
            },
        );
        drop(inner);
        self.recompute_aliases();
        Ok(())
    }

    /// Removes a check. Returns whether it existed.
    pub fn remove_check(&self, id: &str) -> bool {
        let existed = {
            let mut inner = self.lock();
            let existed = inner.checks.remove(id).is_some();
            if existed {
                inner.removed_checks.insert(id.to_string());
            }
            existed
        };
        if existed {
            self.unpersist_check(id);
            self.recompute_aliases();
            self.changed();
        }
        existed
    }

    fn start_runner(
        &self,
        def: &CheckDef,
        generation: u64,
    ) -> (Option<tokio_util::sync::DropGuard>, Option<TtlTimer>) {
        let stop = self.cancel.child_token();
        let report = self.reporter(def.id.clone(), generation);
        match &def.runner {
            Runner::Interval(kind) => {
                let spec = CheckSpec {
                    kind: kind.clone(),
                    interval: def.interval,
                    timeout: def.timeout,
                    success_before_passing: def.success_before_passing,
                    failures_before_warning: if def.failures_before_warning == 0 {
                        def.failures_before_critical
                    } else {
                        def.failures_before_warning
                    },
                    failures_before_critical: def.failures_before_critical,
                };
                checks::spawn(spec, report, stop.clone());
                (Some(stop.drop_guard()), None)
            }
            Runner::Ttl(ttl) => {
                let timer = TtlTimer::spawn(*ttl, report, stop.clone());
                (Some(stop.drop_guard()), Some(timer))
            }
            Runner::Alias { node, service_id } if !node.is_empty() && *node != self.node.name => {
                tokio::spawn(alias_remote(
                    self.store.clone(),
                    node.clone(),
                    service_id.clone(),
                    report,
                    stop.clone(),
                ));
                (Some(stop.drop_guard()), None)
            }
            Runner::Alias { .. } | Runner::Static => (None, None),
        }
    }

    fn reporter(&self, id: String, generation: u64) -> checks::Report {
        let this = self.this.clone();
        Arc::new(move |status, output| {
            if let Some(state) = this.upgrade() {
                state.set_status(&id, Some(generation), status, output);
            }
        })
    }

    /// Records a check result. Status changes are synced at once; output-only changes within
    /// [`CHECK_UPDATE_INTERVAL`].
    fn set_status(&self, id: &str, generation: Option<u64>, status: HealthStatus, output: String) {
        let mut inner = self.lock();
        let version = inner.next_version + 1;
        let Some(check) = inner.checks.get_mut(id) else {
            return;
        };
        if generation.is_some_and(|g| g != check.generation) {
            return;
        }
        let status_changed = status_rank_changed(check.status, status);
        if !status_changed && check.output == output {
            return;
        }
        if status_changed {
            check.critical_since = (status == HealthStatus::Critical).then(Instant::now);
            check.status = status;
            check.output = output;
            check.version = version;
            check.output_due = None;
            inner.next_version = version;
            let service_id = inner.checks.get(id).map(|c| c.def.service_id.clone());
            drop(inner);
            tracing::debug!(check = id, %status, "check status changed");
            if service_id.is_some() {
                self.recompute_aliases();
            }
            self.changed();
        } else {
            check.output = output;
            if check.output_due.is_none() {
                check.output_due = Some(Instant::now() + CHECK_UPDATE_INTERVAL);
            }
        }
    }

    /// `PUT /v1/agent/check/{pass,warn,fail,update}/:id`: sets a TTL check.
    pub fn update_ttl(
        &self,
        id: &str,
        status: HealthStatus,
        output: &str,
    ) -> Result<(), LocalError> {
        let output = {
            let inner = self.lock();
            let check = inner
                .checks
                .get(id)
                .ok_or_else(|| LocalError::UnknownCheck(id.to_string()))?;
            match &check.ttl {
                Some(timer) => timer.touch_with_output(output),
                None => return Err(LocalError::NotTtl(id.to_string())),
            }
        };
        self.set_status(id, None, status, output.clone());
        self.persist_ttl_state(id, status, &output);
        // An update with the same status but new output is what the user asked for: sync it
        // now rather than deferring it like a runner's chatter.
        let mut inner = self.lock();
        let version = inner.bump();
        if let Some(c) = inner.checks.get_mut(id) {
            if c.output_due.is_some() {
                c.output_due = None;
                c.version = version;
                drop(inner);
                self.changed();
            }
        }
        Ok(())
    }

    /// Enables or disables node maintenance.
    pub fn node_maintenance(&self, enable: bool, reason: &str) -> Result<(), LocalError> {
        if !enable {
            self.remove_check(NODE_MAINT);
            return Ok(());
        }
        let notes = if reason.is_empty() {
            DEFAULT_NODE_MAINT_REASON
        } else {
            reason
        };
        self.put_maintenance(NODE_MAINT, "Node Maintenance Mode", notes, "")
    }

    /// Enables or disables maintenance of one service.
    pub fn service_maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), LocalError> {
        if !self.lock().services.contains_key(id) {
            return Err(LocalError::UnknownService(id.to_string()));
        }
        let check_id = format!("{SERVICE_MAINT_PREFIX}{id}");
        if !enable {
            self.remove_check(&check_id);
            return Ok(());
        }
        let notes = if reason.is_empty() {
            DEFAULT_SERVICE_MAINT_REASON
        } else {
            reason
        };
        self.put_maintenance(&check_id, "Service Maintenance Mode", notes, id)
    }

    fn put_maintenance(
        &self,
        id: &str,
        name: &str,
        notes: &str,
        service_id: &str,
    ) -> Result<(), LocalError> {
        let registration = muster_api::CheckRegistration {
            check_id: id.to_string(),
            name: name.to_string(),
            notes: notes.to_string(),
            service_id: service_id.to_string(),
            status: "critical".into(),
            ..Default::default()
        };
        let def = CheckDef {
            id: id.to_string(),
            name: name.to_string(),
            notes: notes.to_string(),
            service_id: service_id.to_string(),
            initial_status: HealthStatus::Critical,
            runner: Runner::Static,
            check_type: "maintenance",
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            deregister_after: None,
            definition: Default::default(),
            registration,
        };
        if self.dir.is_some() {
            self.persist_check(&def, true)?;
        }
        self.put_check(def, Source::Remote, false, false)?;
        self.changed();
        Ok(())
    }

    /// Replaces the config-file definitions by `services` and `checks` (a reload): what is
    /// gone is removed, what is new is added, what changed is replaced; unchanged entries keep
    /// their runners and statuses. Registrations made through the API are left alone.
    pub fn reload(
        &self,
        services: Vec<ServiceDef>,
        checks: Vec<CheckDef>,
    ) -> Result<(), LocalError> {
        let (old_services, old_checks): (Vec<String>, Vec<String>) = {
            let inner = self.lock();
            (
                inner
                    .services
                    .iter()
                    .filter(|(_, s)| s.source == Source::Local)
                    .map(|(id, _)| id.clone())
                    .collect(),
                inner
                    .checks
                    .iter()
                    .filter(|(_, c)| c.source == Source::Local && !c.via_service)
                    .map(|(id, _)| id.clone())
                    .collect(),
            )
        };
        let new_service_ids: BTreeSet<&str> =
            services.iter().map(|s| s.service.id.as_str()).collect();
        let new_check_ids: BTreeSet<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        for id in old_services
            .iter()
            .filter(|id| !new_service_ids.contains(id.as_str()))
        {
            self.remove_service(id);
        }
        for id in old_checks
            .iter()
            .filter(|id| !new_check_ids.contains(id.as_str()))
        {
            self.remove_check(id);
        }
        for s in services {
            let unchanged = self
                .lock()
                .services
                .get(&s.service.id)
                .is_some_and(|cur| cur.def == s);
            if !unchanged {
                self.add_service(s, Source::Local, true)?;
            }
        }
        for c in checks {
            self.add_check(c, Source::Local)?;
        }
        Ok(())
    }

    // ---- reads -------------------------------------------------------------------------

    /// Every local service, by ID.
    pub fn services(&self) -> Vec<AgentService> {
        self.lock()
            .services
            .values()
            .map(|s| s.def.service.clone())
            .collect()
    }

    /// One local service with the checks that decide its health (node checks first).
    pub fn service(&self, id: &str) -> Option<(AgentService, Vec<HealthCheck>)> {
        let inner = self.lock();
        let s = inner.services.get(id)?;
        let checks = inner
            .checks
            .values()
            .filter(|c| c.def.service_id.is_empty())
            .map(|c| self.health_check(c, None))
            .chain(
                inner
                    .checks
                    .values()
                    .filter(|c| c.def.service_id == id)
                    .map(|c| self.health_check(c, Some(&s.def.service))),
            )
            .collect();
        Some((s.def.service.clone(), checks))
    }

    /// Every local check.
    pub fn checks(&self) -> Vec<HealthCheck> {
        let inner = self.lock();
        inner
            .checks
            .values()
            .map(|c| {
                let service = inner
                    .services
                    .get(&c.def.service_id)
                    .map(|s| &s.def.service);
                self.health_check(c, service)
            })
            .collect()
    }

    fn health_check(&self, c: &LocalCheck, service: Option<&AgentService>) -> HealthCheck {
        let show = |d: Duration| {
            if d.is_zero() {
                String::new()
            } else {
                muster_api::duration::format(d)
            }
        };
        HealthCheck {
            node: self.node.name.clone(),
            check_id: c.def.id.clone(),
            name: c.def.name.clone(),
            status: c.status,
            notes: c.def.notes.clone(),
            output: c.output.clone(),
            service_id: c.def.service_id.clone(),
            service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
            service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
            check_type: c.def.check_type.to_string(),
            interval: show(c.def.interval),
            timeout: show(c.def.timeout),
            exposed_port: 0,
            definition: c.def.definition.clone(),
            create_index: 0,
            modify_index: 0,
        }
    }

    /// Checks with `deregister_critical_service_after` that have been critical for longer:
    /// their services are removed (Consul's reaper).
    pub fn reap_critical(&self) -> Vec<String> {
        let now = Instant::now();
        let doomed: BTreeSet<String> = {
            let inner = self.lock();
            inner
                .checks
                .values()
                .filter(|c| !c.def.service_id.is_empty())
                .filter(|c| match (c.def.deregister_after, c.critical_since) {
                    (Some(after), Some(since)) => now.duration_since(since) >= after,
                    _ => false,
                })
                .map(|c| c.def.service_id.clone())
                .collect()
        };
        for id in &doomed {
            tracing::info!(service = %id, "removing service: its check was critical for longer than deregister_critical_service_after");
            self.remove_service(id);
        }
        doomed.into_iter().collect()
    }

    // ---- alias checks ------------------------------------------------------------------

    /// Re-evaluates alias checks that follow services on this node.
    fn recompute_aliases(&self) {
        let updates: Vec<(String, HealthStatus, String)> = {
            let mut inner = self.lock();
            if inner.aliases.is_empty() {
                return;
            }
            let Inner {
                aliases, checks, ..
            } = &mut *inner;
            aliases.retain(|id| {
                checks
                    .get(id)
                    .is_some_and(|c| matches!(c.def.runner, Runner::Alias { .. }))
            });
            inner
                .aliases
                .iter()
                .filter_map(|id| inner.checks.get(id))
                .filter_map(|c| match &c.def.runner {
                    Runner::Alias { node, service_id }
                        if node.is_empty() || *node == self.node.name =>
                    {
                        Some((c.def.id.clone(), service_id.clone()))
                    }
                    _ => None,
                })
                .map(|(id, target)| {
                    let relevant = inner.checks.values().filter(|o| {
                        o.def.id != id
                            && (o.def.service_id.is_empty() || o.def.service_id == target)
                            && !matches!(o.def.runner, Runner::Alias { .. })
                    });
                    if !target.is_empty() && !inner.services.contains_key(&target) {
                        return (
                            id,
                            HealthStatus::Critical,
                            format!(
                                "Service {target} could not be found on node {}",
                                self.node.name
                            ),
                        );
                    }
                    let status = relevant.fold(HealthStatus::Passing, |acc, o| acc.worst(o.status));
                    (id, status, alias_output(status))
                })
                .collect()
        };
        for (id, status, output) in updates {
            self.set_status(&id, None, status, output);
        }
    }

    // ---- anti-entropy support ---------------------------------------------------------

    /// The catalog row of a local service.
    fn service_row(&self, s: &AgentService) -> ServiceRow {
        ServiceRow::from_api(&self.node.name, s)
    }

    /// The catalog row of a local check (service name and tags are filled in by apply).
    fn check_row(&self, c: &LocalCheck, service: Option<&AgentService>) -> CheckRow {
        let h = self.health_check(c, service);
        CheckRow {
            node: h.node,
            id: h.check_id,
            name: h.name,
            status: h.status,
            notes: h.notes,
            output: h.output,
            service_id: h.service_id,
            service_name: h.service_name,
            service_tags: h.service_tags,
            check_type: h.check_type,
            interval: h.interval,
            timeout: h.timeout,
            definition: serde_json::to_string(&h.definition).unwrap_or_default(),
            create_index: 0,
            modify_index: 0,
        }
    }

    /// Is `id` a check the catalog may hold for this node without the agent having it?
    /// (`serfHealth` belongs to the leader's membership reconciliation.)
    fn foreign_check(id: &str) -> bool {
        id == crate::leader::SERF_CHECK_ID
    }
}

/// FNV-1a, 64 bits: a stable digest for file names and content hashes (not for security).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn alias_output(status: HealthStatus) -> String {
    match status {
        HealthStatus::Passing => "All checks passing.".into(),
        HealthStatus::Warning => "At least one check is warning.".into(),
        _ => "At least one check is critical.".into(),
    }
}

/// An alias check on a service (or node) of another node: follows the catalog with a blocking
/// query on that node.
async fn alias_remote(
    store: Arc<Store>,
    node: String,
    service_id: String,
    report: checks::Report,
    stop: CancellationToken,
) {
    let mut index = 0;
    loop {
        let query = store.blocking(
            Topic::Node(node.clone()),
            Some(index),
            Duration::from_secs(300),
            |t| {
                let idx = t.checks_index().max(t.services_index());
                let status = if !t.catalog.nodes.contains_key(&node) {
                    (
                        HealthStatus::Critical,
                        format!("Node {node} could not be found"),
                    )
                } else if !service_id.is_empty()
                    && !t
                        .catalog
                        .services
                        .contains_key(&(node.clone(), service_id.clone()))
                {
                    (
                        HealthStatus::Critical,
                        format!("Service {service_id} could not be found on node {node}"),
                    )
                } else {
                    let checks = t.instance_checks(&node, &service_id);
                    let s = crate::state::catalog::aggregate(checks);
                    (s, alias_output(s))
                };
                (idx, status)
            },
        );
        tokio::select! {
            _ = stop.cancelled() => return,
            (idx, (status, output)) = query => {
                index = idx;
                report(status, output);
            }
        }
    }
}
