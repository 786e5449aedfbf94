//! Black-box tests of queued checkout (`wait=`): the real `tallyd` over TCP.

mod common;

use std::time::Duration;

use common::{eventually, Client, Tallyd};

const GENEROUS: Duration = Duration::from_secs(10);

const LICENSE: &str = "\
VENDOR CITRIX
FEATURE ONE CITRIX 1.0 permanent 1
";

/// Handles queued for `feature`, oldest first.
fn queued(c: &mut Client, feature: &str) -> Vec<String> {
    c.status()["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .filter(|q| q["feature"] == feature)
        .map(|q| q["handle"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn waiters_are_served_first_come_first_served() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    let mut b = t.connect();
    let mut c = t.connect();
    let mut admin = t.connect();
    assert!(a.req("CHECKOUT ONE ann h a").starts_with("OK "));
    b.send(b"CHECKOUT ONE bob h b wait=60\n");
    assert!(eventually(GENEROUS, || queued(&mut admin, "ONE") == ["b"]));
    c.send(b"CHECKOUT ONE carl h c wait=60\n");
    assert!(eventually(GENEROUS, || queued(&mut admin, "ONE") == ["b", "c"]));
    // Without wait=, a checkout behind the queue is denied at once.
    assert!(admin
        .req("CHECKOUT ONE dora h d")
        .starts_with("DENIED ONE d ALL_IN_USE -4"));
    assert_eq!(a.req("CHECKIN ONE a"), "OK ONE a");
    let got = b.read_line().expect("b is answered");
    assert!(got.starts_with("OK ONE b "), "{got}");
    assert_eq!(queued(&mut admin, "ONE"), ["c"]);
    assert_eq!(b.req("CHECKIN ONE b"), "OK ONE b");
    let got = c.read_line().expect("c is answered");
    assert!(got.starts_with("OK ONE c "), "{got}");
    assert!(queued(&mut admin, "ONE").is_empty());
    assert!(eventually(GENEROUS, || t
        .log_lines()
        .iter()
        .any(|l| l.contains("QUEUED: \"ONE\" bob@h [b]"))));
}

#[test]
fn a_waiter_is_denied_when_its_wait_runs_out() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    assert!(a.req("CHECKOUT ONE ann h a").starts_with("OK "));
    let mut b = t.connect();
    let asked = std::time::Instant::now();
    b.send(b"CHECKOUT ONE bob h b wait=1\n");
    // It waits in the queue (a checkout without wait= is denied at once).
    assert!(eventually(GENEROUS, || queued(&mut a, "ONE") == ["b"]));
    let got = b.read_line().expect("b is answered");
    assert!(got.starts_with("DENIED ONE b ALL_IN_USE -4"), "{got}");
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "denied only when its second of waiting ran out"
    );
    assert!(queued(&mut a, "ONE").is_empty());
    assert_eq!(a.in_use("ONE"), 1);
}

#[test]
fn a_waiter_that_disconnects_leaves_the_queue() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    assert!(a.req("CHECKOUT ONE ann h a").starts_with("OK "));
    let mut b = t.connect();
    b.send(b"CHECKOUT ONE bob h b wait=60\n");
    assert!(eventually(GENEROUS, || queued(&mut a, "ONE") == ["b"]));
    drop(b);
    assert!(eventually(GENEROUS, || queued(&mut a, "ONE").is_empty()));
    assert_eq!(a.req("CHECKIN ONE a"), "OK ONE a");
    assert_eq!(a.in_use("ONE"), 0, "the gone waiter got nothing");
}

#[test]
fn replies_stay_in_request_order_behind_a_waiter() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    assert!(a.req("CHECKOUT ONE ann h a linger=1").starts_with("OK "));
    // Pipelined: the PING is answered only after the queued checkout,
    // which the linger expiry serves.
    let mut b = t.connect();
    b.send(b"CHECKOUT ONE bob h b wait=60\nPING\n");
    let first = b.read_line().expect("reply");
    assert!(first.starts_with("OK ONE b "), "{first}");
    assert_eq!(b.read_line().as_deref(), Some("PONG"));
}

