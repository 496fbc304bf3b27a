//! The sessions table and KV locks: sessions with their indexes by node and by check, lock
//! acquisition and release on KV entries, and invalidation (destroy, a tied check going critical
//! or away, the node deregistered) with Consul's `release` / `delete` behaviours.
//!
//! Lock-delay: Consul's leader keeps it in memory (a key whose lock was freed by an invalidation
//! cannot be re-acquired for the session's `LockDelay`, checked with the leader's clock). Here it
//! is replicated instead: invalidation stores `time_ms + lock_delay` for each released key, and
//! an acquire is refused while its entry's `time_ms` is below that. `time_ms` is stamped into the
//! command by the leader, so every server decides the same, a new leader keeps the delay
//! (Consul's forgets it), and apply stays clock-free. Expired entries are pruned whenever new
//! ones are written, so the map holds only keys freed within the last lock-delay.

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use muster_api::HealthStatus;
use serde::{Deserialize, Serialize};

use super::kv::KvEntry;
use super::watch::{Fired, Topic};
use super::Tables;

/// What invalidating a session does to the keys it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Behavior {
    #[default]
    Release,
    Delete,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SessionRow {
    pub id: String,
    pub name: String,
    pub node: String,
    /// Node-level check IDs the session is tied to.
    pub node_checks: Vec<String>,
    /// Service check IDs (on the same node) the session is tied to.
    pub service_checks: Vec<String>,
    pub lock_delay_ms: u64,
    pub behavior: Behavior,
    /// As given ("30s"), empty for none; the leader's timers read it.
    pub ttl: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl SessionRow {
    /// Every check ID the session depends on.
    pub fn checks(&self) -> impl Iterator<Item = &String> {
        self.node_checks.iter().chain(self.service_checks.iter())
    }
}

/// The sessions table, its secondary indexes and the replicated lock-delays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sessions {
    pub rows: OrdMap<String, SessionRow>,
    /// node → session IDs.
    pub by_node: OrdMap<String, OrdSet<String>>,
    /// (node, check ID) → session IDs.
    pub by_check: OrdMap<(String, String), OrdSet<String>>,
    /// session ID → keys it acquired (a hint: each is verified against the entry on use).
    pub held: OrdMap<String, OrdSet<String>>,
    /// key → time (ms) before which it cannot be acquired.
    pub lock_delay: OrdMap<String, u64>,
    /// The table's index.
    pub index: u64,
}

/// Why a lock operation failed outright (as opposed to answering `false`).
pub fn invalid_session(id: &str) -> String {
    format!("invalid session \"{id}\"")
}

impl Tables {
    /// Creates a session after Consul's checks: the node exists, every check exists on it and
    /// none is critical.
    pub(super) fn session_create(
        &mut self,
        index: u64,
        row: &SessionRow,
        fired: &mut Fired,
    ) -> Result<(), String> {
        if row.id.is_empty() {
            return Err("Missing session ID".into());
        }
        if self.sessions.rows.contains_key(&row.id) {
            return Err(format!("Session {:?} already exists", row.id));
        }
        if !self.catalog.nodes.contains_key(&row.node) {
            return Err(format!(
                "Missing node registration: node {:?} is not registered",
                row.node
            ));
        }
        for check in row.checks() {
            match self.catalog.checks.get(&(row.node.clone(), check.clone())) {
                None => return Err(format!("Missing check '{check}' registration")),
                Some(c) if c.status == HealthStatus::Critical => {
                    return Err(format!("Check '{check}' is in critical state"))
                }
                Some(_) => {}
            }
        }
        let mut row = row.clone();
        row.create_index = index;
        row.modify_index = index;
        self.sessions
            .by_node
            .entry(row.node.clone())
            .or_default()
            .insert(row.id.clone());
        for check in row.checks() {
            self.sessions
                .by_check
                .entry((row.node.clone(), check.clone()))
                .or_default()
                .insert(row.id.clone());
        }
        self.sessions.rows.insert(row.id.clone(), row);
        self.sessions.index = index;
        fired.topic(Topic::Sessions);
        Ok(())
    }

