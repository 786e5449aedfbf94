//! The load generator: closed loop (C connections × P pipelined), open loop
//! (fixed arrival rate, latency from the *intended* send time, so a slow
//! reply delays no measurement: no coordinated omission), and the logon
//! storm. Same code for every [`crate::wire::Target`]; only the bytes differ.
//!
//! Every loop is bounded: a fixed warm-up and measured duration, and a
//! read timeout ([`crate::wire::IO_TIMEOUT`]) on every socket.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::driver;
use crate::results::Ladder;
use crate::wire::{Conn, Encoder, Op, Outcome};

/// Highest latency recorded, in ns (60 s).
pub(crate) const MAX_NS: u64 = 60_000_000_000;

/// An empty latency histogram, 1 ns to 60 s, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid.
    Histogram::<u64>::new_with_bounds(1, MAX_NS, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

/// What one measured run produced.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Completed requests per second in the measured window.
    pub ops_per_s: f64,
    /// Latency percentiles in µs: p50, p90, p99, p99.9, max.
    pub p50_us: f64,
    /// p90 in µs.
    pub p90_us: f64,
    /// p99 in µs.
    pub p99_us: f64,
    /// p99.9 in µs.
    pub p999_us: f64,
    /// Largest latency in µs.
    pub max_us: f64,
    /// Replies counted OK.
    pub ok: u64,
    /// Replies counted DENIED.
    pub denied: u64,
    /// Replies counted ERR (and requests lost to an I/O error).
    pub err: u64,
    /// The latency distribution (µs) as a percentile ladder.
    pub ladder: Ladder,
    /// The server process's CPU time (user + system, all its threads) in
    /// the measured window divided by the requests answered in it, in µs;
    /// `None` when the server's pid was not given.
    pub cpu_us_per_req: Option<f64>,
}

impl Measured {
    /// From a latency histogram (ns) and reply counts over `seconds`.
    pub fn from_histogram(
        h: &Histogram<u64>,
        ok: u64,
        denied: u64,
        err: u64,
        seconds: f64,
    ) -> Measured {
        Measured::from(h, Counts { ok, denied, err }, seconds)
    }

    fn from(h: &Histogram<u64>, c: Counts, seconds: f64) -> Measured {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Measured {
            ops_per_s: (c.ok + c.denied + c.err) as f64 / seconds,
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1000.0,
            ok: c.ok,
            denied: c.denied,
            err: c.err,
            ladder: Ladder::from_histogram(h, 1000.0),
            cpu_us_per_req: None,
        }
    }

    /// One line for a terminal.
    pub fn line(&self) -> String {
        let cpu = self
            .cpu_us_per_req
            .map_or(String::new(), |c| format!(" | server CPU {c:.2} us/req"));
        format!(
            "{:.0} req/s | us p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} | OK {} DENIED {} ERR {}{cpu}",
            self.ops_per_s,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.ok,
            self.denied,
            self.err
        )
    }
}

