//! `tallyctl borrow return` and `lmstat -a` against a real tallyd whose
//! borrow survived a kill -9 and a restart on its journal.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{Scratch, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
FEATURE ROAD CITRIX 1.0 permanent 1 BORROW=48
";

fn tallyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .env_remove("TALLY_LICENSE_FILE")
        .env_remove("LM_LICENSE_FILE")
        .output()
        .expect("run tallyctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_admin_returns_a_borrow_that_survived_a_kill_9() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &["--durability", "sync"], &state.0);
    let r = t.connect().req("CHECKOUT ROAD alice laptop1 h1 borrow=48");
    assert!(r.starts_with("OK ROAD h1 "), "{r}");
    t.kill9();
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let server = format!("{}@127.0.0.1", t2.addr.port());

    // lmstat shows it as FlexLM does a borrowed license: a linger of the
    // whole borrow period.
    let out = tallyctl(&["lmstat", "-a", "-c", &server]);
    let report = text(&out.stdout);
    let line = report
        .lines()
        .find(|l| l.contains("alice laptop1"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(line.ends_with(" / 172800)"), "{line}");
    assert!(line.contains("(linger: "), "{line}");

    let mut bob = t2.connect();
    assert!(bob
        .req("CHECKOUT ROAD bob pc2 b1")
        .starts_with("DENIED ROAD b1 ALL_IN_USE"));
    let out = tallyctl(&[
        "borrow", "return", "-c", &server, "ROAD", "alice", "laptop1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).contains("returned 1 borrowed license of ROAD held by alice@laptop1"),
        "{out:?}"
    );
    assert_eq!(bob.req("CHECKOUT ROAD bob pc2 b1"), "OK ROAD b1 0");
    // Nothing left to return: exit 1, saying so.
    let out = tallyctl(&[
        "borrow", "return", "-c", &server, "ROAD", "alice", "laptop1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("has no borrow of ROAD"),
        "{out:?}"
    );
}

/// The client library's borrow: granted until its end, kept when the
/// client goes away, returned early with a check-in.
#[test]
fn the_client_library_borrows_and_returns_early() {
    let t = Tallyd::start(LICENSE, &[]);
    let server =
        tally_client::ServerAddr::parse(&format!("{}@127.0.0.1", t.addr.port()), "test").unwrap();
    let mut c = tally_client::Client::new(vec![server.clone()]);
    let req = tally_client::Checkout::new("ROAD", "alice", "laptop1", "h1").borrow(24);
    let g = c.checkout(&req).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let day = 24 * 3_600_000;
    assert!(
        g.deadline_ms > now + day - 60_000 && g.deadline_ms <= now + day + 1000,
        "{g:?}"
    );
    // More than the line's 48 hours: denied, naming the limit.
    let long = tally_client::Checkout::new("ROAD", "alice", "laptop1", "h2").borrow(49);
    let e = c.checkout(&long).unwrap_err();
    assert!(e.to_string().contains("at most 48 hours"), "{e}");
    drop(c);
    // The client is gone; the borrow stays out.
    let mut bob = t.connect();
    assert!(bob.req("CHECKOUT ROAD bob pc2 b1").starts_with("DENIED "));
    let mut c = tally_client::Client::new(vec![server]);
    c.checkin("ROAD", "h1").unwrap();
    assert!(bob.req("CHECKOUT ROAD bob pc2 b1").starts_with("OK "));
}
