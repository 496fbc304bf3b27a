//! The closed-loop KV scenarios: `kv-put`, `kv-get`, `kv-mixed`. Each of `clients` workers
//! sends one request, waits for the answer, records its latency and sends the next, on
//! uniformly random keys of the key space, until the duration or the operation count is
//! reached. Requests that start during the warm-up are sent but not recorded.
//!
//! Requests travel over [`Conns`]: the HTTP pool (Muster, etcd's gateway) or etcd-client's
//! gRPC channels (etcd natively); the loop, the clock and the histogram are the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::client::{Conn, Pool};
use crate::grpc;
use crate::hist::Histogram;
use crate::measure::Measurement;
use crate::report::Report;
use crate::target::{Consistency, Target, Value};

/// How long a run lasts and what it touches.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    pub clients: usize,
    pub connections: usize,
    /// Measured time (after warm-up); used when `ops` is `None`.
    pub duration: Duration,
    /// Measured operations, instead of a duration.
    pub ops: Option<u64>,
    pub warmup: Duration,
    pub keys: u64,
    pub value_size: usize,
    pub prefix: String,
    pub timeout: Duration,
    pub pid: Option<u32>,
}

impl LoadOpts {
    pub fn key(&self, i: u64) -> String {
        format!("{}{i}", self.prefix)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Mix {
    Put,
    Get(Consistency),
    /// `get_percent`% gets with the given consistency, the rest puts.
    Mixed {
        get_percent: u32,
        consistency: Consistency,
    },
}

impl Mix {
    pub fn scenario(self) -> &'static str {
        match self {
            Mix::Put => "kv-put",
            Mix::Get(_) => "kv-get",
            Mix::Mixed { .. } => "kv-mixed",
        }
    }

    fn consistency(self) -> Option<Consistency> {
        match self {
            Mix::Put => None,
            Mix::Get(c) | Mix::Mixed { consistency: c, .. } => Some(c),
        }
    }
}

/// xorshift64*: cheap, good enough to pick keys, seeded per worker so runs repeat.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for key spaces this size).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the workers send through: HTTP connections, or etcd-client's gRPC channels.
#[derive(Clone)]
pub enum Conns {
    Http(Arc<Pool>),
    Grpc(Arc<grpc::Clients>),
}

impl Conns {
    fn for_worker(&self, worker: usize) -> WorkerConn<'_> {
        match self {
            Conns::Http(pool) => WorkerConn::Http(pool.for_worker(worker)),
            Conns::Grpc(clients) => WorkerConn::Grpc(clients.for_worker(worker)),
        }
    }

    /// Connections (HTTP) or channels (gRPC) the workers share.
    fn connections(&self, opts: &LoadOpts) -> usize {
        match self {
            Conns::Http(_) => opts.connections,
            Conns::Grpc(clients) => clients.channels(),
        }
    }

    fn proto(&self, target: &Target) -> String {
        match self {
            Conns::Http(_) => target.ep.proto.name().to_string(),
            Conns::Grpc(_) => "grpc".to_string(),
        }
    }
}

/// One worker's way to the server. One per worker, made once and never moved in the loop,
/// so the size of etcd-client's handle doesn't matter.
#[allow(clippy::large_enum_variant)]
enum WorkerConn<'a> {
    Http(&'a Conn),
    Grpc(grpc::Kv),
}

/// How one operation ended.
enum Outcome {
    Ok,
    /// The server answered, but not with success (or a get found nothing).
    Refused(String),
    /// No answer: connection error or timeout.
    Failed(anyhow::Error),
}

impl WorkerConn<'_> {
    async fn put(&mut self, target: &Target, key: &str, value: &Value, opts: &LoadOpts) -> Outcome {
        match self {
            WorkerConn::Http(conn) => {
                let a = match target.put(key, value) {
                    Ok(req) => conn.send(req, opts.timeout).await,
                    Err(e) => Err(e),
                };
                match a {
                    Ok(a) if target.put_ok(&a) => Outcome::Ok,
                    Ok(a) => Outcome::Refused(describe(&a)),
                    Err(e) => Outcome::Failed(e),
                }
            }
            WorkerConn::Grpc(kv) => match kv.put(key, value.raw(), opts.timeout).await {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Failed(e),
            },
        }
    }

    async fn get(
        &mut self,
        target: &Target,
        key: &str,
        c: Consistency,
        opts: &LoadOpts,
    ) -> Outcome {
        match self {
            WorkerConn::Http(conn) => {
                let a = match target.get(key, c) {
                    Ok(req) => conn.send(req, opts.timeout).await,
                    Err(e) => Err(e),
                };
                match a {
                    Ok(a) if target.get_ok(&a) => Outcome::Ok,
                    Ok(a) => Outcome::Refused(describe(&a)),
                    Err(e) => Outcome::Failed(e),
                }
            }
            WorkerConn::Grpc(kv) => {
                match kv.get(key, c == Consistency::Stale, opts.timeout).await {
                    Ok(true) => Outcome::Ok,
                    Ok(false) => Outcome::Refused(format!("{key} not found")),
                    Err(e) => Outcome::Failed(e),
                }
            }
        }
    }
}

fn describe(a: &crate::client::Answer) -> String {
    format!(
        "{} {}",
        a.status,
        String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
    )
}

