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
    tokio::spawn(serve(l, fake.clone(), None, stop.clone()));
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
            tokio::spawn(serve(l, fake, None, stop.clone()));
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

/// A peer that accepts connections and never reads or answers (a SIGSTOPped server: the
/// kernel still completes the handshake). The accepted sockets are kept until `stop`.
async fn silent_peer() -> (String, CancellationToken) {
    // A small receive buffer (inherited by accepted sockets) so that the sender's buffers fill
    // up soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let l = socket.listen(16).expect("listen");
    let addr = l.local_addr().expect("addr").to_string();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = s.cancelled() => return,
                a = l.accept() => if let Ok((sock, _)) = a { held.push(sock) },
            }
        }
    });
    (addr, stop)
}

#[tokio::test]
async fn a_server_that_let_a_call_time_out_is_tried_last_until_it_answers() {
    let (good, _fake, stop_good) = server().await;
    let (silent, stop_silent) = silent_peer().await;
    let pool = Pool::new();
    let mut order = vec![silent.clone(), good.clone()];
    pool.prefer_responsive(&mut order);
    assert_eq!(order, [silent.clone(), good.clone()], "nothing marked yet");

    let err = pool
        .call(&silent, RpcRequest::Status, Duration::from_millis(200))
        .await
        .expect_err("the silent peer never answers");
    assert!(matches!(err, RpcError::Timeout(_)), "{err}");
    // Sent, so a write must not be retried elsewhere; a read may be.
    assert!(!err.not_sent() && err.unanswered(), "{err}");
    assert!(pool.is_slow(&silent) && !pool.is_slow(&good));
    let mut order = vec![silent.clone(), good.clone()];
    pool.prefer_responsive(&mut order);
    assert_eq!(order, [good.clone(), silent.clone()]);

    // An answer clears the mark (a server that was only briefly slow).
    stop_silent.cancel();
    let l = TcpListener::bind(silent.parse::<std::net::SocketAddr>().expect("addr")).await;
    if let Ok(l) = l {
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(serve(l, fake, None, stop.clone()));
        let mut answered = false;
        for _ in 0..3 {
            if pool
                .call(&silent, RpcRequest::Status, Duration::from_secs(5))
                .await
                .is_ok()
            {
                answered = true;
                break;
            }
        }
        assert!(answered, "the revived peer did not answer");
        assert!(!pool.is_slow(&silent));
        stop.cancel();
    }
    stop_good.cancel();
}

