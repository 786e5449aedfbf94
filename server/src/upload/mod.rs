//! `tallyd --upload-url`: the compliance report's daily HTTPS upload
//! (issue 15, seed 000), on its own thread (`tally-upload`).
//!
//! The thread never touches an event loop: it gets the report's bytes from
//! a [`ReportSource`] and publishes what it did in an [`UploadStatus`] that
//! the `UPLOAD_STATUS` request reads; `UPLOAD` asks it for an upload now
//! through a one-slot channel (a `try_send`: a loop never waits on it). A
//! dead, slow or hostile endpoint costs the thread its time only: every
//! request has a connect and a global timeout.
//!
//! - `wire.rs`: the protocol's messages (manifest JSON, seed 000's
//!   `<UploadResponse>`, chunk sizes).
//! - `transfer.rs`: one attempt over HTTPS (ureq on rustls), resuming.
//! - `backoff.rs`: the retry schedule (pure).
//! - `result.rs`: the result codes and seed 000's result line.
//! - `ulog.rs`: the uploader log.
//! - `pending.rs`: reports kept on disk until they are uploaded.
//! - `source.rs`: the report tallyd sends (the usage history's compliance
//!   report).
//! - `worker.rs`: the thread: first upload after a delay, then daily, on
//!   demand, retries.
//!
//! The protocol, the codes and the files are in docs/usage.md ("Upload").

mod backoff;
mod pending;
mod result;
mod source;
mod transfer;
mod ulog;
mod wire;
mod worker;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tally_core::clock::Clock;

pub use backoff::{Backoff, Jitter};
pub use pending::MAX_PENDING;
pub use result::{result_line, Code, Failure, UPLOAD_TYPE};
pub(crate) use source::source as usage_source;
pub use transfer::Timeouts;
pub use wire::{parse_upload_response, sha256_hex, Manifest, Period, UploadResponse};

/// The uploader log's file name in the debug log's directory.
pub const LOG_FILE_NAME: &str = "log_uploader.log";

/// The first upload's delay after start, by default.
pub const DEFAULT_FIRST_DELAY: Duration = Duration::from_secs(10 * 60);

/// The time between two scheduled uploads.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// Attempts per upload before it waits for the next day (or an `UPLOAD`).
pub const DEFAULT_ATTEMPTS: u32 = 8;

/// The UTC days a report covers by default: this one and the 29 before.
pub const DEFAULT_PERIOD_DAYS: u32 = 30;

/// How the uploader runs.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// The endpoint's base URL, `https://…` (no trailing `/`).
    pub url: String,
    /// A PEM file of the CA certificate(s) to trust for the endpoint
    /// *instead of* the bundled Mozilla roots (`--upload-ca`).
    pub ca: Option<PathBuf>,
    /// The first upload's delay after start.
    pub first_delay: Duration,
    /// The time between scheduled uploads (a day).
    pub every: Duration,
    /// Waits between the attempts of one upload.
    pub backoff: Backoff,
    /// Attempts per upload.
    pub attempts: u32,
    /// Request timeouts.
    pub timeouts: Timeouts,
    /// The uploader log's path.
    pub log: PathBuf,
    /// Where reports wait for their upload (`STATE_DIR/upload/pending`).
    pub pending_dir: PathBuf,
    /// The server's host name, for the manifest.
    pub server: String,
    /// The UTC days a report covers (ending today).
    pub period_days: u32,
}

/// Errors starting the uploader.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The URL is not `https://host[:port][/path]`.
    #[error("--upload-url {url}: {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("--upload-ca {}: {why}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The thread could not be started.
    #[error("cannot start the uploader thread: {0}")]
    Thread(#[source] io::Error),
}

impl UploadConfig {
    /// The defaults for `url`: first upload after
    /// [`DEFAULT_FIRST_DELAY`], then every [`DAY`], pending reports in
    /// `state_dir/upload/pending`, the log at `log`.
    pub fn new(url: &str, log: PathBuf, state_dir: &Path, server: String) -> UploadConfig {
        UploadConfig {
            url: url.trim_end_matches('/').to_string(),
            ca: None,
            first_delay: DEFAULT_FIRST_DELAY,
            every: DAY,
            backoff: Backoff::default(),
            attempts: DEFAULT_ATTEMPTS,
            timeouts: Timeouts::default(),
            log,
            pending_dir: state_dir.join("upload").join("pending"),
            server,
            period_days: DEFAULT_PERIOD_DAYS,
        }
    }
}

/// Checks that `url` is `https://host[:port][/path]` with no query or
/// fragment. Plain `http://` is refused, loopback included: the report
/// names users and hosts.
pub fn check_url(url: &str) -> Result<(), UploadError> {
    let bad = |why: &str| UploadError::Url {
        url: url.to_string(),
        why: why.to_string(),
    };
    let uri: ureq::http::Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => return Err(bad("plain http is refused: use https")),
        _ => return Err(bad("not an https:// URL")),
    }
    if uri.host().map_or(true, str::is_empty) {
        return Err(bad("no host"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("a query or fragment is not allowed"));
    }
    Ok(())
}

