//! The catalog tables: nodes, service instances and health checks, with Consul's index rules
//! and the watch topics their changes fire.
//!
//! Rows are keyed by node name first, so a node's services and checks are one range scan.
//! A secondary index maps each service name to its instances, and each (node, service ID) to
//! its checks (node-level checks under the empty service ID), so `health/service/web` touches
//! only web's rows however many services the catalog holds.
//!
//! Index rules (Consul's): every table keeps its own index; each service name keeps the index
//! of the last change to any of its instances, their checks, or the nodes they run on, and a
//! name whose last instance went away answers the catalog's "extinction" index, so a blocking
//! query on a service never sees its index go backwards. A write that changes nothing (an
//! anti-entropy sync of an unchanged service) bumps no index and wakes nobody.

use std::collections::BTreeMap;

use imbl::{OrdMap, OrdSet};
use muster_api::HealthStatus;
use serde::{Deserialize, Serialize};

use super::watch::{Fired, Topic};
use super::Tables;

/// A catalog node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeRow {
    pub id: String,
    pub name: String,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One service instance on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceRow {
    pub node: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    /// name → (address, port)
    pub tagged_addresses: BTreeMap<String, (String, u16)>,
    pub weights_passing: i32,
    pub weights_warning: i32,
    pub enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl ServiceRow {
    /// The row for service `s` on `node` (indexes are set by apply). An empty ID is the name.
    pub fn from_api(node: &str, s: &muster_api::AgentService) -> ServiceRow {
        ServiceRow {
            node: node.to_string(),
            id: if s.id.is_empty() {
                s.service.clone()
            } else {
                s.id.clone()
            },
            name: s.service.clone(),
            kind: s.kind.clone(),
            tags: s.tags.clone(),
            address: s.address.clone(),
            port: s.port,
            meta: s.meta.clone(),
            tagged_addresses: s
                .tagged_addresses
                .iter()
                .map(|(k, a)| (k.clone(), (a.address.clone(), a.port)))
                .collect(),
            weights_passing: s.weights.passing,
            weights_warning: s.weights.warning,
            enable_tag_override: s.enable_tag_override,
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// One health check on a node (a node-level check has an empty `service_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRow {
    pub node: String,
    pub id: String,
    pub name: String,
    pub status: HealthStatus,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    /// Filled in from the service at apply time.
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub check_type: String,
    pub interval: String,
    pub timeout: String,
    /// The check's `Definition` as Consul's JSON (kept opaque here).
    pub definition: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for CheckRow {
    fn default() -> Self {
        CheckRow {
            node: String::new(),
            id: String::new(),
            name: String::new(),
            status: HealthStatus::Critical,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            check_type: String::new(),
            interval: String::new(),
            timeout: String::new(),
            definition: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// `PUT /v1/catalog/register` and the agent's anti-entropy: a node, optionally one service and
/// some checks, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Registration {
    pub node: NodeRow,
    /// Leave the node row as it is (it must exist).
    pub skip_node_update: bool,
    pub service: Option<ServiceRow>,
    pub checks: Vec<CheckRow>,
}

impl Registration {
    /// Roughly how many bytes the registration adds to a log entry (for batching limits).
    pub fn approx_size(&self) -> usize {
        fn map(m: &BTreeMap<String, String>) -> usize {
            m.iter().map(|(k, v)| k.len() + v.len()).sum()
        }
        let n = &self.node;
        let node = n.id.len() + n.name.len() + n.address.len() + map(&n.meta);
        let service = self.service.as_ref().map_or(0, |s| {
            64 + s.id.len()
                + s.name.len()
                + s.address.len()
                + s.tags.iter().map(String::len).sum::<usize>()
                + map(&s.meta)
        });
        let checks: usize = self
            .checks
            .iter()
            .map(|c| {
                64 + c.id.len() + c.name.len() + c.notes.len() + c.output.len() + c.definition.len()
            })
            .sum();
        node + service + checks
    }
}

/// Why a registration was refused (nothing was applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterError {
    /// A check names a service the node does not have.
    MissingService { check: String, service: String },
    /// `skip_node_update` (or a check) for a node that is not registered.
    MissingNode(String),
    /// The node ID is already used by another node name.
    NodeIdConflict { id: String, existing: String },
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::MissingService { check, service } => write!(
                f,
                "Missing service registration: check {check:?} refers to service {service:?}, which the node does not have"
            ),
            RegisterError::MissingNode(n) => write!(
                f,
                "Missing node registration: node {n:?} does not exist and no address was given"
            ),
            RegisterError::NodeIdConflict { id, existing } => write!(
                f,
                "Failed to set node ID: node ID {id:?} is already used by node {existing:?}"
            ),
        }
    }
}

/// The catalog's tables and secondary indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub nodes: OrdMap<String, NodeRow>,
    /// (node, service ID) → instance.
    pub services: OrdMap<(String, String), ServiceRow>,
    /// (node, check ID) → check.
    pub checks: OrdMap<(String, String), CheckRow>,
    /// service name → its instances as (node, service ID).
    pub by_name: OrdMap<String, OrdSet<(String, String)>>,
    /// (node, service ID or "" for node checks) → check IDs.
    pub checks_by_owner: OrdMap<(String, String), OrdSet<String>>,
    /// service name → index of the last change to it.
    pub service_index: OrdMap<String, u64>,
    /// Index at which some service name last lost its last instance.
    pub extinction_index: u64,
}

/// Status of a set of checks: the worst of them, passing when there are none.
pub fn aggregate<'a>(checks: impl IntoIterator<Item = &'a CheckRow>) -> HealthStatus {
    checks
        .into_iter()
        .fold(HealthStatus::Passing, |acc, c| acc.worst(c.status))
}

fn key(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

impl Tables {
    /// Applies a registration. Validates everything first, so a refused registration changes
    /// nothing.
    pub(super) fn catalog_register(
        &mut self,
        index: u64,
        reg: &Registration,
        fired: &mut Fired,
    ) -> Result<(), RegisterError> {
        let name = &reg.node.name;
        let node_exists = self.catalog.nodes.contains_key(name);
        // `SkipNodeUpdate` leaves an existing node alone; a node that does not exist yet is
        // still created (Consul's documented behaviour), which needs its address.
        let write_node = !reg.skip_node_update || !node_exists;
        if write_node && reg.node.address.is_empty() {
            return Err(RegisterError::MissingNode(name.clone()));
        }
        if write_node && !reg.node.id.is_empty() {
            if let Some(other) = self
                .catalog
                .nodes
                .values()
                .find(|n| n.id.eq_ignore_ascii_case(&reg.node.id) && &n.name != name)
            {
                return Err(RegisterError::NodeIdConflict {
                    id: reg.node.id.clone(),
                    existing: other.name.clone(),
                });
            }
        }
        for check in &reg.checks {
            if check.service_id.is_empty() {
                continue;
            }
            let in_request = reg
                .service
                .as_ref()
                .is_some_and(|s| s.id == check.service_id);
            if !in_request
                && !self
                    .catalog
                    .services
                    .contains_key(&key(name, &check.service_id))
            {
                return Err(RegisterError::MissingService {
                    check: check.id.clone(),
                    service: check.service_id.clone(),
                });
            }
        }

        if write_node {
            self.ensure_node(index, &reg.node, fired);
        }
        if let Some(service) = &reg.service {
            self.ensure_service(index, name, service, fired);
        }
        for check in &reg.checks {
            self.ensure_check(index, name, check, fired);
        }
        Ok(())
    }

    fn ensure_node(&mut self, index: u64, node: &NodeRow, fired: &mut Fired) {
        let existing = self.catalog.nodes.get(&node.name);
        let mut row = node.clone();
        row.create_index = existing.map(|e| e.create_index).unwrap_or(index);
        row.modify_index = existing.map(|e| e.modify_index).unwrap_or(index);
        if let Some(e) = existing {
            // An ID-less registration keeps the ID the node has.
            if row.id.is_empty() {
                row.id = e.id.clone();
            }
            if *e == row {
                return;
            }
        }
        row.modify_index = index;
        self.catalog.nodes.insert(node.name.clone(), row);
        self.index.nodes = index;
        fired.topic(Topic::Nodes);
        fired.topic(Topic::Node(node.name.clone()));
        // Every instance on the node carries the node's address: their answers changed.
        self.touch_node_services(index, &node.name, fired);
    }

    fn ensure_service(&mut self, index: u64, node: &str, service: &ServiceRow, fired: &mut Fired) {
        let k = key(node, &service.id);
        let existing = self.catalog.services.get(&k).cloned();
        let mut row = service.clone();
        row.node = node.to_string();
        row.create_index = existing.as_ref().map(|e| e.create_index).unwrap_or(index);
        row.modify_index = existing.as_ref().map(|e| e.modify_index).unwrap_or(index);
        if existing.as_ref() == Some(&row) {
            return;
        }
        row.modify_index = index;
        if let Some(old) = &existing {
            if old.name != row.name {
                self.unlink_name(index, &old.name, &k, fired);
            }
        }
        self.catalog
            .by_name
            .entry(row.name.clone())
            .or_default()
            .insert(k.clone());
        let tags_changed = existing.as_ref().map(|e| &e.tags) != Some(&row.tags)
            || existing.as_ref().map(|e| &e.name) != Some(&row.name);
        let (name, tags) = (row.name.clone(), row.tags.clone());
        self.catalog.services.insert(k.clone(), row);
        self.index.services = index;
        fired.topic(Topic::Services);
        fired.topic(Topic::Node(node.to_string()));
        self.bump_service(index, &name, fired);
        // Checks of the service carry its name and tags.
        if tags_changed {
            self.relabel_checks(index, node, &k.1, &name, &tags, fired);
        }
    }

    fn ensure_check(&mut self, index: u64, node: &str, check: &CheckRow, fired: &mut Fired) {
        let k = key(node, &check.id);
        let existing = self.catalog.checks.get(&k).cloned();
        let mut row = check.clone();
        row.node = node.to_string();
        if row.service_id.is_empty() {
            row.service_name.clear();
            row.service_tags.clear();
        } else if let Some(s) = self.catalog.services.get(&key(node, &row.service_id)) {
            row.service_name = s.name.clone();
            row.service_tags = s.tags.clone();
        }
        row.create_index = existing.as_ref().map(|e| e.create_index).unwrap_or(index);
        row.modify_index = existing.as_ref().map(|e| e.modify_index).unwrap_or(index);
        if existing.as_ref() == Some(&row) {
            return;
        }
        row.modify_index = index;
        if let Some(old) = &existing {
            if old.service_id != row.service_id {
                self.unlink_check_owner(node, &old.service_id, &old.id);
                self.touch_check_owner(index, node, &old.service_id, fired);
            }
        }
        self.catalog
            .checks_by_owner
            .entry(key(node, &row.service_id))
            .or_default()
            .insert(row.id.clone());
        let owner = row.service_id.clone();
        if row.status == HealthStatus::Critical {
            fired.session_trigger(node, Some(&row.id));
        }
        self.catalog.checks.insert(k, row);
        self.index.checks = index;
        fired.topic(Topic::Checks);
        fired.topic(Topic::Node(node.to_string()));
        self.touch_check_owner(index, node, &owner, fired);
    }

    /// Removes a node with everything on it, one service (and its checks), or one check.
    /// Removing what is not there is a successful no-op, as in Consul.
    pub(super) fn catalog_deregister(
        &mut self,
        index: u64,
        node: &str,
        service_id: Option<&str>,
        check_id: Option<&str>,
        fired: &mut Fired,
    ) {
        match (service_id, check_id) {
            (None, None) => {
                let services: Vec<String> =
                    self.node_services(node).map(|s| s.id.clone()).collect();
                for id in services {
                    self.delete_service(index, node, &id, fired);
                }
                let checks: Vec<String> = self.node_checks(node).map(|c| c.id.clone()).collect();
                for id in checks {
                    self.delete_check(index, node, &id, fired);
                }
                if self.catalog.nodes.remove(node).is_some() {
                    fired.session_trigger(node, None);
                    self.index.nodes = index;
                    fired.topic(Topic::Nodes);
                    fired.topic(Topic::Node(node.to_string()));
                }
            }
            (Some(service), check) => {
                self.delete_service(index, node, service, fired);
                if let Some(check) = check {
                    self.delete_check(index, node, check, fired);
                }
            }
            (None, Some(check)) => self.delete_check(index, node, check, fired),
        }
    }

    fn delete_service(&mut self, index: u64, node: &str, id: &str, fired: &mut Fired) {
        let k = key(node, id);
        let Some(row) = self.catalog.services.remove(&k) else {
            return;
        };
        let owned: Vec<String> = self
            .catalog
            .checks_by_owner
            .get(&k)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for check in owned {
            self.delete_check(index, node, &check, fired);
        }
        self.unlink_name(index, &row.name, &k, fired);
        self.index.services = index;
        fired.topic(Topic::Services);
        fired.topic(Topic::Node(node.to_string()));
    }

    fn delete_check(&mut self, index: u64, node: &str, id: &str, fired: &mut Fired) {
        let Some(row) = self.catalog.checks.remove(&key(node, id)) else {
            return;
        };
        self.unlink_check_owner(node, &row.service_id, id);
        fired.session_trigger(node, Some(id));
        self.index.checks = index;
        fired.topic(Topic::Checks);
        fired.topic(Topic::Node(node.to_string()));
        self.touch_check_owner(index, node, &row.service_id, fired);
    }

    /// Drops `instance` from `name`'s instances; the name goes extinct with its last one.
    fn unlink_name(
        &mut self,
        index: u64,
        name: &str,
        instance: &(String, String),
        fired: &mut Fired,
    ) {
        let now_empty = match self.catalog.by_name.get_mut(name) {
            Some(set) => {
                set.remove(instance);
                set.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.catalog.by_name.remove(name);
            self.catalog.service_index.remove(name);
            self.catalog.extinction_index = index;
            fired.topic(Topic::Service(name.to_string()));
        } else {
            self.bump_service(index, name, fired);
        }
    }

    fn unlink_check_owner(&mut self, node: &str, service_id: &str, check: &str) {
        let k = key(node, service_id);
        let now_empty = match self.catalog.checks_by_owner.get_mut(&k) {
            Some(set) => {
                set.remove(check);
                set.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.catalog.checks_by_owner.remove(&k);
        }
    }

    /// A check of `service_id` (or of the node, when empty) changed: bump the services whose
    /// health it affects.
    fn touch_check_owner(&mut self, index: u64, node: &str, service_id: &str, fired: &mut Fired) {
        if service_id.is_empty() {
            self.touch_node_services(index, node, fired);
        } else if let Some(name) = self
            .catalog
            .services
            .get(&key(node, service_id))
            .map(|s| s.name.clone())
        {
            self.bump_service(index, &name, fired);
        }
    }

    fn touch_node_services(&mut self, index: u64, node: &str, fired: &mut Fired) {
        let names: OrdSet<String> = self.node_services(node).map(|s| s.name.clone()).collect();
        for name in names {
            self.bump_service(index, &name, fired);
        }
    }

    fn bump_service(&mut self, index: u64, name: &str, fired: &mut Fired) {
        if self.catalog.by_name.contains_key(name) {
            self.catalog.service_index.insert(name.to_string(), index);
        }
        fired.topic(Topic::Service(name.to_string()));
    }

    fn relabel_checks(
        &mut self,
        index: u64,
        node: &str,
        service_id: &str,
        name: &str,
        tags: &[String],
        fired: &mut Fired,
    ) {
        let ids: Vec<String> = self
            .catalog
            .checks_by_owner
            .get(&key(node, service_id))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut changed = false;
        for id in ids {
            if let Some(c) = self.catalog.checks.get_mut(&key(node, &id)) {
                if c.service_name != name || c.service_tags != tags {
                    c.service_name = name.to_string();
                    c.service_tags = tags.to_vec();
                    c.modify_index = index;
                    changed = true;
                }
            }
        }
        if changed {
            self.index.checks = index;
            fired.topic(Topic::Checks);
        }
    }

    // ---- queries -------------------------------------------------------------------------

    /// The services on `node`, by service ID.
    pub fn node_services<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a ServiceRow> + 'a {
        let node = node.to_string();
        self.catalog
            .services
            .range(key(&node, "")..)
            .take_while(move |((n, _), _)| *n == node)
            .map(|(_, s)| s)
    }

    /// The checks on `node`, by check ID.
    pub fn node_checks<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a CheckRow> + 'a {
        let node = node.to_string();
        self.catalog
            .checks
            .range(key(&node, "")..)
            .take_while(move |((n, _), _)| *n == node)
            .map(|(_, c)| c)
    }

    /// The checks that decide an instance's health: its node's checks, then its own.
    pub fn instance_checks(&self, node: &str, service_id: &str) -> Vec<&CheckRow> {
        let mut out = Vec::new();
        for owner in ["", service_id] {
            if let Some(ids) = self.catalog.checks_by_owner.get(&key(node, owner)) {
                out.extend(
                    ids.iter()
                        .filter_map(|id| self.catalog.checks.get(&key(node, id))),
                );
            }
            if service_id.is_empty() {
                break;
            }
        }
        out
    }

    /// The instances of service `name` (ordered by node, then ID).
    pub fn service_instances(&self, name: &str) -> Vec<&ServiceRow> {
        self.catalog
            .by_name
            .get(name)
            .map(|set| {
                set.iter()
                    .filter_map(|k| self.catalog.services.get(k))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Index of a query about service `name` (catalog or health): the service's own index, or
    /// the extinction index when it has no instances, never 0.
    pub fn service_query_index(&self, name: &str) -> u64 {
        match self.catalog.service_index.get(name) {
            Some(i) => *i,
            None if self.catalog.extinction_index > 0 => self.catalog.extinction_index,
            None => self
                .index
                .nodes
                .max(self.index.services)
                .max(self.index.checks)
                .max(1),
        }
    }

    /// Index of the node list.
    pub fn nodes_index(&self) -> u64 {
        self.index.nodes.max(1)
    }
    /// Index of the service list and of a node's services.
    pub fn services_index(&self) -> u64 {
        self.index.services.max(self.index.nodes).max(1)
    }
    /// Index of check lists (by state, by node).
    pub fn checks_index(&self) -> u64 {
        self.index.checks.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Request, Store};

    fn node(name: &str) -> NodeRow {
        NodeRow {
            name: name.into(),
            address: "127.0.0.1".into(),
            ..Default::default()
        }
    }
    fn service(id: &str, name: &str) -> ServiceRow {
        ServiceRow {
            id: id.into(),
            name: name.into(),
            port: 80,
            weights_passing: 1,
            weights_warning: 1,
            ..Default::default()
        }
    }
    fn check(id: &str, service_id: &str, status: HealthStatus) -> CheckRow {
        CheckRow {
            id: id.into(),
            name: id.into(),
            service_id: service_id.into(),
            status,
            ..Default::default()
        }
    }
    fn register(store: &Store, index: u64, reg: Registration) -> crate::state::Response {
        store.apply(
            index,
            &Request {
                time_ms: 0,
                command: Command::CatalogRegister(Box::new(reg)),
            },
        )
    }

    #[test]
    fn register_links_and_indexes() {
        let store = Store::default();
        register(
            &store,
            5,
            Registration {
                node: node("n1"),
                service: Some(service("web1", "web")),
                checks: vec![check("c1", "web1", HealthStatus::Passing)],
                ..Default::default()
            },
        );
        let t = store.read();
        assert_eq!(t.service_instances("web").len(), 1);
        assert_eq!(t.service_query_index("web"), 5);
        let checks = t.instance_checks("n1", "web1");
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].service_name, "web");
        assert_eq!(t.catalog.nodes["n1"].create_index, 5);
    }

    #[test]
    fn unchanged_registration_bumps_nothing() {
        let store = Store::default();
        let reg = Registration {
            node: node("n1"),
            service: Some(service("web1", "web")),
            checks: vec![check("c1", "web1", HealthStatus::Passing)],
            ..Default::default()
        };
        register(&store, 5, reg.clone());
        register(&store, 9, reg);
        let t = store.read();
        assert_eq!(t.service_query_index("web"), 5);
        assert_eq!(t.index.checks, 5);
        assert_eq!(t.catalog.services[&key("n1", "web1")].modify_index, 5);
    }

    #[test]
    fn check_change_bumps_only_its_service() {
        let store = Store::default();
        for (i, (sid, name)) in [("web1", "web"), ("db1", "db")].iter().enumerate() {
            register(
                &store,
                5 + i as u64,
                Registration {
                    node: node("n1"),
                    service: Some(service(sid, name)),
                    checks: vec![check(&format!("c-{sid}"), sid, HealthStatus::Passing)],
                    ..Default::default()
                },
            );
        }
        register(
            &store,
            10,
            Registration {
                node: node("n1"),
                skip_node_update: true,
                checks: vec![check("c-web1", "web1", HealthStatus::Critical)],
                ..Default::default()
            },
        );
        let t = store.read();
        assert_eq!(t.service_query_index("web"), 10);
        assert_eq!(t.service_query_index("db"), 6);
        // A node-level check touches every service on the node.
        register(
            &store,
            11,
            Registration {
                node: node("n1"),
                skip_node_update: true,
                checks: vec![check("serfHealth", "", HealthStatus::Passing)],
                ..Default::default()
            },
        );
        let t = store.read();
        assert_eq!(t.service_query_index("db"), 11);
        assert_eq!(t.instance_checks("n1", "db1").len(), 2);
    }

    #[test]
    fn refused_registration_changes_nothing() {
        let store = Store::default();
        let resp = register(
            &store,
            5,
            Registration {
                node: node("n1"),
                checks: vec![check("c1", "nope", HealthStatus::Passing)],
                ..Default::default()
            },
        );
        assert!(matches!(
            resp,
            crate::state::Response::Register(Err(RegisterError::MissingService { .. }))
        ));
        assert!(store.read().catalog.nodes.is_empty());
    }

    #[test]
    fn deregister_node_cascades_and_sets_extinction() {
        let store = Store::default();
        register(
            &store,
            5,
            Registration {
                node: node("n1"),
                service: Some(service("web1", "web")),
                checks: vec![
                    check("c1", "web1", HealthStatus::Passing),
                    check("serfHealth", "", HealthStatus::Passing),
                ],
                ..Default::default()
            },
        );
        store.apply(
            7,
            &Request {
                time_ms: 0,
                command: Command::CatalogDeregister {
                    node: "n1".into(),
                    service_id: None,
                    check_id: None,
                },
            },
        );
        let t = store.read();
        assert!(t.catalog.nodes.is_empty());
        assert!(t.catalog.services.is_empty());
        assert!(t.catalog.checks.is_empty());
        assert!(t.catalog.by_name.is_empty());
        assert!(t.catalog.checks_by_owner.is_empty());
        assert_eq!(t.service_query_index("web"), 7);
    }

    #[test]
    fn renaming_a_service_moves_it() {
        let store = Store::default();
        let mut reg = Registration {
            node: node("n1"),
            service: Some(service("s1", "old")),
            checks: vec![check("c1", "s1", HealthStatus::Passing)],
            ..Default::default()
        };
        register(&store, 5, reg.clone());
        reg.service = Some(service("s1", "new"));
        reg.checks.clear();
        register(&store, 6, reg);
        let t = store.read();
        assert!(t.service_instances("old").is_empty());
        assert_eq!(t.service_instances("new").len(), 1);
        assert_eq!(t.catalog.checks[&key("n1", "c1")].service_name, "new");
        assert_eq!(t.service_query_index("old"), 6);
    }
}
