//! loom models of the options-file admission counters (`engine/policy.rs`):
//! MAX and RESERVE counters racing with admission and release, and the
//! charge record a release reads right after a publish.
//!
//! Run with the engine models: `RUSTFLAGS="--cfg loom"
//! CARGO_TARGET_DIR=target-loom LOOM_MAX_PREEMPTIONS=2 cargo test -p
//! loom-tests --release`.
#![cfg(loom)]
#![forbid(unsafe_code)]

use loom::sync::Arc;
use loom::thread;
use tally_core::engine::{Engine, EngineConfig, Reason, Request};
use tally_core::license::{LicenseSet, PoolLine, Version};
use tally_core::options;

const NOW: u64 = 1_000;

fn engine(count: u32, opts: &str) -> Arc<Engine> {
    let line = PoolLine::new("F", "V", Version::parse("1.0").unwrap(), Some(count));
    let set = LicenseSet {
        source: "loom".into(),
        pools: vec![line],
        ..Default::default()
    };
    let o = options::parse_str("loom.opt", opts);
    assert!(o.diagnostics.is_empty());
    Arc::new(Engine::with_options(&set, &o, EngineConfig::default()))
}

fn out(e: &Engine, user: &str, handle: &str) -> Result<(), Reason> {
    e.checkout(&Request::new("F", user, "h", handle), NOW)
        .map(|_| ())
        .map_err(|d| d.reason)
}

fn in_use(e: &Engine) -> u32 {
    e.snapshot(NOW).features[0].pools[0].in_use
}

#[test]
fn two_users_race_for_the_one_unreserved_license() {
    loom::model(|| {
        let e = engine(2, "RESERVE 1 F USER carl\n");
        let e2 = e.clone();
        let t = thread::spawn(move || out(&e2, "ann", "a"));
        let b = out(&e, "bob", "b");
        let a = t.join().unwrap();
        assert!(a.is_ok() ^ b.is_ok(), "one wins: {a:?} {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert_eq!(loser, Err(Reason::ReservedForOthers { line: 1 }));
        assert_eq!(out(&e, "carl", "c"), Ok(()), "carl's license was kept");
        assert_eq!(in_use(&e), 2);
    });
}

#[test]
fn one_user_races_itself_under_max() {
    loom::model(|| {
        let e = engine(3, "MAX 1 F USER ann\n");
        let e2 = e.clone();
        let t = thread::spawn(move || out(&e2, "ann", "a"));
        let b = out(&e, "ann", "b");
        let a = t.join().unwrap();
        assert!(a.is_ok() ^ b.is_ok(), "one wins: {a:?} {b:?}");
        assert_eq!(in_use(&e), 1);
    });
}

#[test]
fn release_races_admission_under_max() {
    loom::model(|| {
        let e = engine(3, "MAX 1 F USER ann\n");
        out(&e, "ann", "a").unwrap();
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkin("F", "ann", "h", "", "a").is_ok());
        let b = out(&e, "ann", "b");
        assert!(t.join().unwrap());
        // The credit came back exactly once: now exactly one more fits.
        let c = out(&e, "ann", "c");
        assert!(b.is_ok() ^ c.is_ok(), "exactly one of b, c: {b:?} {c:?}");
        assert_eq!(out(&e, "ann", "d"), Err(Reason::OverMax));
        assert_eq!(in_use(&e), 1);
    });
}

#[test]
fn release_right_after_publish_reads_the_charge_record() {
    loom::model(|| {
        let e = engine(2, "MAX 1 F USER ann\nRESERVE 1 F USER ann\n");
        let e2 = e.clone();
        // Check in the instance, possibly the moment it is published (its
        // charge record is stored before the LIVE store, so no wait).
        let t = thread::spawn(move || e2.checkin("F", "ann", "h", "", "a").is_ok());
        assert_eq!(out(&e, "ann", "a"), Ok(()));
        let released = t.join().unwrap();
        if !released {
            assert_eq!(out(&e, "ann", "b"), Err(Reason::OverMax));
            e.checkin("F", "ann", "h", "", "a").unwrap();
        }
        // Everything given back: ann's MAX and reservation are whole again.
        assert_eq!(in_use(&e), 0);
        assert_eq!(out(&e, "ann", "b"), Ok(()));
        assert_eq!(out(&e, "bob", "c"), Ok(()));
        assert_eq!(out(&e, "bob", "d"), Err(Reason::AllInUse));
    });
}
