//! Engine behaviour, single- and multi-threaded.

use super::*;
use crate::license::{Date, PoolLine, VendorString};
use std::sync::atomic::{AtomicU32 as StdAtomicU32, Ordering as StdOrdering};

const NOW: Millis = 1_700_000_000_000;
const SEC: u64 = 1000;

pub(crate) fn line(feature: &str, version: &str, count: Option<u32>) -> PoolLine {
    let mut l = PoolLine::new(feature, "CITRIX", Version::parse(version).unwrap(), count);
    l.kind = PoolKind::Increment;
    l
}

pub(crate) fn engine(lines: Vec<PoolLine>) -> Engine {
    let set = LicenseSet {
        source: "test".into(),
        pools: lines,
        ..Default::default()
    };
    Engine::new(&set, EngineConfig::default())
}

fn req<'a>(feature: &'a str, handle: &'a str) -> Request<'a> {
    Request::new(feature, "user", "host", handle)
}

#[test]
fn grants_up_to_count_then_denies_with_flexlm_code() {
    let e = engine(vec![line("F", "1.0", Some(2))]);
    assert!(e.checkout(&req("F", "a"), NOW).is_ok());
    assert!(e.checkout(&req("F", "b"), NOW).is_ok());
    let d = e.checkout(&req("F", "c"), NOW).unwrap_err();
    assert_eq!(d.reason, Reason::AllInUse);
    assert_eq!(d.reason.flexlm_code(), -4);
    e.checkin("F", "user", "host", "", "a").unwrap();
    assert!(e.checkout(&req("F", "c"), NOW).is_ok());
}

#[test]
fn same_handle_takes_one_license_and_renews_deadline() {
    let e = engine(vec![line("F", "1.0", Some(1))]);
    let mut r = req("F", "ec26edf8");
    r.linger_ms = 21 * 24 * 3600 * SEC;
    let g1 = e.checkout(&r, NOW).unwrap();
    assert_eq!(g1.kind, GrantKind::New);
    assert_eq!(g1.schedule, Some(NOW + r.linger_ms));
    let g2 = e.checkout(&r, NOW + 6 * 3600 * SEC).unwrap();
    assert_eq!(g2.kind, GrantKind::Renewed);
    assert_eq!(g2.id, g1.id);
    assert_eq!(g2.deadline, Some(NOW + 6 * 3600 * SEC + r.linger_ms));
    assert_eq!(g2.schedule, None, "a later deadline needs no new timer");
    // Return: linger 1 s moves the deadline earlier and asks for a timer.
    r.linger_ms = SEC;
    let g3 = e.checkout(&r, NOW + 7 * 3600 * SEC).unwrap();
    assert_eq!(g3.schedule, Some(NOW + 7 * 3600 * SEC + SEC));
    let snap = e.snapshot(NOW);
    assert_eq!(snap.features[0].pools[0].in_use, 1);
    assert_eq!(snap.features[0].pools[0].holders.len(), 1);
}

#[test]
fn expiry_releases_at_the_deadline_not_before() {
    let e = engine(vec![line("F", "1.0", Some(1))]);
    let mut r = req("F", "h");
    r.linger_ms = 35 * SEC;
    let g = e.checkout(&r, NOW).unwrap();
    let id = g.id.unwrap();
    assert_eq!(
        e.expire(id, NOW + 35 * SEC - 1),
        Expired::Later(NOW + 35 * SEC)
    );
    let Expired::Released(rel) = e.expire(id, NOW + 35 * SEC) else {
        panic!("not released at the deadline")
    };
    assert_eq!(rel.holder.handle(), "h");
    assert_eq!(rel.deadline, Some(NOW + 35 * SEC));
    assert_eq!(e.expire(id, NOW + 36 * SEC), Expired::Gone);
    assert!(e.checkout(&req("F", "other"), NOW + 35 * SEC).is_ok());
}

#[test]
fn renewal_after_timer_armed_reports_later() {
    let e = engine(vec![line("F", "1.0", Some(1))]);
    let mut r = req("F", "h");
    r.linger_ms = 10 * SEC;
    let id = e.checkout(&r, NOW).unwrap().id.unwrap();
    e.checkout(&r, NOW + 5 * SEC).unwrap();
    assert_eq!(e.expire(id, NOW + 10 * SEC), Expired::Later(NOW + 15 * SEC));
}

