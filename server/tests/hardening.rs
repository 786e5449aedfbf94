//! Defects found by trying to break tallyd (issue 12): each test provokes
//! the fault for real against the tallyd binary.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{eventually, Client, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT F1 CITRIX 1.0 permanent 100 VENDOR_STRING=LT=Retail
INCREMENT CITRIX CITRIX 1.0 permanent uncounted VENDOR_STRING=LT=SYS
";

/// Out of file descriptors, then back: the server accepts again (an
/// edge-triggered listener gets no new event for a full backlog, so a loop
/// that only waited for one would never accept again).
#[test]
fn accepting_resumes_after_running_out_of_file_descriptors() {
    let d = Tallyd::start_with_nofile(LICENSE, &["--durability", "off"], 256);
    let mut conns = Vec::new();
    for _ in 0..600 {
        // A full backlog leaves a connect hanging in SYN retries: give up
        // (after long enough that a loaded machine's slow accept is not
        // taken for a full backlog).
        match TcpStream::connect_timeout(&d.addr, Duration::from_secs(2)) {
            Ok(s) => conns.push(s),
            Err(_) => break,
        }
    }
    // 256 descriptors less the server's own, plus the listen backlog.
    assert!(conns.len() > 256, "only {} connections made", conns.len());
    // Let the loops hit the limit while the rest wait in the backlog.
    std::thread::sleep(Duration::from_millis(300));
    drop(conns);
    // The fds come back as the server sees the closes; a new client must
    // then be served.
    let served = eventually(Duration::from_secs(20), || {
        let Ok(s) = TcpStream::connect_timeout(&d.addr, Duration::from_secs(1)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut c = Client::new(s);
        c.send(b"PING\n");
        matches!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.read_line())), Ok(Some(l)) if l == "PONG")
    });
    assert!(served, "no PONG after the descriptors came back");
    // The PONG may come from the loop that never stalled; the one that did
    // says so at its next retry (ACCEPT_RETRY_MS), through the log thread.
    eventually(Duration::from_secs(10), || {
        d.log_lines()
            .iter()
            .any(|l| l.contains("accepting connections again"))
    });
    let log = d.log_lines().join("\n");
    // Once per episode and loop (two workers; a loop may recover and run
    // out again while the closes come in), never once per failed attempt.
    let episodes = log.matches("accept failed: Too many open files").count();
    assert!((1..=4).contains(&episodes), "{episodes} lines:\n{log}");
    assert!(log.contains("accepting connections again"), "{log}");
}

/// The startup license (LT=SYS) is checked out and at once checked in by
/// the server (seed 002); the agent's own CHECKIN of it must be OK, and an
/// uncounted feature's likewise.
#[test]
fn checkin_of_the_startup_license_is_ok() {
    let d = Tallyd::start(LICENSE, &["--durability", "off"]);
    let mut c = d.connect();
    let r = c.req("CHECKOUT CITRIX ctxadmin pc1 ec26edf8");
    assert!(r.starts_with("OK CITRIX ec26edf8"), "{r}");
    assert_eq!(c.req("CHECKIN CITRIX ec26edf8"), "OK CITRIX ec26edf8");
    // A feature that does hold instances still says what is true.
    let r = c.req("CHECKIN F1 nobody");
    assert!(r.starts_with("ERR NOT_HELD"), "{r}");
}

/// A token file no AUTH could match is refused at start, naming the file
/// and what is wrong with it.
#[test]
fn an_unusable_admin_token_file_is_refused_at_start() {
    let scratch = common::Scratch::new("badtoken");
    let lic = scratch.path("license.lic");
    std::fs::write(&lic, LICENSE).unwrap();
    for (name, bytes, why) in [
        ("space", b"two words\n".to_vec(), "a space"),
        ("nul", b"ab\0cd".to_vec(), "a NUL byte"),
        ("long", vec![b'k'; 300], "300 bytes"),
    ] {
        let token = scratch.path(name);
        std::fs::write(&token, bytes).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tallyd"))
            .arg("-c")
            .arg(&lic)
            .args(["--port", "0", "--durability", "off", "--admin-token-file"])
            .arg(&token)
            .output()
            .expect("run tallyd");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: tallyd started: {err}");
        assert!(
            err.contains(why) && err.contains(&*token.to_string_lossy()),
            "{name}: {err}"
        );
    }
}

