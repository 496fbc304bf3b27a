//! The commands replicated through Raft: the only way anything changes the tables.
//!
//! These are wire types (they are in the Raft log on disk and, later, on the network):
//! append new variants at the end, never reorder or change existing ones.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::catalog::{RegisterError, Registration};

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
}
