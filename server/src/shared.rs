//! What every event loop of one server shares.
//!
//! Read-mostly: on the request path a loop touches only the engine (its
//! own `Arc` of it) and the queue's emptiness (one relaxed load). The REREAD mechanism (a pause
//! flag, a barrier and the published engine, options and id map) lives here
//! too; `net/reread.rs` runs it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, OnceLock};

use mio::Waker;
use tally_core::clock::Clock;
use tally_core::engine::{Engine, FeatureId, InstanceId};
use tally_core::license::LicenseSet;

use crate::debuglog::LogHandle;
use crate::options::{PolicyConfig, ServerOptions};
use crate::queue::Queues;

/// State every loop shares.
pub(crate) struct Shared {
    pub(crate) engine: Mutex<Arc<Engine>>,
    /// Bumped when the engine is replaced; loops compare it once per wake.
    pub(crate) engine_gen: AtomicU64,
    pub(crate) shutdown: AtomicBool,
    /// A reread wants every loop to stop at the barrier.
    pub(crate) pause: AtomicBool,
    pub(crate) pause_barrier: Mutex<Option<Arc<Barrier>>>,
    /// Held by the loop doing a reread; a second REREAD meanwhile is refused.
    pub(crate) rereading: Mutex<()>,
    /// Old instance -> (new instance, new feature), published by a reread.
    pub(crate) remap: Mutex<Arc<HashMap<InstanceId, (InstanceId, FeatureId)>>>,
    pub(crate) wakers: OnceLock<Vec<Arc<Waker>>>,
    pub(crate) connections: AtomicU64,
    pub(crate) log: LogHandle,
    pub(crate) facts: Mutex<Facts>,
    pub(crate) license_path: Option<PathBuf>,
    pub(crate) admin_token: Option<String>,
    pub(crate) workers: usize,
    pub(crate) seed: (u64, u64),
    /// Options-file settings the loops apply; replaced with the engine.
    pub(crate) server_options: Mutex<Arc<ServerOptions>>,
    pub(crate) policy: PolicyConfig,
    /// Queued checkouts (`queue.rs`).
    pub(crate) queues: Queues,
    /// Where every loop reads the time (`Config::clock`).
    pub(crate) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("workers", &self.workers)
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
    pub(crate) fn current_engine(&self) -> Arc<Engine> {
        lock(&self.engine).clone()
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

/// Locks `m`, whatever a panicking holder left (the data stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
