//! Transactions (`/v1/txn`): a list of KV, node, service and check operations applied all or
//! nothing in one command. Every operation runs in order against the tables; if any fails, the
//! tables go back to what they were before the first (the maps are persistent, so keeping the
//! old version costs nothing) and none of the watchers wake.
//!
//! Read-only transactions run through the same code on a throwaway copy of the tables.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::catalog::{CheckRow, NodeRow, Registration, ServiceRow};
use super::kv::KvEntry;
use super::watch::Fired;
use super::Tables;

/// A KV verb of a transaction (Consul's `api.KVOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
}

impl KvVerb {
    pub fn parse(s: &str) -> Option<KvVerb> {
        Some(match s {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "get" => KvVerb::Get,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-tree" => KvVerb::DeleteTree,
            "delete-cas" => KvVerb::DeleteCas,
            _ => return None,
        })
    }

    /// Whether the verb only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetTree
                | KvVerb::CheckIndex
                | KvVerb::CheckSession
                | KvVerb::CheckNotExists
        )
    }
}

/// A node, service or check verb (Consul's `api.NodeOp`, `ServiceOp`, `CheckOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogVerb {
    Set,
    Cas,
    Get,
    Delete,
    DeleteCas,
}

impl CatalogVerb {
    pub fn parse(s: &str) -> Option<CatalogVerb> {
        Some(match s {
            "set" => CatalogVerb::Set,
            "cas" => CatalogVerb::Cas,
            "get" => CatalogVerb::Get,
            "delete" => CatalogVerb::Delete,
            "delete-cas" => CatalogVerb::DeleteCas,
            _ => return None,
        })
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Kv {
        verb: KvVerb,
        key: String,
        value: Bytes,
        flags: u64,
        index: u64,
        session: String,
    },
    Node {
        verb: CatalogVerb,
        node: NodeRow,
    },
    Service {
        verb: CatalogVerb,
        node: String,
        service: ServiceRow,
    },
    Check {
        verb: CatalogVerb,
        check: CheckRow,
    },
}

impl TxnOp {
    /// Whether the operation only reads (a transaction of only these needs no Raft entry).
    pub fn is_read(&self) -> bool {
        match self {
            TxnOp::Kv { verb, .. } => verb.is_read(),
            TxnOp::Node { verb, .. } | TxnOp::Service { verb, .. } | TxnOp::Check { verb, .. } => {
                *verb == CatalogVerb::Get
            }
        }
    }

    /// Roughly how many bytes it adds to a log entry.
    pub fn approx_size(&self) -> usize {
        match self {
            TxnOp::Kv {
                key,
                value,
                session,
                ..
            } => 32 + key.len() + value.len() + session.len(),
            TxnOp::Node { node, .. } => 64 + node.name.len() + node.address.len(),
            TxnOp::Service { service, .. } => 128 + service.name.len() + service.id.len(),
            TxnOp::Check { check, .. } => 128 + check.id.len() + check.output.len(),
        }
    }
}

/// One result of a transaction (get verbs return values; writes return the entry without it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    Kv(String, KvEntry),
    Node(NodeRow),
    Service(ServiceRow),
    Check(CheckRow),
}

/// Why operation `op_index` failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// A transaction's outcome: every result, or every error (and nothing applied).
pub type TxnOutcome = Result<Vec<TxnResult>, Vec<TxnError>>;

