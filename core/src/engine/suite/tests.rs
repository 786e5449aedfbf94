use crate::engine::{Engine, EngineConfig, Reason, Request, Restore};
use crate::license::parse_str;

const NOW: u64 = 1_700_000_000_000;

fn engine(text: &str) -> Engine {
    let set = parse_str("t.lic", text);
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    Engine::new(&set, EngineConfig::default())
}

/// Licenses out of `feature` (all its pools).
fn out(e: &Engine, feature: &str) -> u32 {
    e.snapshot(NOW)
        .features
        .iter()
        .filter(|f| f.name == feature)
        .flat_map(|f| &f.pools)
        .map(|p| p.in_use)
        .sum()
}

fn req<'a>(feature: &'a str, user: &'a str, handle: &'a str) -> Request<'a> {
    Request::new(feature, user, "host", handle)
}

const SUITE: &str = "PACKAGE S v 1.0 COMPONENTS=\"a b\" OPTIONS=SUITE\n\
                     FEATURE S v 1.0 permanent 2\n";

#[test]
fn a_third_user_is_denied_when_the_suites_licenses_are_out() {
    let e = engine(SUITE);
    e.checkout(&req("a", "u1", "h1"), NOW).unwrap();
    e.checkout(&req("b", "u2", "h2"), NOW).unwrap();
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "S")), (1, 1, 2));
    // `a` has a free license, the suite has none.
    let denied = e.checkout(&req("a", "u3", "h3"), NOW).unwrap_err();
    assert_eq!(denied.reason, Reason::AllInUse);
    assert_eq!(
        (out(&e, "a"), out(&e, "S")),
        (1, 2),
        "nothing over-granted or leaked"
    );
    let a = e.feature_id("a").unwrap();
    assert!(e
        .find(a, &crate::engine::Names::new("a", "u3", "host", "h3"))
        .is_none());
    // u2 checks b in: the suite license goes with it, u3 gets one.
    e.checkin("b", "u2", "host", "", "h2").unwrap();
    assert_eq!(out(&e, "S"), 1);
    e.checkout(&req("a", "u3", "h3"), NOW).unwrap();
    assert_eq!((out(&e, "a"), out(&e, "S")), (2, 2));
}

#[test]
fn one_holder_shares_one_suite_license_across_components() {
    let e = engine(SUITE);
    let s = e
        .suites
        .of(e.pools.iter().position(|p| p.line.feature == "a").unwrap() as u32);
    let s = s.unwrap();
    e.checkout(&req("a", "u1", "h1"), NOW).unwrap();
    e.checkout(&req("b", "u1", "h2"), NOW).unwrap();
    assert_eq!(
        out(&e, "S"),
        1,
        "same user, host and display: one suite license"
    );
    assert_eq!(e.suites.held(s), (1, 2));
    // Renewing takes nothing more.
    e.checkout(&req("b", "u1", "h2"), NOW).unwrap();
    assert_eq!(e.suites.held(s), (1, 2));
    e.checkin("a", "u1", "host", "", "h1").unwrap();
    assert_eq!(out(&e, "S"), 1, "b still out");
    e.checkin("b", "u1", "host", "", "h2").unwrap();
    assert_eq!(out(&e, "S"), 0, "the last component took the suite back");
    assert_eq!(e.suites.held(s), (0, 0));
    // Another display is another suite license (UHD by default).
    let mut x = req("a", "u1", "h1");
    x.names.display = "d1";
    e.checkout(&x, NOW).unwrap();
    let mut y = req("b", "u1", "h2");
    y.names.display = "d2";
    e.checkout(&y, NOW).unwrap();
    assert_eq!(out(&e, "S"), 2);
}

#[test]
fn suite_dup_group_widens_the_sharing() {
    let e = engine(
        "PACKAGE S v 1.0 COMPONENTS=\"a b\" OPTIONS=SUITE\n\
                    FEATURE S v 1.0 permanent 1 SUITE_DUP_GROUP=U\n",
    );
    e.checkout(&Request::new("a", "u1", "ws1", "h1"), NOW)
        .unwrap();
    e.checkout(&Request::new("b", "u1", "ws2", "h2"), NOW)
        .unwrap();
    assert_eq!(out(&e, "S"), 1, "same user on two hosts: one suite license");
    let d = e
        .checkout(&Request::new("b", "u2", "ws1", "h3"), NOW)
        .unwrap_err();
    assert_eq!(d.reason, Reason::AllInUse);
}

