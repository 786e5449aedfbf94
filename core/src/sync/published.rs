//! A published generation: one value many threads read, replaced whole by
//! a writer, with a one-load check for readers.
//!
//! It is made for what a REREAD swaps in a server (the engine, the options
//! compiled for it, the id remap, the facts STATUS shows): each event loop
//! keeps a [`Reader`]. When each of these is a field of the one `T`, a
//! reader never sees the engine of one generation with the options of
//! another.
//!
//! # Protocol
//!
//! The cell holds a `Mutex<(version, Arc<T>)>` and, beside it, an
//! `AtomicU64` copy of the version.
//!
//! - [`Published::publish`] takes the lock, installs the new value with
//!   version `v + 1`, stores `v + 1` in the atomic *while still holding the
//!   lock*, and unlocks.
//! - [`Reader::refresh`] loads the atomic (one load: no lock, no
//!   read-modify-write). Equal to the version it holds: nothing to do.
//!   Different: it takes the lock and copies out the pair — the value
//!   *and the version stored with it*, never the version it loaded.
//!
//! **Guarantee**: a reader that loads version `v` from the atomic and then
//! refreshes holds a value at least as new as `v`'s, and the version it
//! reports is always the one its value was published with. Why: the
//! atomic's `v` was stored inside the writer's critical section. The
//! reader's critical section comes after that one (if it came before, the
//! reader's load would happen-before the store it read — impossible), so
//! it sees `v`'s value or a later one. Writers are ordered by the lock, so
//! versions only grow and each value has exactly one. The loom models in
//! `loom-tests/tests/published.rs` check both claims and fail if the atomic
//! is bumped before the value is installed.
//!
//! Costs: a reader's check is one `Acquire` load (a plain load on x86 and
//! ARMv8's `ldar`); the lock is taken by a reader only when the version
//! moved, and by the writer once per publish. The old value is dropped
//! outside the lock, by whoever holds its last `Arc`.

use std::fmt;
use std::sync::Arc;

use super::{lock, AtomicU64, Mutex, Ordering};

/// A value replaced whole by [`publish`](Published::publish), read through
/// [`Reader`]s. See the module docs for the protocol and its guarantee.
pub struct Published<T> {
    /// A copy of `current.version`, stored while the lock is held.
    version: AtomicU64,
    current: Mutex<Current<T>>,
}

/// The value and the version it was published with; only ever changed
/// together, under the lock.
struct Current<T> {
    version: u64,
    value: Arc<T>,
}

impl<T> Published<T> {
    /// A cell holding `value` as version 0.
    pub fn new(value: T) -> Published<T> {
        Published::from_arc(Arc::new(value))
    }

    /// A cell holding `value` as version 0, without copying it.
    pub fn from_arc(value: Arc<T>) -> Published<T> {
        Published {
            version: AtomicU64::new(0),
            current: Mutex::new(Current { version: 0, value }),
        }
    }

    /// The latest published version (one load). A [`Reader`] that
    /// refreshes after this returned `v` holds version `v` or a later one.
    pub fn version(&self) -> u64 {
        // Acquire: pairs with the Release store in `publish`, so whoever
        // acts on the version alone also sees what the writer did before.
        self.version.load(Ordering::Acquire)
    }

    /// Replaces the value with `value`; returns its version (one more than
    /// the one it replaces). The replaced value is dropped after the lock
    /// is released, if this held its last `Arc`.
    pub fn publish(&self, value: Arc<T>) -> u64 {
        let mut current = lock(&self.current);
        let version = current.version + 1;
        let old = std::mem::replace(&mut *current, Current { version, value });
        // Inside the critical section: a reader that loads `version` then
        // takes the lock is ordered after this section (module docs).
        // Release: pairs with the Acquire loads in `version` and `refresh`.
        self.version.store(version, Ordering::Release);
        drop(current);
        drop(old);
        version
    }

