//! Accepting connections, and what happens when that fails for want of
//! file descriptors or memory; and, at start, the descriptor table sized
//! and the accept queue widened ([`LISTEN_BACKLOG`]).
//!
//! Why the table is sized at start: Linux grows a process's descriptor
//! table by doubling it, and in a process with more than one thread each
//! doubling waits for an RCU grace period (`expand_fdtable` calls
//! `synchronize_rcu`) inside the `accept4` that needed the next slot.
//! Measured on a logon storm (5,000 clients in 1 s, `strace -T -e accept4`
//! of tallyd): in the first storm after start the accepts that returned
//! descriptors 256, 512, 1024, 2048 and 4096 took 4.5 to 11 ms each, about
//! 45 ms in all during which the loop served nobody; in the next storm (the
//! table already grown) the slowest accept took 0.2 ms. The table never
//! shrinks, so [`reserve_descriptors`] grows it once, before the loops
//! start, to what the descriptor limit allows (at most
//! [`RESERVED_DESCRIPTORS`]).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

use mio::{Interest, Token};
use tally_core::wheel::TimerKey;

use super::conn::Conn;
use super::{Loop, FIRST_CONN};
use crate::cmd::Session;
use crate::journal::{LoopJournal, ReplyGate};
use crate::timers::Timer;

/// After `accept` failed for want of a file descriptor (EMFILE, ENFILE) or
/// kernel memory, the loop tries again this often, in ms. Edge-triggered
/// readiness raises no new event for connections already in the backlog,
/// so waiting for one would stop accepting for good.
const ACCEPT_RETRY_MS: u64 = 100;

/// An episode of `accept` failing for want of resources.
#[derive(Debug, Clone, Copy)]
pub(super) struct AcceptStall {
    since_ms: u64,
    /// The loop's timer of the next try.
    pub(super) retry: Option<TimerKey>,
    /// Failed attempts so far.
    attempts: u64,
}

impl Loop {
    /// Accepts until `WouldBlock`. When the process or the system is out
    /// of file descriptors (or the kernel of memory), the connections stay
    /// in the backlog and the loop tries again every [`ACCEPT_RETRY_MS`]:
    /// logged once when the episode starts and once when it ends.
    pub(super) fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    // An episode ends at WouldBlock (the backlog drained),
                    // not at one accept: at the limit each freed descriptor
                    // lets one in, and the episode goes on.
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key() + FIRST_CONN);
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        eprintln!("tallyd: cannot register a connection from {peer}: {e}");
                        continue;
                    }
                    let now = self.w.now();
                    self.next_serial += 1;
                    let key = entry.key();
                    let gate = self
                        .w
                        .ctx
                        .journal
                        .as_ref()
                        .map_or_else(ReplyGate::default, LoopJournal::gate);
                    let session = Session::new(peer, key, self.next_serial, now);
                    let mut conn = Conn::new(stream, session, gate);
                    if let Some(t) = self.w.ctx.opts.shortest_timeout_ms() {
                        let timer = Timer::idle(key, self.next_serial);
                        conn.idle_timer = Some(self.w.timers.arm(timer, now + t));
                    }
                    entry.insert(conn);
                    self.w
                        .ctx
                        .shared
                        .connections
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_recovered();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_resources(&e) => {
                    let now = self.w.now();
                    let log = &mut self.w.log;
                    let stall = self.accept_stalled.get_or_insert_with(|| {
                        let text = format!(
                            "accept failed: {e}; connections wait in the backlog, retrying every {ACCEPT_RETRY_MS} ms"
                        );
                        eprintln!("tallyd: {text}");
                        log.line(now, "lmgrd", text);
                        AcceptStall {
                            since_ms: now,
                            retry: None,
                            attempts: 0,
                        }
                    });
                    stall.attempts += 1;
                    let retry = self.w.timers.arm(Timer::AcceptRetry, now + ACCEPT_RETRY_MS);
                    if let Some(old) = stall.retry.replace(retry) {
                        self.w.timers.cancel(old);
                    }
                    return;
                }
                // A connection that died in the backlog (ECONNABORTED and
                // the like): the next one may be fine.
                Err(e) => eprintln!("tallyd: accept failed: {e}"),
            }
        }
    }

    /// Ends an episode of failing accepts, if one was going on.
    fn accept_recovered(&mut self) {
        if let Some(s) = self.accept_stalled.take() {
            if let Some(t) = s.retry {
                self.w.timers.cancel(t);
            }
            let now = self.w.now();
            let text = format!(
                "accepting connections again after {} ms ({} failed attempts)",
                now.saturating_sub(s.since_ms),
                s.attempts
            );
            eprintln!("tallyd: {text}");
            self.w.log.line(now, "lmgrd", text);
        }
    }
}

