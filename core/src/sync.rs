//! The one place tally-core takes its atomics and thread hints from.
//!
//! Under `--cfg loom` every item is loom's model-checked twin; otherwise the
//! std item. The checkout table and anything else shared between threads
//! must use these re-exports (never `std::sync` directly), or loom cannot
//! see the accesses it has to permute. This follows sharded-slab's
//! `src/sync.rs`. The one lock, [`Mutex`], guards the DUP_GROUP uses of a
//! bucket of the table (`engine/uses.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Locks `m`, whether or not a thread panicked holding it (what it guards
/// is left consistent at every step, so a poisoned lock is still usable).
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells the scheduler (or loom) that this thread is waiting for another
/// thread to finish a short critical step.
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Where a SeqCst read-modify-write is followed by SeqCst loads that must
/// not be reordered before it (a store-load, Dekker-style handshake): in a
/// real build, nothing, since SeqCst accesses are in one total order by
/// themselves (on x86 a locked instruction and plain loads, far cheaper
/// than MFENCE). loom models SeqCst *accesses* as AcqRel (a documented
/// limitation that makes it report impossible outcomes) but models SeqCst
/// *fences* exactly, so under loom this is `fence(SeqCst)`: the models
/// then check the protocol built on the handshake.
#[inline(always)]
pub(crate) fn seqcst_handshake() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}
