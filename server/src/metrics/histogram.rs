//! Latency histograms with fixed exponential buckets, each written by one
//! thread only (a loop, or the journal thread) and read by scrapes.
//!
//! prometheus-client's `Histogram` takes a mutex on every observation; a
//! loop's hot path takes none. So each writer owns a [`Histogram`]: bucket
//! `k` counts the values of at most 2^k µs (1 µs to 2^24 µs ≈ 16.8 s), and
//! one more counts the rest; an observation is a load and a store on its
//! bucket and on the sum, no read-modify-write (one writer). A scrape sums
//! the writers' counts into [`Figures`], which prometheus-client encodes as
//! a Prometheus histogram in seconds (cumulative `_bucket{le=...}`, `_sum`,
//! `_count`). Read while written, `_count` and `_sum` may disagree by the
//! observation in flight, never more.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Buckets with a bound: 2^0 µs ..= 2^24 µs.
const BOUNDED: usize = 25;
/// Every bucket, the unbounded (`+Inf`) one last.
const BUCKETS: usize = BOUNDED + 1;

/// One writer's histogram.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// The bucket of a value of `ns` nanoseconds: the first whose bound (2^k
/// µs) is at least the value.
fn bucket(ns: u64) -> usize {
    let us = ns.div_ceil(1000);
    if us <= 1 {
        0
    } else {
        ((64 - (us - 1).leading_zeros()) as usize).min(BOUNDED)
    }
}

impl Histogram {
    /// Counts `n` observations of `ns` nanoseconds each. Only the owning
    /// thread calls this.
    #[inline]
    pub(crate) fn record_n(&self, ns: u64, n: u64) {
        let c = &self.counts[bucket(ns)];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        let s = &self.sum_ns;
        s.store(
            s.load(Ordering::Relaxed).wrapping_add(ns.saturating_mul(n)),
            Ordering::Relaxed,
        );
    }

    /// Counts one observation of `ns` nanoseconds.
    #[inline]
    pub(crate) fn record(&self, ns: u64) {
        self.record_n(ns, 1);
    }

    /// Adds this histogram's counts to `f`.
    pub(crate) fn add_to(&self, f: &mut Figures) {
        for (s, c) in f.counts.iter_mut().zip(&self.counts) {
            *s += c.load(Ordering::Relaxed);
        }
        f.sum_ns += self.sum_ns.load(Ordering::Relaxed);
    }
}

/// Histograms summed at scrape time: what `/metrics` encodes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Figures {
    counts: [u64; BUCKETS],
    sum_ns: u64,
}

impl Figures {
    /// The sum of `histograms`.
    pub(crate) fn of<'a>(histograms: impl IntoIterator<Item = &'a Histogram>) -> Figures {
        let mut f = Figures::default();
        for h in histograms {
            h.add_to(&mut f);
        }
        f
    }

    /// Observations in all.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (upper bound in seconds, count in that bucket alone), as
    /// prometheus-client's encoder takes them.
    fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let bound = if k < BOUNDED {
                    (1u64 << k) as f64 / 1e6
                } else {
                    f64::INFINITY
                };
                (bound, n)
            })
            .collect()
    }
}

impl EncodeMetric for Figures {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.sum_ns as f64 / 1e9,
            self.count(),
            &self.buckets(),
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_bounds_them() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1000), 0); // 1 µs
        assert_eq!(bucket(1001), 1); // just over: <= 2 µs
        assert_eq!(bucket(2000), 1);
        assert_eq!(bucket(2001), 2);
        assert_eq!(bucket(1_000_000), 10); // 1 ms <= 1024 µs
        assert_eq!(bucket(16_777_216_000), 24); // 2^24 µs
        assert_eq!(bucket(16_777_216_001), BOUNDED); // +Inf
        assert_eq!(bucket(u64::MAX), BOUNDED);
    }

    #[test]
    fn figures_sum_writers_and_encode_cumulatively_in_seconds() {
        let (a, b) = (Histogram::default(), Histogram::default());
        a.record(1500); // <= 2 µs
        b.record_n(3_000_000, 2); // 3 ms: <= 4096 µs
        b.record(u64::MAX / 4); // +Inf
        let f = Figures::of([&a, &b]);
        assert_eq!(f.count(), 4);
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("lat_seconds", "Latency", f);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("# TYPE lat_seconds histogram"), "{out}");
        assert!(out.contains("lat_seconds_count 4\n"), "{out}");
        assert!(
            out.contains("lat_seconds_bucket{le=\"0.000001\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("lat_seconds_bucket{le=\"0.000002\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("lat_seconds_bucket{le=\"0.004096\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("lat_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
    }
}
