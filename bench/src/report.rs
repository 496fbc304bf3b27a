//! What a scenario measured, as JSON (`--json`) and as a short table for a human.

use serde::{Deserialize, Serialize};

use crate::hist::{fmt_us, Percentiles};
use crate::procfs::Usage;

/// One scenario run against one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub addr: String,
    pub proto: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    pub clients: usize,
    pub connections: usize,
    pub keys: u64,
    pub value_size: usize,
    /// Length of the measured window (after warm-up).
    pub seconds: f64,
    /// Operations completed in the window (for `watch`: wake-ups observed; for `ready`: spawns).
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    /// Per-operation latency (for `watch`: from the write's acknowledgement to the watcher's
    /// answer; for `ready`: spawn to first ready answer).
    pub latency_us: Percentiles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Usage>,
    /// CPU seconds the load generator itself used in the window.
    pub client_cpu_s: f64,
    /// CPU seconds everything else on the machine used in the window: a run with a lot of it
    /// was disturbed (other builds, other benchmarks).
    pub others_cpu_s: f64,
    /// The load average when the run started.
    pub loadavg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchStats {
    pub watchers: usize,
    /// Writes acknowledged during the window.
    pub writes: u64,
    /// Acknowledged writes no watcher reported (coalesced or lost).
    pub missed: u64,
    /// Wake-ups that arrived before the writer had its acknowledgement (counted as 0 µs).
    pub before_ack: u64,
    /// Answers before the wait ran out that carried nothing new (woken without cause).
    #[serde(default)]
    pub spurious: u64,
    /// Server RSS with every key written and no watcher yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    /// Server RSS with every watcher parked, before the first write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_armed_kib: Option<u64>,
    /// The idle phase: every watcher parked, no writes, for this long …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<f64>,
    /// … and the server's CPU seconds in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_cpu_s: Option<f64>,
    /// From sending the write to the watcher's answer.
    pub from_send_us: Percentiles,
    /// Write (PUT) latency as the writer saw it.
    pub write_us: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadyStats {
    pub binary: String,
    pub args: Vec<String>,
    /// RSS after the process had been idle for `settle_s`.
    pub idle_rss_kib: Percentiles,
    pub settle_s: f64,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn lat_line(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        fmt_us(p.p50),
        fmt_us(p.p90),
        fmt_us(p.p99),
        fmt_us(p.p999),
        fmt_us(p.max)
    )
}

/// The human form of a report.
pub fn human(r: &Report) -> String {
    let mut out = String::new();
    let consistency = r
        .consistency
        .as_deref()
        .map(|c| format!("  consistency={c}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{} -> {} {} ({}){}\n",
        r.scenario, r.target, r.addr, r.proto, consistency
    ));
    if let Some(ready) = &r.ready {
        out.push_str(&format!(
            "  spawns      {} ({} failed) of {} {}\n",
            r.ops,
            r.errors,
            ready.binary,
            ready.args.join(" ")
        ));
        out.push_str(&format!("  ready       {}\n", lat_line(&r.latency_us)));
        let rss = &ready.idle_rss_kib;
        out.push_str(&format!(
            "  idle rss    p50 {}  max {}  (after {:.1} s idle)\n",
            mib(rss.p50 as u64),
            mib(rss.max as u64),
            ready.settle_s
        ));
    } else {
        out.push_str(&format!(
            "  load        {} clients on {} connections, {} keys, {}-byte values\n",
            r.clients, r.connections, r.keys, r.value_size
        ));
        out.push_str(&format!(
            "  throughput  {:.0} ops/s  ({} ops in {:.2} s, {} errors)\n",
            r.ops_per_sec, r.ops, r.seconds, r.errors
        ));
        let what = if r.watch.is_some() {
            "wake (ack)"
        } else {
            "latency   "
        };
        out.push_str(&format!("  {what}  {}\n", lat_line(&r.latency_us)));
    }
    if let Some(w) = &r.watch {
        out.push_str(&format!("  wake (send)  {}\n", lat_line(&w.from_send_us)));
        out.push_str(&format!("  write       {}\n", lat_line(&w.write_us)));
        out.push_str(&format!(
            "  watchers    {}  writes {}  missed {}  woke before ack {}  woken without cause {}\n",
            w.watchers, w.writes, w.missed, w.before_ack, w.spurious
        ));
        if let (Some(before), Some(armed)) = (w.rss_before_kib, w.rss_armed_kib) {
            out.push_str(&format!(
                "  parked      rss {} before the watchers, {} with all parked (+{}); idle {:.1} s: server cpu {:.3} s\n",
                mib(before),
                mib(armed),
                mib(armed.saturating_sub(before)),
                w.idle_s.unwrap_or(0.0),
                w.idle_cpu_s.unwrap_or(0.0)
            ));
        }
    }
    if let Some(s) = &r.server {
        out.push_str(&format!(
            "  server      pid {}  cpu {:.2} s ({:.0}% of a core)  rss {} (max {})\n",
            s.pid,
            s.cpu_s,
            if r.seconds > 0.0 {
                100.0 * s.cpu_s / r.seconds
            } else {
                0.0
            },
            mib(s.rss_end_kib),
            mib(s.rss_max_kib)
        ));
    }
    let others = if r.ready.is_some() {
        "others (with the spawned servers)"
    } else {
        "others"
    };
    out.push_str(&format!(
        "  machine     bench cpu {:.2} s  {others} {:.2} s  loadavg at start {}\n",
        r.client_cpu_s, r.others_cpu_s, r.loadavg
    ));
    if let Some(e) = &r.first_error {
        out.push_str(&format!("  first error {e}\n"));
    }
    out
}

/// `/proc/loadavg`'s three averages ("" when unreadable).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_form_names_the_figures() {
        let r = Report {
            scenario: "kv-put".into(),
            target: "muster".into(),
            ops: 1000,
            seconds: 1.0,
            ops_per_sec: 1000.0,
            server: Some(Usage {
                pid: 7,
                cpu_s: 0.5,
                rss_end_kib: 20480,
                rss_max_kib: 20480,
                ..Usage::default()
            }),
            ..Report::default()
        };
        let text = human(&r);
        assert!(text.contains("1000 ops/s"), "{text}");
        assert!(text.contains("50% of a core"), "{text}");
        assert!(text.contains("20.0 MiB"), "{text}");
        let json = serde_json::to_string(&r).unwrap_or_default();
        let back: Report = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back.ops, 1000);
    }
}
