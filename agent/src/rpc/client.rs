//! The calling side of the server RPC: one reused, multiplexed connection per address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::tls::ClientTls;
use super::{
    encode, read_frame, write_frames, Envelope, Identity, RpcError, RpcRequest, RpcResponse,
};

/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a server that let a call time out is tried after the others (see
/// [`Pool::prefer_responsive`]). A SIGSTOPped or wedged server still accepts TCP, so without
/// this every request routed to it would wait for its whole timeout.
pub const SLOW_PENALTY: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<RpcResponse>>>>;

/// One open connection: a queue to its writer task and the calls waiting for an answer.
struct Conn {
    frames: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    /// Set by the reader when the connection ends.
    broken: Arc<AtomicBool>,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.frames.is_closed() || self.broken.load(Ordering::Acquire)
    }
}

/// Connections to other servers, opened on first use and reused; cheap to share.
#[derive(Default)]
pub struct Pool {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Addresses whose last call timed out, and until when they are tried last.
    slow: Mutex<HashMap<String, Instant>>,
    /// Who this pool's calls come from (see [`Pool::set_identity`]).
    identity: Mutex<Option<IdentityFn>>,
    /// TLS of new connections (`verify_outgoing`; see [`Pool::set_tls`]).
    tls: Mutex<Option<Arc<ClientTls>>>,
}

/// Gives the current identity of the caller (the cluster id may be learned after start).
pub type IdentityFn = Arc<dyn Fn() -> Identity + Send + Sync>;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rpc::Pool")
    }
}

impl Pool {
    pub fn new() -> Arc<Pool> {
        Arc::new(Pool::default())
    }

    /// Sends `request` to the server at `addr` and waits for its answer, at most `timeout`
    /// (connecting included, itself at most [`CONNECT_TIMEOUT`]).
    ///
    /// A call that times out (or cannot even be queued, or connect in time) marks `addr` slow
    /// for [`SLOW_PENALTY`]; an answer clears the mark.
    pub async fn call(
        &self,
        addr: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, RpcError> {
        let result = self.call_inner(addr, request, timeout).await;
        match &result {
            Ok(_) | Err(RpcError::Remote(..)) => {
                lock(&self.slow).remove(addr);
            }
            Err(RpcError::Timeout(_) | RpcError::ConnectTimeout(_) | RpcError::Backlog(_)) => {
                lock(&self.slow).insert(addr.to_string(), Instant::now() + SLOW_PENALTY);
            }
            Err(_) => {}
        }
        result
    }

    async fn call_inner(
        &self,
        addr: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.conn(addr, timeout.min(CONNECT_TIMEOUT)).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let identity = lock(&self.identity).clone();
        let request = match identity {
            Some(identity) => RpcRequest::Identified {
                from: identity(),
                request: Box::new(request),
            },
            None => request,
        };
        let frame = encode(&Envelope { id, body: request }).map_err(RpcError::Encode)?;
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        // The queue to the writer is bounded: a peer that stopped reading (SIGSTOP) fills its
        // socket buffer, then the queue. Waiting for room is bounded too, and a frame that never
        // got into the queue was certainly not sent.
        match tokio::time::timeout_at(deadline, conn.frames.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                lock(&conn.pending).remove(&id);
                self.forget(addr, &conn);
                return Err(RpcError::Closed(addr.to_string()));
            }
            Err(_) => {
                lock(&conn.pending).remove(&id);
                return Err(RpcError::Backlog(addr.to_string()));
            }
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(RpcResponse::Error(e))) => Err(RpcError::Remote(addr.to_string(), e)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => {
                self.forget(addr, &conn);
                Err(RpcError::Closed(addr.to_string()))
            }
            Err(_) => {
                lock(&conn.pending).remove(&id);
                Err(RpcError::Timeout(addr.to_string()))
            }
        }
    }

    /// From now on every call carries `identity()` ([`RpcRequest::Identified`]), read when the
    /// call is made.
    pub fn set_identity(&self, identity: IdentityFn) {
        *lock(&self.identity) = Some(identity);
    }

