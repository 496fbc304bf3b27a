//! Raft: openraft's type configuration, the log store, the state-machine adapter and the
//! network, plus [`start`], the one function that builds a Raft node for `main` and the tests.
//!
//! The state store (`crate::state`) knows nothing of openraft; this module adapts it. Every
//! replicated change is a [`crate::state::Request`] committed through `client_write`.

// openraft's storage traits fix `StorageError` (large) as the error type; helpers that feed
// them return it too rather than boxing and unboxing at every call.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod proposer;
pub mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::{BasicNode, SnapshotPolicy};

use crate::config::RaftTuning;
use crate::error::Error;
use crate::state::{Request, Response, Store};

pub use log_store::LogStore;
pub use proposer::Proposer;
pub use state_machine::StateMachine;

openraft::declare_raft_types!(
    /// Muster's Raft types: log entries carry a [`Request`], apply answers a [`Response`].
    pub TypeConfig:
        D = Request,
        R = Response,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;

/// Derives the Raft node id from the agent's node UUID (its first 8 bytes), so every server's
/// id is stable across restarts and distinct in a cluster.
pub fn node_id_from_uuid(uuid: &uuid::Uuid) -> NodeId {
    let b = uuid.as_bytes();
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Where the log and snapshots live: `None` keeps everything in memory (`-dev`).
pub struct Storage<'a> {
    pub dir: Option<&'a Path>,
}

/// A started Raft node.
pub struct Node {
    pub raft: Raft,
    pub id: NodeId,
    /// The sled database when persistent, for fsync statistics and clean shutdown.
    pub db: Option<sled::Db>,
}

impl Node {
    /// Stops Raft and flushes the database once more.
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| Error::Raft(format!("shutdown: {e}")))?;
        if let Some(db) = &self.db {
            db.flush_async()
                .await
                .map_err(|e| Error::Storage(format!("final flush: {e}")))?;
        }
        Ok(())
    }
}

/// Builds and starts a Raft node over `store`. With `bootstrap`, a node that has never been
/// initialised makes itself the single voter; a node that restarts as the only voter of its
/// membership elects itself at once instead of waiting out an election timeout.
pub async fn start(
    id: NodeId,
    address: String,
    storage: Storage<'_>,
    tuning: &RaftTuning,
    store: Arc<Store>,
    bootstrap: bool,
) -> Result<Node, Error> {
    let network = network::Network::new(crate::rpc::Pool::new());
    start_with_network(id, address, storage, tuning, store, bootstrap, network).await
}

/// [`start`] with the network (and so the RPC connection pool) given by the caller, which
/// shares the pool with request forwarding.
pub async fn start_with_network(
    id: NodeId,
    address: String,
    storage: Storage<'_>,
    tuning: &RaftTuning,
    store: Arc<Store>,
    bootstrap: bool,
    network: network::Network,
) -> Result<Node, Error> {
    let raft_dir = storage.dir.map(|d| d.join("raft"));
    let db = match &raft_dir {
        Some(dir) => Some(open_db(dir).await?),
        None => None,
    };
    let log_store = LogStore::open(db.clone().zip(raft_dir.as_deref()))?;
    let mut state_machine = StateMachine::open(store, raft_dir.as_deref())?;
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel();
    state_machine.on_snapshot_due(tuning.snapshot_threshold, due_tx);
    // In memory (`-dev`) the log after a snapshot is RAM and no follower will ever ask for it:
    // keep none of it.
    let trailing = if raft_dir.is_some() {
        tuning.trailing_logs
    } else {
        0
    };
    let config = raft_config(tuning, trailing)?;
    let raft = Raft::new(id, Arc::new(config), network, log_store, state_machine)
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;

    // Snapshots every `snapshot_threshold` writes (see `StateMachine::on_snapshot_due`); the task
    // ends with the state machine.
    let trigger = raft.clone();
    tokio::spawn(async move {
        while due_rx.recv().await.is_some() {
            if let Err(e) = trigger.trigger().snapshot().await {
                tracing::debug!(error = %e, "snapshot trigger: raft stopped");
                return;
            }
        }
    });

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
    if !initialized && bootstrap {
        let members = BTreeMap::from([(id, BasicNode { addr: address })]);
        raft.initialize(members)
            .await
            .map_err(|e| Error::Raft(format!("bootstrap: {e}")))?;
    } else if initialized {
        let metrics = raft.metrics().borrow().clone();
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        if voters == [id] {
            raft.trigger()
                .elect()
                .await
                .map_err(|e| Error::Raft(e.to_string()))?;
        }
    }
    Ok(Node { raft, id, db })
}

/// sled's segment size. sled writes any item over a quarter of a segment as a separate blob
/// file that it never fsyncs, so segments are sized for log entries to stay well under that:
/// 8 MiB segments put the limit at 2 MiB, above the largest KV value (512 KiB) and the proposer's
/// batch cap ([`proposer::MAX_BATCH_BYTES`]).
const SLED_SEGMENT: usize = 8 << 20;

/// Opens the sled database. Another holder of its lock (a previous agent on this data dir still
/// finishing its shutdown) is waited for, for a few seconds at most, rather than failing at once.
pub(crate) async fn open_db(path: &Path) -> Result<sled::Db, Error> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut warned = false;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .segment_size(SLED_SEGMENT)
            // sled's default page cache is 1 GiB; the log is read back mostly while applying.
            .cache_capacity(64 << 20)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            // sled reports a held lock as an `Other` I/O error naming it.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && tokio::time::Instant::now() < deadline =>
            {
                if !warned {
                    tracing::warn!(
                        "{} is locked by another process or a previous agent: waiting",
                        path.display()
                    );
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(Error::Storage(format!("open {}: {e}", path.display()))),
        }
    }
}

/// openraft's timings from Consul's tuning: `raft_multiplier` scales them as Consul does (1 is
/// the fastest; Consul's default 5 is tuned for small cloud machines).
fn raft_config(tuning: &RaftTuning, trailing_logs: u64) -> Result<openraft::Config, Error> {
    let m = u64::from(tuning.raft_multiplier.max(1));
    let config = openraft::Config {
        cluster_name: "muster".to_string(),
        heartbeat_interval: 50 * m,
        election_timeout_min: 300 * m,
        election_timeout_max: 600 * m,
        // Writes, not entries, decide when to snapshot (a batched entry holds many writes): the
        // state machine triggers it. openraft's own entry count is only a backstop.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_threshold.max(1)),
        max_in_snapshot_log_to_keep: trailing_logs,
        max_payload_entries: 1024,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| Error::Raft(format!("raft config: {e}")))
}

/// Commits `request` through Raft and returns what apply answered.
pub async fn write(raft: &Raft, request: Request) -> Result<Response, Error> {
    use openraft::error::{ClientWriteError, RaftError};
    match raft.client_write(request).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(Error::NoLeader),
        Err(e) => Err(Error::Raft(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
