//! The one place tally-core takes its atomics and thread hints from.
//!
//! Under `--cfg loom` every item is loom's model-checked twin; otherwise the
//! std item. The checkout table and anything else shared between threads
//! must use these re-exports (never `std::sync` directly), or loom cannot
//! see the accesses it has to permute. This follows sharded-slab's
//! `src/sync.rs`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Tells the scheduler (or loom) that this thread is waiting for another
/// thread to finish a short critical step.
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
