//! The `leader-failover` scenario (issue 7): three `muster agent -server -bootstrap-expect 3`
//! processes on 127.0.0.1–3, each with its own `-bind`, `-client`, ports and `-data-dir`,
//! joined through gossip (`-retry-join`) and with `performance.raft_multiplier` set. Each
//! round, writers PUT distinct keys through the two followers (which forward to the leader),
//! the leader is killed with SIGKILL, and the figure is the time from the kill to the first
//! acknowledgement of a write *sent after* the kill (so it was committed by the new leader, not
//! the dead one). Then every acknowledged key of the round is read back from the new leader
//! with `?consistent` (an acknowledged write that is missing is reported as lost), the victim
//! is started again on its data dir and the cluster waits for one agreed leader and three
//! peers before the next round. Every process started here is killed on exit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use muster_api::client::{Client, ClientConfig, QueryOptions};
use tokio::process::{Child, Command};

use crate::client::free_port;

#[derive(Debug, Clone)]
pub struct FailoverOpts {
    pub bin: PathBuf,
    pub rounds: usize,
    /// Concurrent writers (each sends one PUT at a time).
    pub writers: usize,
    pub raft_multiplier: u8,
    /// Writing before the kill, so the cluster is under load when its leader dies.
    pub warmup: Duration,
    pub timeout: Duration,
    /// Where the servers' logs go (at `info`); none: discarded, servers log at `warn`.
    pub log_dir: Option<PathBuf>,
}

struct Server {
    name: String,
    args: Vec<String>,
    /// The log file, appended to by every start.
    log: Option<PathBuf>,
    /// Server RPC address, as `/v1/status/leader` names the leader.
    rpc: String,
    client: Client,
    child: Option<Child>,
}

impl Server {
    fn spawn(&mut self, bin: &Path) -> Result<()> {
        let (out, err) = match &self.log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("{}", path.display()))?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow!("spawn {}: {e}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }
}

/// One round's outcome.
#[derive(Debug, Clone)]
pub struct Round {
    /// Kill → first acknowledgement of a write sent after the kill.
    pub failover: Duration,
    /// Writes acknowledged during the round (before and after the kill).
    pub acknowledged: usize,
    /// Writes that got an error (in flight to the dying leader, or refused while there was
    /// none); they were never acknowledged, so losing them is allowed.
    pub errors: usize,
    /// Acknowledged writes missing (or with another value) on the new leader.
    pub lost: usize,
}

pub struct FailoverResult {
    pub rounds: Vec<Round>,
}

/// An acknowledged write: the key, its value, when it was sent and when it was acknowledged.
struct Ack {
    key: String,
    value: String,
    sent: Instant,
    acked: Instant,
}

pub async fn run(opts: &FailoverOpts) -> Result<FailoverResult> {
    if opts.writers == 0 {
        bail!("--writers must be at least 1");
    }
    let work = tempfile::tempdir().context("temporary directory")?;
    let http = free_port()?;
    let rpc = free_port()?;
    let serf = free_port()?;
    let ips: Vec<String> = (1..=3).map(|i| format!("127.0.0.{i}")).collect();
    let mut servers = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("bench-s{}", i + 1);
        let data = work.path().join(&name);
        std::fs::create_dir_all(&data).with_context(|| format!("{}", data.display()))?;
        let config = work.path().join(format!("{name}.json"));
        std::fs::write(
            &config,
            format!(
                r#"{{"performance": {{"raft_multiplier": {}}}}}"#,
                opts.raft_multiplier
            ),
        )
        .with_context(|| format!("{}", config.display()))?;
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-server".into(),
            "-bootstrap-expect".into(),
            "3".into(),
            "-node".into(),
            name.clone(),
            "-data-dir".into(),
            data.display().to_string(),
            "-config-file".into(),
            config.display().to_string(),
            "-bind".into(),
            ip.clone(),
            "-client".into(),
            ip.clone(),
            "-http-port".into(),
            http.to_string(),
            "-server-port".into(),
            rpc.to_string(),
            "-serf-lan-port".into(),
            serf.to_string(),
            "-serf-wan-port".into(),
            "-1".into(),
            "-dns-port".into(),
            "-1".into(),
            "-retry-interval".into(),
            "1s".into(),
            "-log-level".into(),
            if opts.log_dir.is_some() {
                "info"
            } else {
                "warn"
            }
            .into(),
        ];
        for other in ips.iter().filter(|o| *o != ip) {
            args.extend(["-retry-join".into(), format!("{other}:{serf}")]);
        }
        let mut config = ClientConfig::new(format!("{ip}:{http}"));
        // A write held through an election is answered late, not refused: let it wait.
        config.request_timeout = Some(opts.timeout);
        let client = Client::new(config).map_err(|e| anyhow!("{e}"))?;
        let log = opts.log_dir.as_ref().map(|d| d.join(format!("{name}.log")));
        let mut server = Server {
            name,
            args,
            log,
            rpc: format!("{ip}:{rpc}"),
            client,
            child: None,
        };
        server.spawn(&opts.bin)?;
        servers.push(server);
    }
    let mut rounds = Vec::new();
    for round in 0..opts.rounds {
        let leader = settled(&servers, opts.timeout)
            .await
            .with_context(|| format!("round {}: the cluster did not settle", round + 1))?;
        let r = one_round(opts, &mut servers, leader, round).await?;
        eprintln!(
            "round {}: {} killed; first write sent after the kill acknowledged after {:?}; \
             {} writes acknowledged, {} errors, {} lost",
            round + 1,
            servers[leader].name,
            r.failover,
            r.acknowledged,
            r.errors,
            r.lost
        );
        rounds.push(r);
        servers[leader].spawn(&opts.bin)?;
    }
    for s in &mut servers {
        s.kill().await?;
    }
    Ok(FailoverResult { rounds })
}

