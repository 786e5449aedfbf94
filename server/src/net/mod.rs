//! The network layer: tallyd's event loops.
//!
//! One loop per worker thread, each with its own mio `Poll`, connection
//! slab, timers and `Token`s. Every loop registers a clone of the listening
//! socket and accepts until `WouldBlock` (`accept.rs`), so connections
//! spread over the loops. The loops share the engine (no lock on the
//! checkout path but a DUP_GROUP feature's bucket lock), the queue (locked
//! only where a waiter is concerned: `queue.rs`) and little else
//! (`shared.rs`). No license logic lives
//! here: a request line goes to `cmd::answer`, and the loop carries out
//! the [`Effects`] it leaves ([`Worker::carry_out`]).
//!
//! Edge-triggered rules, stated once: a connection is registered for
//! READABLE | WRITABLE once and never re-registered; on every event the
//! loop reads until `WouldBlock`, answers every complete line in order into
//! the connection's write buffer, then writes until `WouldBlock` or one
//! write slice; a connection stopped by the slice, or by its turn's read
//! budget (`READ_TURN_BYTES`: a fast pipeliner does not hold the loop), is
//! listed and served again on the next turn (no event would come for it). If a client
//! pipelines without reading, processing pauses at [`WRITE_HIGH_WATER`]
//! bytes of unsent replies and resumes on WRITABLE (`conn.rs`).
//!
//! Timers: each loop has one timer service (`timers.rs`, on the core's
//! wheel: linger expiry, idle checks, drain ends, queue waits, an accept
//! retry), sleeps at most until its next deadline and does what is due
//! when it wakes, in deadline order; there is no periodic sweep. On the
//! system clock a `timerfd` armed at the next deadline wakes the poll to
//! the microsecond, not the millisecond its timeout allows (`wake.rs`).
//!
//! Metrics: each loop keeps its own counters (`metrics/`); for the
//! request-latency histogram it reads the monotonic clock once when it
//! wakes and once at the end of a round that answered a request.
//!
//! REREAD: each loop checks the pause flag once per wake, before it
//! touches the engine, and parks while another loop rereads; it then
//! adopts the published generation (`reread.rs`).

mod accept;
mod conn;
mod reread;
mod waiters;
mod wake;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Poll, Token};
use tally_core::engine::InstanceId;

use crate::auth::FailureLog;
use crate::cmd::{self, Ctx, Effects};
use crate::debuglog::{Event, LogBatch};
use crate::journal::LoopJournal;
use crate::metrics::Cause;
use crate::shared::Shared;
use crate::status_thread;
use crate::timers::{Fired, LoopTimers, Timer};

use accept::AcceptStall;
pub(crate) use accept::{reserve_descriptors, widen_backlog};
use conn::{Conn, Reads, DRAIN_MS, READ_CHUNK};
pub use conn::{READ_TURN_BYTES, WRITE_HIGH_WATER};

/// Longest a loop sleeps when no timer is due, so flags are seen even if a
/// wake-up were lost.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

/// Longest a loop waits at shutdown for its last journal records.
const SHUTDOWN_JOURNAL_WAIT: Duration = Duration::from_secs(10);

/// The listening socket's token in every loop.
pub(crate) const LISTENER: Token = Token(0);
/// The waker's token in every loop.
pub(crate) const WAKER: Token = Token(1);
/// The deadline timer's token in every loop (`wake.rs`).
const DEADLINE: Token = Token(2);
const FIRST_CONN: usize = 3;

/// What a loop starts with besides the shared state: its end of the journal
/// and the recovered lingering instances whose expiry it arms.
#[derive(Debug)]
pub(crate) struct LoopStart {
    pub(crate) journal: Option<LoopJournal>,
    pub(crate) arm: Vec<(InstanceId, u64)>,
    /// Where STATUS requests go, and where their replies come back.
    pub(crate) status_jobs: crossbeam_channel::Sender<status_thread::Job>,
    pub(crate) status_done: crossbeam_channel::Receiver<status_thread::Done>,
}

/// Runs loop `index` until shutdown.
pub(crate) fn run_loop(
    index: usize,
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared>,
    start: LoopStart,
) {
    // However the loop ends (shutdown, a panic), no pause waits for it.
    let _leave = LeaveOnDrop(shared.clone(), index);
    Loop::new(index, poll, listener, shared, start).run()
}

