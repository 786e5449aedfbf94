//! loom models of DUP_GROUP uses (`core/src/engine/uses.rs`): the last use
//! of a shared instance ends (a connection closes, or CHECKIN) on one
//! thread while another thread's checkout begins a new use of it. The new
//! use must never be answered OK without a license: either it counts itself
//! first (and the end finds a use left), or the last use's check-in
//! completes first (and the checkout takes the license anew).
//!
//! Run with the engine models: `RUSTFLAGS="--cfg loom"
//! CARGO_TARGET_DIR=target-loom LOOM_MAX_PREEMPTIONS=2 cargo test -p
//! loom-tests --release`.
//! Checked mutation: with the bucket's lock dropped in `Engine::end_uses`
//! before its check-in (the count decided under it, the release after
//! it), `the_last_use_races_a_new_use` fails ("OK without a license").
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tally_core::engine::{Ended, Engine, EngineConfig, Grant, GrantKind, Request};
use tally_core::license::{DupGroup, LicenseSet, PoolLine, Version};

const NOW: u64 = 1_000;

/// F: one license, shared by u@h's handles (DUP_GROUP=UH).
fn engine() -> Arc<Engine> {
    let mut line = PoolLine::new("F", "V", Version::parse("1.0").unwrap(), Some(1));
    line.dup_group = DupGroup::parse("UH").unwrap();
    let set = LicenseSet {
        source: "loom".into(),
        pools: vec![line],
        ..Default::default()
    };
    Arc::new(Engine::new(&set, EngineConfig::default()))
}

/// A bound checkout by u@h with `handle`, a new use.
fn new_use(e: &Engine, handle: &str) -> Grant {
    let r = Request::new("F", "u", "h", handle);
    let (grant, counted) = e
        .checkout_use(&r, None, NOW, |_| None)
        .expect("a license: the shared one, or the one given back");
    assert!(counted.is_some(), "a grouped feature's use is counted");
    grant
}

/// Licenses out (admission counter) and live holders.
fn in_use(e: &Engine) -> (u32, usize) {
    let s = e.snapshot(NOW);
    let p = &s.features[0].pools[0];
    (p.in_use, p.holders.len())
}

/// What the race left: the new use holds a license, and it is the only
/// use; `ended` is what the other thread's end of the last use did.
fn check(e: &Engine, old: Grant, new: Grant, ended: Ended) {
    let (old, mine) = (old.id.unwrap(), new.id.unwrap());
    assert!(
        e.is_live(mine),
        "OK without a license: {new:?} after {ended:?}"
    );
    match ended {
        // The new use counted first: it shares the old instance.
        Ended::Kept { .. } => {
            assert_eq!((mine, new.kind), (old, GrantKind::Renewed));
        }
        // The check-in completed first: the checkout took the license anew.
        Ended::Last(Some(r)) => {
            assert_eq!(r.id, old);
            assert_eq!(new.kind, GrantKind::New);
            assert_ne!(mine, old);
        }
        Ended::Last(None) => panic!("the last use's end checked nothing in"),
    }
    assert_eq!(e.uses(mine).map(|u| (u.count(), u.bound())), Some((1, 1)));
    assert_eq!(in_use(e), (1, 1), "no lost and no doubled license");
    // Its end gives the license back.
    assert!(matches!(e.end_uses(mine, 1, 1, NOW), Ended::Last(Some(_))));
    assert_eq!(in_use(e), (0, 0));
}

/// The last use's connection closes while a new use begins.
#[test]
fn the_last_use_races_a_new_use() {
    loom::model(|| {
        let e = engine();
        let old = new_use(&e, "a");
        let id = old.id.unwrap();
        let e2 = e.clone();
        let closing = thread::spawn(move || e2.end_uses(id, 1, 1, NOW));
        let new = new_use(&e, "b");
        let ended = closing.join().unwrap();
        check(&e, old, new, ended);
    });
}

/// The last use's CHECKIN while a new use begins.
#[test]
fn the_last_checkin_races_a_new_use() {
    loom::model(|| {
        let e = engine();
        let old = new_use(&e, "a");
        let id = old.id.unwrap();
        let e2 = e.clone();
        let checkin = thread::spawn(move || e2.check_in_use(id, "a", true, NOW));
        let new = new_use(&e, "b");
        let ended = checkin.join().unwrap();
        check(&e, old, new, ended);
    });
}
