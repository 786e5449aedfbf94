//! Intrusive doubly-linked lists of slab entries.
//!
//! A [`List`] is just a head and a tail index; the links live in the entries
//! themselves ([`Slab::prev`]/[`Slab::next`]), so linking and unlinking is
//! O(1) and never allocates. An entry is on at most one list at a time.

use super::slab::{Slab, NIL};

/// A FIFO list of entries of one [`Slab`]: push at the back, pop at the
/// front, unlink anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct List {
    head: u32,
    tail: u32,
}

impl List {
    /// The empty list.
    pub(super) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    /// Whether the list has no entries.
    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Appends entry `index`, which must be on no list.
    pub(super) fn push_back<T>(&mut self, slab: &mut Slab<T>, index: u32) {
        slab.set_prev(index, self.tail);
        slab.set_next(index, NIL);
        if self.tail == NIL {
            self.head = index;
        } else {
            slab.set_next(self.tail, index);
        }
        self.tail = index;
    }

    /// Removes and returns the first entry.
    pub(super) fn pop_front<T>(&mut self, slab: &mut Slab<T>) -> Option<u32> {
        if self.head == NIL {
            return None;
        }
        let index = self.head;
        self.unlink(slab, index);
        Some(index)
    }

    /// Removes entry `index`, which must be on this list.
    pub(super) fn unlink<T>(&mut self, slab: &mut Slab<T>, index: u32) {
        let prev = slab.prev(index);
        let next = slab.next(index);
        if prev == NIL {
            debug_assert_eq!(self.head, index, "entry is not on this list");
            self.head = next;
        } else {
            slab.set_next(prev, next);
        }
        if next == NIL {
            debug_assert_eq!(self.tail, index, "entry is not on this list");
            self.tail = prev;
        } else {
            slab.set_prev(next, prev);
        }
        slab.set_prev(index, NIL);
        slab.set_next(index, NIL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(list: &mut List, slab: &mut Slab<u32>) -> Vec<u32> {
        std::iter::from_fn(|| list.pop_front(slab)).collect()
    }

    #[test]
    fn fifo_order_and_unlink_anywhere() {
        let mut slab = Slab::with_capacity(4);
        let ix: Vec<u32> = (0..4).map(|v| slab.insert(0, v).index).collect();
        let mut list = List::EMPTY;
        assert!(list.is_empty());
        for &i in &ix {
            list.push_back(&mut slab, i);
        }
        list.unlink(&mut slab, ix[0]); // head
        list.unlink(&mut slab, ix[2]); // middle
        assert!(!list.is_empty());
        assert_eq!(drain(&mut list, &mut slab), vec![ix[1], ix[3]]);
        assert!(list.is_empty());

        list.push_back(&mut slab, ix[2]);
        list.push_back(&mut slab, ix[0]);
        list.unlink(&mut slab, ix[0]); // tail
        list.push_back(&mut slab, ix[3]);
        assert_eq!(drain(&mut list, &mut slab), vec![ix[2], ix[3]]);
        assert_eq!(list, List::EMPTY);
    }
}
