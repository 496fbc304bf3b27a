//! The `watch` scenario: `watchers` blocking queries (Muster) or watch streams (etcd), each on
//! a key of its own, and one writer that updates those keys in turn at a fixed rate. Every
//! value carries the write's sequence number, so each wake-up is matched to its write: the
//! latency is from the write's acknowledgement (and, separately, from its sending) to the
//! moment the watcher has the new value.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::client::{self, Conn, Pool, Proto};
use crate::hist::Histogram;
use crate::kv::LoadOpts;
use crate::measure::Measurement;
use crate::procfs;
use crate::report::{Report, WatchStats};
use crate::target::{self, Kind, Target, Value};

#[derive(Debug, Clone)]
pub struct WatchOpts {
    pub load: LoadOpts,
    pub watchers: usize,
    /// Writes per second (one writer, one write in flight).
    pub rate: f64,
    /// The `wait` of each blocking query.
    pub wait: Duration,
    /// With the server's pid: how long to hold every watcher parked, with no writes, before
    /// the writer starts, measuring the server's RSS and CPU in that time.
    pub idle: Duration,
}

/// Wake-ups seen by the watchers: (sequence number, when).
type Wakes = Arc<Mutex<Vec<(u64, Instant)>>>;

fn push_wakes(wakes: &Wakes, values: Vec<Vec<u8>>, at: Instant) {
    let seqs: Vec<u64> = values
        .iter()
        .filter_map(|v| target::decode_seq(v))
        .collect();
    if seqs.is_empty() {
        return;
    }
    if let Ok(mut w) = wakes.lock() {
        w.extend(seqs.into_iter().map(|s| (s, at)));
    }
}

/// What the watchers report back.
struct Tally {
    armed: Arc<AtomicUsize>,
    wakes: Wakes,
    spurious: Arc<AtomicUsize>,
}

/// One Muster watcher: a blocking query on `key`, re-armed with the index of each answer.
async fn muster_watcher(
    target: Arc<Target>,
    conn: Arc<ConnRef>,
    key: String,
    wait: Duration,
    hard_end: Instant,
    tally: Tally,
) -> Result<()> {
    let Tally {
        armed,
        wakes,
        spurious,
    } = tally;
    let wait_s = muster_api::duration::format(wait);
    let mut index = 0u64;
    while Instant::now() < hard_end {
        let path = if index == 0 {
            format!("/v1/kv/{key}")
        } else {
            format!("/v1/kv/{key}?index={index}&wait={wait_s}")
        };
        let req = target
            .ep
            .request(Method::GET, &path, None, bytes::Bytes::new())?;
        let asked = Instant::now();
        let a = match conn
            .get()
            .send(req, wait + wait / 16 + Duration::from_secs(5))
            .await
        {
            Ok(a) if a.status == StatusCode::OK => a,
            Ok(a) => bail!(
                "watch on {key}: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            ),
            Err(e) => return Err(e.context(format!("watch on {key}"))),
        };
        let at = Instant::now();
        let new = a
            .headers
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("watch on {key}: no X-Consul-Index"))?;
        if index == 0 {
            armed.fetch_add(1, Ordering::Relaxed);
        } else if new > index {
            push_wakes(&wakes, target::muster_values(&a.body)?, at);
        } else if at - asked < wait {
            // Answered before its wait ran out with nothing new: woken without cause.
            spurious.fetch_add(1, Ordering::Relaxed);
        }
        // An index that goes backwards means "start over", as Consul's clients do.
        index = if new < index { 0 } else { new.max(1) };
    }
    Ok(())
}

