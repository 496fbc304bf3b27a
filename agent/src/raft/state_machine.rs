//! The state-machine adapter: feeds committed entries to the state store, builds and installs
//! snapshots, and persists the latest snapshot as one file (`<data-dir>/raft/snapshot`, written
//! atomically: staged, fsynced, renamed, directory fsynced). Not in sled: sled stores a value
//! that large as a blob file it never fsyncs.
//!
//! The state store is in memory; what makes it durable is the snapshot plus the log after it.
//! On start the latest snapshot is loaded and openraft re-applies the committed log after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::error::Error;
use crate::state::{snapshot, Command, Response, Store, Tables};

/// The snapshot file's name inside the raft directory.
const SNAPSHOT_FILE: &str = "snapshot";

/// A snapshot as kept: openraft's metadata plus the encoded tables.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::error(e)),
    }
}

/// Where the latest snapshot lives.
#[derive(Clone)]
struct Snapshots {
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    /// The snapshot file, when persistent.
    file: Option<PathBuf>,
}

impl Snapshots {
    fn lock(&self) -> MutexGuard<'_, Option<StoredSnapshot>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `snap` the current snapshot, durably before returning when on disk.
    async fn save(&self, snap: StoredSnapshot) -> Result<(), StorageError> {
        if let Some(path) = &self.file {
            let bytes = postcard::to_allocvec(&snap).map_err(|e| snap_err(ErrorVerb::Write, e))?;
            let path = path.clone();
            tokio::task::spawn_blocking(move || crate::server::write_atomically(&path, &bytes))
                .await
                .map_err(|e| snap_err(ErrorVerb::Write, e))?
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        }
        *self.lock() = Some(snap);
        Ok(())
    }
}

/// The adapter openraft drives.
pub struct StateMachine {
    store: Arc<Store>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: Snapshots,
    builds: u64,
    /// Writes applied since the last snapshot, batch members counted one by one: one log
    /// entry may carry a thousand writes, so entries are the wrong unit for the threshold.
    writes_since_snapshot: u64,
    /// `raft_snapshot_threshold` and where to say a snapshot is due.
    snapshot_due: Option<(u64, mpsc::UnboundedSender<()>)>,
    snapshot_requested: bool,
}

impl StateMachine {
    /// Opens the state machine over `store`, restoring the latest snapshot from the raft
    /// directory `dir` if there is one.
    pub fn open(store: Arc<Store>, dir: Option<&Path>) -> Result<Self, Error> {
        let mut sm = StateMachine {
            store,
            last_applied: None,
            membership: StoredMembership::default(),
            snapshots: Snapshots {
                current: Arc::new(Mutex::new(None)),
                file: None,
            },
            builds: 0,
            writes_since_snapshot: 0,
            snapshot_due: None,
            snapshot_requested: false,
        };
        if let Some(dir) = dir {
            let path = dir.join(SNAPSHOT_FILE);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let snap: StoredSnapshot = postcard::from_bytes(&bytes).map_err(|e| {
                        Error::Storage(format!("snapshot {} is corrupt: {e}", path.display()))
                    })?;
                    let tables = snapshot::decode(&snap.data)?;
                    sm.store.replace(tables);
                    sm.last_applied = snap.meta.last_log_id;
                    sm.membership = snap.meta.last_membership.clone();
                    *sm.snapshots.lock() = Some(snap);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Storage(format!("read {}: {e}", path.display())));
                }
            }
            sm.snapshots.file = Some(path);
        }
        Ok(sm)
    }

    /// Asks for a message on `due` each time `threshold` writes have been applied since the
    /// last snapshot; the receiver triggers openraft's snapshot.
    pub fn on_snapshot_due(&mut self, threshold: u64, due: mpsc::UnboundedSender<()>) {
        self.snapshot_due = Some((threshold.max(1), due));
    }

    fn count_writes(&mut self, writes: u64) {
        self.writes_since_snapshot += writes;
        if let Some((threshold, due)) = &self.snapshot_due {
            if self.writes_since_snapshot >= *threshold && !self.snapshot_requested {
                self.snapshot_requested = due.send(()).is_ok();
            }
        }
    }

    fn snapshot_taken(&mut self) {
        self.writes_since_snapshot = 0;
        self.snapshot_requested = false;
    }
}

/// Builds a snapshot from one consistent version of the tables.
pub struct SnapshotBuilder {
    tables: Arc<Tables>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: Snapshots,
    id: String,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let tables = self.tables.clone();
        // Encoding a large state is CPU work: keep it off the async workers.
        let data = tokio::task::spawn_blocking(move || snapshot::encode(&tables))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.id.clone(),
        };
        self.snapshots
            .save(StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            })
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let responses = self
            .store
            .apply_batch(entries.iter().map(|e| match &e.payload {
                EntryPayload::Normal(req) => (e.log_id.index, Some(req)),
                _ => (e.log_id.index, None),
            }));
        let mut writes = 0;
        for e in &entries {
            self.last_applied = Some(e.log_id);
            match &e.payload {
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m.clone());
                }
                EntryPayload::Normal(req) => {
                    writes += match &req.command {
                        Command::Batch(commands) => commands.len() as u64,
                        _ => 1,
                    };
                }
                EntryPayload::Blank => {}
            }
        }
        self.count_writes(writes);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_taken();
        self.builds += 1;
        let id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.builds),
            None => format!("0-0-{}", self.builds),
        };
        SnapshotBuilder {
            tables: self.store.read(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
            id,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let tables = snapshot::decode(&data).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        self.snapshots
            .save(StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .await?;
        self.store.replace(tables);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.snapshot_taken();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshots.lock().clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