#[test]
fn unlingered_instances_are_not_expired_and_release_on_disconnect() {
    let e = engine(vec![line("F", "1.0", Some(2))]);
    let held = e.checkout(&req("F", "a"), NOW).unwrap();
    assert_eq!(held.deadline, None);
    assert_eq!(held.schedule, None);
    let id = held.id.unwrap();
    assert_eq!(e.expire(id, u64::MAX / 4), Expired::Gone);
    let mut r = req("F", "b");
    r.linger_ms = SEC;
    let lingering = e.checkout(&r, NOW).unwrap().id.unwrap();
    assert!(e.release_if_unlingered(lingering).is_none());
    assert!(e.release_if_unlingered(id).is_some());
    assert!(e.release_if_unlingered(id).is_none());
}

#[test]
fn checkin_of_unknown_or_unheld() {
    let e = engine(vec![line("F", "1.0", Some(2))]);
    assert_eq!(
        e.checkin("G", "u", "h", "", "x"),
        Err(CheckinError::NoSuchFeature)
    );
    assert_eq!(
        e.checkin("F", "u", "h", "", "x"),
        Err(CheckinError::NotHeld)
    );
}

#[test]
fn dup_group_shares_one_license_across_handles() {
    let mut l = line("F", "1.0", Some(1));
    l.dup_group = DupGroup::parse("UHD").unwrap();
    let e = engine(vec![l]);
    let a = Request::new("F", "alice", "pc1", "h1");
    let b = Request::new("F", "alice", "pc1", "h2");
    let c = Request::new("F", "alice", "pc2", "h3");
    let ga = e.checkout(&a, NOW).unwrap();
    let gb = e.checkout(&b, NOW).unwrap();
    assert_eq!(gb.kind, GrantKind::Renewed);
    assert_eq!(ga.id, gb.id);
    assert_eq!(e.checkout(&c, NOW).unwrap_err().reason, Reason::AllInUse);
}

#[test]
fn startup_license_is_free_and_untracked() {
    let mut l = line("CITRIX", "1.0", Some(1));
    l.vendor_string = Some(VendorString {
        license_type: Some("SYS".into()),
        ..Default::default()
    });
    let e = engine(vec![l]);
    for i in 0..10 {
        let h = format!("h{i}");
        let g = e.checkout(&req("CITRIX", &h), NOW).unwrap();
        assert_eq!(g.kind, GrantKind::Startup);
        assert_eq!(g.id, None);
    }
    assert_eq!(e.snapshot(NOW).features[0].pools[0].in_use, 0);
}

#[test]
fn uncounted_is_granted_without_tracking() {
    let e = engine(vec![line("U", "1.0", None)]);
    let g = e.checkout(&req("U", "a"), NOW).unwrap();
    assert_eq!(g.kind, GrantKind::Uncounted);
}

#[test]
fn increments_add_up_and_versions_select_pools() {
    let e = engine(vec![line("F", "1.0", Some(1)), line("F", "2.0", Some(1))]);
    let mut r = req("F", "a");
    r.version = Version::scaled_of("1.5");
    let g = e.checkout(&r, NOW).unwrap();
    assert_eq!(g.pool, PoolId(1), "only the 2.0 pool serves 1.5");
    let mut r2 = req("F", "b");
    r2.version = Version::scaled_of("1.5");
    assert_eq!(e.checkout(&r2, NOW).unwrap_err().reason, Reason::AllInUse);
    assert_eq!(e.checkout(&req("F", "b"), NOW).unwrap().pool, PoolId(0));
    let mut r3 = req("F", "c");
    r3.version = Version::scaled_of("3");
    assert_eq!(
        e.checkout(&r3, NOW).unwrap_err().reason,
        Reason::VersionTooHigh
    );
    assert_eq!(Reason::VersionTooHigh.flexlm_code(), -25);
}

#[test]
fn expired_and_not_started_pools() {
    let mut old = line("OLD", "1.0", Some(5));
    old.expiry = Expiry::On(Date {
        year: 2020,
        month: 1,
        day: 1,
    });
    let mut later = line("LATER", "1.0", Some(5));
    later.start = Some(Date {
        year: 2099,
        month: 1,
        day: 1,
    });
    let e = engine(vec![old, later]);
    assert_eq!(
        e.checkout(&req("OLD", "a"), NOW).unwrap_err().reason,
        Reason::Expired
    );
    assert_eq!(Reason::Expired.flexlm_code(), -10);
    assert_eq!(
        e.checkout(&req("LATER", "a"), NOW).unwrap_err().reason,
        Reason::NotYetStarted
    );
    assert_eq!(Reason::NotYetStarted.flexlm_code(), -31);
    assert_eq!(
        e.checkout(&req("NOPE", "a"), NOW).unwrap_err().reason,
        Reason::NoSuchFeature
    );
}

