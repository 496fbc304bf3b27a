//! End-to-end harness: the real `muster` agent (`agent -dev` on free loopback ports), the real
//! `templater` binary, a real nginx (its own `-p` prefix, pid file, logs and temp paths on a
//! free loopback port) and tiny HTTP backends in this process. Every process is killed in
//! `Drop` (and dies with the test process: PR_SET_PDEATHSIG); every wait is bounded; a failure
//! prints the logs of every process.

#![allow(dead_code)] // each test binary uses a different part of the harness

// The workspace's one copy of free ports and die-with-parent children, shared with
// agent/tests/common.
#[path = "../../../agent/tests/common/procs.rs"]
mod procs;
pub use procs::{die_with_parent, free_ports};

// And of the throwaway certificates made with the openssl CLI.
#[path = "../../../agent/tests/common/certs.rs"]
mod certs;
#[allow(unused_imports)] // only tls.rs makes certificates
pub use certs::Pki;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The templater binary cargo built for this test run.
pub const TEMPLATER: &str = env!("CARGO_BIN_EXE_templater");

/// Bound of every "until" wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// The `muster` binary: `MUSTER_BIN`, else next to this test's own target directory
/// (`target/debug/muster`, built by `cargo build --workspace`, `cargo test --workspace` or
/// `cargo nextest run --workspace`).
pub fn muster_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MUSTER_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> → target/debug/muster
    let exe = std::env::current_exe().expect("current_exe");
    let candidates = [
        exe.parent()
            .and_then(Path::parent)
            .map(|d| d.join("muster")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/muster")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "the muster binary was not found next to {} nor in target/debug: build it first with \
         `cargo build -p muster-agent` (cargo test/nextest --workspace builds it), or set MUSTER_BIN",
        exe.display()
    );
}

/// nginx: on PATH or in /usr/sbin (Debian's nginx-light; scripts/test.sh installs it).
pub fn nginx_bin() -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/usr/local/sbin"]) {
        let p = Path::new(dir).join("nginx");
        if p.is_file() {
            return p;
        }
    }
    panic!("nginx not found: install it (`apt-get install nginx-light`; scripts/test.sh does)");
}

/// The repository's root (for the shipped `templates/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// Polls `f` every 50 ms until it returns `Some`, at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP (HTTP/1.0 over a plain socket: no proxy, no pool, nothing hidden)
// ---------------------------------------------------------------------------------------------

/// One request to `127.0.0.1:port`; (status, body).
pub fn http(
    method: &str,
    port: u16,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process with its output in a log file; killed (its whole process group) on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open a process log");
        let err = out.try_clone().expect("clone the log");
        die_with_parent(cmd);
        let child = cmd
            .process_group(0)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// Waits (bounded) for the exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, a grace period, then SIGKILL of the whole group.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            self.kill9();
        }
    }

    /// SIGKILL to the process group, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== {} log ({}) =====\n{}",
                self.name,
                self.log.display(),
                self.output()
            );
        }
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------------

pub struct Agent {
    pub http: u16,
    ports: Vec<u16>,
    dir: PathBuf,
    proc: Option<Proc>,
    runs: usize,
}

