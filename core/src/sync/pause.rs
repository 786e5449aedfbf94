//! Pausing every event loop for a REREAD, with a timeout instead of a
//! barrier.
//!
//! A REREAD builds a new engine, then moves every held license from the
//! old engine to the new one. While it moves them no loop may check out,
//! check in or expire anything in the old engine, or that change would be
//! lost. [`Pause`] is how the rereader gets that quiet moment — and gives
//! up, rather than hanging, when a loop does not answer.
//!
//! # Protocol
//!
//! Every state change happens under one mutex; the atomic `requested` is
//! only a hint that lets a loop's per-wake check be one load.
//!
//! 1. The rereader calls [`Pause::request`]: if no pause is in progress it
//!    starts epoch `e + 1` (every loop not acknowledged, except the
//!    rereader's own loop and loops that [left](Pause::leave)), sets
//!    `requested`, and returns a [`PauseRequest`]. If one is in progress it
//!    gets [`PauseError::Busy`]: one reread at a time. The caller must then
//!    wake every loop (a server: each loop's poll waker).
//! 2. Each loop checks [`Pause::is_requested`] once per wake, before it
//!    touches the engine. When set it calls [`Pause::park`], which
//!    acknowledges (under the lock) and waits — in waits of a bounded
//!    length, so the loop can look at a shutdown flag between them — until
//!    the pause ends. The loop mutates nothing between its acknowledgement
//!    and `park`'s return of [`Parked::Resumed`].
//! 3. The rereader calls [`PauseRequest::wait_acks`] with a time budget.
//!    When every loop has acknowledged it gets [`Paused`]: from then until
//!    `Paused` is released or dropped, no loop touches the old generation.
//!    It moves the licenses, publishes the new generation (a
//!    [`Published`](super::Published)), and releases. If the budget runs
//!    out first it gets [`PauseError::NotPaused`] naming the loops that did
//!    not acknowledge, and the pause is already over: every loop that
//!    parked is resumed, on the generation it had.
//! 4. Releasing (or aborting) ends the epoch under the lock, clears
//!    `requested` and wakes every parked loop. A resumed loop refreshes its
//!    [`Reader`](super::Reader): since the publish happened before the
//!    release, which it saw under the lock, it gets the new generation.
//!
//! A loop that stops for good (at shutdown; on a panic too, if it calls it
//! from a drop guard) calls [`Pause::leave`] and is never waited for again. A loop that
//! is stuck, or died without leaving, costs one failed REREAD, never a hung
//! server. A loop that acknowledges late — after the request was aborted —
//! finds no pause in progress and goes on at once; one that is still parked
//! when the next pause starts returns [`Parked::Resumed`] for the one it
//! acknowledged (it refreshes, then finds the next one requested and parks
//! again), so a loop sees every generation in turn, never skipping one.
//!
//! # Why it is correct
//!
//! A loop's mutations before its acknowledgement happen-before the
//! rereader's `wait_acks` seeing it (same mutex); after it, the loop waits
//! in `park` until it sees, under the same mutex, that the epoch ended —
//! which the rereader only does when it is finished with the old engine.
//! So every old-engine access of the rereader between "all acknowledged"
//! and release is ordered after every loop's last mutation before the
//! pause and before every loop's first access after it. The loom models in
//! `loom-tests/tests/pause.rs` check this (loops writing a shared cell that
//! the rereader writes while paused), that every loop ends on the new
//! generation, that a timeout resumes everybody, and that a loop that left
//! is not waited for; they fail when one acknowledgement is not waited for.
//!
//! # Time
//!
//! The rereader's budget is measured on the [`Clock`] it passes (core reads
//! no clock itself); the waits are a condition variable's timed waits. The
//! hot path — [`Pause::is_requested`] — is one relaxed load.

use std::fmt;
use std::time::Duration;

use super::{lock, AtomicU64, Condvar, Mutex, MutexGuard, Ordering};
use crate::clock::{Clock, Millis};

