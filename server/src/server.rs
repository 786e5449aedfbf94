//! tallyd's event loops.
//!
//! One loop per worker thread, each with its own mio `Poll`, connection
//! slab, timer wheel ([`Lingers`]) and `Token`s. Every loop registers a
//! clone of the listening socket and accepts until `WouldBlock`, so
//! connections spread over the loops. The loops share the engine (lock-free
//! on the checkout path) and nothing else on the request path.
//!
//! Edge-triggered rules, stated once: a connection is registered for
//! READABLE | WRITABLE once and never re-registered; on every event the
//! loop reads until `WouldBlock`, answers every complete line in order into
//! the connection's write buffer, then writes until `WouldBlock` or
//! `WRITE_SLICE_BYTES`; a connection stopped by the slice is listed and
//! written again on the next turn (no event would come for it). If a
//! client pipelines without reading, processing pauses at
//! [`WRITE_HIGH_WATER`] bytes of unsent replies and resumes on WRITABLE.
//!
//! Linger expiry: each loop sleeps at most until its wheel's next deadline
//! and releases what is due when it wakes; there is no periodic sweep.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use tally_core::clock::{Clock, SystemClock};
use tally_core::engine::{
    CheckinError, Engine, EngineConfig, FeatureId, GrantKind, HolderBuf, InstanceId, Lingers,
    Release, Request, Restore,
};
use tally_core::license::LicenseSet;
use tally_core::options::OptionsFile;

use crate::auth::{FailureLog, Logged, MAX_AUTH_FAILURES};
use crate::debuglog::{Action, DebugLog, FeatureRef, LogHandle, LogTarget};
use crate::journal::{self, Durability, Journal, LoopJournal, ReplyGate};
use crate::options::{PolicyConfig, ServerOptions};
use crate::protocol::{self, Command, ErrCode, Reply, MAX_LINE_BYTES};
use crate::queue::{QueuedStatus, Queues, Seat, WaitDeadlines};
use crate::status::ServerInfo;
use crate::status_thread::{self, StatusThread};
use crate::timeout::IdleTimers;
use crate::uses::{Ended, Granted, Uses};

/// Unsent reply bytes at which a connection stops being read.
pub const WRITE_HIGH_WATER: usize = 1 << 20;

/// Longest a loop sleeps when no timer is due, so flags are seen even if a
/// wake-up were lost.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

/// Unanswered bytes a waiting connection may buffer (it is read only to see
/// it close).
const WAITING_READ_LIMIT: usize = 64 * 1024;
/// Longest a loop waits at shutdown for its last journal records.
const SHUTDOWN_JOURNAL_WAIT: Duration = Duration::from_secs(10);

/// Names (user, host) a connection remembers having checked out as; a
/// client multiplexing more users must name the holder in CHECKIN.
const MAX_IDENTITIES: usize = 16;

/// NOT_HOLDER refusals after which a connection is closed: a holder never
/// gets one, a client trying handles it does not hold gets a few.
const MAX_NOT_HOLDER: u32 = 3;

/// Bytes written to one connection per turn of the loop: a 24 MB STATUS
/// reply to a fast reader goes out in slices between other connections'
/// requests instead of in one go.
const WRITE_SLICE_BYTES: usize = 256 * 1024;

/// Bytes read from a socket per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// A connection the server closes (after LINE_TOO_LONG, QUIT, too many
/// failed AUTHs) first gets its last reply and a FIN, then has up to this
/// many bytes read and dropped, so that a client still sending gets the
/// reply instead of a reset (which unread data would cause).
const DRAIN_LIMIT_BYTES: usize = 64 * 1024;
/// Longest a closing connection is drained, in ms.
const DRAIN_MS: u64 = 2_000;

/// After `accept` failed for want of a file descriptor (EMFILE, ENFILE) or
/// kernel memory, the loop tries again this often, in ms. Edge-triggered
/// readiness raises no new event for connections already in the backlog,
/// so waiting for one would stop accepting for good.
const ACCEPT_RETRY_MS: u64 = 100;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed license file.
    pub licenses: LicenseSet,
    /// Its path, for REREAD (`None` for the embedded demo).
    pub license_path: Option<PathBuf>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Event-loop threads.
    pub workers: usize,
    /// Debug log destination.
    pub log: LogTarget,
    /// Token that lets non-loopback peers make admin requests.
    pub admin_token: Option<String>,
    /// Host name reported in STATUS and lmstat.
    pub host_name: String,
    /// The options file (issue 7; see `options.rs`).
    pub policy: PolicyConfig,
    /// When a grant is durable (see `journal`).
    pub durability: Durability,
    /// Where the journal and snapshots live.
    pub state_dir: PathBuf,
    /// Start on a damaged journal, restoring every intact record (see
    /// `journal::files::recover`).
    pub salvage_journal: bool,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// The state directory could not be used or recovered.
    #[error("{0}")]
    Journal(#[from] journal::JournalError),
    /// Any other I/O failure while starting.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: io::Error,
    },
}

fn io_err(what: &str) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        what: what.to_string(),
        source,
    }
}

/// State every loop shares (read-mostly; nothing here is touched per request
/// except the engine).
#[derive(Debug)]
struct Shared {
    engine: Mutex<Arc<Engine>>,
    /// Bumped when the engine is replaced; loops compare it once per wake.
    engine_gen: AtomicU64,
    shutdown: AtomicBool,
    /// A reread wants every loop to stop at the barrier.
    pause: AtomicBool,
    pause_barrier: Mutex<Option<Arc<Barrier>>>,
    /// Held by the loop doing a reread; a second REREAD meanwhile is refused.
    rereading: Mutex<()>,
    /// Old instance -> (new instance, new feature), published by a reread.
    remap: Mutex<Arc<HashMap<InstanceId, (InstanceId, FeatureId)>>>,
    wakers: OnceLock<Vec<Arc<Waker>>>,
    connections: AtomicU64,
    log: LogHandle,
    facts: Mutex<Facts>,
    license_path: Option<PathBuf>,
    admin_token: Option<String>,
    workers: usize,
    seed: (u64, u64),
    /// Options-file settings the loops apply; replaced with the engine.
    server_options: Mutex<Arc<ServerOptions>>,
    policy: PolicyConfig,
    /// Queued checkouts (`queue.rs`).
    queues: Queues,
    /// Uses of shared (DUP_GROUP) instances, across connections.
    uses: Uses,
}

#[derive(Debug, Clone)]
struct Facts {
    host: String,
    port: u16,
    license_file: String,
    vendors: Vec<String>,
    started_ms: u64,
}

impl Shared {
    fn current_engine(&self) -> Arc<Engine> {
        lock(&self.engine).clone()
    }

