//! Forwarding queries outside the domain to the configured recursors (`recursors`,
//! `-recursor`): each recursor in turn (configured order, or shuffled under
//! `recursor_strategy = "random"`), over UDP, again over TCP when the UDP answer is truncated,
//! each exchange bounded by `recursor_timeout`. An answer with a code other than NOERROR or
//! NXDOMAIN moves on to the next recursor, as in Consul; when none answers, the caller sends
//! SERVFAIL.
//!
//! At most [`MAX_IN_FLIGHT`] forwards run at once: past that a query fails at once instead of
//! piling up sockets and tasks behind a slow upstream.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use rand::seq::SliceRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{timeout_at, Instant};

use super::settings::{RecursorStrategy, Settings};

/// Most forwards in flight at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// The UDP payload size Muster advertises to recursors.
const UPSTREAM_UDP_SIZE: u16 = 1232;

/// The recursors and the limit on concurrent forwards.
pub struct Recursors {
    addrs: Vec<SocketAddr>,
    timeout: Duration,
    strategy: RecursorStrategy,
    in_flight: Semaphore,
}

/// Why a forward got no usable answer (logged at debug; the client sees SERVFAIL).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no recursors configured")]
    NoRecursors,
    #[error("too many queries being forwarded at once")]
    Busy,
    #[error("every recursor failed; last: {0}")]
    AllFailed(String),
}

impl Recursors {
    pub fn new(settings: &Settings) -> Recursors {
        Recursors {
            addrs: settings.recursors.clone(),
            timeout: settings.recursor_timeout,
            strategy: settings.recursor_strategy,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Asks the recursors `query`; the first NOERROR or NXDOMAIN answer wins.
    pub async fn forward(
        &self,
        query: &Query,
        checking_disabled: bool,
    ) -> Result<Message, ForwardError> {
        if self.addrs.is_empty() {
            return Err(ForwardError::NoRecursors);
        }
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| ForwardError::Busy)?;
        let mut order = self.addrs.clone();
        if self.strategy == RecursorStrategy::Random {
            order.shuffle(&mut rand::thread_rng());
        }
        let mut last = String::new();
        for addr in order {
            match exchange(addr, query, checking_disabled, self.timeout).await {
                Ok(m)
                    if matches!(
                        m.metadata.response_code,
                        ResponseCode::NoError | ResponseCode::NXDomain
                    ) =>
                {
                    return Ok(m)
                }
                Ok(m) => {
                    last = format!("{addr} answered {}", m.metadata.response_code);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
            tracing::debug!(recursor = %addr, error = %last, "recursor failed");
        }
        Err(ForwardError::AllFailed(last))
    }
}

/// One exchange with one recursor: UDP, then TCP when the UDP answer is truncated.
async fn exchange(
    addr: SocketAddr,
    query: &Query,
    checking_disabled: bool,
    timeout: Duration,
) -> Result<Message, String> {
    let id: u16 = rand::random();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.metadata.checking_disabled = checking_disabled;
    msg.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_UDP_SIZE);
    msg.set_edns(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| format!("encoding the query: {e}"))?;

    let deadline = Instant::now() + timeout;
    let answer = timeout_at(deadline, udp(addr, id, query, &bytes))
        .await
        .map_err(|_| format!("no answer over UDP within {timeout:?}"))??;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    let deadline = Instant::now() + timeout;
    timeout_at(deadline, tcp(addr, id, &bytes))
        .await
        .map_err(|_| format!("no answer over TCP within {timeout:?}"))?
}

async fn udp(addr: SocketAddr, id: u16, query: &Query, bytes: &[u8]) -> Result<Message, String> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(addr).await.map_err(|e| e.to_string())?;
    socket.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Ignore anything that is not the answer to this query (late or forged datagrams).
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if m.metadata.id == id
            && m.metadata.message_type == MessageType::Response
            && m.queries.first() == Some(query)
        {
            return Ok(m);
        }
    }
}

async fn tcp(addr: SocketAddr, id: u16, bytes: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let len = u16::try_from(bytes.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let m = Message::from_vec(&buf).map_err(|e| format!("bad answer over TCP: {e}"))?;
    if m.metadata.id != id {
        return Err("answer over TCP has another ID".into());
    }
    Ok(m)
}
