//! The KV table and its tombstones: writes (called from apply) and queries with Consul's index
//! rules.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::watch::{Fired, Topic};
use super::Tables;

/// A stored key's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub value: Bytes,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub session: Option<String>,
}

/// A deleted key, kept so that the index of a prefix never goes backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub index: u64,
    /// When it was deleted (leader's clock, from the command), for reaping.
    pub time_ms: u64,
}

impl Tables {
    /// Sets `key`. With `cas`, only when the key's ModifyIndex equals it (0: only if absent).
    /// Returns whether the write happened.
    pub(super) fn kv_set(
        &mut self,
        index: u64,
        key: &str,
        value: &Bytes,
        flags: u64,
        cas: Option<u64>,
        fired: &mut Fired,
    ) -> bool {
        let existing = self.kv.get(key);
        if let Some(cas) = cas {
            let current = existing.map(|e| e.modify_index).unwrap_or(0);
            if current != cas {
                return false;
            }
        }
        let entry = KvEntry {
            value: value.clone(),
            flags,
            create_index: existing.map(|e| e.create_index).unwrap_or(index),
            modify_index: index,
            lock_index: existing.map(|e| e.lock_index).unwrap_or(0),
            session: existing.and_then(|e| e.session.clone()),
        };
        self.kv.insert(key.to_string(), entry);
        self.index.kvs = index;
        fired.key(key);
        true
    }

    /// Deletes `key` (with `cas`, only when its ModifyIndex matches). Deleting a missing key is
    /// a successful no-op, as in Consul.
    pub(super) fn kv_delete(
        &mut self,
        index: u64,
        key: &str,
        cas: Option<u64>,
        time_ms: u64,
        fired: &mut Fired,
    ) -> bool {
        let Some(existing) = self.kv.get(key) else {
            return true;
        };
        if let Some(cas) = cas {
            if existing.modify_index != cas {
                return false;
            }
        }
        if let Some(session) = existing.session.clone() {
            self.unhold(&session, key);
        }
        self.kv.remove(key);
        self.tombstones
            .insert(key.to_string(), Tombstone { index, time_ms });
        self.index.kvs = index;
        self.index.tombstones = index;
        fired.key(key);
        true
    }

    /// Deletes every key starting with `prefix`; a no-op (no index change) when none does.
    pub(super) fn kv_delete_tree(
        &mut self,
        index: u64,
        prefix: &str,
        time_ms: u64,
        fired: &mut Fired,
    ) {
        let doomed: Vec<String> = self.kv_range(prefix).map(|(k, _)| k.clone()).collect();
        if doomed.is_empty() {
            return;
        }
        for key in doomed {
            if let Some(session) = self.kv.get(&key).and_then(|e| e.session.clone()) {
                self.unhold(&session, &key);
            }
            self.kv.remove(&key);
            self.tombstones
                .insert(key.clone(), Tombstone { index, time_ms });
            fired.exact(key);
        }
        self.index.kvs = index;
        self.index.tombstones = index;
        fired.tree(prefix);
    }

    /// Drops tombstones deleted before `before_ms`, raising the reap floor to the highest index
    /// dropped so that no prefix's index goes backwards.
    pub(super) fn tombstone_reap(&mut self, before_ms: u64) {
        let doomed: Vec<(String, u64)> = self
            .tombstones
            .iter()
            .filter(|(_, t)| t.time_ms < before_ms)
            .map(|(k, t)| (k.clone(), t.index))
            .collect();
        for (key, index) in doomed {
            self.tombstones.remove(&key);
            self.kv_reap_floor = self.kv_reap_floor.max(index);
        }
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn kv_range<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a KvEntry)> {
        self.kv
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// The KV table's index: the highest of the kvs and tombstones tables.
    pub fn kv_max_index(&self) -> u64 {
        self.index.kvs.max(self.index.tombstones)
    }

    /// Oldest tombstone time, for the reaper to know whether work is due.
    pub fn oldest_tombstone_ms(&self) -> Option<u64> {
        self.tombstones.values().map(|t| t.time_ms).min()
    }

    /// One key: the entry's ModifyIndex when it exists, else the table's index (never 0).
    pub fn kv_get(&self, key: &str) -> (u64, Option<KvEntry>) {
        match self.kv.get(key) {
            Some(e) => (e.modify_index, Some(e.clone())),
            None => (self.kv_max_index().max(1), None),
        }
    }

    /// Every entry under `prefix`, with the prefix's index.
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<(String, KvEntry)>) {
        let entries: Vec<(String, KvEntry)> = self
            .kv_range(prefix)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        let lindex = entries
            .iter()
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        (self.prefix_index(prefix, lindex), entries)
    }

    /// Keys under `prefix`; with a separator, keys are folded at the first separator after the
    /// prefix (`a/b/c` under `a/` with `/` lists `a/b/`), as Consul does.
    pub fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> (u64, Vec<String>) {
        let mut keys: Vec<String> = Vec::new();
        let mut lindex = 0;
        for (key, entry) in self.kv_range(prefix) {
            lindex = lindex.max(entry.modify_index);
            let folded = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match key[prefix.len()..].find(sep) {
                    Some(at) => &key[..prefix.len() + at + sep.len()],
                    None => key.as_str(),
                },
                None => key.as_str(),
            };
            if keys.last().map(String::as_str) != Some(folded) {
                keys.push(folded.to_string());
            }
        }
        (self.prefix_index(prefix, lindex), keys)
    }

    /// Consul's index for a prefix query: the highest ModifyIndex of its entries or tombstones,
    /// or the table's index when the prefix is empty or holds nothing; never below the reap
    /// floor and never 0.
    fn prefix_index(&self, prefix: &str, entries_index: u64) -> u64 {
        let lindex = if prefix.is_empty() {
            self.kv_max_index()
        } else {
            let gindex = self
                .tombstones
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, t)| t.index)
                .max()
                .unwrap_or(0);
            entries_index.max(gindex)
        };
        let index = if lindex == 0 {
            self.kv_max_index()
        } else {
            lindex
        };
        index.max(self.kv_reap_floor).max(1)
    }
}

/// Topic for a single-key read.
pub fn key_topic(key: &str) -> Topic {
    Topic::KvKey(key.to_string())
}

/// Topic for a prefix read (`recurse` or `keys`).
pub fn prefix_topic(prefix: &str) -> Topic {
    Topic::KvPrefix(prefix.to_string())
}