/// The pause protocol of one server's event loops. See the module docs.
pub struct Pause {
    /// The epoch in progress, 0 when none: a hint for the loops' per-wake
    /// check. Written only under the `state` lock.
    requested: AtomicU64,
    state: Mutex<State>,
    /// Signalled when a loop acknowledges or leaves (the rereader waits).
    acked: Condvar,
    /// Signalled when a pause ends (parked loops wait).
    resumed: Condvar,
}

#[derive(Debug)]
struct State {
    /// The latest pause's number; 0 before the first.
    epoch: u64,
    /// Whether pause `epoch` is in progress.
    active: bool,
    /// Per loop: acknowledged pause `epoch` (meaningful while `active`).
    acked: Vec<bool>,
    /// Per loop: stopped for good, never waited for.
    left: Vec<bool>,
}

impl State {
    /// Loops the pause in progress still waits for, in index order.
    fn missing(&self) -> Vec<usize> {
        (0..self.acked.len())
            .filter(|&i| !self.acked[i] && !self.left[i])
            .collect()
    }
}

/// What [`Pause::park`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// No pause was in progress; the loop goes on at once.
    NotRequested,
    /// The loop acknowledged and that pause has ended (released or
    /// aborted; another may have started since): refresh the published
    /// generation, then go on (checking [`Pause::is_requested`] again).
    Resumed,
    /// The loop acknowledged, and the pause is still in progress after one
    /// bounded wait: the loop must still touch nothing; call `park` again.
    StillPaused,
}

/// Why a pause could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PauseError {
    /// Another pause (another REREAD) is in progress.
    #[error("another reread is in progress")]
    Busy,
    /// These loops did not acknowledge within the budget; the pause was
    /// called off and every other loop resumed.
    #[error("{} did not pause within {within_ms} ms", Loops(.loops))]
    NotPaused {
        /// The loops that did not acknowledge, in index order.
        loops: Vec<usize>,
        /// The budget, in ms.
        within_ms: u64,
    },
}

/// Formats loop indices as "loop 1" or "loops 1, 3".
struct Loops<'a>(&'a [usize]);

impl fmt::Display for Loops<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.len() == 1 { "loop " } else { "loops " })?;
        for (n, i) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

impl Pause {
    /// The protocol for `loops` event loops, numbered `0..loops`.
    pub fn new(loops: usize) -> Pause {
        Pause {
            requested: AtomicU64::new(0),
            state: Mutex::new(State {
                epoch: 0,
                active: false,
                acked: vec![false; loops],
                left: vec![false; loops],
            }),
            acked: Condvar::new(),
            resumed: Condvar::new(),
        }
    }

    /// Number of loops.
    pub fn loops(&self) -> usize {
        lock(&self.state).acked.len()
    }

    /// Whether a pause is in progress: a loop's per-wake check, one relaxed
    /// load. When true, call [`park`](Self::park) before touching the
    /// engine.
    #[inline]
    pub fn is_requested(&self) -> bool {
        // Relaxed: only a hint. Acknowledging and resuming happen under
        // the lock, which orders everything; a stale `false` only delays
        // the acknowledgement to the next wake (the rereader wakes every
        // loop after requesting).
        self.requested.load(Ordering::Relaxed) != 0
    }

    /// Loop `me` acknowledges the pause in progress, if any, and waits for
    /// it to end in timed waits of at most `wait` each: when one times out
    /// with the pause still on, it returns [`Parked::StillPaused`] (the
    /// loop checks for shutdown, say, and parks again). See [`Parked`].
    ///
    /// # Panics
    ///
    /// If `me` is not a loop number.
    pub fn park(&self, me: usize, wait: Duration) -> Parked {
        let mut state = lock(&self.state);
        if !state.active {
            return Parked::NotRequested;
        }
        let epoch = state.epoch;
        if !state.acked[me] {
            // Everything this loop did before is ordered before the
            // rereader's sight of this (the lock).
            state.acked[me] = true;
            self.acked.notify_all();
        }
        loop {
            let (next, timeout) = self
                .resumed
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            // The pause this loop acknowledged is over, even if another
            // has started since: the loop must refresh to what that one
            // published before it acknowledges the next, or it would skip
            // a generation (and the id map from the one it holds).
            if !state.active || state.epoch != epoch {
                return Parked::Resumed;
            }
            if timeout.timed_out() {
                return Parked::StillPaused;
            }
        }
    }