/// A failed AUTH after a good one takes the rights away; three failures
/// close the connection; failures and refusals reach the debug log.
#[test]
fn failed_admin_attempts_are_logged_revoke_and_close() {
    let scratch = common::Scratch::new("token");
    let token = scratch.path("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let d = Tallyd::start(
        LICENSE,
        &[
            "--durability",
            "off",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    let mut remote = d.connect_from("127.0.0.2");
    assert_eq!(remote.req("AUTH s3cret-token"), "OK AUTH");
    assert!(remote
        .req("AUTH s3cret-tokeN")
        .starts_with("ERR AUTH_FAILED "));
    let r = remote.req("REREAD");
    assert!(
        r.starts_with("ERR FORBIDDEN "),
        "still admin after a failed AUTH: {r}"
    );
    assert!(remote.req("AUTH guess2").starts_with("ERR AUTH_FAILED "));
    let r = remote.req("AUTH guess3");
    assert!(r.contains("closing"), "{r}");
    assert!(
        remote.is_closed(),
        "the connection stays open after 3 failures"
    );
    let mut admin = d.connect();
    assert_eq!(admin.req("PING"), "PONG");
    let logged = eventually(Duration::from_secs(10), || {
        let log = d.log_lines().join("\n");
        log.matches("AUTH failed from 127.0.0.2").count() == 3
            && log.contains("REREAD refused: 127.0.0.2")
    });
    assert!(logged, "{}", d.log_lines().join("\n"));
}

/// A start that fails (the state directory is another tallyd's) writes
/// nothing into the debug log it was given, which is the live server's
/// here, and says why on stderr.
#[test]
fn a_failed_start_writes_nothing_into_the_debug_log() {
    let d = Tallyd::start(LICENSE, &[]);
    assert!(eventually(Duration::from_secs(10), || d
        .log_lines()
        .iter()
        .any(|l| l.contains("Server started on"))));
    let before = std::fs::read_to_string(&d.log).unwrap();
    let state = d.scratch.path("state");
    for truncate in [false, true] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tallyd"));
        cmd.arg("-c")
            .arg(&d.license)
            .arg("-l")
            .arg(&d.log)
            .args(["--port", "0", "--state-dir"])
            .arg(&state);
        if truncate {
            cmd.arg("--truncate-log");
        }
        let out = cmd.output().expect("run a second tallyd");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a second tallyd started: {err}");
        assert!(err.contains(&*state.to_string_lossy()), "why? {err}");
    }
    let mut c = d.connect();
    assert_eq!(c.req("PING"), "PONG");
    assert_eq!(std::fs::read_to_string(&d.log).unwrap(), before);
}

/// A client that sends an over-long line and keeps sending still reads the
/// LINE_TOO_LONG reply: the server sends a FIN after it and drains what
/// comes, instead of a reset that would destroy the reply in flight.
#[test]
fn line_too_long_reply_reaches_a_client_still_sending() {
    use std::io::{Read, Write};
    let d = Tallyd::start(LICENSE, &["--durability", "off"]);
    for _ in 0..5 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // 40 KiB without a newline, at once: the server has unread bytes
        // when it closes, and the kernel resets a socket closed so.
        let junk = vec![b'x'; 40 * 1024];
        s.write_all(&junk).unwrap();
        // Time for a reset to come back, if the server sends one.
        std::thread::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(r.is_ok(), "read failed ({r:?}) after {text:?}");
        assert!(text.starts_with("ERR LINE_TOO_LONG "), "{text:?}");
    }
}

