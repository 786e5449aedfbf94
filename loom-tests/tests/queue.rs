//! loom model of the queue's wake-up (`server/src/queue.rs`): a checkout
//! finds the pool full and queues itself on one loop while another loop
//! checks the last license in. The waiter must not be left queued with the
//! license free: either its loop, trying it once more after counting it,
//! gets the license, or the releasing loop sees it counted and bumps the
//! epoch (and wakes every loop), so its loop tries it again.
//!
//! The server crate is not under loom: the protocol is written out here
//! with the same atomics and orderings as `Queues::push`, `to_try_on` and
//! `released` (the real engine's checkout and check-in around them).
//! Checked mutations: without the fence in `released`, loom finds the
//! waiter queued, the license free and the releasing loop blind to it.
//! Without the one in `push` the model still passes: the retry's
//! read-modify-write of the pool's counter, ordered after the release's in
//! the counter's modification order, publishes the count. The fence is
//! kept so the protocol does not hang on how the engine counts.
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use tally_core::engine::{Engine, EngineConfig, Request};
use tally_core::license::{LicenseSet, PoolLine, Version};

const NOW: u64 = 1_000;

/// F: one license.
fn engine() -> Engine {
    let line = PoolLine::new("F", "V", Version::parse("1.0").unwrap(), Some(1));
    let set = LicenseSet {
        source: "loom".into(),
        pools: vec![line],
        ..Default::default()
    };
    Engine::new(&set, EngineConfig::default())
}

/// The queue's shared counters: waiters (all loops) and the epoch.
#[derive(Default)]
struct Queue {
    waiting: AtomicUsize,
    epoch: AtomicU64,
}

impl Queue {
    /// `Queues::push`: counted, then the fence (the loop tries it next).
    fn push(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// `Queues::released`: the fence, then whether somebody waits.
    fn released(&self) -> bool {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.epoch.fetch_add(1, Ordering::Release);
        true
    }
}

#[test]
fn a_waiter_queued_while_the_license_comes_back_is_not_missed() {
    loom::model(|| {
        let e = Arc::new(engine());
        let q = Arc::new(Queue::default());
        assert!(e.checkout(&Request::new("F", "u", "h", "a"), NOW).is_ok());
        let (e2, q2) = (e.clone(), q.clone());
        let releasing = thread::spawn(move || {
            assert!(e2.checkin("F", "u", "h", "", "a").is_ok());
            q2.released()
        });
        let b = Request::new("F", "u", "h", "b");
        // The waiter's loop: a full pool queues it, then it is tried once
        // more at the end of the turn, with the epoch read first.
        let (served, tried_at) = match e.checkout(&b, NOW) {
            Ok(_) => (true, None),
            Err(_) => {
                q.push();
                let tried_at = q.epoch.load(Ordering::Acquire);
                (e.checkout(&b, NOW).is_ok(), Some(tried_at))
            }
        };
        let woke = releasing.join().unwrap();
        if let Some(tried_at) = tried_at.filter(|_| !served) {
            // Still queued: the release must have come after its try, seen
            // it counted and moved the epoch, so its loop tries again.
            assert!(woke, "the releasing loop did not see the waiter");
            assert_ne!(
                q.epoch.load(Ordering::Relaxed),
                tried_at,
                "queued, the license free, and no new epoch"
            );
            assert!(e.checkout(&b, NOW).is_ok(), "the retry gets it");
        }
    });
}
