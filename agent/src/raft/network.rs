//! The Raft network between servers, over the server RPC (`crate::rpc`): append-entries, vote
//! and snapshot install are [`RpcRequest`]s to the peer's `ip:server-port` (the `addr` of its
//! `BasicNode`), on the connection the shared [`Pool`] keeps open to it.
//!
//! Errors: a peer that cannot be connected to is `Unreachable` (openraft backs off); anything
//! else (timeout, broken connection, a Raft error on the remote) is a `NetworkError`, retried
//! on the next heartbeat.

use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::{NodeId, TypeConfig};
use crate::rpc::{Pool, RpcError, RpcRequest, RpcResponse};

/// Creates connections to peers; all share one connection pool.
#[derive(Debug, Clone)]
pub struct Network {
    pool: Arc<Pool>,
}

impl Network {
    pub fn new(pool: Arc<Pool>) -> Self {
        Network { pool }
    }
}

/// A connection to one peer.
#[derive(Debug)]
pub struct Connection {
    target: NodeId,
    addr: String,
    pool: Arc<Pool>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
        }
    }
}

fn io_error(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

impl Connection {
    async fn call<E: std::error::Error>(
        &self,
        request: RpcRequest,
        option: &RPCOption,
    ) -> Result<RpcResponse, RPCError<NodeId, BasicNode, E>> {
        let ttl = option.hard_ttl();
        match self.pool.call(&self.addr, request, ttl).await {
            Ok(r) => Ok(r),
            Err(e @ (RpcError::Connect { .. } | RpcError::ConnectTimeout(_))) => Err(
                RPCError::Unreachable(Unreachable::new(&io_error(e.to_string()))),
            ),
            Err(e) => Err(self.network(e.to_string())),
        }
    }

    fn network<E: std::error::Error>(&self, msg: String) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&io_error(format!(
            "node {} at {}: {msg}",
            self.target, self.addr
        ))))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RpcRequest::AppendEntries(rpc), &option).await? {
            RpcResponse::AppendEntries(Ok(r)) => Ok(r),
            RpcResponse::AppendEntries(Err(e)) => Err(self.network(e)),
            other => Err(self.network(format!("unexpected answer {other:?}"))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(RpcRequest::InstallSnapshot(rpc), &option).await? {
            RpcResponse::InstallSnapshot(Ok(r)) => Ok(r),
            RpcResponse::InstallSnapshot(Err(e)) => Err(self.network(e)),
            other => Err(self.network(format!("unexpected answer {other:?}"))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RpcRequest::Vote(rpc), &option).await? {
            RpcResponse::Vote(Ok(r)) => Ok(r),
            RpcResponse::Vote(Err(e)) => Err(self.network(e)),
            other => Err(self.network(format!("unexpected answer {other:?}"))),
        }
    }
}
