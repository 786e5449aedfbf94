//! tally-load: a closed-loop load generator for tallyd (protocol v1).
//!
//! ```text
//! tally-load pairs  --connections 50 --pipeline 1 --seconds 5
//! tally-load renew  --connections 50 --pipeline 32 --seconds 5
//! tally-load expiry --rounds 50 --background 100000
//! ```
//!
//! Without `--addr` it starts its own `tallyd` (the binary next to this one)
//! on a free loopback port with a bench license, and stops it afterwards.
//! Closed loop: each connection sends `--pipeline` requests, waits for their
//! replies, records each request's latency (send of its batch to receipt of
//! its reply), and repeats. Closed loops hide queueing delay (coordinated
//! omission): read the tail as "at this offered load", not as an open-loop
//! service time.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;

/// The license tally-load serves when it starts its own tallyd.
const BENCH_LICENSE: &str = "\
INCREMENT F BENCH 1.0 permanent 2000000
INCREMENT EXP BENCH 1.0 permanent 1
INCREMENT CITRIX BENCH 1.0 permanent 100000 VENDOR_STRING=\";LT=SYS;GP=96\"
";

#[derive(Debug, Parser)]
#[command(name = "tally-load", about = "Load generator for tallyd (protocol v1)")]
struct Args {
    /// Server to load (default: start a private tallyd on loopback).
    #[arg(long, global = true)]
    addr: Option<SocketAddr>,
    /// tallyd binary to start (default: next to this binary).
    #[arg(long, global = true)]
    tallyd: Option<PathBuf>,
    /// Event-loop threads for the tallyd it starts.
    #[arg(long, global = true, default_value_t = 1)]
    server_workers: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// CHECKOUT then CHECKIN of a fresh instance, over and over.
    Pairs(LoadArgs),
    /// Re-checkout of held instances with a long linger (renewal churn).
    Renew(LoadArgs),
    /// Linger expiry lateness: a count=1 feature with linger 1 s, a second
    /// client spinning until it gets it; lateness = grant time - deadline.
    Expiry {
        /// Expiries to measure.
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Other lingering licenses held meanwhile (far deadlines).
        #[arg(long, default_value_t = 0)]
        background: usize,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct LoadArgs {
    /// Connections, each on its own thread.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Spawned {
    child: Child,
    dir: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_tallyd(args: &Args) -> Result<(SocketAddr, Spawned), String> {
    let bin = match &args.tallyd {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("tallyd"),
    };
    let dir = std::env::temp_dir().join(format!("tally-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let lic = dir.join("bench.lic");
    std::fs::write(&lic, BENCH_LICENSE).map_err(|e| e.to_string())?;
    let log = dir.join("debug.log");
    let mut child = Command::new(&bin)
        .arg("-c")
        .arg(&lic)
        .arg("-l")
        .arg(&log)
        .args(["--port", "0", "--workers", &args.server_workers.to_string()])
        // A private journal: never the shared default /var/lib/tally.
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it: cargo build --release -p tally-server)",
                bin.display()
            )
        })?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or("tallyd exited before listening")?
            .map_err(|e| e.to_string())?;
        if let Some(rest) = line.strip_prefix("tallyd: serving ") {
            break rest
                .rsplit(" on ")
                .next()
                .and_then(|a| a.parse().ok())
                .ok_or("cannot parse tallyd's address")?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((addr, Spawned { child, dir }))
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
}

impl Conn {
    fn new(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            writer: s.try_clone()?,
            reader: BufReader::new(s),
            line: String::new(),
        })
    }

    fn send(&mut self, batch: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(batch)
    }

    fn reply(&mut self) -> std::io::Result<&str> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(std::io::Error::other("server closed the connection"));
        }
        Ok(self.line.trim_end())
    }

    fn req(&mut self, line: &str) -> std::io::Result<String> {
        self.send(format!("{line}\n").as_bytes())?;
        self.reply().map(str::to_string)
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    denied: u64,
    err: u64,
}