#[test]
fn a_lingering_component_gives_the_suite_back_when_it_expires() {
    let e = engine(SUITE);
    let mut r = req("a", "u1", "h1");
    r.linger_ms = 1000;
    let g = e.checkout(&r, NOW).unwrap();
    assert_eq!(out(&e, "S"), 1);
    let expired = e.expire(g.id.unwrap(), NOW + 1000);
    assert!(matches!(expired, crate::engine::Expired::Released(_)));
    assert_eq!(out(&e, "S"), 0);
}

#[test]
fn the_suite_feature_itself_competes_for_the_same_licenses() {
    let e = engine(SUITE);
    e.checkout(&req("S", "u9", "h9"), NOW).unwrap();
    e.checkout(&req("a", "u1", "h1"), NOW).unwrap();
    assert_eq!(out(&e, "S"), 2);
    let d = e.checkout(&req("b", "u2", "h2"), NOW).unwrap_err();
    assert_eq!(d.reason, Reason::AllInUse);
    assert_eq!(out(&e, "b"), 0);
}

#[test]
fn components_expire_with_their_enabling_line() {
    let e = engine(
        "PACKAGE S v 1.0 COMPONENTS=a OPTIONS=SUITE\n\
                    FEATURE S v 1.0 1-jan-2020 2\n",
    );
    // The components share the enabling line's expiry, so they are refused first.
    let d = e.checkout(&req("a", "u1", "h1"), NOW).unwrap_err();
    assert_eq!(d.reason, Reason::Expired);
}

#[test]
fn a_refused_suite_gives_back_the_options_counters_too() {
    let set = parse_str("t.lic", SUITE);
    let o = crate::options::parse_str("t.opt", "MAX 1 a USER u3\n");
    assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
    let e = Engine::with_options(&set, &o, EngineConfig::default());
    e.checkout(&req("a", "u1", "h1"), NOW).unwrap();
    e.checkout(&req("b", "u2", "h2"), NOW).unwrap();
    for _ in 0..3 {
        let d = e.checkout(&req("a", "u3", "h3"), NOW).unwrap_err();
        assert_eq!(d.reason, Reason::AllInUse, "the suite, not MAX");
    }
    e.checkin("a", "u1", "host", "", "h1").unwrap();
    // Had a refusal kept u3's MAX counter, this would be OVER_MAX.
    e.checkout(&req("a", "u3", "h3"), NOW).unwrap();
    let d = e.checkout(&req("a", "u3", "h4"), NOW).unwrap_err();
    assert_eq!(d.reason, Reason::OverMax);
}

#[test]
fn restored_components_take_their_suite_even_beyond_its_count() {
    let e = engine(SUITE);
    for (user, handle) in [("u1", "h1"), ("u2", "h2"), ("u3", "h3")] {
        e.restore(&Restore {
            names: crate::engine::Names {
                feature: "a",
                user,
                host: "host",
                display: "",
                handle,
            },
            count: 1,
            version: 0,
            since_ms: NOW,
            linger_ms: 0,
            deadline_ms: None,
            identity: None,
        })
        .unwrap();
    }
    assert_eq!((out(&e, "a"), out(&e, "S")), (3, 3));
    let d = e.checkout(&req("b", "u4", "h4"), NOW).unwrap_err();
    assert_eq!(d.reason, Reason::AllInUse);
    e.checkin("a", "u1", "host", "", "h1").unwrap();
    e.checkin("a", "u2", "host", "", "h2").unwrap();
    assert_eq!(out(&e, "S"), 1);
    e.checkout(&req("b", "u4", "h4"), NOW).unwrap();
    assert_eq!(out(&e, "S"), 2);
}

