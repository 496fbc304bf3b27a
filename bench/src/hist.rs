//! A log-linear latency histogram (values in nanoseconds, under 0.8% relative error) and the
//! percentiles the reports print. Fixed memory whatever the run length; histograms of several
//! workers merge by adding their counts.

use std::time::Duration;

use serde::Serialize;

/// Sub-buckets per power of two: 2^7 = 128, so a bucket is at most 1/128 of its value wide.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every u64.
const BUCKETS: usize = ((64 - SUB_BITS) as usize + 1) * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The bucket of `v`: exact below 2*SUB, then SUB buckets per power of two.
fn index_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    (shift as usize) * SUB as usize + (v >> shift) as usize
}

/// The largest value that falls in bucket `idx`.
fn highest_in(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < 2 * SUB {
        return idx;
    }
    let shift = idx / SUB - 1;
    let m = idx - shift * SUB;
    // m << shift is the lowest value of the bucket; the bucket spans 2^shift values.
    (m << shift).saturating_add((1u64 << shift) - 1)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.count += 1;
        self.sum += v as u128;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1): the highest value of the bucket holding the
    /// ceil(q*count)-th smallest recording, never above the largest recorded. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest_in(idx).min(self.max).max(self.min);
            }
        }
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The summary the reports carry, in microseconds.
    pub fn summary_us(&self) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1e3;
        Percentiles {
            count: self.count,
            mean: self.mean() / 1e3,
            min: if self.count == 0 { 0.0 } else { us(self.min) },
            p50: us(self.quantile(0.50)),
            p90: us(self.quantile(0.90)),
            p99: us(self.quantile(0.99)),
            p999: us(self.quantile(0.999)),
            max: us(self.max),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Exact nearest-rank percentiles of a few values (spawn times, RSS readings), in the
/// values' own unit.
/// The `q` quantile of a few sorted durations (nearest rank; zero when there are none), for
/// the per-round figures of the process scenarios.
pub fn nearest(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn exact(values: &[f64]) -> Percentiles {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Percentiles {
        count: v.len() as u64,
        mean: v.iter().sum::<f64>() / v.len() as f64,
        min: v[0],
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        max: v[v.len() - 1],
    }
}

/// Formats microseconds for a human: "850µs", "1.23ms", "2.5s".
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_their_values() {
        let mut v = 0u64;
        let mut last_idx = 0usize;
        while v < 10_000_000 {
            let idx = index_of(v);
            assert!(idx == last_idx || idx == last_idx + 1, "gap at {v}");
            assert!(highest_in(idx) >= v, "bucket {idx} ends below {v}");
            if idx > 0 {
                assert!(highest_in(idx - 1) < v, "bucket {} reaches {v}", idx - 1);
            }
            last_idx = idx;
            v += 1 + v / 1000;
        }
        assert!(index_of(u64::MAX) < BUCKETS);
        assert_eq!(highest_in(index_of(u64::MAX)), u64::MAX);
    }

    #[test]
    fn quantiles_of_a_uniform_range_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000f64),
            (0.9, 90e6),
            (0.99, 99e6),
            (0.999, 99.9e6),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert!((1000..=1008).contains(&h.quantile(0.0)));
        assert_eq!(h.count(), 100_000);
    }

    #[test]
    fn small_values_are_exact_and_merge_adds() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in [1, 2, 3] {
            a.record(v);
        }
        for v in [4, 5] {
            b.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), 5);
        assert_eq!(a.quantile(0.5), 3);
        assert_eq!(a.quantile(1.0), 5);
        assert_eq!(a.mean(), 3.0);
        let s = a.summary_us();
        assert_eq!(s.min, 0.001);
    }

    #[test]
    fn empty_histogram_reports_zeroes() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.99), 0);
        assert_eq!(h.summary_us(), Percentiles::default());
    }

    #[test]
    fn exact_percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let p = exact(&v);
        assert_eq!(
            (p.min, p.p50, p.p90, p.p99, p.max),
            (1.0, 10.0, 18.0, 20.0, 20.0)
        );
        assert_eq!(p.count, 20);
        assert_eq!(exact(&[]), Percentiles::default());
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(fmt_us(850.0), "850µs");
        assert_eq!(fmt_us(1234.0), "1.23ms");
        assert_eq!(fmt_us(2_500_000.0), "2.50s");
    }
}