fn load(addr: SocketAddr, a: &LoadArgs, renew: bool) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(a.connections + 1));
    let mut threads = Vec::new();
    for c in 0..a.connections {
        let (stop, measuring, barrier, a) =
            (stop.clone(), measuring.clone(), barrier.clone(), a.clone());
        threads.push(std::thread::spawn(
            move || -> Result<(Histogram<u64>, Tally, u64), String> {
                let mut conn = Conn::new(addr).map_err(|e| e.to_string())?;
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                    .map_err(|e| e.to_string())?;
                let mut tally = Tally::default();
                let mut done = 0u64;
                // Each request of a batch: pairs alternate CHECKOUT/CHECKIN of
                // one handle per slot; renew re-checks-out held handles.
                let mut batch = Vec::new();
                for p in 0..a.pipeline {
                    let h = format!("c{c}p{p}");
                    if renew {
                        writeln!(batch, "CHECKOUT F u{c} host{c} {h} linger=3600")
                            .map_err(|e| e.to_string())?;
                    } else if p % 2 == 0 {
                        writeln!(batch, "CHECKOUT F u{c} host{c} {h}")
                            .map_err(|e| e.to_string())?;
                    } else {
                        let prev = format!("c{c}p{}", p - 1);
                        writeln!(batch, "CHECKIN F {prev}").map_err(|e| e.to_string())?;
                    }
                }
                if !renew && a.pipeline % 2 == 1 {
                    // Odd pipelines end with a checkout: check it in too.
                    writeln!(batch, "CHECKIN F c{c}p{}", a.pipeline - 1)
                        .map_err(|e| e.to_string())?;
                }
                let per_batch = batch.iter().filter(|&&b| b == b'\n').count();
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    conn.send(&batch).map_err(|e| e.to_string())?;
                    let record = measuring.load(Ordering::Relaxed);
                    for _ in 0..per_batch {
                        let r = conn.reply().map_err(|e| e.to_string())?;
                        if record {
                            if r.starts_with("OK") {
                                tally.ok += 1;
                            } else if r.starts_with("DENIED") {
                                tally.denied += 1;
                            } else {
                                tally.err += 1;
                            }
                            hist.saturating_record(start.elapsed().as_nanos() as u64);
                            done += 1;
                        }
                    }
                }
                Ok((hist, tally, done))
            },
        ));
    }
    barrier.wait();
    std::thread::sleep(Duration::from_secs_f64(a.warmup));
    measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(a.seconds));
    measuring.store(false, Ordering::SeqCst);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let mut all =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let (mut total, mut tally) = (0u64, Tally::default());
    for t in threads {
        let (h, t, n) = t.join().map_err(|_| "a load thread panicked")??;
        all.add(&h).map_err(|e| e.to_string())?;
        total += n;
        tally.ok += t.ok;
        tally.denied += t.denied;
        tally.err += t.err;
    }
    let us = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{} connections x {} pipelined: {:.0} req/s | latency us p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} | OK {} DENIED {} ERR {}",
        a.connections,
        a.pipeline,
        total as f64 / elapsed,
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        all.max() as f64 / 1000.0,
        tally.ok,
        tally.denied,
        tally.err
    );
    Ok(())
}

fn expiry(addr: SocketAddr, rounds: usize, background: usize) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    // Background lingers, far away, pipelined in batches.
    let mut bg = Conn::new(addr).map_err(e)?;
    let mut left = background;
    let mut n = 0usize;
    while left > 0 {
        let batch = left.min(1000);
        let mut buf = Vec::with_capacity(batch * 48);
        for _ in 0..batch {
            writeln!(buf, "CHECKOUT F bg bghost bg{n} linger=86400").map_err(|x| x.to_string())?;
            n += 1;
        }
        bg.send(&buf).map_err(e)?;
        for _ in 0..batch {
            let r = bg.reply().map_err(e)?;
            if !r.starts_with("OK") {
                return Err(format!("background checkout refused: {r}"));
            }
        }
        left -= batch;
    }
    let mut holder = Conn::new(addr).map_err(e)?;
    let mut spinner = Conn::new(addr).map_err(e)?;
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|x| x.to_string())?;
    for round in 0..rounds {
        let r = holder
            .req(&format!("CHECKOUT EXP holder hh r{round} linger=1"))
            .map_err(e)?;
        let deadline: u64 = r
            .rsplit(' ')
            .next()
            .and_then(|d| d.parse().ok())
            .filter(|_| r.starts_with("OK"))
            .ok_or_else(|| format!("holder checkout: {r}"))?;
        // Spin from just before the deadline.
        while now_ms() + 5 < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        loop {
            let r = spinner
                .req(&format!("CHECKOUT EXP spin sh s{round}"))
                .map_err(e)?;
            if r.starts_with("OK") {
                let late_us = (SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64))
                .saturating_sub(deadline * 1000);
                hist.saturating_record(late_us.max(1));
                spinner.req(&format!("CHECKIN EXP s{round}")).map_err(e)?;
                break;
            }
        }
    }
    println!(
        "expiry lateness with {background} other lingers, {rounds} rounds: p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.value_at_quantile(0.999) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (addr, _server) = match args.addr {
        Some(a) => (a, None),
        None => match spawn_tallyd(&args) {
            Ok((a, s)) => (a, Some(s)),
            Err(e) => {
                eprintln!("tally-load: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let result = match &args.scenario {
        Scenario::Pairs(a) => load(addr, a, false),
        Scenario::Renew(a) => load(addr, a, true),
        Scenario::Expiry { rounds, background } => expiry(addr, *rounds, *background),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
