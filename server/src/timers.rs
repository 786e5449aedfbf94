//! One timer service per event loop: every deadline a loop keeps, in one
//! of core's timer wheels ([`tally_core::engine::Timers`]).
//!
//! Each loop (`net/mod.rs`) owns one and arms everything below in it;
//! its timer step drains what is due, in deadline order, and acts on it.
//!
//! - **Linger expiry** (an instance id): armed from a grant's `schedule` or
//!   a check-in's deadline. Whether it is due is the engine's call, as in
//!   `Lingers`: released when its deadline passed, re-armed when it was
//!   renewed, dropped when it is gone.
//! - **Idle TIMEOUT checks** (a connection's slab key and serial): one per
//!   connection while any TIMEOUT applies.
//! - **Drain ends** (the same): a closing connection is drained for at
//!   most `DRAIN_MS`.
//! - **Queue-wait deadlines** (the waiter's connection and sequence
//!   number; the connection knows the feature it waits for).
//! - **Accept retries**, while accepting fails for want of descriptors.
//!
//! A timer fires at its deadline, at most one wheel tick
//! ([`TICK_MS`](tally_core::wheel::TICK_MS)) late plus however late the
//! loop polls, never early. The loop sleeps until [`LoopTimers::next_deadline`].
//!
//! Stale timers: [`LoopTimers::arm`] returns a key, which the connection
//! keeps (`Conn::idle_timer`, `drain_timer`, `wait_timer`; the accept
//! stall its retry's); a loop cancels the timers of a connection it closes
//! and of a waiter it answers, so they never fire and their entries are
//! freed at once (an O(1) unlink). The slab key and serial (or sequence
//! number) in each timer are the second line: a loop checks them against
//! the connection before acting.
//!
//! A REREAD: each loop moves its own linger timers to the new engine's ids
//! ([`LoopTimers::remap_lingers`]); its own timers stay as they are.
//!
//! Size: a [`Timer`] is 16 bytes, so a wheel entry costs what a bare
//! linger timer did (40 bytes with its links).

use tally_core::engine::{Due, Engine, InstanceId, Release, Timers};
use tally_core::wheel::{TimerKey, TICK_MS};
use tally_core::Millis;

/// One of the loop's own timers (linger timers are the engine's).
///
/// Connection slab keys are stored as `u32`: a loop has one connection per
/// file descriptor, and descriptors are `c_int`s. The fields sit in the
/// variants themselves (not in a shared struct) so the enum packs into 16
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Check whether connection `key` (serial `serial`) has been idle past
    /// a TIMEOUT.
    Idle {
        /// Slab key of the connection.
        key: u32,
        /// Its serial number (slab keys are reused).
        serial: u64,
    },
    /// Connection `key` (serial `serial`) has drained long enough: close it.
    DrainEnd {
        /// Slab key of the connection.
        key: u32,
        /// Its serial number.
        serial: u64,
    },
    /// The queued checkout `seq` of connection `key` gives up.
    QueueWait {
        /// Slab key of the waiting connection.
        key: u32,
        /// The waiter's queue-wide sequence number.
        seq: u64,
    },
    /// Try accepting again.
    AcceptRetry,
}

impl Timer {
    /// An idle check of connection `key`.
    pub(crate) fn idle(key: usize, serial: u64) -> Timer {
        Timer::Idle {
            key: conn_key(key),
            serial,
        }
    }

    /// The end of connection `key`'s drain.
    pub(crate) fn drain_end(key: usize, serial: u64) -> Timer {
        Timer::DrainEnd {
            key: conn_key(key),
            serial,
        }
    }

    /// The deadline of connection `key`'s queued checkout `seq`.
    pub(crate) fn queue_wait(key: usize, seq: u64) -> Timer {
        Timer::QueueWait {
            key: conn_key(key),
            seq,
        }
    }
}

fn conn_key(key: usize) -> u32 {
    u32::try_from(key).expect("a connection per descriptor: slab keys fit in u32")
}

/// What came due.
#[derive(Debug)]
pub(crate) enum Fired {
    /// A lingering instance's deadline passed; the engine checked it in.
    Released(Release),
    /// One of the loop's own timers.
    Timer(Timer),
}

/// A loop's timers. See the module docs.
#[derive(Debug)]
pub(crate) struct LoopTimers {
    timers: Timers<Timer>,
    /// While [`drain_due`](Self::drain_due) runs at `now`: `now + TICK_MS`,
    /// the earliest a timer armed meanwhile may be due, so a timer re-armed
    /// from its own firing waits for the next drain. 0 otherwise.
    floor: Millis,
}

