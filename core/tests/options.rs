//! Options-file rules applied by the engine: precedence, MAX, RESERVE,
//! qualifiers, MAX_OVERDRAFT, and the exact give-back of every credit.

use tally_core::engine::{Engine, EngineConfig, Names, Reason, Request, Restore};
use tally_core::license::parse_str;
use tally_core::options;

const NOW: u64 = 1_800_000_000_000;

fn engine(license: &str, opts: &str) -> Engine {
    let lic = parse_str("t.lic", license);
    assert!(lic.diagnostics.is_empty(), "{:?}", lic.diagnostics);
    let o = options::parse_str("t.opt", opts);
    assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
    Engine::with_options(&lic, &o, EngineConfig::default())
}

fn out(e: &Engine, user: &str, host: &str, handle: &str) -> Result<(), Reason> {
    let r = Request::new("f1", user, host, handle);
    e.checkout(&r, NOW).map(|_| ()).map_err(|d| d.reason)
}

const F1_10: &str = "FEATURE f1 V 1.0 permanent 10\n";

#[test]
fn precedence_table() {
    // (options, user, host, expected)
    let cases: &[(&str, &str, &str, Result<(), Reason>)] = &[
        ("", "bob", "h", Ok(())),
        ("EXCLUDE f1 USER bob\n", "bob", "h", Err(Reason::Excluded)),
        ("EXCLUDE f1 USER bob\n", "ann", "h", Ok(())),
        ("INCLUDE f1 USER bob\n", "bob", "h", Ok(())),
        (
            "INCLUDE f1 USER bob\n",
            "ann",
            "h",
            Err(Reason::NotIncluded),
        ),
        // On both lists: EXCLUDE wins.
        (
            "INCLUDE f1 USER bob\nEXCLUDE f1 USER bob\n",
            "bob",
            "h",
            Err(Reason::Excluded),
        ),
        // Included by user, excluded by host: EXCLUDE wins.
        (
            "INCLUDE f1 USER bob\nEXCLUDE f1 HOST lab\n",
            "bob",
            "lab",
            Err(Reason::Excluded),
        ),
        ("EXCLUDEALL USER bob\n", "bob", "h", Err(Reason::Excluded)),
        (
            "INCLUDEALL USER bob\n",
            "ann",
            "h",
            Err(Reason::NotIncluded),
        ),
        (
            "INCLUDEALL USER bob\nINCLUDE f1 USER ann\n",
            "ann",
            "h",
            Ok(()),
        ),
        (
            "GROUP g ann bob\nEXCLUDE f1 GROUP g\n",
            "bob",
            "h",
            Err(Reason::Excluded),
        ),
        (
            "HOST_GROUP farm n1 n2\nINCLUDE f1 HOST_GROUP farm\n",
            "x",
            "n2",
            Ok(()),
        ),
        (
            "HOST_GROUP farm n1 n2\nINCLUDE f1 HOST_GROUP farm\n",
            "x",
            "n3",
            Err(Reason::NotIncluded),
        ),
        // Names are case-sensitive ...
        ("EXCLUDE f1 USER Bob\n", "bob", "h", Ok(())),
        // ... unless GROUPCASEINSENSITIVE ON.
        (
            "GROUPCASEINSENSITIVE ON\nGROUP g Bob\nEXCLUDE f1 GROUP g\n",
            "bOB",
            "h",
            Err(Reason::Excluded),
        ),
        // Rules of another feature do not apply.
        ("EXCLUDE f2 USER bob\n", "bob", "h", Ok(())),
        ("MAX 0 f1 USER bob\n", "bob", "h", Err(Reason::OverMax)),
    ];
    for (i, (opts, user, host, want)) in cases.iter().enumerate() {
        let lic = format!("{F1_10}FEATURE f2 V 1.0 permanent 1\n");
        let e = engine(&lic, opts);
        assert_eq!(
            out(&e, user, host, "h1"),
            *want,
            "case {i}: {opts:?} {user}@{host}"
        );
    }
}

#[test]
fn denial_codes_and_texts() {
    assert_eq!(Reason::Excluded.flexlm_code(), -38);
    assert_eq!(Reason::NotIncluded.flexlm_code(), -39);
    assert_eq!(Reason::OverMax.flexlm_code(), -87);
    let r = Reason::ReservedForOthers { line: 4 };
    assert_eq!(r.flexlm_code(), -4);
    assert_eq!(
        r.full_text().to_string(),
        "Licensed number of users already reached (the free licenses are reserved for others). (RESERVE on line 4 of the options file)"
    );
    assert_eq!(
        Reason::Excluded.full_text().to_string(),
        "User/host on EXCLUDE list for feature."
    );
}

