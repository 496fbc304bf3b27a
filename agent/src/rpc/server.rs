//! The answering side of the server RPC: accepts connections, decodes frames, runs each
//! request in its own task and writes the answers back as they finish.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::tls::{ServerTls, TLS_HANDSHAKE};
use super::{encode, read_frame, write_frames, Envelope, RpcRequest, RpcResponse};

/// What answers the requests (the agent; a fake in tests).
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, request: RpcRequest) -> BoxFuture<'static, RpcResponse>;
}

/// Serves `listener` until `stop` is cancelled; with `tls`, TLS connections too (and only
/// those with `verify_incoming`).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<Arc<ServerTls>>,
    stop: CancellationToken,
) {
    let refused = Arc::new(Refused::default());
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let stop = stop.clone();
                let tls = tls.clone();
                let refused = refused.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = accept(stream, peer, tls, refused, handler, stop.clone()) => {}
                    }
                    tracing::trace!(%peer, "RPC connection ended");
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "RPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Peers whose plaintext connection was refused: warned about once each, then at debug level.
#[derive(Default)]
struct Refused(Mutex<HashSet<IpAddr>>);

impl Refused {
    /// Whether `peer` is new (and is now remembered; the set is bounded).
    fn first(&self, peer: IpAddr) -> bool {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= 1024 {
            set.clear();
        }
        set.insert(peer)
    }
}

/// Tells TLS from plaintext by the first byte (see `rpc::tls`), within the handshake timeout,
/// then serves the connection.
async fn accept<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerTls>>,
    refused: Arc<Refused>,
    handler: Arc<H>,
    stop: CancellationToken,
) {
    let Some(tls) = tls else {
        return connection(stream, handler, stop).await;
    };
    let timeout = tls.handshake_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(Ok(_)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "RPC: reading the first byte failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, ?timeout, "RPC: nothing received in time, closing");
            return;
        }
    }
    if first[0] != TLS_HANDSHAKE {
        if tls.verify_incoming {
            let message = "RPC: plaintext connection refused (verify_incoming requires TLS \
                           with a certificate signed by the CA)";
            if refused.first(peer.ip()) {
                tracing::warn!(%peer, "{message}");
            } else {
                tracing::debug!(%peer, "{message}");
            }
            return;
        }
        return connection(stream, handler, stop).await;
    }
    match tokio::time::timeout(timeout, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => connection(stream, handler, stop).await,
        Ok(Err(e)) => {
            if refused.first(peer.ip()) {
                tracing::warn!(%peer, error = %e, "RPC: TLS handshake failed");
            } else {
                tracing::debug!(%peer, error = %e, "RPC: TLS handshake failed");
            }
        }
        Err(_) => tracing::debug!(%peer, ?timeout, "RPC: TLS handshake timed out"),
    }
}

async fn connection<H, S>(stream: S, handler: Arc<H>, stop: CancellationToken)
where
    H: Handler,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, write) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::new(write);
        let _ = write_frames(&mut w, &mut rx).await;
    });
    loop {
        let body = match read_frame(&mut read).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "RPC read failed");
                break;
            }
        };
        let (id, answer) = match postcard::from_bytes::<Envelope<RpcRequest>>(&body) {
            Ok(env) => (env.id, Some(env.body)),
            // Answer what can be answered: the id leads the frame.
            Err(e) => match postcard::take_from_bytes::<u64>(&body) {
                Ok((id, _)) => {
                    tracing::warn!(error = %e, "undecodable RPC request");
                    (id, None)
                }
                Err(_) => break,
            },
        };
        let handler = handler.clone();
        let tx = tx.clone();
        let stop = stop.clone();
        // Each request in its own task, ended with the server (a forwarded blocking query may
        // otherwise wait minutes holding the handler).
        tokio::spawn(async move {
            let body = match answer {
                Some(req) => tokio::select! {
                    _ = stop.cancelled() => return,
                    r = handler.handle(req) => r,
                },
                None => RpcResponse::Error("undecodable request".into()),
            };
            let frame = match encode(&Envelope { id, body }) {
                Ok(f) => f,
                Err(e) => match encode(&Envelope {
                    id,
                    body: RpcResponse::Error(format!("encode answer: {e}")),
                }) {
                    Ok(f) => f,
                    Err(_) => return,
                },
            };
            let _ = tx.send(frame).await;
        });
    }
    drop(tx);
    let _ = writer.await;
}
