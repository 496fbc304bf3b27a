//! The state store: in-memory tables, their indexes, and the watch sets behind blocking queries.
//!
//! One writer, many readers. The writer is the Raft state machine's `apply`, which builds the
//! next version of [`Tables`] from the current one (the maps are persistent: a clone is O(1) and
//! an update copies only a path) and publishes it with one atomic pointer swap. Readers take the
//! current version without a lock and keep a consistent view for as long as they hold it, so a
//! large recursive read never delays a write and a write never waits for readers.
//!
//! This module knows nothing about Raft, HTTP or time: [`Store::apply`] is deterministic (the
//! leader stamps times into commands), which is what lets every server reach the same state.

pub mod catalog;
pub mod command;
pub mod kv;
pub mod session;
pub mod snapshot;
pub mod txn;
pub mod watch;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use arc_swap::ArcSwap;

pub use catalog::{Catalog, CheckRow, NodeRow, RegisterError, Registration, ServiceRow};
pub use command::{Command, Request, Response};
pub use kv::{KvEntry, Tombstone};
pub use session::{Behavior, SessionRow, Sessions};
pub use txn::{CatalogVerb, KvVerb, TxnError, TxnOp, TxnOutcome, TxnResult};
pub use watch::Topic;
use watch::{Fired, Watches};

/// Highest index each table has seen, so an empty result still has a meaningful index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableIndex {
    pub kvs: u64,
    pub tombstones: u64,
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
}

/// One consistent version of every table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tables {
    pub kv: imbl::OrdMap<String, KvEntry>,
    pub tombstones: imbl::OrdMap<String, Tombstone>,
    pub index: TableIndex,
    /// Highest index among reaped tombstones: prefix indexes never drop below it, so reaping
    /// never makes a result's index go backwards.
    pub kv_reap_floor: u64,
    pub catalog: Catalog,
    /// Sessions, their indexes and the lock-delays (see `session.rs`).
    pub sessions: Sessions,
    /// The Raft cluster's identity ([`Command::ClusterId`]); `None` until the first leader
    /// has committed one.
    pub cluster_id: Option<u128>,
}

/// The store shared by the state machine (writer) and every reader.
pub struct Store {
    current: ArcSwap<Tables>,
    watches: Watches,
    /// Serialises writers. There is one (apply), but snapshot install may race with it.
    writer: Mutex<()>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(Tables::default())
    }
}

impl Store {
    pub fn new(tables: Tables) -> Self {
        Store {
            current: ArcSwap::from_pointee(tables),
            watches: Watches::default(),
            writer: Mutex::new(()),
        }
    }

    /// The current version of the tables; cheap, lock-free, consistent.
    pub fn read(&self) -> Arc<Tables> {
        self.current.load_full()
    }

    /// Applies a batch of committed entries: `(raft index, request)` with `None` for entries
    /// that carry no command (blank or membership entries). Publishes the new version once and
    /// then wakes the blocked queries whose topics the batch touched.
    pub fn apply_batch<'a, I>(&self, entries: I) -> Vec<Response>
    where
        I: IntoIterator<Item = (u64, Option<&'a Request>)>,
    {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.current.load_full()).clone();
        let mut fired = Fired::default();
        let responses = entries
            .into_iter()
            .map(|(index, req)| match req {
                Some(req) => next.apply(index, req, &mut fired),
                None => Response::Ok,
            })
            .collect();
        self.current.store(Arc::new(next));
        self.watches.fire(&fired);
        responses
    }

    /// Convenience for one entry.
    pub fn apply(&self, index: u64, req: &Request) -> Response {
        self.apply_batch([(index, Some(req))])
            .pop()
            .unwrap_or(Response::Ok)
    }

