//! The `checks` scenario (issue 3's figures): one Muster agent running N services with an HTTP
//! check each against a server inside this process, then
//!
//! 1. the agent's CPU (share of one core) and RSS over a window with every check passing, with
//!    the check server's own CPU beside it and the rate at which checks actually arrive;
//! 2. failure detection: an instance's endpoint flips to 500 at T0 and a blocking query on
//!    `/v1/health/service/<name>?passing` waits for the answer that no longer lists it. The
//!    time is split at the agent's first request answered 500: before it, the check was waiting
//!    for its next run (up to one interval of phase); after it, the agent's own path (status
//!    change → anti-entropy → Raft → catalog → blocking query).
//!
//! Services are `--names` names with `--services / --names` instances each, so the blocking
//! query of one sample is woken by its own instance only (concurrent samples use distinct
//! names). The agent is either spawned here (`--agent`: `muster agent -dev` on free loopback
//! ports, killed on every way out: normal end, error, Ctrl-C/SIGTERM, panic, and, through
//! PR_SET_PDEATHSIG, this process dying) or already running (`--addr`; its pid, when given,
//! for CPU and RSS; our services are deregistered at the end).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::{JoinHandle, JoinSet};

use crate::client::{self, Conn, Endpoint, Proto};
use crate::hist::{exact, fmt_us, Histogram, Percentiles};
use crate::procfs;
use crate::ready;
use crate::target::{Kind, Target};

/// Which agent the scenario drives.
#[derive(Debug, Clone)]
pub enum AgentChoice {
    /// Spawn `bin agent -dev` on free loopback ports, with `extra_args` after ours.
    Spawn {
        bin: PathBuf,
        extra_args: Vec<String>,
    },
    /// An agent already running at `addr`; `pid` for its CPU and RSS.
    Running { addr: String, pid: Option<u32> },
}

#[derive(Debug, Clone)]
pub struct ChecksOpts {
    pub agent: AgentChoice,
    pub services: usize,
    /// Distinct service names; instance `i` belongs to name `i % names`.
    pub names: usize,
    pub interval: Duration,
    /// The steady-state window CPU and RSS are measured over.
    pub measure: Duration,
    /// Pause between "all passing" and the start of the window.
    pub settle: Duration,
    /// Failure-detection samples.
    pub failures: usize,
    /// Samples run at once (on distinct names).
    pub failure_concurrency: usize,
    /// Concurrent registrations.
    pub clients: usize,
    /// A request (other than a blocking query) without an answer after this long is an error.
    pub timeout: Duration,
    /// Service names are `<prefix><j>`, IDs `<prefix><j>-<i>`.
    pub prefix: String,
}

