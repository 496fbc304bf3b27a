//! `muster-bench`: a load generator for Muster's HTTP API and, through the same code paths,
//! etcd's v3 JSON gateway, plus the few measurements a comparison needs (time to ready, idle
//! memory, this machine's fsync latency).
//!
//! Layout: `client` (hyper connections, loopback only) → `target` (what a put/get/watch is on
//! each server) → the scenarios (`kv`: closed-loop put/get/mixed, `watch`: blocking queries
//! and a writer, `ready`: spawn-to-ready and idle RSS) → `report` (table and JSON). `procfs`
//! and `measure` read CPU and memory from /proc; `hist` holds latencies; `compare` runs both
//! servers alternately and prints the ratios; `fsync` times appends + fdatasync; `checks` runs
//! one agent with N HTTP-checked services against a server inside this process (issue 3);
//! `templater` measures issue 5's daemon (write → rename/reload, requests per shared prefix,
//! render time, RSS).
//! `grpc` drives etcd natively over gRPC with etcd-client (cargo feature `grpc`).
//!
//! Every loop here is bounded by a duration or a count, every request goes to a loopback
//! address, and every process this tool starts it also stops.

mod checks;
mod client;
mod compare;
mod failover;
mod fsync;
mod gossip;
mod grpc;
mod hist;
mod kv;
mod measure;
mod procfs;
mod ready;
mod report;
mod target;
mod templater;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use client::{Endpoint, Pool, Proto};
use kv::{Conns, LoadOpts, Mix};
use report::Report;
use target::{Consistency, Kind, Target};