#[test]
fn renewal_of_an_expired_pool_is_denied() {
    let mut l = line("F", "1.0", Some(1));
    l.expiry = Expiry::On(Date {
        year: 2030,
        month: 1,
        day: 1,
    });
    let end = Date {
        year: 2030,
        month: 1,
        day: 1,
    }
    .end_ms();
    let e = engine(vec![l]);
    let mut r = req("F", "a");
    r.linger_ms = 10 * SEC;
    e.checkout(&r, end - SEC).unwrap();
    assert_eq!(e.checkout(&r, end).unwrap_err().reason, Reason::Expired);
}

#[test]
fn bad_requests_are_denied_with_a_reason() {
    let e = engine(vec![line("F", "1.0", Some(1))]);
    let mut r = req("F", "a");
    r.count = 0;
    assert!(matches!(
        e.checkout(&r, NOW).unwrap_err().reason,
        Reason::BadRequest(_)
    ));
    let r = req("F", "");
    assert!(matches!(
        e.checkout(&r, NOW).unwrap_err().reason,
        Reason::BadRequest(_)
    ));
    let mut r = req("F", "a");
    r.linger_ms = MAX_LINGER_MS + 1;
    assert!(matches!(
        e.checkout(&r, NOW).unwrap_err().reason,
        Reason::BadRequest(_)
    ));
}

#[test]
fn overdraft_grants_are_flagged() {
    let mut l = line("F", "1.0", Some(1));
    l.overdraft = 1;
    let e = engine(vec![l]);
    assert!(!e.checkout(&req("F", "a"), NOW).unwrap().overdraft);
    assert!(e.checkout(&req("F", "b"), NOW).unwrap().overdraft);
    assert_eq!(
        e.checkout(&req("F", "c"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    assert_eq!(e.snapshot(NOW).features[0].pools[0].overdraft, 1);
}

#[test]
fn multi_license_checkouts_count_n() {
    let e = engine(vec![line("F", "1.0", Some(5))]);
    let mut r = req("F", "a");
    r.count = 3;
    e.checkout(&r, NOW).unwrap();
    let mut r2 = req("F", "b");
    r2.count = 3;
    assert_eq!(e.checkout(&r2, NOW).unwrap_err().reason, Reason::AllInUse);
    r2.count = 2;
    e.checkout(&r2, NOW).unwrap();
    let rel = e.checkin("F", "user", "host", "", "a").unwrap();
    assert_eq!(rel.count, 3);
    assert_eq!(e.snapshot(NOW).features[0].pools[0].in_use, 2);
}

#[test]
fn snapshot_lists_holders_with_names_and_times() {
    let e = engine(vec![line("MPM_ADV_RC", "1.0", Some(5))]);
    let mut r = Request::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8");
    r.names.display = "console";
    r.linger_ms = 30 * SEC;
    let g = e.checkout(&r, NOW).unwrap();
    let s = e.snapshot(NOW + 1);
    let h = &s.features[0].pools[0].holders[0];
    assert_eq!(
        (
            h.user.as_str(),
            h.host.as_str(),
            h.display.as_str(),
            h.handle.as_str()
        ),
        ("USER15", "GENE-VM-2K3", "console", "ec26edf8")
    );
    assert_eq!(h.since_ms, NOW);
    assert_eq!(h.deadline_ms, Some(NOW + 30 * SEC));
    assert_eq!(h.ticket, g.id.unwrap().ticket());
}

#[test]
fn threads_racing_never_over_grant() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2_000;
    let e = engine(vec![line("F", "1.0", Some(3))]);
    let max_seen = StdAtomicU32::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let e = &e;
            let max_seen = &max_seen;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    // Few distinct handles so same-key races are common.
                    let h = ["a", "b", "c", "d", "e"][(i + t) % 5];
                    let r = req("F", h);
                    if e.checkout(&r, NOW).is_ok() {
                        // Live instances in the table, counted apart from
                        // the pool counter that admission caps.
                        let live = e.snapshot(NOW).features[0].pools[0].holders.len();
                        max_seen.fetch_max(live as u32, StdOrdering::Relaxed);
                        let _ = e.checkin("F", "user", "host", "", h);
                    }
                }
            });
        }
    });
    assert!(max_seen.load(StdOrdering::Relaxed) <= 3);
    let s = e.snapshot(NOW);
    assert_eq!(s.features[0].pools[0].in_use, 0);
    assert!(s.features[0].pools[0].holders.is_empty());
}

