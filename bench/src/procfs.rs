//! Resident memory and CPU time of a process, read from `/proc/PID/status` and `/proc/PID/stat`,
//! and a sampler that follows a server through a run (CPU consumed, RSS at the end and at most).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// VmRSS in KiB.
    pub rss_kib: u64,
    /// user + system CPU time in seconds.
    pub cpu_s: f64,
}

/// `VmRSS` (KiB) from the text of `/proc/PID/status`.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    status_field_kib(status, "VmRSS:")
}

fn status_field_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(n),
        Some(_) => None,
    }
}

/// utime + stime (clock ticks) from the text of `/proc/PID/stat`. The command name (field 2)
/// is in parentheses and may hold spaces or parentheses, so fields are counted from the last
/// `)`: state is field 3, utime 14, stime 15.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second in `/proc/PID/stat`: USER_HZ, which the kernel fixes at 100 in its
/// user ABI on x86 and ARM (sysconf(_SC_CLK_TCK) answers the same).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads `pid` ("self" for this process).
pub fn sample(pid: &str) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rss_kib = parse_status_rss(&status).ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    Ok(Sample {
        rss_kib,
        cpu_s: ticks as f64 / TICKS_PER_SECOND,
    })
}

/// What a server used during the measured part of a run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub pid: u32,
    /// CPU seconds (user + system) consumed between the start and the end of the measurement.
    pub cpu_s: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// Largest RSS seen by the sampler (every 100 ms).
    pub rss_max_kib: u64,
}

/// Follows a process from [`Sampler::start`] to [`Sampler::finish`].
pub struct Sampler {
    pid: u32,
    first: Sample,
    max_rss: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(pid: u32) -> Result<Sampler> {
        let first = sample(&pid.to_string())?;
        let max_rss = Arc::new(std::sync::atomic::AtomicU64::new(first.rss_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (max_rss, stop) = (max_rss.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    match sample(&pid.to_string()) {
                        Ok(s) => {
                            max_rss.fetch_max(s.rss_kib, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        Ok(Sampler {
            pid,
            first,
            max_rss,
            stop,
            task,
        })
    }

    pub fn finish(self) -> Result<Usage> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
        let last = sample(&self.pid.to_string())?;
        Ok(Usage {
            pid: self.pid,
            cpu_s: last.cpu_s - self.first.cpu_s,
            rss_start_kib: self.first.rss_kib,
            rss_end_kib: last.rss_kib,
            rss_max_kib: self.max_rss.load(Ordering::Relaxed).max(last.rss_kib),
        })
    }
}

/// Busy CPU ticks of the whole machine (all CPUs: user, nice, system, irq, softirq, steal)
/// from the text of `/proc/stat`.
pub fn parse_proc_stat_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    // user nice system idle iowait irq softirq steal ...
    if f.len() < 8 {
        return None;
    }
    Some(f[0] + f[1] + f[2] + f[5] + f[6] + f[7])
}

/// CPU seconds the whole machine has been busy so far; with the server's and this process's
/// share taken out it says how much else ran during a measurement (0 when unreadable).
pub fn machine_busy_s() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_proc_stat_busy(&s))
        .map(|t| t as f64 / TICKS_PER_SECOND)
        .unwrap_or(0.0)
}

/// CPU seconds this process has used so far (0 when /proc cannot be read).
pub fn self_cpu_s() -> f64 {
    sample("self").map(|s| s.cpu_s).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tmuster\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  123456 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   18432 kB\nThreads:\t4\n";

    #[test]
    fn reads_rss_from_status() {
        assert_eq!(parse_status_rss(STATUS), Some(18432));
        assert_eq!(parse_status_rss("Name:\tx\n"), None);
        assert_eq!(parse_status_rss("VmRSS:\t abc kB\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_from_stat_even_with_odd_command_names() {
        // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime ...
        let stat = "4242 (tokio) rt (w) S 1 4242 4242 0 -1 4194560 500 0 0 0 731 269 0 0 20 0";
        assert_eq!(parse_stat_ticks(stat), Some(1000));
        assert_eq!(parse_stat_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn reads_machine_busy_ticks() {
        let stat = "cpu  100 5 50 9000 20 3 2 1 0 0\ncpu0 50 2 25 4500 10 1 1 0 0 0\n";
        assert_eq!(parse_proc_stat_busy(stat), Some(161));
        assert_eq!(parse_proc_stat_busy("cpu 1 2\n"), None);
    }

    #[test]
    fn samples_this_process() -> Result<()> {
        let s = sample("self")?;
        assert!(s.rss_kib > 0);
        assert!(s.cpu_s >= 0.0);
        Ok(())
    }
}
