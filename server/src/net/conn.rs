//! A connection's socket and buffers, and the I/O rules: read until
//! `WouldBlock`, answer every complete line (each through `cmd::answer`),
//! write until `WouldBlock` or one write slice, pause reading at
//! [`WRITE_HIGH_WATER`] bytes of unsent replies, and drain a closing
//! connection so that its last reply is not lost to a reset.

use std::io::{self, Read, Write};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use tally_core::wheel::TimerKey;

use super::Worker;
use crate::cmd::Session;
use crate::journal::ReplyGate;
use crate::protocol::{Reply, MAX_LINE_BYTES};

/// Unsent reply bytes at which a connection stops being read.
pub const WRITE_HIGH_WATER: usize = 1 << 20;

/// Unanswered bytes a waiting connection may buffer (it is read only to see
/// it close).
const WAITING_READ_LIMIT: usize = 64 * 1024;

/// Bytes written to one connection per turn of the loop: a 24 MB STATUS
/// reply to a fast reader goes out in slices between other connections'
/// requests instead of in one go.
const WRITE_SLICE_BYTES: usize = 256 * 1024;

/// Bytes read from a socket per `read` call.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Bytes read from one connection per turn of the loop. A client that
/// pipelines faster than the loop answers would otherwise keep its socket
/// from ever running dry and be served until [`WRITE_HIGH_WATER`] bytes of
/// replies (tens of thousands of requests) while the loop's other
/// connections wait; past this it is served again on the next turn, after
/// them.
pub const READ_TURN_BYTES: usize = 64 * 1024;

/// A connection the server closes (after LINE_TOO_LONG, QUIT, too many
/// failed AUTHs) first gets its last reply and a FIN, then has up to this
/// many bytes read and dropped, so that a client still sending gets the
/// reply instead of a reset (which unread data would cause).
const DRAIN_LIMIT_BYTES: usize = 64 * 1024;

/// Longest a closing connection is drained, in ms.
pub(super) const DRAIN_MS: u64 = 2_000;

/// One client connection of a loop.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    /// What the commands know of this client.
    pub(crate) session: Session,
    /// Close once `wbuf` is written.
    pub(super) closing: bool,
    /// Written out and shut down for writing: bytes still allowed to be
    /// read and dropped before the close ([`DRAIN_LIMIT_BYTES`]).
    pub(super) draining: Option<usize>,
    /// The loop's timer of the drain's end (within [`DRAIN_MS`]), once
    /// draining.
    pub(super) drain_timer: Option<TimerKey>,
    /// The loop's idle TIMEOUT check of this connection, while any
    /// TIMEOUT applies.
    pub(super) idle_timer: Option<TimerKey>,
    /// The loop's timer of this connection's queued checkout giving up.
    pub(super) wait_timer: Option<TimerKey>,
    /// A STATUS is being built off the loop (`status_thread.rs`): no
    /// further line is answered until its reply is in `wbuf`.
    pub(super) status_pending: bool,
    /// Replies waiting for the journal stay in `wbuf` behind this.
    pub(super) gate: ReplyGate,
    /// Listed in the loop's `gated` (to be served when the journal wakes it).
    pub(super) gated: bool,
    /// Its last flush stopped at [`WRITE_SLICE_BYTES`] with more to write
    /// (the socket did not say WouldBlock, so no event will come for it).
    pub(super) write_more: bool,
    /// Its last serve stopped reading at [`READ_TURN_BYTES`], the socket
    /// perhaps not empty (no event would come for what is left).
    pub(super) read_more: bool,
    /// Listed in the loop's `writers` (to be served again on the next
    /// turn: `write_more` or `read_more`).
    pub(super) write_listed: bool,
}

/// How far [`Conn::serve`] reads a socket. Edge-triggered readiness is only
/// re-raised by new data, so a connection must be read until it has nothing
/// left: `UntilWouldBlock` proves it with a last read, `UntilShort` trusts a
/// read that returned less than its buffer (the socket was empty then). The
/// latter only when serving a readiness event that did not report the peer
/// closing; otherwise the end of the stream could go unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    UntilWouldBlock,
    UntilShort,
}

impl Conn {
    pub(super) fn new(stream: TcpStream, session: Session, gate: ReplyGate) -> Conn {
        Conn {
            stream,
            // Empty until used: an idle connection costs no buffer memory.
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            session,
            closing: false,
            draining: None,
            drain_timer: None,
            idle_timer: None,
            wait_timer: None,
            status_pending: false,
            gate,
            gated: false,
            write_more: false,
            read_more: false,
            write_listed: false,
        }
    }

    /// Waiting for a queued checkout or a STATUS: reads go on (to see the
    /// close), answers wait.
    fn parked(&self) -> bool {
        self.session.waiting.is_some() || self.status_pending
    }

