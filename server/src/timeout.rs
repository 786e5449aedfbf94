//! Idle timeouts (`TIMEOUT feature secs`, `TIMEOUTALL secs`): a connection
//! that sends no request (a `PING` counts) for that long has its licenses of
//! those features checked in, as lmgrd does with `(INACTIVE)` in the log.
//!
//! Each loop keeps a min-heap of (due, connection) entries, one live entry
//! per connection: armed at accept for `last request + shortest timeout`.
//! When an entry comes due the connection's own `last_seen` decides: still
//! idle long enough, its licenses of the timed-out features go; either way
//! the entry is re-armed from `last_seen` while the connection lives.
//! Requests only store `last_seen` (no heap work on the request path).
//! Entries of closed connections are dropped when they come due (the
//! connection's serial number tells a reused slab key apart).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The heap of one loop.
#[derive(Debug, Default)]
pub(crate) struct IdleTimers {
    heap: BinaryHeap<Reverse<(u64, usize, u64)>>,
}

impl IdleTimers {
    /// Arms a check of connection `key` (serial `serial`) at `due`, Unix ms.
    pub(crate) fn arm(&mut self, due: u64, key: usize, serial: u64) {
        self.heap.push(Reverse((due, key, serial)));
    }

    /// The next entry due at or before `now`: (connection key, serial).
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((due, _, _))) if *due <= now => {
                self.heap.pop().map(|Reverse((_, k, s))| (k, s))
            }
            _ => None,
        }
    }

    /// When the next check is due, if any.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_order() {
        let mut t = IdleTimers::default();
        t.arm(30, 1, 7);
        t.arm(10, 2, 8);
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(30), Some((2, 8)));
        assert_eq!(t.pop_due(30), Some((1, 7)));
        assert_eq!(t.pop_due(100), None);
    }
}
