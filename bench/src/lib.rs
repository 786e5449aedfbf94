//! tally-bench: what tally is measured against, and how.
//!
//! [`baseline`] holds the tables a team would write instead of tally's
//! lock-free one: a `Mutex<HashMap>` and a `DashMap`, doing the same work
//! (same 128-bit SipHash key, same inline holder copy, same count check), so
//! a bench compares the tables and their locking, nothing else.
//! [`Workload`] is the common interface the benches drive.
//!
//! The loopback suite (`tally-bench all`, run by `bench/run`): [`wire`]
//! speaks protocol v1 and RESP, [`driver`] and [`load`] generate closed-
//! and open-loop load, [`servers`] starts a private tallyd and redis-server,
//! [`suite`] runs the scenarios ([`status`]: the STATUS scenario's probes
//! and clients; [`scrape`]: the `/metrics` scraper of the scrape scenario; [`scale`]: ten million lingering licenses held, expiring and recovered), [`results`] writes, tabulates and compares the result
//! files.

#![forbid(unsafe_code)]
// missing_docs, missing_debug_implementations, unreachable_pub: [workspace.lints]

pub mod baseline;
pub mod driver;
pub mod html;
pub mod load;
pub mod results;
pub mod scale;
pub mod scrape;
pub mod servers;
pub mod status;
pub mod suite;
pub mod wire;

use tally_core::engine::{Engine, EngineConfig, Request};
use tally_core::license::parse_str;

/// A license table under test: checkout (or renew) and check-in by handle.
pub trait Workload: Sync {
    /// Name for reports.
    fn name(&self) -> &'static str;
    /// Checks out (or renews) feature `F` for `handle`; true if granted.
    fn checkout(&self, handle: &str, linger_ms: u64, now: u64) -> bool;
    /// Checks `handle`'s instance of `F` in; true if it was held.
    fn checkin(&self, handle: &str) -> bool;
}

/// The feature every bench uses.
pub const FEATURE: &str = "F";

/// A license file with one feature `F` of `count` licenses.
pub fn license_text(count: u32) -> String {
    format!("FEATURE {FEATURE} BENCH 1.0 permanent {count}\n")
}

/// tally's engine as a [`Workload`].
#[derive(Debug)]
pub struct TallyEngine(pub Engine);

impl TallyEngine {
    /// An engine serving `count` licenses of `F`.
    pub fn new(count: u32) -> TallyEngine {
        let set = parse_str("bench", &license_text(count));
        TallyEngine(Engine::new(&set, EngineConfig::default()))
    }
}

impl Workload for TallyEngine {
    fn name(&self) -> &'static str {
        "tally"
    }
    fn checkout(&self, handle: &str, linger_ms: u64, now: u64) -> bool {
        let mut r = Request::new(FEATURE, "user", "host", handle);
        r.linger_ms = linger_ms;
        self.0.checkout(&r, now).is_ok()
    }
    fn checkin(&self, handle: &str) -> bool {
        // The release (who returned it) is handed back, as the baselines
        // hand back the removed instance.
        self.0
            .checkin(FEATURE, "user", "host", "", handle)
            .map(std::hint::black_box)
            .is_ok()
    }
}

/// Handles `h0000000`.. as preformatted strings, so benches do not format
/// inside the timed loop.
pub fn handles(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("h{i:07}")).collect()
}