impl Tables {
    /// Applies `ops` all or nothing.
    pub(super) fn txn(
        &mut self,
        index: u64,
        ops: &[TxnOp],
        time_ms: u64,
        fired: &mut Fired,
    ) -> TxnOutcome {
        let before = self.clone();
        let mut local = Fired::default();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match self.txn_op(index, op, time_ms, &mut local) {
                Ok(r) => results.extend(r),
                Err(what) => errors.push(TxnError { op_index: i, what }),
            }
            self.session_triggers(index, time_ms, &mut local);
        }
        if errors.is_empty() {
            fired.merge(local);
            Ok(results)
        } else {
            *self = before;
            Err(errors)
        }
    }

    fn txn_op(
        &mut self,
        index: u64,
        op: &TxnOp,
        time_ms: u64,
        fired: &mut Fired,
    ) -> Result<Vec<TxnResult>, String> {
        match op {
            TxnOp::Kv {
                verb,
                key,
                value,
                flags,
                index: cas,
                session,
            } => self.txn_kv(
                index, *verb, key, value, *flags, *cas, session, time_ms, fired,
            ),
            TxnOp::Node { verb, node } => self.txn_node(index, *verb, node, fired),
            TxnOp::Service {
                verb,
                node,
                service,
            } => self.txn_service(index, *verb, node, service, fired),
            TxnOp::Check { verb, check } => self.txn_check(index, *verb, check, fired),
        }
    }

    /// The entry of `key` after a write, without its value (as Consul answers writes).
    fn kv_result(&self, key: &str, keep_value: bool) -> Vec<TxnResult> {
        self.kv
            .get(key)
            .map(|e| {
                let mut e = e.clone();
                if !keep_value {
                    e.value = Bytes::new();
                }
                TxnResult::Kv(key.to_string(), e)
            })
            .into_iter()
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn txn_kv(
        &mut self,
        index: u64,
        verb: KvVerb,
        key: &str,
        value: &Bytes,
        flags: u64,
        cas: u64,
        session: &str,
        time_ms: u64,
        fired: &mut Fired,
    ) -> Result<Vec<TxnResult>, String> {
        let exists = self.kv.contains_key(key);
        match verb {
            KvVerb::Set => {
                self.kv_set(index, key, value, flags, None, fired);
                Ok(self.kv_result(key, false))
            }
            KvVerb::Cas => {
                if self.kv_set(index, key, value, flags, Some(cas), fired) {
                    Ok(self.kv_result(key, false))
                } else {
                    Err(format!("failed to set key \"{key}\", index is stale"))
                }
            }
            KvVerb::Lock => {
                if self.kv_lock(index, key, value, flags, session, None, time_ms, fired)? {
                    Ok(self.kv_result(key, false))
                } else {
                    Err(format!(
                        "failed to lock key \"{key}\", lock is already held or in its lock-delay"
                    ))
                }
            }
            KvVerb::Unlock => {
                if self.kv_unlock(index, key, value, flags, session, None, fired)? {
                    Ok(self.kv_result(key, false))
                } else {
                    Err(format!(
                        "failed to unlock key \"{key}\", lock isn't held, or is held by another session"
                    ))
                }
            }
            KvVerb::Get => {
                if exists {
                    Ok(self.kv_result(key, true))
                } else {
                    Err(format!("key \"{key}\" doesn't exist"))
                }
            }
            KvVerb::GetTree => Ok(self
                .kv_range(key)
                .map(|(k, e)| TxnResult::Kv(k.clone(), e.clone()))
                .collect()),
            KvVerb::CheckIndex => match self.kv.get(key) {
                None => Err(format!("key \"{key}\" doesn't exist")),
                Some(e) if e.modify_index != cas => Err(format!(
                    "current modify index {} != {cas} for key \"{key}\"",
                    e.modify_index
                )),
                Some(_) => Ok(self.kv_result(key, false)),
            },
            KvVerb::CheckSession => match self.kv.get(key) {
                None => Err(format!("key \"{key}\" doesn't exist")),
                Some(e) if e.session.as_deref().unwrap_or("") != session => Err(format!(
                    "failed session check for key \"{key}\", current session \"{}\" != \"{session}\"",
                    e.session.as_deref().unwrap_or("")
                )),
                Some(_) => Ok(self.kv_result(key, false)),
            },
            KvVerb::CheckNotExists => {
                if exists {
                    Err(format!("key \"{key}\" exists"))
                } else {
                    Ok(Vec::new())
                }
            }
            KvVerb::Delete => {
                self.kv_delete(index, key, None, time_ms, fired);
                Ok(Vec::new())
            }
            KvVerb::DeleteTree => {
                self.kv_delete_tree(index, key, time_ms, fired);
                Ok(Vec::new())
            }
            KvVerb::DeleteCas => {
                if self.kv_delete(index, key, Some(cas), time_ms, fired) {
                    Ok(Vec::new())
                } else {
                    Err(format!("failed to delete key \"{key}\", index is stale"))
                }
            }
        }
    }

    fn txn_node(
        &mut self,
        index: u64,
        verb: CatalogVerb,
        node: &NodeRow,
        fired: &mut Fired,
    ) -> Result<Vec<TxnResult>, String> {
        let name = &node.name;
        if name.is_empty() {
            return Err("Node must have a name".into());
        }
        let existing = self.catalog.nodes.get(name).cloned();
        match verb {
            CatalogVerb::Get => existing
                .map(|n| vec![TxnResult::Node(n)])
                .ok_or_else(|| format!("node \"{name}\" doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                if verb == CatalogVerb::Cas
                    && existing.as_ref().map(|n| n.modify_index).unwrap_or(0) != node.modify_index
                {
                    return Err(format!("failed to set node \"{name}\", index is stale"));
                }
                let reg = Registration {
                    node: node.clone(),
                    ..Registration::default()
                };
                self.catalog_register(index, &reg, fired)
                    .map_err(|e| e.to_string())?;
                Ok(self
                    .catalog
                    .nodes
                    .get(name)
                    .map(|n| TxnResult::Node(n.clone()))
                    .into_iter()
                    .collect())
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas
                    && existing.as_ref().map(|n| n.modify_index) != Some(node.modify_index)
                {
                    return Err(format!("failed to delete node \"{name}\", index is stale"));
                }
                self.catalog_deregister(index, name, None, None, fired);
                Ok(Vec::new())
            }
        }
    }

    fn txn_service(
        &mut self,
        index: u64,
        verb: CatalogVerb,
        node: &str,
        service: &ServiceRow,
        fired: &mut Fired,
    ) -> Result<Vec<TxnResult>, String> {
        let id = &service.id;
        let k = (node.to_string(), id.clone());
        let existing = self.catalog.services.get(&k).cloned();
        match verb {
            CatalogVerb::Get => existing
                .map(|s| vec![TxnResult::Service(s)])
                .ok_or_else(|| format!("service \"{id}\" on node \"{node}\" doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                let Some(node_row) = self.catalog.nodes.get(node).cloned() else {
                    return Err(format!("node \"{node}\" doesn't exist"));
                };
                if verb == CatalogVerb::Cas
                    && existing.as_ref().map(|s| s.modify_index).unwrap_or(0)
                        != service.modify_index
                {
                    return Err(format!("failed to set service \"{id}\", index is stale"));
                }
                let reg = Registration {
                    node: node_row,
                    skip_node_update: true,
                    service: Some(service.clone()),
                    checks: Vec::new(),
                };
                self.catalog_register(index, &reg, fired)
                    .map_err(|e| e.to_string())?;
                Ok(self
                    .catalog
                    .services
                    .get(&k)
                    .map(|s| TxnResult::Service(s.clone()))
                    .into_iter()
                    .collect())
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas
                    && existing.as_ref().map(|s| s.modify_index) != Some(service.modify_index)
                {
                    return Err(format!("failed to delete service \"{id}\", index is stale"));
                }
                self.catalog_deregister(index, node, Some(id), None, fired);
                Ok(Vec::new())
            }
        }
    }

    fn txn_check(
        &mut self,
        index: u64,
        verb: CatalogVerb,
        check: &CheckRow,
        fired: &mut Fired,
    ) -> Result<Vec<TxnResult>, String> {
        let (node, id) = (&check.node, &check.id);
        let k = (node.clone(), id.clone());
        let existing = self.catalog.checks.get(&k).cloned();
        match verb {
            CatalogVerb::Get => existing
                .map(|c| vec![TxnResult::Check(c)])
                .ok_or_else(|| format!("check \"{id}\" on node \"{node}\" doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                let Some(node_row) = self.catalog.nodes.get(node).cloned() else {
                    return Err(format!("node \"{node}\" doesn't exist"));
                };
                if verb == CatalogVerb::Cas
                    && existing.as_ref().map(|c| c.modify_index).unwrap_or(0) != check.modify_index
                {
                    return Err(format!("failed to set check \"{id}\", index is stale"));
                }
                let reg = Registration {
                    node: node_row,
                    skip_node_update: true,
                    service: None,
                    checks: vec![check.clone()],
                };
                self.catalog_register(index, &reg, fired)
                    .map_err(|e| e.to_string())?;
                Ok(self
                    .catalog
                    .checks
                    .get(&k)
                    .map(|c| TxnResult::Check(c.clone()))
                    .into_iter()
                    .collect())
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas
                    && existing.as_ref().map(|c| c.modify_index) != Some(check.modify_index)
                {
                    return Err(format!("failed to delete check \"{id}\", index is stale"));
                }
                self.catalog_deregister(index, node, None, Some(id), fired);
                Ok(Vec::new())
            }
        }
    }

    /// Runs a read-only transaction against these tables (nothing is kept).
    pub fn txn_read(&self, ops: &[TxnOp]) -> TxnOutcome {
        let mut scratch = self.clone();
        let mut fired = Fired::default();
        let index = self.kv_max_index();
        scratch.txn(index, ops, 0, &mut fired)
    }
}
