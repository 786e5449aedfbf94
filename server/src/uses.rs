//! Uses of one shared instance under `DUP_GROUP`.
//!
//! With `DUP_GROUP=UH` (say), every checkout by alice on pc1 with another
//! handle is a *use* of one instance: the first takes the license, the
//! others share it. Each use ends on its own (its CHECKIN, its connection
//! closing, its idle TIMEOUT), and the license goes back only when the last
//! one ends, as FlexLM does: otherwise a second program of alice's would
//! run on a license that another user has meanwhile been granted. Uses may
//! sit on different connections, served by different loops, so the count
//! is shared. Only grouped features are counted (a handle's instance has
//! one use).
//!
//! A use begins (the checkout that renews the instance, and the count) and
//! the last use ends (the count, and the check-in) under one lock, so a
//! renewal on one loop cannot slip between another loop's "that was the
//! last use" and its check-in, which would leave the renewer answered OK
//! without a license.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tally_core::engine::{FeatureId, InstanceId};

/// Live uses per shared instance (absent: not counted, one use).
#[derive(Debug, Default)]
pub(crate) struct Uses(Mutex<HashMap<InstanceId, u32>>);

/// What [`Uses::end`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended<R> {
    /// Other uses go on: nothing was checked in.
    Kept,
    /// That was the last use: the check-in ran, with this result.
    Last(R),
}

impl Uses {
    fn map(&self) -> MutexGuard<'_, HashMap<InstanceId, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `checkout` and, if `new_use` says its result is a new use of an
    /// instance, counts it, both under the lock.
    pub(crate) fn begin<T>(
        &self,
        checkout: impl FnOnce() -> T,
        new_use: impl FnOnce(&T) -> Option<InstanceId>,
    ) -> T {
        let mut map = self.map();
        let result = checkout();
        if let Some(id) = new_use(&result) {
            *map.entry(id).or_insert(0) += 1;
        }
        result
    }

    /// Ends `n` uses of `id`; if none is left (or `id` was never counted),
    /// runs `checkin` under the lock.
    pub(crate) fn end<R>(&self, id: InstanceId, n: u32, checkin: impl FnOnce() -> R) -> Ended<R> {
        let mut map = self.map();
        match map.get_mut(&id) {
            Some(left) if *left > n => {
                *left -= n;
                Ended::Kept
            }
            Some(_) => {
                map.remove(&id);
                Ended::Last(checkin())
            }
            None => Ended::Last(checkin()),
        }
    }

    /// The instance was checked in (by its last use, an expiry, a removal):
    /// forget its count.
    pub(crate) fn forget(&self, id: InstanceId) {
        let mut map = self.map();
        if !map.is_empty() {
            map.remove(&id);
        }
    }

    /// After a reread: the counts follow their instances to the new ids
    /// (instances that the new grouping merged add up); instances not kept,
    /// or of features no longer grouped, are forgotten.
    pub(crate) fn remap(
        &self,
        moved: &HashMap<InstanceId, (InstanceId, FeatureId)>,
        grouped: impl Fn(FeatureId) -> bool,
    ) {
        let mut map = self.map();
        let old = std::mem::take(&mut *map);
        for (id, n) in old {
            match moved.get(&id) {
                Some(&(new, feature)) if grouped(feature) => *map.entry(new).or_insert(0) += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32) -> InstanceId {
        InstanceId::from_bits(u64::from(slot))
    }

    fn add(u: &Uses, i: InstanceId) {
        u.begin(|| (), |_| Some(i));
    }

    #[test]
    fn the_last_use_checks_in() {
        let u = Uses::default();
        for _ in 0..3 {
            add(&u, id(1));
        }
        assert_eq!(u.end(id(1), 1, || "in"), Ended::Kept);
        assert_eq!(u.end(id(1), 1, || "in"), Ended::Kept);
        assert_eq!(u.end(id(1), 1, || "in"), Ended::Last("in"));
        assert_eq!(
            u.end(id(1), 1, || "in"),
            Ended::Last("in"),
            "not counted: one use"
        );
        add(&u, id(2));
        add(&u, id(2));
        assert_eq!(
            u.end(id(2), 2, || ()),
            Ended::Last(()),
            "a connection's two uses"
        );
        // A checkout that is not a new use counts nothing.
        assert_eq!(u.begin(|| 7, |_| None), 7);
        assert_eq!(u.end(id(3), 1, || ()), Ended::Last(()));
    }

    #[test]
    fn forgotten_merged_and_remapped_counts() {
        let u = Uses::default();
        add(&u, id(1));
        add(&u, id(1));
        u.forget(id(1));
        assert_eq!(u.end(id(1), 1, || ()), Ended::Last(()));
        add(&u, id(3));
        add(&u, id(3));
        add(&u, id(4));
        add(&u, id(5));
        add(&u, id(6));
        let moved = HashMap::from([
            (id(3), (id(30), FeatureId(0))),
            (id(5), (id(30), FeatureId(0))), // merged into one instance
            (id(6), (id(60), FeatureId(1))), // its feature is no longer grouped
        ]);
        u.remap(&moved, |f| f == FeatureId(0));
        for _ in 0..2 {
            assert_eq!(u.end(id(30), 1, || ()), Ended::Kept);
        }
        assert_eq!(u.end(id(30), 1, || ()), Ended::Last(()), "2 + 1 uses");
        assert_eq!(
            u.end(id(4), 1, || ()),
            Ended::Last(()),
            "not kept: forgotten"
        );
        assert_eq!(
            u.end(id(60), 1, || ()),
            Ended::Last(()),
            "no longer grouped"
        );
    }
}