/// One etcd watcher: a `/v3/watch` stream of its own, read as it arrives.
async fn etcd_watcher(
    target: Arc<Target>,
    key: String,
    hard_end: Instant,
    armed: Arc<AtomicUsize>,
    wakes: Wakes,
) -> Result<()> {
    let req = target.ep.request(
        Method::POST,
        "/v3/watch",
        Some("application/json"),
        bytes::Bytes::from(target::etcd_watch_body(&key)),
    )?;
    let resp = client::send_streaming(&target.ep, req).await?;
    if resp.status() != StatusCode::OK {
        bail!("etcd watch on {key}: {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while Instant::now() < hard_end {
        let frame = match tokio::time::timeout_at(hard_end.into(), body.frame()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(f)) => f?,
        };
        let at = Instant::now();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        let mut consumed = 0;
        let mut stream =
            serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
        loop {
            match stream.next() {
                Some(Ok(msg)) => {
                    consumed = stream.byte_offset();
                    let (created, values) = target::etcd_watch_message(&msg)?;
                    if created {
                        armed.fetch_add(1, Ordering::Relaxed);
                    }
                    push_wakes(&wakes, values, at);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(e).context("etcd watch stream"),
                None => break,
            }
        }
        buf.drain(..consumed);
    }
    Ok(())
}

/// A watcher's connection: its own (HTTP/1.1, where a blocking query holds the connection)
/// or one of the pool's (HTTP/2).
enum ConnRef {
    Own(Conn),
    Shared(Arc<Pool>, usize),
}

impl ConnRef {
    fn get(&self) -> &Conn {
        match self {
            ConnRef::Own(c) => c,
            ConnRef::Shared(p, i) => p.for_worker(*i),
        }
    }
}

struct Write {
    send: Instant,
    ack: Instant,
    measured: bool,
}

pub async fn run(target: Arc<Target>, pool: Arc<Pool>, opts: &WatchOpts) -> Result<Report> {
    let load = &opts.load;
    if opts.watchers == 0 || opts.rate <= 0.0 {
        bail!("--watchers and --rate must be positive");
    }
    if target.kind.is_grpc() {
        bail!("watch is not implemented over gRPC: drive etcd's watch with --target etcd");
    }
    let loadavg = crate::report::loadavg();
    let keys: Vec<String> = (0..opts.watchers as u64)
        .map(|i| format!("{}watch/{i}", load.prefix))
        .collect();
    // Every watched key exists before the watchers start, so the first answer is a 200.
    let writer = pool.for_worker(0);
    for k in &keys {
        let a = writer
            .send(
                target.put(k, &Value::filler(load.value_size))?,
                load.timeout,
            )
            .await?;
        if !target.put_ok(&a) {
            bail!(
                "creating {k}: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
    }

    let armed = Arc::new(AtomicUsize::new(0));
    let spurious = Arc::new(AtomicUsize::new(0));
    let wakes: Wakes = Arc::new(Mutex::new(Vec::new()));
    // The server's memory with every key written and no watcher yet, for the growth figure.
    let rss_before_kib = match load.pid {
        Some(pid) => Some(procfs::sample(&pid.to_string())?.rss_kib),
        None => None,
    };
    let run_time = load.warmup
        + match load.ops {
            Some(n) => Duration::from_secs_f64(n as f64 / opts.rate),
            None => load.duration,
        };
    let hard_end = Instant::now() + run_time + Duration::from_secs(30);
    let mut watchers = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (target, key, armed, wakes, spurious) = (
            target.clone(),
            key.clone(),
            armed.clone(),
            wakes.clone(),
            spurious.clone(),
        );
        watchers.push(match target.kind {
            Kind::Muster => {
                let conn = Arc::new(match target.ep.proto {
                    Proto::Http1 => ConnRef::Own(Conn::new(target.ep.clone())),
                    // Connection 0 carries the writer.
                    Proto::Http2 => ConnRef::Shared(pool.clone(), i + 1),
                });
                let tally = Tally {
                    armed,
                    wakes,
                    spurious,
                };
                tokio::spawn(muster_watcher(
                    target, conn, key, opts.wait, hard_end, tally,
                ))
            }
            Kind::Etcd | Kind::EtcdGrpc => {
                tokio::spawn(etcd_watcher(target, key, hard_end, armed, wakes))
            }
        });
    }
    let arm_deadline = Instant::now() + Duration::from_secs(30);
    while armed.load(Ordering::Relaxed) < opts.watchers {
        if let Some(done) = watchers.iter_mut().find(|w| w.is_finished()) {
            let err = match done.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => anyhow!("a watcher stopped early"),
                Err(e) => anyhow!("a watcher failed: {e}"),
            };
            abort_all(&watchers);
            return Err(err.context("arming watchers"));
        }
        if Instant::now() > arm_deadline {
            abort_all(&watchers);
            bail!(
                "only {} of {} watchers armed after 30 s",
                armed.load(Ordering::Relaxed),
                opts.watchers
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the last blocking queries reach the server before the first write.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every watcher parked, nothing written: what the server holds for them, and what it
    // spends doing nothing (it should be nothing).
    let idle = match load.pid {
        Some(pid) if !opts.idle.is_zero() => {
            let pid = pid.to_string();
            let before = procfs::sample(&pid)?;
            tokio::time::sleep(opts.idle).await;
            let after = procfs::sample(&pid)?;
            Some((after.rss_kib, after.cpu_s - before.cpu_s))
        }
        _ => None,
    };

    let start = Instant::now();
    let measure_start = start + load.warmup;
    let end = start + run_time;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writes: HashMap<u64, Write> = HashMap::new();
    let mut write_hist = Histogram::default();
    let mut errors = 0u64;
    let mut first_error = None;
    let mut measurement = None;
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= end {
            break;
        }
        let measured = now >= measure_start;
        if measured && measurement.is_none() {
            measurement = Some(Measurement::start(load.pid)?);
        }
        let key = &keys[(seq % keys.len() as u64) as usize];
        let value = Value::new(target::encode_seq(seq, load.value_size));
        let req = target.put(key, &value)?;
        let send = Instant::now();
        let result = writer.send(req, load.timeout).await;
        let ack = Instant::now();
        match result {
            Ok(a) if target.put_ok(&a) => {
                if measured {
                    write_hist.record_duration(ack - send);
                }
                writes.insert(
                    seq,
                    Write {
                        send,
                        ack,
                        measured,
                    },
                );
            }
            Ok(a) => {
                errors += u64::from(measured);
                first_error.get_or_insert_with(|| {
                    format!("{} {}", a.status, String::from_utf8_lossy(&a.body))
                });
            }
            Err(e) => {
                errors += u64::from(measured);
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        seq += 1;
    }
    let write_end = Instant::now();
    // Give the last wake-ups a moment to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let measurement = match measurement {
        Some(m) => m,
        None => Measurement::start(load.pid)?,
    };
    let usage = measurement.finish()?;
    for w in &watchers {
        if w.is_finished() && first_error.is_none() {
            first_error = Some("a watcher stopped early".to_string());
        }
    }
    abort_all(&watchers);

    let seen = wakes
        .lock()
        .map_err(|_| anyhow!("wake-up list poisoned"))?
        .clone();
    let mut from_ack = Histogram::default();
    let mut from_send = Histogram::default();
    let mut before_ack = 0u64;
    let mut matched = 0u64;
    for (s, at) in seen {
        let Some(w) = writes.remove(&s) else {
            continue; // a duplicate, or a write that was not acknowledged
        };
        if !w.measured {
            continue;
        }
        matched += 1;
        if at < w.ack {
            before_ack += 1;
        }
        from_ack.record_duration(at.saturating_duration_since(w.ack));
        from_send.record_duration(at.saturating_duration_since(w.send));
    }
    let measured_writes = write_hist.count();
    let seconds = (write_end - measure_start.min(write_end)).as_secs_f64();
    Ok(Report {
        scenario: "watch".to_string(),
        target: target.kind.name().to_string(),
        addr: target.ep.addr.to_string(),
        proto: target.ep.proto.name().to_string(),
        consistency: None,
        clients: opts.watchers + 1,
        connections: match (target.kind, target.ep.proto) {
            (Kind::Muster, Proto::Http2) => (opts.watchers + 1).min(load.connections),
            _ => opts.watchers + 1,
        },
        keys: opts.watchers as u64,
        value_size: load.value_size,
        seconds,
        ops: matched,
        errors,
        ops_per_sec: if seconds > 0.0 {
            matched as f64 / seconds
        } else {
            0.0
        },
        latency_us: from_ack.summary_us(),
        server: usage.server,
        client_cpu_s: usage.client_cpu_s,
        others_cpu_s: usage.others_cpu_s,
        loadavg,
        first_error,
        watch: Some(WatchStats {
            watchers: opts.watchers,
            writes: measured_writes,
            missed: measured_writes.saturating_sub(matched),
            before_ack,
            spurious: spurious.load(Ordering::Relaxed) as u64,
            rss_before_kib,
            rss_armed_kib: idle.map(|(rss, _)| rss),
            idle_s: idle.map(|_| opts.idle.as_secs_f64()),
            idle_cpu_s: idle.map(|(_, cpu)| cpu),
            from_send_us: from_send.summary_us(),
            write_us: write_hist.summary_us(),
        }),
        ready: None,
    })
}

fn abort_all(tasks: &[tokio::task::JoinHandle<Result<()>>]) {
    for t in tasks {
        t.abort();
    }
}