    /// The current value and its version, under the lock. For whoever reads
    /// once (a status thread, a test); loops keep a [`Reader`].
    pub fn load(&self) -> (u64, Arc<T>) {
        let current = lock(&self.current);
        (current.version, Arc::clone(&current.value))
    }

    /// A reader holding the current value.
    pub fn reader(&self) -> Reader<T> {
        let (version, value) = self.load();
        Reader { version, value }
    }
}

impl<T> fmt::Debug for Published<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// One thread's copy of a [`Published`] value and its version. Refresh it
/// once per wake with [`refresh`](Reader::refresh), always against the cell
/// it came from.
pub struct Reader<T> {
    version: u64,
    value: Arc<T>,
}

impl<T> Reader<T> {
    /// Takes `cell`'s value if a newer one was published since this reader
    /// last took one; returns whether it did. One load when nothing
    /// changed.
    #[inline]
    pub fn refresh(&mut self, cell: &Published<T>) -> bool {
        // Acquire: pairs with the Release store in `publish` (the value
        // itself comes through the lock, see the module docs).
        if cell.version.load(Ordering::Acquire) == self.version {
            return false;
        }
        self.take(cell)
    }

    #[cold]
    fn take(&mut self, cell: &Published<T>) -> bool {
        let (version, value) = cell.load();
        if version == self.version {
            return false;
        }
        self.version = version;
        self.value = value;
        true
    }

    /// The value held.
    pub fn get(&self) -> &Arc<T> {
        &self.value
    }

    /// The version the held value was published with.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl<T> Clone for Reader<T> {
    fn clone(&self) -> Reader<T> {
        Reader {
            version: self.version,
            value: Arc::clone(&self.value),
        }
    }
}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Gen {
        engine: u64,
        options: u64,
    }

    fn gen(n: u64) -> Arc<Gen> {
        Arc::new(Gen {
            engine: n,
            options: n * 10,
        })
    }

    #[test]
    fn a_reader_takes_a_new_value_once() {
        let cell = Published::from_arc(gen(0));
        let mut reader = cell.reader();
        assert_eq!(reader.version(), 0);
        assert!(!reader.refresh(&cell), "nothing published yet");
        assert_eq!(cell.publish(gen(1)), 1);
        assert_eq!(cell.version(), 1);
        assert!(reader.refresh(&cell));
        assert_eq!(**reader.get(), *gen(1));
        assert_eq!(reader.version(), 1);
        assert!(!reader.refresh(&cell), "already has version 1");
    }

    #[test]
    fn a_late_reader_skips_to_the_latest() {
        let cell = Published::new(Gen {
            engine: 0,
            options: 0,
        });
        let mut reader = cell.reader();
        let stale = reader.clone();
        cell.publish(gen(1));
        cell.publish(gen(2));
        assert!(reader.refresh(&cell));
        assert_eq!((reader.version(), reader.get().engine), (2, 2));
        assert_eq!(stale.version(), 0, "a clone keeps its own value");
        assert_eq!(cell.load().0, 2);
    }

    #[test]
    fn the_old_value_goes_with_its_last_reader() {
        let cell = Published::from_arc(gen(0));
        let mut reader = cell.reader();
        let old = Arc::downgrade(reader.get());
        cell.publish(gen(1));
        assert!(old.upgrade().is_some(), "the reader still holds it");
        reader.refresh(&cell);
        assert!(old.upgrade().is_none(), "dropped when the reader moved on");
    }

    #[test]
    fn publishing_from_many_threads_gives_each_value_one_version() {
        let cell = Arc::new(Published::from_arc(gen(0)));
        let writers: Vec<_> = (1..=4u64)
            .map(|t| {
                let cell = Arc::clone(&cell);
                std::thread::spawn(move || {
                    (0..50u64)
                        .map(|i| cell.publish(gen(t * 1_000 + i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut versions: Vec<u64> = writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer panicked"))
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=200).collect::<Vec<_>>());
        assert_eq!(cell.version(), 200);
        let (v, value) = cell.load();
        assert_eq!(v, 200);
        assert_eq!(value.options, value.engine * 10, "never torn");
    }
}
