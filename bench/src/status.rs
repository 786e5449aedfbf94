//! The `status` scenario's load: does a big STATUS slow everyone else?
//!
//! A license of many features ([`license`]), some of them held
//! ([`hold_holders`]); a [`probe`] connection that sends PING (or a
//! CHECKOUT+CHECKIN pair) on a fixed schedule and times each reply from its
//! *intended* send time; and clients that loop full `STATUS` requests,
//! reading each reply whole ([`status_loop`]). [`phase`] runs the probes
//! with or without the STATUS clients over one window.
//!
//! Invariants:
//! - Every loop is bounded: probes stop scheduling at the window's end,
//!   STATUS clients send no request after it, and every read has the
//!   socket timeout [`IO_TIMEOUT`].
//! - A STATUS client reads the reply it asked for to its end before it
//!   stops, so when [`phase`] returns, the server builds no STATUS for
//!   anyone: the next phase (the "alone" one of the next repetition)
//!   starts on an idle server.
//! - A probe sends each request on its schedule and waits for the reply. A
//!   reply that comes late (a stall) is recorded with HdrHistogram's
//!   coordinated-omission correction (`record_correct`): the requests due
//!   during the stall, which a client on that schedule would have sent, are
//!   counted as waiting until the stall ended, so a stall weighs once per
//!   request it delayed, not once in all. The probe then resumes at its
//!   next slot: it never builds a backlog, so a server slower than the
//!   probe's rate shows its stalls, not the length of the window.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::load::{self, Measured, Timing};
use crate::wire::{Conn, Outcome, IO_TIMEOUT};

/// Licenses of each generated feature.
pub const SEATS_PER_FEATURE: u64 = 4;

/// Licenses of the probe's feature ([`crate::servers::FEATURE`]).
pub const PROBE_SEATS: u64 = 100;

/// Time between a probe's requests: 1 ms (1,000 requests per second).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(1);

/// A probe sleeps until this long before a request is due, then spins, so
/// the sleep's wake-up slack is not counted as server latency.
pub const PROBE_SPIN: Duration = Duration::from_micros(200);

/// Linger of the held licenses: one day (they outlive the run).
pub const HOLD_LINGER_S: u32 = 86_400;

/// Checkouts pipelined per batch when holding.
const HOLD_BATCH: usize = 1_000;

/// Read buffer of a STATUS client, bytes.
const STATUS_READ_BYTES: usize = 1 << 20;

/// How a STATUS reply starts.
const REPLY_HEAD: &[u8] = b"OK ";

/// Delay before a phase's first request, so every connection is up.
const PHASE_START: Duration = Duration::from_millis(100);

/// Name of generated feature `i`.
pub fn feature_name(i: usize) -> String {
    format!("S{i:06}")
}

/// A license with the probe's feature and `features` generated features
/// ([`feature_name`]) of [`SEATS_PER_FEATURE`] licenses each.
pub fn license(features: usize) -> String {
    let mut s = String::with_capacity(48 * (features + 1));
    s.push_str(&format!(
        "INCREMENT {} BENCH 1.0 permanent {PROBE_SEATS}\n",
        crate::servers::FEATURE
    ));
    for i in 0..features {
        s.push_str(&format!(
            "INCREMENT {} BENCH 1.0 permanent {SEATS_PER_FEATURE}\n",
            feature_name(i)
        ));
    }
    s
}

/// Checks out one lingering license of every `every`-th generated feature
/// (`0, every, 2 every, ...` below `features`), pipelined over one
/// connection; returns how many are held.
pub fn hold_holders(addr: SocketAddr, features: usize, every: usize) -> Result<usize, String> {
    let mut c = Conn::connect(addr, false).map_err(|e| format!("connect {addr}: {e}"))?;
    let picked: Vec<usize> = (0..features).step_by(every.max(1)).collect();
    let mut buf = Vec::with_capacity(HOLD_BATCH * 64);
    for chunk in picked.chunks(HOLD_BATCH) {
        buf.clear();
        for &i in chunk {
            buf.extend_from_slice(
                format!(
                    "CHECKOUT {} holder{} pc{} st{i} linger={HOLD_LINGER_S}\n",
                    feature_name(i),
                    i % 97,
                    i % 31
                )
                .as_bytes(),
            );
        }
        c.send(&buf).map_err(|e| format!("send: {e}"))?;
        for &i in chunk {
            let o = c.outcome().map_err(|e| format!("reply: {e}"))?;
            if o != Outcome::Ok {
                return Err(format!(
                    "holding {}: checkout refused ({o:?})",
                    feature_name(i)
                ));
            }
        }
    }
    Ok(picked.len())
}

