//! The event-driven core of the generator: few threads, each driving many
//! connections with its own `mio::Poll`, so the generator costs little per
//! request and wakes the server's core as little as a real client fleet
//! would. Closed loop (each connection keeps one batch of P requests in
//! flight) and open loop (each connection sends on a fixed schedule and a
//! reply's latency is taken from the request's *intended* send time) are
//! the same loop with a different send rule.
//!
//! Bounded: sending stops at the end of the measured window; replies are
//! then awaited for at most [`DRAIN`]; anything unanswered counts as ERR.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::wire::Outcome;

/// Longest wait for outstanding replies after the window closes.
pub const DRAIN: Duration = Duration::from_secs(10);

/// How a connection decides to send.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Send the next batch when every reply of the last one is in.
    Closed,
    /// Send request k at `start + offset + k * interval` (ns).
    Open {
        /// Nanoseconds between one connection's requests.
        interval_ns: f64,
    },
}

/// One connection's cycle of batches: bytes and per-request release flags.
pub type Plan = Vec<(Vec<u8>, Vec<bool>)>;

/// What a driver thread measured.
#[derive(Debug)]
pub struct Tally {
    /// Latency of recorded replies, ns.
    pub hist: Histogram<u64>,
    /// OK replies recorded.
    pub ok: u64,
    /// DENIED replies recorded.
    pub denied: u64,
    /// ERR replies recorded, plus requests in the window never answered.
    pub err: u64,
}

/// Parses one reply at the start of `buf`: bytes consumed and outcome, or
/// `None` if incomplete.
pub fn parse_reply(buf: &[u8], resp: bool) -> Option<(usize, Outcome)> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    if !resp {
        let kind = tally_client::ReplyKind::of(line);
        return Some((nl + 1, Outcome::from(kind)));
    }
    match line.first() {
        Some(b'+') => Some((nl + 1, Outcome::Ok)),
        Some(b':') => Some((
            nl + 1,
            if &line[1..] == b"1" {
                Outcome::Ok
            } else {
                Outcome::Denied
            },
        )),
        Some(b'$') => {
            let n: i64 = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
            if n < 0 {
                return Some((nl + 1, Outcome::Ok));
            }
            let need = nl + 1 + n as usize + 2;
            (buf.len() >= need).then_some((need, Outcome::Ok))
        }
        _ => Some((nl + 1, Outcome::Err)),
    }
}

struct Client {
    sock: TcpStream,
    plan: Plan,
    next: usize,
    sent: u64,
    offset_ns: f64,
    /// Reference time (send or intended) and release flag per request in
    /// flight, oldest first.
    pending: VecDeque<(Instant, bool)>,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    dead: bool,
}

