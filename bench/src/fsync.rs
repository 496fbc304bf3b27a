//! This machine's sequential fsync latency: append a small block to a file and `fdatasync` it,
//! again and again for a fixed time, as a write-ahead log does. Every persistent store that
//! acknowledges only durable writes (Muster, etcd) is bounded by this figure per batch.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::hist::{fmt_us, Histogram, Percentiles};

#[derive(Debug, Clone, Serialize)]
pub struct FsyncReport {
    pub dir: String,
    pub block_size: usize,
    pub syncs: u64,
    pub seconds: f64,
    pub syncs_per_sec: f64,
    pub latency_us: Percentiles,
}

/// Runs for `time` (and at most a million syncs) in a temporary file under `dir`, removed
/// afterwards.
pub fn run(dir: &Path, time: Duration, block_size: usize) -> Result<FsyncReport> {
    let mut file = tempfile::Builder::new()
        .prefix("muster-bench-fsync")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let block = vec![b'w'; block_size];
    let mut hist = Histogram::default();
    let start = Instant::now();
    while start.elapsed() < time && hist.count() < 1_000_000 {
        let t0 = Instant::now();
        file.write_all(&block)?;
        file.as_file().sync_data()?;
        hist.record_duration(t0.elapsed());
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(FsyncReport {
        dir: dir.display().to_string(),
        block_size,
        syncs: hist.count(),
        seconds,
        syncs_per_sec: hist.count() as f64 / seconds.max(1e-9),
        latency_us: hist.summary_us(),
    })
}

pub fn human(r: &FsyncReport) -> String {
    let p = &r.latency_us;
    format!(
        "fsync ({}-byte appends + fdatasync in {}): {} syncs in {:.2} s = {:.0}/s; \
         mean {}  p50 {}  p99 {}  max {}\n",
        r.block_size,
        r.dir,
        r.syncs,
        r.seconds,
        r.syncs_per_sec,
        fmt_us(p.mean),
        fmt_us(p.p50),
        fmt_us(p.p99),
        fmt_us(p.max)
    )
}
