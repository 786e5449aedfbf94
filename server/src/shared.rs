//! What every event loop of one server shares.
//!
//! Read-mostly: on the request path a loop touches only its own copy of
//! the current [`Generation`] (the engine: on the checkout path no lock
//! but, for a DUP_GROUP feature, the lock of the instance's bucket, where
//! its use counts live) and the queue's emptiness (one relaxed load; while
//! somebody waits, a bucket's count of waiters too: `queue.rs`), and
//! writes only its own counters ([`Shared::metrics`]). A REREAD
//! publishes a new generation ([`Shared::generation`]) while every loop is
//! parked by [`Shared::pause`]; each loop checks the pause once per wake
//! and the generation's version before each request line (one load each),
//! and `net/reread.rs` runs the rest.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};

use mio::Waker;
use tally_core::clock::Clock;
use tally_core::engine::Engine;
use tally_core::license::LicenseSet;
use tally_core::sync::{Pause, Published};

use crate::cmd::reread::Remap;
use crate::debuglog::LogHandle;
use crate::journal::Durability;
use crate::metrics::LoopCounters;
use crate::options::{PolicyConfig, ServerOptions};
use crate::queue::Queues;

/// Everything the loops read that a REREAD changes, as one value: a loop
/// never sees the engine of one generation with the options of another.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) engine: Arc<Engine>,
    /// Options-file settings compiled for `engine`.
    pub(crate) opts: Arc<ServerOptions>,
    /// The previous generation's instance ids -> (this one's, its feature
    /// here); empty for the first. Each loop maps its own connections'
    /// held ids and its own linger timers with it when it adopts this
    /// generation (loops adopt every generation in turn: see
    /// [`Pause::park`]).
    pub(crate) remap: Remap,
    /// What STATUS reports about the server.
    pub(crate) facts: Facts,
}

/// State every loop shares.
pub(crate) struct Shared {
    /// The current generation; each loop holds a `Reader` of it.
    pub(crate) generation: Published<Generation>,
    /// Parks every loop while a REREAD moves the held licenses across (and
    /// refuses a second REREAD meanwhile).
    pub(crate) pause: Pause,
    pub(crate) shutdown: AtomicBool,
    pub(crate) wakers: OnceLock<Vec<Arc<Waker>>>,
    pub(crate) connections: AtomicU64,
    pub(crate) log: LogHandle,
    /// Usage reporting is on: license events go to the log writer even
    /// where NOLOG keeps them out of the debug log.
    pub(crate) usage_events: bool,
    /// The usage history's file (REPORT reads it), if there is one.
    pub(crate) usage_db: Option<PathBuf>,
    pub(crate) license_path: Option<PathBuf>,
    /// `--vendor-key`: REREAD checks the lines' signatures with it.
    pub(crate) vendor_key: Option<tally_core::license::signature::VendorKey>,
    pub(crate) admin_token: Option<String>,
    pub(crate) seed: (u64, u64),
    pub(crate) policy: PolicyConfig,
    /// Queued checkouts (`queue.rs`).
    pub(crate) queues: Queues,
    /// Admission ids RECONCILE has recorded (`cmd/reconcile.rs`).
    pub(crate) reconciled: crate::cmd::reconcile::Seen,
    /// Where every loop reads the time (`Config::clock`).
    pub(crate) clock: Arc<dyn Clock>,
    /// Each loop's counters for `/metrics`, by loop index (`metrics/`):
    /// loop N writes only `metrics[N]`.
    pub(crate) metrics: Box<[LoopCounters]>,
    /// The journal's mode and place, for the status page.
    pub(crate) journal: JournalFacts,
    /// The uploader (`--upload-url`), set once it has started; unset when
    /// the upload is off. `UPLOAD` and `UPLOAD_STATUS` use it.
    pub(crate) upload: OnceLock<crate::upload::UploadHandle>,
}

/// What the status page and `/metrics` say of the journal.
#[derive(Debug)]
pub(crate) struct JournalFacts {
    /// `--durability`.
    pub(crate) mode: Durability,
    /// `--state-dir`.
    pub(crate) dir: PathBuf,
    /// The journal thread's figures, once it runs (never with
    /// `--durability off`).
    pub(crate) figures: OnceLock<Arc<crate::journal::JournalFigures>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("generation", &self.generation)
            .field("pause", &self.pause)
            .field("connections", &self.connections)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

/// What STATUS reports about the server itself.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) license_file: String,
    pub(crate) vendors: Vec<String>,
    pub(crate) started_ms: u64,
}

impl Shared {
    /// The server's part of a STATUS or REPORT reply at `now`: `facts` (of
    /// the generation the reply is built from) and the live figures.
    pub(crate) fn server_info(&self, facts: &Facts, now: u64) -> crate::status::ServerInfo {
        crate::status::ServerInfo {
            name: "tallyd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            host: facts.host.clone(),
            port: facts.port,
            license_file: facts.license_file.clone(),
            vendors: facts.vendors.clone(),
            started_ms: facts.started_ms,
            now_ms: now,
            connections: self.connections.load(std::sync::atomic::Ordering::Relaxed),
            log_dropped: self.log.dropped(),
        }
    }

    /// Wakes every loop (shutdown, a reread, a license back for a waiter).
    pub(crate) fn wake_all(&self) {
        if let Some(wakers) = self.wakers.get() {
            for w in wakers {
                let _ = w.wake();
            }
        }
    }

    /// The time now, from the server's clock.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// The vendor daemons a license set names (VENDOR lines, then pools').
pub(crate) fn vendors_of(set: &LicenseSet) -> Vec<String> {
    let mut v: Vec<String> = set.vendors.iter().map(|v| v.name.clone()).collect();
    for p in &set.pools {
        if !v.contains(&p.vendor) {
            v.push(p.vendor.clone());
        }
    }
    v
}