    /// Replaces every table (snapshot install or restore) and wakes every blocked query.
    pub fn replace(&self, tables: Tables) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.current.store(Arc::new(tables));
        self.watches.fire_all();
    }

    /// A blocking query. With `min_index` of `None` or 0 it answers at once. Otherwise it answers
    /// as soon as `query`'s index is greater than `min_index`, re-running `query` only when a
    /// write touches `topic`, or when `wait` runs out — then with the current (unchanged) result.
    pub async fn blocking<T>(
        &self,
        topic: Topic,
        min_index: Option<u64>,
        wait: Duration,
        query: impl Fn(&Tables) -> (u64, T),
    ) -> (u64, T) {
        let min = match min_index {
            None | Some(0) => return query(&self.read()),
            Some(m) => m,
        };
        let deadline = tokio::time::Instant::now() + wait;
        let watcher = self.watches.watch(topic);
        loop {
            let notified = watcher.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (index, value) = query(&self.read());
            if index > min {
                return (index, value);
            }
            tokio::select! {
                _ = &mut notified => continue,
                _ = tokio::time::sleep_until(deadline) => return query(&self.read()),
            }
        }
    }

    /// How many distinct topics have blocked queries on them (for tests and metrics).
    pub fn watched_topics(&self) -> usize {
        self.watches.len()
    }
}

impl Tables {
    /// Applies one command at `index`. Deterministic: the result depends only on the tables,
    /// the index and the request.
    fn apply(&mut self, index: u64, req: &Request, fired: &mut Fired) -> Response {
        let response = self.apply_command(index, &req.command, req.time_ms, fired);
        // Sessions tied to checks or nodes the command changed go in the same apply.
        self.session_triggers(index, req.time_ms, fired);
        response
    }

    fn apply_command(
        &mut self,
        index: u64,
        command: &Command,
        time_ms: u64,
        fired: &mut Fired,
    ) -> Response {
        match command {
            Command::KvSet { key, value, flags } => {
                Response::Bool(self.kv_set(index, key, value, *flags, None, fired))
            }
            Command::KvCas {
                key,
                value,
                flags,
                modify_index,
            } => Response::Bool(self.kv_set(index, key, value, *flags, Some(*modify_index), fired)),
            Command::KvDelete { key } => {
                Response::Bool(self.kv_delete(index, key, None, time_ms, fired))
            }
            Command::KvDeleteCas { key, modify_index } => {
                Response::Bool(self.kv_delete(index, key, Some(*modify_index), time_ms, fired))
            }
            Command::KvDeleteTree { prefix } => {
                self.kv_delete_tree(index, prefix, time_ms, fired);
                Response::Bool(true)
            }
            Command::TombstoneReap { before_ms } => {
                self.tombstone_reap(*before_ms);
                Response::Ok
            }
            Command::ClusterId { id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(*id);
                }
                Response::Ok
            }
            Command::CatalogRegister(reg) => {
                Response::Register(self.catalog_register(index, reg, fired))
            }
            Command::CatalogDeregister {
                node,
                service_id,
                check_id,
            } => {
                self.catalog_deregister(
                    index,
                    node,
                    service_id.as_deref(),
                    check_id.as_deref(),
                    fired,
                );
                Response::Ok
            }
            Command::SessionCreate(row) => {
                Response::Session(self.session_create(index, row, fired))
            }
            Command::SessionDestroy { id } => {
                Response::Bool(self.session_destroy(index, id, time_ms, fired))
            }
            Command::KvLock {
                key,
                value,
                flags,
                session,
                cas,
            } => Response::Lock(
                self.kv_lock(index, key, value, *flags, session, *cas, time_ms, fired),
            ),
            Command::KvUnlock {
                key,
                value,
                flags,
                session,
                cas,
            } => Response::Lock(self.kv_unlock(index, key, value, *flags, session, *cas, fired)),
            Command::Txn(ops) => Response::Txn(self.txn(index, ops, time_ms, fired)),
            Command::Batch(commands) => Response::Batch(
                commands
                    .iter()
                    .map(|c| match c {
                        // Only the proposer builds batches, and never nests them.
                        Command::Batch(_) => Response::Ok,
                        c => {
                            let r = self.apply_command(index, c, time_ms, fired);
                            self.session_triggers(index, time_ms, fired);
                            r
                        }
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