    /// Loop `me` has stopped for good: no pause waits for it again
    /// (including the one in progress).
    ///
    /// # Panics
    ///
    /// If `me` is not a loop number.
    pub fn leave(&self, me: usize) {
        let mut state = lock(&self.state);
        state.left[me] = true;
        self.acked.notify_all();
    }

    /// Starts a pause, unless one is in progress ([`PauseError::Busy`]).
    /// `own` is the rereader's own loop, if it runs on one: it counts as
    /// acknowledged. Wake every loop after this so each reaches
    /// [`park`](Self::park) soon.
    ///
    /// # Panics
    ///
    /// If `own` is not a loop number.
    pub fn request(&self, own: Option<usize>) -> Result<PauseRequest<'_>, PauseError> {
        let mut state = lock(&self.state);
        if state.active {
            return Err(PauseError::Busy);
        }
        state.epoch += 1;
        state.active = true;
        state.acked.fill(false);
        if let Some(own) = own {
            state.acked[own] = true;
        }
        // Relaxed: a hint (see `is_requested`); written under the lock.
        self.requested.store(state.epoch, Ordering::Relaxed);
        Ok(PauseRequest {
            pause: self,
            epoch: state.epoch,
        })
    }

    /// Ends the pause in progress: clears the hint and resumes every parked
    /// loop.
    fn end(&self, mut state: MutexGuard<'_, State>, epoch: u64) {
        debug_assert!(state.active && state.epoch == epoch);
        state.active = false;
        // Relaxed: a hint; the loops see the end under the lock.
        self.requested.store(0, Ordering::Relaxed);
        drop(state);
        self.resumed.notify_all();
    }
}

impl fmt::Debug for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Pause")
            .field("epoch", &state.epoch)
            .field("active", &state.active)
            .field("missing", &state.missing())
            .finish()
    }
}

/// A pause asked for, not yet acknowledged by every loop. Wait for it
/// with [`wait_acks`](Self::wait_acks); dropping it calls the pause off.
#[must_use = "dropping a request calls the pause off"]
pub struct PauseRequest<'a> {
    pause: &'a Pause,
    epoch: u64,
}

impl<'a> PauseRequest<'a> {
    /// The loops that have not acknowledged yet, in index order.
    pub fn missing(&self) -> Vec<usize> {
        lock(&self.pause.state).missing()
    }

    /// Waits until every loop has acknowledged, at most `within_ms` by
    /// `clock` (a budget of 0 only looks). On success every loop is
    /// parked until the returned [`Paused`] is released or dropped. On
    /// [`PauseError::NotPaused`] the pause has been called off and every
    /// parked loop resumed.
    pub fn wait_acks(self, clock: &dyn Clock, within_ms: u64) -> Result<Paused<'a>, PauseError> {
        let deadline: Millis = clock.now_ms().saturating_add(within_ms);
        let pause = self.pause;
        let mut state = lock(&pause.state);
        loop {
            let missing = state.missing();
            if missing.is_empty() {
                drop(state);
                let paused = Paused {
                    pause,
                    epoch: self.epoch,
                };
                std::mem::forget(self); // the pause goes on, in `paused`
                return Ok(paused);
            }
            let now = clock.now_ms();
            if now >= deadline {
                drop(state);
                drop(self); // calls the pause off
                return Err(PauseError::NotPaused {
                    loops: missing,
                    within_ms,
                });
            }
            state = pause
                .acked
                .wait_timeout(state, Duration::from_millis(deadline - now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for PauseRequest<'_> {
    fn drop(&mut self) {
        self.pause.end(lock(&self.pause.state), self.epoch);
    }
}

impl fmt::Debug for PauseRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PauseRequest")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Every loop is parked: nothing but the holder of this touches the old
/// generation. Publish the new one, then [`release`](Self::release) (or
/// drop: a rereader that panics resumes the loops too).
#[must_use = "dropping it resumes the loops at once"]
pub struct Paused<'a> {
    pause: &'a Pause,
    epoch: u64,
}

impl Paused<'_> {
    /// The pause's number (1 for the first).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Resumes every loop. What was published before this is what each
    /// resumed loop refreshes to.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.pause.end(lock(&self.pause.state), self.epoch);
    }
}

