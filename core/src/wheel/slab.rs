//! Entry storage: a slab `Vec` with a free list and a generation per entry.
//!
//! Every timer lives in one `Entry` of [`Slab::entries`], addressed by a
//! `u32` index. Freed entries are threaded onto a free list through their
//! `next` link and reused before the `Vec` grows, so the `Vec` only grows
//! when more entries are live than ever before. Each entry carries a
//! generation that is bumped when the entry is freed; a [`TimerKey`] names an
//! index *and* the generation it was issued for, so a key kept after its
//! timer fired or was cancelled is recognised as stale even when the index
//! has been reused.
//!
//! The `prev`/`next` links are the intrusive list links used by
//! [`super::list::List`]; this module only stores them.

use super::TimerKey;

/// The "no entry" index: the end of a list or of the free list.
pub(super) const NIL: u32 = u32::MAX;

/// Which list of the wheel an entry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Home {
    /// In a slot of this level; the slot is the level's digit of the deadline.
    Level(u8),
    /// In the overflow list: the deadline is beyond the levels' span.
    Overflow,
    /// In the pending list: due, waiting to be returned by `poll`.
    Pending,
}

/// One timer, or a vacant cell on the free list.
#[derive(Debug)]
struct Entry<T> {
    /// The tick the timer is due at.
    deadline: u64,
    /// Bumped each time the entry is freed; see [`TimerKey`].
    generation: u32,
    /// Previous entry on the same list, or [`NIL`].
    prev: u32,
    /// Next entry on the same list (or on the free list when vacant), or [`NIL`].
    next: u32,
    /// The list the entry is on; meaningless when vacant.
    home: Home,
    /// The payload; `None` exactly when the entry is vacant.
    value: Option<T>,
}

/// The entries of a wheel, with a free list.
#[derive(Debug)]
pub(super) struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list of vacant entries, or [`NIL`].
    free: u32,
    /// Number of occupied entries.
    live: usize,
}

impl<T> Slab<T> {
    /// An empty slab with room for `entries` timers before it allocates.
    pub(super) fn with_capacity(entries: usize) -> Self {
        Self {
            entries: Vec::with_capacity(entries),
            free: NIL,
            live: 0,
        }
    }

    /// Number of occupied entries.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Number of entries the slab holds without allocating.
    pub(super) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Stores a timer, reusing a vacant entry if there is one. The entry is
    /// on no list yet; the caller links it and sets its home.
    ///
    /// # Panics
    ///
    /// If `u32::MAX - 1` entries are already live (indices are `u32`).
    pub(super) fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let index = if self.free != NIL {
            let index = self.free;
            let entry = &mut self.entries[index as usize];
            self.free = entry.next;
            entry.deadline = deadline;
            entry.prev = NIL;
            entry.next = NIL;
            entry.value = Some(value);
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("timer wheel: more than u32::MAX - 1 live entries");
            self.entries.push(Entry {
                deadline,
                generation: 0,
                prev: NIL,
                next: NIL,
                home: Home::Pending,
                value: Some(value),
            });
            index
        };
        self.live += 1;
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// The index `key` names, if it still names a live timer.
    pub(super) fn resolve(&self, key: TimerKey) -> Option<u32> {
        let entry = self.entries.get(key.index as usize)?;
        (entry.generation == key.generation && entry.value.is_some()).then_some(key.index)
    }

    /// Frees the live entry `index` (already unlinked from its list) and
    /// returns its deadline and payload.
    pub(super) fn remove(&mut self, index: u32) -> (u64, T) {
        let entry = &mut self.entries[index as usize];
        let value = entry
            .value
            .take()
            .expect("timer wheel: removing a vacant entry");
        entry.generation = entry.generation.wrapping_add(1);
        entry.prev = NIL;
        entry.next = self.free;
        self.free = index;
        self.live -= 1;
        (entry.deadline, value)
    }

    /// Entries ever used (live or vacant): indices run `0..slots()`.
    pub(super) fn slots(&self) -> u32 {
        // Never above NIL (`insert` refuses to grow past it).
        self.entries.len() as u32
    }

    /// The key and payload of entry `index`, if it is live.
    pub(super) fn live_mut(&mut self, index: u32) -> Option<(TimerKey, &mut T)> {
        let entry = self.entries.get_mut(index as usize)?;
        let generation = entry.generation;
        entry
            .value
            .as_mut()
            .map(|v| (TimerKey { index, generation }, v))
    }

    /// The deadline of entry `index`.
    pub(super) fn deadline(&self, index: u32) -> u64 {
        self.entries[index as usize].deadline
    }

    /// The list entry `index` is on.
    pub(super) fn home(&self, index: u32) -> Home {
        self.entries[index as usize].home
    }

    /// Records the list entry `index` is on.
    pub(super) fn set_home(&mut self, index: u32, home: Home) {
        self.entries[index as usize].home = home;
    }

    /// The `prev` link of entry `index`.
    pub(super) fn prev(&self, index: u32) -> u32 {
        self.entries[index as usize].prev
    }

    /// The `next` link of entry `index`.
    pub(super) fn next(&self, index: u32) -> u32 {
        self.entries[index as usize].next
    }

    /// Sets the `prev` link of entry `index`.
    pub(super) fn set_prev(&mut self, index: u32, prev: u32) {
        self.entries[index as usize].prev = prev;
    }

    /// Sets the `next` link of entry `index`.
    pub(super) fn set_next(&mut self, index: u32, next: u32) {
        self.entries[index as usize].next = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_entries_are_reused_before_growing() {
        let mut slab = Slab::with_capacity(2);
        let a = slab.insert(1, 'a');
        let b = slab.insert(2, 'b');
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.remove(a.index), (1, 'a'));
        let c = slab.insert(3, 'c');
        assert_eq!(c.index, a.index, "vacant entry reused");
        assert_ne!(c.generation, a.generation, "generation bumped on free");
        assert_eq!(
            slab.entries.len(),
            2,
            "no growth while a vacant entry exists"
        );
        assert_eq!(slab.resolve(b), Some(b.index));
        assert_eq!(slab.len(), 2);
    }

    #[test]
    fn stale_keys_do_not_resolve() {
        let mut slab = Slab::with_capacity(0);
        let a = slab.insert(7, ());
        slab.remove(a.index);
        assert_eq!(slab.resolve(a), None, "freed");
        let b = slab.insert(8, ());
        assert_eq!(b.index, a.index);
        assert_eq!(slab.resolve(a), None, "index reused, old generation");
        assert_eq!(slab.resolve(b), Some(b.index));
        let out_of_range = TimerKey {
            index: 99,
            generation: 0,
        };
        assert_eq!(slab.resolve(out_of_range), None);
    }
}
