//! The agent crate's one error type, mapped once at each boundary (HTTP status, exit code).

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("No cluster leader")]
    NoLeader,
    /// Gossip membership (join, leave, force-leave) failed; the message says why.
    #[error("{0}")]
    Gossip(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The HTTPS listener's TLS files cannot be used; the message names the setting and file.
    #[error("{0}")]
    Tls(String),
}
