//! The transport alone: frames, multiplexing, reconnection, timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;

/// Answers `ReadIndex { consistent }` with 1 (after a delay when `consistent`), `Status` at once.
struct Fake {
    calls: AtomicUsize,
}

impl Handler for Fake {
    fn handle(self: Arc<Self>, request: RpcRequest) -> BoxFuture<'static, RpcResponse> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            match request {
                RpcRequest::ReadIndex { consistent: true } => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    RpcResponse::ReadIndex(Ok(1))
                }
                RpcRequest::ReadIndex { consistent: false } => RpcResponse::ReadIndex(Ok(7)),
                RpcRequest::Write(_) => RpcResponse::Write(Ok(crate::state::Response::Ok)),
                _ => RpcResponse::Status {
                    initialized: true,
                    leader: Some(42),
                },
            }
        })
    }
}

async fn server() -> (String, Arc<Fake>, CancellationToken) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let fake = Arc::new(Fake {
        calls: AtomicUsize::new(0),
    });
    let stop = CancellationToken::new();
    tokio::spawn(serve(l, fake.clone(), stop.clone()));
    (addr, fake, stop)
}

#[tokio::test]
async fn calls_share_one_connection_and_answers_come_out_of_order() {
    let (addr, fake, stop) = server().await;
    let pool = Pool::new();
    // A slow call in flight does not hold up the quick ones behind it on the same connection.
    let slow = {
        let pool = pool.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            pool.call(
                &addr,
                RpcRequest::ReadIndex { consistent: true },
                Duration::from_millis(300),
            )
            .await
        })
    };
    for _ in 0..50 {
        match pool
            .call(
                &addr,
                RpcRequest::ReadIndex { consistent: false },
                Duration::from_secs(10),
            )
            .await
        {
            Ok(RpcResponse::ReadIndex(Ok(7))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The slow one times out rather than hanging.
    assert!(matches!(
        slow.await.expect("task"),
        Err(RpcError::Timeout(_))
    ));
    assert_eq!(fake.calls.load(Ordering::Relaxed), 51);
    assert_eq!(pool.connections(), 1);
    stop.cancel();
}

#[tokio::test]
async fn an_unreachable_peer_is_a_connect_error_and_a_restarted_one_is_reconnected() {
    let pool = Pool::new();
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    let err = pool
        .call(
            &addr.to_string(),
            RpcRequest::Status,
            Duration::from_secs(5),
        )
        .await
        .expect_err("nobody listens");
    assert!(err.not_sent(), "{err}");

    let (addr, _fake, stop) = server().await;
    assert!(pool
        .call(&addr, RpcRequest::Status, Duration::from_secs(5))
        .await
        .is_ok());
    stop.cancel();
    // The server's connections end with it; the next call fails, then a new server on the same
    // address is reached through a new connection.
    let port: std::net::SocketAddr = addr.parse().expect("addr");
    let mut reached = false;
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(port).await {
            let fake = Arc::new(Fake {
                calls: AtomicUsize::new(0),
            });
            let stop = CancellationToken::new();
            tokio::spawn(serve(l, fake, stop.clone()));
            for _ in 0..3 {
                if pool
                    .call(&addr, RpcRequest::Status, Duration::from_secs(5))
                    .await
                    .is_ok()
                {
                    reached = true;
                    break;
                }
            }
            stop.cancel();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached, "the restarted server was not reached");
}

#[test]
fn a_frame_is_its_length_then_postcard() {
    let frame = encode(&Envelope {
        id: 5,
        body: RpcRequest::ReadIndex { consistent: true },
    })
    .expect("encode");
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4);
    let back: Envelope<RpcRequest> = postcard::from_bytes(&frame[4..]).expect("decode");
    assert_eq!(back.id, 5);
    assert!(matches!(
        back.body,
        RpcRequest::ReadIndex { consistent: true }
    ));
}
