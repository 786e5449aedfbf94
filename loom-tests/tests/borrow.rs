//! loom models of borrowing (`engine/borrow.rs`): a borrow publishes its
//! instance already marked and with its deadline, so a checkout of the
//! same key either finds the borrow (and is refused) or makes the instance
//! (and the borrow is refused); a renewal never clears the mark, even one
//! whose linger write lands after its instance was released and the slot
//! lent again.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom
//! LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release --test borrow`.
#![cfg(loom)]
#![forbid(unsafe_code)]

use loom::sync::Arc;
use loom::thread;
use tally_core::engine::{BorrowRefusal, Engine, EngineConfig, GrantKind, Reason, Request};
use tally_core::license::parse_str;

const NOW: u64 = 1_000;
const HOUR_MS: u64 = 3_600_000;

fn engine(n: u32) -> Arc<Engine> {
    let text = format!("FEATURE F V 1.0 permanent {n} BORROW\n");
    Arc::new(Engine::new(
        &parse_str("loom", &text),
        EngineConfig::default(),
    ))
}

fn req(handle: &str, linger_ms: u64) -> Request<'_> {
    let mut r = Request::new("F", "u", "h", handle);
    r.linger_ms = linger_ms;
    r
}

fn refusal<T: std::fmt::Debug>(r: &Result<T, tally_core::engine::Denial>) -> Option<BorrowRefusal> {
    match r {
        Err(d) => match d.reason {
            Reason::Borrow(b) => Some(b),
            _ => None,
        },
        Ok(_) => None,
    }
}

#[test]
fn a_borrow_races_a_checkout_of_its_key() {
    loom::model(|| {
        let e = engine(2);
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkout(&req("a", 1_000), NOW));
        let b = e.borrow(&req("a", 0), 1, None, NOW);
        let c = t.join().unwrap();
        let s = e.snapshot(NOW);
        let p = &s.features[0].pools[0];
        assert_eq!((p.in_use, p.holders.len()), (1, 1), "{b:?} {c:?}");
        let h = &p.holders[0];
        match (&b, &c) {
            (Ok(_), Err(_)) => {
                assert_eq!(refusal(&c), Some(BorrowRefusal::Borrowed));
                assert!(h.borrowed);
                assert_eq!(h.deadline_ms, Some(NOW + HOUR_MS));
            }
            (Err(_), Ok(g)) => {
                assert_eq!(refusal(&b), Some(BorrowRefusal::AlreadyHeld));
                assert_eq!(g.kind, GrantKind::New);
                assert!(!h.borrowed);
                assert_eq!(h.deadline_ms, Some(NOW + 1_000));
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_late_renewal_does_not_unmark_the_next_borrow() {
    loom::model(|| {
        let e = engine(1);
        e.checkout(&req("a", 1_000), NOW).unwrap();
        let e2 = e.clone();
        // Renews with another linger: it writes the linger word.
        let t = thread::spawn(move || e2.checkout(&req("a", 2_000), NOW).map(|g| g.kind));
        e.checkin("F", "u", "h", "", "a").unwrap();
        let b = e.borrow(&req("a", 0), 1, None, NOW);
        let c = t.join().unwrap();
        let s = e.snapshot(NOW);
        let p = &s.features[0].pools[0];
        assert_eq!((p.in_use, p.holders.len()), (1, 1), "{b:?} {c:?}");
        let h = &p.holders[0];
        if b.is_ok() {
            assert!(h.borrowed, "{b:?} {c:?} {h:?}");
            assert_eq!(h.deadline_ms, Some(NOW + HOUR_MS), "{c:?}");
            assert_eq!(h.linger_ms, HOUR_MS, "{c:?}");
        } else {
            // The renewal came after the check-in: a new instance.
            assert_eq!(refusal(&b), Some(BorrowRefusal::AlreadyHeld));
            assert_eq!(c, Ok(GrantKind::New));
            assert!(!h.borrowed);
        }
    });
}
