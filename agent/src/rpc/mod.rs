//! Server RPC on `-server-port` (8300): the Raft transport between servers and request
//! forwarding from followers to the leader.
//!
//! The protocol is one TCP connection per peer pair and direction, carrying length-prefixed
//! frames: a big-endian `u32` length, then a postcard-encoded [`Envelope`]. Every request
//! carries an id and its answer the same id, so one connection carries many calls at once
//! (the server answers each as soon as it is done, in any order). Why not HTTP/2: the Raft
//! entries are already postcard-encoded for the log, the callers are only Muster servers, and
//! a frame codec of forty lines has no header compression, flow-control windows or per-stream
//! allocation to tune; the cost is head-of-line blocking behind a large frame (a snapshot
//! chunk is 3 MiB at most), which the call timeouts absorb.
//!
//! * `client.rs`: [`Pool`], one lazily opened, reused connection per address, with connect and
//!   call timeouts; a broken connection fails its pending calls and is reopened on next use.
//! * `server.rs`: the accept loop; each request runs in its own task against a [`Handler`].
//! * `tls.rs`: `tls.internal_rpc` — TLS beside plaintext on the one port (told apart by the
//!   first byte), `verify_incoming`, and the pool's `verify_outgoing`/`verify_server_hostname`.
//!
//! The wire types are enums whose variants are only ever appended.

pub mod client;
pub mod server;
pub mod tls;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::raft::{NodeId, TypeConfig};
use crate::state::{Request, Response};

pub use client::Pool;
pub use server::{serve, Handler};
pub use tls::{ClientTls, ServerTls};

/// Largest frame accepted: well above a full append (1024 entries) of typical writes.
pub const MAX_FRAME: usize = 256 << 20;

/// One frame: a call id and its body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

/// What one server asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write forwarded to the leader, which proposes it through its group commit.
    Write(Request),
    /// The index a read must wait for on the asking server: the leader's applied index, after
    /// confirming leadership with a quorum when `consistent`.
    ReadIndex {
        consistent: bool,
    },
    /// Whether the server has Raft state (for `-bootstrap-expect`) and whom it follows.
    Status,
    /// Remove a server from the Raft configuration (`operator raft remove-peer`), on the leader.
    RemovePeer {
        id: NodeId,
    },
    /// From a client agent: a write for any server to pass to the leader.
    ClientWrite(Request),
    /// From a client agent: the catalog's rows of one node (anti-entropy), a default read.
    NodeView {
        node: String,
    },
    /// From a client agent: an HTTP request for the server to answer with its own router.
    Http(HttpRequest),
    /// From a client agent: a DNS query (as the client received it) for the server to answer.
    Dns {
        query: Vec<u8>,
        tcp: bool,
    },
    /// Any of the above, with who sends it (see [`Identity`] and [`refusal`]). Every call of a
    /// [`Pool`] given an identity travels this way.
    ///
    /// Compatibility: appended, so every older variant keeps its postcard tag and a call
    /// without an identity (from an older Muster) is still answered, unchecked. An older server
    /// cannot decode this variant and answers `RpcResponse::Error("undecodable request")`:
    /// servers of this version and older ones do not replicate to each other, so a cluster is
    /// upgraded by restarting all servers on the new version (no mixed-version rolling upgrade).
    Identified {
        from: Identity,
        request: Box<RpcRequest>,
    },
    /// The answering server's identity: a leader asks a server it is about to add as a
    /// learner, and leaves out one of another cluster.
    Whoami,
}

impl RpcRequest {
    /// The name of the call, for logs and refusals.
    pub fn kind(&self) -> &'static str {
        match self {
            RpcRequest::AppendEntries(_) => "AppendEntries",
            RpcRequest::Vote(_) => "Vote",
            RpcRequest::InstallSnapshot(_) => "InstallSnapshot",
            RpcRequest::Write(_) => "Write",
            RpcRequest::ReadIndex { .. } => "ReadIndex",
            RpcRequest::Status => "Status",
            RpcRequest::RemovePeer { .. } => "RemovePeer",
            RpcRequest::ClientWrite(_) => "ClientWrite",
            RpcRequest::NodeView { .. } => "NodeView",
            RpcRequest::Http(_) => "Http",
            RpcRequest::Dns { .. } => "Dns",
            RpcRequest::Identified { .. } => "Identified",
            RpcRequest::Whoami => "Whoami",
        }
    }

    /// Calls that only servers of one Raft cluster make to each other (Raft itself, and what a
    /// follower asks its leader): refused between servers of different clusters.
    fn within_cluster(&self) -> bool {
        matches!(
            self,
            RpcRequest::AppendEntries(_)
                | RpcRequest::Vote(_)
                | RpcRequest::InstallSnapshot(_)
                | RpcRequest::Write(_)
                | RpcRequest::ReadIndex { .. }
                | RpcRequest::RemovePeer { .. }
        )
    }
}

/// Who makes a call: its datacenter and, for a server, the id of the Raft cluster it belongs
/// to (`None` for client agents, and for a server until its cluster's first leader committed
/// an id: `state::Command::ClusterId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub datacenter: String,
    pub cluster: Option<u128>,
}