    fn wake_all(&self) {
        if let Some(wakers) = self.wakers.get() {
            for w in wakers {
                let _ = w.wake();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    log: Option<DebugLog>,
    journal: Option<Journal>,
    local_addr: SocketAddr,
    /// What recovery did at start (`None` when durability is off).
    recovery: Option<String>,
}

/// Asks a running server to stop (from a signal handler thread, say).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    /// Starts an orderly shutdown.
    pub fn shutdown(&self) {
        self.0.shutdown.store(true, Ordering::SeqCst);
        self.0.wake_all();
    }
}

fn random_seed() -> (u64, u64) {
    use std::hash::{BuildHasher, Hasher};
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(a);
    (a, h.finish())
}

fn vendors_of(set: &LicenseSet) -> Vec<String> {
    let mut v: Vec<String> = set.vendors.iter().map(|v| v.name.clone()).collect();
    for p in &set.pools {
        if !v.contains(&p.vendor) {
            v.push(p.vendor.clone());
        }
    }
    v
}

impl Server {
    /// Binds, starts the log writer and the loops. Returns once listening.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        let now = SystemClock.now_ms();
        let seed = random_seed();
        let options = config.policy.loaded.as_ref().map(|(_, o)| o);
        let engine = Arc::new(crate::options::build_engine(
            &config.licenses,
            options,
            EngineConfig {
                seed,
                ..EngineConfig::default()
            },
        ));
        let server_options = Arc::new(ServerOptions::new(
            &engine,
            options,
            config.policy.min_timeout_secs,
        ));
        let std_listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        std_listener
            .set_nonblocking(true)
            .map_err(io_err("set the listener non-blocking"))?;
        let local_addr = std_listener
            .local_addr()
            .map_err(io_err("read the listen address"))?;
        let log =
            DebugLog::start(&config.log, engine.clone()).map_err(io_err("start the debug log"))?;
        let handle = log.handle();
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine.clone()),
            engine_gen: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            pause: AtomicBool::new(false),
            pause_barrier: Mutex::new(None),
            rereading: Mutex::new(()),
            remap: Mutex::new(Arc::new(HashMap::new())),
            wakers: OnceLock::new(),
            connections: AtomicU64::new(0),
            log: handle.clone(),
            facts: Mutex::new(Facts {
                host: config.host_name.clone(),
                port: local_addr.port(),
                license_file: config.licenses.source.clone(),
                vendors: vendors_of(&config.licenses),
                started_ms: now,
            }),
            license_path: config.license_path.clone(),
            admin_token: config.admin_token.clone(),
            workers,
            seed,
            server_options: Mutex::new(server_options.clone()),
            policy: config.policy.clone(),
            queues: Queues::default(),
            uses: Uses::default(),
        });
        log_startup(&handle, &config, local_addr, &engine, now);
        if let Some((path, o)) = &config.policy.loaded {
            log_options(&handle, now, path, o, &engine);
        }
        // Durability: recover before any connection is accepted.
        let booted = journal::boot::recover_into(
            &config.state_dir,
            config.durability,
            config.salvage_journal,
            &engine,
            &handle,
            now,
        )?;
        let mut arm: Vec<Vec<(InstanceId, u64)>> = vec![Vec::new(); workers];
        for (n, a) in booted.arm.iter().enumerate() {
            arm[n % workers].push(*a);
        }

        let mut loops = Vec::with_capacity(workers);
        let mut wakers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new().map_err(io_err("create a poll"))?;
            let waker =
                Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_err("create a waker"))?);
            let mut listener = TcpListener::from_std(
                std_listener
                    .try_clone()
                    .map_err(io_err("clone the listener"))?,
            );
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)
                .map_err(io_err("register the listener"))?;
            wakers.push(waker);
            loops.push((poll, listener));
        }
        let journal = match booted.prepared {
            Some(p) => Some(p.start(wakers.clone(), handle.clone())?),
            None => None,
        };
        let (status, status_inboxes) =
            StatusThread::start(wakers.clone()).map_err(io_err("start the status thread"))?;
        let _ = shared.wakers.set(wakers);
        // Recovered and listening: the log gets its first lines now.
        log.serve().map_err(io_err("start the debug log"))?;
        let mut threads = Vec::with_capacity(workers);
        for (((i, (poll, listener)), arm), status_done) in
            loops.into_iter().enumerate().zip(arm).zip(status_inboxes)
        {
            let status_jobs = status.sender();
            let shared = shared.clone();
            let engine = engine.clone();
            let opts = server_options.clone();
            let lj = journal.as_ref().map(|j| j.for_loop(i));
            let t = std::thread::Builder::new()
                .name(format!("tally-loop-{i}"))
                .spawn(move || {
                    let log = shared.log.clone();
                    let run = std::panic::AssertUnwindSafe(move || {
                        Loop::new(
                            i,
                            poll,
                            listener,
                            shared,
                            engine,
                            opts,
                            LoopStart {
                                journal: lj,
                                arm,
                                status_jobs,
                                status_done,
                            },
                        )
                        .run()
                    });
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        exit_after_loop_panic(i, &log, panic.as_ref());
                    }
                })
                .map_err(io_err("start a loop thread"))?;
            threads.push(t);
        }
        Ok(Server {
            shared,
            workers: threads,
            log: Some(log),
            journal,
            local_addr,
            recovery: booted.summary,
        })
    }

    /// What journal recovery did at start (`None` when durability is off).
    pub fn recovery_summary(&self) -> Option<&str> {
        self.recovery.as_deref()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The debug log's handle (to reopen it on SIGHUP).
    pub fn log_handle(&self) -> LogHandle {
        self.shared.log.clone()
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// Waits until the server is asked to stop (DOWN, or a
    /// [`ShutdownHandle`]), then stops the loops and flushes the log.
    pub fn wait(mut self) {
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
        // Every loop has handed over its records: write, sync, snapshot.
        if let Some(j) = self.journal.take() {
            j.shutdown();
        }
        let now = SystemClock.now_ms();
        let vendors = lock(&self.shared.facts).vendors.clone();
        for v in &vendors {
            self.shared.log.line(now, v, "Shutting down");
        }
        self.shared.log.line(now, "lmgrd", "tallyd shut down");
        if let Some(log) = self.log.take() {
            log.shutdown();
        }
    }
}

fn log_startup(log: &LogHandle, config: &Config, addr: SocketAddr, engine: &Engine, now: u64) {
    let date = chrono::Local::now().format("%-m/%-d/%Y");
    log.line(
        now,
        "lmgrd",
        format!(
            "FlexNet Licensing compatible tallyd (v{} build tally) started on {} ({}) ({date})",
            env!("CARGO_PKG_VERSION"),
            config.host_name,
            std::env::consts::OS
        ),
    );
    log.line(
        now,
        "lmgrd",
        format!("License file(s): {}", config.licenses.source),
    );
    for d in &config.licenses.diagnostics {
        log.line(
            now,
            "lmgrd",
            format!("License file error, line skipped: {d}"),
        );
    }
    crate::debuglog::log_unservable(log, now, &config.licenses);
    log.line(now, "lmgrd", format!("lmgrd tcp-port {}", addr.port()));
    for vendor in vendors_of(&config.licenses) {
        let features: Vec<&str> = (0..engine.feature_count())
            .filter_map(|i| engine.feature_id_at(i))
            .filter(|&id| engine.feature_vendor(id) == vendor)
            .map(|id| engine.feature_name(id))
            .collect();
        log.line(now, &vendor, "TCP_NODELAY enabled");
        log.line(
            now,
            &vendor,
            format!(
                "Server started on {} for: {}",
                config.host_name,
                features.join(" ")
            ),
        );
    }
}

/// Logs what the options file did: its path, skipped lines, rules the
/// engine could not apply, and what tally does not do yet.
fn log_options(log: &LogHandle, now: u64, path: &Path, o: &OptionsFile, engine: &Engine) {
    log.line(
        now,
        "lmgrd",
        format!(
            "Options file: {} ({}, {} skipped)",
            path.display(),
            crate::debuglog::counted(o.rules.len() as u64, "rule", "rules"),
            crate::debuglog::counted(o.diagnostics.len() as u64, "line", "lines")
        ),
    );
    for d in &o.diagnostics {
        log.line(
            now,
            "lmgrd",
            format!("Options file error, line skipped: {d}"),
        );
    }
    for w in engine.policy_warnings() {
        log.line(now, "lmgrd", format!("Options file warning: {w}"));
    }
    if let Some(r) = &o.report_log {
        log.line(
            now,
            "lmgrd",
            format!("REPORTLOG {} is not supported yet; ignored", r.path),
        );
    }
}

/// A license this connection checked out (for disconnect and CHECKIN).
#[derive(Debug, Clone)]
struct Held {
    id: InstanceId,
    feature: FeatureId,
    /// Under DUP_GROUP: the handles (in full) of this connection's uses of
    /// the shared instance, each ended on its own (`uses.rs`), and whether
    /// the use is bound (its latest checkout had no linger). Empty for a
    /// handle's own instance.
    handles: Vec<(Box<str>, bool)>,
}

impl Held {
    /// This connection's uses of the instance.
    fn uses(&self) -> u32 {
        (self.handles.len() as u32).max(1)
    }

    /// Of those, the bound ones.
    fn bound(&self) -> u32 {
        self.handles.iter().filter(|(_, b)| *b).count() as u32
    }

    /// This connection's use by `handle`: whether it is bound.
    fn use_of(&self, handle: &str) -> Option<bool> {
        self.handles
            .iter()
            .find(|(h, _)| &**h == handle)
            .map(|(_, b)| *b)
    }

    /// Whether `handle` is one of this connection's uses.
    fn has_handle(&self, handle: &str) -> bool {
        self.use_of(handle).is_some()
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Instances this connection checked out that its close or a CHECKIN
    /// by handle must find: connection-bound ones (no linger) and those of
    /// DUP_GROUP features (keyed by the names used). Pruned of released
    /// instances as it grows; O(1) per checkout whatever its size.
    held: HashMap<InstanceId, Held>,
    /// Prune `held` when it grows past this.
    prune_at: usize,
    authed: bool,
    /// Failed AUTH requests (the connection closes at
    /// [`crate::auth::MAX_AUTH_FAILURES`]).
    auth_failures: u32,
    /// Requests refused NOT_HOLDER (the connection closes at
    /// [`MAX_NOT_HOLDER`]: a client guessing handles).
    not_holder: u32,
    /// Close once `wbuf` is written.
    closing: bool,
    /// Written out and shut down for writing: bytes still allowed to be
    /// read and dropped before the close ([`DRAIN_LIMIT_BYTES`]).
    draining: Option<usize>,
    /// The end of the drain is armed (within [`DRAIN_MS`]).
    drain_armed: bool,
    /// Unix ms of the last request (idle TIMEOUT).
    last_seen: u64,
    /// Tells this connection from a later one in the same slab slot.
    serial: u64,
    /// Its slab key.
    key: usize,
    /// Queued (feature, sequence number): no further line is answered
    /// until this one is.
    waiting: Option<(String, u64)>,
    /// A STATUS is being built off the loop (`status_thread.rs`): no
    /// further line is answered until its reply is in `wbuf`.
    status_pending: bool,
    /// The (user, host) names this connection has checked out as, at
    /// most [`MAX_IDENTITIES`]: a CHECKIN of a license held under one of
    /// them is the holder's (see `checkin`).
    identities: Vec<(Box<str>, Box<str>)>,
    /// Replies waiting for the journal stay in `wbuf` behind this.
    gate: ReplyGate,
    /// Listed in the loop's `gated` (to be served when the journal wakes it).
    gated: bool,
    /// Its last flush stopped at [`WRITE_SLICE_BYTES`] with more to write
    /// (the socket did not say WouldBlock, so no event will come for it).
    write_more: bool,
    /// Listed in the loop's `writers` (to be written on the next turn).
    write_listed: bool,
}

impl Conn {
    /// Waiting for a queued checkout or a STATUS: reads go on (to see the
    /// close), answers wait.
    fn parked(&self) -> bool {
        self.waiting.is_some() || self.status_pending
    }

    /// Whether this connection has checked out as `holder`'s user@host.
    fn checked_out_as(&self, holder: &HolderBuf) -> bool {
        self.identities
            .iter()
            .any(|(u, h)| holder.is_user_host(u, h))
    }

    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        now: u64,
        serial: u64,
        key: usize,
        gate: ReplyGate,
    ) -> Conn {
        Conn {
            stream,
            peer,
            // Empty until used: an idle connection costs no buffer memory.
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            held: HashMap::new(),
            prune_at: 64,
            authed: false,
            auth_failures: 0,
            not_holder: 0,
            closing: false,
            draining: None,
            drain_armed: false,
            last_seen: now,
            serial,
            key,
            waiting: None,
            status_pending: false,
            identities: Vec::new(),
            gate,
            gated: false,
            write_more: false,
            write_listed: false,
        }
    }
}

/// How far [`Ctx::serve`] reads a socket. Edge-triggered readiness is only
/// re-raised by new data, so a connection must be read until it has nothing
/// left: `UntilWouldBlock` proves it with a last read, `UntilShort` trusts a
/// read that returned less than its buffer (the socket was empty then). The
/// latter only when serving a readiness event that did not report the peer
/// closing; otherwise the end of the stream could go unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    UntilWouldBlock,
    UntilShort,
}