/// Only a license's holder renews or checks it in; handles are hidden from
/// remote peers without AUTH; a reconnecting holder gets its instance back.
#[test]
fn a_remote_client_cannot_release_or_take_over_another_users_license() {
    let d = Tallyd::start(LICENSE, &["--durability", "off"]);
    let mut alice = d.connect_from("127.0.0.3");
    assert!(alice
        .req("CHECKOUT F1 alice pc1 a-linger linger=600")
        .starts_with("OK F1 a-linger "));
    assert!(alice
        .req("CHECKOUT F1 alice pc1 a-bound")
        .starts_with("OK F1 a-bound 0"));

    let mut mallory = d.connect_from("127.0.0.2");
    let s = mallory.status();
    assert_eq!(s["handles_hidden"], true, "{s}");
    let holders = s["features"][0]["holders"].as_array().unwrap().clone();
    assert_eq!(holders.len(), 2);
    for h in &holders {
        assert_eq!(
            (h["handle"].as_str(), h["ticket"].as_u64()),
            (Some(""), Some(0)),
            "{h}"
        );
        assert_eq!(h["user"], "alice");
    }
    // A fresh connection per attempt: the third refusal on one connection
    // closes it (a client trying handles), checked below.
    let attempt = |line: &str| d.connect_from("127.0.0.2").req(line);
    for handle in ["a-linger", "a-bound"] {
        let r = attempt(&format!("CHECKIN F1 {handle}"));
        assert!(r.starts_with("ERR NOT_HOLDER "), "{handle}: {r}");
        let r = attempt(&format!("CHECKIN F1 {handle} user=mallory host=evil"));
        assert!(r.starts_with("ERR NOT_HOLDER "), "{handle}: {r}");
    }
    let r = attempt("CHECKOUT F1 mallory evil a-linger linger=0.001");
    assert!(r.starts_with("DENIED F1 a-linger NOT_HOLDER -42 "), "{r}");
    for _ in 0..2 {
        assert!(mallory
            .req("CHECKIN F1 a-bound")
            .starts_with("ERR NOT_HOLDER "));
    }
    assert!(mallory
        .req("CHECKIN F1 a-bound")
        .starts_with("ERR NOT_HOLDER "));
    assert!(mallory.is_closed(), "three refusals close the connection");
    // Nothing moved: both still out, the linger deadline untouched.
    let mut admin = d.connect();
    assert_eq!(admin.in_use("F1"), 2);
    assert_eq!(admin.holders("F1"), ["a-bound", "a-linger"]);

    // Alice reconnects (same user and host): her instance comes back.
    let mut again = d.connect_from("127.0.0.3");
    let r = again.req("CHECKOUT F1 alice pc1 a-linger linger=600");
    assert!(r.starts_with("OK F1 a-linger "), "{r}");
    assert_eq!(admin.in_use("F1"), 2, "renewed, not a second license");
    // A check-in naming the holder, from a connection that has not
    // checked anything out.
    let mut fresh = d.connect_from("127.0.0.3");
    assert_eq!(
        fresh.req("CHECKIN F1 a-linger user=alice host=pc1"),
        "OK F1 a-linger"
    );
    // Her own connection checks in what it holds.
    assert_eq!(alice.req("CHECKIN F1 a-bound"), "OK F1 a-bound");
    assert_eq!(admin.in_use("F1"), 0);
}

/// STATUS pages through pools and names one feature; `in_use` agrees with
/// the holders listed.
#[test]
fn status_pages_and_filters() {
    let d = Tallyd::start(
        "VENDOR V\nFEATURE A V 1.0 permanent 3\nFEATURE B V 1.0 permanent 3\nINCREMENT B V 1.0 permanent 2\nFEATURE C V 1.0 permanent 1\n",
        &["--durability", "off"],
    );
    let mut c = d.connect();
    assert!(c.req("CHECKOUT B u h b1").starts_with("OK "));
    let page = |c: &mut Client, q: &str| -> serde_json::Value {
        let r = c.req(q);
        serde_json::from_str(r.strip_prefix("OK ").unwrap_or_else(|| panic!("{q}: {r}"))).unwrap()
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let p1 = page(&mut c, "STATUS limit=2");
    assert_eq!(
        (names(&p1), p1["next"].as_u64()),
        (vec!["A".into(), "B".into()], Some(2))
    );
    let p2 = page(&mut c, "STATUS from=2 limit=2");
    assert_eq!(
        (names(&p2), p2["next"].as_u64()),
        (vec!["B".into(), "C".into()], None)
    );
    let b = page(&mut c, "STATUS B");
    assert_eq!(names(&b), ["B", "B"]);
    let listed: u64 = b["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let held: u64 = f["holders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["count"].as_u64().unwrap())
                .sum();
            assert_eq!(f["in_use"].as_u64().unwrap(), held, "{f}");
            held
        })
        .sum();
    assert_eq!(listed, 1);
    let r = c.req("STATUS limit=many");
    assert!(r.starts_with("ERR BAD_FIELD "), "{r}");
    // A pipelined request behind a STATUS is answered after it.
    c.send(b"STATUS\nPING\n");
    assert!(c.read_line().unwrap().starts_with("OK {"));
    assert_eq!(c.read_line().unwrap(), "PONG");
}