#[test]
fn threads_racing_one_handle_take_one_license() {
    let e = engine(vec![line("F", "1.0", Some(10))]);
    for round in 0..200 {
        let h = format!("h{round}");
        let ids: Vec<_> = std::thread::scope(|s| {
            let joins: Vec<_> = (0..4)
                .map(|_| s.spawn(|| e.checkout(&req("F", &h), NOW).unwrap().id))
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "one instance per handle"
        );
        assert_eq!(e.snapshot(NOW).features[0].pools[0].in_use, 1);
        e.checkin("F", "user", "host", "", &h).unwrap();
    }
}

#[test]
fn restore_puts_instances_back_even_over_the_limit() {
    let e = engine(vec![line("F", "2.0", Some(1))]);
    let r = |handle| Restore {
        names: Names {
            feature: "F",
            user: "u",
            host: "h",
            display: "d",
            handle,
        },
        count: 1,
        version: Version::scaled_of("1.0").unwrap(),
        since_ms: NOW - 5,
        linger_ms: 10 * SEC,
        deadline_ms: Some(NOW + 10 * SEC),
        identity: None,
    };
    let a = e.restore(&r("a")).unwrap();
    let b = e.restore(&r("b")).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        e.restore(&r("a")).unwrap(),
        a,
        "restoring twice keeps one instance"
    );
    let s = e.snapshot(NOW);
    assert_eq!(
        s.features[0].pools[0].in_use, 2,
        "over the limit, nothing revoked"
    );
    assert_eq!(s.features[0].pools[0].holders[0].since_ms, NOW - 5);
    assert_eq!(
        e.checkout(&req("F", "c"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    e.checkin("F", "u", "h", "d", "a").unwrap();
    assert_eq!(
        e.checkout(&req("F", "c"), NOW).unwrap_err().reason,
        Reason::AllInUse,
        "still at the limit"
    );
    e.checkin("F", "u", "h", "d", "b").unwrap();
    assert!(e.checkout(&req("F", "c"), NOW).is_ok());
    let mut gone = r("x");
    gone.names.feature = "G";
    assert_eq!(e.restore(&gone), Err(Reason::NoSuchFeature));
}

/// A reread moves instances into a new engine from a snapshot, whose names
/// may be shortened; with their identity they keep their key, so the
/// client's next checkout renews instead of taking a second license.
#[test]
fn restore_with_identity_keeps_the_key_of_long_names() {
    let lines = || vec![line("G", "1.0", Some(5)), line("F", "1.0", Some(5))];
    let old = engine(lines());
    let (long_user, long_handle) = ("u".repeat(200), "h".repeat(150));
    let mut r = Request::new("F", &long_user, "host", &long_handle);
    r.linger_ms = 60 * SEC;
    old.checkout(&r, NOW).unwrap();
    let snap = old.snapshot(NOW);
    let h = &snap.features[1].pools[0].holders[0];
    assert!(
        h.handle.len() < long_handle.len(),
        "the snapshot shortened the handle"
    );
    // The new file lists F first: its index changes, its name does not.
    let moved = |identity| {
        let new = engine(vec![line("F", "1.0", Some(5)), line("G", "1.0", Some(5))]);
        new.restore(&Restore {
            names: Names {
                feature: "F",
                user: &h.user,
                host: &h.host,
                display: &h.display,
                handle: &h.handle,
            },
            count: h.count,
            version: Version::scaled_of("1.0").unwrap(),
            since_ms: h.since_ms,
            linger_ms: h.linger_ms,
            deadline_ms: h.deadline_ms,
            identity,
        })
        .unwrap();
        let kind = new.checkout(&r, NOW + SEC).unwrap().kind;
        (kind, new.snapshot(NOW).features[0].pools[0].in_use)
    };
    assert_eq!(moved(Some(h.identity)), (GrantKind::Renewed, 1));
    // Without it the shortened names make another key: a second license.
    assert_eq!(moved(None), (GrantKind::New, 2));
}

/// Every license of a million-seat pool can be out at once: the table
/// (two slots per license, buckets of 16) never fills first. Placing every
/// key in its primary bucket unless full failed this at about 92-99 % of
/// the count (a few buckets in a thousand get 17 keys at half load, and
/// some of their secondaries are full too); short, sequential handles
/// like a load generator's are the case that caught it.
#[test]
fn every_license_of_a_million_seat_pool_goes_out() {
    let n = 1_000_000;
    let set = LicenseSet {
        source: "test".into(),
        pools: vec![line("F", "1.0", Some(n))],
        ..Default::default()
    };
    for seed in [(1, 10), (0x5eed, 0xfeed)] {
        let e = Engine::new(
            &set,
            EngineConfig {
                seed,
                min_instances: 0,
            },
        );
        for i in 0..n {
            let h = format!("m{i}");
            if let Err(d) = e.checkout(&req("F", &h), NOW) {
                panic!("seed {seed:?}: checkout {i} of {n} denied: {d:?}");
            }
        }
        let d = e.checkout(&req("F", "one-more"), NOW).unwrap_err();
        assert_eq!(d.reason, Reason::AllInUse);
    }
}