/// Leaves the REREAD pause protocol when dropped: a loop that stopped is
/// never waited for.
struct LeaveOnDrop(Arc<Shared>, usize);

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        self.0.pause.leave(self.1);
    }
}

/// What serving a connection needs from its loop besides the connection:
/// the command context, the effects buffer, the timers.
#[derive(Debug)]
pub(crate) struct Worker {
    ctx: Ctx,
    /// Reused for every command (cleared as it is carried out).
    fx: Effects,
    timers: LoopTimers,
    /// Where sockets are read into before their bytes join `rbuf`.
    read_buf: Vec<u8>,
    /// This loop's log events, handed over at the end of each poll round.
    log: LogBatch,
    /// Where STATUS requests are built (`status_thread.rs`).
    status_jobs: crossbeam_channel::Sender<status_thread::Job>,
    /// Connections to serve again this turn (a waiter was answered): a
    /// work list, so answering a waiter never re-enters serving.
    ready: Vec<usize>,
    /// Request lines answered this round (for the latency histogram).
    answered: u64,
}

impl Worker {
    /// The time now, from the server's clock.
    fn now(&self) -> u64 {
        self.ctx.shared.now()
    }

    /// A reread published a generation this loop has not adopted yet (one
    /// load).
    fn reread_pending(&self) -> bool {
        self.ctx.gen.version() != self.ctx.shared.generation.version()
    }

    /// Answers one request line of `conn`, then carries out its effects.
    fn answer(&mut self, conn: &mut Conn, line: &[u8]) {
        let now = self.now();
        self.answered += 1;
        let reply_at = conn.wbuf.len();
        cmd::answer(
            &mut self.ctx,
            &mut conn.session,
            line,
            now,
            &mut conn.wbuf,
            &mut self.fx,
        );
        self.carry_out(conn, reply_at, now);
    }

    /// Carries out what a command of `conn` left in the effects, its reply
    /// starting at `reply_at` in the write buffer.
    fn carry_out(&mut self, conn: &mut Conn, reply_at: usize, now: u64) {
        if let Some(batch) = self.fx.gate.take() {
            conn.gate.hold(reply_at, Some(batch));
        }
        if std::mem::take(&mut self.fx.close) {
            conn.closing = true;
        }
        // Looked at before it is taken: a STATUS job is large, and moving
        // an empty one out on every request costs a copy of it.
        if self.fx.status.is_some() {
            self.send_status(conn);
        }
        if std::mem::take(&mut self.fx.reopen_log) {
            self.log.reopen();
            self.log.flush();
        }
        if !self.fx.waits.is_empty() {
            // One wait per queued checkout: this connection's.
            for (deadline, seq) in self.fx.waits.drain(..) {
                let timer = Timer::queue_wait(conn.session.key, seq);
                if let Some(old) = conn.wait_timer.replace(self.timers.arm(timer, deadline)) {
                    self.timers.cancel(old);
                }
            }
        }
        if std::mem::take(&mut self.fx.reread) {
            reread::run(self, &mut conn.wbuf, now);
        }
        self.carry_common();
        if std::mem::take(&mut self.fx.shutdown) {
            let _ = conn.flush();
            self.ctx.shared.shutdown.store(true, Ordering::SeqCst);
            self.ctx.shared.wake_all();
        }
    }

    /// Hands the STATUS job in the effects to the status thread and parks
    /// `conn` until its reply is back.
    #[cold]
    fn send_status(&mut self, conn: &mut Conn) {
        let Some(job) = self.fx.status.take() else {
            return;
        };
        // REPORT flushes the log to commit usage: this round's events first.
        self.log.hand_over();
        match self.status_jobs.send(job) {
            Ok(()) => conn.status_pending = true,
            // The thread is gone: build it here rather than not at all.
            Err(e) => conn
                .wbuf
                .extend_from_slice(&status_thread::build(e.into_inner())),
        }
    }

