//! loom models of the checkout table's atomic protocols.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom
//! LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`.
//! Deeper: raise `LOOM_MAX_PREEMPTIONS` to 3 (minutes) or unset it (hours).
//! Under loom the table has 2 slots per bucket and 16 bytes of holder text,
//! so every state of the protocol is reachable with tiny licenses.
#![cfg(loom)]
#![forbid(unsafe_code)]

use loom::sync::Arc;
use loom::thread;
use tally_core::engine::{Engine, EngineConfig, Expired, GrantKind, Reason, Request};
use tally_core::license::{LicenseSet, PoolLine, Version};

const NOW: u64 = 1_000;

fn engine(count: u32) -> Arc<Engine> {
    let line = PoolLine::new("F", "V", Version::parse("1.0").unwrap(), Some(count));
    let set = LicenseSet {
        source: "loom".into(),
        pools: vec![line],
        ..Default::default()
    };
    Arc::new(Engine::new(&set, EngineConfig::default()))
}

fn req(handle: &str, linger_ms: u64) -> Request<'_> {
    let mut r = Request::new("F", "u", "h", handle);
    r.linger_ms = linger_ms;
    r
}

/// Licenses out (admission counter) and live holders must agree.
fn in_use(e: &Engine) -> (u32, usize) {
    let s = e.snapshot(NOW);
    let p = &s.features[0].pools[0];
    (p.in_use, p.holders.len())
}

#[test]
fn two_checkouts_race_for_the_last_license() {
    loom::model(|| {
        let e = engine(1);
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkout(&req("a", 0), NOW).is_ok());
        let b_ok = e.checkout(&req("b", 0), NOW).is_ok();
        let a_ok = t.join().unwrap();
        assert!(a_ok ^ b_ok, "exactly one wins: a={a_ok} b={b_ok}");
        assert_eq!(in_use(&e), (1, 1));
    });
}

#[test]
fn one_handle_races_itself() {
    loom::model(|| {
        let e = engine(2);
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkout(&req("a", 0), NOW).unwrap());
        let g1 = e.checkout(&req("a", 0), NOW).unwrap();
        let g2 = t.join().unwrap();
        assert_eq!(g1.id, g2.id, "one instance per handle");
        let kinds = [g1.kind, g2.kind];
        assert!(kinds.contains(&GrantKind::New) && kinds.contains(&GrantKind::Renewed));
        assert_eq!(in_use(&e), (1, 1));
    });
}

#[test]
fn one_handle_races_itself_for_the_last_license() {
    loom::model(|| {
        let e = engine(1);
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkout(&req("a", 0), NOW));
        let g1 = e.checkout(&req("a", 0), NOW);
        let g2 = t.join().unwrap();
        // The loser of the admission race is a renewal, not a denial.
        assert!(g1.is_ok() && g2.is_ok(), "{g1:?} {g2:?}");
        assert_eq!(in_use(&e), (1, 1));
    });
}

#[test]
fn renewal_races_expiry() {
    loom::model(|| {
        let e = engine(1);
        let g = e.checkout(&req("a", 10), NOW).unwrap();
        let id = g.id.unwrap();
        let e2 = e.clone();
        // At NOW+10 the deadline is due; the renewal races the expiry.
        let t = thread::spawn(move || e2.expire(id, NOW + 10));
        let renewed = e.checkout(&req("a", 10), NOW + 10).unwrap();
        let expired = t.join().unwrap();
        match expired {
            // Expiry first: the renewal became a fresh checkout.
            Expired::Released(r) => {
                assert_eq!(r.count, 1);
                assert_eq!(renewed.kind, GrantKind::New);
            }
            // Renewal first: expiry saw the later deadline.
            Expired::Later(at) => {
                assert_eq!(at, NOW + 20);
                assert_eq!(renewed.kind, GrantKind::Renewed);
            }
            Expired::Gone => panic!("instance vanished"),
        }
        assert_eq!(renewed.deadline, Some(NOW + 20));
        assert_eq!(in_use(&e), (1, 1), "no lost and no doubled license");
    });
}

#[test]
fn checkin_races_expiry() {
    loom::model(|| {
        let e = engine(1);
        let id = e.checkout(&req("a", 10), NOW).unwrap().id.unwrap();
        let e2 = e.clone();
        let t = thread::spawn(move || matches!(e2.expire(id, NOW + 10), Expired::Released(_)));
        let checked_in = e.checkin("F", "u", "h", "", "a").is_ok();
        let expired = t.join().unwrap();
        assert!(
            checked_in ^ expired,
            "released exactly once: in={checked_in} exp={expired}"
        );
        assert_eq!(in_use(&e), (0, 0));
        // The license is free again.
        assert!(e.checkout(&req("b", 0), NOW + 10).is_ok());
    });
}

#[test]
fn checkout_races_checkin_of_the_last_license() {
    loom::model(|| {
        let e = engine(1);
        e.checkout(&req("a", 0), NOW).unwrap();
        let e2 = e.clone();
        let t = thread::spawn(move || e2.checkin("F", "u", "h", "", "a").is_ok());
        let b = e.checkout(&req("b", 0), NOW);
        assert!(t.join().unwrap());
        match b {
            Ok(_) => assert_eq!(in_use(&e), (1, 1)),
            Err(d) => {
                assert_eq!(d.reason, Reason::AllInUse);
                assert_eq!(in_use(&e), (0, 0));
            }
        }
    });
}
