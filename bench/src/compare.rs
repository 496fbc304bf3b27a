//! Side by side: the same scenarios against Muster and etcd, alternately (Muster, etcd, Muster,
//! etcd, ...) so that a noisy moment on the machine hits both, and one table of the figures
//! with Muster/etcd ratios per round. The servers are started by the caller (`compare.sh`).
//!
//! With a third side, etcd driven natively over gRPC (the same etcd process, through
//! etcd-client), each KV scenario runs Muster, etcd's gateway, etcd over gRPC in turn, and a
//! second table gives the Muster/etcd-gRPC ratios (watch is not run over gRPC).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::client::Pool;
use crate::grpc;
use crate::hist::fmt_us;
use crate::kv::{self, Conns, LoadOpts, Mix};
use crate::report::{self, Report};
use crate::target::{Consistency, Target};
use crate::watch::{self, WatchOpts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    KvPut,
    KvGet,
    KvGetConsistent,
    KvGetStale,
    KvMixed,
    Watch,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Scenario::KvPut => "kv-put",
            Scenario::KvGet => "kv-get default",
            Scenario::KvGetConsistent => "kv-get consistent",
            Scenario::KvGetStale => "kv-get stale",
            Scenario::KvMixed => "kv-mixed 90/10",
            Scenario::Watch => "watch",
        }
    }

    fn needs_preload(self) -> bool {
        !matches!(self, Scenario::KvPut | Scenario::Watch)
    }

    /// Whether the scenario runs over gRPC too (the KV ones do; watch does not).
    fn over_grpc(self) -> bool {
        self != Scenario::Watch
    }
}

/// One server to compare: where, and the pid whose CPU and memory to follow.
pub struct Side {
    pub target: Arc<Target>,
    pub pid: Option<u32>,
    pool: Arc<Pool>,
    conns: Conns,
    preloaded: bool,
}

impl Side {
    pub fn new(target: Target, pid: Option<u32>, connections: usize) -> Side {
        let pool = Arc::new(Pool::new(&target.ep, connections));
        Side {
            target: Arc::new(target),
            pid,
            conns: Conns::Http(pool.clone()),
            pool,
            preloaded: false,
        }
    }

    /// etcd over gRPC: `channels` etcd-client channels shared by the workers.
    pub async fn grpc(
        target: Target,
        pid: Option<u32>,
        channels: usize,
        timeout: Duration,
    ) -> Result<Side> {
        let clients = grpc::Clients::connect(target.ep.addr, channels, timeout).await?;
        Ok(Side {
            pool: Arc::new(Pool::new(&target.ep, 1)),
            target: Arc::new(target),
            pid,
            conns: Conns::Grpc(Arc::new(clients)),
            preloaded: false,
        })
    }

    async fn run(&mut self, s: Scenario, load: &LoadOpts, watch: &WatchOpts) -> Result<Report> {
        let load = LoadOpts {
            pid: self.pid,
            ..load.clone()
        };
        if s.needs_preload() && !self.preloaded {
            kv::preload(&self.target, &self.conns, &load).await?;
            self.preloaded = true;
        }
        let mix = match s {
            Scenario::KvPut => Mix::Put,
            Scenario::KvGet => Mix::Get(Consistency::Default),
            Scenario::KvGetConsistent => Mix::Get(Consistency::Consistent),
            Scenario::KvGetStale => Mix::Get(Consistency::Stale),
            Scenario::KvMixed => Mix::Mixed {
                get_percent: 90,
                consistency: Consistency::Default,
            },
            Scenario::Watch => {
                if self.target.kind.is_grpc() {
                    bail!("watch is not run over gRPC");
                }
                let w = WatchOpts {
                    load,
                    ..watch.clone()
                };
                return watch::run(self.target.clone(), self.pool.clone(), &w).await;
            }
        };
        kv::run(self.target.clone(), self.conns.clone(), mix, &load).await
    }
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub scenario: Scenario,
    pub round: usize,
    pub muster: Report,
    pub etcd: Report,
    /// Muster's ops/s over etcd's.
    pub throughput_ratio: f64,
    /// Muster's p99 over etcd's (below 1 is better for Muster).
    pub p99_ratio: f64,
    /// etcd driven over gRPC, when compared (KV scenarios only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_grpc: Option<Report>,
    /// Muster's ops/s over etcd-over-gRPC's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_throughput_ratio: Option<f64>,
    /// Muster's p99 over etcd-over-gRPC's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_p99_ratio: Option<f64>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Runs every scenario `rounds` times on both sides, Muster first then etcd each time (then
/// etcd over gRPC, when given, for the scenarios in its list that it can run). With `verbose`, each report is printed (to stderr) as it
/// completes.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    muster: &mut Side,
    etcd: &mut Side,
    mut etcd_grpc: Option<(&mut Side, &[Scenario])>,
    scenarios: &[Scenario],
    rounds: usize,
    load: &LoadOpts,
    watch: &WatchOpts,
    verbose: bool,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for &s in scenarios {
            let m = muster.run(s, load, watch).await?;
            if verbose {
                eprint!("{}", report::human(&m));
            }
            let e = etcd.run(s, load, watch).await?;
            if verbose {
                eprint!("{}", report::human(&e));
            }
            let g = match etcd_grpc.as_mut() {
                Some((side, only)) if s.over_grpc() && only.contains(&s) => {
                    let g = side.run(s, load, watch).await?;
                    if verbose {
                        eprint!("{}", report::human(&g));
                    }
                    Some(g)
                }
                _ => None,
            };
            rows.push(Row {
                scenario: s,
                round,
                throughput_ratio: ratio(m.ops_per_sec, e.ops_per_sec),
                p99_ratio: ratio(m.latency_us.p99, e.latency_us.p99),
                grpc_throughput_ratio: g.as_ref().map(|g| ratio(m.ops_per_sec, g.ops_per_sec)),
                grpc_p99_ratio: g
                    .as_ref()
                    .map(|g| ratio(m.latency_us.p99, g.latency_us.p99)),
                etcd_grpc: g,
                muster: m,
                etcd: e,
            });
        }
    }
    Ok(rows)
}