#[tokio::test]
async fn a_peer_that_stops_reading_bounds_the_call_even_with_a_full_queue() {
    let (silent, stop) = silent_peer().await;
    let pool = Pool::new();
    // Large frames fill the socket buffers and then the writer's queue; every call still ends
    // by its deadline, either as a timeout (sent) or as a backlog (never sent).
    let big = crate::rpc::HttpRequest {
        method: "PUT".into(),
        uri: "/v1/kv/x".into(),
        headers: Vec::new(),
        body: vec![7u8; 64 << 10],
    };
    // One call first, so that the burst shares its connection.
    let first = pool
        .call(&silent, RpcRequest::Status, Duration::from_millis(100))
        .await;
    assert!(matches!(first, Err(RpcError::Timeout(_))), "{first:?}");
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..600 {
        let pool = pool.clone();
        let silent = silent.clone();
        let big = big.clone();
        calls.spawn(async move {
            pool.call(&silent, RpcRequest::Http(big), Duration::from_secs(2))
                .await
        });
    }
    let mut backlog = 0;
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = calls.join_next().await {
            match r.expect("task") {
                Err(RpcError::Backlog(_)) => backlog += 1,
                Err(RpcError::Timeout(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(all.is_ok(), "calls to a peer that stopped reading hung");
    assert!(backlog > 0, "the queue never filled up");
    assert!(RpcError::Backlog(silent.clone()).not_sent());
    stop.cancel();
}

fn id(dc: &str, cluster: Option<u128>) -> Identity {
    Identity {
        datacenter: dc.into(),
        cluster,
    }
}

fn vote() -> RpcRequest {
    RpcRequest::Vote(openraft::raft::VoteRequest::new(
        openraft::Vote::new(9, 1),
        None,
    ))
}

fn heartbeat() -> RpcRequest {
    RpcRequest::AppendEntries(openraft::raft::AppendEntriesRequest {
        vote: openraft::Vote::new_committed(9, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    })
}

#[test]
fn raft_calls_between_servers_of_different_clusters_are_refused() {
    let ours = id("dc1", Some(1));
    let theirs = id("dc1", Some(2));
    for request in [
        vote(),
        heartbeat(),
        RpcRequest::ReadIndex { consistent: true },
    ] {
        let why = refusal(&ours, &theirs, &request).expect("refused");
        assert!(why.contains("another cluster"), "{why}");
        assert!(why.contains(request.kind()), "{why}");
        // The same cluster, or a side without an id yet (fresh, or not applied yet): answered.
        assert_eq!(refusal(&ours, &id("dc1", Some(1)), &request), None);
        assert_eq!(refusal(&ours, &id("dc1", None), &request), None);
        assert_eq!(refusal(&id("dc1", None), &theirs, &request), None);
    }
    // Calls outside Raft are not about the cluster: bootstrap-expect's Status probe, a client
    // agent's HTTP request.
    assert_eq!(refusal(&ours, &theirs, &RpcRequest::Status), None);
}

#[test]
fn calls_from_another_datacenter_are_refused_and_nested_identities_too() {
    let ours = id("dc1", Some(1));
    let http = RpcRequest::Http(HttpRequest {
        method: "GET".into(),
        uri: "/v1/kv/x".into(),
        headers: Vec::new(),
        body: Vec::new(),
    });
    for request in [http, RpcRequest::Status, vote()] {
        let why = refusal(&ours, &id("dc2", None), &request).expect("refused");
        assert!(why.contains("\"dc2\"") && why.contains("\"dc1\""), "{why}");
        assert_eq!(refusal(&ours, &id("dc1", None), &request), None);
    }
    let nested = RpcRequest::Identified {
        from: id("dc1", Some(1)),
        request: Box::new(RpcRequest::Status),
    };
    assert!(refusal(&ours, &id("dc1", Some(1)), &nested).is_some());
}

/// Records who each call said it came from.
struct Recorder {
    seen: std::sync::Mutex<Vec<Option<Identity>>>,
}

impl Handler for Recorder {
    fn handle(self: Arc<Self>, request: RpcRequest) -> BoxFuture<'static, RpcResponse> {
        let from = match request {
            RpcRequest::Identified { from, .. } => Some(from),
            _ => None,
        };
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(from);
        Box::pin(async {
            RpcResponse::Status {
                initialized: true,
                leader: None,
            }
        })
    }
}

#[tokio::test]
async fn a_pool_with_an_identity_sends_it_with_every_call_as_it_is_then() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let recorder = Arc::new(Recorder {
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    tokio::spawn(serve(l, recorder.clone(), None, stop.clone()));
    let pool = Pool::new();
    pool.call(&addr, RpcRequest::Status, Duration::from_secs(5))
        .await
        .expect("call");
    let cluster = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = cluster.clone();
    pool.set_identity(Arc::new(move || Identity {
        datacenter: "dc1".into(),
        cluster: match c.load(Ordering::Relaxed) {
            0 => None,
            n => Some(u128::from(n)),
        },
    }));
    pool.call(&addr, RpcRequest::Status, Duration::from_secs(5))
        .await
        .expect("call");
    // The id learned later goes with the next call.
    cluster.store(5, Ordering::Relaxed);
    pool.call(&addr, RpcRequest::Status, Duration::from_secs(5))
        .await
        .expect("call");
    let seen = recorder
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(
        seen,
        [None, Some(id("dc1", None)), Some(id("dc1", Some(5)))]
    );
    stop.cancel();
}

/// Throwaway certificates made by the `openssl` CLI, shared with the end-to-end tests.
#[allow(dead_code)]
#[path = "../../tests/common/certs.rs"]
mod certs;

/// TLS on the RPC port (`rpc::tls`), with certificates made by the `openssl` CLI.
mod tls {
    use super::*;
    use crate::config::{ListenerTls, RpcTls};

    use super::certs;

    /// The PKI of `certs.rs` plus `srv`: server and client auth for `server.dc1.consul`.
    fn pki(dir: &std::path::Path) -> certs::Pki {
        let pki = certs::Pki::new(dir);
        pki.leaf(
            "srv",
            "serverAuth,clientAuth",
            Some("DNS:server.dc1.consul"),
        );
        pki
    }

    fn listener(pki: &certs::Pki, cert: &str, verify_incoming: bool) -> ListenerTls {
        ListenerTls {
            ca_file: Some(pki.path("ca.pem").into()),
            cert_file: Some(pki.path(&format!("{cert}.pem")).into()),
            key_file: Some(pki.path(&format!("{cert}.key")).into()),
            verify_incoming,
            ..ListenerTls::default()
        }
    }

    async fn tls_server(tls: &ListenerTls, handshake: Duration) -> (String, CancellationToken) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
        });
        let tls = ServerTls::load(tls, handshake)
            .expect("server TLS")
            .expect("a certificate");
        let stop = CancellationToken::new();
        tokio::spawn(serve(l, fake, Some(Arc::new(tls)), stop.clone()));
        (addr, stop)
    }

    /// A pool with `verify_outgoing`, presenting `cert` when given.
    fn tls_pool(pki: &certs::Pki, cert: Option<&str>, verify_server_hostname: bool) -> Arc<Pool> {
        let mut l = ListenerTls {
            ca_file: Some(pki.path("ca.pem").into()),
            ..ListenerTls::default()
        };
        if let Some(c) = cert {
            l.cert_file = Some(pki.path(&format!("{c}.pem")).into());
            l.key_file = Some(pki.path(&format!("{c}.key")).into());
        }
        let settings = RpcTls {
            listener: l,
            verify_outgoing: true,
            verify_server_hostname,
        };
        let tls = ClientTls::load(&settings, "dc1", "consul.")
            .expect("client TLS")
            .expect("verify_outgoing");
        let pool = Pool::new();
        pool.set_tls(Arc::new(tls));
        pool
    }

    async fn status(pool: &Pool, addr: &str) -> Result<RpcResponse, RpcError> {
        pool.call(addr, RpcRequest::Status, Duration::from_secs(5))
            .await
    }

    #[tokio::test]
    async fn a_server_with_a_certificate_serves_tls_and_plaintext_on_one_port() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki(dir.path());
        let (addr, stop) = tls_server(&listener(&pki, "srv", false), Duration::from_secs(5)).await;
        status(&Pool::new(), &addr).await.expect("plaintext call");
        status(&tls_pool(&pki, None, true), &addr)
            .await
            .expect("TLS call without a client certificate");
        stop.cancel();
    }

    #[tokio::test]
    async fn verify_incoming_refuses_plaintext_and_tls_without_a_certificate_of_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki(dir.path());
        pki.leaf_signed_by("other-ca", "rogue", "clientAuth", None);
        let (addr, stop) = tls_server(&listener(&pki, "srv", true), Duration::from_secs(5)).await;
        let e = status(&Pool::new(), &addr).await.expect_err("plaintext");
        assert!(matches!(e, RpcError::Closed(_)), "{e}");
        status(&tls_pool(&pki, None, true), &addr)
            .await
            .expect_err("TLS without a client certificate");
        status(&tls_pool(&pki, Some("rogue"), true), &addr)
            .await
            .expect_err("a client certificate of another CA");
        status(&tls_pool(&pki, Some("client"), true), &addr)
            .await
            .expect("a client certificate of the CA");
        stop.cancel();
    }

    #[tokio::test]
    async fn verify_server_hostname_wants_server_dc_domain_and_verify_outgoing_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki(dir.path());
        // `named` is signed by the CA for muster.test only.
        let (addr, stop) =
            tls_server(&listener(&pki, "named", false), Duration::from_secs(5)).await;
        let e = status(&tls_pool(&pki, None, true), &addr)
            .await
            .expect_err("wrong name");
        assert!(e.not_sent(), "{e}");
        assert!(e.to_string().contains("not valid for name"), "{e}");
        status(&tls_pool(&pki, None, false), &addr)
            .await
            .expect("chain only");
        stop.cancel();
        // A server certificate of another CA fails even the chain check.
        pki.leaf_signed_by("other-ca", "rogue-server", "serverAuth", None);
        let (addr, stop) = tls_server(
            &listener(&pki, "rogue-server", false),
            Duration::from_secs(5),
        )
        .await;
        let e = status(&tls_pool(&pki, None, false), &addr)
            .await
            .expect_err("another CA");
        assert!(e.to_string().contains("certificate"), "{e}");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_connection_that_says_nothing_or_stalls_its_handshake_is_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki(dir.path());
        let handshake = Duration::from_millis(300);
        let (addr, stop) = tls_server(&listener(&pki, "srv", false), handshake).await;
        for first in [None, Some(super::super::tls::TLS_HANDSHAKE)] {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            if let Some(b) = first {
                s.write_all(&[b]).await.expect("write");
            }
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("closed by the server within the bound")
                .unwrap_or(0);
            assert_eq!(n, 0, "{first:?}");
        }
        stop.cancel();
    }
}