#[test]
fn a_renewal_is_not_held_behind_the_queue() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    assert!(a.req("CHECKOUT ONE ann h a linger=600").starts_with("OK "));
    let mut b = t.connect();
    b.send(b"CHECKOUT ONE bob h b wait=60\n");
    assert!(eventually(GENEROUS, || queued(&mut a, "ONE") == ["b"]));
    assert!(a
        .req("CHECKOUT ONE ann h a linger=600")
        .starts_with("OK ONE a "));
}

#[test]
fn a_queued_lingering_grant_is_answered_once_durable() {
    // `--durability sync` (the default): the grant's reply waits for its
    // journal record, and must still go out when it is durable.
    let t = Tallyd::start(LICENSE, &["--durability", "sync"]);
    let mut a = t.connect();
    let mut b = t.connect();
    let mut admin = t.connect();
    assert!(a.req("CHECKOUT ONE ann h a").starts_with("OK "));
    b.send(b"CHECKOUT ONE bob h b linger=600 wait=60\n");
    assert!(eventually(GENEROUS, || queued(&mut admin, "ONE") == ["b"]));
    assert_eq!(a.req("CHECKIN ONE a"), "OK ONE a");
    let got = b.read_line().expect("b is answered");
    assert!(got.starts_with("OK ONE b "), "{got}");
    assert!(
        !got.ends_with(" 0"),
        "a lingering grant has a deadline: {got}"
    );
}

/// A request no pool can ever grant is denied at once instead of queued,
/// so it cannot block the feature for everyone behind it (issue 12.6).
#[test]
fn a_request_for_more_than_the_license_has_is_denied_not_queued() {
    let t = Tallyd::start(
        "VENDOR CITRIX\nFEATURE HUNDRED CITRIX 1.0 permanent 100\n",
        &["--durability", "off"],
    );
    let mut attacker = t.connect();
    let r = attacker.req("CHECKOUT HUNDRED attacker h big count=101 wait=86400");
    assert!(
        r.starts_with("DENIED HUNDRED big COUNT_TOO_HIGH -4 "),
        "{r}"
    );
    // wait= has a maximum.
    let r = attacker.req("CHECKOUT HUNDRED attacker h big2 wait=315360000000");
    assert!(r.starts_with("ERR BAD_FIELD wait="), "{r}");
    let mut user = t.connect();
    let r = user.req("CHECKOUT HUNDRED alice pc1 a1");
    assert!(r.starts_with("OK HUNDRED a1 "), "{r}");
    assert!(queued(&mut user, "HUNDRED").is_empty());
}

/// A large waiter holds the door for smaller requests for at most the
/// documented bound (10 s), then they are served from the free licenses
/// while it keeps its place.
#[test]
fn a_large_waiter_blocks_smaller_requests_for_a_bounded_time() {
    let t = Tallyd::start(
        "VENDOR CITRIX\nFEATURE TWO CITRIX 1.0 permanent 2\n",
        &["--durability", "off"],
    );
    let mut a = t.connect();
    let mut big = t.connect();
    let mut c = t.connect();
    assert!(a.req("CHECKOUT TWO ann h a").starts_with("OK "));
    big.send(b"CHECKOUT TWO bob h big count=2 wait=60\n");
    assert!(eventually(GENEROUS, || queued(&mut c, "TWO") == ["big"]));
    let start = std::time::Instant::now();
    let r = c.req("CHECKOUT TWO carl h c");
    assert!(r.starts_with("DENIED TWO c ALL_IN_USE"), "{r}");
    let served = eventually(Duration::from_secs(30), || {
        c.req("CHECKOUT TWO carl h c").starts_with("OK TWO c ")
    });
    assert!(served, "the small request stayed blocked");
    assert!(
        start.elapsed() >= Duration::from_millis(9_000),
        "overtook the head before the bound"
    );
    assert_eq!(queued(&mut c, "TWO"), ["big"], "the head keeps its place");
    // Both small ones back: the head is served first.
    assert_eq!(c.req("CHECKIN TWO c"), "OK TWO c");
    assert_eq!(a.req("CHECKIN TWO a"), "OK TWO a");
    let got = big.read_line().expect("big is answered");
    assert!(got.starts_with("OK TWO big "), "{got}");
}