#[test]
fn a_non_suite_package_serves_its_components_and_not_itself() {
    let e = engine(
        "PACKAGE P v 1.0 COMPONENTS=\"a:1.0:2 b\"\n\
                    FEATURE P v 1.0 permanent 1\n",
    );
    let d = e.checkout(&req("P", "u1", "h1"), NOW).unwrap_err();
    assert_eq!(d.reason, Reason::NoSuchFeature);
    e.checkout(&req("a", "u1", "h1"), NOW).unwrap();
    e.checkout(&req("a", "u2", "h2"), NOW).unwrap();
    assert_eq!(
        e.checkout(&req("a", "u3", "h3"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    e.checkout(&req("b", "u1", "h4"), NOW).unwrap();
    let snap = e.snapshot(NOW);
    let a = snap.features.iter().find(|f| f.name == "a").unwrap();
    assert_eq!(a.pools[0].package.as_deref(), Some("P"));
    assert!(e.suites.suites.is_empty());
}

#[test]
fn an_upgrade_serves_the_new_version_from_its_own_licenses_only() {
    let e = engine("INCREMENT f v 1.0 permanent 5\nUPGRADE f v 1.0 2.0 permanent 2\n");
    let v2 = |user, handle| {
        let mut r = req("f", user, handle);
        r.version = Some(crate::license::Version::parse("2.0").unwrap().scaled());
        r
    };
    e.checkout(&v2("u1", "h1"), NOW).unwrap();
    e.checkout(&v2("u2", "h2"), NOW).unwrap();
    assert_eq!(
        e.checkout(&v2("u3", "h3"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    // Version 1.0 may use the three old ones (and would use the new ones).
    for i in 0..3 {
        let h = format!("old{i}");
        e.checkout(&req("f", "u", &h), NOW).unwrap();
    }
    assert_eq!(
        e.checkout(&req("f", "u", "old3"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    e.checkin("f", "u1", "host", "", "h1").unwrap();
    e.checkout(&req("f", "u", "old3"), NOW).unwrap();
    assert_eq!(out(&e, "f"), 5, "nothing counted twice");
}

/// `SUITE_RESERVED`: suite `R` of 2, components `a`, `b`, `c` (2 each).
const RESERVED: &str = "PACKAGE R v 1.0 COMPONENTS=\"a b c\" OPTIONS=SUITE_RESERVED\n\
                        FEATURE R v 1.0 permanent 2\n";

/// Licenses of `feature` kept for suite holders.
fn kept(e: &Engine, feature: &str) -> u32 {
    e.snapshot(NOW)
        .features
        .iter()
        .filter(|f| f.name == feature)
        .flat_map(|f| &f.pools)
        .map(|p| p.suite_kept)
        .sum()
}

#[test]
fn a_reserved_suite_keeps_one_of_each_other_component_for_its_holder() {
    let e = engine(RESERVED);
    e.checkout(&req("a", "A", "x1"), NOW).unwrap();
    assert_eq!(
        (out(&e, "a"), out(&e, "b"), out(&e, "c"), out(&e, "R")),
        (1, 1, 1, 1),
        "A's b and c are kept"
    );
    assert_eq!((kept(&e, "a"), kept(&e, "b"), kept(&e, "c")), (0, 1, 1));
    // B takes the other free b; B's a and c are kept: c is full.
    e.checkout(&req("b", "B", "y1"), NOW).unwrap();
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "c")), (2, 2, 2));
    // B wants a second b (another instance): the last b is A's.
    let d = e.checkout(&req("b", "B", "y2"), NOW).unwrap_err();
    assert_eq!(d.reason, Reason::AllInUse);
    assert_eq!(out(&e, "b"), 2, "nothing over-granted");
    // A's own checkout of b takes the kept one.
    e.checkout(&req("b", "A", "x2"), NOW).unwrap();
    assert_eq!((out(&e, "b"), kept(&e, "b")), (2, 0));
    // A checks a in while holding b: a becomes A's kept a.
    e.checkin("a", "A", "host", "", "x1").unwrap();
    assert_eq!((out(&e, "a"), kept(&e, "a")), (2, 2));
    // A's last component goes: the suite and every kept license with it.
    e.checkin("b", "A", "host", "", "x2").unwrap();
    assert_eq!(
        (out(&e, "a"), out(&e, "b"), out(&e, "c"), out(&e, "R")),
        (1, 1, 1, 1),
        "only B's b and B's kept a and c are left"
    );
    e.checkout(&req("b", "B", "y2"), NOW).unwrap();
    assert_eq!(out(&e, "b"), 2);
    e.checkin("b", "B", "host", "", "y1").unwrap();
    e.checkin("b", "B", "host", "", "y2").unwrap();
    assert_eq!(
        (out(&e, "a"), out(&e, "b"), out(&e, "c"), out(&e, "R")),
        (0, 0, 0, 0),
        "nothing leaked"
    );
}

#[test]
fn a_component_full_when_the_suite_is_taken_is_not_kept() {
    let e = engine(RESERVED);
    // A holds both c licenses (two instances) and keeps an a and a b.
    e.checkout(&req("c", "A", "x1"), NOW).unwrap();
    e.checkout(&req("c", "A", "x2"), NOW).unwrap();
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "c")), (1, 1, 2));
    // B's checkout of a is not refused for the full c: B keeps b only.
    e.checkout(&req("a", "B", "y1"), NOW).unwrap();
    assert_eq!((kept(&e, "a"), kept(&e, "b"), kept(&e, "c")), (1, 2, 0));
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "R")), (2, 2, 2));
    // A gives one c back while holding the suite: it becomes A's kept c,
    // not B's (nothing is kept later for B).
    e.checkin("c", "A", "host", "", "x2").unwrap();
    assert_eq!((out(&e, "c"), kept(&e, "c")), (2, 1));
    assert_eq!(
        e.checkout(&req("c", "B", "y2"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    e.checkin("c", "A", "host", "", "x1").unwrap();
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "c")), (1, 1, 0));
    e.checkout(&req("c", "B", "y2"), NOW).unwrap();
    assert_eq!((out(&e, "b"), kept(&e, "b")), (1, 1), "B's kept b only");
}

