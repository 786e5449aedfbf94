//! `USER_BASED[=n]` / `HOST_BASED[=n]` license lines: only the users (hosts)
//! the options file INCLUDEs may use them, and at most n may be INCLUDEd.

use tally_core::engine::{Engine, EngineConfig, Reason, Request};
use tally_core::license::{parse_str, Based, BasedKind};
use tally_core::options;

const NOW: u64 = 1_800_000_000_000;

fn engine(license: &str, opts: &str) -> Engine {
    let lic = parse_str("t.lic", license);
    assert!(lic.diagnostics.is_empty(), "{:?}", lic.diagnostics);
    let o = options::parse_str("t.opt", opts);
    assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
    Engine::with_options(&lic, &o, EngineConfig::default())
}

fn out(e: &Engine, feature: &str, user: &str, host: &str) -> Result<(), Reason> {
    let handle = format!("{user}@{host}");
    let r = Request::new(feature, user, host, &handle);
    e.checkout(&r, NOW).map(|_| ()).map_err(|d| d.reason)
}

#[test]
fn the_keywords_parse_with_and_without_a_number() {
    let lic = parse_str(
        "t.lic",
        "FEATURE a V 1.0 permanent 5 USER_BASED\n\
         FEATURE b V 1.0 permanent 5 user_based=3\n\
         INCREMENT c V 1.0 permanent 5 HOST_BASED=2 SIGN=X\n\
         FEATURE d V 1.0 permanent 5\n",
    );
    assert!(lic.diagnostics.is_empty(), "{:?}", lic.diagnostics);
    let based: Vec<Option<Based>> = lic.pools.iter().map(|p| p.based).collect();
    let user = |n| {
        Some(Based {
            kind: BasedKind::User,
            n,
        })
    };
    let host = Based {
        kind: BasedKind::Host,
        n: Some(2),
    };
    assert_eq!(based, vec![user(None), user(Some(3)), Some(host), None]);
    assert!(
        lic.pools.iter().all(|p| p.other.is_empty()),
        "not kept as unknown"
    );
    assert_eq!(user(None).unwrap().limit(Some(5)), Some(5));
    assert_eq!(user(Some(3)).unwrap().limit(Some(5)), Some(3));
    assert_eq!(user(None).unwrap().limit(None), None);
}

#[test]
fn a_bad_number_is_a_diagnostic_for_the_line() {
    for bad in [
        "USER_BASED=0",
        "USER_BASED=x",
        "HOST_BASED=-1",
        "HOST_BASED=",
    ] {
        let lic = parse_str("t.lic", &format!("FEATURE a V 1.0 permanent 5 {bad}\n"));
        assert_eq!(lic.diagnostics.len(), 1, "{bad}: {:?}", lic.diagnostics);
        let d = lic.diagnostics[0].to_string();
        assert!(d.contains("t.lic:1:") && d.contains("bad "), "{bad}: {d}");
        assert!(lic.pools.is_empty(), "{bad}");
    }
}

#[test]
fn an_included_user_is_served_and_another_denied_not_included() {
    let e = engine(
        "FEATURE f V 1.0 permanent 4 USER_BASED\n",
        "INCLUDE f USER ann\n",
    );
    assert_eq!(out(&e, "f", "ann", "h1"), Ok(()));
    assert_eq!(out(&e, "f", "ann", "h2"), Ok(()), "any host of ann's");
    let r = out(&e, "f", "bob", "h1").unwrap_err();
    assert_eq!(r, Reason::NotIncluded);
    assert_eq!(r.flexlm_code(), -39);
    assert_eq!(r.name(), "NOT_INCLUDED");
    assert_eq!(r.text(), "User/host not on INCLUDE list for feature.");
    assert!(e.policy_warnings().is_empty(), "{:?}", e.policy_warnings());
}

#[test]
fn without_include_lines_nobody_may_use_the_feature() {
    let lic = parse_str(
        "t.lic",
        "FEATURE f V 1.0 permanent 4 USER_BASED\nFEATURE g V 1.0 permanent 4\n",
    );
    // No options file at all.
    let e = Engine::new(&lic, EngineConfig::default());
    assert_eq!(out(&e, "f", "ann", "h"), Err(Reason::NotIncluded));
    assert_eq!(out(&e, "g", "ann", "h"), Ok(()), "other features as usual");
    // An options file without an INCLUDE for it.
    let e = engine(
        "FEATURE f V 1.0 permanent 4 USER_BASED\n",
        "INCLUDE f HOST h\n",
    );
    assert_eq!(out(&e, "f", "ann", "h"), Err(Reason::NotIncluded));
    let w = e.policy_warnings().join("\n");
    assert!(w.contains("t.opt:1: INCLUDE f HOST h"), "{w}");
    assert!(
        w.contains("only INCLUDE USER and GROUP name its users"),
        "{w}"
    );
    assert!(
        w.contains("license line 1: feature f is USER_BASED and no INCLUDE line names a user"),
        "{w}"
    );
}

