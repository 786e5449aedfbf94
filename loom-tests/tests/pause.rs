//! loom models of `tally_core::sync::Pause`, the REREAD pause that replaces
//! the barrier: two event loops and a rereader.
//!
//! - No loop touches the old engine (a loom `UnsafeCell`, so loom reports
//!   any access not ordered with the rereader's) between the rereader's
//!   "every loop acknowledged" and its release, and every loop ends on the
//!   new generation.
//! - A pause whose budget runs out names the loops that did not
//!   acknowledge and resumes every loop that did, on the old generation.
//! - A loop that left is not waited for.
//! - Two pauses back to back: a loop sees every generation in turn.
//!
//! Run as the other models: `RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release`.
//! Checked mutation: letting `wait_acks` succeed with one loop still
//! missing makes the first model fail (loom reports the rereader's write
//! to the old engine racing with a loop's).
#![cfg(loom)]

use std::sync::Arc;
use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Condvar, Mutex};
use loom::thread;
use tally_core::sync::{Parked, Pause, PauseError, Published};
use tally_core::ManualClock;

/// Long enough that a park or an acknowledgement wait never ends by
/// itself (loom's timed waits never time out anyway).
const LONG: Duration = Duration::from_secs(60);
/// A budget the manual clock never uses up.
const BUDGET_MS: u64 = 1_000;

/// The old engine: loops on generation 0 mutate it; the rereader moves its
/// contents out while every loop is paused. One cell per loop: the real
/// engine lets loops mutate it at the same time (its own loom models check
/// that); what is checked here is the rereader against every loop.
struct OldEngine([UnsafeCell<u64>; 2]);

impl OldEngine {
    fn new() -> OldEngine {
        OldEngine([UnsafeCell::new(0), UnsafeCell::new(0)])
    }

    /// The rereader moves the held licenses out and retires the engine.
    fn move_out(&self) -> u64 {
        self.0
            .iter()
            .map(|c| c.with_mut(|n| unsafe { std::mem::replace(&mut *n, RETIRED) }))
            .sum()
    }

    /// Whether nothing touched the engine after `move_out`.
    fn retired(&self) -> bool {
        self.0.iter().all(|c| c.with(|n| unsafe { *n }) == RETIRED)
    }

    /// Mutations so far (loops only).
    fn mutations(&self) -> u64 {
        self.0.iter().map(|c| c.with(|n| unsafe { *n })).sum()
    }
}

