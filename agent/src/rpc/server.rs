//! The answering side of the server RPC: accepts connections, decodes frames, runs each
//! request in its own task and writes the answers back as they finish.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::BufWriter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{encode, read_frame, write_frames, Envelope, RpcRequest, RpcResponse};

/// What answers the requests (the agent; a fake in tests).
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, request: RpcRequest) -> BoxFuture<'static, RpcResponse>;
}

/// Serves `listener` until `stop` is cancelled.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, stop: CancellationToken) {
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
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = connection(stream, handler, stop.clone()) => {}
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

async fn connection<H: Handler>(stream: TcpStream, handler: Arc<H>, stop: CancellationToken) {
    let (mut read, write) = stream.into_split();
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