    /// Carries out the effects that concern no connection: linger timers
    /// to arm, log events, the queue's wake-up. (Queue waits are a
    /// connection's: `carry_out`.)
    fn carry_common(&mut self) {
        // Most requests leave one or two log events and nothing else: the
        // empty lists are not even drained.
        if !self.fx.lingers.is_empty() {
            for (id, at) in self.fx.lingers.drain(..) {
                self.timers.arm_linger(id, at);
            }
        }
        debug_assert!(self.fx.waits.is_empty(), "a wait outside a connection");
        if !self.fx.log.is_empty() {
            for event in self.fx.log.drain(..) {
                match event {
                    // Start, stop and reread lines must not be lost.
                    Event::Line { .. } => self.log.push_wait(event),
                    event => self.log.push(event),
                }
            }
        }
        if self.fx.wake_queues {
            self.fx.wake_queues = false;
            self.ctx.shared.wake_all();
        }
    }
}

/// One event loop: its sockets, and the worker requests are served with.
struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: slab::Slab<Conn>,
    w: Worker,
    next_serial: u64,
    /// Connections with replies waiting for the journal.
    gated: Vec<usize>,
    /// The journal's durable batch when `gated` was last served.
    seen_durable: u64,
    /// Accepting is failing for want of resources (`accept.rs`).
    accept_stalled: Option<AcceptStall>,
    /// STATUS replies built off the loop, for parked connections.
    status_done: crossbeam_channel::Receiver<status_thread::Done>,
    /// Connections to serve again next turn: more to write than one slice
    /// (`write_more`) or more to read than one turn (`read_more`).
    writers: Vec<usize>,
    /// What came due in one timer round (a buffer kept across rounds).
    fired: Vec<Fired>,
    /// Wakes the poll at the next deadline to the microsecond, on the
    /// system clock (`wake.rs`); `None`: the poll timeout alone.
    deadline_timer: Option<wake::DeadlineTimer>,
}