    /// Destroys a session: its locks are released (or its keys deleted, for `delete`) and the
    /// lock-delay starts on them. Destroying a missing session is a no-op. Returns whether it
    /// existed.
    pub(super) fn session_destroy(
        &mut self,
        index: u64,
        id: &str,
        time_ms: u64,
        fired: &mut Fired,
    ) -> bool {
        let Some(row) = self.sessions.rows.remove(id) else {
            return false;
        };
        unlink(&mut self.sessions.by_node, &row.node, id);
        for check in row.checks() {
            unlink(
                &mut self.sessions.by_check,
                &(row.node.clone(), check.clone()),
                id,
            );
        }
        let held: Vec<String> = self
            .sessions
            .held
            .remove(id)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let until = time_ms.saturating_add(row.lock_delay_ms);
        if row.lock_delay_ms > 0 && !held.is_empty() {
            let expired: Vec<String> = self
                .sessions
                .lock_delay
                .iter()
                .filter(|(_, t)| **t <= time_ms)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                self.sessions.lock_delay.remove(&k);
            }
        }
        for key in held {
            let Some(entry) = self.kv.get(&key) else {
                continue;
            };
            if entry.session.as_deref() != Some(id) {
                continue;
            }
            match row.behavior {
                Behavior::Release => {
                    let mut entry = entry.clone();
                    entry.session = None;
                    entry.modify_index = index;
                    self.kv.insert(key.clone(), entry);
                    self.index.kvs = index;
                    fired.key(&key);
                }
                Behavior::Delete => {
                    self.kv_delete(index, &key, None, time_ms, fired);
                }
            }
            if row.lock_delay_ms > 0 {
                self.sessions.lock_delay.insert(key, until);
            }
        }
        self.sessions.index = index;
        fired.topic(Topic::Sessions);
        true
    }

    /// Invalidates the sessions that catalog changes during this command doomed (a tied check
    /// went critical or away, the node was deregistered).
    pub(super) fn session_triggers(&mut self, index: u64, time_ms: u64, fired: &mut Fired) {
        let triggers = fired.take_session_triggers();
        for (node, check) in triggers {
            let ids: Vec<String> = match &check {
                Some(check) => self
                    .sessions
                    .by_check
                    .get(&(node.clone(), check.clone()))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
                None => self
                    .sessions
                    .by_node
                    .get(&node)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
            };
            for id in ids {
                self.session_destroy(index, &id, time_ms, fired);
            }
        }
    }

    /// `?acquire=`: takes the lock on `key` for `session` and writes the value. `Ok(false)` when
    /// another session holds it or it is inside its lock-delay; re-acquiring a held lock just
    /// updates the value.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn kv_lock(
        &mut self,
        index: u64,
        key: &str,
        value: &Bytes,
        flags: u64,
        session: &str,
        cas: Option<u64>,
        time_ms: u64,
        fired: &mut Fired,
    ) -> Result<bool, String> {
        if session.is_empty() {
            return Err("missing session".into());
        }
        if !self.sessions.rows.contains_key(session) {
            return Err(invalid_session(session));
        }
        let existing = self.kv.get(key);
        if let Some(cas) = cas {
            if existing.map(|e| e.modify_index).unwrap_or(0) != cas {
                return Ok(false);
            }
        }
        let lock_index = match existing {
            Some(e) if e.session.as_deref() == Some(session) => e.lock_index,
            Some(e) if e.session.is_some() => return Ok(false),
            _ => {
                if self
                    .sessions
                    .lock_delay
                    .get(key)
                    .is_some_and(|until| *until > time_ms)
                {
                    return Ok(false);
                }
                existing.map(|e| e.lock_index).unwrap_or(0) + 1
            }
        };
        let entry = KvEntry {
            value: value.clone(),
            flags,
            create_index: existing.map(|e| e.create_index).unwrap_or(index),
            modify_index: index,
            lock_index,
            session: Some(session.to_string()),
        };
        self.kv.insert(key.to_string(), entry);
        self.index.kvs = index;
        self.sessions
            .held
            .entry(session.to_string())
            .or_default()
            .insert(key.to_string());
        fired.key(key);
        Ok(true)
    }

    /// `?release=`: gives up `session`'s lock on `key` and writes the value. `Ok(false)` when the
    /// key is missing or not held by that session.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn kv_unlock(
        &mut self,
        index: u64,
        key: &str,
        value: &Bytes,
        flags: u64,
        session: &str,
        cas: Option<u64>,
        fired: &mut Fired,
    ) -> Result<bool, String> {
        if session.is_empty() {
            return Err("missing session".into());
        }
        let Some(existing) = self.kv.get(key) else {
            return Ok(false);
        };
        if let Some(cas) = cas {
            if existing.modify_index != cas {
                return Ok(false);
            }
        }
        if existing.session.as_deref() != Some(session) {
            return Ok(false);
        }
        let entry = KvEntry {
            value: value.clone(),
            flags,
            create_index: existing.create_index,
            modify_index: index,
            lock_index: existing.lock_index,
            session: None,
        };
        self.kv.insert(key.to_string(), entry);
        self.index.kvs = index;
        self.unhold(session, key);
        fired.key(key);
        Ok(true)
    }

    /// `key` is no longer held by `session` (released or deleted).
    pub(super) fn unhold(&mut self, session: &str, key: &str) {
        unlink(&mut self.sessions.held, &session.to_string(), key);
    }

    // ---- queries -------------------------------------------------------------------------

    /// The sessions table's index (never 0).
    pub fn sessions_index(&self) -> u64 {
        self.sessions.index.max(1)
    }

    /// One session.
    pub fn session_get(&self, id: &str) -> Option<&SessionRow> {
        self.sessions.rows.get(id)
    }

    /// The sessions on `node`.
    pub fn node_sessions(&self, node: &str) -> Vec<&SessionRow> {
        self.sessions
            .by_node
            .get(node)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.sessions.rows.get(id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn unlink<K: Ord + Clone>(map: &mut OrdMap<K, OrdSet<String>>, k: &K, id: &str) {
    let now_empty = match map.get_mut(k) {
        Some(set) => {
            set.remove(id);
            set.is_empty()
        }
        None => false,
    };
    if now_empty {
        map.remove(k);
    }
}
