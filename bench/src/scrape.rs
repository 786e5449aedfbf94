//! The `scrape` scenario's scraper: a thread that GETs tallyd's `/metrics`
//! at a fixed period (as Prometheus would, only more often), reading each
//! response to its end, until stopped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest one scrape may take before it counts as failed.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a scraper did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ScrapeStats {
    /// Scrapes answered 200 with a body.
    pub ok: u64,
    /// Scrapes that failed (connect, timeout, another status).
    pub failed: u64,
    /// Mean bytes of a successful scrape's body.
    pub mean_bytes: f64,
    /// Mean time of a successful scrape, ms.
    pub mean_ms: f64,
}

/// A running scraper.
#[derive(Debug)]
pub struct Scraper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ScrapeStats>,
}

/// One GET of `/metrics`: the body's length if the answer was 200.
fn scrape_once(addr: SocketAddr) -> Option<usize> {
    metrics_text(addr).map(|body| body.len())
}

/// One GET of `/metrics` at `addr` (tallyd's `--http`): the body if the
/// answer was 200.
pub fn metrics_text(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).ok()?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: tally\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    // (An HTTP/1.0 request may be answered in 1.0, as hyper does.)
    (head.starts_with("HTTP/1.1 200 ") || head.starts_with("HTTP/1.0 200 "))
        .then(|| body.to_string())
}

/// A Prometheus histogram's cumulative buckets in a `/metrics` text:
/// `(le in seconds, observations ≤ le)`, in the text's order (ascending,
/// `+Inf` last).
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// What a histogram counted between two scrapes (`after` − `before`,
/// bucket by bucket): the observations, and the smallest bound at or
/// under which all of them lie (`None` if there were none; infinite if
/// some were past the last finite bound).
pub fn histogram_delta(before: &[(f64, u64)], after: &[(f64, u64)]) -> (u64, Option<f64>) {
    let at = |b: &[(f64, u64)], le: f64| b.iter().find(|&&(l, _)| l == le).map_or(0, |&(_, n)| n);
    let total = after
        .last()
        .map_or(0, |&(le, n)| n.saturating_sub(at(before, le)));
    let max = (total > 0).then(|| {
        after
            .iter()
            .find(|&&(le, n)| n.saturating_sub(at(before, le)) == total)
            .map_or(f64::INFINITY, |&(le, _)| le)
    });
    (total, max)
}

impl Scraper {
    /// Starts scraping `http` (tallyd's `--http` address) every `every`.
    pub fn start(http: SocketAddr, every: Duration) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut st = ScrapeStats::default();
            let (mut bytes, mut ms) = (0f64, 0f64);
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                match scrape_once(http) {
                    Some(n) => {
                        st.ok += 1;
                        bytes += n as f64;
                        ms += t.elapsed().as_secs_f64() * 1e3;
                    }
                    None => st.failed += 1,
                }
                next += every;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now; // late: no burst to catch up
                }
            }
            if st.ok > 0 {
                st.mean_bytes = bytes / st.ok as f64;
                st.mean_ms = ms / st.ok as f64;
            }
            st
        });
        Scraper { stop, thread }
    }

    /// Stops it and says what it did.
    pub fn stop(self) -> ScrapeStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histograms_delta_counts_only_the_new_observations_and_bounds_them() {
        let text = |a: u64, b: u64, inf: u64| {
            format!(
                "# TYPE x histogram\nx_bucket{{le=\"0.001\"}} {a}\nx_bucket{{le=\"0.002\"}} {b}\nx_bucket{{le=\"+Inf\"}} {inf}\nx_count {inf}\n"
            )
        };
        let before = histogram_buckets(&text(5, 7, 8), "x");
        assert_eq!(before, vec![(0.001, 5), (0.002, 7), (f64::INFINITY, 8)]);
        // Three new ones, the slowest in (0.001, 0.002].
        let after = histogram_buckets(&text(7, 10, 11), "x");
        assert_eq!(histogram_delta(&before, &after), (3, Some(0.002)));
        // One past the last bound.
        let after = histogram_buckets(&text(5, 7, 9), "x");
        assert_eq!(histogram_delta(&before, &after), (1, Some(f64::INFINITY)));
        assert_eq!(histogram_delta(&before, &before), (0, None));
        assert!(histogram_buckets("y_bucket{le=\"1\"} 3", "x").is_empty());
    }
}
