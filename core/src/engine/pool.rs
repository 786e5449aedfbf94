//! A pool: the licenses of one FEATURE/INCREMENT line, and its admission.
//!
//! Admission is one CAS loop on the pool's `in_use` counter that never lets
//! it pass `count + overdraft`. Read-modify-writes of one location are
//! totally ordered, so the limit holds whatever the memory ordering; the
//! counter publishes nothing else, hence `Relaxed`.
//!
//! No count overflows: the limit is `count + overdraft` saturated at
//! `u32::MAX` (the most one pool serves; `engine::unservable` names the
//! lines that ask for more), and `in_use` is 64 bits wide, so forcing in
//! restored instances beyond the limit (a REREAD that folds several pools
//! of up to `u32::MAX` each into one) cannot wrap it.

use crossbeam_utils::CachePadded;

use crate::clock::Millis;
use crate::license::{Expiry, PoolLine};
use crate::sync::{AtomicU64, Ordering};

/// What a pool can serve, fixed when the engine is built.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) line: PoolLine,
    pub(crate) feature: u32,
    /// Licenses in the file; 0 when uncounted.
    pub(crate) count: u32,
    /// `count + overdraft`, saturated at `u32::MAX`: the most that may be
    /// out at once.
    pub(crate) limit: u32,
    pub(crate) counted: bool,
    pub(crate) startup: bool,
    pub(crate) version: u64,
    /// First instant the pool serves (0 if no START).
    pub(crate) start_ms: Millis,
    /// First instant the pool no longer serves (`u64::MAX` if permanent).
    pub(crate) end_ms: Millis,
    /// Kept only for instances still out after a reread removed its line
    /// (keyword [`super::RETIRED_KEYWORD`]): serves nothing new.
    pub(crate) retired: bool,
    /// On a cache line of its own: every admission writes it, while the
    /// fields above are read by every checkout on every core.
    /// Licenses out: at most `limit` through [`Pool::reserve`], possibly
    /// more through [`Pool::force`] (never near `u64::MAX`: at most 2^32
    /// instances of at most 2^32 licenses each).
    in_use: CachePadded<AtomicU64>,
}

impl Pool {
    pub(crate) fn new(line: &PoolLine, feature: u32) -> Pool {
        let counted = line.count.is_some();
        let count = line.count.unwrap_or(0);
        Pool {
            line: line.clone(),
            feature,
            count,
            limit: count.saturating_add(line.overdraft),
            counted,
            startup: line.is_startup(),
            version: line.version.scaled(),
            start_ms: line.start.map_or(0, |d| d.start_ms()),
            end_ms: match line.expiry {
                Expiry::Permanent => u64::MAX,
                Expiry::On(d) => d.end_ms(),
            },
            retired: line.other.iter().any(|(k, _)| k == super::RETIRED_KEYWORD),
            in_use: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Takes `n` licenses if they fit under the limit; returns the new
    /// in-use count.
    pub(crate) fn reserve(&self, n: u32) -> Option<u64> {
        let mut cur = self.in_use.load(Ordering::Relaxed);
        loop {
            let next = cur
                .checked_add(u64::from(n))
                .filter(|&v| v <= u64::from(self.limit))?;
            match self
                .in_use
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(next),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes `n` licenses whatever the limit: for restoring instances that
    /// were already out (after a reread that shrank the pool, or a restart).
    /// The pool then refuses new checkouts until it drains below its limit.
    pub(crate) fn force(&self, n: u32) -> u64 {
        self.in_use.fetch_add(u64::from(n), Ordering::Relaxed) + u64::from(n)
    }

    /// Gives back `n` licenses taken by [`Pool::reserve`].
    pub(crate) fn unreserve(&self, n: u32) {
        let before = self.in_use.fetch_sub(u64::from(n), Ordering::Relaxed);
        debug_assert!(before >= u64::from(n), "pool count underflow");
    }

    pub(crate) fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    pub(crate) fn is_expired(&self, now: Millis) -> bool {
        now >= self.end_ms
    }

    pub(crate) fn is_started(&self, now: Millis) -> bool {
        now >= self.start_ms
    }
}