/// Everything the scenario measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChecksReport {
    pub scenario: String,
    pub target: String,
    pub addr: String,
    /// How the agent was started ("spawned" with its command line, or "running").
    pub agent: String,
    pub agent_pid: Option<u32>,
    pub services: usize,
    pub names: usize,
    pub interval_s: f64,
    /// The check server inside the bench (every check's URL points here).
    pub check_server: String,
    pub loadavg: String,
    pub register: RegisterStats,
    pub steady: SteadyStats,
    pub failures: FailureStats,
    pub targets: Targets,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegisterStats {
    pub clients: usize,
    /// From the first `PUT /v1/agent/service/register` to the last answer.
    pub seconds: f64,
    pub per_sec: f64,
    pub latency_us: Percentiles,
    /// From the last registration's answer until the catalog shows every check passing.
    pub all_passing_after_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SteadyStats {
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentUsage>,
    /// CPU seconds of this process (the check server, and the sampler) in the window.
    pub bench_cpu_s: f64,
    pub bench_core_share: f64,
    /// CPU seconds everything else on the machine used in the window.
    pub others_cpu_s: f64,
    /// Check requests the server answered in the window, per second, and what N / interval
    /// predicts.
    pub checks_per_sec: f64,
    pub expected_per_sec: f64,
    /// Answers other than 200 in the window (500s, unknown paths): should be 0.
    pub non_ok_answers: u64,
    /// Time between two requests for the same instance, as the check server saw them, less
    /// the interval (a check's next run starts one interval after its last one ended).
    pub period_over_interval_us: Percentiles,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct AgentUsage {
    pub pid: u32,
    pub cpu_s: f64,
    /// `cpu_s` / window: 1.0 is one core.
    pub core_share: f64,
    /// The busiest `window_s` stretch of the measurement (one check interval, or the whole
    /// window if shorter), as a share of one core.
    pub max_window_core_share: f64,
    pub window_s: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub rss_mean_kib: u64,
    pub rss_max_kib: u64,
    pub samples: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailureStats {
    pub samples: usize,
    pub detected: usize,
    /// Samples whose instance was still listed after three intervals (+10 s).
    pub timed_out: usize,
    /// Samples that failed for another reason (a request error).
    pub errors: usize,
    /// interval + 100 ms, in µs.
    pub bound_us: f64,
    /// Detected samples with `detect` ≤ `bound_us`.
    pub within_bound: usize,
    /// From the flip to the answer that no longer lists the instance.
    pub detect_us: Percentiles,
    /// From the flip to the agent's first request answered 500 (the wait for the next run).
    pub phase_us: Percentiles,
    /// From that request to the answer that no longer lists the instance.
    pub propagate_us: Percentiles,
    /// From restoring 200 to the instance being listed again.
    pub recover_us: Percentiles,
    pub each: Vec<FailureSample>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailureSample {
    pub instance: usize,
    pub id: String,
    pub detect_us: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_us: Option<f64>,
    pub recover_us: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Targets {
    /// Agent CPU under 25% of one core over the window.
    pub cpu_met: Option<bool>,
    /// Agent peak RSS under 200 MB (200 × 10^6 bytes).
    pub rss_met: Option<bool>,
    /// Every sample detected within one interval plus 100 ms.
    pub detect_met: Option<bool>,
}

const CPU_TARGET: f64 = 0.25;
const RSS_TARGET_BYTES: f64 = 200e6;
const DETECT_SLACK: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// The check server.

/// A first answer of a given status for an instance under test, and when it was sent.
struct Probe {
    status: StatusCode,
    first: Option<Instant>,
}

/// What the check server shares with the scenario.
struct ServerState {
    start: Instant,
    /// Instance `i` answers 500 while `failing[i]` is set.
    failing: Vec<AtomicBool>,
    /// Nanoseconds since `start` (+1; 0 = never) of the last request for each instance.
    last_ns: Vec<AtomicU64>,
    ok: AtomicU64,
    non_ok: AtomicU64,
    /// While set, the time between two requests for an instance, less `interval_ns`, goes
    /// into `periods` (recorded as the excess so the histogram's relative error is small).
    recording: AtomicBool,
    interval_ns: u64,
    periods: Mutex<Histogram>,
    probes: Mutex<HashMap<usize, Probe>>,
}

impl ServerState {
    fn new(n: usize, interval: Duration) -> ServerState {
        ServerState {
            start: Instant::now(),
            failing: (0..n).map(|_| AtomicBool::new(false)).collect(),
            last_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ok: AtomicU64::new(0),
            non_ok: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            periods: Mutex::new(Histogram::default()),
            probes: Mutex::new(HashMap::new()),
        }
    }

    /// The status for `GET <path>`, with the bookkeeping.
    fn answer(&self, path: &str) -> StatusCode {
        let Some(i) = path
            .strip_prefix("/health/")
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&i| i < self.failing.len())
        else {
            self.non_ok.fetch_add(1, Ordering::Relaxed);
            return StatusCode::NOT_FOUND;
        };
        let now = Instant::now();
        let ns = u64::try_from((now - self.start).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let prev = self.last_ns[i].swap(ns, Ordering::Relaxed);
        if prev != 0 && self.recording.load(Ordering::Relaxed) {
            if let Ok(mut h) = self.periods.lock() {
                h.record(ns.saturating_sub(prev).saturating_sub(self.interval_ns));
            }
        }
        let status = if self.failing[i].load(Ordering::Relaxed) {
            self.non_ok.fetch_add(1, Ordering::Relaxed);
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            self.ok.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        };
        if let Ok(mut probes) = self.probes.lock() {
            if let Some(p) = probes.get_mut(&i) {
                if p.first.is_none() && p.status == status {
                    p.first = Some(now);
                }
            }
        }
        status
    }

    /// Sets instance `i`'s answer and starts watching for the first request that gets it;
    /// returns the time of the switch.
    fn set_failing(&self, i: usize, failing: bool) -> Instant {
        let status = if failing {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        if let Ok(mut probes) = self.probes.lock() {
            probes.insert(
                i,
                Probe {
                    status,
                    first: None,
                },
            );
        }
        let t = Instant::now();
        self.failing[i].store(failing, Ordering::Relaxed);
        t
    }

    /// When the first request after the last [`Self::set_failing`] of `i` was answered.
    fn take_probe(&self, i: usize) -> Option<Instant> {
        self.probes.lock().ok()?.remove(&i)?.first
    }
}

struct CheckServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: JoinHandle<()>,
}

impl Drop for CheckServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the check server on 127.0.0.1:0, on this process's runtime.
async fn start_server(n: usize, interval: Duration) -> Result<CheckServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(ServerState::new(n, interval));
    let task = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // Out of descriptors, or a connection reset before accept: try again.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let status = state.answer(req.uri().path());
                        let body = if status == StatusCode::OK {
                            "ok"
                        } else {
                            "failing"
                        };
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *resp.status_mut() = status;
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        })
    };
    Ok(CheckServer { addr, state, task })
}

// ---------------------------------------------------------------------------------------------
// The agent.

/// An agent this scenario started. Killed when dropped (`kill_on_drop`), and by the kernel if
/// this process dies first (PR_SET_PDEATHSIG, set for the spawning thread: the spawn happens
/// on the thread that runs `main`'s `block_on`, which lives as long as the process).
struct SpawnedAgent {
    child: Child,
    pid: u32,
    addr: String,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

async fn spawn_agent(bin: &Path, extra_args: &[String]) -> Result<SpawnedAgent> {
    let dir = tempfile::Builder::new()
        .prefix("muster-bench-checks")
        .tempdir()?;
    let http = client::free_port()?;
    let mut args = ready::args_for(Kind::Muster, http, dir.path())?;
    args.extend(extra_args.iter().cloned());
    let log = dir.path().join("agent.log");
    let log_file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(bin);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    // SAFETY: the closure runs between fork and exec and only makes the prctl(2) syscall,
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the agent exited at once"))?;
    let addr = format!("127.0.0.1:{http}");
    let target = Target::new(Kind::Muster, Endpoint::new(&addr, Proto::Http1)?);
    if let Err(e) = ready::wait_ready(&target, Duration::from_secs(30)).await {
        ready::stop(&mut child).await;
        bail!("{e:#}\n{}", ready::tail(&log));
    }
    Ok(SpawnedAgent {
        child,
        pid,
        addr,
        bin: bin.to_path_buf(),
        args,
        log,
        _dir: dir,
    })
}

/// Waits for SIGINT or SIGTERM; names the signal.
async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let int = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = int => "SIGINT",
        _ = term => "SIGTERM",
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario.

pub async fn run(opts: &ChecksOpts) -> Result<ChecksReport> {
    if opts.services == 0 || opts.names == 0 {
        bail!("--services and --names must be at least 1");
    }
    if opts.interval.is_zero() {
        bail!("--interval must be positive");
    }
    if !opts
        .prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    {
        bail!("--prefix: only [A-Za-z0-9_-]");
    }
    let mut spawned = match &opts.agent {
        AgentChoice::Spawn { bin, extra_args } => Some(spawn_agent(bin, extra_args).await?),
        AgentChoice::Running { .. } => None,
    };
    let (addr, pid, agent_desc) = match (&spawned, &opts.agent) {
        (Some(a), _) => (
            a.addr.clone(),
            Some(a.pid),
            format!("spawned: {} {}", a.bin.display(), a.args.join(" ")),
        ),
        (None, AgentChoice::Running { addr, pid }) => {
            (addr.clone(), *pid, "running (given --addr)".to_string())
        }
        (None, AgentChoice::Spawn { .. }) => bail!("no agent"),
    };
    let ep = Endpoint::new(&addr, Proto::Http1)?;
    let server = start_server(opts.services, opts.interval).await?;
    let plan = Plan::new(opts);

    let result = tokio::select! {
        r = scenario(opts, &plan, &ep, pid, &server, &agent_desc) => r,
        sig = interrupted() => Err(anyhow!("interrupted by {sig}")),
    };
    match spawned.as_mut() {
        Some(a) => {
            let exited = a.child.try_wait().ok().flatten();
            ready::stop(&mut a.child).await;
            if let (Err(e), Some(status)) = (&result, exited) {
                bail!(
                    "{e:#}\nthe agent had exited ({status}):\n{}",
                    ready::tail(&a.log)
                );
            }
        }
        None => {
            // A running agent keeps nothing of ours.
            if let Err(e) = deregister_all(opts, &plan, &ep).await {
                eprintln!("checks: deregistering the bench's services: {e:#}");
            }
        }
    }
    result
}

/// Names and IDs of the instances.
struct Plan {
    names: usize,
    services: usize,
    prefix: String,
}

impl Plan {
    fn new(opts: &ChecksOpts) -> Plan {
        Plan {
            names: opts.names.min(opts.services),
            services: opts.services,
            prefix: opts.prefix.clone(),
        }
    }

    fn name(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i % self.names)
    }

    fn id(&self, i: usize) -> String {
        format!("{}{}-{i}", self.prefix, i % self.names)
    }

    /// The instance of sample `k`: name `k % names` (so up to `names` consecutive samples use
    /// distinct names), and a different instance of it each time round.
    fn sample_instance(&self, k: usize) -> usize {
        let name = k % self.names;
        let count = (self.services - name).div_ceil(self.names);
        name + self.names * ((k / self.names * 37 + k * 13) % count.max(1))
    }
}

async fn scenario(
    opts: &ChecksOpts,
    plan: &Plan,
    ep: &Endpoint,
    pid: Option<u32>,
    server: &CheckServer,
    agent_desc: &str,
) -> Result<ChecksReport> {
    let loadavg = crate::report::loadavg();
    let register = register_all(opts, plan, ep, server.addr).await?;
    let reg_end = Instant::now();
    wait_all_passing(opts, plan, ep).await?;
    let all_passing_after_s = reg_end.elapsed().as_secs_f64();
    tokio::time::sleep(opts.settle).await;

    let steady = measure(opts, pid, &server.state).await?;
    let mut first_error = None;
    let failures = failure_samples(opts, plan, ep, &server.state, &mut first_error).await;

    let targets = Targets {
        cpu_met: steady.agent.map(|a| a.core_share < CPU_TARGET),
        rss_met: steady
            .agent
            .map(|a| (a.rss_max_kib as f64 * 1024.0) < RSS_TARGET_BYTES),
        detect_met: (failures.samples > 0).then_some(
            failures.within_bound == failures.samples
                && failures.timed_out == 0
                && failures.errors == 0,
        ),
    };
    Ok(ChecksReport {
        scenario: "checks".to_string(),
        target: "muster".to_string(),
        addr: ep.addr.to_string(),
        agent: agent_desc.to_string(),
        agent_pid: pid,
        services: opts.services,
        names: plan.names,
        interval_s: opts.interval.as_secs_f64(),
        check_server: server.addr.to_string(),
        loadavg,
        register: RegisterStats {
            all_passing_after_s,
            ..register
        },
        steady,
        failures,
        targets,
        first_error,
    })
}

fn register_body(plan: &Plan, i: usize, server: SocketAddr, interval: Duration) -> String {
    serde_json::json!({
        "Name": plan.name(i),
        "ID": plan.id(i),
        "Port": server.port(),
        "Check": {
            "HTTP": format!("http://{server}/health/{i}"),
            "Interval": muster_api::duration::format(interval),
        },
    })
    .to_string()
}

/// Registers every instance through `/v1/agent/service/register`, `opts.clients` at a time.
async fn register_all(
    opts: &ChecksOpts,
    plan: &Plan,
    ep: &Endpoint,
    server: SocketAddr,
) -> Result<RegisterStats> {
    let next = Arc::new(AtomicUsize::new(0));
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..plan.services)
            .map(|i| register_body(plan, i, server, opts.interval))
            .collect(),
    );
    let clients = opts.clients.clamp(1, plan.services);
    let t0 = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..clients {
        let (next, bodies, ep, timeout) = (next.clone(), bodies.clone(), ep.clone(), opts.timeout);
        workers.spawn(async move {
            let conn = Conn::new(ep.clone());
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let req = ep.request(
                    Method::PUT,
                    "/v1/agent/service/register",
                    Some("application/json"),
                    Bytes::from(body.clone()),
                )?;
                let sent = Instant::now();
                let a = conn
                    .send(req, timeout)
                    .await
                    .with_context(|| format!("registering instance {i}"))?;
                if a.status != StatusCode::OK {
                    bail!(
                        "registering instance {i}: {} {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    );
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1e6);
            }
        });
    }
    let mut all = Vec::with_capacity(plan.services);
    while let Some(done) = workers.join_next().await {
        all.extend(done.map_err(|e| anyhow!("a registration worker failed: {e}"))??);
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(RegisterStats {
        clients,
        seconds,
        per_sec: all.len() as f64 / seconds.max(1e-9),
        latency_us: exact(&all),
        all_passing_after_s: 0.0,
    })
}

