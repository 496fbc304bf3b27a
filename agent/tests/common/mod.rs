//! The end-to-end harness: spawns the real `muster` binary on free loopback ports, talks to it
//! over HTTP, runs its CLI, and on a failing test prints everything needed to see why (command
//! line, data dir, ports, stdout and stderr of every run), in the style of ripgrep's harness.
//!
//! It knows nothing of the agent's code: only the binary, its flags and its HTTP API.
//! Every wait is bounded so a hung agent fails a test instead of hanging the suite; nothing
//! here asserts on how fast something happened.

#![allow(dead_code)] // each test binary uses a different part of the harness

mod certs;
mod procs;
#[allow(unused_imports)] // only the TLS tests make certificates
pub use certs::Pki;
pub use procs::{die_with_parent, free_ports};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

/// The binary under test, built by cargo for this test run.
pub const MUSTER: &str = env!("CARGO_BIN_EXE_muster");

/// How long an agent may take to elect itself leader after being started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for one HTTP request that is not a blocking query.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one CLI invocation.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM or a leave before it is killed.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// The listener ports of one agent.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub dns: u16,
    pub server: u16,
    pub serf_lan: u16,
    pub serf_wan: u16,
}

impl Ports {
    /// Five distinct ports that are free for TCP and UDP on 127.0.0.1 right now.
    pub fn free() -> Ports {
        let p = free_ports(5);
        Ports {
            http: p[0],
            dns: p[1],
            server: p[2],
            serf_lan: p[3],
            serf_wan: p[4],
        }
    }

    /// Consul's flags for these ports.
    pub fn args(&self) -> Vec<String> {
        vec![
            "-http-port".into(),
            self.http.to_string(),
            "-dns-port".into(),
            self.dns.to_string(),
            "-server-port".into(),
            self.server.to_string(),
            "-serf-lan-port".into(),
            self.serf_lan.to_string(),
            "-serf-wan-port".into(),
            self.serf_wan.to_string(),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// One HTTP answer, read in full.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// How long the request took (for telling a woken blocking query from a timed-out one).
    pub elapsed: Duration,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// `X-Consul-Index`, which must be present and a number.
    pub fn index(&self) -> u64 {
        let raw = self.header("X-Consul-Index").unwrap_or_else(|| {
            panic!(
                "no X-Consul-Index header: status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                self.text()
            )
        });
        raw.parse()
            .unwrap_or_else(|e| panic!("X-Consul-Index {raw:?} is not a number: {e}"))
    }

    /// Panics with the whole answer unless the status is `want`.
    #[track_caller]
    pub fn expect_status(&self, want: u16) -> &Self {
        assert_eq!(
            self.status,
            want,
            "unexpected status; body {:?}, headers {:?}",
            self.text(),
            self.headers
        );
        self
    }
}

/// Decodes a KV `Value` field (base64 string or null).
pub fn b64(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_else(|e| panic!("Value {s:?} is not base64: {e}")),
        ),
        other => panic!("Value is neither a string nor null: {other}"),
    }
}

/// An HTTP client for loopback: no proxy, bounded.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build HTTP client")
}

/// An HTTPS client for loopback that trusts the CA in `ca_file` (PEM) only, built as the CLI
/// builds its own (muster-api's TLS settings); no proxy, bounded.
pub fn https_client(ca_file: &str) -> reqwest::Client {
    let tls = muster_api::TlsConfig {
        ca_file: Some(ca_file.into()),
        ..Default::default()
    }
    .rustls_config()
    .unwrap_or_else(|e| panic!("TLS client configuration with CA {ca_file}: {e}"));
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .use_preconfigured_tls(tls)
        .build()
        .expect("build HTTPS client")
}

