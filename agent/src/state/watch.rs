//! Watch sets: which blocked queries a write wakes.
//!
//! Each blocked query registers the one topic its answer depends on. A KV write to `a/b` wakes
//! the watchers of the key `a/b` and of every prefix of it (`""`, `a`, `a/`, `a/b`), found by
//! looking each prefix up rather than scanning the watchers, so a write costs O(key length)
//! lookups however many queries are blocked. Idle watchers cost one map entry per distinct
//! topic plus a parked task each; entries go away with their last watcher.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// What a blocked query depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One KV key.
    KvKey(String),
    /// Every KV key under a prefix.
    KvPrefix(String),
    /// The catalog's node list.
    Nodes,
    /// The catalog's service list (names and tags).
    Services,
    /// Any health check (lists by state).
    Checks,
    /// The instances of one service name, their checks, or their nodes.
    Service(String),
    /// One node: its row, its services or its checks.
    Node(String),
    /// The sessions table (every session read).
    Sessions,
}

/// The topics a batch of writes touched, collected during apply and fired after the new
/// version of the tables is published.
#[derive(Debug, Default)]
pub struct Fired {
    /// Keys written: wakes the key and every prefix of it.
    kv_keys: Vec<String>,
    /// Keys whose own watchers only must wake (their prefixes are covered by a tree).
    kv_exact: Vec<String>,
    /// Prefixes deleted as a whole: wakes every prefix of them and every prefix under them.
    kv_trees: Vec<String>,
    /// Catalog topics, each fired once per batch.
    topics: std::collections::HashSet<Topic>,
    /// Catalog changes that invalidate sessions, drained by apply after each command:
    /// (node, Some(check)) for a check gone critical or away, (node, None) for a node removed.
    session_triggers: Vec<(String, Option<String>)>,
}

impl Fired {
    pub fn key(&mut self, key: &str) {
        self.kv_keys.push(key.to_string());
    }
    pub fn exact(&mut self, key: String) {
        self.kv_exact.push(key);
    }
    pub fn tree(&mut self, prefix: &str) {
        self.kv_trees.push(prefix.to_string());
    }
    pub fn topic(&mut self, topic: Topic) {
        self.topics.insert(topic);
    }
    /// Sessions tied to `check` on `node` (or to the node itself, with `None`) must go.
    pub fn session_trigger(&mut self, node: &str, check: Option<&str>) {
        self.session_triggers
            .push((node.to_string(), check.map(str::to_string)));
    }
    pub fn take_session_triggers(&mut self) -> Vec<(String, Option<String>)> {
        std::mem::take(&mut self.session_triggers)
    }
    /// Adds everything `other` collected (a transaction's writes, once it commits).
    pub fn merge(&mut self, other: Fired) {
        self.kv_keys.extend(other.kv_keys);
        self.kv_exact.extend(other.kv_exact);
        self.kv_trees.extend(other.kv_trees);
        self.topics.extend(other.topics);
        self.session_triggers.extend(other.session_triggers);
    }
}

#[derive(Default)]
struct Registry {
    exact: HashMap<Topic, Arc<Notify>>,
    prefixes: BTreeMap<String, Arc<Notify>>,
}

/// The registry of blocked queries.
#[derive(Default, Clone)]
pub struct Watches {
    inner: Arc<Mutex<Registry>>,
}

/// A registered interest in one topic; unregisters on drop.
pub struct Watcher {
    notify: Arc<Notify>,
    topic: Topic,
    registry: Arc<Mutex<Registry>>,
}

impl Watcher {
    /// A future that completes at the next write touching the topic. Call `enable()` on it
    /// before reading the state, so a write between the read and the await is not missed.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut reg = lock(&self.registry);
        // The registry holds one reference and this watcher another: if that is all, nobody
        // else waits on this topic any more.
        if Arc::strong_count(&self.notify) == 2 {
            match &self.topic {
                Topic::KvPrefix(p) => {
                    reg.prefixes.remove(p);
                }
                t => {
                    reg.exact.remove(t);
                }
            }
        }
    }
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watches {
    /// Registers interest in `topic`.
    pub fn watch(&self, topic: Topic) -> Watcher {
        let mut reg = lock(&self.inner);
        let notify = match &topic {
            Topic::KvPrefix(p) => reg.prefixes.entry(p.clone()).or_default().clone(),
            t => reg.exact.entry(t.clone()).or_default().clone(),
        };
        Watcher {
            notify,
            topic,
            registry: self.inner.clone(),
        }
    }

    /// Wakes the watchers of everything in `fired`.
    pub fn fire(&self, fired: &Fired) {
        let reg = lock(&self.inner);
        if reg.exact.is_empty() && reg.prefixes.is_empty() {
            return;
        }
        for key in &fired.kv_keys {
            reg.wake_exact(&Topic::KvKey(key.clone()));
            reg.wake_prefixes_of(key);
        }
        for topic in &fired.topics {
            reg.wake_exact(topic);
        }
        for key in &fired.kv_exact {
            reg.wake_exact(&Topic::KvKey(key.clone()));
        }
        for prefix in &fired.kv_trees {
            reg.wake_prefixes_of(prefix);
            for (_, n) in reg
                .prefixes
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(prefix.as_str()))
            {
                n.notify_waiters();
            }
        }
    }

    /// Wakes every watcher (the whole state was replaced).
    pub fn fire_all(&self) {
        let reg = lock(&self.inner);
        reg.exact.values().for_each(|n| n.notify_waiters());
        reg.prefixes.values().for_each(|n| n.notify_waiters());
    }

    /// Distinct topics being watched.
    pub fn len(&self) -> usize {
        let reg = lock(&self.inner);
        reg.exact.len() + reg.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registry {
    fn wake_exact(&self, topic: &Topic) {
        if let Some(n) = self.exact.get(topic) {
            n.notify_waiters();
        }
    }

    /// Wakes prefix watchers whose prefix is a prefix of `key` (including `""` and `key`).
    fn wake_prefixes_of(&self, key: &str) {
        if self.prefixes.is_empty() {
            return;
        }
        for (i, _) in key.char_indices().chain(std::iter::once((key.len(), ' '))) {
            if let Some(n) = self.prefixes.get(&key[..i]) {
                n.notify_waiters();
            }
        }
    }
}
