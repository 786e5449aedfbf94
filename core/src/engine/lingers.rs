//! Linger expiry: one timer wheel per thread, releasing each lingering
//! instance at its deadline — and, in the same wheel, the front end's own
//! timers.
//!
//! The engine keeps deadlines in the slot words; a [`Timers`] keeps a timer
//! for each deadline it was told about ([`Grant::schedule`]). When a linger
//! timer fires, [`Engine::expire`] decides: released (the deadline passed),
//! later (renewed since: the timer is re-armed at the new deadline) or gone.
//! So a renewal never searches the wheel, and a renewal that moves a
//! deadline *earlier* (returning a license with linger 1 s) asks for one
//! new timer.
//!
//! A front end has other deadlines too (tallyd: idle TIMEOUT checks, queued
//! checkouts giving up, the end of a closing connection's drain). They go
//! into the same wheel as timers of the caller's type `X`
//! ([`Timers::arm_timer`]) and come back from [`Timers::poll`] as
//! [`Due::Timer`] at their deadline, so a loop sleeps until one
//! [`next_deadline`](Timers::next_deadline). [`Lingers`] is the wheel with
//! linger timers only.
//!
//! A server runs one `Timers` per event loop. Lateness is one wheel tick
//! ([`TICK_MS`]) plus however late the caller polls; nothing fires early.

use std::convert::Infallible;

use super::{Engine, Expired, Grant, InstanceId, Release};
use crate::clock::Millis;
use crate::wheel::{TimerKey, Wheel, TICK_MS};

/// Per-thread timers: linger expiries, which the engine decides, and the
/// caller's own timers of type `X`. Not `Sync`: each thread owns its own.
#[derive(Debug)]
pub struct Timers<X> {
    wheel: Wheel<Entry<X>>,
    /// Unix ms of tick 0.
    origin_ms: Millis,
}

/// Per-thread linger timers: [`Timers`] with no timers of the caller's.
/// An entry is one `u64`, as in a bare `Wheel<u64>`.
pub type Lingers = Timers<Infallible>;

/// A wheel entry.
#[derive(Debug)]
enum Entry<X> {
    /// An instance's linger deadline (its `InstanceId` bits).
    Linger(u64),
    /// One of the caller's timers.
    Timer(X),
}

/// What [`Timers::poll`] hands back.
#[derive(Debug)]
pub enum Due<X> {
    /// A lingering instance's deadline passed: the engine checked it in.
    Released(Release),
    /// One of the caller's timers reached its deadline.
    Timer(X),
}

impl<X> Timers<X> {
    /// Timers counted from `now`.
    pub fn new(now: Millis) -> Timers<X> {
        Timers::with_capacity(now, 0)
    }

    /// Timers counted from `now`, with room for `timers` without allocating.
    pub fn with_capacity(now: Millis, timers: usize) -> Timers<X> {
        Timers {
            wheel: Wheel::with_capacity(timers),
            origin_ms: now,
        }
    }

    /// Outstanding timers (including linger timers a renewal or check-in
    /// made stale).
    pub fn len(&self) -> usize {
        self.wheel.len()
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.wheel.is_empty()
    }

    fn tick_of(&self, at: Millis) -> u64 {
        at.saturating_sub(self.origin_ms) / TICK_MS
    }

    /// `at` (Unix ms) as a tick, rounded up: a timer never fires early.
    fn tick_at_or_after(&self, at: Millis) -> u64 {
        at.saturating_sub(self.origin_ms).div_ceil(TICK_MS)
    }

    /// Arms a linger timer if the grant asks for one.
    pub fn track(&mut self, grant: &Grant) {
        if let (Some(id), Some(at)) = (grant.id, grant.schedule) {
            self.arm(id, at);
        }
    }

    /// Arms a linger timer for instance `id` at `at` (Unix ms), rounded up
    /// to a tick.
    pub fn arm(&mut self, id: InstanceId, at: Millis) {
        let tick = self.tick_at_or_after(at);
        self.wheel.insert(tick, Entry::Linger(id.to_bits()));
    }

    /// Arms `timer` at `at` (Unix ms), rounded up to a tick; [`poll`]
    /// returns it once `now >= at`. The key cancels it.
    ///
    /// [`poll`]: Self::poll
    pub fn arm_timer(&mut self, at: Millis, timer: X) -> TimerKey {
        let tick = self.tick_at_or_after(at);
        self.wheel.insert(tick, Entry::Timer(timer))
    }