/// Sends one request and reads the whole answer. `timeout` bounds the request (blocking queries
/// pass their wait plus a margin).
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Resp, String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = client.request(method.clone(), url).timeout(timeout);
    if let Some(b) = body {
        req = req.body(b);
    }
    let started = Instant::now();
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{method} {url}: reading body: {e:?}"))?
        .to_vec();
    Ok(Resp {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------------------------
// Running the binary once (CLI, config errors)
// ---------------------------------------------------------------------------------------------

/// What one run of the binary produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub stdout: String,
    pub stderr: String,
    /// `None` when killed by a signal (or by the harness after the timeout).
    pub code: Option<i32>,
    pub timed_out: bool,
}

impl Output {
    /// Panics with the whole output unless the exit code is `want`.
    #[track_caller]
    pub fn expect_code(&self, want: i32) -> &Self {
        assert!(
            !self.timed_out && self.code == Some(want),
            "expected exit code {want}\n{}",
            self
        );
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit: {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmdline,
            self.code,
            if self.timed_out {
                " (timed out, killed)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn cmdline(args: &[String]) -> String {
    std::iter::once(MUSTER.to_string())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `muster` command with a clean environment for talking to loopback.
fn base_command(args: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(MUSTER);
    cmd.args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_SSL")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .kill_on_drop(true);
    cmd
}

/// Runs `muster ARGS` with `stdin`, bounded by `timeout`; a run that outlives it is killed.
pub async fn run_muster(args: &[String], stdin: Option<&[u8]>, timeout: Duration) -> Output {
    run_muster_with(args, stdin, timeout, None, &[]).await
}

/// As [`run_muster`], in directory `dir` and with extra environment variables `envs`.
pub async fn run_muster_with(
    args: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
    dir: Option<&Path>,
    envs: &[(&str, &str)],
) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = base_command(args);
    cmd.envs(envs.iter().copied());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", cmdline(args)));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
            let _ = pipe.shutdown().await;
        });
    }
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Output {
            cmdline: cmdline(args),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
            timed_out: false,
        },
        Ok(Err(e)) => panic!("waiting for {}: {e}", cmdline(args)),
        Err(_) => {
            // kill_on_drop has killed it; make sure with the pid too.
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Output {
                cmdline: cmdline(args),
                stdout: String::new(),
                stderr: String::new(),
                code: None,
                timed_out: true,
            }
        }
    }
}

/// Commands that take a subcommand (`muster kv put ...`): the harness puts `-http-addr` after it.
const NOUNS: &[&str] = &[
    "kv",
    "catalog",
    "services",
    "acl",
    "operator",
    "config",
    "snapshot",
    "keyring",
    "intention",
    "connect",
    "peering",
    "resource",
    "tls",
];