/// What a probe sends each interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `PING`, answered `PONG`.
    Ping,
    /// `CHECKOUT F u h probe` and `CHECKIN F probe` in one write; timed to
    /// the check-in's reply.
    Pair,
}

impl Probe {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Ping => "ping",
            Probe::Pair => "checkout+checkin",
        }
    }

    fn request(self) -> (&'static [u8], usize) {
        match self {
            Probe::Ping => (b"PING\n", 1),
            Probe::Pair => (b"CHECKOUT F u h probe\nCHECKIN F probe\n", 2),
        }
    }
}

/// One probe connection: a request every [`PROBE_INTERVAL`] from `start`
/// until `end` (slots that passed while a reply was awaited are skipped);
/// requests due from `warm_end` on are recorded. Latency of a request:
/// from the time it was due (= sent) to its (last) reply, corrected for
/// the skipped slots (see the module note). `ok` and `err` count the
/// requests actually sent.
pub fn probe(
    addr: SocketAddr,
    kind: Probe,
    start: Instant,
    warm_end: Instant,
    end: Instant,
) -> Result<Measured, String> {
    let mut c = Conn::connect(addr, false).map_err(|e| format!("probe connect {addr}: {e}"))?;
    let (bytes, replies) = kind.request();
    let mut hist = load::histogram();
    let (mut ok, mut err) = (0u64, 0u64);
    let interval_ns = PROBE_INTERVAL.as_nanos();
    let mut k = 0u128;
    loop {
        let due = start + Duration::from_nanos(u64::try_from(k * interval_ns).unwrap_or(u64::MAX));
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now + PROBE_SPIN {
            std::thread::sleep(due - now - PROBE_SPIN);
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        c.send(bytes).map_err(|e| format!("probe send: {e}"))?;
        let mut all_ok = true;
        for _ in 0..replies {
            let o = c.outcome().map_err(|e| format!("probe reply: {e}"))?;
            all_ok &= o == Outcome::Ok;
        }
        let done = Instant::now();
        if due >= warm_end {
            let ns = done.saturating_duration_since(due).as_nanos();
            let ns = u64::try_from(ns).unwrap_or(u64::MAX).clamp(1, load::MAX_NS);
            // Within the histogram's bounds, so recording cannot fail.
            let _ = hist.record_correct(ns, u64::try_from(interval_ns).unwrap_or(u64::MAX));
            if all_ok {
                ok += 1;
            } else {
                err += 1;
            }
        }
        // The next slot not yet passed.
        let passed = done.saturating_duration_since(start).as_nanos() / interval_ns;
        k = (k + 1).max(passed + 1);
    }
    let seconds = end.saturating_duration_since(warm_end).as_secs_f64();
    Ok(Measured::from_histogram(&hist, ok, 0, err, seconds))
}

/// What the STATUS clients of a phase did in its measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusLoad {
    /// Whole replies received in the window.
    pub replies: u64,
    /// Their bytes, newline included.
    pub bytes: u64,
    /// Size of the last whole reply, in or out of the window (0: none).
    pub last_bytes: u64,
    /// Replies that were not `OK ...`.
    pub err: u64,
}

impl StatusLoad {
    fn merge(&mut self, o: StatusLoad) {
        self.replies += o.replies;
        self.bytes += o.bytes;
        self.last_bytes = self.last_bytes.max(o.last_bytes);
        self.err += o.err;
    }