    /// Cancels the timer `key` (from [`arm_timer`](Self::arm_timer)) and
    /// returns it; `None` if it has fired or been cancelled already. O(1).
    pub fn cancel(&mut self, key: TimerKey) -> Option<X> {
        let tick = self.wheel.deadline(key)?;
        match self.wheel.cancel(key)? {
            Entry::Timer(timer) => Some(timer),
            Entry::Linger(bits) => {
                // Not a key this handed out (another wheel's): a linger
                // timer must not be lost, so it goes back.
                self.wheel.insert(tick, Entry::Linger(bits));
                None
            }
        }
    }

    /// Moves the linger timers to another engine's ids, for a front end
    /// whose instances were restored into a new engine (a REREAD): each
    /// linger timer's instance becomes `map(id)`, at the same deadline,
    /// and a timer `map` returns `None` for is dropped. The caller's own
    /// timers stay as they are, keys included. O(timers).
    ///
    /// Every linger timer must go through `map` before the next
    /// [`poll`](Self::poll) against the new engine: an id of the old one
    /// may name an unrelated instance of the new (ids are table slots).
    pub fn remap_lingers(&mut self, mut map: impl FnMut(InstanceId) -> Option<InstanceId>) {
        self.wheel.retain_mut(|entry| match entry {
            Entry::Timer(_) => true,
            Entry::Linger(bits) => match map(InstanceId::from_bits(*bits)) {
                Some(id) => {
                    *bits = id.to_bits();
                    true
                }
                None => false,
            },
        });
    }

    /// The earliest time a timer may fire (Unix ms), to sleep until: never
    /// later than the earliest deadline (see [`Wheel::next_expiration`]).
    pub fn next_deadline(&self) -> Option<Millis> {
        self.wheel
            .next_expiration()
            .map(|t| self.origin_ms.saturating_add(t.saturating_mul(TICK_MS)))
    }

    /// The next timer due at `now`, in deadline order; `None` when nothing
    /// more is due. A linger timer whose instance's deadline has passed
    /// checks it in ([`Due::Released`]); one whose instance was renewed is
    /// re-armed at the new deadline, and one whose instance is gone is
    /// dropped — neither is returned. A timer armed while draining at or
    /// before `now` comes out in the same drain.
    pub fn poll(&mut self, engine: &Engine, now: Millis) -> Option<Due<X>> {
        let tick = self.tick_of(now);
        while let Some((_, entry)) = self.wheel.poll(tick) {
            match entry {
                Entry::Timer(timer) => return Some(Due::Timer(timer)),
                Entry::Linger(bits) => {
                    let id = InstanceId::from_bits(bits);
                    match engine.expire(id, now) {
                        Expired::Released(r) => return Some(Due::Released(r)),
                        Expired::Later(at) => self.arm(id, at),
                        Expired::Gone => {}
                    }
                }
            }
        }
        None
    }
}

