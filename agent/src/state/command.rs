//! The commands replicated through Raft: the only way anything changes the tables.
//!
//! These are wire types (they are in the Raft log on disk and, later, on the network):
//! append new variants at the end, never reorder or change existing ones.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::catalog::{RegisterError, Registration};
use super::session::SessionRow;
use super::txn::{TxnOp, TxnOutcome};

/// One Raft log entry's payload: a command stamped by the leader with the time it proposed it,
/// so that apply never reads a clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Milliseconds since the Unix epoch, stamped by the proposer.
    pub time_ms: u64,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace a key.
    KvSet {
        key: String,
        value: Bytes,
        flags: u64,
    },
    /// Check-and-set: `modify_index` 0 means "only if absent".
    KvCas {
        key: String,
        value: Bytes,
        flags: u64,
        modify_index: u64,
    },
    /// Delete a key (leaves a tombstone).
    KvDelete { key: String },
    /// Delete a key only if its ModifyIndex matches.
    KvDeleteCas { key: String, modify_index: u64 },
    /// Delete every key under a prefix.
    KvDeleteTree { prefix: String },
    /// Drop tombstones written before this time (proposed by the leader's reaper).
    TombstoneReap { before_ms: u64 },
    /// Independent writes folded into one log entry by the proposer (group commit), applied in
    /// order at the entry's index; each gets its own response. Never nested.
    Batch(Vec<Command>),
    /// Register a node, optionally a service on it, and checks (all or nothing).
    CatalogRegister(Box<Registration>),
    /// Remove a node (with everything on it), or one service (with its checks), or one check.
    CatalogDeregister {
        node: String,
        service_id: Option<String>,
        check_id: Option<String>,
    },
    /// Create a session (the handler chose its ID).
    SessionCreate(Box<SessionRow>),
    /// Destroy (invalidate) a session: explicit, or its TTL ran out on the leader.
    SessionDestroy { id: String },
    /// `?acquire=`: take the lock on `key` for `session` and write the value; with `cas`, only
    /// when the key's ModifyIndex matches.
    KvLock {
        key: String,
        value: Bytes,
        flags: u64,
        session: String,
        cas: Option<u64>,
    },
    /// `?release=`: give up `session`'s lock on `key` and write the value.
    KvUnlock {
        key: String,
        value: Bytes,
        flags: u64,
        session: String,
        cas: Option<u64>,
    },
    /// A transaction: every operation, or none.
    Txn(Vec<TxnOp>),
    /// The cluster's identity, proposed by a leader that finds none (right after bootstrap):
    /// the first one applied stays, later ones are ignored, so every server agrees. The server
    /// RPC refuses Raft calls between servers whose ids differ (see `rpc::Identity`).
    ClusterId { id: u128 },
}

impl Command {
    /// Roughly how many bytes a session, lock or transaction command adds to a log entry (the
    /// proposer's batching limit); 0 for the others, which the proposer weighs itself.
    pub fn session_txn_size(&self) -> usize {
        match self {
            Command::SessionCreate(s) => 64 + s.id.len() + s.name.len() + s.node.len(),
            Command::SessionDestroy { id } => id.len(),
            Command::KvLock {
                key,
                value,
                session,
                ..
            }
            | Command::KvUnlock {
                key,
                value,
                session,
                ..
            } => key.len() + value.len() + session.len(),
            Command::Txn(ops) => ops.iter().map(TxnOp::approx_size).sum(),
            _ => 0,
        }
    }
}

/// What applying a command answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Response {
    #[default]
    Ok,
    Bool(bool),
    /// One response per command of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
    /// A catalog registration's outcome.
    Register(Result<(), RegisterError>),
    /// A session creation refused (nothing was applied), with the reason.
    Session(Result<(), String>),
    /// A lock or unlock: `Ok(acquired/released)`, or why it could not be tried (no such
    /// session).
    Lock(Result<bool, String>),
    /// A transaction's results, or its errors (and nothing applied).
    Txn(TxnOutcome),
}
