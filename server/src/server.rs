//! tallyd: boot, start, wait, shutdown, and the startup log lines.
//!
//! [`Server::start`] builds the engine, binds the listener, recovers the
//! journal, and starts the debug log, the status thread and one event loop
//! per worker (`net/`); each loop answers requests through the command
//! layer (`cmd/`). [`Server::wait`] returns once the loops stopped (DOWN,
//! or a [`ShutdownHandle`]) and the journal and log are written out.
//!
//! The data path of one request, socket to table and back:
//! `net/conn.rs` (read, split lines) → `cmd/mod.rs` (parse, dispatch) →
//! `cmd/checkout.rs` (or another command) → the engine → the reply and
//! the effects the command left (`cmd::Effects`), carried out in
//! `net/mod.rs`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use tally_core::clock::{Clock, SystemClock};
use tally_core::engine::{Engine, EngineConfig, InstanceId};
use tally_core::license::signature::VendorKey;
use tally_core::license::LicenseSet;
use tally_core::options::OptionsFile;
use tally_core::sync::{Pause, Published};

use crate::debuglog::{DebugLog, LogHandle, LogTarget};
use crate::http::{Extras, HttpThread};
use crate::journal::{self, Durability, Journal};
use crate::metrics::LoopCounters;
use crate::net::{self, LoopStart, LISTENER, WAKER};
use crate::options::{PolicyConfig, ServerOptions};
use crate::queue::Queues;
use crate::shared::{vendors_of, Facts, Generation, JournalFacts, Shared};
use crate::status_thread::StatusThread;
use crate::upload::{ReportSource, UploadConfig, UploadError, UploadHandle, Uploader};
use crate::usage::{self, UsageConfig};

pub use crate::net::{READ_TURN_BYTES, WRITE_HIGH_WATER};

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
    /// Where the server reads the time (the system clock by default).
    pub clock: ServerClock,
    /// The vendor's public key (`--vendor-key`): a REREAD refuses the
    /// lines whose tally signature does not verify, as the start did.
    pub vendor_key: Option<VendorKey>,
    /// Where to serve the HTTP side (`/`, `/metrics`, `/api/v1/`) (`--http`;
    /// `None`: not at all).
    pub http: Option<SocketAddr>,
    /// Where the status page's charts of daily peaks come from (`None`:
    /// the usage history in the state dir, if tallyd keeps one; else the
    /// page says there is none).
    pub usage_history: Option<crate::web::UsageHistory>,
    /// The compliance report's upload (`--upload-url`; `None`: off).
    pub upload: Option<UploadConfig>,
    /// Where the uploaded report comes from (`None`: the compliance report
    /// of the usage history, as REPORT builds it; tests give others).
    pub upload_source: Option<ReportSource>,
    /// The report log (`--report-log`; `None`: the options file's
    /// `REPORTLOG`, if any).
    pub report_log: Option<LogTarget>,
    /// Days of usage history kept (`--usage-retention-days`).
    pub usage_retention_days: u32,
}

/// The clock a server reads the time from: the system clock, or another
/// [`Clock`] (a test's manual one).
#[derive(Clone)]
pub struct ServerClock(pub Arc<dyn Clock>);

