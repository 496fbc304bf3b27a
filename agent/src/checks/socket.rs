//! TCP and UDP checks (Consul's `CheckTCP` and `CheckUDP`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::net::{io_error_text, parse_port, resolve, split_host_port};
use super::HealthStatus;

/// Consul's TCP check: passing with `TCP connect <address>: Success` when a connection is
/// established within `timeout`, else critical with the dial error.
pub(super) async fn check_tcp(address: &str, timeout: Duration) -> (HealthStatus, String) {
    match tokio::time::timeout(timeout, super::net::dial_tcp_address(address)).await {
        Ok(Ok(stream)) => {
            drop(stream);
            (
                HealthStatus::Passing,
                format!("TCP connect {address}: Success"),
            )
        }
        Ok(Err(e)) => (HealthStatus::Critical, e),
        Err(_) => (
            HealthStatus::Critical,
            format!("dial tcp {address}: i/o timeout"),
        ),
    }
}

/// Consul's UDP check: sends a datagram (Consul's message is empty) and waits up to
/// `timeout` for one byte back. A reply or silence until the timeout is passing
/// (`UDP connect <address>: Success`: UDP cannot tell "up" from "quiet"); an error from the
/// socket — typically "connection refused" from an ICMP port unreachable — is critical.
pub(super) async fn check_udp(address: &str, timeout: Duration) -> (HealthStatus, String) {
    let success = || {
        (
            HealthStatus::Passing,
            format!("UDP connect {address}: Success"),
        )
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let socket = match tokio::time::timeout_at(deadline, dial_udp(address)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return (HealthStatus::Critical, e),
        // Consul treats a dial timeout as success too.
        Err(_) => return success(),
    };
    let (local, remote) = match (socket.local_addr(), socket.peer_addr()) {
        (Ok(l), Ok(r)) => (l.to_string(), r.to_string()),
        _ => (String::from("?"), address.to_string()),
    };
    if let Err(e) = socket.send(&[]).await {
        return (
            HealthStatus::Critical,
            format!("write udp {local}->{remote}: write: {}", io_error_text(&e)),
        );
    }
    let mut byte = [0u8; 1];
    match tokio::time::timeout_at(deadline, socket.recv(&mut byte)).await {
        Ok(Ok(_)) | Err(_) => success(),
        Ok(Err(e)) => (
            HealthStatus::Critical,
            format!("read udp {local}->{remote}: read: {}", io_error_text(&e)),
        ),
    }
}

/// A UDP socket connected to `address` (Go's `Dial("udp", ...)`).
async fn dial_udp(address: &str) -> Result<UdpSocket, String> {
    let (host, port) = split_host_port(address).map_err(|e| format!("dial udp: {e}"))?;
    let port = parse_port(port).map_err(|e| format!("dial udp: {e}"))?;
    let addrs = resolve(host, port)
        .await
        .map_err(|e| format!("dial udp: {e}"))?;
    let mut first_error = None;
    for addr in addrs {
        let bind: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let attempt = async {
            let socket = UdpSocket::bind(bind).await?;
            socket.connect(addr).await?;
            Ok::<_, std::io::Error>(socket)
        };
        match attempt.await {
            Ok(socket) => return Ok(socket),
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    format!("dial udp {addr}: connect: {}", io_error_text(&e))
                });
            }
        }
    }
    Err(first_error.unwrap_or_else(|| format!("dial udp {address}: no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP port nobody is bound to (bound, then released).
    fn free_udp_port() -> u16 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn tcp_open_then_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (status, output) = check_tcp(&address, Duration::from_secs(1)).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(output, format!("TCP connect {address}: Success"));

        drop(listener);
        let (status, output) = check_tcp(&address, Duration::from_secs(1)).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            format!("dial tcp {address}: connect: connection refused")
        );
    }

    #[tokio::test]
    async fn tcp_bad_address() {
        let (status, output) = check_tcp("localhost", Duration::from_secs(1)).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            "dial tcp: address localhost: missing port in address"
        );
    }

    #[tokio::test]
    async fn udp_reply_silence_and_refusal() {
        // A server that answers each datagram.
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = server.local_addr().unwrap().to_string();
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            if let Ok((_, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(b"pong", from).await;
            }
            server
        });
        let (status, output) = check_udp(&address, Duration::from_secs(2)).await;
        assert_eq!(status, HealthStatus::Passing);
        assert_eq!(output, format!("UDP connect {address}: Success"));

        // The same socket, now silent: passing once the timeout passes.
        let server = echo.await.unwrap();
        let started = std::time::Instant::now();
        let (status, _) = check_udp(&address, Duration::from_millis(200)).await;
        assert_eq!(status, HealthStatus::Passing);
        assert!(started.elapsed() >= Duration::from_millis(150));
        drop(server);

        // Nobody bound: the kernel's port-unreachable comes back as "connection refused".
        let address = format!("127.0.0.1:{}", free_udp_port());
        let (status, output) = check_udp(&address, Duration::from_secs(2)).await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(
            output.ends_with(": read: connection refused"),
            "unexpected output {output:?}"
        );
    }
}
