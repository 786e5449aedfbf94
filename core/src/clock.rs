//! Time for the core: milliseconds since the Unix epoch, always passed in.
//!
//! Nothing else in tally-core reads the OS clock. The engine's methods take
//! `now` as an argument; front ends get it from a [`Clock`]. Tests use
//! [`ManualClock`] and move time by hand, so linger expiry is checked to the
//! millisecond without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = u64;

/// Milliseconds in one second.
pub const MS_PER_SEC: u64 = 1_000;

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now_ms(&self) -> Millis;

    /// Whether [`now_ms`](Clock::now_ms) is the operating system's wall
    /// clock (`CLOCK_REALTIME`), so that a server may wait for a deadline
    /// with an OS timer on that clock. `false` unless a clock says so.
    fn follows_system_clock(&self) -> bool {
        false
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0)
    }

    fn follows_system_clock(&self) -> bool {
        true
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Millis) -> Self {
        Self {
            now: AtomicU64::new(start),
        }
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::Relaxed);
    }

    /// Sets the clock to `at` (may move backwards; the engine tolerates it).
    pub fn set(&self, at: Millis) {
        self.now.store(at, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(250);
        assert_eq!(c.now_ms(), 1_250);
        c.set(10);
        assert_eq!(c.now_ms(), 10);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
