//! Black-box tests of `USER_BASED` / `HOST_BASED` license lines: the real
//! `tallyd` with a license and an options file written by the test.

mod common;

use std::time::Duration;

use common::{eventually, Tallyd};

const GENEROUS: Duration = Duration::from_secs(10);

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
FEATURE UB CITRIX 1.0 permanent 5 USER_BASED=2
FEATURE HB CITRIX 1.0 permanent 5 HOST_BASED
FEATURE PLAIN CITRIX 1.0 permanent 5
";

const DENIED: &str = "NOT_INCLUDED -39 User/host not on INCLUDE list for feature.";

fn wait_log(t: &Tallyd, needle: &str) -> bool {
    eventually(GENEROUS, || {
        t.log_lines().iter().any(|l| l.contains(needle))
    })
}

#[test]
fn only_included_users_are_served_and_a_reread_adds_one() {
    let dir = common::Scratch::new("ubased");
    let opts = dir.path("t.opt");
    std::fs::write(
        &opts,
        "INCLUDE UB USER ann\nHOST_GROUP lab n1\nINCLUDE HB HOST_GROUP lab\n",
    )
    .expect("write options");
    let arg = opts.display().to_string();
    let t = Tallyd::start(LICENSE, &["--options", arg.as_str()]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT UB ann h a1").starts_with("OK UB a1 "));
    assert_eq!(
        c.req("CHECKOUT UB bob h b1"),
        format!("DENIED UB b1 {DENIED}")
    );
    assert!(c.req("CHECKOUT HB zed n1 z1").starts_with("OK HB z1 "));
    assert_eq!(
        c.req("CHECKOUT HB zed n2 z2"),
        format!("DENIED HB z2 {DENIED}")
    );
    assert!(c.req("CHECKOUT PLAIN bob h p1").starts_with("OK PLAIN p1 "));
    assert!(wait_log(
        &t,
        "DENIED: \"UB\" bob@h [b1]  (User/host not on INCLUDE list for feature. (-39,0))"
    ));
    // The status shows the feature as usual.
    assert_eq!(c.in_use("UB"), 1);

    // bob added, and one name too many for USER_BASED=2.
    std::fs::write(
        &opts,
        "INCLUDE UB USER ann\nINCLUDE UB USER bob\nINCLUDE UB USER cid\n\
         HOST_GROUP lab n1\nINCLUDE HB HOST_GROUP lab\n",
    )
    .expect("rewrite options");
    assert_eq!(c.req("REREAD"), "OK REREAD 3 0");
    assert!(c.req("CHECKOUT UB bob h b1").starts_with("OK UB b1 "));
    assert_eq!(
        c.req("CHECKOUT UB cid h c1"),
        format!("DENIED UB c1 {DENIED}")
    );
    assert_eq!(c.in_use("UB"), 2, "ann's license is kept across the reread");
    assert!(wait_log(
        &t,
        "t.opt:3: INCLUDE UB USER cid (line 3): feature UB is USER_BASED (license line 3), which allows 2 users; 1 more named here are not included"
    ));
}

#[test]
fn without_an_options_file_nobody_may_use_a_user_based_feature() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert_eq!(
        c.req("CHECKOUT UB ann h a"),
        format!("DENIED UB a {DENIED}")
    );
    assert!(c.req("CHECKOUT PLAIN ann h p").starts_with("OK PLAIN p "));
}
