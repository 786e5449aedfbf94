//! A watermark: "everything up to `n` is done", published by one thread and
//! read by others.
//!
//! tallyd's journal thread publishes, per event loop, the last batch of
//! journal records that is on disk; the loop reads it before it sends the
//! replies that waited for those records. The mark only grows
//! ([`Watermark::publish`] is a `fetch_max`), and a reader that sees `n`
//! also sees every write the publisher made before publishing `n` (Release
//! in `publish`, Acquire in `get`). The loom model is
//! `loom-tests/tests/watermark.rs`.

use crate::sync::{AtomicU64, Ordering};

/// A monotonic "done up to" mark. See the module docs.
#[derive(Debug, Default)]
pub struct Watermark(AtomicU64);

impl Watermark {
    /// A mark at 0 (nothing done).
    pub fn new() -> Watermark {
        Watermark(AtomicU64::new(0))
    }

    /// Everything up to `n` is done. A smaller `n` than the current mark
    /// changes nothing.
    pub fn publish(&self, n: u64) {
        // Release: pairs with the Acquire in `get`; what was done for `n`
        // happens-before a reader's sight of it.
        self.0.fetch_max(n, Ordering::Release);
    }

    /// The mark: everything up to it is done.
    pub fn get(&self) -> u64 {
        // Acquire: pairs with the Release in `publish`.
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_mark_only_grows() {
        let w = Watermark::new();
        w.publish(3);
        w.publish(2);
        assert_eq!(w.get(), 3);
        w.publish(5);
        assert_eq!(w.get(), 5);
    }
}
