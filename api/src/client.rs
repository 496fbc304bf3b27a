//! Async HTTP client for the agent's API (placeholder until the client lands).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Default)]
pub struct ClientConfig;
#[derive(Debug, Clone, Default)]
pub struct QueryOptions;
#[derive(Debug, Clone, Default)]
pub struct QueryMeta;
#[derive(Debug, Clone, Default)]
pub struct Client;