impl Default for ServerClock {
    /// The operating system's wall clock.
    fn default() -> ServerClock {
        ServerClock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for ServerClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ServerClock")
            .field(&self.0.now_ms())
            .finish()
    }
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
    /// The upload's URL or CA file is not usable (`--upload-url`,
    /// `--upload-ca`).
    #[error("{0}")]
    Upload(#[from] UploadError),
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
    /// The HTTP side (`Config::http`).
    http: Option<HttpThread>,
    /// The report uploader (`Config::upload`).
    upload: Option<Uploader>,
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

impl Server {
    /// Binds, starts the log writer and the loops. Returns once listening.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        let clock = config.clock.0.clone();
        let now = clock.now_ms();
        let seed = random_seed();
        let options = config.policy.loaded.as_ref().map(|(_, o)| o);
        // Durability: the journal is read before the engine is built, so the
        // engine has room for what it restores (below, before any connection
        // is accepted).
        let read =
            journal::boot::read(&config.state_dir, config.durability, config.salvage_journal)?;
        let engine_config = EngineConfig {
            seed,
            ..EngineConfig::default()
        };
        let engine = Arc::new(crate::options::build_engine(
            &config.licenses,
            options,
            read.as_ref()
                .map_or(engine_config, |r| r.config(engine_config)),
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
        // Before the first accept: grown later, the table stalls an accept
        // for an RCU grace period at each doubling (`net/accept.rs`).
        net::reserve_descriptors(&std_listener);
        net::widen_backlog(&std_listener).map_err(io_err("widen the listen backlog"))?;
        let usage = usage_config(&config);
        let log =
            DebugLog::start_with_usage(&config.log, engine.clone(), clock.clone(), usage.clone())
                .map_err(io_err("start the debug log"))?;
        let handle = log.handle();
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            generation: Published::new(Generation {
                engine: engine.clone(),
                opts: server_options,
                remap: HashMap::new(),
                facts: Facts {
                    host: config.host_name.clone(),
                    port: local_addr.port(),
                    license_file: config.licenses.source.clone(),
                    vendors: vendors_of(&config.licenses),
                    started_ms: now,
                },
            }),
            pause: Pause::new(workers),
            metrics: (0..workers).map(|_| LoopCounters::default()).collect(),
            shutdown: AtomicBool::new(false),
            wakers: OnceLock::new(),
            connections: AtomicU64::new(0),
            log: handle.clone(),
            usage_events: usage.is_on(),
            usage_db: usage.db.clone(),
            license_path: config.license_path.clone(),
            vendor_key: config.vendor_key,
            admin_token: config.admin_token.clone(),
            seed,
            policy: config.policy.clone(),
            queues: Queues::new(workers),
            reconciled: Default::default(),
            upload: OnceLock::new(),
            clock,
            journal: JournalFacts {
                mode: config.durability,
                dir: config.state_dir.clone(),
                figures: OnceLock::new(),
            },
        });
        log_startup(&handle, &config, local_addr, &engine, now);
        usage_lines(&usage, |text| handle.line(now, "lmgrd", text));
        if let Some((path, o)) = &config.policy.loaded {
            options_lines(path, o, &engine, |text| handle.line(now, "lmgrd", text));
        }
        // Durability: recover before any connection is accepted.
        let booted = match read {
            Some(r) => r.restore_into(&engine, &handle, now),
            None => journal::boot::Booted::default(),
        };
        shared.reconciled.load(booted.reconciled);
        // Each loop arms its share of the restored deadlines. Sized up front:
        // grown push by push, millions of them cost seconds of reallocation.
        let share = booted.arm.len().div_ceil(workers);
        let mut arm: Vec<Vec<(InstanceId, u64)>> =
            (0..workers).map(|_| Vec::with_capacity(share)).collect();
        for (n, a) in booted.arm.iter().enumerate() {
            arm[n % workers].push(*a);
        }
        drop(booted.arm);

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
            Some(p) => Some(p.start(
                engine.clone(),
                wakers.clone(),
                handle.clone(),
                shared.clock.clone(),
            )?),
            None => None,
        };
        if let Some(j) = &journal {
            let _ = shared.journal.figures.set(j.figures());
        }
        let (status, status_inboxes) =
            StatusThread::start(wakers.clone()).map_err(io_err("start the status thread"))?;
        let _ = shared.wakers.set(wakers);
        // Recovered and listening: the log gets its first lines now.
        log.serve().map_err(io_err("start the debug log"))?;
        // Off the loops: its own thread, reading what the loops publish.
        let http = match config.http {
            Some(addr) => Some(
                HttpThread::start(
                    addr,
                    shared.clone(),
                    Extras {
                        history: config.usage_history.clone().or_else(|| {
                            let db = usage.db.clone()?;
                            Some(usage::history::page_history(db, shared.clock.clone()))
                        }),
                    },
                )
                .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        // Its own thread too: it reads the report through its source, never
        // a loop; the loops reach it only through `Shared::upload`.
        let upload = match config.upload.clone() {
            Some(u) => {
                let source = config
                    .upload_source
                    .clone()
                    .unwrap_or_else(|| crate::upload::usage_source(shared.clone()));
                let uploader = Uploader::start(u, source, shared.clock.clone())?;
                let _ = shared.upload.set(uploader.handle());
                Some(uploader)
            }
            None => None,
        };
        let mut threads = Vec::with_capacity(workers);
        for (((i, (poll, listener)), arm), status_done) in
            loops.into_iter().enumerate().zip(arm).zip(status_inboxes)
        {
            let status_jobs = status.sender();
            let shared = shared.clone();
            let lj = journal.as_ref().map(|j| j.for_loop(i));
            let t = std::thread::Builder::new()
                .name(format!("tally-loop-{i}"))
                .spawn(move || {
                    let log = shared.log.clone();
                    let clock = shared.clock.clone();
                    let run = std::panic::AssertUnwindSafe(move || {
                        net::run_loop(
                            i,
                            poll,
                            listener,
                            shared,
                            LoopStart {
                                journal: lj,
                                arm,
                                status_jobs,
                                status_done,
                            },
                        )
                    });
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        exit_after_loop_panic(i, &log, clock.now_ms(), panic.as_ref());
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
            http,
            upload,
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

    /// The address the HTTP side is served on (`Config::http`), if it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpThread::addr)
    }

    /// The uploader's handle (`Config::upload`), if the upload is on.
    pub fn upload_handle(&self) -> Option<UploadHandle> {
        self.upload.as_ref().map(Uploader::handle)
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
        if let Some(mut h) = self.http.take() {
            h.stop();
        }
        // Not waited for: a request under way ends at its timeout, and a
        // report not uploaded stays in upload/pending/ for the next start.
        if let Some(u) = self.upload.take() {
            u.stop();
        }
        // Every loop has handed over its records: write, sync, snapshot.
        if let Some(j) = self.journal.take() {
            j.shutdown();
        }
        let now = self.shared.now();
        let vendors = self.shared.generation.load().1.facts.vendors.clone();
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
    // The configured clock's day (as every other line's time), local time.
    let date = chrono::DateTime::from_timestamp_millis(now as i64)
        .unwrap_or_default()
        .with_timezone(&chrono::Local)
        .format("%-m/%-d/%Y");
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
    for w in &config.licenses.warnings {
        log.line(now, "lmgrd", format!("License file warning: {w}"));
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

/// What the options file did, one debug-log line each (for `lmgrd`): its
/// path, skipped lines, rules the engine could not apply, and what tally
/// does not do yet. At start and after a REREAD.
pub(crate) fn options_lines(
    path: &Path,
    o: &OptionsFile,
    engine: &Engine,
    mut line: impl FnMut(String),
) {
    line(format!(
        "Options file: {} ({}, {} skipped)",
        path.display(),
        crate::debuglog::counted(o.rules.len() as u64, "rule", "rules"),
        crate::debuglog::counted(o.diagnostics.len() as u64, "line", "lines")
    ));
    for d in &o.diagnostics {
        line(format!("Options file error, line skipped: {d}"));
    }
    for w in engine.policy_warnings() {
        line(format!("Options file warning: {w}"));
    }
    if let Some(r) = &o.report_log {
        line(format!(
            "REPORTLOG {}{} (read at start; --report-log wins)",
            if r.append { "+" } else { "" },
            r.path
        ));
    }
}

/// What usage reporting does: the report log of `--report-log`, else of
/// the options file's `REPORTLOG`; the history in the state dir when the
/// journal uses one (`--durability` sync or async), none with
/// `--durability off`.
fn usage_config(config: &Config) -> UsageConfig {
    let report_log = config.report_log.clone().or_else(|| {
        let o = config.policy.loaded.as_ref().map(|(_, o)| o)?;
        o.report_log.as_ref().map(|r| LogTarget::File {
            path: PathBuf::from(&r.path),
            append: r.append,
        })
    });
    UsageConfig {
        report_log,
        db: (config.durability != Durability::Off)
            .then(|| config.state_dir.join(usage::db::DB_FILE)),
        retention_days: config.usage_retention_days,
    }
}

/// The debug-log lines saying where usage reporting writes.
fn usage_lines(u: &UsageConfig, mut line: impl FnMut(String)) {
    if let Some(LogTarget::File { path, append }) = &u.report_log {
        line(format!(
            "Report log: {} ({})",
            path.display(),
            if *append {
                "appended to"
            } else {
                "truncated at start"
            }
        ));
    }
    // --durability off: no state dir, no history (and no new line).
    if let Some(db) = &u.db {
        line(format!(
            "Usage history: {} (kept {})",
            db.display(),
            crate::debuglog::counted(u.retention_days, "day", "days")
        ));
    }
}

/// Reads the license file at `path` (the embedded demo license when
/// `None`), for start and REREAD alike. Malformed lines are left in the
/// set's diagnostics for the caller to report, and so are, with a
/// `vendor_key` (`--vendor-key`), the lines whose tally signature is
/// missing or does not verify; a file with no FEATURE or INCREMENT line
/// left is an error: there would be nothing to serve.
pub fn load_licenses(
    path: Option<&std::path::Path>,
    vendor_key: Option<&VendorKey>,
) -> Result<LicenseSet, String> {
    let set = match (path, vendor_key) {
        (Some(p), None) => crate::source::read_license(p).map_err(|e| e.to_string())?,
        (Some(p), Some(k)) => {
            crate::source::read_license_verified(p, k).map_err(|e| e.to_string())?
        }
        (None, None) => {
            tally_core::license::parse_str(crate::demo::DEMO_SOURCE, crate::demo::DEMO_LICENSE)
        }
        (None, Some(k)) => tally_core::license::signature::parse_str_verified(
            crate::demo::DEMO_SOURCE,
            crate::demo::DEMO_LICENSE,
            k,
        ),
    };
    if set.pools.is_empty() {
        return Err(format!(
            "{}: no FEATURE or INCREMENT line loaded: nothing to serve",
            set.source
        ));
    }
    Ok(set)
}

/// Exit status of a tallyd whose event loop panicked.
pub const EXIT_LOOP_PANIC: i32 = 70;

/// A loop panicked: its connections are gone and its lingering licenses
/// would never expire, and a reread would wait for it forever. Rather than
/// run on half alive, say so and exit, so that the supervisor restarts
/// tallyd and the journal brings every acknowledged checkout back
/// (docs/operations.md).
fn exit_after_loop_panic(
    index: usize,
    log: &LogHandle,
    now: u64,
    panic: &(dyn std::any::Any + Send),
) -> ! {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    let text = format!(
        "event loop {index} panicked ({what}); exiting with status {EXIT_LOOP_PANIC} for a restart from the journal"
    );
    eprintln!("tallyd: {text}");
    log.line(now, "lmgrd", text);
    // Give the log writer a moment to write the line; nothing else waits.
    std::thread::sleep(Duration::from_millis(200));
    std::process::exit(EXIT_LOOP_PANIC);
}
