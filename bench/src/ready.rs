//! The `ready` scenario: spawn the server binary again and again, and measure the time from
//! the spawn to its first "ready" answer (Muster: a leader in `/v1/status/leader`; etcd:
//! `/health`), then its resident memory once it has sat idle. Every process started here is
//! stopped here (SIGTERM, then SIGKILL), and killed on drop whatever happens.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::client::{self, Endpoint, Proto};
use crate::hist::exact;
use crate::report::{ReadyStats, Report};
use crate::target::{Kind, Target};

#[derive(Debug, Clone)]
pub struct ReadyOpts {
    pub kind: Kind,
    pub bin: PathBuf,
    pub spawns: usize,
    /// Idle time before RSS is read.
    pub settle: Duration,
    /// Give up on a spawn after this long.
    pub timeout: Duration,
    /// Pause between two polls.
    pub poll: Duration,
    /// Extra arguments after the ones this scenario sets.
    pub extra_args: Vec<String>,
}

/// The arguments that start one server on free loopback ports, all in memory or in `dir`.
pub(crate) fn args_for(kind: Kind, http: u16, dir: &Path) -> Result<Vec<String>> {
    let s = |v: &str| v.to_string();
    Ok(match kind {
        Kind::Muster => vec![
            s("agent"),
            s("-dev"),
            s("-http-port"),
            http.to_string(),
            s("-dns-port"),
            s("-1"),
            s("-server-port"),
            client::free_port()?.to_string(),
            s("-serf-lan-port"),
            s("-1"),
            s("-serf-wan-port"),
            s("-1"),
        ],
        Kind::Etcd | Kind::EtcdGrpc => {
            let peer = format!("http://127.0.0.1:{}", client::free_port()?);
            let client_url = format!("http://127.0.0.1:{http}");
            vec![
                s("--name"),
                s("bench"),
                s("--data-dir"),
                dir.join("etcd").display().to_string(),
                s("--listen-client-urls"),
                client_url.clone(),
                s("--advertise-client-urls"),
                client_url,
                s("--listen-peer-urls"),
                peer.clone(),
                s("--initial-advertise-peer-urls"),
                peer.clone(),
                s("--initial-cluster"),
                format!("bench={peer}"),
                s("--log-level"),
                s("warn"),
            ]
        }
    })
}

/// Stops `child`: SIGTERM, up to 5 s to exit, then SIGKILL.
pub async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

struct Spawned {
    ready: Duration,
    idle_rss_kib: u64,
}

async fn spawn_once(opts: &ReadyOpts, args: &mut Vec<String>) -> Result<Spawned> {
    let dir = tempfile::Builder::new()
        .prefix("muster-bench-ready")
        .tempdir()?;
    let http = client::free_port()?;
    *args = args_for(opts.kind, http, dir.path())?;
    args.extend(opts.extra_args.iter().cloned());
    let log = dir.path().join("server.log");
    let log_file = std::fs::File::create(&log)?;
    let target = Target::new(
        opts.kind,
        Endpoint::new(&format!("127.0.0.1:{http}"), Proto::Http1)?,
    );

    let t0 = Instant::now();
    let mut child = Command::new(&opts.bin)
        .args(args.iter())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", opts.bin.display()))?;
    let result = async {
        let ready = loop {
            if let Some(status) = child.try_wait()? {
                bail!("exited with {status} before it was ready:\n{}", tail(&log));
            }
            let elapsed = t0.elapsed();
            if elapsed > opts.timeout {
                bail!("not ready after {elapsed:?}:\n{}", tail(&log));
            }
            if let Ok(a) =
                client::get_once(&target.ep, target.ready_path(), Duration::from_secs(1)).await
            {
                if target.is_ready(&a) {
                    break t0.elapsed();
                }
            }
            tokio::time::sleep(opts.poll).await;
        };
        tokio::time::sleep(opts.settle).await;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the server exited while idle"))?;
        let idle = crate::procfs::sample(&pid.to_string())?;
        Ok(Spawned {
            ready,
            idle_rss_kib: idle.rss_kib,
        })
    }
    .await;
    stop(&mut child).await;
    result
}

/// Polls `target` until it is ready, for at most `timeout`; how long that took.
pub async fn wait_ready(target: &Target, timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let mut last = String::from("no answer");
    while t0.elapsed() < timeout {
        match client::get_once(&target.ep, target.ready_path(), Duration::from_secs(1)).await {
            Ok(a) if target.is_ready(&a) => return Ok(t0.elapsed()),
            Ok(a) => last = format!("{} {}", a.status, String::from_utf8_lossy(&a.body)),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "{} at {} not ready after {timeout:?} (last: {last})",
        target.kind.name(),
        target.ep.addr
    )
}

pub async fn run(opts: &ReadyOpts) -> Result<Report> {
    if opts.spawns == 0 {
        bail!("--spawns must be at least 1");
    }
    let loadavg = crate::report::loadavg();
    let measurement = crate::measure::Measurement::start(None)?;
    let started = Instant::now();
    let mut ready = Vec::new();
    let mut rss = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut args = Vec::new();
    for _ in 0..opts.spawns {
        match spawn_once(opts, &mut args).await {
            Ok(s) => {
                ready.push(s.ready.as_secs_f64() * 1e6);
                rss.push(s.idle_rss_kib as f64);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let usage = measurement.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Report {
        scenario: "ready".to_string(),
        target: opts.kind.name().to_string(),
        addr: "127.0.0.1 (a free port per spawn)".to_string(),
        proto: Proto::Http1.name().to_string(),
        consistency: None,
        clients: 1,
        connections: 1,
        keys: 0,
        value_size: 0,
        seconds,
        ops: ready.len() as u64,
        errors,
        ops_per_sec: 0.0,
        latency_us: exact(&ready),
        server: None,
        client_cpu_s: usage.client_cpu_s,
        others_cpu_s: usage.others_cpu_s,
        loadavg,
        first_error,
        watch: None,
        ready: Some(ReadyStats {
            binary: opts.bin.display().to_string(),
            args,
            idle_rss_kib: exact(&rss),
            settle_s: opts.settle.as_secs_f64(),
        }),
    })
}
