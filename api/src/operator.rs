//! `/v1/operator/raft/...` wire types (Consul's `api/operator_raft.go`).

use serde::{Deserialize, Serialize};

/// One server of the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RaftServer {
    /// The server's node ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// The server's node name.
    pub node: String,
    /// `ip:port` of the server RPC.
    pub address: String,
    pub leader: bool,
    /// The Raft protocol version ("3").
    pub protocol_version: String,
    pub voter: bool,
    /// The last log index the leader knows the server has (0 when unknown).
    pub last_index: u64,
}

/// `GET /v1/operator/raft/configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RaftConfiguration {
    pub servers: Vec<RaftServer>,
    /// The Raft index of this configuration.
    pub index: u64,
}