/// Under DUP_GROUP, a deadline an OK promised is kept: another handle's
/// checkout without linger does not cancel the first handle's linger, and
/// the instance is held until the latest promise (issue 12.19).
#[test]
fn a_dup_group_linger_promise_survives_another_use() {
    let d = Tallyd::start(UHD, &["--durability", "off"]);
    let mut a = d.connect();
    let r = a.req("CHECKOUT XA_UHD u pc1 x1 linger=30");
    let promised: u64 = r.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(r.starts_with("OK XA_UHD x1 ") && promised > 0, "{r}");
    let mut b = d.connect();
    assert_eq!(b.req("CHECKOUT XA_UHD u pc1 x2"), "OK XA_UHD x2 0");
    drop(b);
    drop(a);
    // Both connections gone: still held, until x1's deadline.
    let mut admin = d.connect();
    std::thread::sleep(Duration::from_millis(300));
    let s = admin.status();
    let f = &s["features"][0];
    assert_eq!(f["in_use"], 1, "{s}");
    assert_eq!(f["holders"][0]["deadline_ms"], promised, "{s}");
    // A new use without linger after x1's connection closed, then closed:
    // x1's promise still holds the license.
    let mut c = d.connect();
    assert_eq!(c.req("CHECKOUT XA_UHD u pc1 x3"), "OK XA_UHD x3 0");
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(admin.in_use("XA_UHD"), 1);
    // A check-in from a connection without that use says what is true.
    let mut other = d.connect();
    assert!(other.req("CHECKOUT XA_UHD u pc1 z1").starts_with("OK "));
    let r = d.connect().req("CHECKIN XA_UHD z1");
    assert!(
        r.starts_with("ERR NOT_HELD ") && r.contains("on this connection"),
        "{r}"
    );
}

const UHD: &str = "VENDOR V\nINCREMENT XA_UHD V 1.0 permanent 5 DUP_GROUP=UHD\nINCREMENT SITE V 1.0 permanent 5 DUP_GROUP=V\n";

/// A use without linger holds a DUP_GROUP license while its connection
/// lives, whatever deadline another use had (or a remote peer sends).
#[test]
fn a_bound_dup_group_use_is_never_cut_by_another_uses_deadline() {
    let d = Tallyd::start(UHD, &["--durability", "off"]);
    let mut a = d.connect();
    assert!(a
        .req("CHECKOUT XA_UHD u pc1 x1 linger=1")
        .starts_with("OK "));
    let mut b = d.connect();
    assert_eq!(b.req("CHECKOUT XA_UHD u pc1 x2"), "OK XA_UHD x2 0");
    let mut mallory = d.connect_from("127.0.0.2");
    assert!(mallory
        .req("CHECKOUT XA_UHD u pc1 m1 linger=0.001")
        .starts_with("OK "));
    std::thread::sleep(Duration::from_millis(1_600));
    let mut admin = d.connect();
    assert_eq!(admin.in_use("XA_UHD"), 1, "x2 is still connected");
    drop(b);
    assert!(
        eventually(Duration::from_secs(10), || admin.in_use("XA_UHD") == 0),
        "the last bound use gone and every promise past: checked in"
    );
    drop(a);
}

/// Nobody checks in a DUP_GROUP license by naming a handle or its holder
/// from a connection without that use.
#[test]
fn a_shared_license_is_not_checked_in_from_elsewhere() {
    let d = Tallyd::start(UHD, &["--durability", "off"]);
    let mut alice = d.connect_from("127.0.0.3");
    let mut bob = d.connect_from("127.0.0.4");
    assert!(alice.req("CHECKOUT SITE alice pc1 a").starts_with("OK "));
    assert!(bob.req("CHECKOUT SITE bob pc2 b").starts_with("OK "));
    let mut mallory = d.connect_from("127.0.0.2");
    for r in [
        mallory.req("CHECKIN SITE whatever user=alice host=pc1"),
        mallory.req("CHECKIN SITE a"),
        alice.req("CHECKIN SITE b"),
    ] {
        assert!(r.starts_with("ERR NOT_HELD "), "{r}");
    }
    let mut admin = d.connect();
    assert_eq!(admin.in_use("SITE"), 1);
    // Alice's own check-in twice (a retry) does not end bob's use.
    assert_eq!(alice.req("CHECKIN SITE a"), "OK SITE a");
    assert!(alice.req("CHECKIN SITE a").starts_with("ERR NOT_HELD "));
    assert_eq!(admin.in_use("SITE"), 1, "bob's use goes on");
}

