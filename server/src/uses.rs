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

/// One shared instance's uses, and the deadlines its uses were promised.
#[derive(Debug, Default)]
struct Shared {
    /// Live uses.
    uses: u32,
    /// Per handle, the latest deadline (Unix ms) an `OK` promised it. A
    /// promise outlives its use (that is what a linger is); the instance is
    /// held until the latest of them, and a CHECKIN by the handle takes its
    /// own promise back.
    promises: Vec<(Box<str>, u64)>,
}

impl Shared {
    /// The latest promise still ahead of `now`, forgetting the others.
    fn latest(&mut self, now: u64) -> Option<u64> {
        self.promises.retain(|(_, d)| *d > now);
        self.promises.iter().map(|(_, d)| *d).max()
    }
}

/// Live uses per shared instance (absent: not counted, one use).
#[derive(Debug, Default)]
pub(crate) struct Uses(Mutex<HashMap<InstanceId, Shared>>);

/// What [`Uses::end`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended<R> {
    /// Other uses go on, or a promise to another use keeps the license out
    /// until that deadline: nothing was checked in.
    Kept,
    /// That was the last use: the check-in ran, with this result.
    Last(R),
}

/// What a grouped checkout's grant was, for [`Uses::begin`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Granted {
    /// The shared instance.
    pub(crate) id: InstanceId,
    /// A new use (not a renewal of this connection's use by this handle).
    pub(crate) new_use: bool,
    /// The deadline the engine gave it (`None`: held until check-in).
    pub(crate) deadline: Option<u64>,
}

impl Uses {
    fn map(&self) -> MutexGuard<'_, HashMap<InstanceId, Shared>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `checkout`; if `granted` says it granted a use of a shared
    /// instance, counts a new use and records the deadline promised to
    /// `handle`. If another use was promised a later deadline than the one
    /// just set (a renewal sets the instance's deadline to its own),
    /// `reschedule` puts that one back and its value is returned: the
    /// instance is held until the latest promise. All under the lock.
    pub(crate) fn begin<T>(
        &self,
        handle: &str,
        now: u64,
        checkout: impl FnOnce() -> T,
        granted: impl FnOnce(&T) -> Option<Granted>,
        reschedule: impl FnOnce(InstanceId, u64),
    ) -> (T, Option<u64>) {
        let mut map = self.map();
        let result = checkout();
        let Some(g) = granted(&result) else {
            return (result, None);
        };
        let shared = map.entry(g.id).or_default();
        if g.new_use {
            shared.uses += 1;
        }
        shared.promises.retain(|(h, _)| &**h != handle);
        if let Some(d) = g.deadline {
            shared.promises.push((handle.into(), d));
        }
        let kept = shared
            .latest(now)
            .filter(|&latest| g.deadline.map_or(true, |d| latest > d));
        if let Some(latest) = kept {
            reschedule(g.id, latest);
        }
        (result, kept)
    }

    /// Ends `n` uses of `id` (by the connection closing, or an idle
    /// timeout); if none is left (or `id` was never counted), runs
    /// `checkin` under the lock. Promises stay: a lingering instance is
    /// then checked in at its deadline.
    pub(crate) fn end<R>(&self, id: InstanceId, n: u32, checkin: impl FnOnce() -> R) -> Ended<R> {
        let mut map = self.map();
        match map.get_mut(&id) {
            Some(s) if s.uses > n => {
                s.uses -= n;
                Ended::Kept
            }
            Some(_) => {
                map.remove(&id);
                Ended::Last(checkin())
            }
            None => Ended::Last(checkin()),
        }
    }

    /// A CHECKIN by `handle` ends its use of `id` and takes back the
    /// deadline it was promised. The instance's deadline becomes the latest
    /// promise to another use still ahead of `now` (`reschedule`; `None`:
    /// held by the remaining uses until check-in). If it was the last use
    /// and no promise is left, `checkin` runs; if a promise is left, the
    /// license stays out until that deadline.
    pub(crate) fn check_in<R>(
        &self,
        id: InstanceId,
        handle: &str,
        now: u64,
        checkin: impl FnOnce() -> R,
        reschedule: impl FnOnce(Option<u64>),
    ) -> Ended<R> {
        let mut map = self.map();
        let Some(s) = map.get_mut(&id) else {
            return Ended::Last(checkin());
        };
        s.uses = s.uses.saturating_sub(1);
        s.promises.retain(|(h, _)| &**h != handle);
        let latest = s.latest(now);
        if s.uses == 0 && latest.is_none() {
            map.remove(&id);
            return Ended::Last(checkin());
        }
        reschedule(latest);
        Ended::Kept
    }

