//! Health-check runners: HTTP, TCP, UDP, script, gRPC and TTL, with Consul's semantics and
//! output formats (Consul's `agent/checks/check.go` and `grpc.go`).
//!
//! This module owns running a check and turning each run into a `(status, output)` pair after
//! Consul's success/failure thresholds; it reports through a [`Report`] callback and knows
//! nothing about HTTP routes, Raft or the catalog (the agent's local state calls it).
//!
//! * [`spawn`] starts one interval check's loop; [`TtlTimer`] is a TTL check's dead-man timer.
//! * Every loop is started with a cancellation token from outside and stops when it fires:
//!   no task, connection or process outlives it (a running script's process group is killed).
//! * Nothing a remote server or a script sends can make the agent allocate without bound:
//!   outputs are capped at [`OUTPUT_MAX`] bytes and bodies are not read past that.
//! * Built for many checks per agent: an idle check is one small task (a timer); the state a
//!   run needs (connection, TLS session, buffers) exists only while it runs. TLS client
//!   configurations are built once per process and shared; HTTP connections are not kept
//!   alive between runs (as Consul), so 10,000 targets never hold 10,000 idle sockets.

mod grpc;
mod http;
mod net;
mod script;
mod socket;
mod status;
mod ttl;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use muster_api::HealthStatus;
use rand::Rng;
use tokio_util::sync::CancellationToken;

pub use status::StatusHandler;
pub use ttl::TtlTimer;

/// How a check reports: called with each new (status, output) after thresholds are applied.
///
/// It is called after every run whose result passes the thresholds, also when the status is
/// the same as last time (the output may have changed), as Consul's `UpdateCheck` is. It runs
/// on the check's task: it should return quickly (record, or hand off to a channel).
pub type Report = Arc<dyn Fn(HealthStatus, String) + Send + Sync>;

/// Most bytes of check output kept (Consul's `DefaultBufSize`, 4 KiB).
pub const OUTPUT_MAX: usize = 4 * 1024;

/// Consul's `MinInterval`: the interval used when a spec's interval is zero. The caller
/// applies Consul's rule of raising any interval below it (with a warning); this module
/// only refuses to spin.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Timeout of a network check whose spec says zero (Consul's default for HTTP/TCP/UDP/gRPC).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout of a script check whose spec says zero (Consul's script default).
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a check does on each run.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// An HTTP(S) request: 2xx passing, 429 warning, anything else (or an error) critical.
    Http {
        /// The URL requested (`http://` or `https://`).
        url: String,
        /// The request method; empty means `GET`.
        method: String,
        /// Request headers; a `Host` header sets the request's host.
        header: BTreeMap<String, Vec<String>>,
        /// The request body (empty: none).
        body: String,
        /// Accept any server certificate.
        tls_skip_verify: bool,
        /// The name sent as SNI and verified in the certificate (empty: the URL's host).
        tls_server_name: String,
        /// Report a 3xx as it is instead of following it.
        disable_redirects: bool,
    },
    /// A TCP connect: passing when it connects.
    Tcp {
        /// `host:port` (`[::1]:80` for IPv6).
        address: String,
    },
    /// A UDP datagram: passing unless the send or a read reports an error.
    Udp {
        /// `host:port` (`[::1]:53` for IPv6).
        address: String,
    },
    /// A command exec'd directly (no shell): exit 0 passing, 1 warning, else critical.
    Script {
        /// The program and its arguments; the program is looked up in `PATH`.
        args: Vec<String>,
    },
    /// A `grpc.health.v1.Health/Check` call: SERVING passing, anything else critical.
    Grpc {
        /// `host:port`, or `host:port/service` to ask about one service.
        target: String,
        /// Speak TLS (ALPN `h2`) instead of plaintext HTTP/2.
        use_tls: bool,
        /// Accept any server certificate.
        tls_skip_verify: bool,
    },
}

/// One interval check: what to run, how often, and Consul's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// What to run.
    pub kind: CheckKind,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// Longest one run may take; Consul's default 10s is applied by the caller (zero here
    /// means Consul's per-kind default: 30s for scripts, 10s otherwise).
    pub timeout: Duration,
    /// Consecutive passing/warning results needed before they are reported.
    pub success_before_passing: u32,
    /// Consecutive critical results after which warning is reported. The caller applies
    /// Consul's default (the value of `failures_before_critical` when unset).
    pub failures_before_warning: u32,
    /// Consecutive critical results needed before critical is reported.
    pub failures_before_critical: u32,
}

/// Starts the check's loop: first run after a random stagger in [0, interval) (so 10,000 checks
/// registered together do not fire together), then every `interval`. Stops when `cancel` fires
/// (kill any running script's process group then) — must not leak tasks or processes.
///
/// Must be called inside a tokio runtime. Aborting the returned handle also stops the check
/// (a running script's group is killed; tokio reaps the child in the background).
pub fn spawn(
    spec: CheckSpec,
    report: Report,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run_loop(spec, report, cancel))
}

