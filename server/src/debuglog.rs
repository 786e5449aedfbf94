//! The debug log, in lmgrd's format, written by a thread of its own.
//!
//! Event loops never format or write: they copy an [`Event`] (plain values,
//! no heap for OUT/IN/DENIED) into a loop-owned [`LogBatch`], which goes to
//! the writer over a bounded crossbeam channel once per poll round (or
//! when it holds [`BATCH_EVENTS`] events), with `try_send`; the batch's
//! vector comes back to the loops for reuse, so the steady state allocates
//! nothing. The writer does not wake per event: after a drain it sleeps
//! [`WRITER_TICK`] (or until a loop sees the channel a quarter full), then
//! drains again, one `write` per drain (a long drain is cut into slices of
//! `WRITER_RUN_EVENTS`, with a yield between); only a drain that found
//! nothing lets it block until the next message.
//!
//! If the writer falls behind (a slow disk) and the channel is full, the
//! batch is dropped and its events counted; the writer reports the count
//! in the log (`N debug log lines dropped: the log writer fell behind`)
//! and STATUS shows it (`log_dropped`). A loop never blocks on the log.
//! What is queued is bounded: at most [`LOG_CHANNEL_BATCHES`] batches of
//! at most [`BATCH_EVENTS`] events ([`LOG_CHANNEL_EVENTS`] events).
//!
//! Order: a loop's events reach the log in the order the loop made them;
//! the events of different loops interleave by batch (each line keeps its
//! own event's time).
//!
//! Line formats (hour padded with a space, as lmgrd does):
//!
//! ```text
//! 21:00:50 (CITRIX) OUT: "MPM_ADV_RC" USER15@GENE-VM-2K3 [ec26edf8]
//! 21:01:40 (CITRIX) IN: "MPM_ADV_RC" USER15@GENE-VM-2K3 [ec26edf8]
//! 21:02:00 (CITRIX) OUT: "F" alice@pc1 [h1]  (3 licenses)
//! 21:02:01 (CITRIX) DENIED: "F" bob@pc2 [h2]  (Licensed number of users already reached. (-4,342))
//! 21:03:00 (CITRIX) REMOVING alice@pc1:console from F
//! 21:03:05 (CITRIX) REMOVING bob@pc2 from F
//!  3:00:00 (lmgrd) TIMESTAMP 11/23/2026
//! ```

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{Local, TimeZone, Timelike};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use tally_core::clock::Clock;
use tally_core::engine::{Engine, FeatureId, HolderBuf, Reason};

use crate::usage::{Sink, UsageConfig};

/// Events a loop's [`LogBatch`] holds before it is handed over, whether
/// or not the poll round is over.
pub const BATCH_EVENTS: usize = 32;

/// Messages (batches, or single events from other threads) the channel
/// holds before new batches are dropped.
pub const LOG_CHANNEL_BATCHES: usize = 2048;

/// The most events the channel holds: [`LOG_CHANNEL_BATCHES`] full
/// batches.
pub const LOG_CHANNEL_EVENTS: usize = LOG_CHANNEL_BATCHES * BATCH_EVENTS;

/// Queued messages at which a loop that hands a batch over wakes the
/// writer before its tick is over.
const WAKE_AT_MESSAGES: usize = LOG_CHANNEL_BATCHES / 4;

/// How long the writer sleeps after a drain while there is traffic.
///
/// Short, because a drain runs in one go: with the server on one core the
/// loop waits while the writer formats. At 10 ms, under P=32 pipelined
/// pairs (about a million lines a second), each drain formatted 10k lines
/// and ran 1 to 10 ms (`perf sched timehist`), delaying every request in
/// flight meanwhile: the P=32 p99. At 1 ms a drain is about a tenth of
/// that, for a thousand wake-ups a second while busy.
pub const WRITER_TICK: Duration = Duration::from_millis(1);

/// Events the writer formats before it lets other threads run (a yield)
/// and goes on draining: a backlog (after a stall, or a burst) is written
/// in slices of about a hundred microseconds instead of one long run.
const WRITER_RUN_EVENTS: usize = 2048;

/// The writer's buffer: a tick's lines under load, written with one
/// `write`.
const WRITE_BUFFER: usize = 256 * 1024;

