//! The Raft log and vote: in memory for `-dev`, in sled under `-data-dir` otherwise.
//!
//! Durability: sled's `flush` writes its buffers with `sync_file_range`, which neither flushes
//! the device's write cache nor the file's metadata, so every flush here is followed by an
//! `fdatasync` of sled's data file: what is acknowledged survives power loss, not only a crash
//! of the process. `append` reports its entries flushed only after both have returned, and
//! `save_vote`, `truncate` and `purge` flush before they return. openraft 0.9 waits for each
//! append's flush before it takes the next proposal, so grouping many client writes into one
//! flush is done before Raft, by the proposer. Keys are big-endian indexes so the tree sorts by
//! index.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogId, RaftLogReader, StorageIOError,
};

use super::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::error::Error;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The log store; clones share the same log (openraft's reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    disk: Option<Disk>,
}

#[derive(Clone)]
struct Disk {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// sled's data file, for `fdatasync` after each flush.
    file: Arc<std::fs::File>,
}

impl Disk {
    /// Removes the log entries whose (big-endian index) keys fall in `range`, in one batch.
    fn remove_range<R: RangeBounds<[u8; 8]>>(&self, range: R) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(range) {
            let (k, _) = kv.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

#[derive(Default)]
struct Inner {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    /// The whole log when in memory; empty when sled holds it.
    mem: BTreeMap<u64, Entry>,
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::error(e)),
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(v).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(b).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))
}

impl LogStore {
    /// Opens the log; with a sled database (and the directory it lives in), loads the vote and
    /// the log's bounds from it.
    pub fn open(db: Option<(sled::Db, &std::path::Path)>) -> Result<Self, Error> {
        let mut inner = Inner::default();
        let disk = match db {
            Some((db, dir)) => {
                let err = |e: sled::Error| Error::Storage(format!("open raft log: {e}"));
                let data = dir.join("db");
                let file = std::fs::File::open(&data)
                    .map_err(|e| Error::Storage(format!("open {}: {e}", data.display())))?;
                let log = db.open_tree("log").map_err(err)?;
                let meta = db.open_tree("meta").map_err(err)?;
                let read = |key: &[u8]| -> Result<Option<sled::IVec>, Error> {
                    meta.get(key).map_err(err)
                };
                let dec = |what: &str, e: StorageError| {
                    Error::Storage(format!("raft log {what} is corrupt: {e}"))
                };
                if let Some(v) = read(VOTE)? {
                    inner.vote = Some(decode(&v).map_err(|e| dec("vote", e))?);
                }
                if let Some(v) = read(COMMITTED)? {
                    inner.committed = decode(&v).map_err(|e| dec("committed", e))?;
                }
                if let Some(v) = read(LAST_PURGED)? {
                    inner.last_purged = decode(&v).map_err(|e| dec("last_purged", e))?;
                }
                Some(Disk {
                    db,
                    log,
                    meta,
                    file: Arc::new(file),
                })
            }
            None => None,
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
            disk,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn flush(&self) -> Result<(), StorageError> {
        if let Some(disk) = &self.disk {
            let err = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Store, ErrorVerb::Write, e);
            disk.db.flush_async().await.map_err(|e| err(&e))?;
            let file = disk.file.clone();
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(|e| err(&e))?
                .map_err(|e| err(&e))?;
        }
        Ok(())
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError> {
        if let Some(disk) = &self.disk {
            disk.meta
                .insert(key, encode(v)?)
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        }
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        match &self.disk {
            Some(disk) => match disk
                .log
                .last()
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?
            {
                Some((_, v)) => Ok(Some(*decode::<Entry>(&v)?.get_log_id())),
                None => Ok(None),
            },
            None => Ok(self.lock().mem.values().next_back().map(|e| e.log_id)),
        }
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e),
        Bound::Excluded(&e) => e.checked_sub(1),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        if end.is_some_and(|e| e < start) {
            return Ok(Vec::new());
        }
        match &self.disk {
            Some(disk) => {
                let lo = start.to_be_bytes();
                let iter = match end {
                    Some(e) => disk.log.range(lo..=e.to_be_bytes()),
                    None => disk.log.range(lo..),
                };
                iter.map(|kv| {
                    let (_, v) = kv.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                    decode::<Entry>(&v)
                })
                .collect()
            }
            None => {
                let inner = self.lock();
                let it = match end {
                    Some(e) => inner.mem.range(start..=e),
                    None => inner.mem.range(start..),
                };
                Ok(it.map(|(_, e)| e.clone()).collect())
            }
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = self.lock().last_purged;
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote)?;
        self.flush().await?;
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: it is advisory (it lets a restart re-apply without waiting for
        // an election) and rides along with the next log flush.
        self.put_meta(COMMITTED, &committed)?;
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        match &self.disk {
            Some(disk) => {
                let mut batch = sled::Batch::default();
                for entry in entries {
                    batch.insert(&entry.log_id.index.to_be_bytes(), encode(&entry)?);
                }
                disk.log
                    .apply_batch(batch)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
                let flushed = self.flush().await;
                callback
                    .log_io_completed(flushed.map_err(|e| std::io::Error::other(e.to_string())));
            }
            None => {
                let mut inner = self.lock();
                for entry in entries {
                    inner.mem.insert(entry.log_id.index, entry);
                }
                drop(inner);
                callback.log_io_completed(Ok(()));
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        match &self.disk {
            Some(disk) => {
                disk.remove_range(log_id.index.to_be_bytes()..)?;
                self.flush().await
            }
            None => {
                let mut inner = self.lock();
                inner.mem.split_off(&log_id.index);
                Ok(())
            }
        }
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash between the two steps leaves extra entries
        // below it, which are never read, rather than a hole above it.
        self.put_meta(LAST_PURGED, &Some(log_id))?;
        self.lock().last_purged = Some(log_id);
        match &self.disk {
            Some(disk) => {
                disk.remove_range(..=log_id.index.to_be_bytes())?;
                self.flush().await
            }
            None => {
                let mut inner = self.lock();
                let keep = inner.mem.split_off(&(log_id.index + 1));
                inner.mem = keep;
                Ok(())
            }
        }
    }
}
