//! The load generator: closed loop (C connections × P pipelined), open loop
//! (fixed arrival rate, latency from the *intended* send time, so a slow
//! reply delays no measurement: no coordinated omission), and the logon
//! storm. Same code for every [`Target`]; only the bytes differ.
//!
//! Every loop is bounded: a fixed warm-up and measured duration, and a
//! read timeout ([`crate::wire::IO_TIMEOUT`]) on every socket.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::wire::{Conn, Encoder, Op, Outcome};

/// Highest latency recorded, in ns (60 s).
const MAX_NS: u64 = 60_000_000_000;

fn histogram() -> Histogram<u64> {
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
}

impl Measured {
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
        }
    }

    /// One line for a terminal.
    pub fn line(&self) -> String {
        format!(
            "{:.0} req/s | us p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} | OK {} DENIED {} ERR {}",
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

/// Closed loop: `conns` connections (a thread each), each sending a batch
/// of `pipeline` requests and waiting for all replies before the next.
/// Latency of a request: send of its batch to receipt of its reply.
pub fn closed_loop(
    addr: SocketAddr,
    enc: &Encoder,
    work: Workload,
    conns: usize,
    pipeline: usize,
    t: Timing,
) -> Result<Measured, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut threads = Vec::new();
    for c in 0..conns {
        let (stop, measuring, barrier) = (stop.clone(), measuring.clone(), barrier.clone());
        let plan = batches(enc, work, c, pipeline.max(1));
        let resp = enc.target.is_redis();
        threads.push(std::thread::spawn(
            move || -> Result<(Histogram<u64>, Counts), String> {
                let conn = Conn::connect(addr, resp);
                barrier.wait();
                let mut conn = conn.map_err(|e| format!("connect {addr}: {e}"))?;
                let mut hist = histogram();
                let mut counts = Counts::default();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (bytes, rel) = &plan[i % plan.len()];
                    i += 1;
                    let start = Instant::now();
                    conn.send(bytes).map_err(|e| format!("send: {e}"))?;
                    let record = measuring.load(Ordering::Relaxed);
                    for &r in rel {
                        let o = conn.outcome().map_err(|e| format!("reply: {e}"))?;
                        if record {
                            counts.add(o, r);
                            hist.saturating_record(start.elapsed().as_nanos() as u64);
                        }
                    }
                }
                // Leave nothing held that the next run would trip on.
                if matches!(work, Workload::Pairs { .. }) && i % plan.len() == 1 {
                    let (bytes, rel) = &plan[1];
                    conn.send(bytes).map_err(|e| format!("send: {e}"))?;
                    for _ in rel {
                        conn.outcome().map_err(|e| format!("reply: {e}"))?;
                    }
                }
                Ok((hist, counts))
            },
        ));
    }
    barrier.wait();
    std::thread::sleep(Duration::from_secs_f64(t.warmup_s));
    measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(t.seconds));
    measuring.store(false, Ordering::SeqCst);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let mut all = histogram();
    let mut counts = Counts::default();
    let mut first_err = None;
    for th in threads {
        match th.join() {
            Ok(Ok((h, c))) => {
                let _ = all.add(&h);
                counts.merge(c);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert_with(|| "a load thread panicked".to_string());
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Measured::from(&all, counts, elapsed))
}

/// Open loop: `conns` connections, each offered `rate / conns` requests
/// per second on a fixed schedule by a writer thread; a reader thread
/// takes each reply's latency from the request's intended send time.
/// Requests whose intended time falls in the warm-up are not recorded.
pub fn open_loop(
    addr: SocketAddr,
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
    let interval_ns = 1e9 / per_conn;
    let total_s = t.warmup_s + t.seconds;
    let n_total = (total_s * per_conn).floor() as u64;
    let warm_n = (t.warmup_s * per_conn).floor() as u64;
    let barrier = Arc::new(Barrier::new(2 * conns + 1));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let resp = enc.target.is_redis();
    // One request per element: split the batches of a pipeline-1 plan.
    for c in 0..conns {
        let plan = batches(enc, work, c, 1);
        let conn = Conn::connect(addr, resp).map_err(|e| format!("connect {addr}: {e}"))?;
        let mut w = conn.writer().map_err(|e| e.to_string())?;
        let start_at = Arc::new(std::sync::OnceLock::<Instant>::new());
        let (b1, b2) = (barrier.clone(), barrier.clone());
        let start_w = start_at.clone();
        let rel_flags: Vec<bool> = plan.iter().map(|(_, r)| r[0]).collect();
        // Stagger connections' schedules evenly inside one interval.
        let offset_ns = interval_ns * c as f64 / conns as f64;
        writers.push(std::thread::spawn(move || -> Result<u64, String> {
            b1.wait();
            let start = Instant::now() + Duration::from_millis(10);
            let _ = start_w.set(start);
            let mut sent = 0u64;
            let mut buf = Vec::new();
            while sent < n_total {
                let now = Instant::now();
                let due =
                    start + Duration::from_nanos((offset_ns + sent as f64 * interval_ns) as u64);
                if due > now {
                    std::thread::sleep(due - now);
                    continue;
                }
                // Send everything already due in one write.
                buf.clear();
                while sent < n_total {
                    let d = start
                        + Duration::from_nanos((offset_ns + sent as f64 * interval_ns) as u64);
                    if d > now {
                        break;
                    }
                    buf.extend_from_slice(&plan[(sent % plan.len() as u64) as usize].0);
                    sent += 1;
                }
                if w.write_all(&buf).is_err() {
                    break;
                }
            }
            Ok(sent)
        }));
        readers.push(std::thread::spawn(
            move || -> Result<(Histogram<u64>, Counts, u64), String> {
                let mut conn = conn;
                b2.wait();
                let mut hist = histogram();
                let mut counts = Counts::default();
                let mut got = 0u64;
                while got < n_total {
                    let o = match conn.outcome() {
                        Ok(o) => o,
                        Err(_) => break,
                    };
                    let Some(start) = start_at.get() else {
                        break;
                    };
                    let intended = *start
                        + Duration::from_nanos((offset_ns + got as f64 * interval_ns) as u64);
                    if got >= warm_n {
                        counts.add(o, rel_flags[(got % rel_flags.len() as u64) as usize]);
                        hist.saturating_record(
                            Instant::now()
                                .saturating_duration_since(intended)
                                .as_nanos() as u64,
                        );
                    }
                    got += 1;
                }
                Ok((hist, counts, got))
            },
        ));
    }
    barrier.wait();
    let mut all = histogram();
    let mut counts = Counts::default();
    let mut sent_total = 0u64;
    for w in writers {
        sent_total += w.join().map_err(|_| "writer panicked")??;
    }
    let mut got_total = 0u64;
    for r in readers {
        let (h, c, got) = r.join().map_err(|_| "reader panicked")??;
        let _ = all.add(&h);
        counts.merge(c);
        got_total += got;
    }
    // Requests never answered count as errors.
    counts.err += sent_total.saturating_sub(got_total);
    counts.err += (n_total * conns as u64).saturating_sub(sent_total);
    Ok(Measured::from(&all, counts, t.seconds))
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

/// Expiry lateness (tally only): a count=1 feature; a holder checks it out
/// with `linger_ms`; a second client spins from just before the announced
/// deadline until it is granted. Lateness = grant time − deadline
/// (includes the spinning client's round trip).
pub fn expiry(
    addr: SocketAddr,
    rounds: usize,
    linger_ms: u64,
    tag: &str,
) -> Result<Lateness, String> {
    let e = |e: std::io::Error| e.to_string();
    let mut holder = Conn::connect(addr, false).map_err(e)?;
    let mut spinner = Conn::connect(addr, false).map_err(e)?;
    let f = crate::servers::EXPIRY_FEATURE;
    let linger = format!("{}.{:03}", linger_ms / 1000, linger_ms % 1000);
    let mut samples = Vec::with_capacity(rounds);
    let bound = Instant::now()
        + Duration::from_secs(30)
        + Duration::from_millis(linger_ms * 3) * rounds as u32;
    for round in 0..rounds {
        let r = holder
            .request_line(&format!(
                "CHECKOUT {f} holder hh {tag}r{round} linger={linger}"
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
                .request_line(&format!("CHECKOUT {f} spin sh {tag}s{round}"))
                .map_err(e)?;
            if r.starts_with("OK") {
                samples.push(unix_us().saturating_sub(deadline_ms * 1000));
                spinner
                    .request_line(&format!("CHECKIN {f} {tag}s{round}"))
                    .map_err(e)?;
                break;
            }
        }
    }
    Ok(Lateness {
        samples_us: samples,
    })
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