/// Runs `plans.len()` connections to `addr` on this thread.
#[allow(clippy::too_many_arguments)]
pub fn run(
    addr: SocketAddr,
    resp: bool,
    plans: Vec<(Plan, f64)>,
    mode: Mode,
    start: Instant,
    warm_end: Instant,
    end: Instant,
) -> Result<Tally, String> {
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut clients = Vec::with_capacity(plans.len());
    for (i, (plan, offset_ns)) in plans.into_iter().enumerate() {
        let s = std::net::TcpStream::connect_timeout(&addr, crate::wire::IO_TIMEOUT)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut sock = TcpStream::from_std(s);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        clients.push(Client {
            sock,
            plan,
            next: 0,
            sent: 0,
            offset_ns,
            pending: VecDeque::new(),
            rbuf: vec![0; 64 * 1024],
            rlen: 0,
            wbuf: Vec::with_capacity(8 * 1024),
            wpos: 0,
            dead: false,
        });
    }
    let mut t = Tally {
        hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?,
        ok: 0,
        denied: 0,
        err: 0,
    };
    let mut events = Events::with_capacity(1024);
    let drain_end = end + DRAIN;
    let now0 = Instant::now();
    if start > now0 {
        std::thread::sleep(start - now0);
    }
    loop {
        let now = Instant::now();
        let sending = now < end;
        if !sending && (now > drain_end || clients.iter().all(|c| c.pending.is_empty() || c.dead)) {
            break;
        }
        // Queue what is due.
        let mut next_due: Option<Instant> = None;
        if sending {
            for c in clients.iter_mut().filter(|c| !c.dead) {
                match mode {
                    Mode::Closed => {
                        if c.pending.is_empty() {
                            let (bytes, rel) = &c.plan[c.next % c.plan.len()];
                            c.next += 1;
                            c.wbuf.extend_from_slice(bytes);
                            c.pending.extend(rel.iter().map(|&r| (now, r)));
                        }
                    }
                    Mode::Open { interval_ns } => loop {
                        let due = start
                            + Duration::from_nanos(
                                (c.offset_ns + c.sent as f64 * interval_ns) as u64,
                            );
                        if due > now || due >= end {
                            if due < end {
                                next_due = Some(next_due.map_or(due, |d: Instant| d.min(due)));
                            }
                            break;
                        }
                        let k = c.next % c.plan.len();
                        c.next += 1;
                        c.sent += 1;
                        let (bytes, rel) = &c.plan[k];
                        c.wbuf.extend_from_slice(bytes);
                        c.pending.push_back((due, rel[0]));
                    },
                }
                flush(c);
            }
        }
        // Wait: precise (spin) when a send is due within 2 ms.
        let timeout = match (sending, mode, next_due) {
            (true, Mode::Open { .. }, Some(d)) => {
                let left = d.saturating_duration_since(Instant::now());
                if left > Duration::from_millis(2) {
                    Some(left - Duration::from_millis(1))
                } else {
                    Some(Duration::ZERO)
                }
            }
            (true, _, _) => Some(Duration::from_millis(5).min(end.saturating_duration_since(now))),
            _ => Some(Duration::from_millis(5)),
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        for ev in events.iter() {
            let Some(c) = clients.get_mut(ev.token().0) else {
                continue;
            };
            if ev.is_writable() {
                flush(c);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                read_replies(c, resp, warm_end, end, &mut t);
            }
        }
    }
    // Requests in the window that never got a reply.
    for c in &clients {
        t.err += c
            .pending
            .iter()
            .filter(|(at, _)| *at >= warm_end && *at < end)
            .count() as u64;
    }
    Ok(t)
}

fn flush(c: &mut Client) {
    while c.wpos < c.wbuf.len() {
        match c.sock.write(&c.wbuf[c.wpos..]) {
            Ok(0) => {
                c.dead = true;
                return;
            }
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                c.dead = true;
                return;
            }
        }
    }
    c.wbuf.clear();
    c.wpos = 0;
}

fn read_replies(c: &mut Client, resp: bool, warm_end: Instant, end: Instant, t: &mut Tally) {
    loop {
        if c.rlen == c.rbuf.len() {
            c.rbuf.resize(c.rbuf.len() * 2, 0);
        }
        match c.sock.read(&mut c.rbuf[c.rlen..]) {
            Ok(0) => {
                c.dead = true;
                return;
            }
            Ok(n) => c.rlen += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                c.dead = true;
                return;
            }
        }
    }
    let now = Instant::now();
    let mut pos = 0;
    while let Some((used, o)) = parse_reply(&c.rbuf[pos..c.rlen], resp) {
        pos += used;
        let Some((at, release)) = c.pending.pop_front() else {
            // A reply nobody asked for.
            t.err += 1;
            continue;
        };
        if at >= warm_end && at < end {
            match (o, release) {
                (Outcome::Ok, _) => t.ok += 1,
                (Outcome::Denied, false) => t.denied += 1,
                _ => t.err += 1,
            }
            t.hist
                .saturating_record(now.saturating_duration_since(at).as_nanos().max(1) as u64);
        }
    }
    c.rbuf.copy_within(pos..c.rlen, 0);
    c.rlen -= pos;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies_of_both_protocols() {
        assert_eq!(parse_reply(b"OK F h 0\nOK", false), Some((9, Outcome::Ok)));
        assert_eq!(
            parse_reply(b"DENIED F h ALL_IN_USE -4 x\n", false).map(|r| r.1),
            Some(Outcome::Denied)
        );
        assert_eq!(
            parse_reply(b"ERR NOT_HELD x\n", false).map(|r| r.1),
            Some(Outcome::Err)
        );
        assert_eq!(parse_reply(b"OK F", false), None);
        assert_eq!(parse_reply(b":1\r\n", true), Some((4, Outcome::Ok)));
        assert_eq!(parse_reply(b":0\r\n", true), Some((4, Outcome::Denied)));
        assert_eq!(parse_reply(b"+OK\r\n", true), Some((5, Outcome::Ok)));
        assert_eq!(
            parse_reply(b"-WRONGTYPE x\r\n", true).map(|r| r.1),
            Some(Outcome::Err)
        );
        assert_eq!(parse_reply(b"$3\r\nabc\r\n", true), Some((9, Outcome::Ok)));
        assert_eq!(parse_reply(b"$3\r\nab", true), None);
    }
}
