//! Raft.