/// How long [`LogHandle::flush`] waits for a loop's open batch, and then
/// for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// How often a `TIMESTAMP` line is written: every 6 hours, in ms.
pub const TIMESTAMP_EVERY_MS: u64 = 6 * 3600 * 1000;

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error.
    Stderr,
    /// A file, appended to (`-l +path`) or truncated at start (`-l path`).
    File {
        /// The file.
        path: PathBuf,
        /// Append instead of truncating.
        append: bool,
    },
}

impl LogTarget {
    /// Parses lmgrd's `-l` argument: `+path` appends, `path` truncates.
    pub fn from_arg(arg: &str) -> LogTarget {
        match arg.strip_prefix('+') {
            Some(p) => LogTarget::File {
                path: PathBuf::from(p),
                append: true,
            },
            None => LogTarget::File {
                path: PathBuf::from(arg),
                append: false,
            },
        }
    }
}

/// A feature named in a log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureRef {
    /// A feature of the current engine.
    Id(FeatureId),
    /// A name the license file does not have (denials of unknown features).
    Name(Box<str>),
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A license went out (a new instance, a renewal, ...).
    Out(OutKind),
    /// A license went out beyond the pool's count (OVERDRAFT / ODP).
    OutOverdraft(OutKind),
    /// A license came back, and how (`IN:`; an idle timeout's line ends
    /// `(INACTIVE)`).
    In(Cause),
    /// The `IN:` line lmgrd writes right after a renewal or a startup
    /// grant, which keeps OUT and IN lines balanced for log parsers: no
    /// license came back.
    InBalance,
    /// A checkout was refused.
    Denied(Reason),
    /// An admin removed a license.
    Removing,
    /// A checkout joined the queue (`wait=`).
    Queued,
}

/// What kind of grant an OUT is (the report log's `kind=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    /// A new instance took licenses from a pool.
    New,
    /// The holder's instance was renewed: nothing more taken.
    Renewal,
    /// Granted and not held: a startup license (`LT=SYS`, out and at once
    /// in) or an uncounted pool's.
    Untracked,
    /// A session admitted offline, reconciled (RECONCILE): licenses taken.
    Reconciled,
    /// A borrow (`CHECKOUT ... borrow=`): licenses taken until the borrow
    /// ends, whatever the connection does.
    Borrow,
}