impl Loop {
    fn new(
        index: usize,
        poll: Poll,
        listener: TcpListener,
        shared: Arc<Shared>,
        start: LoopStart,
    ) -> Loop {
        let gen = shared.generation.reader();
        let (engine, opts) = (gen.get().engine.clone(), gen.get().opts.clone());
        let mut timers = LoopTimers::with_capacity(shared.now(), start.arm.len());
        let deadline_timer = if shared.clock.follows_system_clock() {
            // Without it (EMFILE, say) the loop wakes by its poll timeout.
            match wake::DeadlineTimer::new(poll.registry(), DEADLINE) {
                Ok(t) => Some(t),
                Err(e) => {
                    let text = format!(
                        "loop {index}: no timerfd ({e}): timers wake it by the poll timeout, to the millisecond"
                    );
                    eprintln!("tallyd: {text}");
                    shared.log.line(shared.now(), "lmgrd", text);
                    None
                }
            }
        } else {
            None
        };
        for (id, at) in start.arm {
            timers.arm_linger(id, at);
        }
        Loop {
            poll,
            listener,
            conns: slab::Slab::new(),
            next_serial: 0,
            w: Worker {
                log: shared.log.batch(),
                ctx: Ctx {
                    index,
                    gen,
                    shared,
                    engine,
                    opts,
                    journal: start.journal,
                    admin_failures: FailureLog::default(),
                },
                fx: Effects::default(),
                timers,
                read_buf: vec![0; READ_CHUNK],
                status_jobs: start.status_jobs,
                ready: Vec::new(),
                answered: 0,
            },
            gated: Vec::new(),
            seen_durable: 0,
            accept_stalled: None,
            status_done: start.status_done,
            writers: Vec::new(),
            fired: Vec::new(),
            deadline_timer,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.w.now();
            let next = self.w.timers.next_deadline();
            let wait = if self.writers.is_empty() {
                next.map_or(MAX_POLL_WAIT, |d| {
                    match self.deadline_timer.as_mut() {
                        Some(t) if d > now => t.wait_for(d, now),
                        _ => Duration::from_millis(d.saturating_sub(now)),
                    }
                    .min(MAX_POLL_WAIT)
                })
            } else {
                Duration::ZERO // a slice of a long write is due
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // A loop that stops serves nobody and expires nothing:
                    // handled like a panic (exit, restart from the journal).
                    panic!("poll failed: {e}");
                }
            }
            // The round's one clock read besides its end's (latency).
            let woke = Instant::now();
            if self.w.ctx.shared.shutdown.load(Ordering::SeqCst) {
                return self.shut_down();
            }
            // Before anything touches the engine: one load.
            if self.w.ctx.shared.pause.is_requested() && !self.wait_out_reread() {
                return self.shut_down(); // asked to while parked
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    DEADLINE => {
                        if let Some(t) = self.deadline_timer.as_mut() {
                            t.fired();
                        }
                    }
                    Token(t) => self.on_conn_event(
                        t - FIRST_CONN,
                        // A short read may end the reading only if the peer
                        // has not closed already (else no event would come
                        // for the end of the stream).
                        if event.is_read_closed() || event.is_error() {
                            Reads::UntilWouldBlock
                        } else {
                            Reads::UntilShort
                        },
                    ),
                }
            }
            self.deliver_status();
            for key in std::mem::take(&mut self.writers) {
                if let Some(c) = self.conns.get_mut(key) {
                    c.write_listed = false;
                    self.on_conn_event(key, Reads::UntilWouldBlock);
                }
            }
            self.timers_step(self.w.now());
            // One batch of journal records per round (group commit).
            // The journal wakes this loop when a batch becomes durable;
            // checked every round, so a coalesced wake-up loses nothing.
            // Before `send`: what those connections pipelined joins this batch.
            if let Some(durable) = self.w.ctx.journal.as_ref().map(LoopJournal::durable) {
                if durable != self.seen_durable {
                    self.seen_durable = durable;
                    self.serve_gated();
                }
            }
            if let Some(j) = self.w.ctx.journal.as_mut() {
                j.send();
            }
            // The round's log events, as one message.
            self.w.log.hand_over();
            if self.w.answered > 0 {
                let ns = u64::try_from(woke.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let n = std::mem::take(&mut self.w.answered);
                self.w.ctx.counters().answered(ns, n);
            }
        }
    }

    /// The timers' work of one turn at `now`, in deadline order: linger
    /// expiry, idle TIMEOUTs, drain ends, queue waits run out, an accept
    /// retry; then the queue heads on this loop are tried again.
    fn timers_step(&mut self, now: u64) {
        // Collected first (the wheel is borrowed while it fires), into a
        // buffer kept across rounds: no allocation in the steady state.
        let mut fired = std::mem::take(&mut self.fired);
        let w = &mut self.w;
        w.timers.drain_due(&w.ctx.engine, now, |_, f| fired.push(f));
        // Lateness to the microsecond on the system clock (one read per
        // round that released something), else in the clock's milliseconds.
        let mut now_us = None;
        for f in fired.drain(..) {
            match f {
                Fired::Released(r) => {
                    let w = &mut self.w;
                    let at = *now_us.get_or_insert_with(|| match self.deadline_timer {
                        Some(_) => wake::unix_us(),
                        None => now.saturating_mul(1_000),
                    });
                    w.ctx.counters().linger_expired(at, r.deadline);
                    w.ctx.released(&r, Cause::LingerExpiry, now, &mut w.fx);
                    w.carry_common();
                }
                Fired::Timer(Timer::Idle { key, serial }) => {
                    self.check_idle(key as usize, serial, now)
                }
                Fired::Timer(Timer::DrainEnd { key, serial }) => {
                    if self.conn_of(key as usize, serial).is_some() {
                        // Drained for DRAIN_MS: enough.
                        let conn = self.conns.remove(key as usize);
                        self.close(conn);
                    }
                }
                Fired::Timer(Timer::QueueWait { key, seq }) => {
                    self.wait_ran_out(key as usize, seq, now)
                }
                Fired::Timer(Timer::AcceptRetry) => {
                    if let Some(stall) = self.accept_stalled.as_mut() {
                        stall.retry = None;
                    }
                    self.accept();
                }
            }
        }
        self.fired = fired;
        self.serve_queue(now);
    }

    /// Connection `key` if it is still the one with serial `serial`.
    fn conn_of(&mut self, key: usize, serial: u64) -> Option<&mut Conn> {
        self.conns
            .get_mut(key)
            .filter(|c| c.session.serial == serial)
    }

    /// Hands STATUS replies built off the loop to their connections, which
    /// then go on with what they pipelined meanwhile.
    fn deliver_status(&mut self) {
        while let Ok(done) = self.status_done.try_recv() {
            let Some(conn) = self
                .conns
                .get_mut(done.conn)
                .filter(|c| c.session.serial == done.serial && c.status_pending)
            else {
                continue; // closed meanwhile
            };
            conn.status_pending = false;
            if conn.wbuf.is_empty() {
                // Usually so (the connection was parked): take the reply's
                // buffer as it is, no copy of tens of MB on the loop.
                conn.wbuf = bytes::BytesMut::from(bytes::Bytes::from(done.line));
            } else {
                conn.wbuf.extend_from_slice(&done.line);
            }
            self.on_conn_event(done.conn, Reads::UntilWouldBlock);
        }
    }

    /// The idle check of connection `key` (`cmd/idle.rs`): checks in its
    /// licenses of features whose TIMEOUT its idle time reached, and arms
    /// the next check.
    fn check_idle(&mut self, key: usize, serial: u64, now: u64) {
        let Some(conn) = self
            .conns
            .get_mut(key)
            .filter(|c| c.session.serial == serial)
        else {
            return; // closed since
        };
        conn.idle_timer = None;
        if conn.draining.is_some() {
            return; // the end of its drain closes it
        }
        let w = &mut self.w;
        if let Some(due) = cmd::idle::check(&mut w.ctx, &mut conn.session, now, &mut w.fx) {
            conn.idle_timer = Some(w.timers.arm(Timer::idle(key, serial), due));
        }
        w.carry_common();
    }

    /// The journal made some batch durable: serve the connections whose
    /// replies waited for it.
    fn serve_gated(&mut self) {
        for key in std::mem::take(&mut self.gated) {
            if let Some(c) = self.conns.get_mut(key) {
                c.gated = false;
            }
            self.on_conn_event(key, Reads::UntilWouldBlock);
        }
    }

    /// Serves connection `key` (reads, answers, writes), then finishes what
    /// that may have started: a reread done on this loop (every
    /// connection's ids are moved across), replies that wait for the
    /// journal (listed for when it is durable), or the connection's end.
    /// Every path that serves a connection comes through here.
    fn on_conn_event(&mut self, key: usize, reads: Reads) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut keep = conn.serve(&mut self.w, reads);
        if self.w.reread_pending() {
            // This loop just did a REREAD: move every connection's ids
            // and its linger timers across, then finish what this
            // connection had pipelined.
            self.adopt_generation();
            if keep {
                if let Some(conn) = self.conns.get_mut(key) {
                    keep = conn.serve(&mut self.w, Reads::UntilWouldBlock);
                }
            }
        }
        if !keep {
            let conn = self.conns.remove(key);
            self.close(conn);
        } else if let Some(conn) = self.conns.get_mut(key) {
            if conn.draining.is_some() && conn.drain_timer.is_none() {
                // Just started draining: end it within DRAIN_MS.
                let at = self.w.now() + DRAIN_MS;
                let timer = Timer::drain_end(key, conn.session.serial);
                conn.drain_timer = Some(self.w.timers.arm(timer, at));
            }
            if conn.gate.is_waiting() && !conn.gated {
                conn.gated = true;
                self.gated.push(key);
            }
            if (conn.write_more || conn.read_more) && !conn.write_listed {
                conn.write_listed = true;
                self.writers.push(key);
            }
        }
    }

    fn close(&mut self, mut conn: Conn) {
        for t in [conn.idle_timer, conn.drain_timer, conn.wait_timer]
            .into_iter()
            .flatten()
        {
            self.w.timers.cancel(t);
        }
        let now = self.w.now();
        self.w.ctx.closed(&mut conn.session, now, &mut self.w.fx);
        self.w.carry_common();
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.w
            .ctx
            .shared
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Stops the loop: replies waiting for the journal go out, then every
    /// connection is closed (no engine is touched).
    fn shut_down(mut self) {
        self.w.log.hand_over();
        if let Some(j) = self.w.ctx.journal.as_mut() {
            j.wait_durable(SHUTDOWN_JOURNAL_WAIT);
        }
        self.close_all();
    }

    fn close_all(&mut self) {
        for mut conn in self.conns.drain() {
            let _ = conn.flush();
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.w
                .ctx
                .shared
                .connections
                .fetch_sub(1, Ordering::Relaxed);
        }
        let _ = self.poll.registry().deregister(&mut self.listener);
    }
}
