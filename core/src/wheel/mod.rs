//! A hierarchical timer wheel: the linger deadlines of checked-in licenses,
//! and a front end's other deadlines beside them.
//!
//! Each server event loop owns one [`Wheel`] (inside an `engine::Timers`;
//! `engine::Lingers` is the one with linger timers only) and
//! uses it single-threaded: it inserts a timer when a license starts to
//! linger and calls [`Wheel::poll`] with the current tick to release the
//! licenses whose linger has run out, exactly at their deadline. A renewal
//! cancels nothing: a timer that fires early finds the later deadline in the
//! slot and is re-armed (see `engine/lingers.rs`); `cancel` serves a
//! front end's own timers (`engine::Timers::cancel`), embedders and the
//! benches. The wheel is pure: it knows `u64` ticks ([`TICK_MS`]
//! milliseconds each), slots and entries — never the OS clock — and does no
//! I/O, starts no threads and takes no locks.
//!
//! # Layout
//!
//! [`LEVELS`] levels of [`SLOTS_PER_LEVEL`] slots (see `level.rs`). Level `L`
//! has slots of `64^L` ticks, so the levels together span [`SPAN_TICKS`]
//! (`64^6` ticks, about 2.2 years at 1 ms). A deadline is read as base-64
//! digits; a timer goes to the level of the highest digit in which its
//! deadline differs from [`Wheel::elapsed`], into the slot named by that
//! digit. When `elapsed` reaches a slot of a level above 0, the slot's
//! entries cascade down to lower levels (or become due). Deadlines whose
//! digits differ above the top level — at least one `SPAN_TICKS`-aligned
//! block ahead — wait in an *overflow* list and are re-inserted when
//! `elapsed` reaches the start of the block holding the earliest of them.
//! Timers that are due wait in a FIFO *pending* list until `poll` returns
//! them one by one.
//!
//! Entries live in a slab `Vec` with a free list (`slab.rs`); each list is
//! an intrusive doubly-linked list through `u32` indices (`list.rs`).
//!
//! # Invariants
//!
//! With `e = elapsed()`:
//!
//! 1. Every live entry is on exactly one list — one slot of one level, the
//!    overflow list or the pending list — and its recorded home names it.
//! 2. An entry at level `L` with deadline `d` is in slot `digit_L(d)` (bits
//!    `6L..6L+6`) of level `L`; `d` agrees with `e` in every bit above that
//!    digit, and `digit_L(d) > digit_L(e)`, so `d > e`. Hence all of level
//!    `L` is due after all of level `L - 1`, and a level's occupied slots all
//!    lie after `e`'s own slot in the current turn: the lowest set bit of the
//!    bitmap is the next slot to process.
//! 3. An overflow entry's deadline lies in a later `SPAN_TICKS`-aligned
//!    block than `e` (so it is due after every level entry), and the
//!    recorded overflow minimum is never above the smallest such deadline.
//! 4. A pending entry's deadline is `<= e`. `elapsed` only advances while the
//!    pending list is empty.
//! 5. Bit `s` of a level's occupancy bitmap is set iff slot `s` is non-empty.
//! 6. Every entry fires (is returned by `poll`) exactly once: at the first
//!    `poll(now)` with `now >= deadline` — never early, never late. An entry
//!    inserted with `deadline <= e` is due at the next `poll`.
//! 7. Entries fire in nondecreasing order of `max(deadline, e at insert)`,
//!    which is the deadline itself for every entry inserted with
//!    `deadline > e`; ties come out in any order. (Overdue entries come out
//!    first, in insertion order; ordering them by their past deadlines would
//!    cost more than O(1) and nothing needs it.)
//!
//! # Costs
//!
//! `insert` and `cancel` are O(1); `poll` is O(1) per entry per level it
//! cascades through (at most [`LEVELS`] moves per entry), plus one pass over
//! the overflow list each time an overflow block is reached. No allocation
//! happens in steady state: the slab grows only when more entries are live
//! than ever before, and [`Wheel::with_capacity`] preallocates it.

mod level;
mod list;
mod slab;

use std::fmt;

use self::level::{level_for, Level};
use self::list::List;
use self::slab::{Home, Slab};

/// Milliseconds per tick: the wheel's unit of time. Deadlines, `elapsed`
/// and `now` are all counted in ticks.
pub const TICK_MS: u64 = 1;

/// Number of levels in the wheel.
pub const LEVELS: usize = 6;

/// Number of slots in each level (a power of two: one base-64 digit).
pub const SLOTS_PER_LEVEL: usize = 64;

