//! The `gossip-failure` scenario (issue 7): N `muster agent -dev` processes on free loopback
//! ports joined into one LAN pool by `-retry-join`; each round kills one (SIGKILL) and times
//! how long until the first, and then every, surviving member reports it `failed` in
//! `/v1/agent/members`; the victim is then started again and the pool waits until everyone
//! sees it alive before the next round. Every process started here is killed on exit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use muster_api::client::{Client, ClientConfig};
use tokio::process::{Child, Command};

use crate::client::free_port;

#[derive(Debug, Clone)]
pub struct GossipOpts {
    pub bin: PathBuf,
    pub agents: usize,
    pub rounds: usize,
    pub timeout: Duration,
    pub poll: Duration,
}

struct Node {
    name: String,
    args: Vec<String>,
    http: String,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self, bin: &PathBuf) -> Result<()> {
        let child = Command::new(bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow!("spawn {}: {e}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn client(&self) -> Result<Client> {
        Client::new(ClientConfig::new(self.http.clone())).map_err(|e| anyhow!("{e}"))
    }
}

/// `name → status` as `node` reports its members (empty when it does not answer).
async fn statuses(client: &Client) -> Vec<(String, u8)> {
    client
        .agent_members()
        .await
        .map(|ms| ms.into_iter().map(|m| (m.name, m.status)).collect())
        .unwrap_or_default()
}

async fn wait_all(
    nodes: &[Node],
    clients: &[Client],
    victim: Option<usize>,
    want: &str,
    status: u8,
    timeout: Duration,
    poll: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut ok = true;
        for (i, c) in clients.iter().enumerate() {
            if Some(i) == victim {
                continue;
            }
            let s = statuses(c).await;
            if !s.iter().any(|(n, st)| n == want && *st == status) {
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{want} never reached status {status} on every member within {timeout:?} ({} agents)",
                nodes.len()
            );
        }
        tokio::time::sleep(poll).await;
    }
}

pub struct GossipResult {
    /// Per round: (first member saw it failed, every member saw it failed).
    pub rounds: Vec<(Duration, Duration)>,
}

pub async fn run(opts: &GossipOpts) -> Result<GossipResult> {
    if opts.agents < 2 {
        bail!("--agents must be at least 2");
    }
    let mut nodes = Vec::new();
    let mut seed_gossip = String::new();
    for i in 0..opts.agents {
        let http = free_port()?;
        let serf = free_port()?;
        let name = format!("bench-g{i}");
        let mut args: Vec<String> = [
            "agent",
            "-dev",
            "-node",
            &name,
            "-http-port",
            &http.to_string(),
            "-dns-port",
            "-1",
            "-server-port",
            &free_port()?.to_string(),
            "-serf-lan-port",
            &serf.to_string(),
            "-serf-wan-port",
            "-1",
            "-log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if i == 0 {
            seed_gossip = format!("127.0.0.1:{serf}");
        } else {
            args.extend([
                "-retry-join".to_string(),
                seed_gossip.clone(),
                "-retry-interval".to_string(),
                "1s".to_string(),
            ]);
        }
        let mut node = Node {
            name,
            args,
            http: format!("127.0.0.1:{http}"),
            child: None,
        };
        node.spawn(&opts.bin)?;
        nodes.push(node);
    }
    let clients: Vec<Client> = nodes.iter().map(Node::client).collect::<Result<_>>()?;
    for n in &nodes {
        wait_all(&nodes, &clients, None, &n.name, 1, opts.timeout, opts.poll).await?;
    }
    let mut rounds = Vec::new();
    for round in 0..opts.rounds {
        let victim = 1 + round % (opts.agents - 1);
        let name = nodes[victim].name.clone();
        let start = Instant::now();
        if let Some(mut child) = nodes[victim].child.take() {
            child.start_kill()?;
            let _ = child.wait().await;
        }
        let mut first = None;
        let mut seen = vec![false; nodes.len()];
        seen[victim] = true;
        let deadline = start + opts.timeout;
        while seen.iter().any(|s| !s) {
            for (i, c) in clients.iter().enumerate() {
                if seen[i] {
                    continue;
                }
                if statuses(c)
                    .await
                    .iter()
                    .any(|(n, st)| *n == name && *st == 4)
                {
                    seen[i] = true;
                    first.get_or_insert_with(|| start.elapsed());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "round {round}: {name} not failed everywhere within {:?}",
                    opts.timeout
                );
            }
            tokio::time::sleep(opts.poll).await;
        }
        let every = start.elapsed();
        rounds.push((first.unwrap_or(every), every));
        eprintln!(
            "round {}: {name} failed on the first member after {:?}, on every member after {:?}",
            round + 1,
            first.unwrap_or(every),
            every
        );
        // Back in the pool before the next round.
        nodes[victim].spawn(&opts.bin)?;
        wait_all(&nodes, &clients, None, &name, 1, opts.timeout, opts.poll).await?;
    }
    Ok(GossipResult { rounds })
}

pub fn print(r: &GossipResult, json: bool) {
    let mut every: Vec<Duration> = r.rounds.iter().map(|(_, e)| *e).collect();
    let mut first: Vec<Duration> = r.rounds.iter().map(|(f, _)| *f).collect();
    every.sort();
    first.sort();
    let pick = crate::hist::nearest;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": "gossip-failure",
                "rounds": r.rounds.len(),
                "failed_everywhere_ms": {"p50": ms(pick(&every, 0.5)), "max": ms(pick(&every, 1.0)), "min": ms(pick(&every, 0.0))},
                "failed_first_ms": {"p50": ms(pick(&first, 0.5)), "max": ms(pick(&first, 1.0)), "min": ms(pick(&first, 0.0))},
            })
        );
    } else {
        println!(
            "gossip-failure: {} rounds; killed agent failed on every member: min {:.0} ms, p50 {:.0} ms, max {:.0} ms; on the first member: p50 {:.0} ms",
            r.rounds.len(),
            ms(pick(&every, 0.0)),
            ms(pick(&every, 0.5)),
            ms(pick(&every, 1.0)),
            ms(pick(&first, 0.5)),
        );
    }
}