#[test]
fn more_included_users_than_n_is_a_diagnostic_and_the_extra_are_left_out() {
    let e = engine(
        "FEATURE f V 1.0 permanent 10 USER_BASED=2\n",
        "INCLUDE f USER ann\nGROUP g bob cid dan\nINCLUDE f GROUP g\n",
    );
    let w = e.policy_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("t.opt:3: INCLUDE f GROUP g (line 3): feature f is USER_BASED (license line 1), which allows 2 users; 2 more named here are not included"),
        "{w:?}"
    );
    // The first two named, in file order, are in.
    assert_eq!(out(&e, "f", "ann", "h"), Ok(()));
    assert_eq!(out(&e, "f", "bob", "h"), Ok(()));
    assert_eq!(out(&e, "f", "cid", "h"), Err(Reason::NotIncluded));
    assert_eq!(out(&e, "f", "dan", "h"), Err(Reason::NotIncluded));
}

#[test]
fn n_defaults_to_the_count_and_a_name_twice_counts_once() {
    let e = engine(
        "FEATURE f V 1.0 permanent 2 USER_BASED\n",
        "INCLUDE f USER ann\nINCLUDE f USER ann\nINCLUDE f USER bob\nINCLUDE f USER cid\n",
    );
    let w = e.policy_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("t.opt:4: "), "{w:?}");
    assert_eq!(out(&e, "f", "ann", "h"), Ok(()));
    assert_eq!(out(&e, "f", "bob", "h"), Ok(()));
    assert_eq!(out(&e, "f", "cid", "h"), Err(Reason::NotIncluded));
}

#[test]
fn the_count_still_limits_concurrent_use() {
    let e = engine(
        "FEATURE f V 1.0 permanent 1 USER_BASED=3\n",
        "INCLUDE f USER ann\nINCLUDE f USER bob\n",
    );
    assert_eq!(out(&e, "f", "ann", "h"), Ok(()));
    assert_eq!(out(&e, "f", "bob", "h"), Err(Reason::AllInUse));
}

#[test]
fn host_based_counts_hosts() {
    let e = engine(
        "INCREMENT f V 1.0 permanent 5 HOST_BASED=2\n",
        "HOST_GROUP farm n1 n2 n3\nINCLUDE f HOST_GROUP farm\nINCLUDE f USER ann\n",
    );
    assert_eq!(out(&e, "f", "zed", "n1"), Ok(()));
    assert_eq!(out(&e, "f", "zed", "n2"), Ok(()));
    assert_eq!(out(&e, "f", "zed", "n3"), Err(Reason::NotIncluded));
    assert_eq!(
        out(&e, "f", "ann", "elsewhere"),
        Err(Reason::NotIncluded),
        "a user INCLUDE names no host"
    );
    let w = e.policy_warnings().join("\n");
    assert!(
        w.contains("t.opt:2: ") && w.contains("which allows 2 hosts; 1 more"),
        "{w}"
    );
    assert!(
        w.contains("t.opt:3: ") && w.contains("only INCLUDE HOST and HOST_GROUP"),
        "{w}"
    );
}

#[test]
fn exclude_still_wins_and_other_lines_of_the_feature_are_unaffected() {
    let e = engine(
        "INCREMENT f V 1.0 permanent 1 USER_BASED\nINCREMENT f V 1.0 permanent 1\n",
        "INCLUDE f USER ann\nEXCLUDE f USER ann\n",
    );
    // EXCLUDE wins over the INCLUDE. The INCLUDE applies to both lines, so
    // bob is not on the plain line's list either (INCLUDE as usual).
    assert_eq!(out(&e, "f", "ann", "h"), Err(Reason::Excluded));
    assert_eq!(out(&e, "f", "bob", "h"), Err(Reason::NotIncluded));
    // Without an INCLUDE, the plain line serves anybody and the
    // USER_BASED line nobody.
    let e = engine(
        "INCREMENT f V 1.0 permanent 1 USER_BASED\nINCREMENT f V 1.0 permanent 1\n",
        "",
    );
    assert_eq!(out(&e, "f", "bob", "h"), Ok(()));
    assert_eq!(out(&e, "f", "cid", "h"), Err(Reason::AllInUse));
}

#[test]
fn package_components_inherit_the_keyword() {
    let e = engine(
        "PACKAGE suite V 1.0 COMPONENTS=\"apple orange\"\n\
         INCREMENT suite V 1.0 permanent 2 USER_BASED=1\n",
        "INCLUDE apple USER ann\n",
    );
    assert_eq!(out(&e, "apple", "ann", "h"), Ok(()));
    assert_eq!(out(&e, "apple", "bob", "h"), Err(Reason::NotIncluded));
    assert_eq!(out(&e, "orange", "ann", "h"), Err(Reason::NotIncluded));
}

#[test]
fn the_diagnostic_names_the_keyword_and_value() {
    let lic = parse_str("t.lic", "FEATURE f V 1.0 permanent 5 USER_BASED=0\n");
    let d = lic.diagnostics[0].to_string();
    assert!(d.contains("FEATURE f: bad USER_BASED \"0\""), "{d}");
}