/// The body of [`spawn`]'s task.
async fn run_loop(spec: CheckSpec, report: Report, cancel: CancellationToken) {
    let interval = if spec.interval.is_zero() {
        MIN_INTERVAL
    } else {
        spec.interval
    };
    let timeout = effective_timeout(&spec.kind, spec.timeout);
    let mut handler = StatusHandler::new(
        spec.success_before_passing,
        spec.failures_before_warning,
        spec.failures_before_critical,
    );
    let mut wait = random_stagger(interval);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        // Boxed so that an idle check's task holds only this loop's few words, not the
        // largest run future (a script's or a handshake's state) inline.
        let run = Box::pin(run_once(&spec.kind, timeout, &cancel));
        let Some((status, output)) = run.await else {
            return; // cancelled mid-run
        };
        if let Some((status, output)) = handler.update(status, output) {
            report(status, output);
        }
        wait = interval;
    }
}

/// The timeout one run of `kind` gets: `timeout`, or Consul's default for the kind when zero.
fn effective_timeout(kind: &CheckKind, timeout: Duration) -> Duration {
    match (kind, timeout.is_zero()) {
        (_, false) => timeout,
        (CheckKind::Script { .. }, true) => DEFAULT_SCRIPT_TIMEOUT,
        (_, true) => DEFAULT_TIMEOUT,
    }
}

/// Runs `kind` once within `timeout`; `None` when `cancel` fired first (nothing to report).
async fn run_once(
    kind: &CheckKind,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Option<(HealthStatus, String)> {
    type Run<'a> = Pin<Box<dyn Future<Output = (HealthStatus, String)> + Send + 'a>>;
    let run: Run<'_> = match kind {
        // A script watches `cancel` itself so that a cancelled run kills and reaps its
        // process group before the loop returns.
        CheckKind::Script { args } => return script::check(args, timeout, cancel).await,
        CheckKind::Http {
            url,
            method,
            header,
            body,
            tls_skip_verify,
            tls_server_name,
            disable_redirects,
        } => Box::pin(http::check(
            http::HttpCheck {
                url,
                method,
                header,
                body,
                tls_skip_verify: *tls_skip_verify,
                tls_server_name,
                disable_redirects: *disable_redirects,
            },
            timeout,
        )),
        CheckKind::Tcp { address } => Box::pin(socket::check_tcp(address, timeout)),
        CheckKind::Udp { address } => Box::pin(socket::check_udp(address, timeout)),
        CheckKind::Grpc {
            target,
            use_tls,
            tls_skip_verify,
        } => Box::pin(grpc::check(target, *use_tls, *tls_skip_verify, timeout)),
    };
    // Dropping a network run closes its socket and stops its connection task.
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        result = run => Some(result),
    }
}

