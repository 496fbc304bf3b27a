//! What every end-to-end harness of the workspace needs from the OS, std only so that
//! `templater/tests/common` shares this very file (`#[path]`): free loopback ports, and child
//! processes that die with the test process.

use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::Mutex;

/// Ports handed out by this process, so two processes of one test binary never get the same one.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// `n` distinct ports free for both TCP and UDP on 127.0.0.1 (bind port 0, check UDP too).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        if ports.len() == n {
            break;
        }
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a TCP socket on 127.0.0.1:0");
        let port = tcp.local_addr().expect("local_addr").port();
        if handed.contains(&port) {
            continue;
        }
        let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        held.push((tcp, udp));
        handed.push(port);
        ports.push(port);
    }
    assert_eq!(ports.len(), n, "could not find {n} free ports");
    ports
}

/// Makes `cmd`'s child get SIGKILL when the test process dies without running `Drop` (a
/// runner's timeout, ^C), instead of lingering on its ports.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs between fork and exec and only makes the prctl(2) syscall,
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        })
    }
}
