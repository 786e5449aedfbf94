//! One level of the wheel: [`SLOTS_PER_LEVEL`] slot lists and an occupancy
//! bitmap.
//!
//! Level `L` has slots of `64^L` ticks and spans `64^(L+1)` ticks. A deadline
//! is written in base 64 (6 bits per digit); an entry at level `L` sits in
//! the slot numbered by its deadline's `L`-th digit. Bit `s` of `occupied` is
//! set iff slot `s` is non-empty, so the next occupied slot is one
//! `trailing_zeros`, not a scan.
//!
//! Because every entry at level `L` agrees with `elapsed` in all digits above
//! `L` and has a larger `L`-th digit (see the invariants in `super`), the
//! occupied slots all lie strictly after `elapsed`'s own slot, in the same
//! turn of the level: the lowest set bit is the next slot, with no
//! wrap-around. Deadlines too far away for that are kept out of the levels
//! (in the wheel's overflow list), so no level is ever used as a ring.

use super::list::List;
use super::slab::Slab;
use super::{LEVELS, SLOTS_PER_LEVEL, SLOT_BITS, SPAN_TICKS};

/// `SLOTS_PER_LEVEL - 1` as a mask of one base-64 digit.
const DIGIT_MASK: u64 = SLOTS_PER_LEVEL as u64 - 1;

/// The level a timer due at `deadline` belongs to when the wheel stands at
/// `elapsed`: the base-64 digit of the highest bit in which they differ.
/// `None` if they differ above the top level (the deadline is at least one
/// [`SPAN_TICKS`]-aligned block ahead), i.e. it belongs in the overflow list.
///
/// Meant for `deadline > elapsed`; equal values give level 0.
pub(super) fn level_for(elapsed: u64, deadline: u64) -> Option<usize> {
    // OR in the lowest digit so that equal values land on level 0.
    let differing = (elapsed ^ deadline) | DIGIT_MASK;
    if differing >= SPAN_TICKS {
        return None;
    }
    let highest_bit = u64::BITS - 1 - differing.leading_zeros();
    Some((highest_bit / SLOT_BITS) as usize)
}

/// The slot of `level` that holds a timer due at `deadline`: the deadline's
/// `level`-th base-64 digit.
pub(super) fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (SLOT_BITS as usize * level)) & DIGIT_MASK) as usize
}

/// Ticks covered by one slot of `level`: `64^level`.
fn slot_ticks(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

/// Ticks covered by a whole turn of `level`: `64^(level + 1)`.
fn level_ticks(level: usize) -> u64 {
    slot_ticks(level) << SLOT_BITS
}

/// The next slot of a level to process and the tick to process it at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlotDue {
    /// The slot index, `0..SLOTS_PER_LEVEL`.
    pub(super) slot: usize,
    /// The first tick the slot covers; no entry in it is due earlier.
    pub(super) tick: u64,
}

/// One level: slot lists plus the occupancy bitmap.
#[derive(Debug)]
pub(super) struct Level {
    /// This level's number, `0..LEVELS`.
    level: usize,
    /// Bit `s` set iff `slots[s]` is non-empty.
    occupied: u64,
    slots: [List; SLOTS_PER_LEVEL],
}

impl Level {
    /// An empty level number `level`.
    pub(super) fn new(level: usize) -> Self {
        debug_assert!(level < LEVELS);
        Self {
            level,
            occupied: 0,
            slots: [List::EMPTY; SLOTS_PER_LEVEL],
        }
    }

    /// The first occupied slot after `elapsed`'s own slot, and its tick.
    pub(super) fn next_due(&self, elapsed: u64) -> Option<SlotDue> {
        if self.occupied == 0 {
            return None;
        }
        let slot = self.occupied.trailing_zeros() as usize;
        debug_assert!(
            slot > slot_for(elapsed, self.level),
            "level {} slot {slot} is not after elapsed {elapsed}",
            self.level
        );
        // Start of the current turn of this level, plus `slot` slots.
        let turn_start = elapsed & !(level_ticks(self.level) - 1);
        Some(SlotDue {
            slot,
            tick: turn_start + slot as u64 * slot_ticks(self.level),
        })
    }