#[test]
fn max_caps_a_user_and_gives_back_on_release() {
    let e = engine(F1_10, "MAX 2 f1 USER bob\n");
    assert_eq!(out(&e, "bob", "h", "a"), Ok(()));
    assert_eq!(out(&e, "bob", "h", "b"), Ok(()));
    assert_eq!(out(&e, "bob", "h", "c"), Err(Reason::OverMax));
    assert_eq!(out(&e, "ann", "h", "x"), Ok(()), "others are not capped");
    // A renewal of a held instance takes nothing.
    assert_eq!(out(&e, "bob", "h", "a"), Ok(()));
    e.checkin("f1", "bob", "h", "", "a").unwrap();
    assert_eq!(out(&e, "bob", "h", "c"), Ok(()), "the credit came back");
    assert_eq!(out(&e, "bob", "h", "d"), Err(Reason::OverMax));
}

#[test]
fn max_caps_a_group_as_a_whole() {
    let e = engine(F1_10, "GROUP eng ann bob\nMAX 2 f1 GROUP eng\n");
    assert_eq!(out(&e, "ann", "h", "a"), Ok(()));
    assert_eq!(out(&e, "bob", "h", "b"), Ok(()));
    assert_eq!(out(&e, "bob", "h", "c"), Err(Reason::OverMax));
    assert_eq!(out(&e, "ann", "h", "c"), Err(Reason::OverMax));
    assert_eq!(out(&e, "carl", "h", "c"), Ok(()));
}

#[test]
fn reserve_holds_licenses_back_from_others() {
    let e = engine(
        "FEATURE f1 V 1.0 permanent 3\n",
        "# comment\nRESERVE 1 f1 USER bob\n",
    );
    assert_eq!(out(&e, "ann", "h", "a"), Ok(()));
    assert_eq!(out(&e, "carl", "h", "b"), Ok(()));
    assert_eq!(
        out(&e, "dora", "h", "c"),
        Err(Reason::ReservedForOthers { line: 2 }),
        "one license is free but reserved for bob"
    );
    assert_eq!(out(&e, "bob", "h", "d"), Ok(()));
    let snap = e.snapshot(NOW);
    assert_eq!(snap.features[0].pools[0].in_use, 3);
    assert_eq!(e.reserved_free(snap.features[0].pools[0].id), 0);
    // Bob also uses general licenses once his reservation is in use.
    e.checkin("f1", "ann", "h", "", "a").unwrap();
    assert_eq!(out(&e, "bob", "h", "e"), Ok(()));
    assert_eq!(out(&e, "dora", "h", "c"), Err(Reason::AllInUse));
    // Bob's reserved license returns to the reservation, not to the others.
    e.checkin("f1", "bob", "h", "", "d").unwrap();
    assert_eq!(
        out(&e, "dora", "h", "c"),
        Err(Reason::ReservedForOthers { line: 2 })
    );
    assert_eq!(out(&e, "bob", "h", "f"), Ok(()));
}

#[test]
fn reserve_for_a_host_group() {
    let e = engine(
        "FEATURE f1 V 1.0 permanent 2\n",
        "HOST_GROUP lab n1 n2\nRESERVE 2 f1 HOST_GROUP lab\n",
    );
    assert_eq!(
        out(&e, "ann", "elsewhere", "a"),
        Err(Reason::ReservedForOthers { line: 2 })
    );
    assert_eq!(out(&e, "ann", "n1", "a"), Ok(()));
    assert_eq!(out(&e, "bob", "n2", "b"), Ok(()));
    assert_eq!(out(&e, "carl", "n2", "c"), Err(Reason::AllInUse));
}

#[test]
fn qualifiers_select_pools() {
    let lic = "FEATURE f1 V 1.0 permanent 5\nINCREMENT f1 V 2.0 permanent 5\n";
    let e = engine(lic, "EXCLUDE f1:VERSION=2.0 USER bob\n");
    let mut r = Request::new("f1", "bob", "h", "a");
    r.version = Some(2_000_000_000);
    assert_eq!(e.checkout(&r, NOW).unwrap_err().reason, Reason::Excluded);
    r.version = Some(1_000_000_000);
    let g = e.checkout(&r, NOW).unwrap();
    assert_eq!(
        g.pool.0, 0,
        "served from the 1.0 pool it is not excluded from"
    );
}

#[test]
fn expdate_qualifiers_compare_dates_in_any_spelling() {
    let lic = "FEATURE f1 V 1.0 31-dec-2099 5\nINCREMENT f1 V 1.0 permanent 5\n";
    for spelling in ["31-dec-2099", "31-DEC-2099", "2099.1231"] {
        let e = engine(lic, &format!("EXCLUDE f1:EXPDATE={spelling} USER bob\n"));
        let g = e
            .checkout(&Request::new("f1", "bob", "h", "a"), NOW)
            .unwrap();
        assert_eq!(g.pool.0, 1, "{spelling}: only the dated pool is excluded");
    }
    for spelling in ["permanent", "1-jan-0", "1-jan-00", "1-jan-0000"] {
        let e = engine(lic, &format!("EXCLUDE f1:EXPDATE={spelling} USER bob\n"));
        let g = e
            .checkout(&Request::new("f1", "bob", "h", "a"), NOW)
            .unwrap();
        assert_eq!(
            g.pool.0, 0,
            "{spelling}: only the permanent pool is excluded"
        );
    }
}

