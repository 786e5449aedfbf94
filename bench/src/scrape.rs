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
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).ok()?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: tally\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    // (An HTTP/1.0 request may be answered in 1.0, as hyper does.)
    (head.starts_with("HTTP/1.1 200 ") || head.starts_with("HTTP/1.0 200 ")).then_some(body.len())
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
