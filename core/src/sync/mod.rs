//! Synchronisation for the front ends, and the one place tally-core takes
//! its atomics, locks and thread hints from.
//!
//! Public: [`Published`], a generation cell for what a REREAD swaps (the
//! engine and everything compiled with it, as one value), and [`Pause`], a
//! protocol that stops every event loop from touching the old generation
//! while the rereader moves the held licenses across — with a timeout
//! instead of a barrier, so a loop that stopped answering cannot hang it.
//!
//! Crate-private: the shims. Under `--cfg loom` every atomic, lock and
//! condition variable is loom's model-checked twin; otherwise the std item.
//! The checkout table and anything else shared between threads must use
//! these re-exports (never `std::sync` directly), or loom cannot see the
//! accesses it has to permute. This follows sharded-slab's `src/sync.rs`.
//! (`Arc` is always std's: what it points to moves between threads only
//! through a shimmed lock, which is what loom has to see.)

mod pause;
mod published;

pub use pause::{Parked, Pause, PauseError, PauseRequest, Paused};
pub use published::{Published, Reader};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every value behind a lock here is left
/// consistent at each point a panic can unwind from.
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
