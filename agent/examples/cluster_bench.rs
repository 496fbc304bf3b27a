//! Three servers in one process (127.0.0.1–3, real TCP between them, persistent data dirs,
//! `raft_multiplier` 1): KV PUT and GET throughput and p99 with 64 concurrent HTTP clients on
//! the leader and on a follower, then the time from stopping the leader to the first
//! acknowledged write through a follower. Figures go to BENCHMARKS.md; nothing here asserts.
//!
//! `cargo run --release -p muster-agent --example cluster_bench [seconds-per-phase]`
//!
//! Until gossip is merged the servers find each other through a membership view fed here, as
//! in `agent/tests/cluster.rs`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_agent::server::{self_member, Agent};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CLIENTS: usize = 64;

struct Server {
    agent: Arc<Agent>,
    token: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    http: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let mut specs = Vec::new();
    for i in 0..3 {
        let ip: IpAddr = format!("127.0.0.{}", i + 1).parse()?;
        let port = TcpListener::bind(SocketAddr::new(ip, 0))
            .await?
            .local_addr()?
            .port();
        let args: Vec<String> = [
            "-server",
            "-bootstrap-expect",
            "3",
            "-bind",
            &ip.to_string(),
            "-client",
            &ip.to_string(),
            "-data-dir",
            &dir.path().join(format!("s{i}")).display().to_string(),
            "-node",
            &format!("s{}", i + 1),
            "-node-id",
            &uuid::Uuid::new_v4().to_string(),
            "-server-port",
            &port.to_string(),
            "-dns-port",
            "-1",
            "-serf-lan-port",
            "-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut config = muster_agent::config::from_agent_args(args)?;
        config.raft.raft_multiplier = 1;
        specs.push((ip, port, config));
    }
    let members = specs
        .iter()
        .map(|(_, _, c)| self_member(c, c.node_id.as_deref().unwrap_or_default()))
        .collect();
    let (_view_tx, view) = tokio::sync::watch::channel(Arc::new(members));
    let mut servers = Vec::new();
    for (ip, port, config) in specs {
        let http = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let http_addr = http.local_addr()?;
        let rpc = TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let token = CancellationToken::new();
        let (agent, tasks) = Agent::start_cluster(
            config,
            vec![http],
            Default::default(),
            Some(rpc),
            Some(view.clone()),
            token.clone(),
        )
        .await?;
        servers.push(Some(Server {
            agent,
            token,
            tasks,
            http: http_addr,
        }));
    }
    let leader = wait_leader(&servers).await?;
    let follower = (0..3).find(|i| *i != leader).unwrap_or(0);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let addrs: Vec<SocketAddr> = servers.iter().flatten().map(|s| s.http).collect();
    let addr = |i: usize| addrs[i];
    println!("3 servers, {CLIENTS} clients, {secs}s per phase");
    for (name, target, put) in [
        ("PUT on the leader", addr(leader), true),
        ("PUT on a follower", addr(follower), true),
        ("GET on the leader", addr(leader), false),
        ("GET on a follower (default)", addr(follower), false),
    ] {
        let (n, p50, p99, errors) = load(&http, target, put, Duration::from_secs(secs)).await;
        println!(
            "{name:<30} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {errors}",
            n as f64 / secs as f64,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }

    // Failover: stop the leader, write through a follower until one is acknowledged.
    let target = addr(follower);
    let stopped = Instant::now();
    if let Some(mut s) = servers[leader].take() {
        s.token.cancel();
        while s.tasks.join_next().await.is_some() {}
        s.agent.stop().await;
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = http
            .put(format!("http://{target}/v1/kv/failover"))
            .body("x")
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().is_success() {
                break;
            }
        }
        if stopped.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("no write acknowledged within 60 s of stopping the leader");
        }
    }
    println!(
        "leader stopped -> first acknowledged write via a follower: {:.0} ms ({attempts} attempts)",
        stopped.elapsed().as_secs_f64() * 1e3
    );
    for s in servers.into_iter().flatten() {
        let mut s = s;
        s.token.cancel();
        while s.tasks.join_next().await.is_some() {}
        s.agent.stop().await;
    }
    Ok(())
}

async fn wait_leader(servers: &[Option<Server>]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for (i, s) in servers.iter().enumerate() {
            if let Some(s) = s {
                if s.agent.raft.metrics().borrow().current_leader == Some(s.agent.raft_id) {
                    return Ok(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no leader")
}

/// `CLIENTS` loops of PUT (distinct keys) or GET (one key) for `time`; (count, p50, p99, errors).
async fn load(
    http: &reqwest::Client,
    target: SocketAddr,
    put: bool,
    time: Duration,
) -> (usize, Duration, Duration, usize) {
    let _ = http
        .put(format!("http://{target}/v1/kv/bench/get"))
        .body("value")
        .send()
        .await;
    let end = Instant::now() + time;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let http = http.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let r = if put {
                    http.put(format!("http://{target}/v1/kv/bench/{c}/{i}"))
                        .body("0123456789abcdef")
                        .send()
                        .await
                } else {
                    http.get(format!("http://{target}/v1/kv/bench/get"))
                        .send()
                        .await
                };
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(Ok((lat, e))) = tasks.join_next().await {
        all.extend(lat);
        errors += e;
    }
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (all.len(), pick(0.5), pick(0.99), errors)
}