    /// Mean bytes of a STATUS reply (the last one's if none completed in
    /// the window).
    pub fn reply_bytes(&self) -> f64 {
        if self.replies > 0 {
            self.bytes as f64 / self.replies as f64
        } else {
            self.last_bytes as f64
        }
    }
}

/// One client looping `STATUS` from `start` until `end`: sends one, reads
/// the reply to its newline, sends the next. Replies finished between
/// `warm_end` and `end` are counted. The reply asked for before `end` is
/// read whole even if it ends after it.
pub fn status_loop(
    addr: SocketAddr,
    start: Instant,
    warm_end: Instant,
    end: Instant,
) -> Result<StatusLoad, String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("STATUS client connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; STATUS_READ_BYTES];
    let mut load = StatusLoad::default();
    let now = Instant::now();
    if start > now {
        std::thread::sleep(start - now);
    }
    while Instant::now() < end {
        s.write_all(b"STATUS\n")
            .map_err(|e| format!("STATUS send: {e}"))?;
        let mut size = 0u64;
        let mut head = Vec::with_capacity(REPLY_HEAD.len());
        loop {
            let n = s.read(&mut buf).map_err(|e| format!("STATUS read: {e}"))?;
            if n == 0 {
                return Err("STATUS: the server closed the connection".into());
            }
            let got = &buf[..n];
            let want = REPLY_HEAD.len() - head.len();
            head.extend_from_slice(&got[..want.min(n)]);
            size += n as u64;
            if let Some(nl) = got.iter().position(|&b| b == b'\n') {
                if nl + 1 != n {
                    return Err("STATUS: bytes after the reply's newline".into());
                }
                break;
            }
        }
        let done = Instant::now();
        load.last_bytes = size;
        if head != REPLY_HEAD {
            load.err += 1;
        }
        if done >= warm_end && done < end {
            load.replies += 1;
            load.bytes += size;
        }
    }
    Ok(load)
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    /// The PING probe.
    pub ping: Measured,
    /// The CHECKOUT+CHECKIN probe.
    pub pair: Measured,
    /// The STATUS clients together.
    pub status: StatusLoad,
}

/// One window of `t`: a PING probe and a CHECKOUT+CHECKIN probe (two
/// connections), with `status_clients` clients looping STATUS beside them.
pub fn phase(addr: SocketAddr, status_clients: usize, t: Timing) -> Result<Phase, String> {
    let start = Instant::now() + PHASE_START;
    let warm_end = start + Duration::from_secs_f64(t.warmup_s);
    let end = warm_end + Duration::from_secs_f64(t.seconds);
    let statuses: Vec<_> = (0..status_clients)
        .map(|_| std::thread::spawn(move || status_loop(addr, start, warm_end, end)))
        .collect();
    let probes: Vec<_> = [Probe::Ping, Probe::Pair]
        .into_iter()
        .map(|k| std::thread::spawn(move || probe(addr, k, start, warm_end, end)))
        .collect();
    let mut measured = Vec::new();
    let mut first_err = None;
    for h in probes {
        match h.join() {
            Ok(Ok(m)) => measured.push(m),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some("a probe thread panicked".into())),
        }
    }
    let mut status = StatusLoad::default();
    for h in statuses {
        match h.join() {
            Ok(Ok(l)) => status.merge(l),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some("a STATUS thread panicked".into())),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut it = measured.into_iter();
    match (it.next(), it.next()) {
        (Some(ping), Some(pair)) => Ok(Phase { ping, pair, status }),
        _ => Err("probes returned nothing".into()),
    }
}

/// `b / a`, or 0 when `a` is not positive.
pub fn ratio(b: f64, a: f64) -> f64 {
    if a > 0.0 {
        b / a
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_has_probe_feature_and_generated_ones() {
        let l = license(3);
        let lines: Vec<&str> = l.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "INCREMENT F BENCH 1.0 permanent 100");
        assert_eq!(lines[3], "INCREMENT S000002 BENCH 1.0 permanent 4");
    }

    #[test]
    fn ratio_of_nothing_is_zero() {
        assert_eq!(ratio(5.0, 0.0), 0.0);
        assert_eq!(ratio(6.0, 2.0), 3.0);
    }
}