/// Bits of a tick count per level: `log2(SLOTS_PER_LEVEL)`.
const SLOT_BITS: u32 = SLOTS_PER_LEVEL.trailing_zeros();

// A slot number is one digit of the deadline, and the bitmap is a `u64`.
const _: () = assert!(SLOTS_PER_LEVEL.is_power_of_two() && SLOTS_PER_LEVEL <= 64);
const _: () = assert!((SLOT_BITS as usize) * LEVELS < 64);

/// Ticks spanned by all levels together: `64^6` ticks (about 2.2 years at
/// 1 ms per tick). Deadlines in a later `SPAN_TICKS`-aligned block than
/// `elapsed` wait in the overflow list until that block is reached.
pub const SPAN_TICKS: u64 = 1 << (SLOT_BITS as usize * LEVELS);

/// Names one timer in a [`Wheel`]: an entry index plus the generation it was
/// issued for. Opaque; a key whose timer has fired or been cancelled is
/// stale and every method treats it as absent, even after the entry is
/// reused. (Generations are `u32` and wrap: a key kept across 2^32 reuses of
/// the same entry would alias. Keys are meant to be dropped when the timer
/// fires.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// A hierarchical timer wheel of `T` payloads keyed by `u64` tick deadlines.
///
/// See the module docs for the layout, invariants and costs.
pub struct Wheel<T> {
    /// The tick the wheel has advanced to.
    elapsed: u64,
    levels: [Level; LEVELS],
    /// Timers whose deadline is beyond the levels' span.
    overflow: List,
    /// Never above the smallest deadline in `overflow`; `u64::MAX` if empty.
    overflow_min: u64,
    /// Due timers, returned by `poll` front first.
    pending: List,
    /// Never above the smallest deadline in `pending`; `u64::MAX` if empty.
    pending_min: u64,
    slab: Slab<T>,
}

/// The next place `poll` has to process, and when.
#[derive(Clone, Copy, Debug)]
enum Visit {
    /// A slot of a level, at the first tick it covers.
    Slot {
        level: usize,
        slot: usize,
        tick: u64,
    },
    /// The overflow list, at the start of the block of its earliest deadline.
    Overflow { tick: u64 },
}

impl Visit {
    fn tick(self) -> u64 {
        match self {
            Visit::Slot { tick, .. } | Visit::Overflow { tick } => tick,
        }
    }
}

