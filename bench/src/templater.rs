//! Issue 5's figures for `templater` (Muster only):
//!
//! * **write → file**: `templater -watch` with one resource on one key; the time from a KV write
//!   (the PUT sent, and its acknowledgement) to the destination being renamed into place
//!   (inotify `IN_MOVED_TO`) and to the reload command running (its first action, `: > FILE`,
//!   seen as `IN_CLOSE_WRITE`). No `wait`.
//! * **one query for many resources**: N resources sharing one prefix, templater talking to the
//!   agent through a counting TCP proxy in this process: connections and HTTP requests at
//!   start-up and per KV write (HTTP/2 requests are HEADERS frames, HTTP/1.1 ones are header
//!   blocks).
//! * **render time** of a template iterating 10,000 keys, in this process with templater's own
//!   renderer.
//! * templater's **RSS** (from /proc) in both daemon runs.
//!
//! Every process started here is stopped here; every socket is on loopback.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use muster_api::{Client, ClientConfig};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::hist::{exact, fmt_us, Percentiles};
use crate::procfs;
use crate::ready::{args_for, stop, tail};
use crate::target::{Kind, Target};

#[derive(Debug, Clone)]
pub struct TemplaterOpts {
    pub muster_bin: PathBuf,
    pub templater_bin: PathBuf,
    /// KV writes timed in the latency run.
    pub writes: usize,
    /// Pause between two timed writes.
    pub gap: Duration,
    /// Resources sharing one prefix in the request-count run.
    pub resources: usize,
    /// KV writes in the request-count run.
    pub count_writes: usize,
    /// Keys the render-time template iterates.
    pub keys: usize,
    /// Renders timed.
    pub renders: usize,
    /// Where the destination files go (its disk's fsync is in the write → file figure).
    pub dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct TemplaterReport {
    /// Microseconds from the PUT being sent to the rename.
    pub put_to_rename_us: Percentiles,
    /// Microseconds from the PUT being sent to the reload command's first action.
    pub put_to_reload_us: Percentiles,
    /// Microseconds from the PUT's acknowledgement to the rename.
    pub ack_to_rename_us: Percentiles,
    /// Microseconds of the PUT itself (sent → acknowledged).
    pub put_us: Percentiles,
    pub resources: usize,
    pub protocol: String,
    pub startup_connections: u64,
    pub startup_requests: u64,
    pub count_writes: usize,
    pub requests_during_writes: u64,
    pub connections_during_writes: u64,
    pub render_keys: usize,
    /// Milliseconds per render.
    pub render_ms: Percentiles,
    pub rendered_bytes: usize,
    pub rss_one_resource_kib: u64,
    pub rss_many_resources_kib: u64,
}

pub fn human(r: &TemplaterReport) -> String {
    let ms = |p: &Percentiles| {
        format!(
            "p50 {}  p99 {}  max {}",
            fmt_us(p.p50),
            fmt_us(p.p99),
            fmt_us(p.max)
        )
    };
    let mut s = String::new();
    s.push_str(&format!(
        "templater -watch, one resource, no wait ({} writes)\n",
        r.put_to_rename_us.count
    ));
    s.push_str(&format!(
        "  PUT sent → file renamed     {}\n",
        ms(&r.put_to_rename_us)
    ));
    s.push_str(&format!(
        "  PUT sent → reload running   {}\n",
        ms(&r.put_to_reload_us)
    ));
    s.push_str(&format!(
        "  PUT acked → file renamed    {}\n",
        ms(&r.ack_to_rename_us)
    ));
    s.push_str(&format!(
        "  the PUT itself              {}\n",
        ms(&r.put_us)
    ));
    s.push_str(&format!(
        "{} resources on one prefix ({}): start-up {} connection(s), {} request(s); {} writes: {} request(s), {} new connection(s)\n",
        r.resources, r.protocol, r.startup_connections, r.startup_requests, r.count_writes,
        r.requests_during_writes, r.connections_during_writes
    ));
    s.push_str(&format!(
        "render {} keys ({} bytes): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
        r.render_keys, r.rendered_bytes, r.render_ms.p50, r.render_ms.p99, r.render_ms.max
    ));
    s.push_str(&format!(
        "templater RSS: {:.1} MiB (1 resource), {:.1} MiB ({} resources)\n",
        r.rss_one_resource_kib as f64 / 1024.0,
        r.rss_many_resources_kib as f64 / 1024.0,
        r.resources
    ));
    s
}

pub async fn run(opts: &TemplaterOpts) -> Result<TemplaterReport> {
    let (render_ms, rendered_bytes) = render_time(opts.keys, opts.renders)?;
    let agent = Agent::start(&opts.muster_bin).await?;
    let latency = latency_run(opts, &agent).await;
    let count = count_run(opts, &agent).await;
    agent.stop().await;
    let (put_to_rename, put_to_reload, ack_to_rename, put, rss1) = latency?;
    let count = count?;
    Ok(TemplaterReport {
        put_to_rename_us: exact(&put_to_rename),
        put_to_reload_us: exact(&put_to_reload),
        ack_to_rename_us: exact(&ack_to_rename),
        put_us: exact(&put),
        resources: opts.resources,
        protocol: count.protocol,
        startup_connections: count.startup_connections,
        startup_requests: count.startup_requests,
        count_writes: opts.count_writes,
        requests_during_writes: count.write_requests,
        connections_during_writes: count.write_connections,
        render_keys: opts.keys,
        render_ms: exact(&render_ms),
        rendered_bytes,
        rss_one_resource_kib: rss1,
        rss_many_resources_kib: count.rss_kib,
    })
}

// ---- render time ----------------------------------------------------------------------------

fn render_time(keys: usize, renders: usize) -> Result<(Vec<f64>, usize)> {
    use ::templater::helpers::RenderData;
    use ::templater::render::{Rendered, Templates};
    let mut t = Templates::empty();
    t.add(
        "big",
        "upstream big {\n{{#each (gets \"/big/*\")}}    server {{this.Value}};  # {{base this.Key}}\n{{/each}}}\n",
    )
    .map_err(anyhow::Error::msg)?;
    let kv = (0..keys)
        .map(|i| {
            (
                format!("/big/k{i:05}"),
                format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256),
            )
        })
        .collect();
    let data = Arc::new(RenderData {
        kv: Arc::new(kv),
        ..Default::default()
    });
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..renders.max(1) {
        let start = Instant::now();
        match t.render("big", data.clone()).map_err(anyhow::Error::msg)? {
            Rendered::Done(out) => bytes = out.len(),
            Rendered::NeedDeps(d) => bail!("unexpected dependencies {d:?}"),
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok((times, bytes))
}

// ---- processes ------------------------------------------------------------------------------

struct Agent {
    child: Child,
    addr: String,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Agent {
    async fn start(bin: &Path) -> Result<Agent> {
        let dir = tempfile::Builder::new()
            .prefix("muster-bench-templater")
            .tempdir()?;
        let http = crate::client::free_port()?;
        let args = args_for(Kind::Muster, http, dir.path())?;
        let log = dir.path().join("agent.log");
        let child = Command::new(bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("agent.err"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let addr = format!("127.0.0.1:{http}");
        let target = Target::new(
            Kind::Muster,
            crate::client::Endpoint::new(&addr, crate::client::Proto::Http1)?,
        );
        crate::ready::wait_ready(&target, Duration::from_secs(30))
            .await
            .with_context(|| format!("agent not ready: {}", tail(&log)))?;
        let client = Client::new(ClientConfig::new(addr.clone()))?;
        Ok(Agent {
            child,
            addr,
            client,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        stop(&mut self.child).await;
    }
}

/// A confdir of `n` resources `r<i>` on the prefix `/<prefix>`, rendering into `out/`.
fn confdir(
    dir: &Path,
    prefix: &str,
    n: usize,
    reload_cmd: Option<&str>,
) -> Result<(PathBuf, PathBuf)> {
    let confdir = dir.join("confdir");
    let out = dir.join("out");
    std::fs::create_dir_all(confdir.join("conf.d"))?;
    std::fs::create_dir_all(confdir.join("templates"))?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        confdir.join("templates/t.hbs"),
        format!("value = {{{{getv \"/{prefix}/v\" \"none\"}}}}\n"),
    )?;
    for i in 0..n {
        let mut text = format!(
            "[template]\nsrc = \"t.hbs\"\ndest = \"{}/r{i}.conf\"\nkeys = [\"/{prefix}\"]\n",
            out.display()
        );
        if let Some(cmd) = reload_cmd {
            text.push_str(&format!("reload_cmd = \"{cmd}\"\n"));
        }
        std::fs::write(confdir.join(format!("conf.d/r{i}.toml")), text)?;
    }
    Ok((confdir, out))
}

async fn spawn_templater(bin: &Path, node: &str, confdir: &Path, log: &Path) -> Result<Child> {
    Command::new(bin)
        .args([
            "-backend",
            "consul",
            "-node",
            node,
            "-watch",
            "-log-level",
            "warn",
            "-confdir",
        ])
        .arg(confdir)
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn rss_kib(child: &Child) -> u64 {
    child
        .id()
        .and_then(|pid| procfs::sample(&pid.to_string()).ok())
        .map(|s| s.rss_kib)
        .unwrap_or(0)
}

// ---- write → rename → reload ----------------------------------------------------------------

type LatencyResult = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, u64);

async fn latency_run(opts: &TemplaterOpts, agent: &Agent) -> Result<LatencyResult> {
    let dir = tempfile::Builder::new()
        .prefix("templater-bench-lat")
        .tempdir_in(&opts.dir)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let marker = dir.path().join("out/reloaded");
    let reload = format!(": > {}", marker.display());
    let (confdir, out) = confdir(dir.path(), "lat", 1, Some(&reload))?;
    let dest = out.join("r0.conf");

    // inotify on out/: the rename of r0.conf and the reload's write of `reloaded`.
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(
        &out,
        AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
    )?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    std::thread::spawn(move || loop {
        let Ok(events) = inotify.read_events() else {
            return;
        };
        let now = Instant::now();
        for e in events {
            let name = e
                .name
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kind = if e.mask.contains(AddWatchFlags::IN_MOVED_TO) {
                "moved"
            } else {
                "closed"
            };
            if tx.send((now, format!("{kind}:{name}"))).is_err() {
                return;
            }
        }
    });

    agent.client.kv_put("lat/v", b"start", None, None).await?;
    let mut child = spawn_templater(
        &opts.templater_bin,
        &agent.addr,
        &confdir,
        &dir.path().join("t.log"),
    )
    .await?;
    let result = async {
        wait_for("first render", Duration::from_secs(30), || {
            std::fs::read_to_string(&dest).is_ok_and(|s| s.contains("start"))
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        while rx.try_recv().is_ok() {}
        let (mut rename, mut reload, mut ack_rename, mut put) = (vec![], vec![], vec![], vec![]);
        for i in 0..opts.writes {
            let value = format!("w{i}");
            let t0 = Instant::now();
            agent
                .client
                .kv_put("lat/v", value.as_bytes(), None, None)
                .await?;
            let acked = Instant::now();
            let (mut renamed, mut reloaded) = (None, None);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while renamed.is_none() || reloaded.is_none() {
                let ev = tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .with_context(|| format!("write {i}: no rename/reload within 10s"))?;
                let Some((at, what)) = ev else {
                    bail!("inotify thread ended")
                };
                match what.as_str() {
                    "moved:r0.conf" => renamed = Some(at),
                    "closed:reloaded" => reloaded = Some(at),
                    _ => {}
                }
            }
            let (renamed, reloaded) = (renamed.unwrap(), reloaded.unwrap());
            let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e6;
            rename.push(us(t0, renamed));
            reload.push(us(t0, reloaded));
            ack_rename.push(us(acked, renamed));
            put.push(us(t0, acked));
            let text = std::fs::read_to_string(&dest)?;
            if !text.contains(&value) {
                bail!("write {i}: the file says {text:?}");
            }
            tokio::time::sleep(opts.gap).await;
        }
        let rss = rss_kib(&child);
        Ok((rename, reload, ack_rename, put, rss))
    }
    .await;
    stop(&mut child).await;
    result
}

// ---- many resources, one prefix: requests and connections ----------------------------------

struct CountResult {
    protocol: String,
    startup_connections: u64,
    startup_requests: u64,
    write_requests: u64,
    write_connections: u64,
    rss_kib: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    http2: AtomicU64,
}

/// A TCP proxy to `upstream` that counts connections and HTTP requests.
async fn counting_proxy(upstream: String, counters: Arc<Counters>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            counters.connections.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let counters = counters.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut parser = RequestCounter::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let (requests, h2) = parser.feed(&buf[..n]);
                        counters.requests.fetch_add(requests, Ordering::SeqCst);
                        if h2 {
                            counters.http2.store(1, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok(port)
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Counts requests in the client → server bytes of one connection: HTTP/2 HEADERS frames after
/// the preface, or HTTP/1.1 header blocks (templater sends bodiless GETs).
#[derive(Default)]
struct RequestCounter {
    buf: Vec<u8>,
    mode: Option<bool>, // Some(true): h2
}

impl RequestCounter {
    fn feed(&mut self, bytes: &[u8]) -> (u64, bool) {
        self.buf.extend_from_slice(bytes);
        if self.mode.is_none() {
            if self.buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&self.buf) {
                return (0, false);
            }
            if self.buf.starts_with(H2_PREFACE) {
                self.mode = Some(true);
                self.buf.drain(..H2_PREFACE.len());
            } else {
                self.mode = Some(false);
            }
        }
        let mut n = 0;
        if self.mode == Some(true) {
            while self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() < 9 + len {
                    break;
                }
                if self.buf[3] == 0x1 {
                    n += 1; // HEADERS
                }
                self.buf.drain(..9 + len);
            }
            (n, true)
        } else {
            while let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                n += 1;
                self.buf.drain(..pos + 4);
            }
            (n, false)
        }
    }
}

async fn count_run(opts: &TemplaterOpts, agent: &Agent) -> Result<CountResult> {
    let dir = tempfile::Builder::new()
        .prefix("templater-bench-count")
        .tempdir_in(&opts.dir)?;
    let (confdir, out) = confdir(dir.path(), "shared", opts.resources, None)?;
    agent
        .client
        .kv_put("shared/v", b"start", None, None)
        .await?;
    let counters = Arc::new(Counters::default());
    let port = counting_proxy(agent.addr.clone(), counters.clone()).await?;
    let node = format!("127.0.0.1:{port}");
    let mut child = spawn_templater(
        &opts.templater_bin,
        &node,
        &confdir,
        &dir.path().join("t.log"),
    )
    .await?;
    let all_say = |v: &str| {
        (0..opts.resources).all(|i| {
            std::fs::read_to_string(out.join(format!("r{i}.conf"))).is_ok_and(|s| s.contains(v))
        })
    };
    let result = async {
        wait_for("every resource rendered", Duration::from_secs(60), || {
            all_say("start")
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let startup_connections = counters.connections.load(Ordering::SeqCst);
        let startup_requests = counters.requests.load(Ordering::SeqCst);
        for i in 0..opts.count_writes {
            let v = format!("write-{i}");
            agent
                .client
                .kv_put("shared/v", v.as_bytes(), None, None)
                .await?;
            wait_for(
                "every resource re-rendered",
                Duration::from_secs(30),
                || all_say(&v),
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let protocol = if counters.http2.load(Ordering::SeqCst) == 1 {
            "h2c"
        } else {
            "HTTP/1.1"
        };
        Ok(CountResult {
            protocol: protocol.to_string(),
            startup_connections,
            startup_requests,
            write_requests: counters.requests.load(Ordering::SeqCst) - startup_requests,
            write_connections: counters.connections.load(Ordering::SeqCst) - startup_connections,
            rss_kib: rss_kib(&child),
        })
    }
    .await;
    stop(&mut child).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_http1_and_h2_requests() {
        let mut c = RequestCounter::default();
        assert_eq!(
            c.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /a HT"),
            (1, false)
        );
        assert_eq!(c.feed(b"TP/1.1\r\n\r\n"), (1, false));
        let mut c = RequestCounter::default();
        let mut bytes = H2_PREFACE.to_vec();
        // SETTINGS (type 4, empty), HEADERS (type 1, 3 bytes), DATA (type 0, 2 bytes)
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, 3, 1, 4, 0, 0, 0, 1, 1, 2, 3]);
        bytes.extend_from_slice(&[0, 0, 2, 0, 1, 0, 0, 0, 1, 9, 9]);
        let (first, rest) = bytes.split_at(30);
        assert_eq!(c.feed(first).0, 0);
        assert_eq!(c.feed(rest), (1, true));
    }
}