impl Agent {
    /// `muster agent -dev` on free ports, ready (a leader).
    pub fn start(dir: &Path) -> Agent {
        let ports = free_ports(5);
        let mut a = Agent {
            http: ports[0],
            ports,
            dir: dir.to_path_buf(),
            proc: None,
            runs: 0,
        };
        a.spawn();
        a
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.http)
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let p = &self.ports;
        let mut cmd = Command::new(muster_bin());
        cmd.args(["agent", "-dev"])
            .args(["-http-port", &p[0].to_string()])
            .args(["-dns-port", &p[1].to_string()])
            .args(["-server-port", &p[2].to_string()])
            .args(["-serf-lan-port", &p[3].to_string()])
            .args(["-serf-wan-port", &p[4].to_string()])
            .env_remove("CONSUL_HTTP_ADDR");
        let log = self.dir.join(format!("agent-run{}.log", self.runs));
        self.proc = Some(Proc::spawn("muster agent", &mut cmd, log));
        let ready = eventually(WAIT, || {
            match http("GET", self.http, "/v1/status/leader", None) {
                Ok((200, body)) if body.trim().len() > 2 => Some(()),
                _ => None,
            }
        });
        if ready.is_none() {
            panic!("the agent did not elect itself within {WAIT:?}");
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Starts it again on the same ports (a dev agent starts empty).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    #[track_caller]
    pub fn put(&self, path: &str, body: &str) {
        let (status, text) = http("PUT", self.http, path, Some(body.as_bytes()))
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
        assert_eq!(status, 200, "PUT {path}: {text}");
    }

    pub fn kv_put(&self, key: &str, value: &str) {
        self.put(&format!("/v1/kv/{key}"), value);
    }

    /// Registers an instance of `web` with a passing TTL check `<id>-ttl`.
    pub fn register_web(&self, id: &str, port: u16) {
        let body = serde_json::json!({
            "ID": id, "Name": "web", "Address": "127.0.0.1", "Port": port,
            "Check": {"CheckID": format!("{id}-ttl"), "TTL": "600s", "Status": "passing"},
        });
        self.put("/v1/agent/service/register", &body.to_string());
    }

    pub fn fail_check(&self, id: &str) {
        self.put(&format!("/v1/agent/check/fail/{id}-ttl"), "");
    }

    pub fn pass_check(&self, id: &str) {
        self.put(&format!("/v1/agent/check/pass/{id}-ttl"), "");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP backends
// ---------------------------------------------------------------------------------------------

/// A tiny HTTP server answering every request with its name.
pub struct Backend {
    pub name: String,
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, n) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let n = n.clone();
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut buf = [0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{n}",
                        n.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                });
            }
        });
        Backend {
            name: name.to_string(),
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

/// Paths of one nginx instance: prefix, rendered config, pid, logs, temp.
pub struct NginxPaths {
    pub prefix: PathBuf,
    pub conf: PathBuf,
    pub pid: PathBuf,
    pub error_log: PathBuf,
    pub port: u16,
}

impl NginxPaths {
    pub fn new(dir: &Path) -> NginxPaths {
        let prefix = dir.join("nginx");
        for sub in ["", "conf", "logs", "temp"] {
            std::fs::create_dir_all(prefix.join(sub)).expect("nginx dirs");
        }
        // nginx's workers (nobody, when the tests run as root) must reach the temp paths.
        for d in [dir, prefix.as_path(), &prefix.join("temp")] {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
        }
        NginxPaths {
            conf: prefix.join("conf/nginx.conf"),
            pid: prefix.join("nginx.pid"),
            error_log: prefix.join("logs/error.log"),
            port: free_ports(1)[0],
            prefix,
        }
    }

    /// The environment the shipped template reads for host paths.
    pub fn template_env(&self) -> Vec<(String, String)> {
        vec![
            ("NGINX_PID".into(), self.pid.display().to_string()),
            (
                "NGINX_ERROR_LOG".into(),
                self.error_log.display().to_string(),
            ),
            (
                "NGINX_ACCESS_LOG".into(),
                self.prefix.join("logs/access.log").display().to_string(),
            ),
            (
                "NGINX_TEMP_DIR".into(),
                self.prefix.join("temp").display().to_string(),
            ),
        ]
    }

    /// A reload that is a no-op until nginx runs (its pid file exists).
    pub fn reload_cmd(&self) -> String {
        format!(
            "test ! -s {pid} || {nginx} -p {prefix}/ -c {conf} -s reload",
            pid = self.pid.display(),
            nginx = nginx_bin().display(),
            prefix = self.prefix.display(),
            conf = self.conf.display()
        )
    }

    pub fn check_cmd(&self) -> String {
        format!("{} -t -c {{{{src}}}}", nginx_bin().display())
    }

    pub fn conf_text(&self) -> String {
        std::fs::read_to_string(&self.conf).unwrap_or_default()
    }

    /// How many times nginx logged a reconfiguration (a reload it acted on).
    pub fn reloads(&self) -> usize {
        std::fs::read_to_string(&self.error_log)
            .unwrap_or_default()
            .matches("reconfiguring")
            .count()
    }
}

/// nginx in the foreground (`daemon off`) on the rendered config.
pub fn start_nginx(paths: &NginxPaths, dir: &Path) -> Proc {
    let mut cmd = Command::new(nginx_bin());
    cmd.arg("-p")
        .arg(format!("{}/", paths.prefix.display()))
        .arg("-c")
        .arg(&paths.conf)
        .args(["-g", "daemon off;"]);
    let mut p = Proc::spawn("nginx", &mut cmd, dir.join("nginx.log"));
    let up = eventually(WAIT, || {
        if !p.running() {
            return Some(false);
        }
        http("GET", paths.port, "/", None).ok().map(|_| true)
    });
    assert_eq!(up, Some(true), "nginx did not start: {}", p.output());
    p
}

/// `n` requests through nginx; the bodies (backend names) seen, sorted and deduplicated.
pub fn traffic(port: u16, n: usize) -> Vec<String> {
    let mut seen: Vec<String> = (0..n)
        .map(|_| match http("GET", port, "/", None) {
            Ok((200, body)) => body,
            Ok((status, _)) => format!("status {status}"),
            Err(e) => format!("error {e}"),
        })
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

// ---------------------------------------------------------------------------------------------
// templater
// ---------------------------------------------------------------------------------------------

/// A confdir with `conf.d/` and `templates/`.
pub struct Confdir {
    pub path: PathBuf,
}

impl Confdir {
    pub fn new(dir: &Path) -> Confdir {
        let path = dir.join("confdir");
        std::fs::create_dir_all(path.join("conf.d")).unwrap();
        std::fs::create_dir_all(path.join("templates")).unwrap();
        Confdir { path }
    }

    pub fn resource(&self, name: &str, toml: &str) {
        std::fs::write(self.path.join("conf.d").join(name), toml).unwrap();
    }

    pub fn template(&self, name: &str, text: &str) {
        std::fs::write(self.path.join("templates").join(name), text).unwrap();
    }

    /// Copies a template shipped in the repository's `templates/`.
    pub fn shipped_template(&self, name: &str) {
        let text = std::fs::read_to_string(repo_root().join("templates").join(name))
            .unwrap_or_else(|e| panic!("templates/{name}: {e}"));
        self.template(name, &text);
    }
}

/// `templater ARGS` as a daemon.
pub fn spawn_templater(args: &[String], env: &[(String, String)], log: PathBuf) -> Proc {
    let mut cmd = Command::new(TEMPLATER);
    cmd.args(args)
        .env("TEMPLATER_LOG", "templater=debug")
        .env_remove("CONSUL_HTTP_ADDR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn("templater", &mut cmd, log)
}

/// `templater ARGS` to completion (bounded): (exit code, output).
pub fn run_templater(
    args: &[String],
    env: &[(String, String)],
    log: PathBuf,
) -> (Option<i32>, String) {
    let _ = std::fs::remove_file(&log);
    let mut p = spawn_templater(args, env, log);
    let status = p.wait_exit(WAIT);
    let out = p.output();
    assert!(
        status.is_some(),
        "templater -onetime did not exit within {WAIT:?}:\n{out}"
    );
    (status.and_then(|s| s.code()), out)
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