/// A client that sends STATUS and half-closes (`echo STATUS | nc -N`) still
/// gets the reply built off the loop.
#[test]
fn status_reaches_a_client_that_half_closed() {
    use std::io::{Read, Write};
    let d = Tallyd::start(LICENSE, &["--durability", "off"]);
    for _ in 0..20 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"STATUS\nPING\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 2, "{got:?}");
        assert!(
            lines[0].starts_with("OK {") && lines[1] == "PONG",
            "{got:?}"
        );
    }
}

/// DUP_GROUP promises and check-ins survive `kill -9`: a license checked
/// in stays in, a promise kept is still kept.
#[test]
fn dup_group_promises_and_checkins_survive_a_crash() {
    let state = common::Scratch::new("uhd-state");
    let mut d = Tallyd::start_with_state(UHD, &[], &state.0);
    let mut a = d.connect();
    assert!(a
        .req("CHECKOUT XA_UHD u pc1 x1 linger=3600")
        .starts_with("OK "));
    let mut b = d.connect();
    assert_eq!(b.req("CHECKOUT XA_UHD u pc1 x2"), "OK XA_UHD x2 0");
    assert_eq!(a.req("CHECKIN XA_UHD x1"), "OK XA_UHD x1");
    drop(b);
    let mut admin = d.connect();
    assert!(eventually(Duration::from_secs(10), || admin
        .in_use("XA_UHD")
        == 0));
    // Another instance: y1 promised an hour, y2 bound, then the crash.
    let mut c = d.connect();
    let r = c.req("CHECKOUT XA_UHD v pc2 y1 linger=3600");
    let promised: u64 = r.rsplit(' ').next().unwrap().parse().unwrap();
    let mut e = d.connect();
    assert_eq!(e.req("CHECKOUT XA_UHD v pc2 y2"), "OK XA_UHD y2 0");
    d.kill9();
    let d = Tallyd::start_with_state(UHD, &[], &state.0);
    let mut admin = d.connect();
    let s = admin.status();
    let holders = s["features"][0]["holders"].as_array().unwrap().clone();
    assert_eq!(holders.len(), 1, "only y's license comes back: {s}");
    assert_eq!(holders[0]["user"], "v");
    assert_eq!(holders[0]["deadline_ms"], promised, "{s}");
}

/// A lingering license is released at its deadline whether the loops wake
/// by their timerfd or, when none could be made (EMFILE: the debug-build
/// hook `TALLYD_DEBUG_NO_TIMERFD` makes that failure), by the poll timeout
/// alone; the log says which loops have none, and a queued client gets the
/// license after the deadline, never before.
#[test]
fn lingers_expire_with_and_without_a_timerfd() {
    for no_timerfd in [false, true] {
        let scratch = common::Scratch::new("timerfd");
        let env: &[(&str, &str)] = if no_timerfd {
            &[("TALLYD_DEBUG_NO_TIMERFD", "1")]
        } else {
            &[]
        };
        let d = Tallyd::start_with_env(
            "FEATURE ONE CITRIX 1.0 permanent 1\n",
            &["--durability", "off"],
            &scratch.path("state"),
            env,
        );
        let mut holder = d.connect();
        let mut waiter = d.connect();
        for round in 0..3 {
            let r = holder.req(&format!("CHECKOUT ONE u h hold{round} linger=0.200"));
            assert!(r.starts_with("OK ONE"), "{no_timerfd}: {r}");
            let deadline: u64 = r.rsplit(' ').next().unwrap().parse().unwrap();
            let r = waiter.req(&format!("CHECKOUT ONE w h wait{round} wait=10"));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            assert!(r.starts_with("OK ONE"), "{no_timerfd}: {r}");
            assert!(
                now >= deadline,
                "{no_timerfd}: granted at {now}, before {deadline}"
            );
            assert_eq!(
                waiter.req(&format!("CHECKIN ONE wait{round}")),
                format!("OK ONE wait{round}")
            );
        }
        let said = eventually(Duration::from_secs(5), || {
            d.log_lines().iter().any(|l| l.contains("no timerfd"))
        });
        assert_eq!(said, no_timerfd, "{:?}", d.log_lines());
    }
}