    /// Appends entry `index` (due at `deadline`) to its slot.
    pub(super) fn push<T>(&mut self, slab: &mut Slab<T>, index: u32, deadline: u64) {
        let slot = slot_for(deadline, self.level);
        self.slots[slot].push_back(slab, index);
        self.occupied |= 1 << slot;
    }

    /// Removes entry `index` (due at `deadline`) from its slot.
    pub(super) fn unlink<T>(&mut self, slab: &mut Slab<T>, index: u32, deadline: u64) {
        let slot = slot_for(deadline, self.level);
        self.slots[slot].unlink(slab, index);
        if self.slots[slot].is_empty() {
            self.occupied &= !(1 << slot);
        }
    }

    /// Empties `slot` and returns its entries.
    pub(super) fn take(&mut self, slot: usize) -> List {
        self.occupied &= !(1 << slot);
        std::mem::replace(&mut self.slots[slot], List::EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_is_the_highest_differing_digit() {
        for d in 0..64 {
            assert_eq!(level_for(0, d), Some(0), "deadline {d}");
        }
        assert_eq!(level_for(0, 64), Some(1));
        assert_eq!(level_for(0, 4095), Some(1));
        assert_eq!(level_for(0, 4096), Some(2));
        assert_eq!(level_for(0, SPAN_TICKS - 1), Some(LEVELS - 1));
        assert_eq!(level_for(0, SPAN_TICKS), None);
        assert_eq!(level_for(0, u64::MAX), None);
        // Relative to elapsed, not to zero: 63 -> 64 crosses a digit.
        assert_eq!(level_for(63, 64), Some(1));
        assert_eq!(level_for(64, 127), Some(0));
        // Just past a top-level boundary is still overflow from below it.
        assert_eq!(level_for(SPAN_TICKS - 1, SPAN_TICKS), None);
        assert_eq!(level_for(SPAN_TICKS, SPAN_TICKS + 1), Some(0));
        for level in 0..LEVELS {
            let base = 1u64 << (SLOT_BITS as usize * level);
            assert_eq!(level_for(0, base), Some(level));
            assert_eq!(level_for(0, base * 63 + base - 1), Some(level));
        }
    }

    #[test]
    fn slot_is_the_level_digit() {
        assert_eq!(slot_for(0, 0), 0);
        assert_eq!(slot_for(63, 0), 63);
        assert_eq!(slot_for(64, 0), 0);
        assert_eq!(slot_for(64, 1), 1);
        assert_eq!(slot_for(4095, 1), 63);
        assert_eq!(slot_for(4096, 2), 1);
        assert_eq!(slot_for(SPAN_TICKS - 1, LEVELS - 1), 63);
        assert_eq!(slot_for(SPAN_TICKS, LEVELS - 1), 0);
    }

    #[test]
    fn next_due_is_the_lowest_occupied_slot() {
        let mut slab = Slab::with_capacity(2);
        let mut level = Level::new(1);
        assert_eq!(level.next_due(0), None);
        // elapsed 130 is in slot 2 of level 1 (ticks 128..192).
        let late = slab.insert(64 * 40 + 5, ()).index;
        let early = slab.insert(64 * 9 + 63, ()).index;
        level.push(&mut slab, late, 64 * 40 + 5);
        level.push(&mut slab, early, 64 * 9 + 63);
        assert_eq!(level.next_due(130), Some(SlotDue { slot: 9, tick: 576 }));
        level.unlink(&mut slab, early, 64 * 9 + 63);
        assert_eq!(
            level.next_due(130),
            Some(SlotDue {
                slot: 40,
                tick: 2560
            })
        );
        // Turn start comes from elapsed's higher digits.
        assert_eq!(
            level.next_due(4096 * 3 + 130),
            Some(SlotDue {
                slot: 40,
                tick: 4096 * 3 + 2560
            })
        );
        let mut taken = level.take(40);
        assert_eq!(level.next_due(130), None);
        assert_eq!(taken.pop_front(&mut slab), Some(late));
        assert!(taken.is_empty());
    }
}
