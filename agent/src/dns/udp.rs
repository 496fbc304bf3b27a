//! The UDP side of the DNS server: a few worker tasks per socket, each receiving a datagram,
//! decoding it with hickory-server's `Request`, and running the same `RequestHandler` as TCP
//! with a `ResponseHandler` that encodes the answer (bounded by the client's UDP size) and sends
//! it straight back on the socket.
//!
//! Why not hickory's own UDP loop: it spawns a task per datagram and passes every answer
//! through a channel to one sending task, which cost about half of the throughput the issue
//! asks for. Here an answer from the catalog is computed and sent by the worker that received
//! the query, without a spawn; only queries that go to the recursors (which wait on the network)
//! are spawned, so a slow upstream never holds a worker. Service lookups take a faster path
//! still: a recently encoded answer from `cache`, with the query's ID.
//!
//! Malformed datagrams: shorter than a header, or a response (QR set, to avoid reflection
//! loops), are dropped; anything else hickory cannot decode gets FORMERR.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{Header, Message, MessageType, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::handler::Handler;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 65535;

/// Serves one UDP socket with `workers` tasks until `stop`.
pub async fn serve(
    socket: UdpSocket,
    handler: Arc<Handler>,
    workers: usize,
    stop: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        tasks.spawn(worker(socket.clone(), handler.clone(), stop.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

async fn worker(socket: Arc<UdpSocket>, handler: Arc<Handler>, stop: CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, src) = tokio::select! {
            _ = stop.cancelled() => return,
            got = socket.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems: not fatal.
                    tracing::debug!(error = %e, "DNS: UDP receive failed");
                    continue;
                }
            },
        };
        let Some(request) = decode(&buf[..n], src, &socket).await else {
            continue;
        };
        if let Some(bytes) = handler.udp_service_answer(&request).await {
            if let Err(e) = socket.send_to(&bytes, src).await {
                tracing::debug!(%src, error = %e, "DNS: UDP send failed");
            }
            continue;
        }
        let reply = UdpReply {
            socket: socket.clone(),
            dst: src,
        };
        if handler.answers_locally(&request) {
            handler
                .handle_request::<_, TokioTime>(&request, reply)
                .await;
        } else {
            let handler = handler.clone();
            tokio::spawn(async move {
                handler
                    .handle_request::<_, TokioTime>(&request, reply)
                    .await;
            });
        }
    }
}

/// Decodes a query; answers FORMERR to what has a header but no valid body; `None` for what
/// gets no answer at all.
async fn decode(bytes: &[u8], src: SocketAddr, socket: &UdpSocket) -> Option<Request> {
    let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    match Request::from_bytes(bytes.to_vec(), src, Protocol::Udp) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!(%src, error = %e, "DNS: malformed query, answering FORMERR");
            let mut m = Message::new(
                header.metadata.id,
                MessageType::Response,
                header.metadata.op_code,
            );
            m.metadata.response_code = ResponseCode::FormErr;
            if let Ok(out) = m.to_vec() {
                let _ = socket.send_to(&out, src).await;
            }
            None
        }
    }
}

/// Sends an answer back on the socket the query came in on.
#[derive(Clone)]
struct UdpReply {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = response.edns().map_or(512, |e| e.max_payload().max(512));
        let mut buf = Vec::with_capacity(512);
        let info = {
            let mut encoder = BinEncoder::new(&mut buf);
            encoder.set_max_size(max);
            response.destructive_emit(&mut encoder)?
        };
        self.socket.send_to(&buf, self.dst).await?;
        Ok(info)
    }
}