/// A peer's side of a row: its report, Muster/peer ops/s, Muster/peer p99.
type PeerOf<'a> = dyn Fn(&'a Row) -> Option<(&'a Report, f64, f64)>;

/// One table of Muster against one peer (etcd's gateway, or etcd over gRPC).
fn peer_table<'a>(rows: &'a [Row], peer: &str, of: &PeerOf<'a>) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<18} {:>2}  {:>11} {:>11} {:>6}  {:>17} {:>17} {:>6}  {:>6} {:>6}  {:>9}\n",
        "scenario",
        "#",
        "muster op/s",
        format!("{peer} op/s"),
        "ratio",
        "muster p50/p99",
        format!("{peer} p50/p99"),
        "p99 ×",
        "m err",
        format!("{} err", &peer[..1]),
        "others s",
    ));
    let lat = |rep: &Report| {
        format!(
            "{}/{}",
            fmt_us(rep.latency_us.p50),
            fmt_us(rep.latency_us.p99)
        )
    };
    for r in rows {
        let Some((p, tput, p99)) = of(r) else {
            continue;
        };
        out.push_str(&format!(
            "{:<18} {:>2}  {:>11.0} {:>11.0} {:>5.2}×  {:>17} {:>17} {:>6.2}  {:>6} {:>6}  {:>4.1}/{:<4.1}\n",
            r.scenario.label(),
            r.round,
            r.muster.ops_per_sec,
            p.ops_per_sec,
            tput,
            lat(&r.muster),
            lat(p),
            p99,
            r.muster.errors,
            p.errors,
            r.muster.others_cpu_s,
            p.others_cpu_s,
        ));
    }
    out
}

/// The comparison table, and a second one against etcd over gRPC when it ran.
pub fn table(rows: &[Row]) -> String {
    let mut out = peer_table(rows, "etcd", &|r: &Row| {
        Some((&r.etcd, r.throughput_ratio, r.p99_ratio))
    });
    out.push_str(
        "ratio = Muster ops/s ÷ etcd ops/s (higher is better for Muster); p99 × = Muster p99 ÷ \
         etcd p99 (lower is better);\nothers s = CPU seconds used by other processes during each \
         run (Muster/etcd): high values mean a disturbed run.\n",
    );
    if let Some(channels) = rows
        .iter()
        .find_map(|r| r.etcd_grpc.as_ref().map(|g| g.connections))
    {
        out.push_str(&format!(
            "\nvs etcd driven natively over gRPC (etcd-client, {channels} channel{} shared by the \
             clients; the same etcd process, run right after its gateway):\n",
            if channels == 1 { "" } else { "s" }
        ));
        out.push_str(&peer_table(rows, "grpc", &|r: &Row| {
            let g = r.etcd_grpc.as_ref()?;
            Some((
                g,
                r.grpc_throughput_ratio.unwrap_or(f64::NAN),
                r.grpc_p99_ratio.unwrap_or(f64::NAN),
            ))
        }));
        out.push_str(
            "ratio = Muster ops/s ÷ etcd-over-gRPC ops/s (Muster's run is the one in the table \
             above).\n",
        );
    }
    let mut cpu = String::new();
    for r in rows {
        if let (Some(m), Some(e)) = (&r.muster.server, &r.etcd.server) {
            let grpc = match r
                .etcd_grpc
                .as_ref()
                .and_then(|g| Some((g, g.server.as_ref()?)))
            {
                Some((g, gs)) => format!("  grpc {:.1}µs", per_op_us(gs.cpu_s, g.ops)),
                None => String::new(),
            };
            cpu.push_str(&format!(
                "{:<18} {:>2}  server cpu/op: muster {:.1}µs  etcd {:.1}µs{grpc}   rss end: muster {:.1} MiB  etcd {:.1} MiB\n",
                r.scenario.label(),
                r.round,
                per_op_us(m.cpu_s, r.muster.ops),
                per_op_us(e.cpu_s, r.etcd.ops),
                m.rss_end_kib as f64 / 1024.0,
                e.rss_end_kib as f64 / 1024.0,
            ));
        }
    }
    for r in rows {
        if let (Some(m), Some(e)) = (&r.muster.watch, &r.etcd.watch) {
            cpu.push_str(&format!(
                "{:<18} {:>2}  wake from send p50/p99: muster {}/{}  etcd {}/{}   missed: muster {}  etcd {}\n",
                r.scenario.label(),
                r.round,
                fmt_us(m.from_send_us.p50),
                fmt_us(m.from_send_us.p99),
                fmt_us(e.from_send_us.p50),
                fmt_us(e.from_send_us.p99),
                m.missed,
                e.missed,
            ));
        }
    }
    if !cpu.is_empty() {
        out.push('\n');
        out.push_str(&cpu);
    }
    out
}

fn per_op_us(cpu_s: f64, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        cpu_s * 1e6 / ops as f64
    }
}