/// Where `-http-addr` goes in `args`: after the command words (`kv put`, `members`).
fn command_words(args: &[&str]) -> usize {
    match args.first() {
        Some(first) if NOUNS.contains(first) && args.len() > 1 && !args[1].starts_with('-') => 2,
        Some(_) => 1,
        None => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// A running agent
// ---------------------------------------------------------------------------------------------

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    mode: Mode,
    extra: Vec<String>,
    config_files: Vec<(String, String)>,
    ports_in_config: bool,
    /// `-bind` and `-client` (default 127.0.0.1).
    ip: std::net::IpAddr,
    /// Serve HTTPS too (or only), and talk to the agent over it.
    https: Option<Https>,
}

/// An agent the harness talks to over HTTPS.
#[derive(Debug, Clone)]
struct Https {
    /// The CA (PEM) the harness's client and the CLI (`-ca-file`) trust.
    ca_file: String,
    /// `-http-port -1`: HTTPS only.
    only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `agent -dev`
    Dev,
    /// `agent -server -bootstrap -data-dir DIR -bind 127.0.0.1`
    Server,
    /// `agent -server -data-dir DIR` (a member of a cluster formed by `-bootstrap-expect`)
    ClusterServer,
    /// `agent -data-dir DIR` (a client agent)
    Client,
}

impl AgentBuilder {
    /// `muster agent -dev` on free ports.
    pub fn dev() -> Self {
        AgentBuilder {
            mode: Mode::Dev,
            extra: Vec::new(),
            config_files: Vec::new(),
            ports_in_config: false,
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
            https: None,
        }
    }

    /// `muster agent -server -data-dir DIR` bound to `ip` (HTTP too), without `-bootstrap`:
    /// give it `-bootstrap-expect` and `-retry-join`. [`AgentBuilder::start`] returns once its
    /// HTTP API answers (a leader needs the other servers).
    pub fn cluster_server(ip: std::net::IpAddr) -> Self {
        AgentBuilder {
            mode: Mode::ClusterServer,
            ip,
            ..AgentBuilder::dev()
        }
    }

    /// `muster agent -data-dir DIR` (a client agent) bound to `ip` (HTTP too); started like
    /// [`AgentBuilder::cluster_server`].
    pub fn client(ip: std::net::IpAddr) -> Self {
        AgentBuilder {
            mode: Mode::Client,
            ip,
            ..AgentBuilder::dev()
        }
    }

    /// `muster agent -server -bootstrap -data-dir DIR` (a temp dir kept across restarts), bound to
    /// 127.0.0.1, on free ports.
    pub fn server() -> Self {
        AgentBuilder {
            mode: Mode::Server,
            ..AgentBuilder::dev()
        }
    }

    /// Adds flags after the harness's own.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// Writes a config file named `name` in the agent's work dir and passes `-config-file`.
    pub fn config_file(mut self, name: &str, contents: &str) -> Self {
        self.config_files.push((name.into(), contents.into()));
        self
    }

    /// Serves HTTPS too, on a free port (`-https-port`; the certificate comes from a config file
    /// or `-hcl`), and talks to the agent over it: requests, the readiness check and the CLI
    /// (`-http-addr https://...`, `-ca-file`) trust only the CA in `ca_file`.
    pub fn https(mut self, ca_file: &str) -> Self {
        self.https = Some(Https {
            ca_file: ca_file.into(),
            only: false,
        });
        self
    }

    /// As [`AgentBuilder::https`], with plain HTTP off (`ports.http = -1`).
    pub fn https_only(mut self, ca_file: &str) -> Self {
        self.https = Some(Https {
            ca_file: ca_file.into(),
            only: true,
        });
        self
    }

    /// Gives the ports in a config file (`ports { http = .. }`) instead of flags.
    pub fn ports_in_config_file(mut self) -> Self {
        self.ports_in_config = true;
        self
    }

    /// Starts the agent and waits until it has a leader.
    pub async fn start(self) -> Agent {
        let workdir = tempfile::Builder::new()
            .prefix("muster-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let mut agent = Agent {
            builder: self.clone(),
            ports: Ports::free(),
            https_port: self.https.as_ref().map(|_| free_ports(1)[0]),
            workdir: Some(workdir),
            child: None,
            runs: Vec::new(),
            client: match &self.https {
                Some(h) => https_client(&h.ca_file),
                None => http_client(),
            },
            keep_workdir: false,
        };
        for (name, contents) in &self.config_files {
            std::fs::write(agent.dir().join(name), contents).expect("write a config file");
        }
        if let Some(dir) = agent.data_dir() {
            std::fs::create_dir_all(dir).expect("mkdir data");
        }
        // A port can be taken between choosing and binding it: then choose again.
        for attempt in 1..=5 {
            agent.spawn();
            match agent.wait_ready().await {
                Ok(()) => return agent,
                Err(e) if attempt < 5 && agent.last_run_says_port_in_use() => {
                    eprintln!("harness: attempt {attempt}: {e}; choosing other ports");
                    agent.kill9();
                    agent.ports = Ports::free();
                    if agent.https_port.is_some() {
                        agent.https_port = Some(free_ports(1)[0]);
                    }
                }
                Err(e) => agent.fail(&format!("agent did not start: {e}")),
            }
        }
        unreachable!()
    }
}

/// One run (start) of the agent process, for the failure report.
#[derive(Debug)]
struct Run {
    cmdline: String,
    stdout: PathBuf,
    stderr: PathBuf,
    exit: Option<ExitStatus>,
}

/// A running `muster agent`. Killed (SIGKILL) on drop; when the test is failing, prints the
/// command lines, the data dir and the output of every run, and keeps the work dir.
pub struct Agent {
    builder: AgentBuilder,
    pub ports: Ports,
    /// `-https-port` (built with [`AgentBuilder::https`]).
    pub https_port: Option<u16>,
    workdir: Option<tempfile::TempDir>,
    child: Option<Child>,
    runs: Vec<Run>,
    client: reqwest::Client,
    keep_workdir: bool,
}

impl Agent {
    /// `muster agent -dev` on free ports, with a leader.
    pub async fn dev() -> Agent {
        AgentBuilder::dev().start().await
    }

    /// The work dir: config files, logs, and (server mode) the data dir.
    pub fn dir(&self) -> &Path {
        self.workdir.as_ref().expect("work dir").path()
    }

    /// `-data-dir` in server mode.
    pub fn data_dir(&self) -> Option<PathBuf> {
        (self.builder.mode != Mode::Dev).then(|| self.dir().join("data"))
    }

    /// The full argument list (after the binary).
    pub fn agent_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["agent".into()];
        match self.builder.mode {
            Mode::Dev => args.push("-dev".into()),
            Mode::Server => {
                let data = self.data_dir().expect("data dir");
                args.extend([
                    "-server".into(),
                    "-bootstrap".into(),
                    "-data-dir".into(),
                    data.display().to_string(),
                    "-bind".into(),
                    "127.0.0.1".into(),
                    "-client".into(),
                    "127.0.0.1".into(),
                ]);
            }
            Mode::ClusterServer | Mode::Client => {
                let data = self.data_dir().expect("data dir");
                if self.builder.mode == Mode::ClusterServer {
                    args.push("-server".into());
                }
                let ip = self.builder.ip.to_string();
                args.extend([
                    "-data-dir".into(),
                    data.display().to_string(),
                    "-bind".into(),
                    ip.clone(),
                    "-client".into(),
                    ip,
                ]);
            }
        }
        if self.builder.ports_in_config {
            args.push("-config-file".into());
            args.push(self.dir().join("ports.json").display().to_string());
        } else {
            let mut ports = self.ports.args();
            if self.builder.https.as_ref().is_some_and(|h| h.only) {
                // `-http-port -1`, in place of the harness's HTTP port.
                if let Some(i) = ports.iter().position(|a| a == "-http-port") {
                    ports[i + 1] = "-1".into();
                }
            }
            args.extend(ports);
            if let Some(p) = self.https_port {
                args.extend(["-https-port".into(), p.to_string()]);
            }
        }
        for (name, _) in &self.builder.config_files {
            args.push("-config-file".into());
            args.push(self.dir().join(name).display().to_string());
        }
        args.extend(self.builder.extra.iter().cloned());
        args
    }

    /// `http://IP:PORT` (IP 127.0.0.1 unless built with another); `https://IP:HTTPS_PORT` for
    /// an agent built with [`AgentBuilder::https`].
    pub fn base_url(&self) -> String {
        match self.https_port {
            Some(_) => self.http_addr(),
            None => format!("http://{}", self.http_addr()),
        }
    }

    /// `IP:PORT`, as `-http-addr` takes it (`https://IP:HTTPS_PORT` for an HTTPS agent).
    pub fn http_addr(&self) -> String {
        match self.https_port {
            Some(p) => format!("https://{}:{p}", self.builder.ip),
            None => format!("{}:{}", self.builder.ip, self.ports.http),
        }
    }

    /// `IP:SERVER_PORT`: what `/v1/status/leader` must say.
    pub fn server_addr(&self) -> String {
        format!("{}:{}", self.builder.ip, self.ports.server)
    }

    /// `IP:SERF_LAN_PORT`: what `-retry-join` and `muster join` take.
    pub fn gossip_addr(&self) -> String {
        format!("{}:{}", self.builder.ip, self.ports.serf_lan)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "harness: agent already running");
        if self.builder.ports_in_config {
            let p = self.ports;
            let only = self.builder.https.as_ref().is_some_and(|h| h.only);
            let doc = serde_json::json!({"ports": {
                "http": if only { -1 } else { i32::from(p.http) },
                "https": self.https_port.map_or(-1, i32::from),
                "dns": p.dns, "server": p.server,
                "serf_lan": p.serf_lan, "serf_wan": p.serf_wan,
            }});
            std::fs::write(self.dir().join("ports.json"), doc.to_string())
                .expect("write ports.json");
        }
        let n = self.runs.len() + 1;
        let stdout = self.dir().join(format!("run{n}.stdout"));
        let stderr = self.dir().join(format!("run{n}.stderr"));
        let args = self.agent_args();
        let out = std::fs::File::create(&stdout).expect("create stdout log");
        let err = std::fs::File::create(&stderr).expect("create stderr log");
        let mut cmd = Command::new(MUSTER);
        die_with_parent(&mut cmd);
        let child = cmd
            .args(&args)
            .env_remove("CONSUL_HTTP_ADDR")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", cmdline(&args)));
        self.child = Some(child);
        self.runs.push(Run {
            cmdline: cmdline(&args),
            stdout,
            stderr,
            exit: None,
        });
    }

    /// Everything the current (last) run has written to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.runs
            .last()
            .map(|r| {
                std::fs::read_to_string(&r.stdout).unwrap_or_default()
                    + &std::fs::read_to_string(&r.stderr).unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// Whether the process has exited; records its status.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                if let Some(run) = self.runs.last_mut() {
                    run.exit = Some(status);
                }
                Some(status)
            }
            _ => None,
        }
    }

    /// Polls `GET /v1/status/leader` until it is 200 with a non-empty leader (a cluster member:
    /// until `GET /v1/agent/self` answers 200).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        if matches!(self.builder.mode, Mode::ClusterServer | Mode::Client) {
            let url = format!("{}/v1/agent/self", self.base_url());
            let mut last = String::from("no answer yet");
            while Instant::now() < deadline {
                if let Some(status) = self.try_exited() {
                    return Err(format!("the agent exited before it was ready: {status}"));
                }
                match send(&self.client, "GET", &url, None, Duration::from_secs(2)).await {
                    Ok(r) if r.status == 200 => return Ok(()),
                    Ok(r) => last = format!("status {} body {:?}", r.status, r.text()),
                    Err(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return Err(format!(
                "no answer at {url} within {START_TIMEOUT:?}; last: {last}"
            ));
        }
        let url = format!("{}/v1/status/leader", self.base_url());
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.try_exited() {
                return Err(format!("the agent exited before it was ready: {status}"));
            }
            match send(&self.client, "GET", &url, None, Duration::from_secs(2)).await {
                Ok(r) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body) {
                    Ok(Value::String(s)) if !s.is_empty() => return Ok(()),
                    _ => last = format!("200 with body {:?}", r.text()),
                },
                Ok(r) => last = format!("status {} body {:?}", r.status, r.text()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "no leader at {url} within {START_TIMEOUT:?}; last: {last}"
        ))
    }

    fn last_run_says_port_in_use(&self) -> bool {
        self.runs
            .last()
            .map(|r| {
                let text = std::fs::read_to_string(&r.stderr).unwrap_or_default()
                    + &std::fs::read_to_string(&r.stdout).unwrap_or_default();
                let t = text.to_lowercase();
                t.contains("address already in use") || t.contains("os error 98")
            })
            .unwrap_or(false)
    }

    /// SIGKILL and reap (no-op when not running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let status = child.wait().ok();
            if let Some(run) = self.runs.last_mut() {
                run.exit = status;
            }
        }
    }

    /// Sends `sig` to the agent.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.pid().expect("agent is not running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
    }

    /// Waits (bounded) for the process to exit by itself; `None` if it did not.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.child.is_none() {
                return self.runs.last().and_then(|r| r.exit);
            }
            if let Some(status) = self.try_exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, then waits for the exit (bounded); SIGKILL and a failure if it does not exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        match self.wait_exit(EXIT_TIMEOUT).await {
            Some(s) => s,
            None => {
                self.kill9();
                self.fail(&format!(
                    "the agent did not exit within {EXIT_TIMEOUT:?} of SIGTERM"
                ))
            }
        }
    }

    /// Starts the agent again with the same flags, ports and data dir; waits for a leader.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        if let Err(e) = self.wait_ready().await {
            self.fail(&format!("agent did not restart: {e}"));
        }
    }

    /// Everything about this agent, for a failure message.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "===== muster agent (harness report) =====");
        let _ = writeln!(s, "work dir: {}", self.dir().display());
        if let Some(d) = self.data_dir() {
            let _ = writeln!(s, "data dir: {}", d.display());
        }
        let _ = writeln!(s, "ports: {:?}", self.ports);
        if let Some(p) = self.https_port {
            let _ = writeln!(s, "https port: {p}");
        }
        for (i, run) in self.runs.iter().enumerate() {
            let _ = writeln!(s, "----- run {} -----", i + 1);
            let _ = writeln!(s, "command: {}", run.cmdline);
            match run.exit {
                Some(e) => {
                    let _ = writeln!(s, "exit: {e}");
                }
                None => {
                    let _ = writeln!(s, "exit: (still running or killed by the harness)");
                }
            }
            for (label, path) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let _ = writeln!(s, "--- {label} ({}) ---", path.display());
                // The tail is what matters; keep the report readable.
                let tail: String = if text.len() > 20_000 {
                    let cut = text.len() - 20_000;
                    let cut = (cut..text.len())
                        .find(|&i| text.is_char_boundary(i))
                        .unwrap_or(text.len());
                    format!("[... {cut} bytes cut ...]\n{}", &text[cut..])
                } else {
                    text
                };
                let _ = writeln!(s, "{tail}");
            }
        }
        let _ = writeln!(s, "===== end of harness report =====");
        s
    }

    /// Fails the test now with `msg` and the full report.
    #[track_caller]
    pub fn fail(&mut self, msg: &str) -> ! {
        self.kill9();
        self.keep_workdir = true;
        panic!("{msg} (the harness report with the agent's output follows)");
    }

    // ----- HTTP -----

    /// `METHOD base_url+path` with `body`.
    pub async fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        self.request_timeout(method, path, body, REQUEST_TIMEOUT)
            .await
    }

    pub async fn request_timeout(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Resp {
        let url = format!("{}{}", self.base_url(), path);
        match send(
            &self.client,
            method,
            &url,
            body.map(<[u8]>::to_vec),
            timeout,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => panic!("HTTP request failed: {e}"),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None).await
    }

    pub async fn put(&self, path: &str, body: impl AsRef<[u8]>) -> Resp {
        self.request("PUT", path, Some(body.as_ref())).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None).await
    }

    /// A client and URL for requests made from other tasks.
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// `PUT /v1/kv/KEY` that must answer 200 `true`.
    pub async fn kv_put(&self, key: &str, value: impl AsRef<[u8]>) {
        let r = self.put(&format!("/v1/kv/{key}"), value).await;
        r.expect_status(200);
        assert_eq!(r.json(), Value::Bool(true), "PUT {key} did not answer true");
    }

    /// `GET /v1/kv/KEY`: the single entry (200), or `None` (404).
    pub async fn kv_entry(&self, key: &str) -> Option<Value> {
        let r = self.get(&format!("/v1/kv/{key}")).await;
        match r.status {
            404 => None,
            200 => {
                let v = r.json();
                let arr = v.as_array().expect("KV GET answers a JSON array");
                assert_eq!(arr.len(), 1, "GET {key} answered {v}");
                Some(arr[0].clone())
            }
            s => panic!("GET /v1/kv/{key}: status {s} body {:?}", r.text()),
        }
    }

    /// The decoded value of KEY (`None` for a missing key; a null Value is `Some(vec![])`).
    pub async fn kv_value(&self, key: &str) -> Option<Vec<u8>> {
        self.kv_entry(key)
            .await
            .map(|e| b64(&e["Value"]).unwrap_or_default())
    }

    // ----- CLI -----

    /// Runs `muster ARGS` with `-http-addr` of this agent put after the command words.
    pub async fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, None).await
    }

    /// As [`Agent::cli`], feeding `stdin`.
    pub async fn cli_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let at = command_words(args);
        let mut full: Vec<String> = args[..at].iter().map(|s| s.to_string()).collect();
        full.push(format!("-http-addr={}", self.http_addr()));
        if let Some(h) = &self.builder.https {
            full.push(format!("-ca-file={}", h.ca_file));
        }
        full.extend(args[at..].iter().map(|s| s.to_string()));
        run_muster_with(&full, stdin, CLI_TIMEOUT, Some(self.dir()), &[]).await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // The test failed: leave everything needed to see why.
            eprintln!("{}", self.report());
            self.keep_workdir = true;
        }
        if self.keep_workdir {
            if let Some(dir) = self.workdir.take() {
                let path = dir.keep();
                eprintln!("harness: kept {}", path.display());
            }
        }
    }
}

/// A unique key prefix per test (so tests sharing nothing still read clearly in logs).
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Retries `f` until it returns `Some`, at most `timeout`; for state that settles
/// asynchronously (e.g. membership). Never used to assert speed.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