#[test]
fn a_refused_suite_keeps_nothing_and_a_restored_holder_keeps_nothing_yet() {
    let e = engine(RESERVED);
    e.checkout(&req("a", "A", "x1"), NOW).unwrap();
    e.checkout(&req("a", "B", "y1"), NOW).unwrap();
    // b is full (A's and B's kept ones), and so is the suite: C is
    // refused, and keeps nothing.
    assert_eq!(
        e.checkout(&req("b", "C", "z1"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "c")), (2, 2, 2));
    // A restored component instance takes its suite, keeps nothing.
    let e = engine(RESERVED);
    e.restore(&Restore {
        names: crate::engine::Names {
            feature: "a",
            user: "A",
            host: "host",
            display: "",
            handle: "x1",
        },
        count: 1,
        version: 0,
        since_ms: NOW,
        linger_ms: 0,
        deadline_ms: None,
        identity: None,
    })
    .unwrap();
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "R")), (1, 0, 1));
    // A's b, then b back while a is held: now kept.
    e.checkout(&req("b", "A", "x2"), NOW).unwrap();
    e.checkin("b", "A", "host", "", "x2").unwrap();
    assert_eq!((out(&e, "b"), kept(&e, "b")), (1, 1));
    e.checkin("a", "A", "host", "", "x1").unwrap();
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "R")), (0, 0, 0));
}

#[test]
fn a_reconciled_component_goes_back_without_a_suite_license() {
    // RECONCILE charges the component's pool only (the suite license is
    // not taken for an offline session); its check-in gives back the
    // component and nothing of the suite.
    let e = engine(SUITE);
    e.checkout(&req("b", "u2", "h2"), NOW).unwrap();
    let got = e.reconcile(&req("a", "u1", "h1"), NOW - 1000, NOW).unwrap();
    assert!(!got.grant.overdraft);
    assert_eq!((out(&e, "a"), out(&e, "S")), (1, 1));
    e.checkin("a", "u1", "host", "", "h1").unwrap();
    assert_eq!((out(&e, "a"), out(&e, "b"), out(&e, "S")), (0, 1, 1));
}