/// A loop's mio waker, as far as the models need it: the rereader wakes
/// every loop after requesting a pause, and a woken loop's next check sees
/// the request. Sticky: the models wake once.
struct Waker {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Waker {
    fn new() -> Waker {
        Waker {
            woken: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    fn wake_all(&self) {
        *self.woken.lock().unwrap() = true;
        self.cv.notify_all();
    }

    /// The loop's `poll`: sleeps until woken.
    fn sleep(&self) {
        let mut woken = self.woken.lock().unwrap();
        while !*woken {
            woken = self.cv.wait(woken).unwrap();
        }
    }
}

/// What `move_out` leaves in each cell.
const RETIRED: u64 = u64::MAX / 4;

// Safety: every access goes through loom's `UnsafeCell`, which reports any
// two accesses not ordered by happens-before; that report is the check.
unsafe impl Sync for OldEngine {}

/// What a loop does at each wake: the per-wake check, parking while paused
/// and refreshing afterwards, then a mutation of the engine it is on (only
/// the old one is modelled). Returns the generation it is on.
fn turn(
    me: usize,
    pause: &Pause,
    cell: &Published<u64>,
    reader: &mut tally_core::sync::Reader<u64>,
    old: &OldEngine,
) -> u64 {
    if pause.is_requested() {
        while pause.park(me, LONG) == Parked::StillPaused {}
        reader.refresh(cell);
    }
    if **reader.get() == 0 {
        old.0[me].with_mut(|n| unsafe { *n += 1 });
    }
    **reader.get()
}

#[test]
fn no_loop_mutates_while_paused_and_every_loop_adopts() {
    loom::model(|| {
        let pause = Arc::new(Pause::new(2));
        let cell = Arc::new(Published::new(0u64));
        let old = Arc::new(OldEngine::new());
        let waker = Arc::new(Waker::new());
        let loops: Vec<_> = (0..2)
            .map(|me| {
                let (pause, cell, old, waker) =
                    (pause.clone(), cell.clone(), old.clone(), waker.clone());
                thread::spawn(move || {
                    let mut reader = cell.reader();
                    // A loop serves a wake, sleeps until the next, and so
                    // on until it is on the new generation.
                    while turn(me, &pause, &cell, &mut reader, &old) == 0 {
                        waker.sleep();
                    }
                    assert_eq!(reader.version(), 1);
                })
            })
            .collect();
        let clock = ManualClock::new(0);
        let request = pause.request(None).expect("nobody else rereads");
        waker.wake_all();
        let paused = request.wait_acks(&clock, BUDGET_MS).expect("both ack");
        // Move the held licenses: read and retire the old engine.
        assert!(old.move_out() < RETIRED);
        cell.publish(Arc::new(1));
        paused.release();
        for l in loops {
            l.join().unwrap();
        }
        // Nobody touched the old engine after the move.
        assert!(old.retired());
    });
}

#[test]
fn a_timeout_names_the_missing_loops_and_resumes_everybody() {
    loom::model(|| {
        let pause = Arc::new(Pause::new(2));
        let cell = Arc::new(Published::new(0u64));
        let old = Arc::new(OldEngine::new());
        let loops: Vec<_> = (0..2)
            .map(|me| {
                let (pause, cell, old) = (pause.clone(), cell.clone(), old.clone());
                thread::spawn(move || {
                    let mut reader = cell.reader();
                    // Two wakes, then the loop stops looking (a stuck loop).
                    for _ in 0..2 {
                        turn(me, &pause, &cell, &mut reader, &old);
                        thread::yield_now();
                    }
                    reader.version()
                })
            })
            .collect();
        let clock = ManualClock::new(0);
        let request = pause.request(None).expect("nobody else rereads");
        // The budget is already spent: whoever has not acknowledged by now
        // is named.
        let published = match request.wait_acks(&clock, 0) {
            Ok(paused) => {
                old.move_out();
                cell.publish(Arc::new(1));
                paused.release();
                true
            }
            Err(PauseError::NotPaused { loops, within_ms }) => {
                assert_eq!(within_ms, 0);
                assert!(!loops.is_empty() && loops.len() <= 2);
                assert!(loops.windows(2).all(|w| w[0] < w[1]));
                false
            }
            Err(e) => panic!("unexpected {e}"),
        };
        assert!(!pause.is_requested(), "the pause is over either way");
        // Every loop finishes its turns: none is left parked.
        for l in loops {
            let version = l.join().unwrap();
            if !published {
                assert_eq!(version, 0, "nothing was published");
            }
        }
        if !published {
            // The loops went on with the old engine.
            assert!(old.mutations() <= 4);
        }
    });
}

#[test]
fn a_loop_that_left_is_not_waited_for() {
    loom::model(|| {
        let pause = Arc::new(Pause::new(2));
        let cell = Arc::new(Published::new(0u64));
        let old = Arc::new(OldEngine::new());
        let waker = Arc::new(Waker::new());
        let live = {
            let (pause, cell, old, waker) =
                (pause.clone(), cell.clone(), old.clone(), waker.clone());
            thread::spawn(move || {
                let mut reader = cell.reader();
                while turn(0, &pause, &cell, &mut reader, &old) == 0 {
                    waker.sleep();
                }
            })
        };
        let gone = {
            let (pause, cell, old) = (pause.clone(), cell.clone(), old.clone());
            thread::spawn(move || {
                let mut reader = cell.reader();
                turn(1, &pause, &cell, &mut reader, &old);
                // Stops for good (shutdown, or a panic through its guard).
                pause.leave(1);
            })
        };
        let clock = ManualClock::new(0);
        let request = pause.request(None).expect("nobody else rereads");
        waker.wake_all();
        let paused = request
            .wait_acks(&clock, BUDGET_MS)
            .expect("loop 0 acks; loop 1 leaves");
        old.move_out();
        cell.publish(Arc::new(1));
        paused.release();
        live.join().unwrap();
        gone.join().unwrap();
        assert!(old.retired());
    });
}

#[test]
fn two_rereaders_never_overlap() {
    loom::model(|| {
        let pause = Arc::new(Pause::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let reread = |pause: &Pause, inside: &AtomicUsize| match pause.request(Some(0)) {
            Ok(request) => {
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two at once");
                thread::yield_now();
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(request);
                true
            }
            Err(e) => {
                assert_eq!(e, PauseError::Busy);
                false
            }
        };
        let other = {
            let (pause, inside) = (pause.clone(), inside.clone());
            thread::spawn(move || reread(&pause, &inside))
        };
        let mine = reread(&pause, &inside);
        let theirs = other.join().unwrap();
        assert!(mine || theirs, "the first one always gets in");
        assert!(!pause.is_requested());
    });
}

/// A loop's waker that counts wake-ups, for a model that wakes more than
/// once: a loop sleeps until a wake-up later than the last it saw.
struct CountingWaker {
    wakes: Mutex<u64>,
    cv: Condvar,
}

impl CountingWaker {
    fn wake_all(&self) {
        *self.wakes.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    /// Wake-ups so far (a loop reads this before its per-wake check).
    fn seen(&self) -> u64 {
        *self.wakes.lock().unwrap()
    }

    fn sleep(&self, seen: u64) {
        let mut wakes = self.wakes.lock().unwrap();
        while *wakes <= seen {
            wakes = self.cv.wait(wakes).unwrap();
        }
    }
}

/// Two REREADs back to back: the second may be requested while the loop
/// is still inside `park` for the first. The loop must still see every
/// generation in turn (it maps its held ids with each generation's map
/// from the one before), never jump from 0 to 2. Checked mutation: letting
/// `park` acknowledge the second pause without returning (as it did
/// before) makes this fail.
#[test]
fn back_to_back_pauses_never_skip_a_generation() {
    loom::model(|| {
        let pause = Arc::new(Pause::new(1));
        let cell = Arc::new(Published::new(0u64));
        let waker = Arc::new(CountingWaker {
            wakes: Mutex::new(0),
            cv: Condvar::new(),
        });
        let l = {
            let (pause, cell, waker) = (pause.clone(), cell.clone(), waker.clone());
            thread::spawn(move || {
                let mut reader = cell.reader();
                loop {
                    let seen = waker.seen();
                    if pause.is_requested() {
                        while pause.park(0, LONG) == Parked::StillPaused {}
                        let before = reader.version();
                        if reader.refresh(&cell) {
                            assert_eq!(reader.version(), before + 1, "skipped one");
                            assert_eq!(**reader.get(), reader.version());
                        }
                    }
                    if reader.version() == 2 {
                        return;
                    }
                    waker.sleep(seen);
                }
            })
        };
        let clock = ManualClock::new(0);
        for generation in 1..=2u64 {
            let request = pause.request(None).expect("one rereader");
            waker.wake_all();
            let paused = request.wait_acks(&clock, BUDGET_MS).expect("the loop acks");
            cell.publish(Arc::new(generation));
            paused.release();
        }
        l.join().unwrap();
    });
}