impl Lingers {
    /// Fires every linger timer due at `now`: each instance whose deadline
    /// has passed is checked in and handed to `on_release`; renewed ones
    /// are re-armed. Returns how many were released.
    pub fn expire(
        &mut self,
        engine: &Engine,
        now: Millis,
        mut on_release: impl FnMut(Release),
    ) -> usize {
        let mut released = 0;
        while let Some(due) = self.poll(engine, now) {
            match due {
                Due::Released(r) => {
                    released += 1;
                    on_release(r);
                }
                Due::Timer(never) => match never {},
            }
        }
        released
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::engine::tests::{engine, line};
    use crate::engine::Request;

    const NOW: Millis = 1_700_000_000_000;

    fn lingering(e: &Engine, handle: &str, linger_ms: u64, now: Millis) -> Grant {
        let mut r = Request::new("F", "user", "host", handle);
        r.linger_ms = linger_ms;
        e.checkout(&r, now).expect("granted")
    }

    #[test]
    fn a_linger_entry_is_one_word() {
        assert_eq!(
            std::mem::size_of::<Entry<Infallible>>(),
            std::mem::size_of::<u64>()
        );
    }

    #[test]
    fn lingers_and_own_timers_fire_in_deadline_order_never_early() {
        let e = engine(vec![line("F", "1.0", Some(2))]);
        let mut t: Timers<&str> = Timers::new(NOW);
        let g = lingering(&e, "a", 1_000, NOW);
        t.track(&g);
        t.arm_timer(NOW + 500, "idle");
        t.arm_timer(NOW + 1_500, "queue");
        assert_eq!(t.len(), 3);
        // A lower bound (the wheel's slot start), never past the earliest.
        assert!(t.next_deadline().is_some_and(|d| d <= NOW + 500));
        assert!(t.poll(&e, NOW + 499).is_none(), "early");
        assert!(matches!(t.poll(&e, NOW + 500), Some(Due::Timer("idle"))));
        assert!(t.poll(&e, NOW + 999).is_none());
        match t.poll(&e, NOW + 1_000) {
            Some(Due::Released(r)) => assert_eq!(Some(r.id), g.id),
            other => panic!("expected the release, got {other:?}"),
        }
        assert!(t.poll(&e, NOW + 1_000).is_none());
        assert!(matches!(t.poll(&e, NOW + 1_500), Some(Due::Timer("queue"))));
        assert!(t.is_empty());
    }

    #[test]
    fn a_renewed_linger_is_rearmed_and_a_gone_one_skipped() {
        let e = engine(vec![line("F", "1.0", Some(2))]);
        let mut t: Timers<()> = Timers::new(NOW);
        t.track(&lingering(&e, "a", 1_000, NOW));
        t.track(&lingering(&e, "b", 1_000, NOW));
        // a renews (deadline moves later: no new timer asked for), b goes.
        assert_eq!(lingering(&e, "a", 1_000, NOW + 600).schedule, None);
        e.checkin("F", "user", "host", "", "b").expect("b held");
        assert!(t.poll(&e, NOW + 1_000).is_none(), "renewed and gone");
        assert_eq!(t.len(), 1, "a's timer re-armed");
        assert!(t.next_deadline().is_some_and(|d| d <= NOW + 1_600));
        assert!(t.poll(&e, NOW + 1_599).is_none(), "renewed to 1 600");
        assert!(matches!(t.poll(&e, NOW + 1_600), Some(Due::Released(_))));
    }

    #[test]
    fn a_cancelled_timer_never_fires_and_lingers_survive_foreign_keys() {
        let e = engine(vec![line("F", "1.0", Some(1))]);
        let mut t: Timers<u32> = Timers::new(NOW);
        let key = t.arm_timer(NOW + 10, 7);
        assert_eq!(t.cancel(key), Some(7));
        assert_eq!(t.cancel(key), None, "twice");
        assert!(t.poll(&e, NOW + 10).is_none());

        // A key from another wheel may name a linger entry here: it stays.
        let mut other: Timers<u32> = Timers::new(NOW);
        let foreign = other.arm_timer(NOW + 5, 1);
        let g = lingering(&e, "a", 100, NOW);
        t.track(&g);
        assert_eq!(t.cancel(foreign), None);
        assert_eq!(t.len(), 1);
        assert!(matches!(t.poll(&e, NOW + 100), Some(Due::Released(_))));
    }

    #[test]
    fn remapped_lingers_fire_on_the_new_engine_and_unmapped_ones_go() {
        let old = engine(vec![line("F", "1.0", Some(3))]);
        let new = engine(vec![line("F", "1.0", Some(3))]);
        let mut t: Timers<&str> = Timers::new(NOW);
        let a = lingering(&old, "a", 1_000, NOW);
        let b = lingering(&old, "b", 1_000, NOW);
        t.track(&a);
        t.track(&b);
        let idle = t.arm_timer(NOW + 500, "idle");
        // Only a moves across; in the new engine it gets another slot, and
        // b's old id names an unrelated instance there.
        let _other = lingering(&new, "other", 0, NOW);
        let mut r = Request::new("F", "user", "host", "a");
        r.linger_ms = 1_000;
        let moved = new.checkout(&r, NOW).expect("granted").id.expect("counted");
        assert_ne!(Some(moved), a.id);
        t.remap_lingers(|id| (Some(id) == a.id).then_some(moved));
        assert_eq!(t.len(), 2, "a's timer and the idle one");
        assert_eq!(t.cancel(idle), Some("idle"), "own timers keep their keys");
        match t.poll(&new, NOW + 1_000) {
            Some(Due::Released(r)) => assert_eq!(r.id, moved),
            other => panic!("expected a's release, got {other:?}"),
        }
        assert!(t.poll(&new, NOW + 1_000).is_none(), "b's timer is gone");
        assert_eq!(new.snapshot(NOW).features[0].pools[0].holders.len(), 1);
    }

    #[test]
    fn lingers_expire_counts_releases() {
        let e = engine(vec![line("F", "1.0", Some(2))]);
        let mut l = Lingers::new(NOW);
        l.track(&lingering(&e, "a", 10, NOW));
        l.track(&lingering(&e, "b", 20, NOW));
        let mut handles = Vec::new();
        let n = l.expire(&e, NOW + 20, |r| {
            handles.push(r.holder.handle().to_string())
        });
        assert_eq!(n, 2);
        assert_eq!(handles, ["a", "b"]);
    }
}
