//! Linger expiry: one timer wheel per thread, releasing each lingering
//! instance at its deadline.
//!
//! The engine keeps deadlines in the slot words; a [`Lingers`] keeps a timer
//! for each deadline it was told about ([`Grant::schedule`]). When a timer
//! fires, [`Engine::expire`] decides: released (the deadline passed), later
//! (renewed since: the timer is re-armed at the new deadline) or gone. So a
//! renewal never searches the wheel, and a renewal that moves a deadline
//! *earlier* (returning a license with linger 1 s) asks for one new timer.
//!
//! A server runs one `Lingers` per event loop and sleeps until
//! [`Lingers::next_deadline`]. Lateness is one wheel tick ([`TICK_MS`]) plus
//! however late the caller polls.

use super::{Engine, Expired, Grant, InstanceId, Release};
use crate::clock::Millis;
use crate::wheel::{Wheel, TICK_MS};

/// Per-thread linger timers. Not `Sync`: each thread owns its own.
#[derive(Debug)]
pub struct Lingers {
    wheel: Wheel<u64>,
    /// Unix ms of tick 0.
    origin_ms: Millis,
}

impl Lingers {
    /// Timers counted from `now`.
    pub fn new(now: Millis) -> Lingers {
        Lingers::with_capacity(now, 0)
    }

    /// Timers counted from `now`, with room for `timers` without allocating.
    pub fn with_capacity(now: Millis, timers: usize) -> Lingers {
        Lingers {
            wheel: Wheel::with_capacity(timers),
            origin_ms: now,
        }
    }

    /// Outstanding timers (including ones a renewal or check-in made stale).
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

    /// Arms a timer if the grant asks for one.
    pub fn track(&mut self, grant: &Grant) {
        if let (Some(id), Some(at)) = (grant.id, grant.schedule) {
            self.arm(id, at);
        }
    }

    /// Arms a timer for instance `id` at `at` (Unix ms), rounded up to a tick.
    pub fn arm(&mut self, id: InstanceId, at: Millis) {
        let tick = at.saturating_sub(self.origin_ms).div_ceil(TICK_MS);
        self.wheel.insert(tick, id.to_bits());
    }

    /// The earliest time a timer may fire (Unix ms), to sleep until.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.wheel
            .next_expiration()
            .map(|t| self.origin_ms.saturating_add(t.saturating_mul(TICK_MS)))
    }

    /// Fires every timer due at `now`: each instance whose deadline has
    /// passed is checked in and handed to `on_release`; renewed ones are
    /// re-armed. Returns how many were released.
    pub fn expire(
        &mut self,
        engine: &Engine,
        now: Millis,
        mut on_release: impl FnMut(Release),
    ) -> usize {
        let tick = self.tick_of(now);
        let mut released = 0;
        while let Some((_, bits)) = self.wheel.poll(tick) {
            let id = InstanceId::from_bits(bits);
            match engine.expire(id, now) {
                Expired::Released(r) => {
                    released += 1;
                    on_release(r);
                }
                Expired::Later(at) => self.arm(id, at),
                Expired::Gone => {}
            }
        }
        released
    }
}
