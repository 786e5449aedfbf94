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
//! Each use is *bound* (its latest checkout had no linger: held while its
//! connection lives) or *lingering* (promised a deadline). The instance is
//! held while a bound use lives, and otherwise until the latest deadline
//! any use was promised, even one whose connection has closed: a deadline
//! an `OK` promised is kept. So the engine's deadline of a shared instance
//! is "none" while a bound use lives, else the latest promise; the
//! journal's is always the latest promise (after a restart no connection
//! is left, so that is what the instance is held until). A CHECKIN takes
//! back its handle's own promise.
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
    /// Of those, bound ones (latest checkout without linger).
    bound: u32,
    /// Per handle, the latest deadline (Unix ms) an `OK` promised it (`""`:
    /// a deadline the instance had before its uses were counted, such as
    /// one restored from the journal).
    promises: Vec<(Box<str>, u64)>,
}

impl Shared {
    /// The latest promise still ahead of `now`, forgetting the others.
    fn latest(&mut self, now: u64) -> Option<u64> {
        self.promises.retain(|(_, d)| *d > now);
        self.promises.iter().map(|(_, d)| *d).max()
    }

    /// The deadline the engine should give the instance at `now`: none
    /// while a bound use lives, else the latest promise (`now` if uses
    /// live whose promises all passed: due).
    fn engine_deadline(&mut self, now: u64) -> Option<u64> {
        if self.bound > 0 {
            return None;
        }
        Some(self.latest(now).unwrap_or(now))
    }
}

/// Live uses per shared instance (absent: not counted, one use).
#[derive(Debug, Default)]
pub(crate) struct Uses(Mutex<HashMap<InstanceId, Shared>>);

/// What [`Uses::end`] / [`Uses::check_in`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended<R> {
    /// Other uses go on, or a promise keeps the license out until its
    /// deadline: nothing was checked in.
    Kept,
    /// That was the last use and no promise is left: the check-in ran,
    /// with this result.
    Last(R),
}

/// What a grouped checkout granted, for [`Uses::begin`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Granted {
    /// The shared instance.
    pub(crate) id: InstanceId,
    /// This connection's use by this handle before the checkout: `None` if
    /// it is a new use, else whether it was bound.
    pub(crate) was: Option<bool>,
    /// The deadline the checkout promised (`None`: a bound use).
    pub(crate) deadline: Option<u64>,
    /// The instance's deadline before this checkout renewed it.
    pub(crate) previous: Option<u64>,
}

/// What a grouped checkout leaves: the deadlines to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    /// The engine's deadline now (set by `reschedule`).
    pub(crate) engine: Option<u64>,
    /// The latest promise: what the journal records.
    pub(crate) promised: Option<u64>,
}

impl Uses {
    fn map(&self) -> MutexGuard<'_, HashMap<InstanceId, Shared>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `checkout`; if `granted` says it granted a use of a shared
    /// instance, counts the use and records the deadline promised to
    /// `handle`, then sets the engine's deadline with `reschedule` (which
    /// says whether the instance is still held). If the instance went
    /// meanwhile (a tiny linger expired), the checkout runs once more. All
    /// under the lock.
    pub(crate) fn begin<T>(
        &self,
        handle: &str,
        now: u64,
        mut checkout: impl FnMut() -> T,
        granted: impl Fn(&T) -> Option<Granted>,
        mut reschedule: impl FnMut(InstanceId, Option<u64>) -> bool,
    ) -> (T, Option<Kept>) {
        let mut map = self.map();
        let mut tries = 0;
        loop {
            tries += 1;
            let result = checkout();
            let Some(g) = granted(&result) else {
                return (result, None);
            };
            let counted = map.contains_key(&g.id);
            let shared = map.entry(g.id).or_default();
            if !counted {
                // A deadline from before its uses were counted is a promise.
                if let Some(d) = g.previous {
                    shared.promises.push(("".into(), d));
                }
            }
            match g.was {
                None => shared.uses += 1,
                Some(true) => shared.bound = shared.bound.saturating_sub(1),
                Some(false) => {}
            }
            if g.deadline.is_none() {
                shared.bound += 1;
            }
            shared.promises.retain(|(h, _)| &**h != handle);
            if let Some(d) = g.deadline {
                shared.promises.push((handle.into(), d));
            }
            let kept = Kept {
                engine: shared.engine_deadline(now),
                promised: shared.latest(now),
            };
            if reschedule(g.id, kept.engine) || tries > 1 {
                return (result, Some(kept));
            }
            map.remove(&g.id);
        }
    }