impl OutKind {
    /// The report log's name of it.
    pub fn name(self) -> &'static str {
        match self {
            OutKind::New => "new",
            OutKind::Renewal => "renewal",
            OutKind::Untracked => "untracked",
            OutKind::Reconciled => "reconciled",
            OutKind::Borrow => "borrow",
        }
    }

    /// The kind of a report log name.
    pub fn from_name(name: &str) -> Option<OutKind> {
        [
            OutKind::New,
            OutKind::Renewal,
            OutKind::Untracked,
            OutKind::Reconciled,
            OutKind::Borrow,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// Why a license came back: the `cause=` of a report log `IN` line and the
/// `cause` label of `/metrics`' `tally_checkins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// CHECKIN (or the `wait=` queue's give-back of a startup grant).
    Checkin,
    /// Its linger ran out.
    LingerExpiry,
    /// Its client was idle past the feature's TIMEOUT.
    IdleTimeout,
    /// Its connection closed.
    Disconnect,
    /// An admin's REMOVE / REMOVE_HANDLE.
    Remove,
    /// A borrow's end came (its linger expiry, for a borrowed license).
    BorrowExpiry,
    /// A borrowed license returned early: its CHECKIN or an admin's
    /// BORROW_RETURN.
    BorrowReturn,
}

impl Cause {
    /// Every cause, in the order of its discriminant.
    pub const ALL: [Cause; 7] = [
        Cause::Checkin,
        Cause::LingerExpiry,
        Cause::IdleTimeout,
        Cause::Disconnect,
        Cause::Remove,
        Cause::BorrowExpiry,
        Cause::BorrowReturn,
    ];

    /// Its name (`linger_expiry`), in the report log and `/metrics`.
    pub const fn name(self) -> &'static str {
        match self {
            Cause::Checkin => "checkin",
            Cause::LingerExpiry => "linger_expiry",
            Cause::IdleTimeout => "idle_timeout",
            Cause::Disconnect => "disconnect",
            Cause::Remove => "remove",
            Cause::BorrowExpiry => "borrow_expiry",
            Cause::BorrowReturn => "borrow_return",
        }
    }

    /// The cause of a name.
    pub fn from_name(name: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One thing for the log.
#[derive(Debug, Clone)]
pub enum Event {
    /// OUT / IN / DENIED / REMOVING for a holder.
    License {
        /// Unix ms.
        at_ms: u64,
        /// Which.
        action: Action,
        /// Feature.
        feature: FeatureRef,
        /// Who.
        holder: HolderBuf,
        /// Licenses.
        count: u32,
        /// Written to the debug log (false: the options file's NOLOG
        /// drops it there; it is sent for the usage history only).
        debug: bool,
    },
    /// A free-form line for `(daemon)`: start, stop, reread.
    Line {
        /// Unix ms.
        at_ms: u64,
        /// `lmgrd` or a vendor name.
        daemon: Box<str>,
        /// The message.
        text: String,
    },
    /// From now on, feature ids refer to this engine (after a reread).
    Engine(Arc<Engine>),
    /// Reopen the log file (after logrotate moved it away).
    Reopen,
    /// Write everything queued so far, then answer; with `true`, also
    /// commit the usage history's batch first (REPORT, the upload: never
    /// a loop, which must not wait for SQLite).
    Flush(Sender<()>, bool),
    /// Write everything queued so far and end the writer thread.
    Stop,
    /// The server can serve: open the target and write what was held
    /// (see [`DebugLog::serve`]), then answer.
    Serve(Sender<io::Result<()>>),
}

/// What goes over the channel: a loop's batch, or one event.
#[derive(Debug)]
enum Msg {
    /// A [`LogBatch`]'s events, in the loop's order (the vector goes back
    /// to the loops, emptied).
    Batch(Vec<Event>),
    /// One event from elsewhere (lines, control).
    One(Event),
}

impl Msg {
    /// Events this message carries.
    fn events(&self) -> usize {
        match self {
            Msg::Batch(events) => events.len(),
            Msg::One(_) => 1,
        }
    }
}

/// The log's end for any thread: cheap to clone, never blocks on license
/// events. Event loops use a [`LogBatch`] of their own.
#[derive(Debug, Clone)]
pub struct LogHandle {
    tx: Sender<Msg>,
    /// The writer thread, unparked to wake it before its tick is over (a
    /// second ring while one is pending does nothing).
    writer: std::thread::Thread,
    /// Emptied batch vectors, back from the writer.
    spare: Receiver<Vec<Event>>,
    dropped: Arc<AtomicU64>,
    /// Lines written so far (the writer's count).
    written: Arc<AtomicU64>,
    /// Every [`LogBatch`]'s sequence (odd while it holds events), for
    /// [`LogHandle::flush`].
    batches: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
}

impl LogHandle {
    /// Queues an event, or counts it as dropped if the writer is behind.
    pub fn send(&self, event: Event) {
        if self.tx.try_send(Msg::One(event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an event, waiting for room if the writer is behind (for the
    /// rare start/stop/reread lines, which must not be lost).
    pub fn send_wait(&self, event: Event) {
        let _ = self.tx.send(Msg::One(event));
        self.ring();
    }

    /// Hands the writer the engine that names feature ids from now on
    /// (after a reread). Blocks if the channel is full: if it were dropped,
    /// the ids of the new engine would be looked up in the old one.
    pub fn switch_engine(&self, engine: Arc<Engine>) {
        self.send_wait(Event::Engine(engine));
    }

    /// Queues a license event.
    pub fn license(
        &self,
        at_ms: u64,
        action: Action,
        feature: FeatureRef,
        holder: HolderBuf,
        count: u32,
    ) {
        self.send(Event::License {
            at_ms,
            action,
            feature,
            holder,
            count,
            debug: true,
        });
    }

    /// Queues a free-form line (blocking if the channel is full: for the
    /// rare start/stop/reread lines, which must not be lost).
    pub fn line(&self, at_ms: u64, daemon: &str, text: impl Into<String>) {
        self.send_wait(Event::Line {
            at_ms,
            daemon: daemon.into(),
            text: text.into(),
        });
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines written to the debug log so far (`tally_log_lines_written_total`).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen the log file (SIGHUP, REOPEN_LOG).
    pub fn reopen(&self) {
        self.send_wait(Event::Reopen);
    }

    /// Waits until everything queued before this call is written,
    /// including what the loops' batches held when it was made (each loop
    /// hands its batch over at the end of its poll round: waited for, up
    /// to 5 s). A loop flushes only with its own batch handed
    /// over ([`LogBatch::flush`]).
    pub fn flush(&self) {
        self.flush_then(false);
    }

    /// [`LogHandle::flush`], and the usage history's rows so far committed
    /// to its database (REPORT and the upload read it next). Waits for
    /// SQLite: never from a loop.
    pub fn flush_usage(&self) {
        self.flush_then(true);
    }

    fn flush_then(&self, usage: bool) {
        let deadline = Instant::now() + FLUSH_WAIT;
        self.wait_for_batches(deadline);
        let (tx, rx) = bounded(1);
        if self.tx.send(Msg::One(Event::Flush(tx, usage))).is_ok() {
            self.ring();
            let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// A loop's batch for its events.
    pub fn batch(&self) -> LogBatch {
        let seq = Arc::new(AtomicU64::new(0));
        lock(&self.batches).push(seq.clone());
        LogBatch {
            log: self.clone(),
            events: Vec::with_capacity(BATCH_EVENTS),
            seq,
        }
    }

    /// Waits until every batch that held events now has been handed over
    /// (its sequence moved on), or `deadline`.
    fn wait_for_batches(&self, deadline: Instant) {
        let open: Vec<(Arc<AtomicU64>, u64)> = lock(&self.batches)
            .iter()
            .filter_map(|s| {
                let v = s.load(Ordering::SeqCst);
                (v % 2 == 1).then(|| (s.clone(), v))
            })
            .collect();
        for (seq, v) in open {
            let mut tries = 0u32;
            while seq.load(Ordering::SeqCst) == v && Instant::now() < deadline {
                if tries < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
                tries += 1;
            }
        }
    }

    /// Wakes the writer now rather than at its next tick.
    fn ring(&self) {
        self.writer.unpark();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loop's events on their way to the writer: copied in as they come,
/// handed over as one message at the end of the poll round
/// ([`LogBatch::hand_over`]) or when it holds [`BATCH_EVENTS`]. Dropping it
/// hands over what it holds.
#[derive(Debug)]
pub struct LogBatch {
    log: LogHandle,
    events: Vec<Event>,
    /// Odd while `events` is not empty: bumped when the first event comes
    /// in and when the batch is handed over ([`LogHandle::flush`] waits
    /// for an odd one to move on).
    seq: Arc<AtomicU64>,
}

impl LogBatch {
    /// Adds a license event (or any event) to the batch; a full batch is
    /// handed over at once.
    pub fn push(&mut self, event: Event) {
        if self.events.is_empty() {
            self.seq.fetch_add(1, Ordering::SeqCst);
        }
        self.events.push(event);
        if self.events.len() >= BATCH_EVENTS {
            self.hand_over();
        }
    }

    /// Hands the batch to the writer, or counts its events as dropped if
    /// the channel is full. Never blocks.
    pub fn hand_over(&mut self) {
        self.give(false);
    }

    /// Adds a line that must not be lost (start, stop, reread, accept
    /// trouble) and hands the batch over, waiting for room if need be.
    pub fn line(&mut self, at_ms: u64, daemon: &str, text: impl Into<String>) {
        self.push_wait(Event::Line {
            at_ms,
            daemon: daemon.into(),
            text: text.into(),
        });
    }

    /// Adds an event that must not be lost and hands the batch over,
    /// waiting for room if need be.
    pub fn push_wait(&mut self, event: Event) {
        if self.events.is_empty() {
            self.seq.fetch_add(1, Ordering::SeqCst);
        }
        self.events.push(event);
        self.give(true);
    }

    /// Hands the batch over (waiting for room), then the engine that
    /// names feature ids from now on: the batch's ids are the old
    /// engine's.
    pub fn switch_engine(&mut self, engine: Arc<Engine>) {
        self.give(true);
        self.log.switch_engine(engine);
    }

    /// Hands the batch over (waiting for room) and asks the writer to
    /// reopen the log file.
    pub fn reopen(&mut self) {
        self.give(true);
        self.log.reopen();
    }

    /// Hands the batch over (waiting for room), then [`LogHandle::flush`].
    pub fn flush(&mut self) {
        self.give(true);
        self.log.flush();
    }

    /// The handle this batch sends with.
    pub fn handle(&self) -> &LogHandle {
        &self.log
    }

    fn give(&mut self, wait: bool) {
        if self.events.is_empty() {
            return;
        }
        let next = self
            .log
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_EVENTS));
        let batch = Msg::Batch(std::mem::replace(&mut self.events, next));
        let sent = if wait {
            self.log.tx.send(batch).map_err(|e| e.into_inner())
        } else {
            self.log.tx.try_send(batch).map_err(|e| e.into_inner())
        };
        match sent {
            Ok(()) if wait || self.log.tx.len() >= WAKE_AT_MESSAGES => self.log.ring(),
            Ok(()) => {}
            Err(Msg::Batch(mut lost)) => {
                self.log
                    .dropped
                    .fetch_add(lost.len() as u64, Ordering::Relaxed);
                lost.clear();
                self.events = lost;
                self.log.ring();
            }
            Err(Msg::One(_)) => unreachable!("a batch was sent"),
        }
        self.seq.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for LogBatch {
    fn drop(&mut self) {
        self.hand_over();
        let mut all = lock(&self.log.batches);
        all.retain(|s| !Arc::ptr_eq(s, &self.seq));
    }
}

/// The writer thread; dropping every [`LogHandle`] and then this ends it.
#[derive(Debug)]
pub struct DebugLog {
    handle: LogHandle,
    thread: Option<JoinHandle<()>>,
}

impl DebugLog {
    /// Checks that the target can be opened and starts the writer thread,
    /// which holds every event in memory, writing nothing, until
    /// [`DebugLog::serve`]: a start that fails (the state directory in use
    /// by another tallyd, say) leaves no line in the log, which may be the
    /// live server's.
    pub fn start(
        target: &LogTarget,
        engine: Arc<Engine>,
        clock: Arc<dyn Clock>,
    ) -> io::Result<DebugLog> {
        DebugLog::start_with_usage(target, engine, clock, UsageConfig::default())
    }

    /// [`DebugLog::start`], and the writer thread feeds the license events
    /// to usage reporting too (`crate::usage`): the report log and the
    /// usage history, opened at [`DebugLog::serve`].
    pub fn start_with_usage(
        target: &LogTarget,
        engine: Arc<Engine>,
        clock: Arc<dyn Clock>,
        usage: UsageConfig,
    ) -> io::Result<DebugLog> {
        // Append mode whatever the target says: a truncating open now
        // would empty a live server's log before this one can serve.
        if let LogTarget::File { path, .. } = target {
            open_target(&LogTarget::File {
                path: path.clone(),
                append: true,
            })?;
        }
        let (tx, rx) = bounded(LOG_CHANNEL_BATCHES);
        let (spare_tx, spare) = bounded(LOG_CHANNEL_BATCHES);
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let usage = usage.is_on().then(|| Sink::new(usage, clock.now_ms()));
        let writer = Writer {
            usage,
            out: BufWriter::with_capacity(WRITE_BUFFER, Box::new(io::sink())),
            held: Some(Vec::new()),
            target: target.clone(),
            engine,
            dropped: dropped.clone(),
            written: written.clone(),
            reported_drops: 0,
            // The start line carries the date; the first TIMESTAMP comes
            // six hours later.
            last_timestamp_ms: clock.now_ms(),
            time: clock,
            clock: (0, [0; 8]),
        };
        let thread = std::thread::Builder::new()
            .name("tally-log".into())
            .spawn(move || writer.run(rx, spare_tx))?;
        Ok(DebugLog {
            handle: LogHandle {
                tx,
                writer: thread.thread().clone(),
                spare,
                dropped,
                written,
                batches: Arc::default(),
            },
            thread: Some(thread),
        })
    }

    /// The server is ready to serve: opens the target as configured
    /// (truncating it if asked) and writes the events held since
    /// [`DebugLog::start`], in order.
    pub fn serve(&self) -> io::Result<()> {
        let (tx, rx) = bounded(1);
        self.handle
            .tx
            .send(Msg::One(Event::Serve(tx)))
            .map_err(|_| io::Error::other("the debug log writer stopped"))?;
        self.handle.ring();
        rx.recv()
            .map_err(|_| io::Error::other("the debug log writer stopped"))?
    }

    /// A handle for a loop.
    pub fn handle(&self) -> LogHandle {
        self.handle.clone()
    }

    /// Writes everything queued and stops the writer (handles still held
    /// elsewhere then count their events as dropped).
    pub fn shutdown(mut self) {
        self.handle.send_wait(Event::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_target(target: &LogTarget) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        LogTarget::Stderr => Box::new(io::stderr()),
        LogTarget::File { path, append } => {
            let mut o = OpenOptions::new();
            o.create(true);
            if *append {
                o.append(true);
            } else {
                o.write(true).truncate(true);
            }
            Box::new(o.open(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open debug log {}: {e}", path.display()),
                )
            })?)
        }
    })
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The usage events' consumer (report log, usage history), if on.
    usage: Option<Sink>,
    /// Events held until the server can serve ([`Event::Serve`]).
    held: Option<Vec<Event>>,
    /// Where to reopen to (always appending).
    target: LogTarget,
    engine: Arc<Engine>,
    dropped: Arc<AtomicU64>,
    /// Lines written (this thread alone adds to it).
    written: Arc<AtomicU64>,
    reported_drops: u64,
    last_timestamp_ms: u64,
    /// The server's clock (`server::Config::clock`).
    time: Arc<dyn Clock>,
    /// The local `HH:MM:SS` of one Unix second, reused for every line of
    /// that second (a time-zone conversion per line cost more than the
    /// rest of the line).
    clock: (u64, [u8; 8]),
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>, spare: Sender<Vec<Event>>) {
        loop {
            // Idle: block until something comes.
            let msg = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.housekeeping(self.time.now_ms());
                    self.usage_tick();
                    let _ = self.out.flush();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if !self.take(msg, &spare) {
                break;
            }
            // Busy: drain what is there and write it at once, then sleep a
            // tick (or until rung) instead of waking for the next event;
            // back to blocking when a tick brought nothing.
            loop {
                let mut run = 0;
                while let Ok(m) = rx.try_recv() {
                    run += m.events();
                    if !self.take(m, &spare) {
                        self.stop_usage();
                        let _ = self.out.flush();
                        return;
                    }
                    if run >= WRITER_RUN_EVENTS {
                        // Give the loops the core before the rest.
                        let _ = self.out.flush();
                        std::thread::yield_now();
                        run = 0;
                    }
                }
                self.usage_tick();
                let _ = self.out.flush();
                // Parked, not a channel wait: no spinning, no yields.
                std::thread::park_timeout(WRITER_TICK);
                if rx.is_empty() {
                    break;
                }
            }
        }
        self.stop_usage();
        let _ = self.out.flush();
    }

    /// Handles one message; false on [`Event::Stop`]. A batch's vector goes
    /// back to the loops.
    fn take(&mut self, msg: Msg, spare: &Sender<Vec<Event>>) -> bool {
        match msg {
            Msg::One(e) => self.handle(e),
            Msg::Batch(mut events) => {
                let mut go = true;
                for e in events.drain(..) {
                    go &= self.handle(e);
                }
                let _ = spare.try_send(events);
                go
            }
        }
    }

    /// The usage sink's once-a-drain work, and its notes for the log.
    fn usage_tick(&mut self) {
        if self.held.is_some() {
            return;
        }
        let now = self.time.now_ms();
        if let Some(u) = self.usage.as_mut() {
            u.tick(now);
        }
        self.usage_notes(now);
    }

    fn usage_notes(&mut self, now: u64) {
        let notes = match self.usage.as_mut() {
            Some(u) if !u.notes.is_empty() => std::mem::take(&mut u.notes),
            _ => return,
        };
        for n in notes {
            self.write(now, "lmgrd", &n);
        }
    }

    fn stop_usage(&mut self) {
        if self.held.is_some() {
            return;
        }
        let now = self.time.now_ms();
        if let Some(u) = self.usage.as_mut() {
            u.stop(now);
        }
    }

    /// Writes one event; false on [`Event::Stop`].
    fn handle(&mut self, event: Event) -> bool {
        if let Some(held) = self.held.as_mut() {
            match event {
                // The server never served: nothing is written.
                Event::Stop => return false,
                Event::Flush(done, _) => {
                    let _ = done.send(());
                }
                Event::Reopen => {}
                Event::Serve(done) => {
                    let now = self.time.now_ms();
                    let started = match self.usage.as_mut() {
                        Some(u) => u.start(&self.engine, now),
                        None => Ok(()),
                    };
                    let result = started.and_then(|()| open_target(&self.target)).map(|out| {
                        self.out = BufWriter::with_capacity(WRITE_BUFFER, out);
                        for e in self.held.take().unwrap_or_default() {
                            self.handle(e);
                        }
                        self.usage_notes(now);
                        let _ = self.out.flush();
                    });
                    let _ = done.send(result);
                }
                e => held.push(e),
            }
            return true;
        }
        match event {
            Event::License {
                at_ms,
                action,
                feature,
                holder,
                count,
                debug,
            } => {
                if let Some(u) = self.usage.as_mut() {
                    let (name, known) = match &feature {
                        FeatureRef::Id(id) => (self.engine.feature_name(*id), true),
                        FeatureRef::Name(n) => (n.as_ref(), false),
                    };
                    u.event(at_ms, action, name, known, &holder, count);
                }
                if !debug {
                    return true;
                }
                self.housekeeping(at_ms);
                let vendor_of_name;
                let (name, vendor) = match &feature {
                    FeatureRef::Id(id) => (
                        self.engine.feature_name(*id),
                        self.engine.feature_vendor(*id),
                    ),
                    FeatureRef::Name(n) => {
                        vendor_of_name = self.default_vendor();
                        (n.as_ref(), vendor_of_name.as_str())
                    }
                };
                write_prefix(&mut self.out, &mut self.clock, at_ms, vendor);
                let _ = write_license_line(&mut self.out, action, name, &holder, count);
                let _ = self.out.write_all(b"\n");
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Event::Line {
                at_ms,
                daemon,
                text,
            } => {
                self.housekeeping(at_ms);
                self.write(at_ms, &daemon, &text);
            }
            Event::Engine(e) => {
                if let Some(u) = self.usage.as_mut() {
                    u.engine(&e, self.time.now_ms());
                }
                self.engine = e;
            }
            Event::Reopen => {
                if let Some(u) = self.usage.as_mut() {
                    u.reopen();
                }
                self.reopen();
            }
            Event::Flush(done, usage) => {
                if let Some(u) = self.usage.as_mut() {
                    let now = self.time.now_ms();
                    if usage {
                        u.sync(now);
                    } else {
                        u.flush(now);
                    }
                }
                let _ = self.out.flush();
                let _ = done.send(());
            }
            Event::Stop => return false,
            Event::Serve(done) => {
                let _ = done.send(Ok(()));
            }
        }
        true
    }

    /// Reopens the file in append mode; on failure keeps writing to the
    /// old one and says why.
    fn reopen(&mut self) {
        let now = self.time.now_ms();
        let target = match &self.target {
            LogTarget::Stderr => return,
            LogTarget::File { path, .. } => LogTarget::File {
                path: path.clone(),
                append: true,
            },
        };
        let _ = self.out.flush();
        match open_target(&target) {
            Ok(out) => {
                self.out = BufWriter::with_capacity(WRITE_BUFFER, out);
                self.write(now, "lmgrd", "Debug log reopened");
            }
            Err(e) => self.write(now, "lmgrd", &format!("Debug log not reopened: {e}")),
        }
    }

    fn default_vendor(&self) -> String {
        self.engine
            .feature_id_at(0)
            .map(|id| self.engine.feature_vendor(id).to_string())
            .unwrap_or_else(|| "tally".to_string())
    }

    /// TIMESTAMP lines and drop reports.
    fn housekeeping(&mut self, now_ms: u64) {
        if now_ms >= self.last_timestamp_ms + TIMESTAMP_EVERY_MS {
            self.last_timestamp_ms = now_ms;
            let date = local(now_ms).format("%-m/%-d/%Y").to_string();
            self.write(now_ms, "lmgrd", &format!("TIMESTAMP {date}"));
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_drops {
            let n = dropped - self.reported_drops;
            self.reported_drops = dropped;
            self.write(
                now_ms,
                "lmgrd",
                &format!(
                    "{} dropped: the log writer fell behind ({dropped} in all)",
                    counted(n, "debug log line", "debug log lines")
                ),
            );
        }
    }

    fn write(&mut self, at_ms: u64, daemon: &str, text: &str) {
        write_prefix(&mut self.out, &mut self.clock, at_ms, daemon);
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.write_all(b"\n");
        self.written.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes `HH:MM:SS (DAEMON) ` in local time (the hour space-padded, as
/// lmgrd). `clock` keeps the text of one Unix second for every line of it.
fn write_prefix(out: &mut impl Write, clock: &mut (u64, [u8; 8]), at_ms: u64, daemon: &str) {
    let second = at_ms / 1000;
    if clock.0 != second || clock.1[0] == 0 {
        let t = local(at_ms);
        let mut hms = [0u8; 8];
        let _ = write!(
            &mut hms[..],
            "{:>2}:{:02}:{:02}",
            t.hour(),
            t.minute(),
            t.second()
        );
        *clock = (second, hms);
    }
    let _ = out.write_all(&clock.1);
    let _ = out.write_all(b" (");
    let _ = out.write_all(daemon.as_bytes());
    let _ = out.write_all(b") ");
}

fn local(ms: u64) -> chrono::DateTime<Local> {
    Local
        .timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_else(Local::now)
}

/// `1 line`, `2 lines`: a count and the word that goes with it, for every
/// message that counts something.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// FlexLM's minor code for a major code, where known (`-4,342`); 0 else.
fn minor_code(major: i32) -> i32 {
    match major {
        -4 => 342,
        -5 => 346,
        -18 => 327,
        _ => 0,
    }
}

/// The text after `HH:MM:SS (VENDOR) ` for a license event.
pub fn format_license_line(action: Action, feature: &str, h: &HolderBuf, count: u32) -> String {
    let mut v = Vec::with_capacity(96);
    let _ = write_license_line(&mut v, action, feature, h, count);
    String::from_utf8_lossy(&v).into_owned()
}

/// Writes [`format_license_line`]'s text without building a string.
fn write_license_line(
    out: &mut impl Write,
    action: Action,
    feature: &str,
    h: &HolderBuf,
    count: u32,
) -> io::Result<()> {
    let (user, host, handle) = (h.user(), h.host(), h.handle());
    let tag = match action {
        Action::Out(_) | Action::OutOverdraft(_) => "OUT",
        Action::In(_) | Action::InBalance => "IN",
        Action::Queued => "QUEUED",
        Action::Denied(r) => {
            return write!(
                out,
                "DENIED: \"{feature}\" {user}@{host} [{handle}]  ({} ({},{}))",
                r.full_text(),
                r.flexlm_code(),
                minor_code(r.flexlm_code())
            );
        }
        // `user@host:display`; a holder without a display is `user@host`
        // (no dangling colon).
        Action::Removing if h.display().is_empty() => {
            return write!(out, "REMOVING {user}@{host} from {feature}");
        }
        Action::Removing => {
            return write!(out, "REMOVING {user}@{host}:{} from {feature}", h.display());
        }
    };
    write!(out, "{tag}: \"{feature}\" {user}@{host} [{handle}]")?;
    if count > 1 {
        write!(out, "  ({count} licenses)")?;
    }
    match action {
        Action::OutOverdraft(_) => out.write_all(b"  (OVERDRAFT)"),
        Action::In(Cause::IdleTimeout) => out.write_all(b"  (INACTIVE)"),
        Action::Out(OutKind::Borrow) => out.write_all(b"  (BORROW)"),
        Action::In(Cause::BorrowReturn) => out.write_all(b"  (BORROW RETURNED)"),
        Action::In(Cause::BorrowExpiry) => out.write_all(b"  (BORROW EXPIRED)"),
        _ => Ok(()),
    }
}

/// Logs, as `lmgrd` lines, every license line tally serves less of than it
/// says ([`tally_core::engine::unservable`]: a saturated count, more
/// licenses than checkouts the table holds), naming file and line.
pub fn log_unservable(log: &LogHandle, at_ms: u64, licenses: &tally_core::license::LicenseSet) {
    for u in tally_core::engine::unservable(licenses) {
        log.line(at_ms, "lmgrd", format!("License file warning: {u}"));
    }
}

#[cfg(test)]
mod tests;