#[derive(Parser, Debug)]
#[command(
    name = "muster-bench",
    about = "Load generator for Muster (and etcd, to compare)"
)]
struct Cli {
    /// Worker threads of the load generator's runtime (it shares the machine with the server).
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// PUT random keys of the key space (etcd: /v3/kv/put; etcd-grpc: KV.Put).
    KvPut {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// GET random keys, written once beforehand (etcd: /v3/kv/range; etcd-grpc: KV.Range).
    KvGet {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, value_enum, default_value = "default")]
        consistency: Consistency,
        /// Don't write the key space first (it is already there).
        #[arg(long)]
        no_preload: bool,
    },
    /// Gets and puts on random keys (90% gets by default).
    KvMixed {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, value_enum, default_value = "default")]
        consistency: Consistency,
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(0..=100))]
        get_percent: u32,
        #[arg(long)]
        no_preload: bool,
    },
    /// N blocking queries (etcd: watch streams) on distinct keys and one writer; measures the
    /// time from the write's acknowledgement to the watcher's answer.
    Watch {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Spawn the server repeatedly: time to the first ready answer, and idle RSS.
    Ready(ReadyArgs),
    /// This machine's sequential fsync latency (append a block + fdatasync, in a loop).
    Fsync {
        /// Directory to write in (put it on the disk the servers use).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, value_parser = parse_duration, default_value = "1s")]
        time: Duration,
        #[arg(long, default_value_t = 4096)]
        block_size: usize,
        #[arg(long)]
        json: bool,
    },
    /// One agent with N services, an HTTP check each against a server inside this process:
    /// the agent's CPU and RSS, and the time from a check failing to the instance leaving
    /// `/v1/health/service/:name?passing` (Muster only: etcd has no health checks).
    Checks(ChecksArgs),
    /// Run scenarios against Muster and etcd alternately and print one table with ratios.
    Compare(CompareArgs),
    /// N agents in one LAN gossip pool: time from `kill -9` of one to it showing `failed` on
    /// every other member (issue 7).
    GossipFailure {
        /// Agents in the pool.
        #[arg(long, default_value_t = 4)]
        agents: usize,
        /// Kills (each victim restarted and rejoined before the next).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// The agent binary (default: `muster` next to this binary, else on PATH).
        #[arg(long)]
        bin: Option<PathBuf>,
        /// Give up on a wait after this long.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        timeout: Duration,
        /// Pause between two polls of the members' `/v1/agent/members`.
        #[arg(long, value_parser = parse_duration, default_value = "20ms")]
        poll: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Three servers on 127.0.0.1–3: time from `kill -9` of the leader to the first
    /// acknowledged write sent after it, and every acknowledged write read back (issue 7).
    LeaderFailover {
        /// Kills (each victim restarted and the cluster settled before the next).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Concurrent writers, spread over the two followers.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// `performance.raft_multiplier` of the servers (1 = fastest; Consul's default is 5).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=10))]
        raft_multiplier: u8,
        /// Writing before the kill.
        #[arg(long, value_parser = parse_duration, default_value = "1s")]
        warmup: Duration,
        /// The agent binary (default: `muster` next to this binary, else on PATH).
        #[arg(long)]
        bin: Option<PathBuf>,
        /// Give up on a wait after this long.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        timeout: Duration,
        /// Keep the servers' logs (at `info`) in this directory, one file per server.
        #[arg(long)]
        log_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// templater (issue 5): KV write → file renamed and reload started (p50/p99), requests and
    /// connections for N resources on one prefix, render time of 10,000 keys, RSS.
    Templater(TemplaterArgs),
    /// Wait until a server answers "ready" (Muster: a leader; etcd: healthy), for scripts.
    Wait {
        #[arg(long, value_enum, default_value = "muster")]
        target: Kind,
        #[arg(long)]
        addr: Option<String>,
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        timeout: Duration,
    },
    /// Print N free loopback TCP ports (for scripts).
    Ports {
        #[arg(default_value_t = 1)]
        n: usize,
    },
}

#[derive(Args, Debug, Clone)]
struct ServerArgs {
    /// muster, etcd (its v3 JSON gateway over HTTP), or etcd-grpc (etcd natively over gRPC
    /// with etcd-client; needs a build with `--features grpc`).
    #[arg(long, value_enum, default_value = "muster")]
    target: Kind,
    /// IP:PORT of the server's HTTP API (loopback only; default 127.0.0.1:8500 for Muster,
    /// 127.0.0.1:2379 for etcd, its client port, for both the gateway and gRPC).
    #[arg(long)]
    addr: Option<String>,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// etcd-grpc: gRPC channels (HTTP/2 connections) the clients share, as a real gRPC client
    /// multiplexes its callers on one; worker i uses channel i % N.
    #[arg(long, default_value_t = 1)]
    grpc_channels: usize,
    /// The server's pid: report its CPU seconds and RSS for the run (from /proc).
    #[arg(long)]
    pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl ServerArgs {
    fn target(&self) -> Result<Target> {
        let addr = self
            .addr
            .clone()
            .unwrap_or_else(|| self.target.default_addr().to_string());
        Ok(Target::new(
            self.target,
            Endpoint::new(&addr, proto_for(self.target, self.http2)?)?,
        ))
    }
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Concurrent workers, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Keep-alive connections the workers share (default: one per client).
    #[arg(long)]
    connections: Option<usize>,
    /// Measured time, after the warm-up.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Measured operations instead of a duration (watch: writes).
    #[arg(long)]
    ops: Option<u64>,
    /// Key space: keys PREFIX0 .. PREFIX(N-1).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Load sent but not recorded before the measurement starts.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    warmup: Duration,
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// A request without an answer after this long is an error.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
}

impl LoadArgs {
    fn opts(&self, pid: Option<u32>) -> LoadOpts {
        LoadOpts {
            clients: self.clients,
            connections: self.connections.unwrap_or(self.clients).max(1),
            duration: self.duration,
            ops: self.ops,
            warmup: self.warmup,
            keys: self.keys,
            value_size: self.value_size,
            prefix: self.prefix.clone(),
            timeout: self.timeout,
            pid,
        }
    }
}

#[derive(Args, Debug, Clone)]
struct WatchArgs {
    /// Blocking queries (etcd: watch streams), one per key.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Writes per second, spread over the watched keys in turn.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// `wait` of each blocking query.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    wait: Duration,
    /// With --pid: hold every watcher parked this long, with no writes, before writing, and
    /// report the server's RSS growth and CPU in that time (0s skips it).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    idle: Duration,
}

#[derive(Args, Debug)]
struct ReadyArgs {
    #[arg(long, value_enum, default_value = "muster")]
    target: Kind,
    /// The server binary (default: `muster` next to this binary, else `muster`/`etcd` on PATH).
    #[arg(long)]
    bin: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    spawns: usize,
    /// Idle time before the RSS is read.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    settle: Duration,
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Pause between two readiness polls.
    #[arg(long, value_parser = parse_duration, default_value = "1ms")]
    poll: Duration,
    /// An extra argument for the server (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true)]
    extra_args: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which_agent").required(true).args(["agent", "addr"])))]
struct ChecksArgs {
    /// Start a `muster agent -dev` of its own on free loopback ports (stopped on exit).
    #[arg(long)]
    agent: bool,
    /// Use the agent running at IP:PORT (loopback only); the bench's services are
    /// deregistered at the end.
    #[arg(long)]
    addr: Option<String>,
    /// The running agent's pid (with --addr): its CPU and RSS, from /proc.
    #[arg(long, requires = "addr")]
    pid: Option<u32>,
    /// The agent binary for --agent (default: `muster` next to this binary, else on PATH).
    #[arg(long, conflicts_with = "addr")]
    bin: Option<PathBuf>,
    /// An extra argument for the spawned agent (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true, conflicts_with = "addr")]
    extra_args: Vec<String>,
    /// Service instances, each with one HTTP check.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Distinct service names (instance i is name i % names).
    #[arg(long, default_value_t = 100)]
    names: usize,
    /// Every check's interval.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    interval: Duration,
    /// The steady-state window for CPU and RSS, once every check passes.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    measure: Duration,
    /// Pause between "all passing" and the window.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    settle: Duration,
    /// Failure-detection samples (0: none).
    #[arg(long, default_value_t = 20)]
    failures: usize,
    /// Samples run at once, on distinct service names.
    #[arg(long, default_value_t = 4)]
    failure_concurrency: usize,
    /// Concurrent registrations (one keep-alive connection each).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// A request (other than a blocking query) without an answer after this long is an error.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Service names are PREFIX<j>, IDs PREFIX<j>-<i>.
    #[arg(long, default_value = "bench-chk-")]
    prefix: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct TemplaterArgs {
    /// The agent binary (default: `muster` next to this binary, else on PATH).
    #[arg(long)]
    muster_bin: Option<PathBuf>,
    /// The templater binary (default: `templater` next to this binary, else on PATH).
    #[arg(long)]
    templater_bin: Option<PathBuf>,
    /// Timed KV writes (one resource, no wait).
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Pause between two timed writes.
    #[arg(long, value_parser = parse_duration, default_value = "20ms")]
    gap: Duration,
    /// Resources sharing one prefix for the request count.
    #[arg(long, default_value_t = 100)]
    resources: usize,
    /// KV writes during the request count.
    #[arg(long, default_value_t = 10)]
    count_writes: usize,
    /// Keys the render-time template iterates.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Timed renders.
    #[arg(long, default_value_t = 50)]
    renders: usize,
    /// Directory for the destination files (default: the system's temp dir); its disk's
    /// fsync latency is part of the write → file figure (/dev/shm: none).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CompareArgs {
    #[arg(long, default_value = "127.0.0.1:8500")]
    muster_addr: String,
    #[arg(long)]
    muster_pid: Option<u32>,
    #[arg(long, default_value = "127.0.0.1:2379")]
    etcd_addr: String,
    #[arg(long)]
    etcd_pid: Option<u32>,
    /// Also drive etcd natively over gRPC (etcd-client, on --etcd-addr) in the KV scenarios,
    /// right after its gateway, and print the Muster/etcd-gRPC ratios (needs `--features grpc`).
    #[arg(long)]
    etcd_grpc: bool,
    /// With --etcd-grpc: gRPC channels the clients share (default one, as a real client).
    #[arg(long, default_value_t = 1)]
    grpc_channels: usize,
    /// With --etcd-grpc: the scenarios also run over gRPC (watch never is).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kv-put,kv-get,kv-get-consistent,kv-get-stale,kv-mixed"
    )]
    grpc_scenarios: Vec<compare::Scenario>,
    /// Drive Muster over h2c (etcd stays on HTTP/1.1: its gateway has no h2c).
    #[arg(long)]
    http2: bool,
    /// Times to run each scenario on each server (Muster, etcd, Muster, etcd, ...).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kv-put,kv-get,kv-get-stale,kv-mixed,watch"
    )]
    scenarios: Vec<compare::Scenario>,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    watch: WatchArgs,
    /// Print each run's full report to stderr as it completes.
    #[arg(long)]
    verbose: bool,
    /// Print the rows (every report and the ratios) as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the rows as JSON to this file (the table is still printed).
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// HTTP/2 with prior knowledge goes to etcd's gRPC server (its client port splits connections
/// by protocol), not to the JSON gateway, so etcd's gateway is driven over HTTP/1.1 only. For
/// etcd-grpc the endpoint serves only `/health` (HTTP/1.1); the load goes through etcd-client.
fn proto_for(kind: Kind, http2: bool) -> Result<Proto> {
    match (kind, http2) {
        (Kind::EtcdGrpc, _) | (_, false) => Ok(Proto::Http1),
        (Kind::Muster, true) => Ok(Proto::Http2),
        (Kind::Etcd, true) => bail!(
            "--http2: etcd answers h2c with gRPC, not its JSON gateway; drive etcd over HTTP/1.1"
        ),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    muster_api::duration::parse(s)
}

fn print_report(r: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print!("{}", report::human(r));
    }
    Ok(())
}

async fn kv_scenario(server: &ServerArgs, load: &LoadArgs, mix: Mix, preload: bool) -> Result<()> {
    let target = Arc::new(server.target()?);
    let opts = load.opts(server.pid);
    let conns = if target.kind.is_grpc() {
        let clients =
            grpc::Clients::connect(target.ep.addr, server.grpc_channels, opts.timeout).await?;
        Conns::Grpc(Arc::new(clients))
    } else {
        Conns::Http(Arc::new(Pool::new(&target.ep, opts.connections)))
    };
    if preload {
        kv::preload(&target, &conns, &opts).await?;
    }
    let r = kv::run(target, conns, mix, &opts).await?;
    print_report(&r, server.json)
}

fn default_bin(kind: Kind) -> PathBuf {
    match kind {
        Kind::Muster => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("muster")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("muster")),
        Kind::Etcd | Kind::EtcdGrpc => PathBuf::from("etcd"),
    }
}

async fn main_async(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::KvPut { server, load } => kv_scenario(&server, &load, Mix::Put, false).await,
        Cmd::KvGet {
            server,
            load,
            consistency,
            no_preload,
        } => kv_scenario(&server, &load, Mix::Get(consistency), !no_preload).await,
        Cmd::KvMixed {
            server,
            load,
            consistency,
            get_percent,
            no_preload,
        } => {
            let mix = Mix::Mixed {
                get_percent,
                consistency,
            };
            kv_scenario(&server, &load, mix, !no_preload).await
        }
        Cmd::Watch {
            server,
            load,
            watch,
        } => {
            let target = Arc::new(server.target()?);
            let opts = watch::WatchOpts {
                load: load.opts(server.pid),
                watchers: watch.watchers,
                rate: watch.rate,
                wait: watch.wait,
                idle: watch.idle,
            };
            let pool = Arc::new(Pool::new(&target.ep, opts.load.connections));
            let r = watch::run(target, pool, &opts).await?;
            print_report(&r, server.json)
        }
        Cmd::Ready(a) => {
            let opts = ready::ReadyOpts {
                kind: a.target,
                bin: a.bin.unwrap_or_else(|| default_bin(a.target)),
                spawns: a.spawns,
                settle: a.settle,
                timeout: a.timeout,
                poll: a.poll,
                extra_args: a.extra_args,
            };
            let r = ready::run(&opts).await?;
            print_report(&r, a.json)
        }
        Cmd::Fsync {
            dir,
            time,
            block_size,
            json,
        } => {
            let r =
                tokio::task::spawn_blocking(move || fsync::run(&dir, time, block_size)).await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", fsync::human(&r));
            }
            Ok(())
        }
        Cmd::GossipFailure {
            agents,
            rounds,
            bin,
            timeout,
            poll,
            json,
        } => {
            let opts = gossip::GossipOpts {
                bin: bin.unwrap_or_else(|| default_bin(Kind::Muster)),
                agents,
                rounds,
                timeout,
                poll,
            };
            let r = gossip::run(&opts).await?;
            gossip::print(&r, json);
            Ok(())
        }
        Cmd::LeaderFailover {
            rounds,
            writers,
            raft_multiplier,
            warmup,
            bin,
            timeout,
            log_dir,
            json,
        } => {
            if let Some(d) = &log_dir {
                std::fs::create_dir_all(d)?;
            }
            let opts = failover::FailoverOpts {
                log_dir,
                bin: bin.unwrap_or_else(|| default_bin(Kind::Muster)),
                rounds,
                writers,
                raft_multiplier,
                warmup,
                timeout,
            };
            let r = failover::run(&opts).await?;
            failover::print(&r, json);
            Ok(())
        }
        Cmd::Templater(a) => {
            let sibling = |name: &str| {
                std::env::current_exe()
                    .ok()
                    .and_then(|exe| exe.parent().map(|d| d.join(name)))
                    .filter(|p| p.exists())
                    .unwrap_or_else(|| PathBuf::from(name))
            };
            let opts = templater::TemplaterOpts {
                muster_bin: a.muster_bin.unwrap_or_else(|| default_bin(Kind::Muster)),
                templater_bin: a.templater_bin.unwrap_or_else(|| sibling("templater")),
                writes: a.writes,
                gap: a.gap,
                resources: a.resources,
                count_writes: a.count_writes,
                keys: a.keys,
                renders: a.renders,
                dir: a.dir.unwrap_or_else(std::env::temp_dir),
            };
            let r = templater::run(&opts).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", templater::human(&r));
            }
            Ok(())
        }
        Cmd::Checks(a) => {
            let agent = match a.addr {
                Some(addr) => checks::AgentChoice::Running { addr, pid: a.pid },
                None => checks::AgentChoice::Spawn {
                    bin: a.bin.unwrap_or_else(|| default_bin(Kind::Muster)),
                    extra_args: a.extra_args,
                },
            };
            let opts = checks::ChecksOpts {
                agent,
                services: a.services,
                names: a.names,
                interval: a.interval,
                measure: a.measure,
                settle: a.settle,
                failures: a.failures,
                failure_concurrency: a.failure_concurrency,
                clients: a.clients,
                timeout: a.timeout,
                prefix: a.prefix,
            };
            let r = checks::run(&opts).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", checks::human(&r));
            }
            Ok(())
        }
        Cmd::Compare(a) => {
            if a.rounds == 0 || a.scenarios.is_empty() {
                bail!("nothing to run: --rounds and --scenarios must not be empty");
            }
            let load = a.load.opts(None);
            let mut muster = compare::Side::new(
                Target::new(
                    Kind::Muster,
                    Endpoint::new(&a.muster_addr, proto_for(Kind::Muster, a.http2)?)?,
                ),
                a.muster_pid,
                load.connections,
            );
            let mut etcd = compare::Side::new(
                Target::new(Kind::Etcd, Endpoint::new(&a.etcd_addr, Proto::Http1)?),
                a.etcd_pid,
                load.connections,
            );
            let mut etcd_grpc = match a.etcd_grpc {
                true => Some(
                    compare::Side::grpc(
                        Target::new(Kind::EtcdGrpc, Endpoint::new(&a.etcd_addr, Proto::Http1)?),
                        a.etcd_pid,
                        a.grpc_channels,
                        load.timeout,
                    )
                    .await?,
                ),
                false => None,
            };
            let watch = watch::WatchOpts {
                load: load.clone(),
                watchers: a.watch.watchers,
                rate: a.watch.rate,
                wait: a.watch.wait,
                idle: a.watch.idle,
            };
            let rows = compare::run(
                &mut muster,
                &mut etcd,
                etcd_grpc
                    .as_mut()
                    .map(|side| (side, a.grpc_scenarios.as_slice())),
                &a.scenarios,
                a.rounds,
                &load,
                &watch,
                a.verbose,
            )
            .await?;
            if let Some(path) = &a.json_out {
                std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", compare::table(&rows));
            }
            Ok(())
        }
        Cmd::Wait {
            target,
            addr,
            timeout,
        } => {
            let addr = addr.unwrap_or_else(|| target.default_addr().to_string());
            let t = Target::new(target, Endpoint::new(&addr, Proto::Http1)?);
            let waited = ready::wait_ready(&t, timeout).await?;
            eprintln!("{} at {addr} ready after {waited:?}", target.name());
            Ok(())
        }
        Cmd::Ports { n } => {
            // Hold every listener until all are chosen, so the ports differ.
            let listeners = (0..n)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
                .collect::<std::io::Result<Vec<_>>>()?;
            for l in &listeners {
                println!("{}", l.local_addr()?.port());
            }
            Ok(())
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(main_async(cli.cmd))
}