/// Deregisters every instance (for an agent we did not start).
async fn deregister_all(opts: &ChecksOpts, plan: &Plan, ep: &Endpoint) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let ids: Arc<Vec<String>> = Arc::new((0..plan.services).map(|i| plan.id(i)).collect());
    let mut workers = JoinSet::new();
    for _ in 0..opts.clients.clamp(1, plan.services) {
        let (next, ids, ep, timeout) = (next.clone(), ids.clone(), ep.clone(), opts.timeout);
        workers.spawn(async move {
            let conn = Conn::new(ep.clone());
            loop {
                let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let path = format!("/v1/agent/service/deregister/{id}");
                let req = ep.request(Method::PUT, &path, None, Bytes::new())?;
                let a = conn.send(req, timeout).await?;
                if a.status != StatusCode::OK && a.status != StatusCode::NOT_FOUND {
                    bail!(
                        "deregistering {id}: {} {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    );
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| anyhow!("a deregistration worker failed: {e}"))??;
    }
    Ok(())
}

/// A row of `/v1/health/state/:state`.
#[derive(Deserialize)]
struct CheckRow {
    #[serde(rename = "ServiceID", default)]
    service_id: String,
}

/// A row of `/v1/health/service/:name`.
#[derive(Deserialize)]
struct ServiceEntry {
    #[serde(rename = "Service")]
    service: ServiceRow,
}

#[derive(Deserialize)]
struct ServiceRow {
    #[serde(rename = "ID")]
    id: String,
}

async fn get_json<T: serde::de::DeserializeOwned>(
    conn: &Conn,
    ep: &Endpoint,
    path: &str,
    timeout: Duration,
) -> Result<(u64, T)> {
    let req = ep.request(Method::GET, path, None, Bytes::new())?;
    let a = conn.send(req, timeout).await.context(path.to_string())?;
    if a.status != StatusCode::OK {
        bail!("{path}: {} {}", a.status, String::from_utf8_lossy(&a.body));
    }
    let index = a
        .headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| anyhow!("{path}: no X-Consul-Index"))?;
    let value = serde_json::from_slice(&a.body).with_context(|| format!("decoding {path}"))?;
    Ok((index, value))
}

/// Our checks in `/v1/health/state/<state>`.
async fn count_ours(
    conn: &Conn,
    ep: &Endpoint,
    plan: &Plan,
    state: &str,
    timeout: Duration,
) -> Result<usize> {
    let (_, rows): (u64, Vec<CheckRow>) =
        get_json(conn, ep, &format!("/v1/health/state/{state}"), timeout).await?;
    Ok(rows
        .iter()
        .filter(|r| r.service_id.starts_with(&plan.prefix))
        .count())
}

/// Polls until none of our checks is critical and all of them are passing in the catalog.
async fn wait_all_passing(opts: &ChecksOpts, plan: &Plan, ep: &Endpoint) -> Result<()> {
    let conn = Conn::new(ep.clone());
    let limit = opts.interval * 3 + Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    let timeout = opts.timeout.max(Duration::from_secs(30));
    let mut last = String::new();
    while Instant::now() < deadline {
        let critical = count_ours(&conn, ep, plan, "critical", timeout).await?;
        if critical == 0 {
            let passing = count_ours(&conn, ep, plan, "passing", timeout).await?;
            if passing == plan.services {
                return Ok(());
            }
            last = format!("{passing} of {} passing", plan.services);
        } else {
            last = format!("{critical} critical");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("checks not all passing after {limit:?} ({last})")
}

/// The steady-state window: the agent's CPU and RSS (every 250 ms), this process's CPU, the
/// machine's, and what the check server saw.
async fn measure(opts: &ChecksOpts, pid: Option<u32>, state: &ServerState) -> Result<SteadyStats> {
    let pid_s = pid.map(|p| p.to_string());
    let self0 = procfs::self_cpu_s();
    let busy0 = procfs::machine_busy_s();
    let ok0 = state.ok.load(Ordering::Relaxed);
    let non_ok0 = state.non_ok.load(Ordering::Relaxed);
    if let Ok(mut h) = state.periods.lock() {
        *h = Histogram::default();
    }
    state.recording.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    let mut samples: Vec<(f64, procfs::Sample)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let at = t0.elapsed();
        if let Some(p) = &pid_s {
            let s = procfs::sample(p).context("reading the agent's /proc entries")?;
            samples.push((at.as_secs_f64(), s));
        }
        if at >= opts.measure {
            break;
        }
    }
    state.recording.store(false, Ordering::Relaxed);
    let seconds = t0.elapsed().as_secs_f64();
    let ok = state.ok.load(Ordering::Relaxed) - ok0;
    let non_ok = state.non_ok.load(Ordering::Relaxed) - non_ok0;
    let bench_cpu_s = procfs::self_cpu_s() - self0;
    let busy = procfs::machine_busy_s() - busy0;
    let agent = agent_usage(pid, &samples, opts.interval.as_secs_f64());
    let agent_cpu = agent.map(|a| a.cpu_s).unwrap_or(0.0);
    let period_over_interval_us = state
        .periods
        .lock()
        .map(|h| h.summary_us())
        .unwrap_or_default();
    Ok(SteadyStats {
        seconds,
        agent,
        bench_cpu_s,
        bench_core_share: bench_cpu_s / seconds.max(1e-9),
        others_cpu_s: (busy - bench_cpu_s - agent_cpu).max(0.0),
        checks_per_sec: (ok + non_ok) as f64 / seconds.max(1e-9),
        expected_per_sec: opts.services as f64 / opts.interval.as_secs_f64(),
        non_ok_answers: non_ok,
        period_over_interval_us,
    })
}

/// CPU and RSS figures from `(seconds since start, reading)` pairs.
fn agent_usage(
    pid: Option<u32>,
    samples: &[(f64, procfs::Sample)],
    window: f64,
) -> Option<AgentUsage> {
    let pid = pid?;
    let (first, last) = (samples.first()?, samples.last()?);
    let span = last.0 - first.0;
    let cpu_s = last.1.cpu_s - first.1.cpu_s;
    let window = window.min(span);
    // The busiest stretch of at least `window`: for each end, the latest start that far back.
    let mut max_window = 0.0f64;
    let mut start = 0;
    for (end, e) in samples.iter().enumerate() {
        while start + 1 < end && e.0 - samples[start + 1].0 >= window {
            start += 1;
        }
        let s = &samples[start];
        if e.0 - s.0 >= window && e.0 > s.0 {
            max_window = max_window.max((e.1.cpu_s - s.1.cpu_s) / (e.0 - s.0));
        }
    }
    let rss: Vec<u64> = samples.iter().map(|s| s.1.rss_kib).collect();
    Some(AgentUsage {
        pid,
        cpu_s,
        core_share: if span > 0.0 { cpu_s / span } else { 0.0 },
        max_window_core_share: max_window,
        window_s: window,
        rss_start_kib: first.1.rss_kib,
        rss_end_kib: last.1.rss_kib,
        rss_mean_kib: rss.iter().sum::<u64>() / rss.len() as u64,
        rss_max_kib: rss.iter().copied().max().unwrap_or(0),
        samples: samples.len(),
    })
}

/// What one blocking query on `name`'s passing instances answered.
async fn passing_ids(
    conn: &Conn,
    ep: &Endpoint,
    name: &str,
    index: Option<u64>,
    wait: Duration,
    timeout: Duration,
) -> Result<(u64, Vec<String>)> {
    let (path, timeout) = match index {
        None => (format!("/v1/health/service/{name}?passing"), timeout),
        Some(i) => (
            format!(
                "/v1/health/service/{name}?passing&index={i}&wait={}",
                muster_api::duration::format(wait)
            ),
            wait + wait / 16 + timeout,
        ),
    };
    let (index, rows): (u64, Vec<ServiceEntry>) = get_json(conn, ep, &path, timeout).await?;
    Ok((index, rows.into_iter().map(|r| r.service.id).collect()))
}

/// Follows `name`'s passing instances with blocking queries from `index` until `id` is
/// listed (`want_listed`) or not; the time of that answer, or `None` at `deadline`.
#[allow(clippy::too_many_arguments)]
async fn wait_listed(
    conn: &Conn,
    ep: &Endpoint,
    name: &str,
    id: &str,
    mut index: u64,
    want_listed: bool,
    deadline: Instant,
    timeout: Duration,
) -> Result<Option<Instant>> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let wait = (deadline - now).max(Duration::from_secs(1));
        let query = if index == 0 { None } else { Some(index) };
        let (new, ids) = passing_ids(conn, ep, name, query, wait, timeout).await?;
        let at = Instant::now();
        if ids.iter().any(|x| x == id) == want_listed {
            return Ok(Some(at));
        }
        // An index that goes backwards means "start over", as Consul's clients do.
        index = if new < index { 0 } else { new.max(1) };
    }
}

/// One sample: flip instance `i` to 500, time until it leaves `?passing`, restore it, time
/// until it is back.
async fn failure_sample(
    ep: Endpoint,
    plan_name: String,
    id: String,
    i: usize,
    state: Arc<ServerState>,
    interval: Duration,
    timeout: Duration,
) -> Result<Option<FailureSample>> {
    let conn = Conn::new(ep.clone());
    let limit = interval * 3 + Duration::from_secs(10);
    let (index, ids) = passing_ids(&conn, &ep, &plan_name, None, limit, timeout).await?;
    let index = if ids.iter().any(|x| x == &id) {
        index
    } else {
        // Not listed yet (an earlier failure still recovering): wait for it first.
        let deadline = Instant::now() + limit;
        if wait_listed(&conn, &ep, &plan_name, &id, index, true, deadline, timeout)
            .await?
            .is_none()
        {
            bail!("{id} not passing before its sample");
        }
        passing_ids(&conn, &ep, &plan_name, None, limit, timeout)
            .await?
            .0
    };

    let t0 = state.set_failing(i, true);
    let gone = wait_listed(
        &conn,
        &ep,
        &plan_name,
        &id,
        index,
        false,
        t0 + limit,
        timeout,
    )
    .await;
    let served_500 = state.take_probe(i);
    let t1 = state.set_failing(i, false);
    let Some(gone) = gone? else {
        let _ = state.take_probe(i);
        return Ok(None);
    };
    let back = wait_listed(&conn, &ep, &plan_name, &id, 0, true, t1 + limit, timeout).await;
    let _ = state.take_probe(i);
    let back =
        back?.ok_or_else(|| anyhow!("{id} not passing again {limit:?} after its restore"))?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Ok(Some(FailureSample {
        instance: i,
        id,
        detect_us: us(gone - t0),
        phase_us: served_500.map(|s| us(s.saturating_duration_since(t0))),
        propagate_us: served_500.map(|s| us(gone.saturating_duration_since(s))),
        recover_us: us(back - t1),
    }))
}

async fn failure_samples(
    opts: &ChecksOpts,
    plan: &Plan,
    ep: &Endpoint,
    state: &Arc<ServerState>,
    first_error: &mut Option<String>,
) -> FailureStats {
    let bound = opts.interval + DETECT_SLACK;
    let mut stats = FailureStats {
        samples: opts.failures,
        bound_us: bound.as_secs_f64() * 1e6,
        ..FailureStats::default()
    };
    let concurrency = opts.failure_concurrency.clamp(1, plan.names);
    let mut k = 0;
    while k < opts.failures {
        let mut round = JoinSet::new();
        for k in k..(k + concurrency).min(opts.failures) {
            let i = plan.sample_instance(k);
            round.spawn(failure_sample(
                ep.clone(),
                plan.name(i),
                plan.id(i),
                i,
                state.clone(),
                opts.interval,
                opts.timeout,
            ));
        }
        k += concurrency;
        while let Some(done) = round.join_next().await {
            match done.map_err(|e| anyhow!("a failure sample failed: {e}")) {
                Ok(Ok(Some(s))) => stats.each.push(s),
                Ok(Ok(None)) => stats.timed_out += 1,
                Ok(Err(e)) | Err(e) => {
                    stats.errors += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
    }
    stats.each.sort_by_key(|s| s.instance);
    let detect: Vec<f64> = stats.each.iter().map(|s| s.detect_us).collect();
    let pick = |f: fn(&FailureSample) -> Option<f64>| -> Vec<f64> {
        stats.each.iter().filter_map(f).collect()
    };
    stats.detected = stats.each.len();
    stats.within_bound = detect.iter().filter(|&&d| d <= stats.bound_us).count();
    stats.detect_us = exact(&detect);
    stats.phase_us = exact(&pick(|s| s.phase_us));
    stats.propagate_us = exact(&pick(|s| s.propagate_us));
    stats.recover_us = exact(&pick(|s| Some(s.recover_us)));
    stats
}

// ---------------------------------------------------------------------------------------------
// Output.

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn lat(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  max {}  (min {}, n {})",
        fmt_us(p.p50),
        fmt_us(p.p90),
        fmt_us(p.max),
        fmt_us(p.min),
        p.count
    )
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

/// The human form of a report.
pub fn human(r: &ChecksReport) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("checks -> {} {}", r.target, r.addr));
    line(
        &mut out,
        format!(
            "  agent       pid {}  {}",
            r.agent_pid.map(|p| p.to_string()).unwrap_or("?".into()),
            r.agent
        ),
    );
    line(
        &mut out,
        format!(
            "  services    {} ({} names), one HTTP check each every {} against {}",
            r.services,
            r.names,
            muster_api::duration::format(Duration::from_secs_f64(r.interval_s)),
            r.check_server
        ),
    );
    let g = &r.register;
    line(
        &mut out,
        format!(
            "  register    {:.2} s, {:.0}/s with {} clients (p50 {}, max {}); all passing {:.1} s after the last",
            g.seconds,
            g.per_sec,
            g.clients,
            fmt_us(g.latency_us.p50),
            fmt_us(g.latency_us.max),
            g.all_passing_after_s
        ),
    );
    let s = &r.steady;
    line(
        &mut out,
        format!("  steady      {:.1} s with every check passing", s.seconds),
    );
    match &s.agent {
        Some(a) => {
            line(
                &mut out,
                format!(
                    "  agent cpu   {:.2} s = {} of a core  (busiest {:.0} s: {})",
                    a.cpu_s,
                    pct(a.core_share),
                    a.window_s,
                    pct(a.max_window_core_share)
                ),
            );
            line(
                &mut out,
                format!(
                    "  agent rss   mean {}  max {}  (start {}, end {}; {} samples)",
                    mib(a.rss_mean_kib),
                    mib(a.rss_max_kib),
                    mib(a.rss_start_kib),
                    mib(a.rss_end_kib),
                    a.samples
                ),
            );
        }
        None => line(
            &mut out,
            "  agent       no pid: CPU and RSS not measured (give --pid)".into(),
        ),
    }
    line(
        &mut out,
        format!(
            "  checks      {:.1}/s arrived (N/interval = {:.1}/s), {} not 200; period = interval + p50 {}  p99 {}  max {}",
            s.checks_per_sec,
            s.expected_per_sec,
            s.non_ok_answers,
            fmt_us(s.period_over_interval_us.p50),
            fmt_us(s.period_over_interval_us.p99),
            fmt_us(s.period_over_interval_us.max)
        ),
    );
    line(
        &mut out,
        format!(
            "  machine     bench (check server) cpu {:.2} s = {} of a core  others {:.2} s  loadavg at start {}",
            s.bench_cpu_s,
            pct(s.bench_core_share),
            s.others_cpu_s,
            r.loadavg
        ),
    );
    let f = &r.failures;
    line(
        &mut out,
        format!(
            "  failures    {} samples: {} detected, {} timed out, {} errors; within {} (interval + 100ms): {}/{}",
            f.samples,
            f.detected,
            f.timed_out,
            f.errors,
            fmt_us(f.bound_us),
            f.within_bound,
            f.samples
        ),
    );
    if f.detected > 0 {
        for (what, p, meaning) in [
            ("detect   ", &f.detect_us, "flip -> gone from ?passing"),
            ("phase    ", &f.phase_us, "flip -> first 500 served"),
            ("propagate", &f.propagate_us, "first 500 -> gone"),
            ("recover  ", &f.recover_us, "restore -> listed again"),
        ] {
            line(&mut out, format!("    {what} {}  {meaning}", lat(p)));
        }
    }
    let t = &r.targets;
    let cpu = s.agent.map(|a| pct(a.core_share)).unwrap_or_default();
    let rss = s
        .agent
        .map(|a| format!("{:.0} MB", a.rss_max_kib as f64 * 1024.0 / 1e6))
        .unwrap_or_default();
    line(
        &mut out,
        format!(
            "  targets     cpu < 25%: {} ({cpu})  rss < 200 MB: {} ({rss} peak)  detect <= interval + 100ms: {} ({}/{})",
            verdict(t.cpu_met),
            verdict(t.rss_met),
            verdict(t.detect_met),
            f.within_bound,
            f.samples
        ),
    );
    if let Some(e) = &r.first_error {
        line(&mut out, format!("  first error {e}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(services: usize, names: usize) -> Plan {
        Plan {
            names: names.min(services),
            services,
            prefix: "p-".into(),
        }
    }

    #[test]
    fn instances_map_to_names_and_ids() {
        let p = plan(10, 3);
        assert_eq!(p.name(7), "p-1");
        assert_eq!(p.id(7), "p-1-7");
    }

    #[test]
    fn samples_use_distinct_names_and_stay_in_range() {
        for (n, names) in [(10_000, 100), (10, 3), (7, 7), (5, 1), (1, 1)] {
            let p = plan(n, names);
            for k in 0..300 {
                let i = p.sample_instance(k);
                assert!(i < n, "{n}/{names}: sample {k} -> {i}");
                assert_eq!(i % p.names, k % p.names);
            }
        }
        // Consecutive rounds pick other instances of the same name.
        let p = plan(10_000, 100);
        assert_ne!(p.sample_instance(3), p.sample_instance(103));
    }

    #[test]
    fn server_answers_by_instance_and_records_probes() {
        let s = ServerState::new(3, Duration::from_secs(1));
        assert_eq!(s.answer("/health/1"), StatusCode::OK);
        assert_eq!(s.answer("/health/3"), StatusCode::NOT_FOUND);
        assert_eq!(s.answer("/other"), StatusCode::NOT_FOUND);
        let t0 = s.set_failing(1, true);
        assert_eq!(s.answer("/health/0"), StatusCode::OK);
        assert_eq!(s.answer("/health/1"), StatusCode::INTERNAL_SERVER_ERROR);
        let first = s.take_probe(1);
        assert!(first.is_some_and(|f| f >= t0));
        assert_eq!(s.take_probe(1), None);
        s.set_failing(1, false);
        assert_eq!(s.answer("/health/1"), StatusCode::OK);
        assert_eq!(s.ok.load(Ordering::Relaxed), 3);
        assert_eq!(s.non_ok.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn usage_finds_the_busiest_window() {
        let at = |t: f64, cpu: f64, rss: u64| {
            (
                t,
                procfs::Sample {
                    rss_kib: rss,
                    cpu_s: cpu,
                },
            )
        };
        // 0.1 core for 10 s, then 0.5 core for 2 s.
        let samples = vec![
            at(0.0, 0.0, 100),
            at(5.0, 0.5, 100),
            at(10.0, 1.0, 300),
            at(11.0, 1.5, 100),
            at(12.0, 2.0, 100),
        ];
        let u = agent_usage(Some(1), &samples, 2.0).unwrap_or_default();
        assert!((u.cpu_s - 2.0).abs() < 1e-9);
        assert!((u.core_share - 2.0 / 12.0).abs() < 1e-9);
        assert!((u.max_window_core_share - 0.5).abs() < 1e-9, "{u:?}");
        assert_eq!((u.rss_max_kib, u.rss_mean_kib), (300, 140));
        assert!(agent_usage(None, &samples, 2.0).is_none());
    }

    #[test]
    fn registration_body_is_consuls_shape() -> Result<()> {
        let p = plan(10, 3);
        let addr: SocketAddr = "127.0.0.1:4000".parse()?;
        let v: serde_json::Value =
            serde_json::from_str(&register_body(&p, 4, addr, Duration::from_secs(10)))?;
        assert_eq!(v["Name"], "p-1");
        assert_eq!(v["ID"], "p-1-4");
        assert_eq!(v["Check"]["HTTP"], "http://127.0.0.1:4000/health/4");
        assert_eq!(v["Check"]["Interval"], "10s");
        Ok(())
    }
}