#[test]
fn internet_rules_use_the_client_address() {
    let e = engine(F1_10, "EXCLUDE f1 INTERNET 10.1.*.*\n");
    let r = Request::new("f1", "bob", "h", "a");
    let ip = |s: &str| Some(s.parse().unwrap());
    assert_eq!(
        e.checkout_from(&r, ip("10.1.2.3"), NOW).unwrap_err().reason,
        Reason::Excluded
    );
    assert!(e.checkout_from(&r, ip("10.2.2.3"), NOW).is_ok());
}

#[test]
fn max_overdraft_lowers_the_overdraft() {
    let lic = "FEATURE f1 V 1.0 permanent 2 OVERDRAFT=3\n";
    let e = engine(lic, "MAX_OVERDRAFT f1 1\n");
    let grants: Vec<bool> = ["a", "b", "c"]
        .iter()
        .map(|h| {
            e.checkout(&Request::new("f1", "u", "h", h), NOW)
                .unwrap()
                .overdraft
        })
        .collect();
    assert_eq!(
        grants,
        vec![false, false, true],
        "the third is an overdraft"
    );
    assert_eq!(out(&e, "u", "h", "d"), Err(Reason::AllInUse));
    let snap = e.snapshot(NOW);
    assert_eq!(snap.features[0].pools[0].overdraft, 1);
    assert_eq!(snap.features[0].pools[0].overdraft_limit, 1);
}

#[test]
fn linger_expiry_gives_max_credit_back_once() {
    let e = engine(F1_10, "MAX 1 f1 USER bob\n");
    let mut r = Request::new("f1", "bob", "h", "a");
    r.linger_ms = 1000;
    let g = e.checkout(&r, NOW).unwrap();
    assert_eq!(out(&e, "bob", "h", "b"), Err(Reason::OverMax));
    let id = g.id.unwrap();
    assert!(matches!(
        e.expire(id, NOW + 1000),
        tally_core::engine::Expired::Released(_)
    ));
    assert!(e.release(id).is_none(), "released once");
    assert_eq!(out(&e, "bob", "h", "b"), Ok(()));
    assert_eq!(out(&e, "bob", "h", "c"), Err(Reason::OverMax));
}

#[test]
fn restored_instances_are_charged_and_released() {
    let e = engine(F1_10, "MAX 1 f1 USER bob\n");
    let id = e
        .restore(&Restore {
            names: Names {
                feature: "f1",
                user: "bob",
                host: "h",
                display: "",
                handle: "a",
            },
            count: 1,
            version: 0,
            since_ms: NOW,
            linger_ms: 0,
            deadline_ms: None,
            identity: None,
        })
        .unwrap();
    assert_eq!(out(&e, "bob", "h", "b"), Err(Reason::OverMax));
    e.release(id).unwrap();
    assert_eq!(out(&e, "bob", "h", "b"), Ok(()));
}

#[test]
fn rules_for_unknown_features_are_warned_about() {
    let e = engine(F1_10, "EXCLUDE nosuch USER bob\nRESERVE 50 f1 USER x\n");
    let w = e.policy_warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("nosuch"), "{w:?}");
    assert!(w[1].contains("only 10 of 50"), "{w:?}");
}

#[test]
fn an_expired_pool_denies_even_a_renewal() {
    let e = engine("FEATURE f1 V 1.0 1-jan-2027 1\n", "");
    let jan1_2027 = 1_798_761_600_000u64;
    let mut r = Request::new("f1", "u", "h", "a");
    r.linger_ms = 10 * 86_400_000;
    e.checkout(&r, jan1_2027 - 1000).unwrap();
    let d = e.checkout(&r, jan1_2027 + 86_400_000).unwrap_err();
    assert_eq!(d.reason, Reason::Expired);
    assert_eq!(d.reason.flexlm_code(), -10);
}

#[test]
fn versions_are_served_across_increment_lines() {
    let lic = "FEATURE f1 V 1.5 permanent 1\nINCREMENT f1 V 3.0 permanent 1\n";
    let e = engine(lic, "");
    let mut r = Request::new("f1", "u", "h", "a");
    r.version = Some(2_000_000_000);
    assert_eq!(
        e.checkout(&r, NOW).unwrap().pool.0,
        1,
        "only 3.0 serves 2.0"
    );
    r.names.handle = "b";
    assert_eq!(
        e.checkout(&r, NOW).unwrap_err().reason,
        Reason::AllInUse,
        "the 1.5 pool cannot serve 2.0"
    );
    r.version = Some(1_000_000_000);
    assert_eq!(e.checkout(&r, NOW).unwrap().pool.0, 0);
    r.version = Some(4_000_000_000);
    r.names.handle = "c";
    assert_eq!(
        e.checkout(&r, NOW).unwrap_err().reason,
        Reason::VersionTooHigh
    );
}