/// Which instances an admin removal picks.
#[derive(Debug, Clone, Copy)]
enum Pick<'a> {
    /// lmremove's `feature user host display`.
    Names {
        user: &'a str,
        host: &'a str,
        display: &'a str,
    },
    /// lmremove -h: the numeric license handle.
    Ticket(u64),
}

/// What a loop starts with besides the shared state: its end of the journal
/// and the recovered lingering instances whose expiry it arms.
struct LoopStart {
    journal: Option<LoopJournal>,
    arm: Vec<(InstanceId, u64)>,
    /// Where STATUS requests go, and where their replies come back.
    status_jobs: crossbeam_channel::Sender<status_thread::Job>,
    status_done: crossbeam_channel::Receiver<status_thread::Done>,
}

/// One event loop: its sockets, and the context requests are served in.
struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: slab::Slab<Conn>,
    ctx: Ctx,
    /// Idle-timeout checks (`timeout.rs`).
    idle: IdleTimers,
    next_serial: u64,
    /// Connections with replies waiting for the journal.
    gated: Vec<usize>,
    /// The journal's durable batch when `gated` was last served.
    seen_durable: u64,
    /// Accepting is failing for want of resources (see [`ACCEPT_RETRY_MS`]).
    accept_stalled: Option<AcceptStall>,
    /// STATUS replies built off the loop, for parked connections.
    status_done: crossbeam_channel::Receiver<status_thread::Done>,
    /// Connections with more to write than one slice (`write_more`).
    writers: Vec<usize>,
}

/// An episode of `accept` failing for want of resources.
#[derive(Debug, Clone, Copy)]
struct AcceptStall {
    since_ms: u64,
    /// When the loop tries again.
    retry_at: u64,
    /// Failed attempts so far.
    attempts: u64,
}

/// Everything a request needs besides its connection.
struct Ctx {
    index: usize,
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    engine_gen: u64,
    lingers: Lingers,
    log: LogHandle,
    /// Options-file settings for `engine`.
    opts: Arc<ServerOptions>,
    /// Deadlines of this loop's queued checkouts.
    wait_deadlines: WaitDeadlines,
    /// Releases of one expiry round (a buffer kept across rounds).
    expired: Vec<Release>,
    /// Where sockets are read into before their bytes join `rbuf`.
    read_buf: Vec<u8>,
    /// This loop's end of the journal (`None` when durability is off).
    journal: Option<LoopJournal>,
    /// Rate limit of the debug log's lines about failed admin attempts.
    admin_failures: FailureLog,
    /// Where STATUS requests are built (`status_thread.rs`).
    status_jobs: crossbeam_channel::Sender<status_thread::Job>,
}

