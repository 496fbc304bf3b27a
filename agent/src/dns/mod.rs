//! The DNS interface (Consul's): `<service>.service.consul`, `<node>.node.consul`, `.addr`,
//! RFC 2782 SRV names, PTR for the nodes' addresses, over UDP and TCP with hickory-server,
//! answered from a lock-free snapshot of the state store; names outside the domain go to the
//! recursors.
//!
//! * `settings`: `domain`, `alt_domain`, `dns_config` and `recursors` resolved once, with
//!   Consul's defaults.
//! * `names`: what a query name asks for (pure parsing).
//! * `lookup`: the records a name has in a snapshot of the tables (pure; the rules are
//!   Consul's and are listed there).
//! * `cache`: service answers kept per catalog snapshot, per worker thread.
//! * `recursor`: forwarding outside the domain (UDP, TCP on truncation, bounded).
//! * `handler`: the hickory `RequestHandler`: EDNS, size limits and truncation, the reply.
//! * `udp`: the UDP workers that run the handler (TCP is hickory's `Server`).
//!
//! Where Muster differs from Consul: a UDP answer that had to lose records sets TC by default
//! (`dns_config.enable_truncate` defaults to true here, false in Consul), so a client without
//! EDNS learns that it should ask again over TCP, where it gets every record; set it to false
//! for Consul's silent trimming. A name in the domain with no records of the asked type always
//! carries the SOA (RFC 2308), nodes included. Prepared queries, `connect`, `ingress`,
//! `virtual` and peer names are answered NXDOMAIN until those features exist.
//!
//! Invariants: this module only reads the state store (never writes); a request never waits
//! on a lock, and a query answered from the catalog never waits on one sent to the recursors;
//! malformed packets are answered FORMERR or dropped (`udp`, hickory's TCP server), never a
//! panic; at most `recursor::MAX_IN_FLIGHT` forwards run at once.

mod cache;
mod handler;
mod lookup;
mod names;
mod recursor;
mod settings;
mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

use crate::server::Agent;

/// How long a TCP connection may stay idle between queries.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The receive buffer asked for each UDP socket.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// The bound DNS sockets: a UDP socket and a TCP listener per address, on one port.
#[derive(Debug, Default)]
pub struct Sockets {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
}

impl Sockets {
    pub fn is_empty(&self) -> bool {
        self.udp.is_empty() && self.tcp.is_empty()
    }

    /// The UDP addresses (the TCP ones are the same).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// Binds UDP and TCP on each address at `port`. Port 0 picks one free port for all of them
/// (for tests); the error of a port in use names the protocol and address, as Consul's.
pub async fn bind(addrs: &[IpAddr], port: u16) -> io::Result<Sockets> {
    // With port 0, the port UDP got must also be free for TCP (and on the other addresses):
    // try a few.
    let attempts = if port == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match bind_once(addrs, port).await {
            Ok(s) => return Ok(s),
            Err(e) if port == 0 && e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free DNS port")))
}

async fn bind_once(addrs: &[IpAddr], port: u16) -> io::Result<Sockets> {
    let mut sockets = Sockets::default();
    let mut port = port;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| listen_error("udp", addr, e))?;
        // Room for bursts (the kernel caps it at net.core.rmem_max); best effort.
        let _ = socket2::SockRef::from(&udp).set_recv_buffer_size(UDP_RECV_BUFFER);
        if port == 0 {
            port = udp.local_addr()?.port();
        }
        let addr = SocketAddr::new(*ip, port);
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| listen_error("tcp", addr, e))?;
        sockets.udp.push(udp);
        sockets.tcp.push(tcp);
    }
    Ok(sockets)
}

fn listen_error(proto: &str, addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("Error starting agent: listen {proto} {addr}: {e}"),
    )
}

/// A server's answer to a DNS query a client agent forwarded over the server RPC (see
/// `handler::Handler::forwarded`): the same handler as the server's own DNS interface, built
/// for the one query (it holds no state worth keeping between forwarded queries).
pub async fn answer_forwarded(agent: Arc<Agent>, query: Vec<u8>, tcp: bool) -> Option<Vec<u8>> {
    let settings = Settings::from_config(&agent.config).ok()?;
    handler::Handler::new(agent, settings)
        .answer_bytes(query, tcp)
        .await
}

/// Serves DNS on `sockets` until `shutdown` is cancelled: UDP with [`udp`]'s workers (one per
/// core, at most four, per socket), TCP with hickory's `Server`; both run the same handler.
pub async fn serve(agent: Arc<Agent>, sockets: Sockets, shutdown: CancellationToken) {
    if sockets.is_empty() {
        return;
    }
    let settings = match Settings::from_config(&agent.config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "DNS server not started: bad configuration");
            return;
        }
    };
    if agent.config.dns_config.get("disable_compression") == Some(&serde_json::Value::Bool(true)) {
        tracing::warn!("dns_config.disable_compression is not implemented: answers are compressed");
    }
    let addrs = sockets.local_addrs();
    let handler = Arc::new(handler::Handler::new(agent, settings));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let mut udp_tasks = tokio::task::JoinSet::new();
    for socket in sockets.udp {
        udp_tasks.spawn(udp::serve(
            socket,
            handler.clone(),
            workers,
            shutdown.clone(),
        ));
    }
    let mut tcp = hickory_server::Server::new(handler::Shared(handler));
    let has_tcp = !sockets.tcp.is_empty();
    for listener in sockets.tcp {
        tcp.register_listener(listener, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    }
    tracing::info!(addrs = ?addrs, "DNS server listening (UDP and TCP)");
    shutdown.cancelled().await;
    if has_tcp {
        if let Err(e) = tcp.shutdown_gracefully().await {
            tracing::warn!(error = %e, "DNS server stopped with an error");
        }
    }
    while udp_tasks.join_next().await.is_some() {}
}
