//! Options-file rules that name a PACKAGE apply to its components: each
//! rule kind on a non-suite package and on a suite.

use super::*;
use crate::license::parse_str;
use crate::options;

const NOW: Millis = 1_700_000_000_000;

/// Non-suite: `a` 1.0 x 3, `b` 2.0 x 6; the enabling line `P` goes.
const PKG: &str = "PACKAGE P v 1.0 COMPONENTS=\"a b:2.0:2\"\n\
                   FEATURE P v 1.0 permanent 3 BORROW=24\n";

/// Suite `S` of 2 licenses, components `a` and `b` (2 each).
const SUITE: &str = "PACKAGE S v 1.0 COMPONENTS=\"a b\" OPTIONS=SUITE\n\
                     FEATURE S v 1.0 permanent 2\n";

fn engine(license: &str, opts: &str) -> Engine {
    let set = parse_str("t.lic", license);
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    let o = options::parse_str("t.opt", opts);
    assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
    Engine::with_options(&set, &o, EngineConfig::default())
}

fn out<'a>(e: &Engine, feature: &'a str, user: &'a str) -> Result<Grant, Reason> {
    e.checkout(&Request::new(feature, user, "host", user), NOW)
        .map_err(|d| d.reason)
}

fn take<'a>(e: &Engine, feature: &'a str, user: &'a str, handle: &'a str) -> Result<Grant, Reason> {
    e.checkout(&Request::new(feature, user, "host", handle), NOW)
        .map_err(|d| d.reason)
}

/// The first pool of `feature`.
fn pool_of(e: &Engine, feature: &str) -> PoolId {
    let snap = e.snapshot(NOW);
    let f = snap.features.iter().find(|f| f.name == feature).unwrap();
    f.pools[0].id
}

#[test]
fn include_and_exclude_of_a_package_cover_every_component() {
    let e = engine(PKG, "INCLUDE P USER ann\nEXCLUDE P USER bob\n");
    assert!(e.policy_warnings().is_empty(), "{:?}", e.policy_warnings());
    for f in ["a", "b"] {
        out(&e, f, "ann").expect("included");
        assert_eq!(out(&e, f, "bob").unwrap_err(), Reason::Excluded);
        assert_eq!(out(&e, f, "cy").unwrap_err(), Reason::NotIncluded);
    }
}

#[test]
fn a_version_qualifier_on_a_package_compares_the_enabling_lines_version() {
    // `b` is 2.0, the enabling line 1.0: `P:VERSION=1.0` still names `b`.
    let e = engine(PKG, "EXCLUDE P:VERSION=1.0 USER bob\n");
    assert_eq!(out(&e, "b", "bob").unwrap_err(), Reason::Excluded);
    let e = engine(PKG, "EXCLUDE P:VERSION=2.0 USER bob\n");
    out(&e, "b", "bob").expect("the package is 1.0: the rule names nothing");
    assert!(
        e.policy_warnings()[0].contains("which no license line serves"),
        "{:?}",
        e.policy_warnings()
    );
}

#[test]
fn max_on_a_package_caps_each_component_separately() {
    let e = engine(PKG, "MAX 1 P USER ann\n");
    assert!(e.policy_warnings().is_empty(), "{:?}", e.policy_warnings());
    take(&e, "a", "ann", "h1").expect("first a");
    assert_eq!(take(&e, "a", "ann", "h2").unwrap_err(), Reason::OverMax);
    take(&e, "b", "ann", "h3").expect("b has its own cap");
    assert_eq!(take(&e, "b", "ann", "h4").unwrap_err(), Reason::OverMax);
    take(&e, "a", "bob", "h5").expect("bob is not capped");
}

#[test]
fn reserve_on_a_package_reserves_n_of_each_component() {
    // a: 3 licenses, 2 reserved for ann; b: 6, 2 reserved.
    let e = engine(PKG, "RESERVE 2 P USER ann\n");
    assert!(e.policy_warnings().is_empty(), "{:?}", e.policy_warnings());
    let id = |f: &str| pool_of(&e, f);
    assert_eq!((e.reserved_free(id("a")), e.reserved_free(id("b"))), (2, 2));
    take(&e, "a", "bob", "b1").expect("the one general license of a");
    assert!(matches!(
        take(&e, "a", "bob", "b2").unwrap_err(),
        Reason::ReservedForOthers { line: 1 }
    ));
    for i in 0..4 {
        take(&e, "b", "bob", &format!("c{i}")).expect("b's general licenses");
    }
    assert!(matches!(
        take(&e, "b", "bob", "c9").unwrap_err(),
        Reason::ReservedForOthers { .. }
    ));
    take(&e, "a", "ann", "a1").expect("ann's reserved a");
    take(&e, "a", "ann", "a2").expect("ann's reserved a");
    take(&e, "b", "ann", "a3").expect("ann's reserved b");
    assert_eq!(e.reserved_free(id("b")), 1);
}

