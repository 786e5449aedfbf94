//! Accepting connections, and what happens when that fails for want of
//! file descriptors or memory.

use std::io;
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

/// Whether an `accept` error means the process or the system ran out of
/// descriptors or memory (the backlog keeps the connections meanwhile).
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