impl LoopTimers {
    /// Timers counted from `now`, with room for `timers` without
    /// allocating.
    pub(crate) fn with_capacity(now: Millis, timers: usize) -> LoopTimers {
        LoopTimers {
            timers: Timers::with_capacity(now, timers),
            floor: 0,
        }
    }

    /// Armed timers, stale linger timers included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.timers.len()
    }

    /// Arms a linger timer if the grant asks for one.
    #[cfg(test)]
    pub(crate) fn track(&mut self, grant: &tally_core::engine::Grant) {
        self.timers.track(grant);
    }

    /// Arms a linger timer for instance `id` at `at` (Unix ms).
    pub(crate) fn arm_linger(&mut self, id: InstanceId, at: Millis) {
        self.timers.arm(id, at);
    }

    /// Moves the linger timers to a new engine's ids (a REREAD): see
    /// [`Timers::remap_lingers`]. The loop's own timers stay.
    pub(crate) fn remap_lingers(&mut self, map: impl FnMut(InstanceId) -> Option<InstanceId>) {
        self.timers.remap_lingers(map);
    }

    /// Arms `timer` at `at` (Unix ms); during a drain at `now`, no earlier
    /// than `now + TICK_MS`. The key cancels it.
    pub(crate) fn arm(&mut self, timer: Timer, at: Millis) -> TimerKey {
        self.timers.arm_timer(at.max(self.floor), timer)
    }

    /// Cancels timer `key`; returns it if it had not fired yet.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<Timer> {
        self.timers.cancel(key)
    }

    /// When the loop must wake next (Unix ms): never later than the
    /// earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.timers.next_deadline()
    }

    /// Hands every timer due at `now` to `f`, in deadline order, with the
    /// service itself so `f` can arm and cancel. A timer `f` arms with
    /// [`arm`](Self::arm) comes due in a later drain, never in this one (a
    /// linger timer it arms is the engine's call, as always).
    pub(crate) fn drain_due(
        &mut self,
        engine: &Engine,
        now: Millis,
        mut f: impl FnMut(&mut LoopTimers, Fired),
    ) {
        self.floor = now.saturating_add(TICK_MS);
        while let Some(due) = self.timers.poll(engine, now) {
            let fired = match due {
                Due::Released(r) => Fired::Released(r),
                Due::Timer(t) => Fired::Timer(t),
            };
            f(self, fired);
        }
        self.floor = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::engine::{EngineConfig, Grant, Request};
    use tally_core::license::parse_str;

    const NOW: Millis = 1_700_000_000_000;

    fn engine() -> Engine {
        let set = parse_str("t.lic", "FEATURE F VENDOR 1.0 permanent 2\n");
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        Engine::new(&set, EngineConfig::default())
    }

    fn lingering(e: &Engine, handle: &str, linger_ms: u64, now: Millis) -> Grant {
        let mut r = Request::new("F", "user", "host", handle);
        r.linger_ms = linger_ms;
        e.checkout(&r, now).expect("granted")
    }

    /// Drains at `now`; what fired, releases shown by handle.
    fn fired_at(t: &mut LoopTimers, e: &Engine, now: Millis) -> Vec<String> {
        let mut out = Vec::new();
        t.drain_due(e, now, |_, f| {
            out.push(match f {
                Fired::Released(r) => format!("released {}", r.holder.handle()),
                Fired::Timer(timer) => format!("{timer:?}"),
            })
        });
        out
    }

    #[test]
    fn a_timer_packs_into_two_words() {
        assert_eq!(std::mem::size_of::<Timer>(), 16);
    }

    #[test]
    fn each_kind_fires_at_its_deadline_and_not_before() {
        let e = engine();
        let mut t = LoopTimers::with_capacity(NOW, 8);
        t.track(&lingering(&e, "a", 30_000, NOW));
        t.arm(Timer::idle(3, 7), NOW + 10_000);
        t.arm(Timer::queue_wait(4, 42), NOW + 20_000);
        t.arm(Timer::drain_end(5, 8), NOW + 2_000);
        t.arm(Timer::AcceptRetry, NOW + 100);
        assert_eq!(t.len(), 5);
        let due = [
            (NOW + 100, "AcceptRetry"),
            (NOW + 2_000, "DrainEnd { key: 5, serial: 8 }"),
            (NOW + 10_000, "Idle { key: 3, serial: 7 }"),
            (NOW + 20_000, "QueueWait { key: 4, seq: 42 }"),
            (NOW + 30_000, "released a"),
        ];
        for (at, what) in due {
            assert!(
                t.next_deadline().is_some_and(|d| d <= at),
                "sleeps past {what}"
            );
            assert_eq!(
                fired_at(&mut t, &e, at - 1),
                Vec::<String>::new(),
                "{what} early"
            );
            assert_eq!(fired_at(&mut t, &e, at), [what]);
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_late_poll_fires_everything_due_in_deadline_order() {
        let e = engine();
        let mut t = LoopTimers::with_capacity(NOW, 0);
        t.arm(Timer::idle(1, 1), NOW + 300);
        t.track(&lingering(&e, "a", 200, NOW));
        t.arm(Timer::AcceptRetry, NOW + 100);
        assert_eq!(
            fired_at(&mut t, &e, NOW + 5_000),
            ["AcceptRetry", "released a", "Idle { key: 1, serial: 1 }"]
        );
    }

    #[test]
    fn cancelled_timers_of_closed_connections_and_answered_waiters_never_fire() {
        let e = engine();
        let mut t = LoopTimers::with_capacity(NOW, 0);
        let idle = t.arm(Timer::idle(1, 1), NOW + 100);
        let drain = t.arm(Timer::drain_end(1, 1), NOW + 100);
        let wait = t.arm(Timer::queue_wait(2, 9), NOW + 100);
        // Connection 1 closes; connection 2's waiter is served.
        assert_eq!(t.cancel(idle), Some(Timer::idle(1, 1)));
        assert_eq!(t.cancel(drain), Some(Timer::drain_end(1, 1)));
        assert_eq!(t.cancel(wait), Some(Timer::queue_wait(2, 9)));
        // Slab key 1 is reused by a new connection: only its timer fires.
        t.arm(Timer::idle(1, 2), NOW + 100);
        assert_eq!(t.len(), 1, "cancelled entries are freed at once");
        assert_eq!(
            fired_at(&mut t, &e, NOW + 100),
            ["Idle { key: 1, serial: 2 }"]
        );
        assert_eq!(t.cancel(idle), None, "a stale key names nothing");
    }

    #[test]
    fn linger_timers_ask_the_engine() {
        let e = engine();
        let mut t = LoopTimers::with_capacity(NOW, 0);
        t.track(&lingering(&e, "renewed", 1_000, NOW));
        t.track(&lingering(&e, "returned", 1_000, NOW));
        // One is renewed (its deadline moves to +1 500), one checked in.
        assert_eq!(lingering(&e, "renewed", 1_000, NOW + 500).schedule, None);
        e.checkin("F", "user", "host", "", "returned")
            .expect("held");
        assert_eq!(fired_at(&mut t, &e, NOW + 1_000), Vec::<String>::new());
        assert_eq!(t.len(), 1, "the renewed one is re-armed");
        assert_eq!(fired_at(&mut t, &e, NOW + 1_499), Vec::<String>::new());
        assert_eq!(fired_at(&mut t, &e, NOW + 1_500), ["released renewed"]);
        // A linger re-armed by hand (a check-in with a deadline) fires too.
        let g = lingering(&e, "again", 50, NOW + 2_000);
        t.arm_linger(g.id.expect("counted"), NOW + 2_050);
        assert_eq!(fired_at(&mut t, &e, NOW + 2_050), ["released again"]);
    }

    #[test]
    fn a_timer_rearmed_from_its_firing_waits_for_the_next_drain() {
        let e = engine();
        let mut t = LoopTimers::with_capacity(NOW, 0);
        t.arm(Timer::idle(1, 1), NOW + 10);
        let mut fired = 0;
        t.drain_due(&e, NOW + 10, |t, f| {
            fired += 1;
            if let Fired::Timer(timer) = f {
                // Still idle: check again "now" (the loop re-arms from
                // last_seen, which may be in the past).
                t.arm(timer, NOW);
            }
        });
        assert_eq!(fired, 1, "not again in the same drain");
        assert_eq!(fired_at(&mut t, &e, NOW + 10), Vec::<String>::new());
        assert_eq!(
            fired_at(&mut t, &e, NOW + 10 + TICK_MS),
            ["Idle { key: 1, serial: 1 }"]
        );
        // Outside a drain there is no floor: a past deadline is due at once.
        t.arm(Timer::AcceptRetry, NOW);
        assert_eq!(fired_at(&mut t, &e, NOW + 11), ["AcceptRetry"]);
    }
}