    /// Reads, answers and writes as far as the socket allows. Returns false
    /// when the connection is done.
    pub(super) fn serve(&mut self, w: &mut Worker, reads: Reads) -> bool {
        // The loop's read buffer, lent out for the call (a fresh 16 KiB
        // array here would be zeroed on every call).
        let mut chunk = std::mem::take(&mut w.read_buf);
        if chunk.is_empty() {
            chunk = vec![0; READ_CHUNK]; // lent out already (a nested serve)
        }
        let keep = self.serve_with(w, reads, &mut chunk);
        w.read_buf = chunk;
        keep
    }

    fn serve_with(&mut self, w: &mut Worker, reads: Reads, chunk: &mut [u8]) -> bool {
        if let Some(left) = self.draining.as_mut() {
            return drain(&mut self.stream, left, chunk);
        }
        let mut peer_closed = false;
        let mut drained = false;
        let mut taken = 0;
        self.read_more = false;
        loop {
            // Answer what is buffered before reading more (backpressure). A
            // queued connection is still read, to see it close.
            if !self.process_lines(w) && (!self.parked() || self.rbuf.len() > WAITING_READ_LIMIT) {
                break;
            }
            if drained {
                break;
            }
            if taken >= READ_TURN_BYTES {
                // Its turn is over (what was read is answered below).
                self.read_more = true;
                break;
            }
            match self.stream.read(chunk) {
                Ok(0) => {
                    peer_closed = true;
                    break;
                }
                Ok(n) => {
                    taken += n;
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    // Less than asked for: the socket was empty at that
                    // instant, and whatever arrives later raises a new
                    // event. Saves the read that would only say WouldBlock
                    // (a syscall per request on an unpipelined client).
                    drained = n < chunk.len() && reads == Reads::UntilShort;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        if !self.flush() {
            return false;
        }
        if !self.closing && self.wbuf.len() < WRITE_HIGH_WATER {
            // Writing made room: answer what is still buffered.
            self.process_lines(w);
            if !self.flush() {
                return false;
            }
        }
        if self.closing {
            if !self.wbuf.is_empty() {
                return true;
            }
            // The last reply is out: FIN, then read and drop what the
            // client may still be sending, so its reply is not lost to a
            // reset. The loop then arms the drain's end.
            if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return false;
            }
            self.rbuf = BytesMut::new();
            let mut left = DRAIN_LIMIT_BYTES;
            let more = drain(&mut self.stream, &mut left, chunk);
            self.draining = Some(left);
            return more;
        }
        // A peer that half-closed still gets its replies, a STATUS being
        // built included.
        !(peer_closed && self.wbuf.is_empty() && !self.status_pending)
    }

    /// Answers every complete line in `rbuf`. Returns false to stop reading
    /// (the connection is closing, its replies are backed up, or a reread
    /// happened and the connection's ids must be mapped first).
    fn process_lines(&mut self, w: &mut Worker) -> bool {
        loop {
            if self.closing || self.wbuf.len() >= WRITE_HIGH_WATER || self.parked() {
                return false;
            }
            if w.reread_pending() {
                return false;
            }
            let Some(nl) = self.rbuf.iter().position(|&b| b == b'\n') else {
                if self.rbuf.len() > MAX_LINE_BYTES {
                    let _ = Reply::LineTooLong.write_to(&mut self.wbuf);
                    self.closing = true;
                    return false;
                }
                return true;
            };
            let line = self.rbuf.split_to(nl + 1);
            w.answer(self, &line[..nl]);
        }
    }

    /// Writes `wbuf` until it is empty, the socket would block or the slice
    /// is used up. False if the connection broke.
    pub(super) fn flush(&mut self) -> bool {
        let mut budget = WRITE_SLICE_BYTES;
        self.write_more = false;
        loop {
            // Replies waiting for the journal (sync mode) stay behind.
            let limit = self.gate.writable(self.wbuf.len()).min(budget);
            if limit == 0 {
                // Out of budget with bytes the journal allows: the loop
                // comes back to it next turn.
                self.write_more = budget == 0 && self.gate.writable(self.wbuf.len()) > 0;
                break;
            }
            match self.stream.write(&self.wbuf[..limit]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.wbuf.advance(n);
                    self.gate.advance(n);
                    budget -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }
}

/// Reads and drops what a closing connection still sends, at most `left`
/// more bytes. False once the peer closed, the limit is reached or the
/// connection broke: then it is closed.
fn drain(stream: &mut TcpStream, left: &mut usize, chunk: &mut [u8]) -> bool {
    loop {
        match stream.read(chunk) {
            Ok(0) => return false,
            Ok(n) if n >= *left => return false,
            Ok(n) => *left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