/// Descriptor slots the table is grown to at start (if the limit allows):
/// 64 Ki slots cost the kernel 512 KiB of pointers, and a server with more
/// connections than that pays a doubling (one RCU grace period) only past
/// it.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 1 << 16;

/// Grows the process's descriptor table to `min(RLIMIT_NOFILE soft limit,
/// RESERVED_DESCRIPTORS)` slots at once, by duplicating `fd` onto the top
/// slot and closing the copy (see the module comment for why). Returns the
/// slots asked for; 0 if the limit could not be read. Best effort: a failure
/// only leaves the table to grow as connections come.
pub(crate) fn reserve_descriptors(fd: &impl AsRawFd) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit writes into the struct we pass, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let want = lim.rlim_cur.min(RESERVED_DESCRIPTORS);
    let Ok(top) = RawFd::try_from(want.saturating_sub(1)) else {
        return 0;
    };
    if top <= fd.as_raw_fd() {
        return want; // already covered
    }
    // Safety: F_DUPFD_CLOEXEC makes a new descriptor (the lowest free one
    // at or above `top`) for a descriptor we own; no memory is involved.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top) };
    if copy >= 0 {
        // Safety: `copy` was just made here and nothing else knows it.
        unsafe { libc::close(copy) };
    }
    want
}

/// Connections the kernel keeps for the loops before it drops SYNs (each
/// drop costs that client a one-second retransmission). The standard
/// library listens with 128: at 5,000 arrivals a second that is 25 ms of
/// a loop not accepting; 1,024 is 200 ms. The kernel caps it at
/// `net.core.somaxconn`.
pub(crate) const LISTEN_BACKLOG: i32 = 1024;

/// Widens the accept queue of the listening socket `listener` to
/// [`LISTEN_BACKLOG`] (`listen` again on a listening socket sets its
/// backlog).
pub(crate) fn widen_backlog(listener: &impl AsRawFd) -> io::Result<()> {
    // Safety: listen on a socket we own; no memory is involved.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether an `accept` error means the process or the system ran out of
/// descriptors or memory (the backlog keeps the connections meanwhile).
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's descriptor table size of this process (`FDSize` in
    /// /proc/self/status).
    fn fd_table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn reserving_grows_the_descriptor_table_to_the_limit_or_the_reserve() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let want = reserve_descriptors(&socket);
        assert!(want > 0, "the descriptor limit could be read");
        assert!(want <= RESERVED_DESCRIPTORS);
        assert!(
            fd_table_size() >= want,
            "table of {} slots after reserving {want}",
            fd_table_size()
        );
        // The copy on the top slot is closed again.
        let top = format!("/proc/self/fd/{}", want - 1);
        assert!(!std::path::Path::new(&top).exists(), "{top} left open");
    }

    #[test]
    fn a_widened_backlog_holds_more_than_the_standard_128_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        widen_backlog(&listener).unwrap();
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .map_or(LISTEN_BACKLOG as usize, |s| s.trim().parse().unwrap());
        let n = 300.min(somaxconn.min(LISTEN_BACKLOG as usize));
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: every handshake has to fit in the queue (at 128,
        // the 130th SYN is dropped and its connect times out).
        let held: Vec<_> = (0..n)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connection {i} of {n}: {e}"))
            })
            .collect();
        assert_eq!(held.len(), n);
    }
}