    /// Ends `n` uses of `id`, `bound` of them bound (the connection closed,
    /// or went idle past TIMEOUT). If none is left and no promise is ahead
    /// of `now`, runs `checkin` under the lock; else the instance is held
    /// on, its engine deadline (`reschedule`) the latest promise once no
    /// bound use is left. Promises stay: that is what a linger is.
    pub(crate) fn end<R>(
        &self,
        id: InstanceId,
        n: u32,
        bound: u32,
        now: u64,
        checkin: impl FnOnce() -> R,
        reschedule: impl FnOnce(Option<u64>),
    ) -> Ended<R> {
        let mut map = self.map();
        let Some(s) = map.get_mut(&id) else {
            return Ended::Last(checkin());
        };
        s.uses = s.uses.saturating_sub(n);
        s.bound = s.bound.saturating_sub(bound);
        if s.uses == 0 && s.latest(now).is_none() {
            map.remove(&id);
            return Ended::Last(checkin());
        }
        if s.bound == 0 && bound > 0 {
            reschedule(s.engine_deadline(now));
        }
        Ended::Kept
    }

    /// A CHECKIN by `handle` (bound or not, `bound`) ends its use of `id`
    /// and takes back the deadline it was promised; then as [`Uses::end`].
    /// `promised` gets the latest promise left (for the journal).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_in<R>(
        &self,
        id: InstanceId,
        handle: &str,
        bound: bool,
        now: u64,
        checkin: impl FnOnce() -> R,
        reschedule: impl FnOnce(Option<u64>),
        promised: impl FnOnce(Option<u64>),
    ) -> Ended<R> {
        let mut map = self.map();
        let Some(s) = map.get_mut(&id) else {
            return Ended::Last(checkin());
        };
        s.uses = s.uses.saturating_sub(1);
        s.bound = s.bound.saturating_sub(u32::from(bound));
        s.promises.retain(|(h, _)| &**h != handle);
        let latest = s.latest(now);
        if s.uses == 0 && latest.is_none() {
            map.remove(&id);
            return Ended::Last(checkin());
        }
        promised(latest);
        reschedule(s.engine_deadline(now));
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
                    to.bound += s.bound;
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

    /// A checkout by `handle` (`was`: its use before) promising `deadline`;
    /// returns what it kept and the engine deadline set.
    fn grant(
        u: &Uses,
        i: InstanceId,
        handle: &str,
        was: Option<bool>,
        now: u64,
        deadline: Option<u64>,
    ) -> Kept {
        let mut set = None;
        let (_, kept) = u.begin(
            handle,
            now,
            || (),
            |_| {
                Some(Granted {
                    id: i,
                    was,
                    deadline,
                    previous: None,
                })
            },
            |_, d| {
                set = Some(d);
                true
            },
        );
        let kept = kept.expect("a grant");
        assert_eq!(set, Some(kept.engine));
        kept
    }

    fn kept(engine: Option<u64>, promised: Option<u64>) -> Kept {
        Kept { engine, promised }
    }

    #[test]
    fn the_last_use_checks_in() {
        let u = Uses::default();
        for h in ["a", "b", "c"] {
            grant(&u, id(1), h, None, 0, None);
        }
        assert_eq!(u.end(id(1), 1, 1, 0, || "in", |_| {}), Ended::Kept);
        assert_eq!(u.end(id(1), 1, 1, 0, || "in", |_| {}), Ended::Kept);
        assert_eq!(u.end(id(1), 1, 1, 0, || "in", |_| {}), Ended::Last("in"));
        assert_eq!(
            u.end(id(1), 1, 1, 0, || "in", |_| {}),
            Ended::Last("in"),
            "not counted: one use"
        );
        grant(&u, id(2), "a", None, 0, None);
        grant(&u, id(2), "b", None, 0, None);
        assert_eq!(
            u.end(id(2), 2, 2, 0, || (), |_| {}),
            Ended::Last(()),
            "a connection's two uses"
        );
        // A checkout that is not a use counts nothing.
        assert!(u.begin("h", 0, || 7, |_| None, |_, _| true).1.is_none());
    }

    #[test]
    fn a_bound_use_holds_and_a_promise_outlives_its_use() {
        let u = Uses::default();
        // x1 promised 1030; x2 bound: held until check-in meanwhile.
        assert_eq!(
            grant(&u, id(1), "x1", None, 1000, Some(1030)),
            kept(Some(1030), Some(1030))
        );
        assert_eq!(
            grant(&u, id(1), "x2", None, 1001, None),
            kept(None, Some(1030))
        );
        // Another linger use cannot cut the bound one short.
        assert_eq!(
            grant(&u, id(1), "m1", None, 1002, Some(1003)),
            kept(None, Some(1030))
        );
        // x1's connection closes: promise kept; x2's closes: the engine
        // deadline becomes the latest promise.
        assert_eq!(u.end(id(1), 1, 0, 1004, || "in", |_| {}), Ended::Kept);
        let mut set = None;
        assert_eq!(
            u.end(id(1), 1, 1, 1005, || "in", |d| set = Some(d)),
            Ended::Kept
        );
        assert_eq!(set, Some(Some(1030)));
        // m1's closes: no use left, x1's promise still ahead: held.
        assert_eq!(u.end(id(1), 1, 0, 1006, || "in", |_| {}), Ended::Kept);
        // A new bound use after all that still meets x1's promise.
        assert_eq!(
            grant(&u, id(1), "x3", None, 1007, None),
            kept(None, Some(1030))
        );
        assert_eq!(
            u.end(id(1), 1, 1, 1008, || "in", |d| set = Some(d)),
            Ended::Kept
        );
        assert_eq!(set, Some(Some(1030)));
        // Past the promise, the last use's end checks in.
        grant(&u, id(1), "x4", None, 1040, None);
        assert_eq!(u.end(id(1), 1, 1, 1041, || "in", |_| {}), Ended::Last("in"));
    }

    #[test]
    fn a_checkin_takes_back_its_own_promise_only() {
        let u = Uses::default();
        grant(&u, id(1), "x1", None, 1000, Some(1030));
        grant(&u, id(1), "x3", None, 1001, Some(1010));
        let (mut set, mut promised) = (None, None);
        let r = u.check_in(
            id(1),
            "x1",
            false,
            1002,
            || "in",
            |d| set = Some(d),
            |p| promised = Some(p),
        );
        assert_eq!(r, Ended::Kept);
        assert_eq!((set, promised), (Some(Some(1010)), Some(Some(1010))));
        // The last use, its own promise withdrawn: checked in.
        let r = u.check_in(id(1), "x3", false, 1003, || "in", |_| {}, |_| {});
        assert_eq!(r, Ended::Last("in"));
        // A renewal by the same handle from bound to lingering.
        grant(&u, id(2), "y", None, 0, None);
        assert_eq!(
            grant(&u, id(2), "y", Some(true), 1, Some(50)),
            kept(Some(50), Some(50))
        );
    }

    #[test]
    fn a_deadline_from_before_the_count_is_a_promise() {
        // After a restart the instance's restored deadline is nobody's
        // promise in the map, and must still be kept.
        let u = Uses::default();
        let (_, k) = u.begin(
            "z",
            100,
            || (),
            |_| {
                Some(Granted {
                    id: id(9),
                    was: None,
                    deadline: None,
                    previous: Some(500),
                })
            },
            |_, _| true,
        );
        assert_eq!(k, Some(kept(None, Some(500))));
        let mut set = None;
        assert_eq!(
            u.end(id(9), 1, 1, 101, || "in", |d| set = Some(d)),
            Ended::Kept
        );
        assert_eq!(set, Some(Some(500)));
    }

    #[test]
    fn a_checkout_whose_instance_went_runs_again() {
        let u = Uses::default();
        let runs = std::cell::Cell::new(0);
        let (_, k) = u.begin(
            "h",
            0,
            || runs.set(runs.get() + 1),
            |_| {
                Some(Granted {
                    id: id(runs.get()),
                    was: None,
                    deadline: Some(10),
                    previous: None,
                })
            },
            |i, _| i != id(1),
        );
        assert_eq!(runs.get(), 2);
        assert!(k.is_some());
        assert_eq!(
            u.end(id(1), 1, 0, 0, || "in", |_| {}),
            Ended::Last("in"),
            "the first is forgotten"
        );
    }

    #[test]
    fn forgotten_merged_and_remapped_counts() {
        let u = Uses::default();
        grant(&u, id(1), "a", None, 0, None);
        grant(&u, id(1), "b", None, 0, None);
        u.forget(id(1));
        assert_eq!(u.end(id(1), 1, 1, 0, || (), |_| {}), Ended::Last(()));
        grant(&u, id(3), "a", None, 0, None);
        grant(&u, id(3), "b", None, 0, None);
        grant(&u, id(4), "a", None, 0, None);
        grant(&u, id(5), "a", None, 0, None);
        grant(&u, id(6), "a", None, 0, None);
        let moved = HashMap::from([
            (id(3), (id(30), FeatureId(0))),
            (id(5), (id(30), FeatureId(0))), // merged into one instance
            (id(6), (id(60), FeatureId(1))), // its feature is no longer grouped
        ]);
        u.remap(&moved, |f| f == FeatureId(0));
        for _ in 0..2 {
            assert_eq!(u.end(id(30), 1, 1, 0, || (), |_| {}), Ended::Kept);
        }
        assert_eq!(
            u.end(id(30), 1, 1, 0, || (), |_| {}),
            Ended::Last(()),
            "2 + 1 uses"
        );
        assert_eq!(
            u.end(id(4), 1, 1, 0, || (), |_| {}),
            Ended::Last(()),
            "not kept: forgotten"
        );
        assert_eq!(
            u.end(id(60), 1, 1, 0, || (), |_| {}),
            Ended::Last(()),
            "no longer grouped"
        );
    }
}