/// Waits until every server names the same leader and it has three peers; returns its index.
async fn settled(servers: &[Server], timeout: Duration) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut leaders = Vec::new();
        for s in servers {
            leaders.push(s.client.status_leader().await.unwrap_or_default());
        }
        let agreed = leaders.iter().all(|l| !l.is_empty() && *l == leaders[0]);
        if agreed {
            if let Some(i) = servers.iter().position(|s| s.rpc == leaders[0]) {
                let peers = servers[i].client.status_peers().await.unwrap_or_default();
                if peers.len() == servers.len() {
                    return Ok(i);
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no agreed leader with {} peers within {timeout:?} (leaders: {leaders:?})",
                servers.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_round(
    opts: &FailoverOpts,
    servers: &mut [Server],
    leader: usize,
    round: usize,
) -> Result<Round> {
    let followers: Vec<Client> = servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, s)| s.client.clone())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let prefix = format!("failover/r{round}/");
    let mut tasks = Vec::new();
    for w in 0..opts.writers {
        let client = followers[w % followers.len()].clone();
        let (stop, acks, errors, prefix) =
            (stop.clone(), acks.clone(), errors.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{prefix}w{w}/{n}");
                let value = format!("{round}-{w}-{n}");
                let sent = Instant::now();
                match client.kv_put(&key, value.as_bytes(), None, None).await {
                    Ok(true) => {
                        let acked = Instant::now();
                        if let Ok(mut a) = acks.lock() {
                            a.push(Ack {
                                key,
                                value,
                                sent,
                                acked,
                            });
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(opts.warmup).await;
    let killed_at = Instant::now();
    servers[leader].kill().await?;
    let deadline = killed_at + opts.timeout;
    let failover = loop {
        let first = acks.lock().ok().and_then(|a| {
            a.iter()
                .filter(|a| a.sent >= killed_at)
                .map(|a| a.acked)
                .min()
        });
        if let Some(t) = first {
            break t - killed_at;
        }
        if Instant::now() >= deadline {
            stop.store(true, Ordering::Relaxed);
            bail!(
                "round {}: no write acknowledged within {:?} of killing {}",
                round + 1,
                opts.timeout,
                servers[leader].name
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Keep writing on the new leader for a moment, then stop and let in-flight writes finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let acks = std::mem::take(&mut *acks.lock().map_err(|_| anyhow!("writer panicked"))?);
    // Every acknowledged write, read back from a survivor with `?consistent`.
    let reader = &followers[0];
    let opts_read = QueryOptions {
        consistent: true,
        ..Default::default()
    };
    let (pairs, _) = reader
        .kv_list(&prefix, &opts_read)
        .await
        .map_err(|e| anyhow!("reading {prefix} back: {e}"))?;
    let stored: std::collections::HashMap<String, Vec<u8>> = pairs
        .into_iter()
        .map(|p| (p.key, p.value.unwrap_or_default()))
        .collect();
    let lost = acks
        .iter()
        .filter(|a| stored.get(&a.key).map(Vec::as_slice) != Some(a.value.as_bytes()))
        .count();
    Ok(Round {
        failover,
        acknowledged: acks.len(),
        errors: errors.load(Ordering::Relaxed),
        lost,
    })
}

pub fn print(r: &FailoverResult, json: bool) {
    let mut times: Vec<Duration> = r.rounds.iter().map(|x| x.failover).collect();
    times.sort();
    let pick = |q: f64| crate::hist::nearest(&times, q);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let acked: usize = r.rounds.iter().map(|x| x.acknowledged).sum();
    let lost: usize = r.rounds.iter().map(|x| x.lost).sum();
    let errors: usize = r.rounds.iter().map(|x| x.errors).sum();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": "leader-failover",
                "rounds": r.rounds.len(),
                "failover_ms": {"min": ms(pick(0.0)), "p50": ms(pick(0.5)), "max": ms(pick(1.0))},
                "acknowledged": acked,
                "errors": errors,
                "lost": lost,
            })
        );
    } else {
        println!(
            "leader-failover: {} rounds; kill → first acknowledged write on the new leader: \
             min {:.0} ms, p50 {:.0} ms, max {:.0} ms; {acked} writes acknowledged, {lost} lost, \
             {errors} errors",
            r.rounds.len(),
            ms(pick(0.0)),
            ms(pick(0.5)),
            ms(pick(1.0)),
        );
    }
}