#[test]
fn a_reservation_a_component_cannot_hold_is_warned_about_by_component() {
    // a has 3 licenses, b 6: 4 fit only in b.
    let e = engine(PKG, "RESERVE 4 P USER ann\n");
    let w = e.policy_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("only 3 of 4 licenses of component a"),
        "{w:?}"
    );
}

#[test]
fn rules_on_a_suite_name_count_components_and_gate_the_suite_feature_too() {
    let e = engine(SUITE, "RESERVE 1 S USER ann\nEXCLUDE S USER bob\n");
    assert!(e.policy_warnings().is_empty(), "{:?}", e.policy_warnings());
    let pool = |f: &str| pool_of(&e, f);
    // One of each component reserved; nothing of the suite feature.
    assert_eq!(
        (
            e.reserved_free(pool("a")),
            e.reserved_free(pool("b")),
            e.reserved_free(pool("S"))
        ),
        (1, 1, 0)
    );
    // EXCLUDE covers the components and a direct checkout of the suite.
    for f in ["a", "b", "S"] {
        assert_eq!(out(&e, f, "bob").unwrap_err(), Reason::Excluded, "{f}");
    }
    out(&e, "a", "cy").expect("a's general license");
    assert!(matches!(
        out(&e, "a", "dee").unwrap_err(),
        Reason::ReservedForOthers { .. }
    ));
    out(&e, "a", "ann").expect("ann's reserved a");
}

#[test]
fn max_overdraft_on_a_package_caps_each_component() {
    let lic = "PACKAGE P v 1.0 COMPONENTS=\"a b:1.0:2\"\n\
               FEATURE P v 1.0 permanent 1 OVERDRAFT=2\n";
    let e = engine(lic, "MAX_OVERDRAFT P 0\n");
    let snap = e.snapshot(NOW);
    let od: Vec<(String, u32)> = snap
        .features
        .iter()
        .map(|f| (f.name.clone(), f.pools[0].overdraft_limit))
        .collect();
    assert_eq!(od, [("a".to_string(), 0), ("b".to_string(), 0)]);
    let e = engine(lic, "");
    assert_eq!(e.snapshot(NOW).features[1].pools[0].overdraft_limit, 4);
}

#[test]
fn borrow_rules_on_a_package_apply_to_each_component() {
    // a: 3 licenses, b: 6; LOWWATER 2 of each; only ann may borrow.
    let e = engine(
        PKG,
        "BORROW_LOWWATER P 2\nMAX_BORROW_HOURS P 4\nINCLUDE_BORROW P USER ann\n",
    );
    assert!(e.policy_warnings().is_empty(), "{:?}", e.policy_warnings());
    let pool = |f: &str| pool_of(&e, f);
    assert_eq!(
        (e.borrow_hours(pool("a")), e.borrow_hours(pool("b"))),
        (Some(4), Some(4))
    );
    let borrow = |f: &'static str, user: &'static str, h: &'static str| {
        e.borrow(&Request::new(f, user, "host", h), 4, None, NOW)
            .map_err(|d| d.reason)
    };
    assert!(matches!(
        borrow("a", "bob", "x").unwrap_err(),
        Reason::Borrow(BorrowRefusal::NotIncluded)
    ));
    borrow("a", "ann", "h1").expect("a: 1 of 3 may be borrowed");
    assert!(matches!(
        borrow("a", "ann", "h2").unwrap_err(),
        Reason::Borrow(BorrowRefusal::LowWater { .. })
    ));
    for h in ["h3", "h4", "h5", "h6"] {
        borrow("b", "ann", h).expect("b: 4 of 6 may be borrowed (its own LOWWATER)");
    }
    assert!(borrow("b", "ann", "h7").is_err());
}

#[test]
fn a_feature_knows_the_package_it_is_a_component_of() {
    let e = engine(&format!("{PKG}FEATURE x v 1.0 permanent 1\n"), "");
    let pkg = |f: &str| e.feature_package(e.feature_id(f).unwrap());
    assert_eq!((pkg("a"), pkg("b"), pkg("x")), (Some("P"), Some("P"), None));
}
