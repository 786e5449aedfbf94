//! loom models of package suites (`engine/suite.rs`): a component checkout
//! charges the component, then the suite under its lock, and undoes the
//! component if the suite is refused; a release gives the suite back in the
//! table's credit step.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom
//! LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release --test suite`.
#![cfg(loom)]
#![forbid(unsafe_code)]

use loom::sync::Arc;
use loom::thread;
use tally_core::engine::{Engine, EngineConfig, Reason, Request};
use tally_core::license::parse_str;

const NOW: u64 = 1_000;

/// A suite of `n` licenses with components `a` and `b` (each `n`).
fn engine(n: u32) -> Arc<Engine> {
    let text = format!(
        "PACKAGE S V 1.0 COMPONENTS=\"a b\" OPTIONS=SUITE\nFEATURE S V 1.0 permanent {n}\n"
    );
    Arc::new(Engine::new(
        &parse_str("loom", &text),
        EngineConfig::default(),
    ))
}

/// (licenses out of a, of b, of the suite; live holders of a and b).
fn out(e: &Engine) -> (u32, u32, u32, usize) {
    let s = e.snapshot(NOW);
    let f = |name: &str| s.features.iter().find(|f| f.name == name).unwrap();
    let (a, b, suite) = (f("a"), f("b"), f("S"));
    (
        a.pools[0].in_use,
        b.pools[0].in_use,
        suite.pools[0].in_use,
        a.pools[0].holders.len() + b.pools[0].holders.len(),
    )
}

#[test]
fn two_users_race_for_the_last_suite_license() {
    loom::model(|| {
        let e = engine(1);
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkout(&Request::new("a", "u1", "h", "x"), NOW));
        let b = e.checkout(&Request::new("b", "u2", "h", "y"), NOW);
        let a = t.join().unwrap();
        assert!(a.is_ok() ^ b.is_ok(), "exactly one wins: {a:?} {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert_eq!(loser.unwrap_err().reason, Reason::AllInUse);
        // The loser's component charge was given back: nothing over-granted
        // or leaked.
        let (ia, ib, is, holders) = out(&e);
        assert_eq!((ia + ib, is, holders), (1, 1, 1));
    });
}

#[test]
fn one_user_shares_the_suite_across_racing_components() {
    loom::model(|| {
        let e = engine(1);
        let e2 = e.clone();
        let t = thread::spawn(move || {
            e2.checkout(&Request::new("a", "u1", "h", "x"), NOW)
                .unwrap();
            e2.checkin("a", "u1", "h", "", "x").unwrap();
        });
        e.checkout(&Request::new("b", "u1", "h", "y"), NOW).unwrap();
        t.join().unwrap();
        // u1 still holds b: the suite stays out, once.
        assert_eq!(out(&e), (0, 1, 1, 1));
        e.checkin("b", "u1", "h", "", "y").unwrap();
        assert_eq!(out(&e), (0, 0, 0, 0));
    });
}

#[test]
fn a_release_races_another_users_checkout() {
    loom::model(|| {
        let e = engine(1);
        e.checkout(&Request::new("a", "u1", "h", "x"), NOW).unwrap();
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkin("a", "u1", "h", "", "x").unwrap());
        let b = e.checkout(&Request::new("b", "u2", "h", "y"), NOW);
        t.join().unwrap();
        let (ia, ib, is, holders) = out(&e);
        match b {
            Ok(_) => assert_eq!((ia, ib, is, holders), (0, 1, 1, 1)),
            Err(d) => {
                assert_eq!(d.reason, Reason::AllInUse);
                assert_eq!((ia, ib, is, holders), (0, 0, 0, 0));
            }
        }
    });
}

/// `SUITE_RESERVED` of 2: components `a` and `b` (2 each).
fn reserved() -> Arc<Engine> {
    let text = "PACKAGE S V 1.0 COMPONENTS=\"a b\" OPTIONS=SUITE_RESERVED\n\
                FEATURE S V 1.0 permanent 2\n";
    Arc::new(Engine::new(
        &parse_str("loom", text),
        EngineConfig::default(),
    ))
}

#[test]
fn a_holders_kept_license_is_theirs_while_another_user_checks_out() {
    loom::model(|| {
        let e = reserved();
        // u1 holds a and keeps a b; u2 holds the other b (and keeps an a).
        e.checkout(&Request::new("a", "u1", "h", "x"), NOW).unwrap();
        e.checkout(&Request::new("b", "u2", "h", "y"), NOW).unwrap();
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkout(&Request::new("b", "u1", "h", "w"), NOW));
        // u2's second b: the only b left is u1's.
        let other = e.checkout(&Request::new("b", "u2", "h", "z"), NOW);
        let own = t.join().unwrap();
        // Whatever the order, the kept b freed for u1's own charge never
        // goes to u2.
        assert!(own.is_ok(), "{own:?}");
        assert_eq!(other.unwrap_err().reason, Reason::AllInUse);
        // a: u1's instance and u2's kept a; b: u1's and u2's instances.
        let (ia, ib, is, holders) = out(&e);
        assert_eq!((ia, ib, is, holders), (2, 2, 2, 3));
    });
}

#[test]
fn a_holders_last_checkin_races_a_checkout_of_its_kept_license() {
    loom::model(|| {
        let e = reserved();
        // u1 holds a, keeps a b; u2 holds the other b, keeps the other a.
        e.checkout(&Request::new("a", "u1", "h", "x"), NOW).unwrap();
        e.checkout(&Request::new("b", "u2", "h", "y"), NOW).unwrap();
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkin("a", "u1", "h", "", "x").unwrap());
        // u2's second b: only u1's kept b could serve it.
        let second = e.checkout(&Request::new("b", "u2", "h", "z"), NOW);
        t.join().unwrap();
        let (ia, ib, is, holders) = out(&e);
        match second {
            // After u1's suite went back with its kept b.
            Ok(_) => assert_eq!((ia, ib, is, holders), (1, 2, 1, 2)),
            Err(d) => {
                assert_eq!(d.reason, Reason::AllInUse);
                assert_eq!((ia, ib, is, holders), (1, 1, 1, 1));
            }
        }
    });
}