impl<T> Wheel<T> {
    /// An empty wheel at tick 0.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty wheel at tick 0 that holds `entries` timers before it
    /// allocates.
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            elapsed: 0,
            levels: std::array::from_fn(Level::new),
            overflow: List::EMPTY,
            overflow_min: u64::MAX,
            pending: List::EMPTY,
            pending_min: u64::MAX,
            slab: Slab::with_capacity(entries),
        }
    }

    /// The tick the wheel has advanced to. Starts at 0; moved forward only by
    /// [`poll`](Self::poll).
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of timers not yet fired or cancelled.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether there are no timers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of timers the wheel holds without allocating.
    pub fn capacity(&self) -> usize {
        self.slab.capacity()
    }

    /// Adds a timer due at tick `deadline` carrying `value`. A deadline at or
    /// before [`elapsed`](Self::elapsed) is due at the next `poll`.
    ///
    /// O(1); allocates only if more timers are live than ever before.
    ///
    /// # Panics
    ///
    /// If `u32::MAX - 1` timers are already live.
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let key = self.slab.insert(deadline, value);
        self.place(key.index);
        key
    }

    /// Removes the timer `key` and returns its payload; `None` if it has
    /// already fired or been cancelled. O(1).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let index = self.slab.resolve(key)?;
        let deadline = self.slab.deadline(index);
        match self.slab.home(index) {
            Home::Level(level) => {
                self.levels[usize::from(level)].unlink(&mut self.slab, index, deadline)
            }
            Home::Overflow => {
                self.overflow.unlink(&mut self.slab, index);
                if self.overflow.is_empty() {
                    self.overflow_min = u64::MAX;
                }
            }
            Home::Pending => {
                self.pending.unlink(&mut self.slab, index);
                if self.pending.is_empty() {
                    self.pending_min = u64::MAX;
                }
            }
        }
        Some(self.slab.remove(index).1)
    }

    /// Visits every live timer's payload, which `f` may change in place;
    /// the timers for which `f` returns false are cancelled. Deadlines and
    /// keys of the others stay as they were. O(entries ever used).
    pub fn retain_mut(&mut self, mut f: impl FnMut(&mut T) -> bool) {
        for index in 0..self.slab.slots() {
            let Some((key, value)) = self.slab.live_mut(index) else {
                continue;
            };
            if !f(value) {
                self.cancel(key);
            }
        }
    }

    /// The deadline of timer `key`; `None` if it has already fired or been
    /// cancelled.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        self.slab
            .resolve(key)
            .map(|index| self.slab.deadline(index))
    }

    /// A tick to sleep until before the next [`poll`](Self::poll); `None` if
    /// the wheel is empty.
    ///
    /// This is a **lower bound**: never later than the smallest deadline of
    /// any timer, so sleeping until it never fires anything late. It is
    /// exact when the earliest timer is in level 0 (due within the current
    /// 64-tick window). Otherwise it is the first tick of the slot (or
    /// overflow block) holding the earliest timer; a `poll` at that tick
    /// moves those timers down a level and may return nothing, and the next
    /// call here gives a tighter bound — at most one such early wake-up per
    /// level. While due timers are pending it is at most `elapsed()`:
    /// poll right away.
    pub fn next_expiration(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            return Some(self.pending_min);
        }
        self.next_visit().map(Visit::tick)
    }

    /// Advances the wheel towards `now` and returns one timer whose deadline
    /// is `<= now`, as `(deadline, value)`; `None` when no more are due at
    /// `now`.
    ///
    /// Timers come out in nondecreasing deadline order (overdue inserts
    /// first; see invariant 7 in the module docs). `elapsed()` moves up to
    /// the deadline of the timer returned (it stays put for an overdue one),
    /// and to `now` when `None` is returned.
    /// The wheel never moves backwards: a `now` below `elapsed()` is treated
    /// as `elapsed()`.
    pub fn poll(&mut self, now: u64) -> Option<(u64, T)> {
        let now = now.max(self.elapsed);
        loop {
            if let Some(index) = self.pending.pop_front(&mut self.slab) {
                if self.pending.is_empty() {
                    self.pending_min = u64::MAX;
                }
                return Some(self.slab.remove(index));
            }
            match self.next_visit() {
                Some(visit) if visit.tick() <= now => self.process(visit),
                _ => {
                    self.elapsed = now;
                    return None;
                }
            }
        }
    }

    /// Calls [`poll`](Self::poll) until it returns `None`, handing each due
    /// timer's deadline and value to `f`.
    pub fn drain_due(&mut self, now: u64, mut f: impl FnMut(u64, T)) {
        while let Some((deadline, value)) = self.poll(now) {
            f(deadline, value);
        }
    }

    /// Puts entry `index` on the list its deadline calls for, given
    /// `elapsed`.
    fn place(&mut self, index: u32) {
        let deadline = self.slab.deadline(index);
        let home = if deadline <= self.elapsed {
            self.pending.push_back(&mut self.slab, index);
            self.pending_min = self.pending_min.min(deadline);
            Home::Pending
        } else if let Some(level) = level_for(self.elapsed, deadline) {
            self.levels[level].push(&mut self.slab, index, deadline);
            Home::Level(level as u8)
        } else {
            self.overflow.push_back(&mut self.slab, index);
            self.overflow_min = self.overflow_min.min(deadline);
            Home::Overflow
        };
        self.slab.set_home(index, home);
    }

    /// The next slot or overflow block to process. Lower levels are always
    /// due first (invariants 2 and 3), so the first occupied level decides.
    fn next_visit(&self) -> Option<Visit> {
        for (level, l) in self.levels.iter().enumerate() {
            if let Some(due) = l.next_due(self.elapsed) {
                return Some(Visit::Slot {
                    level,
                    slot: due.slot,
                    tick: due.tick,
                });
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        Some(Visit::Overflow {
            tick: self.overflow_min & !(SPAN_TICKS - 1),
        })
    }

    /// Advances `elapsed` to `visit`'s tick and re-places the entries there:
    /// due ones go to the pending list, the rest to a lower level (or, for
    /// the overflow list, back to it if still out of range). The list is
    /// detached first so re-placed entries are not visited twice.
    fn process(&mut self, visit: Visit) {
        debug_assert!(self.pending.is_empty());
        debug_assert!(visit.tick() >= self.elapsed);
        self.elapsed = visit.tick();
        let mut list = match visit {
            Visit::Slot { level, slot, .. } => self.levels[level].take(slot),
            Visit::Overflow { .. } => {
                self.overflow_min = u64::MAX;
                std::mem::replace(&mut self.overflow, List::EMPTY)
            }
        };
        while let Some(index) = list.pop_front(&mut self.slab) {
            self.place(index);
        }
    }
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("elapsed", &self.elapsed)
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("next_expiration", &self.next_expiration())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