/// Writes every key of the key space once, so that gets find what they ask for. Bounded by
/// the key count; fails on the first refused write.
pub async fn preload(target: &Arc<Target>, conns: &Conns, opts: &LoadOpts) -> Result<()> {
    let value = Value::filler(opts.value_size);
    let workers = opts.connections.max(1) as u64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (target, conns, value, opts) =
            (target.clone(), conns.clone(), value.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = conns.for_worker(w as usize);
            let mut k = w;
            while k < opts.keys {
                let key = opts.key(k);
                match conn.put(&target, &key, &value, &opts).await {
                    Outcome::Ok => {}
                    Outcome::Refused(why) => bail!("preloading {key}: {why}"),
                    Outcome::Failed(e) => return Err(e.context(format!("preloading {key}"))),
                }
                k += workers;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

struct Shared {
    measure_start: Instant,
    /// `None` in ops mode.
    end: Option<Instant>,
    ops_limit: Option<u64>,
    ops_taken: AtomicU64,
}

#[derive(Default)]
struct WorkerResult {
    hist: Histogram,
    errors: u64,
    last_done: Option<Instant>,
    first_error: Option<String>,
}

async fn worker(
    id: usize,
    target: Arc<Target>,
    conns: Conns,
    shared: Arc<Shared>,
    mix: Mix,
    opts: LoadOpts,
) -> WorkerResult {
    let mut rng = Rng::new(id as u64 + 1);
    let value = Value::filler(opts.value_size);
    let mut conn = conns.for_worker(id);
    let mut out = WorkerResult::default();
    loop {
        let now = Instant::now();
        if shared.end.is_some_and(|end| now >= end) {
            break;
        }
        let measuring = now >= shared.measure_start;
        if measuring {
            if let Some(limit) = shared.ops_limit {
                if shared.ops_taken.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
            }
        }
        let key = opts.key(rng.below(opts.keys));
        let get = match mix {
            Mix::Put => None,
            Mix::Get(c) => Some(c),
            Mix::Mixed {
                get_percent,
                consistency,
            } => (rng.below(100) < get_percent as u64).then_some(consistency),
        };
        let t0 = Instant::now();
        let outcome = match get {
            Some(c) => conn.get(&target, &key, c, &opts).await,
            None => conn.put(&target, &key, &value, &opts).await,
        };
        let done = Instant::now();
        let ok = matches!(outcome, Outcome::Ok);
        let transport_error = matches!(outcome, Outcome::Failed(_));
        if measuring {
            out.hist.record_duration(done - t0);
            out.last_done = Some(done);
            if !ok {
                out.errors += 1;
            }
        }
        if out.first_error.is_none() {
            match &outcome {
                Outcome::Ok => {}
                Outcome::Refused(why) => out.first_error = Some(why.clone()),
                Outcome::Failed(e) => out.first_error = Some(format!("{e:#}")),
            }
        }
        if transport_error {
            // The server is gone or refusing: don't spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    out
}

/// Runs one closed-loop scenario and reports the measured window.
pub async fn run(target: Arc<Target>, conns: Conns, mix: Mix, opts: &LoadOpts) -> Result<Report> {
    if opts.keys == 0 || opts.clients == 0 {
        bail!("--keys and --clients must be at least 1");
    }
    let loadavg = crate::report::loadavg();
    let start = Instant::now();
    let measure_start = start + opts.warmup;
    let shared = Arc::new(Shared {
        measure_start,
        end: match opts.ops {
            Some(_) => None,
            None => Some(measure_start + opts.duration),
        },
        ops_limit: opts.ops,
        ops_taken: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for id in 0..opts.clients {
        tasks.push(tokio::spawn(worker(
            id,
            target.clone(),
            conns.clone(),
            shared.clone(),
            mix,
            opts.clone(),
        )));
    }
    tokio::time::sleep_until(measure_start.into()).await;
    let measurement = Measurement::start(opts.pid)?;

    let mut hist = Histogram::default();
    let mut errors = 0;
    let mut last_done = measure_start;
    let mut first_error = None;
    for t in tasks {
        let r = t.await.map_err(|e| anyhow!("worker failed: {e}"))?;
        hist.merge(&r.hist);
        errors += r.errors;
        if let Some(d) = r.last_done {
            last_done = last_done.max(d);
        }
        first_error = first_error.or(r.first_error);
    }
    let seconds = (last_done - measure_start).as_secs_f64();
    let usage = measurement.finish()?;
    let ops = hist.count();
    Ok(Report {
        scenario: mix.scenario().to_string(),
        target: target.kind.name().to_string(),
        addr: target.ep.addr.to_string(),
        proto: conns.proto(&target),
        consistency: mix.consistency().map(|c| c.name().to_string()),
        clients: opts.clients,
        connections: conns.connections(opts),
        keys: opts.keys,
        value_size: opts.value_size,
        seconds,
        ops,
        errors,
        ops_per_sec: if seconds > 0.0 {
            ops as f64 / seconds
        } else {
            0.0
        },
        latency_us: hist.summary_us(),
        server: usage.server,
        client_cpu_s: usage.client_cpu_s,
        others_cpu_s: usage.others_cpu_s,
        loadavg,
        first_error,
        watch: None,
        ready: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_spreads_over_the_key_space() {
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(Rng::new(5).next(), Rng::new(5).next());
    }
}