/// Why a server whose identity is `ours` refuses `request` from `from`, or `None` to answer it.
///
/// * Another datacenter: every call (there is no WAN federation; `?dc=` is refused earlier).
/// * Another cluster (both ids known and different): the calls only servers of one cluster
///   make ([`RpcRequest::within_cluster`]), above all Raft's, which would otherwise reach
///   openraft with a foreign log. A server without an id yet (fresh, or a voter that has not
///   applied its cluster's id) is not refused: it learns its id from its own leader's log.
/// * A nested identity is refused as malformed.
pub fn refusal(ours: &Identity, from: &Identity, request: &RpcRequest) -> Option<String> {
    if matches!(request, RpcRequest::Identified { .. }) {
        return Some("malformed request: nested identity".into());
    }
    if from.datacenter != ours.datacenter {
        return Some(format!(
            "refused {} from datacenter {:?}: this server is in datacenter {:?}",
            request.kind(),
            from.datacenter,
            ours.datacenter
        ));
    }
    match (from.cluster, ours.cluster) {
        (Some(theirs), Some(mine)) if theirs != mine && request.within_cluster() => Some(format!(
            "refused {} from a server of another cluster (cluster id {}, this server's {})",
            request.kind(),
            uuid::Uuid::from_u128(theirs),
            uuid::Uuid::from_u128(mine)
        )),
        _ => None,
    }
}

/// An HTTP request carried over the RPC (client agent → server).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The server's answer to an [`HttpRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The catalog rows of one node, as anti-entropy compares them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRows {
    pub node: Option<crate::state::catalog::NodeRow>,
    pub services: Vec<crate::state::catalog::ServiceRow>,
    pub checks: Vec<crate::state::catalog::CheckRow>,
}

/// An error reported by the remote side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteError {
    /// The remote is not the leader (or there is none): the call was not carried out.
    NoLeader,
    Other(String),
}

impl From<crate::error::Error> for RemoteError {
    fn from(e: crate::error::Error) -> Self {
        match e {
            crate::error::Error::NoLeader => RemoteError::NoLeader,
            e => RemoteError::Other(e.to_string()),
        }
    }
}

impl From<RemoteError> for crate::error::Error {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::NoLeader => crate::error::Error::NoLeader,
            RemoteError::Other(m) => crate::error::Error::Raft(m),
        }
    }
}

/// The answer to an [`RpcRequest`], variant for variant; Raft errors travel as text (the
/// caller only needs to know the call failed, openraft retries).
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    Write(Result<Response, RemoteError>),
    ReadIndex(Result<u64, RemoteError>),
    Status {
        initialized: bool,
        leader: Option<NodeId>,
    },
    RemovePeer(Result<(), RemoteError>),
    /// The request could not be decoded or is not served here.
    Error(String),
    ClientWrite(Result<Response, RemoteError>),
    NodeView(Result<NodeRows, RemoteError>),
    Http(HttpResponse),
    /// The encoded answer (`None`: the bytes were not a query).
    Dns(Option<Vec<u8>>),
    Whoami(Identity),
}

/// Errors of the transport itself.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(String),
    #[error("call to {0} timed out")]
    Timeout(String),
    #[error("connection to {0} closed")]
    Closed(String),
    #[error("encode: {0}")]
    Encode(String),
    #[error("remote {0}: {1}")]
    Remote(String, String),
    /// The queue to the connection stayed full until the call's deadline (the peer stopped
    /// reading): the request was never written.
    #[error("call to {0} timed out before it could be sent (the server is not reading)")]
    Backlog(String),
}

impl RpcError {
    /// True when the request certainly never reached the remote (safe to retry a write).
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            RpcError::Connect { .. }
                | RpcError::ConnectTimeout(_)
                | RpcError::Encode(_)
                | RpcError::Backlog(_)
        )
    }

    /// True when the server did not answer (could not be reached, timed out, the connection
    /// broke): an idempotent call (a read) may be tried on another server. An answer of the
    /// remote's, even an error, is not such a failure.
    pub fn unanswered(&self) -> bool {
        !matches!(self, RpcError::Remote(..) | RpcError::Encode(_))
    }
}

impl From<RpcError> for crate::error::Error {
    fn from(e: RpcError) -> Self {
        crate::error::Error::Raft(format!("rpc: {e}"))
    }
}

/// Encodes one frame (length prefix included).
pub fn encode<T: Serialize>(envelope: &Envelope<T>) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 4];
    let buf = postcard::to_extend(envelope, std::mem::take(&mut buf)).map_err(|e| e.to_string())?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes is over the limit"));
    }
    let mut buf = buf;
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Reads one frame body; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes frames from `rx` to `w` until the channel closes or a write fails.
pub(crate) async fn write_frames<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    while let Some(frame) = rx.recv().await {
        w.write_all(&frame).await?;
        // Send whatever else is queued before flushing.
        while let Ok(more) = rx.try_recv() {
            w.write_all(&more).await?;
        }
        w.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