impl fmt::Debug for Paused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paused")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    /// Long enough never to end a test's wait by itself.
    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn nothing_requested_parks_nobody() {
        let pause = Pause::new(2);
        assert!(!pause.is_requested());
        assert_eq!(pause.park(0, LONG), Parked::NotRequested);
    }

    #[test]
    fn one_pause_at_a_time() {
        let pause = Pause::new(2);
        let first = pause.request(Some(0)).expect("first");
        assert!(pause.is_requested());
        assert_eq!(pause.request(Some(1)).err(), Some(PauseError::Busy));
        drop(first);
        assert!(!pause.is_requested(), "dropping a request calls it off");
        let again = pause.request(None).expect("after the first ended");
        assert_eq!(again.missing(), vec![0, 1], "acks start afresh");
    }

    #[test]
    fn a_loop_that_does_not_ack_fails_the_pause_and_the_rest_resume() {
        let clock = ManualClock::new(5_000);
        let pause = Arc::new(Pause::new(3));
        let request = pause.request(Some(0)).expect("request");
        let parked = {
            let pause = Arc::clone(&pause);
            std::thread::spawn(move || pause.park(1, LONG))
        };
        while request.missing() != vec![2] {
            std::thread::yield_now();
        }
        // The budget is spent (the manual clock does not move): one look.
        let err = request.wait_acks(&clock, 0).expect_err("loop 2 never acks");
        assert_eq!(
            err,
            PauseError::NotPaused {
                loops: vec![2],
                within_ms: 0
            }
        );
        assert_eq!(err.to_string(), "loop 2 did not pause within 0 ms");
        assert_eq!(parked.join().expect("loop 1"), Parked::Resumed);
        assert!(!pause.is_requested());
        // Loop 2 comes by late: nothing to wait for.
        assert_eq!(pause.park(2, LONG), Parked::NotRequested);
    }

    #[test]
    fn every_loop_acked_then_released() {
        let clock = ManualClock::new(0);
        let pause = Arc::new(Pause::new(3));
        let request = pause.request(Some(1)).expect("request");
        let loops: Vec<_> = [0, 2]
            .into_iter()
            .map(|i| {
                let pause = Arc::clone(&pause);
                std::thread::spawn(move || pause.park(i, LONG))
            })
            .collect();
        let paused = request.wait_acks(&clock, 60_000).expect("all ack");
        assert_eq!(paused.epoch(), 1);
        assert!(pause.is_requested(), "still paused until released");
        paused.release();
        for l in loops {
            assert_eq!(l.join().expect("loop"), Parked::Resumed);
        }
        assert!(!pause.is_requested());
    }

    #[test]
    fn a_bounded_park_reports_still_paused() {
        let pause = Pause::new(2);
        let request = pause.request(Some(0)).expect("request");
        assert_eq!(pause.park(1, Duration::ZERO), Parked::StillPaused);
        assert!(request.missing().is_empty(), "the ack stands");
        let paused = request
            .wait_acks(&ManualClock::new(0), 0)
            .expect("acked before");
        drop(paused);
        assert_eq!(pause.park(1, Duration::ZERO), Parked::NotRequested);
    }

    #[test]
    fn a_loop_that_left_is_not_waited_for() {
        let pause = Pause::new(2);
        pause.leave(1);
        let request = pause.request(Some(0)).expect("request");
        assert!(request.missing().is_empty());
        assert!(request.wait_acks(&ManualClock::new(0), 0).is_ok());
    }

    #[test]
    fn several_loops_missing_are_all_named() {
        let pause = Pause::new(4);
        let request = pause.request(None).expect("request");
        let err = request
            .wait_acks(&ManualClock::new(0), 0)
            .expect_err("nobody acked");
        assert_eq!(
            err.to_string(),
            "loops 0, 1, 2, 3 did not pause within 0 ms"
        );
        assert!(!pause.is_requested());
    }
}