/// Where the report comes from: a function of the period, called on the
/// uploader thread once per scheduled or requested upload.
#[derive(Clone)]
pub struct ReportSource(Arc<BuildReport>);

/// The function behind a [`ReportSource`].
type BuildReport = dyn Fn(&Period) -> io::Result<Vec<u8>> + Send + Sync;

impl ReportSource {
    /// A source calling `f`.
    pub fn new(f: impl Fn(&Period) -> io::Result<Vec<u8>> + Send + Sync + 'static) -> Self {
        ReportSource(Arc::new(f))
    }

    /// A source that always gives `bytes` (tests).
    pub fn fixed(bytes: Vec<u8>) -> Self {
        ReportSource::new(move |_| Ok(bytes.clone()))
    }

    fn build(&self, period: &Period) -> io::Result<Vec<u8>> {
        (self.0)(period)
    }
}

impl std::fmt::Debug for ReportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportSource")
    }
}

/// One finished attempt, as `UPLOAD_STATUS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    /// The report tried.
    pub report_id: String,
    /// When the attempt started, Unix seconds.
    pub started: u64,
    /// When it finished, Unix seconds.
    pub finished: u64,
    /// Its result code.
    pub code: Code,
    /// Its result message (empty on success).
    pub msg: String,
}

/// What the uploader did and will do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadStatus {
    /// The endpoint.
    pub url: String,
    /// The uploader log's path.
    pub log: String,
    /// Whether an upload is under way.
    pub running: bool,
    /// Attempts finished since start.
    pub attempts: u64,
    /// The last finished attempt.
    pub last: Option<Attempt>,
    /// When an upload last succeeded, Unix seconds.
    pub last_success: Option<u64>,
    /// When the next attempt is due, Unix seconds (`None` while one runs).
    pub next: Option<u64>,
    /// Reports waiting in `upload/pending/`.
    pub pending: usize,
}

/// What [`UploadHandle::request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// An upload starts now (or the waiting attempt is brought forward).
    Started,
    /// An upload is already running or already asked for.
    AlreadyRunning,
    /// The uploader has stopped.
    Stopped,
}

/// Asks the uploader for an upload and reads its status; cheap to clone,
/// never blocks.
#[derive(Debug, Clone)]
pub struct UploadHandle {
    wake: Sender<()>,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<UploadStatus>>,
}

impl UploadHandle {
    /// Asks for an upload now.
    pub fn request(&self) -> Requested {
        if self.stop.load(Ordering::Acquire) {
            return Requested::Stopped;
        }
        if self.status().running {
            return Requested::AlreadyRunning;
        }
        match self.wake.try_send(()) {
            Ok(()) => Requested::Started,
            Err(TrySendError::Full(())) => Requested::AlreadyRunning,
            Err(TrySendError::Disconnected(())) => Requested::Stopped,
        }
    }

    /// The uploader's status now.
    pub fn status(&self) -> UploadStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The running uploader thread.
#[derive(Debug)]
pub struct Uploader {
    handle: UploadHandle,
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    /// Checks the URL, reads the CA file and starts the thread. The first
    /// upload is `config.first_delay` after now.
    pub fn start(
        config: UploadConfig,
        source: ReportSource,
        clock: Arc<dyn Clock>,
    ) -> Result<Uploader, UploadError> {
        check_url(&config.url)?;
        let roots = match &config.ca {
            Some(path) => worker::read_ca(path)?,
            None => ureq::tls::RootCerts::WebPki,
        };
        let (wake, woken): (Sender<()>, Receiver<()>) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(UploadStatus {
            url: config.url.clone(),
            log: config.log.display().to_string(),
            next: Some(clock.now_ms() / 1000 + config.first_delay.as_secs()),
            ..UploadStatus::default()
        }));
        let handle = UploadHandle {
            wake,
            stop: stop.clone(),
            status: status.clone(),
        };
        let inbox = worker::Inbox { woken, stop };
        let w = worker::Worker::new(
            config,
            roots,
            source,
            clock,
            Box::new(inbox),
            status,
            Jitter::random(),
        );
        let thread = std::thread::Builder::new()
            .name("tally-upload".into())
            .spawn(move || w.run())
            .map_err(UploadError::Thread)?;
        Ok(Uploader {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle for `UPLOAD` / `UPLOAD_STATUS`.
    pub fn handle(&self) -> UploadHandle {
        self.handle.clone()
    }

    /// Asks the thread to stop (between requests: one under way ends at
    /// its timeout at the latest) and does not wait for it.
    pub fn stop(&self) {
        self.handle.stop.store(true, Ordering::Release);
        let _ = self.handle.wake.try_send(());
    }

    /// Stops the thread and waits until it has.
    pub fn join(mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