/// Consul's `lib.RandomStagger`: a random duration in [0, interval).
fn random_stagger(interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..nanos))
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_str(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `s` cut to [`OUTPUT_MAX`] bytes: for error texts that quote what a server sent.
fn capped(mut s: String) -> String {
    truncate_str(&mut s, OUTPUT_MAX);
    s
}

/// One HTTP(S) request with an HTTP check's machinery, for other parts of the agent (a watch's
/// `http` handler): `(2xx?, "HTTP <METHOD> <url>: <status> Output: <body>")`, or the error
/// text when no answer came within `timeout`.
pub(crate) async fn http_request(
    url: &str,
    method: &str,
    header: &std::collections::BTreeMap<String, Vec<String>>,
    body: &str,
    tls_skip_verify: bool,
    timeout: Duration,
) -> (bool, String) {
    let c = http::HttpCheck {
        url,
        method,
        header,
        body,
        tls_skip_verify,
        tls_server_name: "",
        disable_redirects: false,
    };
    let (status, output) = http::check(c, timeout).await;
    (status == HealthStatus::Passing, output)
}

#[cfg(test)]
mod test_support {
    //! Helpers shared by the runners' tests.

    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;

    /// A [`Report`] that forwards every report to a channel the test reads.
    pub fn channel_report() -> (Report, mpsc::UnboundedReceiver<(HealthStatus, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let tx = Mutex::new(tx);
        let report: Report = Arc::new(move |status, output| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send((status, output));
            }
        });
        (report, rx)
    }

    /// A spec for `kind` with short timings and no thresholds.
    pub fn spec(kind: CheckKind, interval_ms: u64, timeout_ms: u64) -> CheckSpec {
        CheckSpec {
            kind,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
        }
    }

    /// A TLS acceptor with the self-signed `localhost` certificate in `testdata/`, offering
    /// `alpn`.
    pub fn tls_acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert =
            CertificateDer::from_pem_slice(include_bytes!("testdata/localhost-cert.pem")).unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("testdata/localhost-key.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// Waits (at most 5 s) for the next report.
    pub async fn next(
        rx: &mut mpsc::UnboundedReceiver<(HealthStatus, String)>,
    ) -> (HealthStatus, String) {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("report channel closed"),
            Err(_) => panic!("no report within 5s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn stagger_is_below_interval() {
        for _ in 0..1000 {
            assert!(random_stagger(Duration::from_millis(10)) < Duration::from_millis(10));
        }
        assert_eq!(random_stagger(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn zero_timeout_takes_consuls_default() {
        let script = CheckKind::Script { args: vec![] };
        let tcp = CheckKind::Tcp {
            address: String::new(),
        };
        assert_eq!(
            effective_timeout(&script, Duration::ZERO),
            Duration::from_secs(30)
        );
        assert_eq!(
            effective_timeout(&tcp, Duration::ZERO),
            Duration::from_secs(10)
        );
        assert_eq!(
            effective_timeout(&tcp, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn truncates_on_char_boundary() {
        let mut s = "aé".to_string(); // 'é' is 2 bytes
        truncate_str(&mut s, 2);
        assert_eq!(s, "a");
    }

    #[tokio::test]
    async fn loop_reports_every_interval_and_stops_on_cancel() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (report, mut rx) = channel_report();
        let cancel = CancellationToken::new();
        let handle = spawn(
            spec(CheckKind::Tcp { address }, 20, 500),
            report,
            cancel.clone(),
        );
        for _ in 0..3 {
            assert_eq!(next(&mut rx).await.0, HealthStatus::Passing);
        }
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(2), handle)
            .await
            .expect("loop stops on cancel")
            .unwrap();
    }

    /// A script check whose script starts a background `sleep` (its pid written to a file)
    /// and hangs; returns the spawned loop and where the pid will appear.
    fn hanging_script(
        dir: &std::path::Path,
        cancel: &CancellationToken,
    ) -> (tokio::task::JoinHandle<()>, std::path::PathBuf) {
        let pidfile = dir.join("pid");
        let script = format!(
            "sleep 1000 & echo $! > {p}.tmp; mv {p}.tmp {p}; sleep 1000",
            p = pidfile.display()
        );
        let kind = CheckKind::Script {
            args: vec!["sh".into(), "-c".into(), script],
        };
        let (report, _rx) = channel_report();
        let handle = spawn(spec(kind, 10, 60_000), report, cancel.clone());
        (handle, pidfile)
    }

    /// Waits up to 2 s for the pid in `pidfile`.
    async fn read_pid(pidfile: &std::path::Path) -> i32 {
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(pidfile) {
                if let Ok(pid) = text.trim().parse() {
                    return pid;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("script never wrote its pid");
    }

    /// Whether `pid` is gone (or a zombie) within 2 s.
    async fn gone(pid: i32) -> bool {
        for _ in 0..200 {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| !rest.starts_with('Z'))
                });
            if !alive {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn cancel_stops_a_running_script_and_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let (handle, pidfile) = hanging_script(dir.path(), &cancel);
        let pid = read_pid(&pidfile).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(2), handle)
            .await
            .expect("loop stops on cancel")
            .unwrap();
        assert!(gone(pid).await, "background process {pid} survived cancel");
    }

    #[tokio::test]
    async fn abort_kills_the_script_group_too() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let (handle, pidfile) = hanging_script(dir.path(), &cancel);
        let pid = read_pid(&pidfile).await;
        handle.abort();
        let _ = handle.await;
        assert!(gone(pid).await, "background process {pid} survived abort");
    }

    #[tokio::test]
    async fn thresholds_apply_between_runs_and_reports() {
        // A TCP target that is up, then down. failures_before_warning = 2 and
        // failures_before_critical = 3: after a pass, the first failure is not reported, the
        // second is reported as warning, the third as critical.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (report, mut rx) = channel_report();
        let cancel = CancellationToken::new();
        let mut s = spec(CheckKind::Tcp { address }, 20, 500);
        s.failures_before_warning = 2;
        s.failures_before_critical = 3;
        let handle = spawn(s, report, cancel.clone());
        assert_eq!(next(&mut rx).await.0, HealthStatus::Passing);
        drop(listener);
        // Skip passes that raced with the close.
        let (status, output) = loop {
            let r = next(&mut rx).await;
            if r.0 != HealthStatus::Passing {
                break r;
            }
        };
        assert_eq!(status, HealthStatus::Warning);
        assert!(output.ends_with("connection refused"), "{output}");
        assert_eq!(next(&mut rx).await.0, HealthStatus::Critical);
        assert_eq!(next(&mut rx).await.0, HealthStatus::Critical);
        cancel.cancel();
        handle.await.unwrap();
    }
}