    /// Opens every new connection with TLS (`verify_outgoing`); connections already open are
    /// kept as they are, so this is set before the first call.
    pub fn set_tls(&self, tls: Arc<ClientTls>) {
        *lock(&self.tls) = Some(tls);
    }

    /// Whether a call to `addr` timed out less than [`SLOW_PENALTY`] ago (and none answered
    /// since).
    pub fn is_slow(&self, addr: &str) -> bool {
        let now = Instant::now();
        let mut slow = lock(&self.slow);
        slow.retain(|_, until| *until > now);
        slow.contains_key(addr)
    }

    /// Reorders `addrs` so that the ones marked slow come last, keeping the order otherwise
    /// (a client agent's rotation among the responsive servers stays as it was).
    pub fn prefer_responsive(&self, addrs: &mut [String]) {
        let now = Instant::now();
        let slow = {
            let mut slow = lock(&self.slow);
            slow.retain(|_, until| *until > now);
            if slow.is_empty() {
                return;
            }
            slow.keys()
                .cloned()
                .collect::<std::collections::HashSet<_>>()
        };
        addrs.sort_by_key(|a| slow.contains(a));
    }

    /// How many connections are open (for tests and stats).
    pub fn connections(&self) -> usize {
        lock(&self.conns)
            .values()
            .filter(|c| !c.is_closed())
            .count()
    }

    fn forget(&self, addr: &str, conn: &Arc<Conn>) {
        let mut conns = lock(&self.conns);
        if conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(addr);
        }
    }

    async fn conn(&self, addr: &str, connect_timeout: Duration) -> Result<Arc<Conn>, RpcError> {
        if let Some(c) = lock(&self.conns).get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let stream = within(deadline, addr, TcpStream::connect(addr)).await?;
        let _ = stream.set_nodelay(true);
        let tls = lock(&self.tls).clone();
        let conn = match tls {
            // The handshake counts toward the connect timeout; a failed one (a certificate the
            // CA did not sign, or for another name, or a server refusing ours) is a connect
            // error: the call was certainly not sent.
            Some(tls) => {
                let handshake = tls.connector.connect(tls.server_name.clone(), stream);
                start(addr, within(deadline, addr, handshake).await?)
            }
            None => start(addr, stream),
        };
        let mut conns = lock(&self.conns);
        conns.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }
}

/// One step of opening a connection to `addr` (TCP connect, TLS handshake) by `deadline`: a
/// step that times out or fails is a connect error (the call was certainly not sent).
async fn within<T>(
    deadline: tokio::time::Instant,
    addr: &str,
    step: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, RpcError> {
    tokio::time::timeout_at(deadline, step)
        .await
        .map_err(|_| RpcError::ConnectTimeout(addr.to_string()))?
        .map_err(|source| RpcError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// Starts the writer and reader tasks of a new connection to `addr`.
fn start<S>(addr: &str, stream: S) -> Arc<Conn>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, write) = tokio::io::split(stream);
    let (frames, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let pending: Pending = Arc::default();
    let broken = Arc::new(AtomicBool::new(false));
    let conn = Arc::new(Conn {
        frames,
        pending: pending.clone(),
        broken: broken.clone(),
    });
    // Writer: ends when every sender is gone or a write fails; dropping `rx` then closes the
    // queue so the connection is seen as broken.
    tokio::spawn(async move {
        let mut w = BufWriter::new(write);
        let _ = write_frames(&mut w, &mut rx).await;
    });
    // Reader: hands each answer to its caller; at the end every waiting call fails.
    let peer = addr.to_string();
    tokio::spawn(async move {
        loop {
            match read_frame(&mut read).await {
                Ok(Some(body)) => match postcard::from_bytes::<Envelope<RpcResponse>>(&body) {
                    Ok(env) => {
                        if let Some(tx) = lock(&pending).remove(&env.id) {
                            let _ = tx.send(env.body);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer, error = %e, "undecodable RPC answer");
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer, error = %e, "RPC connection broken");
                    break;
                }
            }
        }
        // The next call reopens the connection; the waiting ones fail now.
        broken.store(true, Ordering::Release);
        lock(&pending).clear();
    });
    conn
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
