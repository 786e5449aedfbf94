//! Black-box test of license borrowing: the real `tallyd`, a borrow that
//! survives its connection, a kill -9 and a restart on the same journal,
//! and is then returned early by the admin (BORROW_RETURN), after which
//! another user gets the license.

mod common;

use std::time::Duration;

use common::{eventually, Scratch, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
FEATURE ROAD CITRIX 1.0 permanent 1 BORROW=48
FEATURE DESK CITRIX 1.0 permanent 1
";

const GENEROUS: Duration = Duration::from_secs(20);

fn deadline_of(reply: &str) -> u64 {
    reply
        .rsplit(' ')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no deadline in {reply:?}"))
}

/// The STATUS holders of `feature` as JSON values.
fn holders(t: &Tallyd, feature: &str) -> Vec<serde_json::Value> {
    let s = t.connect().status();
    s["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter(|f| f["name"] == feature)
        .flat_map(|f| f["holders"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn a_borrow_survives_kill_9_and_is_returned_early_by_the_admin() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &["--durability", "sync"], &state.0);
    let mut alice = t.connect();
    let r = alice.req("CHECKOUT ROAD alice laptop1 h1 borrow=48");
    assert!(r.starts_with("OK ROAD h1 "), "{r}");
    let end = deadline_of(&r);
    // Too long, and a line without BORROW: denied, naming why.
    let r = alice.req("CHECKOUT ROAD alice laptop1 h2 borrow=49");
    assert!(
        r.starts_with(
            "DENIED ROAD h2 BORROW_TOO_LONG -42 Cannot borrow that long. (at most 48 hours)"
        ),
        "{r}"
    );
    let r = alice.req("CHECKOUT DESK alice laptop1 h3 borrow=1");
    assert!(r.starts_with("DENIED DESK h3 NOT_BORROWABLE "), "{r}");
    // Alice leaves the network: the borrow stays out. Once tallyd has
    // handled her close (it counts the connection gone after releasing
    // what the connection held), the STATUS connection is the only one.
    drop(alice);
    assert!(
        eventually(GENEROUS, || t.connect().status()["server"]["connections"]
            == 1),
        "alice's close was never handled"
    );
    let mut bob = t.connect();
    let denied = "DENIED ROAD b1 ALL_IN_USE -4 Licensed number of users already reached.";
    assert_eq!(
        bob.req("CHECKOUT ROAD bob pc2 b1"),
        denied,
        "the borrow went back with its connection"
    );
    drop(bob);
    // The debug log is written in batches (docs/operations.md): its OUT
    // line is on disk before the kill, or a kill -9 may lose it.
    assert!(
        eventually(GENEROUS, || t
            .log_lines()
            .iter()
            .any(|l| l.contains("OUT: \"ROAD\" alice@laptop1 [h1]  (BORROW)"))),
        "{:?}",
        t.log_lines()
    );

    t.kill9();
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let h = holders(&t2, "ROAD");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["user"], "alice");
    assert_eq!(h[0]["deadline_ms"].as_u64(), Some(end));
    assert_eq!(h[0]["borrowed_until_ms"].as_u64(), Some(end), "{h:?}");
    assert_eq!(h[0]["linger_ms"].as_u64(), Some(48 * 3_600_000));
    let mut bob = t2.connect();
    assert_eq!(bob.req("CHECKOUT ROAD bob pc2 b1"), denied);

    // The admin (a loopback peer) ends it early.
    let mut admin = t2.connect();
    assert_eq!(admin.req("BORROW_RETURN ROAD bob pc2"), "OK RETURNED 0");
    assert_eq!(
        admin.req("BORROW_RETURN ROAD alice laptop1"),
        "OK RETURNED 1"
    );
    let r = bob.req("CHECKOUT ROAD bob pc2 b1");
    assert_eq!(r, "OK ROAD b1 0");
    assert!(
        eventually(GENEROUS, || t2.log_lines().iter().any(
            |l| l.contains("IN: \"ROAD\" alice@laptop1 [h1]  (BORROW RETURNED)")
        )),
        "{:?}",
        t2.log_lines()
    );
    assert!(
        t.log_lines()
            .iter()
            .any(|l| l.contains("OUT: \"ROAD\" alice@laptop1 [h1]  (BORROW)")),
        "{:?}",
        t.log_lines()
    );
}