impl Loop {
    fn new(
        index: usize,
        poll: Poll,
        listener: TcpListener,
        shared: Arc<Shared>,
        engine: Arc<Engine>,
        opts: Arc<ServerOptions>,
        start: LoopStart,
    ) -> Loop {
        let mut lingers = Lingers::with_capacity(SystemClock.now_ms(), start.arm.len());
        for (id, at) in start.arm {
            lingers.arm(id, at);
        }
        Loop {
            poll,
            listener,
            conns: slab::Slab::new(),
            idle: IdleTimers::default(),
            next_serial: 0,
            ctx: Ctx {
                index,
                log: shared.log.clone(),
                engine_gen: shared.engine_gen.load(Ordering::SeqCst),
                shared,
                engine,
                lingers,
                opts,
                wait_deadlines: WaitDeadlines::default(),
                expired: Vec::new(),
                read_buf: vec![0; READ_CHUNK],
                journal: start.journal,
                admin_failures: FailureLog::default(),
                status_jobs: start.status_jobs,
            },
            gated: Vec::new(),
            seen_durable: 0,
            accept_stalled: None,
            status_done: start.status_done,
            writers: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = SystemClock.now_ms();
            let next = [
                self.ctx.lingers.next_deadline(),
                self.idle.next_due(),
                self.ctx.wait_deadlines.next_due(),
                self.accept_stalled.map(|s| s.retry_at),
            ]
            .into_iter()
            .flatten()
            .min();
            let wait = if self.writers.is_empty() {
                next.map_or(MAX_POLL_WAIT, |d| {
                    Duration::from_millis(d.saturating_sub(now)).min(MAX_POLL_WAIT)
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
            if self.ctx.shared.shutdown.load(Ordering::SeqCst) {
                // Replies waiting for the journal go out before closing.
                if let Some(j) = self.ctx.journal.as_mut() {
                    j.wait_durable(SHUTDOWN_JOURNAL_WAIT);
                }
                self.close_all();
                return;
            }
            if self.ctx.shared.pause.load(Ordering::SeqCst) {
                self.wait_out_reread();
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
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
            if self
                .accept_stalled
                .is_some_and(|s| s.retry_at <= SystemClock.now_ms())
            {
                self.accept();
            }
            self.deliver_status();
            for key in std::mem::take(&mut self.writers) {
                if let Some(c) = self.conns.get_mut(key) {
                    c.write_listed = false;
                    self.on_conn_event(key, Reads::UntilWouldBlock);
                }
            }
            self.ctx.expire(SystemClock.now_ms());
            self.check_idle(SystemClock.now_ms());
            self.serve_queue(SystemClock.now_ms());
            // One batch of journal records per round (group commit).
            // The journal wakes this loop when a batch becomes durable;
            // checked every round, so a coalesced wake-up loses nothing.
            // Before `send`: what those connections pipelined joins this batch.
            if let Some(durable) = self.ctx.journal.as_ref().map(LoopJournal::durable) {
                if durable != self.seen_durable {
                    self.seen_durable = durable;
                    self.serve_gated();
                }
            }
            if let Some(j) = self.ctx.journal.as_mut() {
                j.send();
            }
        }
    }

    /// Hands STATUS replies built off the loop to their connections, which
    /// then go on with what they pipelined meanwhile.
    fn deliver_status(&mut self) {
        while let Ok(done) = self.status_done.try_recv() {
            let Some(conn) = self
                .conns
                .get_mut(done.conn)
                .filter(|c| c.serial == done.serial && c.status_pending)
            else {
                continue; // closed meanwhile
            };
            conn.status_pending = false;
            if conn.wbuf.is_empty() {
                // Usually so (the connection was parked): take the reply's
                // buffer as it is, no copy of tens of MB on the loop.
                conn.wbuf = BytesMut::from(bytes::Bytes::from(done.line));
            } else {
                conn.wbuf.extend_from_slice(&done.line);
            }
            self.on_conn_event(done.conn, Reads::UntilWouldBlock);
        }
    }

    /// Serves the queue heads that sit on this loop, and denies this loop's
    /// waiters whose wait ran out (see `queue.rs`).
    fn serve_queue(&mut self, now: u64) {
        while let Some((seq, feature)) = self.ctx.wait_deadlines.pop_due(now) {
            if let Some(w) = self.ctx.shared.queues.remove(&feature, seq) {
                self.answer_waiter(&w.seat, &w.line, now, true);
            }
        }
        loop {
            let mut progress = false;
            for (feature, w) in self.ctx.shared.queues.to_try_on(self.ctx.index, now) {
                if self.answer_waiter(&w.seat, &w.line, now, false) {
                    self.ctx.shared.queues.remove(&feature, w.seq);
                    progress = true;
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Tries a waiter's checkout again (`give_up`: its wait ran out, so a
    /// full pool now denies). True if it was answered; then its connection
    /// goes on with the lines it sent meanwhile.
    fn answer_waiter(&mut self, seat: &Seat, line: &[u8], now: u64, give_up: bool) -> bool {
        let Some(conn) = self
            .conns
            .get_mut(seat.conn)
            .filter(|c| c.serial == seat.serial)
        else {
            return true; // gone: nothing to answer
        };
        let answered = match protocol::parse(line) {
            Ok(Command::Checkout(c)) => self.ctx.checkout(conn, &c, line, now, Some(give_up)),
            _ => true,
        };
        if answered {
            conn.waiting = None;
            // Like any readiness: the lines sent meanwhile, a reread they
            // did, a reply that waits for the journal, or the end.
            self.on_conn_event(seat.conn, Reads::UntilWouldBlock);
        }
        answered
    }

    /// Checks in the licenses of connections idle past their features'
    /// TIMEOUT (see `timeout.rs`).
    fn check_idle(&mut self, now: u64) {
        while let Some((key, serial)) = self.idle.pop_due(now) {
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.serial == serial) else {
                continue; // closed since
            };
            if conn.draining.is_some() {
                // Drained for DRAIN_MS: enough.
                let conn = self.conns.remove(key);
                self.close(conn);
                continue;
            }
            let Some(shortest) = self.ctx.opts.shortest_timeout_ms() else {
                continue;
            };
            let idle = now.saturating_sub(conn.last_seen);
            let ctx = &mut self.ctx;
            conn.held
                .retain(|_, h| match ctx.opts.timeout_ms(h.feature) {
                    Some(t) if idle >= t => {
                        let r = if ctx.grouped(h.feature) {
                            // A use ends as on a close: promises stay.
                            ctx.end_uses(h, now, |e| e.release_if_unlingered(h.id))
                        } else {
                            ctx.engine.release(h.id)
                        };
                        if let Some(r) = r {
                            ctx.released(&r, Action::Inactive, now);
                        }
                        false
                    }
                    _ => true,
                });
            let due = conn.last_seen.saturating_add(shortest).max(now + 1000);
            self.idle.arm(due, key, serial);
        }
    }

    /// Arms an idle check for every connection (a reread turned TIMEOUTs on).
    fn arm_idle_all(&mut self, now: u64) {
        if let Some(shortest) = self.ctx.opts.shortest_timeout_ms() {
            for (key, c) in self.conns.iter() {
                self.idle
                    .arm(now.max(c.last_seen) + shortest, key, c.serial);
            }
        }
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

    /// Accepts until `WouldBlock`. When the process or the system is out
    /// of file descriptors (or the kernel of memory), the connections stay
    /// in the backlog and the loop tries again every [`ACCEPT_RETRY_MS`]:
    /// logged once when the episode starts and once when it ends.
    fn accept(&mut self) {
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
                    let now = SystemClock.now_ms();
                    self.next_serial += 1;
                    if let Some(t) = self.ctx.opts.shortest_timeout_ms() {
                        self.idle.arm(now + t, entry.key(), self.next_serial);
                    }
                    let key = entry.key();
                    let gate = self
                        .ctx
                        .journal
                        .as_ref()
                        .map_or_else(ReplyGate::default, LoopJournal::gate);
                    entry.insert(Conn::new(stream, peer, now, self.next_serial, key, gate));
                    self.ctx.shared.connections.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_recovered();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_resources(&e) => {
                    let now = SystemClock.now_ms();
                    let stall = self.accept_stalled.get_or_insert_with(|| {
                        let text = format!(
                            "accept failed: {e}; connections wait in the backlog, retrying every {ACCEPT_RETRY_MS} ms"
                        );
                        eprintln!("tallyd: {text}");
                        self.ctx.log.line(now, "lmgrd", text);
                        AcceptStall {
                            since_ms: now,
                            retry_at: now,
                            attempts: 0,
                        }
                    });
                    stall.attempts += 1;
                    stall.retry_at = now + ACCEPT_RETRY_MS;
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
            let now = SystemClock.now_ms();
            let text = format!(
                "accepting connections again after {} ms ({} failed attempts)",
                now.saturating_sub(s.since_ms),
                s.attempts
            );
            eprintln!("tallyd: {text}");
            self.ctx.log.line(now, "lmgrd", text);
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
        let mut keep = self.ctx.serve(conn, reads);
        if self.ctx.engine_gen != self.ctx.shared.engine_gen.load(Ordering::SeqCst) {
            // This loop just did a REREAD: move every connection's ids
            // across, then finish what this connection had pipelined.
            self.adopt_engine();
            if keep {
                if let Some(conn) = self.conns.get_mut(key) {
                    keep = self.ctx.serve(conn, Reads::UntilWouldBlock);
                }
            }
        }
        if !keep {
            let conn = self.conns.remove(key);
            self.close(conn);
        } else if let Some(conn) = self.conns.get_mut(key) {
            if conn.draining.is_some() && !conn.drain_armed {
                // Just started draining: end it within DRAIN_MS.
                conn.drain_armed = true;
                self.idle
                    .arm(SystemClock.now_ms() + DRAIN_MS, key, conn.serial);
            }
            if conn.gate.is_waiting() && !conn.gated {
                conn.gated = true;
                self.gated.push(key);
            }
            if conn.write_more && !conn.write_listed {
                conn.write_listed = true;
                self.writers.push(key);
            }
        }
    }

    fn close(&mut self, mut conn: Conn) {
        let now = SystemClock.now_ms();
        if let Some((feature, seq)) = conn.waiting.take() {
            self.ctx.shared.queues.remove(&feature, seq);
        }
        for (_, h) in conn.held.drain() {
            if let Some(r) = self
                .ctx
                .end_uses(&h, now, |e| e.release_if_unlingered(h.id))
            {
                self.ctx.released(&r, Action::In, now);
            }
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.ctx.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }

    fn close_all(&mut self) {
        for mut conn in self.conns.drain() {
            let _ = flush(&mut conn);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.ctx.shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
        let _ = self.poll.registry().deregister(&mut self.listener);
    }

    /// Another loop is rereading: park at its barrier, then adopt the new
    /// engine. Our timers point at old ids; the rereader re-armed every
    /// lingering instance in its own wheel, so ours are dropped.
    fn wait_out_reread(&mut self) {
        let barrier = lock(&self.ctx.shared.pause_barrier).clone();
        if let Some(b) = barrier {
            b.wait(); // the rereader now moves the instances
            b.wait(); // done
            self.ctx.lingers = Lingers::new(SystemClock.now_ms());
            self.adopt_engine();
        }
    }

    /// Switches to the shared engine and maps every connection's held ids.
    fn adopt_engine(&mut self) {
        let remap = lock(&self.ctx.shared.remap).clone();
        for (_, c) in self.conns.iter_mut() {
            let mut moved: HashMap<InstanceId, Held> = HashMap::with_capacity(c.held.len());
            for (old, h) in c.held.drain() {
                let Some(&(id, feature)) = remap.get(&old) else {
                    continue;
                };
                // A new DUP_GROUP may have merged two instances into one.
                moved
                    .entry(id)
                    .and_modify(|m| m.handles.extend(h.handles.iter().cloned()))
                    .or_insert(Held { id, feature, ..h });
            }
            c.held = moved;
        }
        self.ctx.engine = self.ctx.shared.current_engine();
        self.ctx.opts = lock(&self.ctx.shared.server_options).clone();
        self.ctx.engine_gen = self.ctx.shared.engine_gen.load(Ordering::SeqCst);
        self.arm_idle_all(SystemClock.now_ms());
    }
}

impl Ctx {
    /// Whether `feature` shares instances between uses (DUP_GROUP).
    fn grouped(&self, feature: FeatureId) -> bool {
        !self.engine.dup_group(feature).is_by_handle()
    }

    /// Ends all of a connection's uses of `h`, and if no other use of it
    /// goes on (always, unless DUP_GROUP shares it), checks it in with
    /// `checkin`.
    fn end_uses(
        &mut self,
        h: &Held,
        now: u64,
        checkin: impl FnOnce(&Engine) -> Option<Release>,
    ) -> Option<Release> {
        let (engine, lingers) = (&self.engine, &mut self.lingers);
        if engine.dup_group(h.feature).is_by_handle() {
            return checkin(engine);
        }
        let ended = self.shared.uses.end(
            h.id,
            h.uses(),
            h.bound(),
            now,
            || checkin(engine),
            |d| {
                // No bound use left: the latest promise holds it.
                if engine.reschedule(h.id, d) {
                    if let Some(d) = d {
                        lingers.arm(h.id, d);
                    }
                }
            },
        );
        match ended {
            Ended::Kept => None,
            Ended::Last(r) => r,
        }
    }

    /// Queues a license event unless the options file's NOLOG drops it.
    fn log_license(&self, now: u64, action: Action, f: FeatureRef, holder: HolderBuf, count: u32) {
        let nolog = &self.opts.nolog;
        let dropped = match action {
            Action::Out | Action::OutOverdraft => nolog.checkout,
            Action::In | Action::Inactive => nolog.checkin,
            Action::Denied(_) => nolog.denied,
            _ => false,
        };
        if !dropped {
            self.log.license(now, action, f, holder, count);
        }
        if matches!(action, Action::In | Action::Inactive) && !self.shared.queues.is_empty() {
            self.shared.wake_all(); // a waiter's loop may serve it now
        }
    }

    fn expire(&mut self, now: u64) {
        // Collected first (the wheel is borrowed while it fires), into a
        // buffer kept across rounds: no allocation in the steady state.
        let mut due = std::mem::take(&mut self.expired);
        self.lingers.expire(&self.engine, now, |r| due.push(r));
        for r in due.drain(..) {
            self.released(&r, Action::In, now);
        }
        self.expired = due;
    }

    /// What every check-in does once the engine has released `r` (CHECKIN,
    /// REMOVE, linger expiry, idle timeout, disconnect): journal it if it
    /// lingered, log it as `action` unless NOLOG says not to, and let the
    /// queue's loops look. Returns the journal batch a reply must wait for.
    fn released(&mut self, r: &Release, action: Action, now: u64) -> Option<u64> {
        if self.grouped(r.feature) {
            self.shared.uses.forget(r.id);
        }
        // A DUP_GROUP instance may be in the journal (a promise) while its
        // engine deadline is none (a bound use): its release always goes in.
        let grouped = self.grouped(r.feature);
        let batch = match (self.journal.as_mut(), r.deadline) {
            (Some(j), Some(_)) => j.release(r.id.to_bits(), now),
            (Some(j), None) if grouped => j.release(r.id.to_bits(), now),
            _ => None,
        };
        self.log_license(now, action, FeatureRef::Id(r.feature), r.holder, r.count);
        batch
    }

    /// Reads, answers and writes as far as the socket allows. Returns false
    /// when the connection is done.
    fn serve(&mut self, conn: &mut Conn, reads: Reads) -> bool {
        // The loop's read buffer, lent out for the call (a fresh 16 KiB
        // array here would be zeroed on every call).
        let mut chunk = std::mem::take(&mut self.read_buf);
        if chunk.is_empty() {
            chunk = vec![0; READ_CHUNK]; // lent out already (a nested serve)
        }
        let keep = self.serve_with(conn, reads, &mut chunk);
        self.read_buf = chunk;
        keep
    }

    fn serve_with(&mut self, conn: &mut Conn, reads: Reads, chunk: &mut [u8]) -> bool {
        if let Some(left) = conn.draining.as_mut() {
            return drain(&mut conn.stream, left, chunk);
        }
        let mut peer_closed = false;
        let mut drained = false;
        loop {
            // Answer what is buffered before reading more (backpressure). A
            // queued connection is still read, to see it close.
            if !self.process_lines(conn) && (!conn.parked() || conn.rbuf.len() > WAITING_READ_LIMIT)
            {
                break;
            }
            if drained {
                break;
            }
            match conn.stream.read(chunk) {
                Ok(0) => {
                    peer_closed = true;
                    break;
                }
                Ok(n) => {
                    conn.rbuf.extend_from_slice(&chunk[..n]);
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
        if !flush(conn) {
            return false;
        }
        if !conn.closing && conn.wbuf.len() < WRITE_HIGH_WATER {
            // Writing made room: answer what is still buffered.
            self.process_lines(conn);
            if !flush(conn) {
                return false;
            }
        }
        if conn.closing {
            if !conn.wbuf.is_empty() {
                return true;
            }
            // The last reply is out: FIN, then read and drop what the
            // client may still be sending, so its reply is not lost to a
            // reset. The loop then arms the drain's end.
            if conn.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return false;
            }
            conn.rbuf = BytesMut::new();
            let mut left = DRAIN_LIMIT_BYTES;
            let more = drain(&mut conn.stream, &mut left, chunk);
            conn.draining = Some(left);
            return more;
        }
        // A peer that half-closed still gets its replies, a STATUS being
        // built included.
        !(peer_closed && conn.wbuf.is_empty() && !conn.status_pending)
    }

    /// Answers every complete line in `rbuf`. Returns false to stop reading
    /// (the connection is closing, its replies are backed up, or a reread
    /// happened and the connection's ids must be mapped first).
    fn process_lines(&mut self, conn: &mut Conn) -> bool {
        loop {
            if conn.closing || conn.wbuf.len() >= WRITE_HIGH_WATER || conn.parked() {
                return false;
            }
            if self.engine_gen != self.shared.engine_gen.load(Ordering::Relaxed) {
                return false;
            }
            let Some(nl) = conn.rbuf.iter().position(|&b| b == b'\n') else {
                if conn.rbuf.len() > MAX_LINE_BYTES {
                    let _ = Reply::LineTooLong.write_to(&mut conn.wbuf);
                    conn.closing = true;
                    return false;
                }
                return true;
            };
            let line = conn.rbuf.split_to(nl + 1);
            self.answer(conn, &line[..nl]);
        }
    }

    fn answer(&mut self, conn: &mut Conn, line: &[u8]) {
        // Test hook, debug builds only: lets a black-box test make a loop
        // panic (see `exit_after_loop_panic`).
        #[cfg(debug_assertions)]
        if line == b"DEBUG_PANIC" && std::env::var_os("TALLYD_DEBUG_PANIC").is_some() {
            panic!("DEBUG_PANIC requested by {}", conn.peer);
        }
        let now = SystemClock.now_ms();
        conn.last_seen = now;
        let cmd = match protocol::parse(line) {
            Ok(c) => c,
            Err(e) => {
                let _ = Reply::Malformed(&e).write_to(&mut conn.wbuf);
                if e.code == ErrCode::LineTooLong {
                    conn.closing = true;
                }
                return;
            }
        };
        if cmd.is_admin() && !is_local_admin(conn.peer.ip()) && !conn.authed {
            let verb = line.split(|&b| b == b' ').next().unwrap_or_default();
            self.admin_failure(
                now,
                format_args!(
                    "{} refused: {} is not authenticated (AUTH <token> first)",
                    String::from_utf8_lossy(verb),
                    conn.peer
                ),
            );
            let _ = Reply::Forbidden {
                peer: conn.peer.ip(),
            }
            .write_to(&mut conn.wbuf);
            return;
        }
        match cmd {
            Command::Checkout(c) => {
                self.checkout(conn, &c, line, now, None);
            }
            Command::Checkin {
                feature,
                handle,
                holder,
            } => self.checkin(conn, feature, handle, holder, now),
            Command::Status(q) => self.status(conn, &q, now),
            Command::Ping => {
                let _ = Reply::Pong.write_to(&mut conn.wbuf);
            }
            Command::Quit => {
                let _ = Reply::Bye.write_to(&mut conn.wbuf);
                conn.closing = true;
            }
            Command::Auth(token) => self.auth(conn, token, now),
            Command::Remove {
                feature,
                user,
                host,
                display,
            } => self.remove(
                conn,
                feature,
                Pick::Names {
                    user,
                    host,
                    display,
                },
                now,
            ),
            Command::RemoveHandle { feature, ticket } => {
                self.remove(conn, feature, Pick::Ticket(ticket), now)
            }
            Command::Reread => self.reread(conn, now),
            Command::ReopenLog => {
                self.log.reopen();
                self.log.flush();
                let _ = Reply::LogReopened.write_to(&mut conn.wbuf);
            }
            Command::Down => {
                let _ = Reply::Down.write_to(&mut conn.wbuf);
                self.log.line(
                    now,
                    "lmgrd",
                    format!("SERVER shutdown requested by {}", conn.peer),
                );
                conn.closing = true;
                let _ = flush(conn);
                self.shared.shutdown.store(true, Ordering::SeqCst);
                self.shared.wake_all();
            }
        }
    }

    /// AUTH: a match grants admin rights to the connection; a failure
    /// takes them away (even after an earlier success), is logged, and the
    /// connection is closed after [`MAX_AUTH_FAILURES`] of them.
    fn auth(&mut self, conn: &mut Conn, token: &str, now: u64) {
        let shared = self.shared.clone();
        let matched = shared
            .admin_token
            .as_ref()
            .is_some_and(|t| crate::auth::token_matches(t.as_bytes(), token.as_bytes()));
        if matched {
            conn.authed = true;
            let _ = Reply::Authed.write_to(&mut conn.wbuf);
            return;
        }
        conn.authed = false;
        conn.auth_failures += 1;
        let n = conn.auth_failures;
        let closing = self.refused(
            now,
            n,
            MAX_AUTH_FAILURES,
            format_args!("AUTH failed from {} (attempt {n}", conn.peer),
        );
        let _ = Reply::AuthFailed {
            token_configured: shared.admin_token.is_some(),
            closing_after: closing.then_some(n),
        }
        .write_to(&mut conn.wbuf);
        if closing {
            conn.closing = true;
        }
    }

    /// Counts a NOT_HOLDER refusal; logs it (rate-limited) and closes the
    /// connection at [`MAX_NOT_HOLDER`] (after the reply already written).
    fn not_holder(&mut self, conn: &mut Conn, now: u64, verb: &str, feature: &str, handle: &str) {
        conn.not_holder += 1;
        let n = conn.not_holder;
        let closing = self.refused(
            now,
            n,
            MAX_NOT_HOLDER,
            format_args!(
                "{verb} {feature} {handle} from {} refused: not the holder (refusal {n}",
                conn.peer
            ),
        );
        if closing {
            conn.closing = true;
        }
    }

    /// Logs the `n`-th refusal on a connection (`what` up to "(attempt n"),
    /// rate-limited; true when `n` reaches `max` and the connection closes.
    fn refused(&mut self, now: u64, n: u32, max: u32, what: std::fmt::Arguments<'_>) -> bool {
        let closing = n >= max;
        let end = if closing {
            " on this connection; closing it)"
        } else {
            " on this connection)"
        };
        self.admin_failure(now, format_args!("{what}{end}"));
        closing
    }

    /// Writes a failed admin attempt to the debug log, within its rate limit.
    fn admin_failure(&mut self, now: u64, what: std::fmt::Arguments<'_>) {
        match self.admin_failures.failure(now) {
            Logged::Write { suppressed } => {
                if suppressed > 0 {
                    self.log.line(
                        now,
                        "lmgrd",
                        format!("{suppressed} more failed admin attempts were not logged"),
                    );
                }
                self.log.line(now, "lmgrd", what.to_string());
            }
            Logged::Suppressed => {}
        }
    }

    /// Answers a CHECKOUT, or queues it (`wait=`). `from_queue`: the
    /// request is a queued one tried again (`Some(true)` when its wait ran
    /// out). Returns false if it is (still) waiting, unanswered.
    fn checkout(
        &mut self,
        conn: &mut Conn,
        c: &protocol::Checkout<'_>,
        line: &[u8],
        now: u64,
        from_queue: Option<bool>,
    ) -> bool {
        // Nobody overtakes the queue for its first HOL_LIMIT_MS, except a
        // renewal (it takes nothing) and a request the engine denies
        // anyway (more than any pool has).
        let behind = from_queue.is_none()
            && !self.shared.queues.is_empty()
            && self.shared.queues.blocks(c.feature, now)
            && !self.engine.never_grants(c.feature, c.count)
            && self
                .engine
                .find(c.feature, c.user, c.host, c.display, c.handle)
                .is_none();
        if behind && c.wait_ms > 0 {
            self.enqueue(conn, c, line, now);
            return false;
        }
        // The options file's LINGER is the default for checkouts without one.
        let linger_ms = match c.linger_ms {
            0 => self.opts.default_linger_ms(&self.engine, c.feature),
            l => l,
        };
        let req = Request {
            feature: c.feature,
            user: c.user,
            host: c.host,
            display: c.display,
            handle: c.handle,
            version: c.version,
            count: c.count,
            linger_ms,
        };
        let holder = HolderBuf::new(c.user, c.host, c.display, c.handle);
        let grouped = self
            .engine
            .feature_id(c.feature)
            .is_some_and(|f| self.grouped(f));
        // Under DUP_GROUP: the deadlines the uses leave (`uses.rs`).
        let mut kept = None;
        let result = if behind {
            Err(tally_core::engine::Reason::AllInUse.into())
        } else if grouped {
            // A new use is counted with the checkout, under the uses' lock
            // (`uses.rs`): unless this connection's use by this handle is
            // being renewed. A deadline promised to another use is kept.
            let held = &conn.held;
            let engine = &self.engine;
            let (mut result, k) = self.shared.uses.begin(
                c.handle,
                now,
                || engine.checkout_from(&req, Some(conn.peer.ip()), now),
                |r: &Result<tally_core::engine::Grant, tally_core::engine::Denial>| {
                    let g = r.as_ref().ok()?;
                    let id = g.id?;
                    Some(Granted {
                        id,
                        was: held.get(&id).and_then(|h| h.use_of(c.handle)),
                        deadline: g.deadline,
                        previous: g.previous_deadline,
                    })
                },
                |id, d| engine.reschedule(id, d),
            );
            if let (Some(k), Ok(g)) = (k, result.as_mut()) {
                // A timer for the engine's deadline now (the reply still
                // says what this use was promised).
                g.schedule = k.engine;
            }
            kept = k;
            result
        } else {
            self.engine.checkout_from(&req, Some(conn.peer.ip()), now)
        };
        if let Err(d) = &result {
            let full = matches!(
                d.reason,
                tally_core::engine::Reason::AllInUse
                    | tally_core::engine::Reason::ReservedForOthers { .. }
            );
            match from_queue {
                None if full && c.wait_ms > 0 => {
                    self.enqueue(conn, c, line, now);
                    return false;
                }
                Some(false) if full => return false, // keep waiting
                _ => {}
            }
        }
        match result {
            Ok(g) => {
                self.lingers.track(&g);
                if g.id.is_some() {
                    remember_identity(conn, c.user, c.host);
                }
                let out = if g.overdraft {
                    Action::OutOverdraft
                } else {
                    Action::Out
                };
                self.log_license(now, out, FeatureRef::Id(g.feature), holder, g.count);
                match g.kind {
                    // Startup: out and at once in. Renewal: lmgrd logs the
                    // duplicate instance's check-in (seed 002), which keeps
                    // OUT and IN lines balanced for log parsers.
                    GrantKind::Startup | GrantKind::Renewed => self.log_license(
                        now,
                        Action::In,
                        FeatureRef::Id(g.feature),
                        holder,
                        g.count,
                    ),
                    GrantKind::New | GrantKind::Uncounted => {}
                }
                if let Some(id) = g.id {
                    match conn.held.get_mut(&id) {
                        // A further use of a shared instance (counted above),
                        // or the same use renewed (bound, or lingering now).
                        Some(h) if grouped => {
                            let bound = g.deadline.is_none();
                            match h.handles.iter_mut().find(|(u, _)| &**u == c.handle) {
                                Some(u) => u.1 = bound,
                                None => h.handles.push((c.handle.into(), bound)),
                            }
                        }
                        Some(_) => {} // the same use, renewed
                        None if linger_ms == 0 || grouped => {
                            self.prune_held(conn);
                            let handles = if grouped {
                                vec![(c.handle.into(), g.deadline.is_none())]
                            } else {
                                Vec::new()
                            };
                            conn.held.insert(
                                id,
                                Held {
                                    id,
                                    feature: g.feature,
                                    handles,
                                },
                            );
                        }
                        None => {}
                    }
                }
                let reply_at = conn.wbuf.len();
                let _ = Reply::Granted {
                    feature: c.feature,
                    handle: c.handle,
                    deadline: g.deadline.unwrap_or(0),
                }
                .write_to(&mut conn.wbuf);
                // Durability: a lingering grant or any renewal is journaled;
                // its reply waits for the record in sync mode.
                // Under DUP_GROUP the journal keeps the latest promise
                // (after a restart no bound use is left).
                let journal_deadline = kept.map_or(g.deadline, |k| k.promised);
                if let (Some(j), Some(id)) = (self.journal.as_mut(), g.id) {
                    if journal_deadline.is_some() || g.kind == GrantKind::Renewed {
                        let batch = j.out(&journal::Instance {
                            id: id.to_bits(),
                            at_ms: now,
                            linger_ms,
                            deadline_ms: journal_deadline,
                            count: g.count,
                            version: c.version.unwrap_or(0),
                            renewed: g.kind == GrantKind::Renewed,
                            feature: c.feature,
                            user: c.user,
                            host: c.host,
                            display: c.display,
                            handle: c.handle,
                        });
                        conn.gate.hold(reply_at, batch);
                    }
                }
            }
            Err(d) => {
                let f = match self.engine.feature_id(c.feature) {
                    Some(id) => FeatureRef::Id(id),
                    None => FeatureRef::Name(c.feature.into()),
                };
                self.log_license(now, Action::Denied(d.reason), f, holder, c.count);
                if d.reason == tally_core::engine::Reason::NotHolder {
                    self.not_holder(conn, now, "CHECKOUT", c.feature, c.handle);
                }
                let _ = Reply::Denied {
                    feature: c.feature,
                    handle: c.handle,
                    reason: d.reason,
                }
                .write_to(&mut conn.wbuf);
            }
        }
        true
    }

    /// Queues a CHECKOUT with `wait=`: the connection answers nothing more
    /// until it is served or its wait runs out.
    fn enqueue(&mut self, conn: &mut Conn, c: &protocol::Checkout<'_>, line: &[u8], now: u64) {
        let deadline = now.saturating_add(c.wait_ms);
        let seat = Seat {
            loop_index: self.index,
            conn: conn.key,
            serial: conn.serial,
        };
        let entry = QueuedStatus {
            feature: c.feature.to_string(),
            user: c.user.to_string(),
            host: c.host.to_string(),
            display: c.display.to_string(),
            handle: c.handle.to_string(),
            count: c.count,
            since_ms: now,
            deadline_ms: deadline,
        };
        let seq = self.shared.queues.push(seat, line, entry);
        self.wait_deadlines.arm(deadline, seq, c.feature);
        conn.waiting = Some((c.feature.to_string(), seq));
        if !self.opts.nolog.queued {
            let f = match self.engine.feature_id(c.feature) {
                Some(id) => FeatureRef::Id(id),
                None => FeatureRef::Name(c.feature.into()),
            };
            let holder = HolderBuf::new(c.user, c.host, c.display, c.handle);
            self.log.license(now, Action::Queued, f, holder, c.count);
        }
    }

    /// Drops entries for instances no longer held, when the list has grown.
    fn prune_held(&self, conn: &mut Conn) {
        if conn.held.len() >= conn.prune_at {
            let engine = &self.engine;
            conn.held.retain(|_, h| engine.is_live(h.id));
            conn.prune_at = (conn.held.len() * 2).max(64);
        }
    }

    /// CHECKIN. Only the holder checks a license in: the connection that
    /// checked it out (a connection-bound or DUP_GROUP use it lists), one
    /// that has checked out as the holder's user@host, or one that names
    /// them (`user=` `host=`, a client that reconnected), or an admin (a
    /// local peer, or one after AUTH: it could REMOVE the license anyway).
    /// Anyone else is `ERR NOT_HOLDER`, and the license stays out.
    fn checkin(
        &mut self,
        conn: &mut Conn,
        feature: &str,
        handle: &str,
        named: Option<(&str, &str)>,
        now: u64,
    ) {
        // Under DUP_GROUP the handle names one of this connection's uses of
        // a shared instance: that use ends, and the license goes back with
        // the last use (`uses.rs`). A live instance, not one this
        // connection still lists after it expired or was removed.
        let feature_id = self.engine.feature_id(feature);
        let fid = feature_id.filter(|&f| self.grouped(f));
        let engine = &self.engine;
        let use_of = fid.and_then(|fid| {
            conn.held
                .iter_mut()
                .find(|(_, h)| h.feature == fid && h.has_handle(handle) && engine.is_live(h.id))
                .map(|(&id, h)| {
                    let bound = h.use_of(handle).unwrap_or(false);
                    h.handles.retain(|(u, _)| &**u != handle);
                    (id, bound, !h.handles.is_empty())
                })
        });
        if let Some((id, bound, more_here)) = use_of {
            if !more_here {
                conn.held.remove(&id);
            }
            let lingers = &mut self.lingers;
            let mut promised = None;
            let ended = self.shared.uses.check_in(
                id,
                handle,
                bound,
                now,
                || engine.release(id),
                |d| {
                    // Another use's promise, or none while a bound use
                    // lives, replaces this handle's.
                    if engine.reschedule(id, d) {
                        if let Some(d) = d {
                            lingers.arm(id, d);
                        }
                    }
                },
                |p| promised = Some(p),
            );
            if let (Some(p), Some(j)) = (promised, self.journal.as_mut()) {
                // The latest promise left, for a restart. A renewal record
                // of an id the journal has only moves its deadline (the
                // journal has it whenever a promise was made).
                let batch = j.out(&journal::Instance {
                    id: id.to_bits(),
                    at_ms: now,
                    linger_ms: 0,
                    deadline_ms: p,
                    count: 0,
                    version: 0,
                    renewed: true,
                    feature,
                    user: "",
                    host: "",
                    display: "",
                    handle,
                });
                conn.gate.hold(conn.wbuf.len(), batch);
            }
            match ended {
                Ended::Kept => {
                    let _ = Reply::CheckedIn { feature, handle }.write_to(&mut conn.wbuf);
                }
                Ended::Last(Some(r)) => {
                    let batch = self.released(&r, Action::In, now);
                    conn.gate.hold(conn.wbuf.len(), batch);
                    let _ = Reply::CheckedIn { feature, handle }.write_to(&mut conn.wbuf);
                }
                Ended::Last(None) => {
                    let _ = Reply::NotHeld { feature, handle }.write_to(&mut conn.wbuf);
                }
            }
            return;
        }
        if fid.is_some() {
            // A DUP_GROUP instance is keyed by names, not by the handle: a
            // use is checked in by the connection that has it, never by
            // naming a handle or a holder from elsewhere.
            return self.not_checked_in(conn, feature, handle, true, CheckinError::NotHeld);
        }
        // By handle; then whether the requester is the holder (the cheap
        // answers first: the holder's names are read only when needed).
        let Some(fid) = feature_id else {
            return self.not_checked_in(conn, feature, handle, false, CheckinError::NoSuchFeature);
        };
        let Some(id) = self.engine.find_by_handle(fid, handle) else {
            return self.not_checked_in(conn, feature, handle, false, CheckinError::NotHeld);
        };
        // An admin may check in anything (it could REMOVE it anyway).
        let is_holder = conn.authed
            || is_local_admin(conn.peer.ip())
            || conn.held.contains_key(&id)
            || self.engine.holder(id).is_some_and(|holder| {
                conn.checked_out_as(&holder)
                    || named.is_some_and(|(u, h)| holder.is_user_host(u, h))
            });
        if !is_holder {
            let _ = Reply::NotHolder { feature, handle }.write_to(&mut conn.wbuf);
            self.not_holder(conn, now, "CHECKIN", feature, handle);
            return;
        }
        match self.engine.release(id) {
            Some(r) => {
                conn.held.remove(&r.id);
                let batch = self.released(&r, Action::In, now);
                conn.gate.hold(conn.wbuf.len(), batch);
                let _ = Reply::CheckedIn { feature, handle }.write_to(&mut conn.wbuf);
            }
            None => self.not_checked_in(conn, feature, handle, false, CheckinError::NotHeld),
        }
    }

    /// The reply to a CHECKIN that found nothing to check in.
    fn not_checked_in(
        &self,
        conn: &mut Conn,
        feature: &str,
        handle: &str,
        grouped: bool,
        e: CheckinError,
    ) {
        match e {
            CheckinError::NoSuchFeature => {
                let _ = Reply::NoSuchFeature { feature }.write_to(&mut conn.wbuf);
            }
            // A startup or uncounted grant holds nothing and was already
            // checked in (seed 002 logs its IN at once): the client checks
            // in what it checked out, so that is OK.
            CheckinError::NotHeld
                if self
                    .engine
                    .feature_id(feature)
                    .is_some_and(|f| !self.engine.holds_instances(f)) =>
            {
                let _ = Reply::CheckedIn { feature, handle }.write_to(&mut conn.wbuf);
            }
            // Under DUP_GROUP the instance is keyed by the names, not the
            // handle: a use is checked in on its own connection.
            CheckinError::NotHeld if grouped => {
                let dup = self
                    .engine
                    .feature_id(feature)
                    .map(|f| self.engine.dup_group(f).to_string())
                    .unwrap_or_default();
                let _ = Reply::NoUseHere {
                    feature,
                    handle,
                    dup_group: &dup,
                }
                .write_to(&mut conn.wbuf);
            }
            CheckinError::NotHeld => {
                let _ = Reply::NotHeld { feature, handle }.write_to(&mut conn.wbuf);
            }
        }
    }

    /// STATUS: handed to the status thread with what it needs; the
    /// connection is parked until the reply is back (`status_thread.rs`).
    fn status(&mut self, conn: &mut Conn, q: &protocol::StatusQuery<'_>, now: u64) {
        let facts = lock(&self.shared.facts).clone();
        let info = ServerInfo {
            name: "tallyd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            host: facts.host,
            port: facts.port,
            license_file: facts.license_file,
            vendors: facts.vendors,
            started_ms: facts.started_ms,
            now_ms: now,
            connections: self.shared.connections.load(Ordering::Relaxed),
            log_dropped: self.log.dropped(),
        };
        let job = status_thread::Job {
            loop_index: self.index,
            conn: conn.key,
            serial: conn.serial,
            engine: self.engine.clone(),
            info,
            queue: self.shared.queues.snapshot(),
            query: q.into(),
            hide_handles: !(conn.authed || is_local_admin(conn.peer.ip())),
        };
        match self.status_jobs.send(job) {
            Ok(()) => conn.status_pending = true,
            // The thread is gone: build it here rather than not at all.
            Err(e) => conn
                .wbuf
                .extend_from_slice(&status_thread::build(e.into_inner())),
        }
    }

    /// REMOVE / REMOVE_HANDLE: checks in the feature's instances `pick`
    /// selects, logging each as lmremove does.
    fn remove(&mut self, conn: &mut Conn, feature: &str, pick: Pick<'_>, now: u64) {
        let Some(fid) = self.engine.feature_id(feature) else {
            let _ = Reply::NoSuchFeature { feature }.write_to(&mut conn.wbuf);
            return;
        };
        let mut removed = 0;
        for f in self
            .engine
            .snapshot(now)
            .features
            .iter()
            .filter(|f| f.name == feature)
        {
            for h in f.pools.iter().flat_map(|p| &p.holders) {
                let selected = match pick {
                    Pick::Names {
                        user,
                        host,
                        display,
                    } => {
                        h.user == user
                            && h.host == host
                            && crate::protocol::remove_display_matches(&h.display, &h.host, display)
                    }
                    Pick::Ticket(t) => h.ticket == t,
                };
                if !selected {
                    continue;
                }
                if let Some(r) = self.engine.release(h.id) {
                    removed += 1;
                    let f = FeatureRef::Id(fid);
                    self.log
                        .license(now, Action::Removing, f, r.holder, r.count);
                    let batch = self.released(&r, Action::In, now);
                    conn.gate.hold(conn.wbuf.len(), batch);
                }
            }
        }
        match pick {
            Pick::Ticket(t) if removed == 0 => {
                let _ = Reply::NoSuchTicket { feature, ticket: t }.write_to(&mut conn.wbuf);
            }
            _ => {
                let _ = Reply::Removed(removed).write_to(&mut conn.wbuf);
            }
        }
    }

    /// REREAD: parse the file, park every other loop at a barrier, move the
    /// live instances into a new engine (with their deadlines, names and
    /// start times), publish it, and let the loops go on. Nothing held is
    /// dropped or counted twice; features the new file lacks keep their
    /// holders in retired pools (`reread.rs`). The options file is reread
    /// and compiled with it.
    fn reread(&mut self, conn: &mut Conn, now: u64) {
        let shared = self.shared.clone();
        let Ok(_only_one) = shared.rereading.try_lock() else {
            let _ = Reply::RereadBusy.write_to(&mut conn.wbuf);
            return;
        };
        // As at start: a file with nothing to serve changes nothing.
        let mut licenses = match load_licenses(shared.license_path.as_deref()) {
            Ok(set) => set,
            Err(e) => {
                let _ = Reply::RereadFailed(&e.to_string()).write_to(&mut conn.wbuf);
                return;
            }
        };
        // Features the new file drops keep their holders until they drain.
        let retired =
            crate::reread::keep_removed_features(&mut licenses, &self.engine.snapshot(now));
        // The options file is reread with the license file; if it cannot
        // be read, nothing changes.
        let options_path = crate::options::locate(
            shared.policy.explicit.as_deref(),
            &licenses,
            shared.license_path.as_deref(),
        );
        let options = match crate::options::load(options_path.as_deref()) {
            Ok(o) => o,
            Err(e) => {
                let _ = Reply::RereadFailed(&e.to_string()).write_to(&mut conn.wbuf);
                return;
            }
        };
        let new_engine = Arc::new(crate::options::build_engine(
            &licenses,
            options.as_ref(),
            EngineConfig {
                seed: shared.seed,
                ..EngineConfig::default()
            },
        ));
        let new_opts = Arc::new(ServerOptions::new(
            &new_engine,
            options.as_ref(),
            shared.policy.min_timeout_secs,
        ));
        let barrier = Arc::new(Barrier::new(shared.workers));
        *lock(&shared.pause_barrier) = Some(barrier.clone());
        shared.pause.store(true, Ordering::SeqCst);
        shared.wake_all();
        barrier.wait(); // every other loop is parked

        // Ids of the old engine must never reach the new one: start a new
        // wheel and arm it for every instance moved across.
        self.lingers = Lingers::new(now);
        let mut remap = HashMap::new();
        let mut removed = 0usize;
        for f in self.engine.snapshot(now).features {
            for p in f.pools {
                for h in p.holders {
                    let r = Restore {
                        feature: &f.name,
                        user: &h.user,
                        host: &h.host,
                        display: &h.display,
                        handle: &h.handle,
                        count: h.count,
                        version: p.version.scaled(),
                        since_ms: h.since_ms,
                        linger_ms: h.linger_ms,
                        deadline_ms: h.deadline_ms,
                        identity: Some(h.identity),
                    };
                    match new_engine.restore(&r) {
                        Ok(id) => {
                            if let Some(d) = h.deadline_ms {
                                self.lingers.arm(id, d);
                            }
                            let fid = new_engine.feature_id(&f.name);
                            remap.insert(h.id, (id, fid.unwrap_or(FeatureId(0))));
                        }
                        Err(why) => {
                            removed += 1;
                            self.log.line(
                                now,
                                &f.vendor,
                                format!(
                                    "REMOVING {}@{}:{} from {} (after reread: {})",
                                    h.user,
                                    h.host,
                                    h.display,
                                    f.name,
                                    why.text()
                                ),
                            );
                        }
                    }
                }
            }
        }
        let kept = remap.len();
        if let Some(j) = self.journal.as_mut() {
            j.remap(
                remap
                    .iter()
                    .map(|(old, (new, _))| (old.to_bits(), new.to_bits()))
                    .collect(),
            );
        }
        let engine = &new_engine;
        shared
            .uses
            .remap(&remap, |f| !engine.dup_group(f).is_by_handle());
        *lock(&shared.remap) = Arc::new(remap);
        *lock(&shared.engine) = new_engine.clone();
        *lock(&shared.server_options) = new_opts.clone();
        self.opts = new_opts;
        {
            let mut facts = lock(&shared.facts);
            facts.license_file = licenses.source.clone();
            facts.vendors = vendors_of(&licenses);
        }
        self.log.switch_engine(new_engine.clone());
        self.engine = new_engine;
        shared.engine_gen.fetch_add(1, Ordering::SeqCst);
        shared.pause.store(false, Ordering::SeqCst);
        let (pools, diags) = (licenses.pools.len() - retired, licenses.diagnostics.len());
        self.log.line(
            now,
            "lmgrd",
            format!(
                "Reread license file {}: {}, {} rejected, {} kept, {removed} removed",
                licenses.source,
                crate::debuglog::counted(pools as u64, "pool", "pools"),
                crate::debuglog::counted(diags as u64, "line", "lines"),
                crate::debuglog::counted(kept as u64, "checkout", "checkouts"),
            ),
        );
        for d in &licenses.diagnostics {
            self.log.line(
                now,
                "lmgrd",
                format!("License file error, line skipped: {d}"),
            );
        }
        if let (Some(path), Some(o)) = (&options_path, &options) {
            log_options(&self.log, now, path, o, &self.engine);
        }
        // Let the others go on. `engine_gen` stays behind the shared one
        // until this loop has mapped its connections' ids (see
        // `Loop::on_conn_event`).
        barrier.wait();
        let _ = Reply::Reread {
            pools,
            diagnostics: diags,
        }
        .write_to(&mut conn.wbuf);
    }
}

/// Remembers that `conn` checked out as `user`@`host` (see `checkin`);
/// a comparison per checkout, an allocation only for a new name.
fn remember_identity(conn: &mut Conn, user: &str, host: &str) {
    let known = conn
        .identities
        .iter()
        .any(|(u, h)| &**u == user && &**h == host);
    if !known && conn.identities.len() < MAX_IDENTITIES {
        conn.identities.push((user.into(), host.into()));
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

/// Writes `wbuf` until it is empty or the socket would block. False if the
/// connection broke.
fn flush(conn: &mut Conn) -> bool {
    let mut budget = WRITE_SLICE_BYTES;
    conn.write_more = false;
    loop {
        // Replies waiting for the journal (sync mode) stay behind.
        let limit = conn.gate.writable(conn.wbuf.len()).min(budget);
        if limit == 0 {
            // Out of budget with bytes the journal allows: the loop comes
            // back to it next turn.
            conn.write_more = budget == 0 && conn.gate.writable(conn.wbuf.len()) > 0;
            break;
        }
        match conn.stream.write(&conn.wbuf[..limit]) {
            Ok(0) => return false,
            Ok(n) => {
                conn.wbuf.advance(n);
                conn.gate.advance(n);
                budget -= n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Reads the license file at `path` (the embedded demo license when
/// `None`), for start and REREAD alike. Malformed lines are left in the
/// set's diagnostics for the caller to report; a file with no FEATURE or
/// INCREMENT line left is an error: there would be nothing to serve.
pub fn load_licenses(path: Option<&std::path::Path>) -> Result<LicenseSet, String> {
    let set = match path {
        Some(p) => crate::source::read_license(p).map_err(|e| e.to_string())?,
        None => tally_core::license::parse_str(crate::demo::DEMO_SOURCE, crate::demo::DEMO_LICENSE),
    };
    if set.pools.is_empty() {
        return Err(format!(
            "{}: no FEATURE or INCREMENT line loaded: nothing to serve",
            set.source
        ));
    }
    Ok(set)
}

/// Whether an `accept` error means the process or the system ran out of
/// descriptors or memory (the backlog keeps the connections meanwhile).
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Exit status of a tallyd whose event loop panicked.
pub const EXIT_LOOP_PANIC: i32 = 70;

/// A loop panicked: its connections are gone and its lingering licenses
/// would never expire, and a reread would wait for it forever. Rather than
/// run on half alive, say so and exit, so that the supervisor restarts
/// tallyd and the journal brings every acknowledged checkout back
/// (docs/operations.md).
fn exit_after_loop_panic(index: usize, log: &LogHandle, panic: &(dyn std::any::Any + Send)) -> ! {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    let text = format!(
        "event loop {index} panicked ({what}); exiting with status {EXIT_LOOP_PANIC} for a restart from the journal"
    );
    eprintln!("tallyd: {text}");
    log.line(SystemClock.now_ms(), "lmgrd", text);
    // Give the log writer a moment to write the line; nothing else waits.
    std::thread::sleep(Duration::from_millis(200));
    std::process::exit(EXIT_LOOP_PANIC);
}

/// Peers that may make admin requests without AUTH: exactly 127.0.0.1 and
/// ::1 (and ::ffff:127.0.0.1). Other 127.x sources, such as a port-forwarding
/// proxy, count as remote.
fn is_local_admin(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}