/// CPU time a process has used, user + system, summed over all its
/// threads (live and exited), in clock ticks: fields 14 and 15 of a
/// `/proc/PID/stat` line. The command name (field 2) is in parentheses and
/// may hold spaces and parentheses itself, so fields are counted from the
/// last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first.
    let mut f = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`;
/// 100, Linux's USER_HZ, if that fails).
pub fn clock_ticks_per_s() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The CPU time process `pid` has used (all threads, user + system), in
/// seconds, from `/proc/PID/stat`.
pub fn process_cpu_s(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ticks = parse_stat_ticks(&s).ok_or_else(|| format!("{path}: no utime/stime in {s:?}"))?;
    Ok(ticks as f64 / clock_ticks_per_s())
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    ok: u64,
    denied: u64,
    err: u64,
}

impl Counts {
    fn add(&mut self, o: Outcome, release: bool) {
        match (o, release) {
            (Outcome::Ok, _) => self.ok += 1,
            // A release of nothing held is an error, not a denial.
            (Outcome::Denied, true) | (Outcome::Err, _) => self.err += 1,
            (Outcome::Denied, false) => self.denied += 1,
        }
    }
    fn merge(&mut self, o: Counts) {
        self.ok += o.ok;
        self.denied += o.denied;
        self.err += o.err;
    }
}

/// What the requests do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Acquire then release a fresh instance (steady checkout+check-in);
    /// the acquire carries `linger` seconds (0: connection-bound).
    Pairs {
        /// Linger of each checkout, seconds.
        linger_s: u32,
    },
    /// Re-acquire held handles with a long linger (renewal churn).
    Renew,
}

/// Linger of the renewal workload: one hour.
pub const RENEW_LINGER_S: u32 = 3600;

/// The timing of a run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Unmeasured seconds first.
    pub warmup_s: f64,
    /// Measured seconds.
    pub seconds: f64,
}

/// Batches one connection cycles through, each with its release flags.
fn batches(
    enc: &Encoder,
    work: Workload,
    conn: usize,
    pipeline: usize,
) -> Vec<(Vec<u8>, Vec<bool>)> {
    let handles: Vec<String> = (0..pipeline).map(|p| format!("c{conn}p{p}")).collect();
    let mut acq = Vec::new();
    let mut rel = Vec::new();
    let linger_s = match work {
        Workload::Pairs { linger_s } => linger_s,
        Workload::Renew => RENEW_LINGER_S,
    };
    for h in &handles {
        enc.encode(
            Op::Acquire {
                feature: crate::servers::FEATURE,
                handle: h,
                linger_s,
            },
            &mut acq,
        );
        enc.encode(
            Op::Release {
                feature: crate::servers::FEATURE,
                handle: h,
            },
            &mut rel,
        );
    }
    match work {
        Workload::Pairs { .. } => vec![(acq, vec![false; pipeline]), (rel, vec![true; pipeline])],
        Workload::Renew => vec![(acq, vec![false; pipeline])],
    }
}

/// Threads the generator drives connections from: the cores it may run on.
pub fn generator_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[allow(clippy::too_many_arguments)]
fn drive(
    addr: SocketAddr,
    cpu_of: Option<u32>,
    enc: &Encoder,
    work: Workload,
    conns: usize,
    pipeline: usize,
    mode: driver::Mode,
    t: Timing,
) -> Result<Measured, String> {
    let threads = generator_threads().min(conns).max(1);
    let start = Instant::now() + Duration::from_millis(100);
    let warm_end = start + Duration::from_secs_f64(t.warmup_s);
    let end = warm_end + Duration::from_secs_f64(t.seconds);
    let interval_ns = match mode {
        driver::Mode::Open { interval_ns } => interval_ns,
        driver::Mode::Closed => 0.0,
    };
    let mut per_thread: Vec<Vec<(driver::Plan, f64)>> = vec![Vec::new(); threads];
    for c in 0..conns {
        // Stagger open-loop schedules evenly inside one interval.
        let offset = interval_ns * c as f64 / conns as f64;
        per_thread[c % threads].push((batches(enc, work, c, pipeline.max(1)), offset));
    }
    let resp = enc.target.is_redis();
    let hs: Vec<_> = per_thread
        .into_iter()
        .map(|plans| {
            std::thread::spawn(move || driver::run(addr, resp, plans, mode, start, warm_end, end))
        })
        .collect();
    // The server's CPU time over the measured window, read by this thread
    // (idle until the generator threads end) at its start and end.
    let cpu = cpu_of.map(|pid| {
        sleep_until(warm_end);
        let c0 = process_cpu_s(pid);
        sleep_until(end);
        c0.and_then(|c0| Ok(process_cpu_s(pid)? - c0))
    });
    let mut all = histogram();
    let mut counts = Counts::default();
    for h in hs {
        let r = h.join().map_err(|_| "a generator thread panicked")??;
        let _ = all.add(&r.hist);
        counts.merge(Counts {
            ok: r.ok,
            denied: r.denied,
            err: r.err,
        });
    }
    let mut m = Measured::from(&all, counts, t.seconds);
    let served = (counts.ok + counts.denied + counts.err) as f64;
    if let Some(cpu) = cpu {
        let cpu = cpu?;
        if served > 0.0 {
            m.cpu_us_per_req = Some(cpu * 1e6 / served);
        }
    }
    Ok(m)
}

/// Closed loop: `conns` connections, each sending a batch of `pipeline`
/// requests and waiting for all replies before the next. Latency of a
/// request: send of its batch to receipt of its reply.
pub fn closed_loop(
    addr: SocketAddr,
    enc: &Encoder,
    work: Workload,
    conns: usize,
    pipeline: usize,
    t: Timing,
) -> Result<Measured, String> {
    drive(
        addr,
        None,
        enc,
        work,
        conns,
        pipeline,
        driver::Mode::Closed,
        t,
    )
}

/// [`closed_loop`] that also measures the CPU time of the server process
/// `server_pid` per request ([`Measured::cpu_us_per_req`]).
pub fn closed_loop_cpu(
    addr: SocketAddr,
    server_pid: u32,
    enc: &Encoder,
    work: Workload,
    conns: usize,
    pipeline: usize,
    t: Timing,
) -> Result<Measured, String> {
    let mode = driver::Mode::Closed;
    drive(addr, Some(server_pid), enc, work, conns, pipeline, mode, t)
}

/// Open loop: `conns` connections, each offered `rate / conns` requests
/// per second on a fixed schedule; each reply's latency is taken from its
/// request's intended send time. Requests intended in the warm-up are not
/// recorded.
pub fn open_loop(
    addr: SocketAddr,
    enc: &Encoder,
    work: Workload,
    conns: usize,
    rate: f64,
    t: Timing,
) -> Result<Measured, String> {
    open_loop_on(addr, None, enc, work, conns, rate, t)
}

/// [`open_loop`] that also measures the CPU time of the server process
/// `server_pid` per request ([`Measured::cpu_us_per_req`]).
pub fn open_loop_cpu(
    addr: SocketAddr,
    server_pid: u32,
    enc: &Encoder,
    work: Workload,
    conns: usize,
    rate: f64,
    t: Timing,
) -> Result<Measured, String> {
    open_loop_on(addr, Some(server_pid), enc, work, conns, rate, t)
}

fn open_loop_on(
    addr: SocketAddr,
    cpu_of: Option<u32>,
    enc: &Encoder,
    work: Workload,
    conns: usize,
    rate: f64,
    t: Timing,
) -> Result<Measured, String> {
    let per_conn = rate / conns as f64;
    if per_conn <= 0.0 || !per_conn.is_finite() {
        return Err(format!("open loop: bad rate {rate}"));
    }
    let mode = driver::Mode::Open {
        interval_ns: 1e9 / per_conn,
    };
    drive(addr, cpu_of, enc, work, conns, 1, mode, t)
}

/// Result of a logon storm.
#[derive(Debug, Clone)]
pub struct Storm {
    /// Latency of connect + startup grant + product grant, from each
    /// client's intended arrival time.
    pub m: Measured,
    /// Clients that completed both grants.
    pub completed: u64,
}

/// Logon storm: `clients` new clients arrive evenly over `window`; each
/// connects, takes the startup license and a product license, and stays
/// connected until the storm is over. Driven by `threads` threads.
pub fn storm(
    addr: SocketAddr,
    enc: &Encoder,
    clients: usize,
    window: Duration,
    threads: usize,
) -> Result<Storm, String> {
    let start = Instant::now() + Duration::from_millis(50);
    let resp = enc.target.is_redis();
    let mut hs = Vec::new();
    for t in 0..threads {
        let enc = enc.clone();
        hs.push(std::thread::spawn(move || {
            let mut hist = histogram();
            let mut counts = Counts::default();
            let mut completed = 0u64;
            let mut held = Vec::new();
            let mut buf = Vec::new();
            for j in (t..clients).step_by(threads) {
                let intended = start
                    + Duration::from_nanos(
                        (window.as_nanos() * j as u128 / clients as u128) as u64,
                    );
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let handle = format!("s{j}");
                let mut conn = match Conn::connect(addr, resp) {
                    Ok(c) => c,
                    Err(_) => {
                        counts.err += 2;
                        continue;
                    }
                };
                let mut ok = true;
                for feature in [
                    crate::servers::STARTUP_FEATURE,
                    crate::servers::PRODUCT_FEATURE,
                ] {
                    buf.clear();
                    enc.encode(
                        Op::Acquire {
                            feature,
                            handle: &handle,
                            linger_s: 0,
                        },
                        &mut buf,
                    );
                    let o = conn.send(&buf).and_then(|_| conn.outcome());
                    match o {
                        Ok(o) => {
                            counts.add(o, false);
                            ok &= o == Outcome::Ok;
                        }
                        Err(_) => {
                            counts.err += 1;
                            ok = false;
                        }
                    }
                }
                if ok {
                    completed += 1;
                    hist.saturating_record(
                        Instant::now()
                            .saturating_duration_since(intended)
                            .as_nanos() as u64,
                    );
                }
                held.push(conn);
            }
            (hist, counts, completed, held)
        }));
    }
    let mut all = histogram();
    let mut counts = Counts::default();
    let mut completed = 0;
    let mut held = Vec::new();
    for h in hs {
        let (hh, c, n, conns) = h.join().map_err(|_| "storm thread panicked")?;
        let _ = all.add(&hh);
        counts.merge(c);
        completed += n;
        held.push(conns);
    }
    let elapsed = start.elapsed().as_secs_f64().max(window.as_secs_f64());
    drop(held);
    Ok(Storm {
        m: Measured::from(&all, counts, elapsed),
        completed,
    })
}

/// Result of the expiry-lateness scenario, in µs.
#[derive(Debug, Clone)]
pub struct Lateness {
    /// Each round's lateness, µs.
    pub samples_us: Vec<u64>,
}

impl Lateness {
    /// The `q` quantile in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let mut h = histogram();
        for &s in &self.samples_us {
            h.saturating_record(s.max(1));
        }
        h.value_at_quantile(q) as f64 / 1000.0
    }

    /// The rounds' lateness as a percentile ladder, in ms.
    pub fn ladder_ms(&self) -> Ladder {
        let mut h = histogram();
        for &s in &self.samples_us {
            h.saturating_record(s.max(1));
        }
        Ladder::from_histogram(&h, 1000.0)
    }
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Checks out `n` lingering licenses of the load feature (handles
/// `{prefix}{i}`), pipelined in batches of 1000 over one connection.
pub fn hold_lingering(
    addr: SocketAddr,
    enc: &Encoder,
    n: usize,
    prefix: &str,
    linger_s: u32,
) -> Result<(), String> {
    let mut c = Conn::connect(addr, enc.target.is_redis()).map_err(|e| e.to_string())?;
    let mut i = 0usize;
    let mut buf = Vec::with_capacity(1000 * 64);
    while i < n {
        let batch = (n - i).min(1000);
        buf.clear();
        for k in i..i + batch {
            let h = format!("{prefix}{k}");
            enc.encode(
                Op::Acquire {
                    feature: crate::servers::FEATURE,
                    handle: &h,
                    linger_s,
                },
                &mut buf,
            );
        }
        c.send(&buf).map_err(|e| format!("send: {e}"))?;
        for _ in 0..batch {
            let o = c.outcome().map_err(|e| format!("reply: {e}"))?;
            if o != Outcome::Ok {
                return Err(format!("lingering checkout {i} refused ({o:?})"));
            }
        }
        i += batch;
    }
    Ok(())
}

/// Expiry lateness on the bench license's expiry feature (count 1):
/// [`expiry_counted`] on [`crate::servers::EXPIRY_FEATURE`].
pub fn expiry(
    addr: SocketAddr,
    rounds: usize,
    linger_ms: u64,
    tag: &str,
) -> Result<Expiries, String> {
    expiry_counted(addr, crate::servers::EXPIRY_FEATURE, rounds, linger_ms, tag)
}

/// Connects `n` idle connections from source addresses 127.0.0.1,
/// 127.0.0.2, ... (`per_source` each, so ephemeral ports do not run out),
/// using `threads` threads; gives up at `deadline`. Returns the streams
/// and the first error if it stopped short.
pub fn connect_idle(
    addr: SocketAddr,
    n: usize,
    per_source: usize,
    threads: usize,
    deadline: Instant,
) -> (Vec<TcpStream>, Option<String>) {
    let mut hs = Vec::new();
    for t in 0..threads {
        hs.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            for i in (t..n).step_by(threads) {
                if Instant::now() > deadline {
                    return (out, Some(format!("time limit reached after {i} connects")));
                }
                let src_n = i / per_source;
                let src =
                    std::net::Ipv4Addr::new(127, 0, (src_n / 250) as u8, (src_n % 250 + 1) as u8);
                // The first block connects unbound (connect-time port
                // choice is cheap); bind() with port 0 searches the whole
                // ephemeral range per call, so only later blocks use it.
                let r = if src_n == 0 {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                } else {
                    connect_from(src, addr)
                };
                match r {
                    Ok(s) => out.push(s),
                    Err(e) => return (out, Some(format!("connect #{i} from {src}: {e}"))),
                }
            }
            (out, None)
        }));
    }
    let mut all = Vec::with_capacity(n);
    let mut err = None;
    for h in hs {
        match h.join() {
            Ok((s, e)) => {
                all.extend(s);
                if err.is_none() {
                    err = e;
                }
            }
            Err(_) => err = Some("connect thread panicked".into()),
        }
    }
    (all, err)
}

fn connect_from(src: std::net::Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((src, 0)).into())?;
    s.connect_timeout(&dst.into(), Duration::from_secs(10))?;
    Ok(s.into())
}

/// [`hold_lingering`] over `conns` connections at once (handles
/// `{prefix}{i}`, connection `c` taking every `i` with `i % conns == c`),
/// each pipelining batches of 1000; for holding millions. Calls
/// `progress(done)` about once a second with the checkouts granted so far.
pub fn hold_lingering_parallel(
    addr: SocketAddr,
    enc: &Encoder,
    n: usize,
    prefix: &str,
    linger_s: u32,
    conns: usize,
    progress: &dyn Fn(usize),
) -> Result<(), String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let conns = conns.clamp(1, n.max(1));
    let done = AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for c in 0..conns {
            let (done, failed) = (&done, &failed);
            s.spawn(move || {
                let r = (|| -> Result<(), String> {
                    let mut conn =
                        Conn::connect(addr, enc.target.is_redis()).map_err(|e| e.to_string())?;
                    let mut buf = Vec::with_capacity(1000 * 64);
                    let mut handle = String::new();
                    let mut i = c;
                    while i < n {
                        buf.clear();
                        let mut batch = 0;
                        while i < n && batch < 1000 {
                            handle.clear();
                            use std::fmt::Write as _;
                            let _ = write!(handle, "{prefix}{i}");
                            enc.encode(
                                Op::Acquire {
                                    feature: crate::servers::FEATURE,
                                    handle: &handle,
                                    linger_s,
                                },
                                &mut buf,
                            );
                            batch += 1;
                            i += conns;
                        }
                        conn.send(&buf).map_err(|e| format!("send: {e}"))?;
                        for _ in 0..batch {
                            let o = conn.outcome().map_err(|e| format!("reply: {e}"))?;
                            if o != Outcome::Ok {
                                return Err(format!("a lingering checkout was refused ({o:?})"));
                            }
                        }
                        done.fetch_add(batch, Ordering::Relaxed);
                        if failed.lock().map_or(true, |f| f.is_some()) {
                            return Ok(());
                        }
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                }
            });
        }
        // Progress until every connection is through (or one failed).
        let mut last = Instant::now();
        loop {
            let d = done.load(Ordering::Relaxed);
            let stop = d >= n || failed.lock().map_or(true, |f| f.is_some());
            if stop {
                break;
            }
            if last.elapsed() >= Duration::from_secs(1) {
                progress(d);
                last = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    match failed.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Expiry lateness with early grants counted.
#[derive(Debug, Clone, Default)]
pub struct Expiries {
    /// Lateness of each round that was granted at or after its deadline,
    /// µs (grant reply received minus deadline).
    pub samples_us: Vec<u64>,
    /// Rounds whose spinning checkout was granted with its reply received
    /// before the holder's deadline: certainly early.
    pub early: u64,
}

impl Expiries {
    /// The on-time rounds' lateness (early ones are counted in `early`).
    pub fn lateness(&self) -> Lateness {
        Lateness {
            samples_us: self.samples_us.clone(),
        }
    }
}

/// [`expiry`] on feature `feature` (count 1), counting early grants:
/// the holder checks it out with `linger_ms`, a second client spins on it
/// from 5 ms before the announced deadline; a grant whose reply arrives
/// before the deadline is early (the holder's license was given away
/// before its linger ended), one after it is late by the difference.
pub fn expiry_counted(
    addr: SocketAddr,
    feature: &str,
    rounds: usize,
    linger_ms: u64,
    tag: &str,
) -> Result<Expiries, String> {
    let e = |e: std::io::Error| e.to_string();
    let mut holder = Conn::connect(addr, false).map_err(e)?;
    let mut spinner = Conn::connect(addr, false).map_err(e)?;
    let linger = format!("{}.{:03}", linger_ms / 1000, linger_ms % 1000);
    let mut out = Expiries::default();
    let bound = Instant::now()
        + Duration::from_secs(30)
        + Duration::from_millis(linger_ms * 3) * rounds as u32;
    for round in 0..rounds {
        let r = holder
            .request_line(&format!(
                "CHECKOUT {feature} holder hh {tag}r{round} linger={linger}"
            ))
            .map_err(e)?;
        let deadline_ms: u64 = r
            .rsplit(' ')
            .next()
            .and_then(|d| d.parse().ok())
            .filter(|_| r.starts_with("OK"))
            .ok_or_else(|| format!("holder checkout: {r}"))?;
        while unix_us() / 1000 + 5 < deadline_ms {
            std::thread::sleep(Duration::from_millis(1));
        }
        loop {
            if Instant::now() > bound {
                return Err(format!("expiry: round {round} never granted"));
            }
            let r = spinner
                .request_line(&format!("CHECKOUT {feature} spin sh {tag}s{round}"))
                .map_err(e)?;
            if r.starts_with("OK") {
                let at = unix_us();
                if at < deadline_ms * 1000 {
                    out.early += 1;
                } else {
                    out.samples_us.push(at - deadline_ms * 1000);
                }
                spinner
                    .request_line(&format!("CHECKIN {feature} {tag}s{round}"))
                    .map_err(e)?;
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_utime_plus_stime_after_the_last_paren() {
        // A real tallyd line (fields 14 and 15: utime 1234, stime 567),
        // its command name made awkward: spaces and a ") " inside.
        let line = "4242 (tally d) S 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 0 0 20 0 3 0 100 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0\n";
        assert_eq!(parse_stat_ticks(line), Some(1234 + 567));
        let plain = "7 (redis-server) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 5 0 1 1 1";
        assert_eq!(parse_stat_ticks(plain), Some(30));
        // Truncated or garbled: no figure rather than a wrong one.
        assert_eq!(parse_stat_ticks("7 (x) R 1 7 7 0 -1 0 0 0 0 0 10"), None);
        assert_eq!(parse_stat_ticks("no parens at all 1 2 3"), None);
        assert_eq!(
            parse_stat_ticks("7 (x) R 1 7 7 0 -1 0 0 0 0 0 ten 20 0"),
            None
        );
    }

    #[test]
    fn this_process_cpu_time_is_read_and_grows() {
        let pid = std::process::id();
        let a = process_cpu_s(pid).expect("read own /proc stat");
        // Spin until the figure moves (one clock tick of CPU), for at most
        // 20 s of wall time on a loaded machine.
        let t = Instant::now();
        let mut x = 0u64;
        let mut b = a;
        while b == a && t.elapsed() < Duration::from_secs(20) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            b = process_cpu_s(pid).expect("read own /proc stat");
        }
        assert!(b > a, "CPU time did not grow over a busy loop: {a} -> {b}");
        assert!(clock_ticks_per_s() >= 1.0);
    }
}