    /// The instance was checked in (by its last use, an expiry, a removal):
    /// forget its count.
    pub(crate) fn forget(&self, id: InstanceId) {
        let mut map = self.map();
        if !map.is_empty() {
            map.remove(&id);
        }
    }

    /// After a reread: the counts and promises follow their instances to
    /// the new ids (instances that the new grouping merged add up);
    /// instances not kept, or of features no longer grouped, are forgotten.
    pub(crate) fn remap(
        &self,
        moved: &HashMap<InstanceId, (InstanceId, FeatureId)>,
        grouped: impl Fn(FeatureId) -> bool,
    ) {
        let mut map = self.map();
        let old = std::mem::take(&mut *map);
        for (id, s) in old {
            match moved.get(&id) {
                Some(&(new, feature)) if grouped(feature) => {
                    let to = map.entry(new).or_default();
                    to.uses += s.uses;
                    to.promises.extend(s.promises);
                }
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
        u.begin(
            "h",
            0,
            || (),
            |_| {
                Some(Granted {
                    id: i,
                    new_use: true,
                    deadline: None,
                })
            },
            |_, _| {},
        );
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
        assert_eq!(u.begin("h", 0, || 7, |_| None, |_, _| {}).0, 7);
        assert_eq!(u.end(id(3), 1, || ()), Ended::Last(()));
    }

    fn grant(
        u: &Uses,
        i: InstanceId,
        handle: &str,
        now: u64,
        deadline: Option<u64>,
    ) -> Option<u64> {
        let mut put_back = None;
        let (_, kept) = u.begin(
            handle,
            now,
            || (),
            |_| {
                Some(Granted {
                    id: i,
                    new_use: true,
                    deadline,
                })
            },
            |_, d| put_back = Some(d),
        );
        assert_eq!(kept, put_back);
        kept
    }

    #[test]
    fn a_promised_deadline_is_kept_until_the_latest_promise() {
        let u = Uses::default();
        // x1 was promised 1030; x2's checkout without linger would hold
        // the instance until check-in: 1030 is put back.
        assert_eq!(grant(&u, id(1), "x1", 1000, Some(1030)), None);
        assert_eq!(grant(&u, id(1), "x2", 1001, None), Some(1030));
        // x3 promised less than x1: x1's stays.
        assert_eq!(grant(&u, id(1), "x3", 1002, Some(1010)), Some(1030));
        // x2's check-in: two uses left, x1's promise holds.
        let mut set = None;
        assert_eq!(
            u.check_in(id(1), "x2", 1003, || "in", |d| set = Some(d)),
            Ended::Kept
        );
        assert_eq!(set, Some(Some(1030)));
        // x1 takes its promise back: x3's is the latest.
        assert_eq!(
            u.check_in(id(1), "x1", 1004, || "in", |d| set = Some(d)),
            Ended::Kept
        );
        assert_eq!(set, Some(Some(1010)));
        // The last use, its own promise withdrawn: checked in.
        assert_eq!(
            u.check_in(id(1), "x3", 1005, || "in", |_| {}),
            Ended::Last("in")
        );
        // A promise to a use whose connection closed outlives the use.
        assert_eq!(grant(&u, id(2), "y1", 2000, Some(2050)), None);
        assert_eq!(grant(&u, id(2), "y2", 2001, None), Some(2050));
        assert_eq!(u.end(id(2), 1, || "in"), Ended::Kept);
        assert_eq!(
            u.check_in(id(2), "y2", 2002, || "in", |d| set = Some(d)),
            Ended::Kept
        );
        assert_eq!(set, Some(Some(2050)), "held until y1's deadline");
        // Past it, nothing is left to keep.
        assert_eq!(grant(&u, id(3), "z1", 3000, Some(3010)), None);
        assert_eq!(
            u.check_in(id(3), "z2", 3020, || "in", |_| {}),
            Ended::Last("in")
        );
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
