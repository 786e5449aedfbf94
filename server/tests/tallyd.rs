//! Black-box tests: the real `tallyd` binary on a free port, over TCP.
//!
//! Timing bounds here are generous correctness bounds (a linger is released
//! after its deadline and within seconds of it), never performance claims;
//! lateness is measured in the benches.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{eventually, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT CITRIX CITRIX 2038.0101 permanent 5000 VENDOR_STRING=\";LT=SYS;GP=96;SA=0\"
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 2 VENDOR_STRING=\";LT=Retail;GP=720\"
FEATURE GROUPED CITRIX 1.0 permanent 1 DUP_GROUP=UH
FEATURE SINGLE CITRIX 1.0 permanent 1
";

const GENEROUS: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn counts_are_enforced_with_flexlm_codes() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert_eq!(c.req("CHECKOUT MPM_ADV_RC u1 h1 a"), "OK MPM_ADV_RC a 0");
    assert_eq!(c.req("CHECKOUT MPM_ADV_RC u2 h2 b"), "OK MPM_ADV_RC b 0");
    assert_eq!(
        c.req("CHECKOUT MPM_ADV_RC u3 h3 c"),
        "DENIED MPM_ADV_RC c ALL_IN_USE -4 Licensed number of users already reached."
    );
    assert_eq!(
        c.req("CHECKOUT NOPE u h x"),
        "DENIED NOPE x NO_SUCH_FEATURE -5 No such feature exists."
    );
    assert_eq!(
        c.req("CHECKOUT MPM_ADV_RC u h x version=2.0"),
        "DENIED MPM_ADV_RC x VERSION_TOO_HIGH -25 License server does not support this version of this feature."
    );
    assert_eq!(c.req("CHECKIN MPM_ADV_RC a"), "OK MPM_ADV_RC a");
    assert!(c.req("CHECKIN MPM_ADV_RC a").starts_with("ERR NOT_HELD "));
    assert!(c.req("CHECKIN NOPE a").starts_with("ERR NO_SUCH_FEATURE "));
    assert_eq!(c.req("CHECKOUT MPM_ADV_RC u3 h3 c"), "OK MPM_ADV_RC c 0");
    assert_eq!(c.in_use("MPM_ADV_RC"), 2);
}

#[test]
fn one_instance_per_handle_across_connections() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    let mut b = t.connect();
    let r1 = a.req("CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 linger=600");
    let r2 = b.req("CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 linger=600");
    assert!(r1.starts_with("OK MPM_ADV_RC ec26edf8 "), "{r1}");
    assert!(r2.starts_with("OK MPM_ADV_RC ec26edf8 "), "{r2}");
    assert_eq!(
        a.in_use("MPM_ADV_RC"),
        1,
        "the renewal took no second license"
    );
    // A reconnecting client gets its instance back: no leaked seat.
    drop(a);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 linger=600")
        .starts_with("OK "));
    assert_eq!(c.in_use("MPM_ADV_RC"), 1);
}

#[test]
fn dup_group_shares_a_license_between_handles() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT GROUPED alice pc1 h1").starts_with("OK "));
    assert!(c.req("CHECKOUT GROUPED alice pc1 h2").starts_with("OK "));
    assert!(c
        .req("CHECKOUT GROUPED alice pc2 h3")
        .starts_with("DENIED GROUPED h3 ALL_IN_USE -4"));
    assert_eq!(c.in_use("GROUPED"), 1);
    // Each handle is a use of the shared license: it goes back with the
    // last one, whichever order they check in.
    assert_eq!(c.req("CHECKIN GROUPED h1"), "OK GROUPED h1");
    assert_eq!(c.in_use("GROUPED"), 1, "h2 still uses it");
    assert!(c
        .req("CHECKOUT GROUPED bob pc2 h3")
        .starts_with("DENIED GROUPED h3 ALL_IN_USE -4"));
    assert_eq!(c.req("CHECKIN GROUPED h2"), "OK GROUPED h2");
    assert_eq!(c.in_use("GROUPED"), 0);
    assert!(c.req("CHECKOUT GROUPED bob pc2 h3").starts_with("OK "));
}

/// Uses beginning and ending on two event loops at once: a use that was
/// granted holds the license until it ends, even when it began just as
/// another loop ended what was then the last use. (Before the uses' lock,
/// that renewal could slip between the other loop's last-use decision and
/// its check-in, leaving an OK use with no license out.)
#[test]
fn a_use_granted_as_the_last_one_ends_still_holds_the_license() {
    let t = Tallyd::start(LICENSE, &[]); // two event loops, as every test here
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for n in 0..2 {
            let (t, stop) = (&t, &stop);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut c = t.connect();
                    let r = c.req(&format!("CHECKOUT GROUPED alice pc1 u{n}x{i}"));
                    assert!(r.starts_with("OK "), "{r}");
                    // Our use goes on: the license must be out.
                    assert_eq!(c.in_use("GROUPED"), 1, "use u{n}x{i} holds no license");
                    i += 1; // dropped: the connection closes, the use ends
                }
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut c = t.connect();
    assert!(eventually(GENEROUS, || c.in_use("GROUPED") == 0));
}

/// A use whose instance lingered out and was taken again: CHECKIN finds
/// the live instance, not the one the connection held before.
#[test]
fn a_grouped_checkin_finds_the_live_instance_after_an_expiry() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    for round in 0..3 {
        assert!(c
            .req("CHECKOUT GROUPED alice pc1 h1 linger=1")
            .starts_with("OK "));
        assert!(
            eventually(GENEROUS, || c.in_use("GROUPED") == 0),
            "round {round}: checked in at the deadline"
        );
    }
    assert!(c.req("CHECKOUT GROUPED alice pc1 h1").starts_with("OK "));
    assert_eq!(c.req("CHECKIN GROUPED h1"), "OK GROUPED h1");
    assert_eq!(c.in_use("GROUPED"), 0);
}

/// Uses of one DUP_GROUP license on different connections: one program
/// closing does not take the license from the other (which FlexLM would
/// not do either); it goes back when the last use ends.
#[test]
fn a_shared_license_stays_out_until_its_last_connection_closes() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut first = t.connect();
    let mut second = t.connect();
    let mut other = t.connect();
    assert!(first.req("CHECKOUT GROUPED alice pc1 a").starts_with("OK "));
    assert!(second
        .req("CHECKOUT GROUPED alice pc1 b")
        .starts_with("OK "));
    assert_eq!(other.in_use("GROUPED"), 1);
    // A reread into a bigger table moves the instance to a new slot: its
    // uses go with it.
    let bigger = LICENSE.replace(
        "MPM_ADV_RC CITRIX 1.0 permanent 2",
        "MPM_ADV_RC CITRIX 1.0 permanent 50000",
    );
    std::fs::write(t.license_path(), bigger).expect("rewrite license");
    assert_eq!(other.req("REREAD"), "OK REREAD 4 0");
    drop(first);
    // Give the server time to see the close; the license must stay out.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        other.in_use("GROUPED"),
        1,
        "alice's second program still uses it"
    );
    assert!(other
        .req("CHECKOUT GROUPED bob pc2 x")
        .starts_with("DENIED GROUPED x ALL_IN_USE -4"));
    drop(second);
    assert!(
        eventually(GENEROUS, || other.in_use("GROUPED") == 0),
        "released with the last use"
    );
    assert!(other.req("CHECKOUT GROUPED bob pc2 x").starts_with("OK "));
    // The log shows one OUT per use and one IN per use: balanced.
    let count = |log: &[String], what: &str| {
        log.iter()
            .filter(|l| l.contains(what) && l.contains("\"GROUPED\" alice@pc1"))
            .count()
    };
    assert!(
        eventually(GENEROUS, || {
            let log = t.log_lines();
            (count(&log, "OUT:"), count(&log, "IN:")) == (2, 2)
        }),
        "{:#?}",
        t.log_lines()
    );
}

#[test]
fn linger_is_released_at_the_deadline_not_before() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    let before = now_ms();
    let r = c.req("CHECKOUT SINGLE u h a linger=1");
    let deadline: u64 = r
        .rsplit(' ')
        .next()
        .and_then(|d| d.parse().ok())
        .expect("deadline");
    assert!(
        deadline >= before + 1000 && deadline <= now_ms() + 1000,
        "{r}"
    );
    // Still held right after, and a second client is refused.
    assert!(c.req("CHECKOUT SINGLE u2 h2 b").starts_with("DENIED "));
    // Another client spins until it gets the license.
    let mut spinner = t.connect();
    let granted_at = loop {
        let r = spinner.req("CHECKOUT SINGLE u2 h2 b");
        if r.starts_with("OK ") {
            break now_ms();
        }
        assert!(
            now_ms() < deadline + GENEROUS.as_millis() as u64,
            "never released"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        granted_at >= deadline,
        "released {} ms early",
        deadline - granted_at
    );
    // The log is written by its own thread: give it time to get there.
    let line = "(CITRIX) IN: \"SINGLE\" u@h [a]".to_string();
    assert!(
        eventually(GENEROUS, || t.log_lines().contains(&line)),
        "{:?}",
        t.log_lines()
    );
}

#[test]
fn return_with_linger_one_second() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC USER15 HOST ec26edf8 linger=1814400")
        .starts_with("OK "));
    let start = Instant::now();
    let r = c.req("CHECKOUT MPM_ADV_RC USER15 HOST ec26edf8 linger=1");
    assert!(r.starts_with("OK "), "{r}");
    assert_eq!(c.in_use("MPM_ADV_RC"), 1);
    assert!(eventually(GENEROUS, || c.in_use("MPM_ADV_RC") == 0));
    assert!(start.elapsed() >= Duration::from_millis(900));
    // The log shows the seed's sequence: OUT, OUT + IN (renewal), IN
    // (written by the log thread: wait for the last line to get there).
    let want = [
        "(CITRIX) OUT: \"MPM_ADV_RC\" USER15@HOST [ec26edf8]",
        "(CITRIX) OUT: \"MPM_ADV_RC\" USER15@HOST [ec26edf8]",
        "(CITRIX) IN: \"MPM_ADV_RC\" USER15@HOST [ec26edf8]",
        "(CITRIX) IN: \"MPM_ADV_RC\" USER15@HOST [ec26edf8]",
    ];
    let ours = || -> Vec<String> {
        t.log_lines()
            .into_iter()
            .filter(|l| l.contains(": \"MPM_ADV_RC\""))
            .collect()
    };
    assert!(eventually(GENEROUS, || ours().len() >= want.len()));
    assert_eq!(ours(), want);
}

#[test]
fn disconnect_releases_only_unlingered_checkouts() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    assert!(a.req("CHECKOUT MPM_ADV_RC u h held").starts_with("OK "));
    assert!(a
        .req("CHECKOUT MPM_ADV_RC u h lingering linger=600")
        .starts_with("OK "));
    drop(a);
    let mut b = t.connect();
    assert!(eventually(GENEROUS, || b.holders("MPM_ADV_RC") == ["lingering"]));
}

#[test]
fn startup_license_is_out_and_in_at_once() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    for i in 0..20 {
        assert_eq!(
            c.req(&format!("CHECKOUT CITRIX USER15 GENE-VM-2K3 h{i}")),
            format!("OK CITRIX h{i} 0")
        );
    }
    assert_eq!(c.in_use("CITRIX"), 0);
    let out = "(CITRIX) OUT: \"CITRIX\" USER15@GENE-VM-2K3 [h0]".to_string();
    let back = "(CITRIX) IN: \"CITRIX\" USER15@GENE-VM-2K3 [h0]".to_string();
    assert!(eventually(GENEROUS, || {
        let log = t.log_lines();
        log.contains(&out) && log.contains(&back)
    }));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    let mut batch = String::new();
    let mut want = Vec::new();
    for i in 0..300 {
        match i % 4 {
            0 => {
                batch.push_str("PING\n");
                want.push("PONG".to_string());
            }
            1 => {
                batch.push_str(&format!("CHECKOUT CITRIX u h p{i}\n"));
                want.push(format!("OK CITRIX p{i} 0"));
            }
            2 => {
                batch.push_str("BOGUS\n");
                want.push("ERR UNKNOWN_COMMAND".to_string());
            }
            _ => {
                batch.push_str(&format!("CHECKIN SINGLE p{i}\n"));
                want.push("ERR NOT_HELD".to_string());
            }
        }
    }
    c.send(batch.as_bytes());
    for (i, w) in want.iter().enumerate() {
        let got = c.read_line().expect("reply");
        assert!(
            got.starts_with(w.as_str()),
            "reply {i}: {got:?}, wanted {w:?}"
        );
    }
}

#[test]
fn malformed_input_is_answered_and_the_connection_stays_usable() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    let cases: &[(&[u8], &str)] = &[
        (b"\n", "ERR EMPTY_REQUEST"),
        (b"\r\n", "ERR EMPTY_REQUEST"),
        (b"HELLO there\n", "ERR UNKNOWN_COMMAND"),
        (b"CHECKOUT F\n", "ERR MISSING_FIELD"),
        (b"CHECKOUT SINGLE u h x count=many\n", "ERR BAD_FIELD"),
        (b"CHECKOUT SINGLE u h x count=0\n", "ERR BAD_FIELD"),
        (b"CHECKOUT SINGLE u h x linger=-5\n", "ERR BAD_FIELD"),
        (b"CHECKOUT SINGLE u h x speed=9\n", "ERR BAD_FIELD"),
        (b"CHECKOUT SINGLE  u h x\n", "ERR BAD_FIELD"),
        (b"CHECKOUT SINGLE u h \xff\xfe\n", "ERR BAD_UTF8"),
        (b"CHECKOUT SINGLE u h\x01 x\n", "ERR BAD_FIELD"),
        (b"CHECKIN\n", "ERR MISSING_FIELD"),
        (b"PING PONG\n", "ERR BAD_FIELD"),
        (b"\x00\x00\x00\n", "ERR BAD_FIELD"),
    ];
    for (input, want) in cases {
        c.send(input);
        let got = c.read_line().expect("reply");
        assert!(got.starts_with(want), "{input:?}: {got:?}");
        assert_eq!(c.req("PING"), "PONG", "usable after {input:?}");
    }
    // No checkout was lost or granted by the garbage.
    assert_eq!(c.in_use("SINGLE"), 0);
    assert_eq!(c.req("CHECKOUT SINGLE u h x"), "OK SINGLE x 0");
}

#[test]
fn an_over_long_line_is_answered_then_closed() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut keeper = t.connect();
    assert_eq!(
        keeper
            .req("CHECKOUT SINGLE u h keep linger=600")
            .split(' ')
            .next(),
        Some("OK")
    );
    let mut c = t.connect();
    c.send(&vec![b'A'; 10_000]);
    let got = c.read_line().expect("reply");
    assert!(got.starts_with("ERR LINE_TOO_LONG"), "{got}");
    assert!(c.is_closed());
    // The server and the other client's license are fine.
    assert_eq!(keeper.holders("SINGLE"), ["keep"]);
}

#[test]
fn admin_is_refused_from_a_remote_peer_without_the_token() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut remote = t.connect_from("127.0.0.2");
    assert!(remote.req("DOWN").starts_with("ERR FORBIDDEN "));
    assert!(remote.req("REREAD").starts_with("ERR FORBIDDEN "));
    assert!(remote
        .req("REMOVE SINGLE u h d")
        .starts_with("ERR FORBIDDEN "));
    assert!(remote.req("AUTH guess").starts_with("ERR AUTH_FAILED "));
    assert!(remote.req("DOWN").starts_with("ERR FORBIDDEN "));
    // Ordinary requests work for everyone.
    assert_eq!(remote.req("PING"), "PONG");
}

#[test]
fn admin_token_lets_a_remote_peer_in() {
    let scratch = common::Scratch::new("token");
    let token = scratch.path("token");
    std::fs::write(&token, "s3cret-token\n").expect("write token");
    let mut t = Tallyd::start(
        LICENSE,
        &["--admin-token-file", token.to_str().expect("utf-8 path")],
    );
    let mut remote = t.connect_from("127.0.0.2");
    assert!(remote.req("AUTH wrong").starts_with("ERR AUTH_FAILED "));
    assert!(remote.req("DOWN").starts_with("ERR FORBIDDEN "));
    assert_eq!(remote.req("AUTH s3cret-token"), "OK AUTH");
    assert_eq!(remote.req("DOWN"), "OK DOWN");
    let status = t.wait_exit(GENEROUS).expect("tallyd exits after DOWN");
    assert!(status.success());
    let log = t.log_lines();
    assert!(log
        .iter()
        .any(|l| l.starts_with("(lmgrd) SERVER shutdown requested")));
}

#[test]
fn remove_by_names_and_by_ticket() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC alice pc1 a display=console linger=600")
        .starts_with("OK "));
    assert!(c
        .req("CHECKOUT MPM_ADV_RC bob pc2 b linger=600")
        .starts_with("OK "));
    assert_eq!(c.req("REMOVE MPM_ADV_RC alice pc1 console"), "OK REMOVED 1");
    assert_eq!(c.holders("MPM_ADV_RC"), ["b"]);
    let s = c.status();
    let ticket = s["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["name"] == "MPM_ADV_RC")
        .and_then(|f| f["holders"][0]["ticket"].as_u64())
        .expect("ticket");
    assert!(c
        .req(&format!("REMOVE_HANDLE MPM_ADV_RC {}", ticket + 1000))
        .starts_with("ERR NOT_HELD"));
    assert_eq!(
        c.req(&format!("REMOVE_HANDLE MPM_ADV_RC {ticket}")),
        "OK REMOVED 1"
    );
    assert_eq!(c.in_use("MPM_ADV_RC"), 0);
    let line = "(CITRIX) REMOVING alice@pc1:console from MPM_ADV_RC".to_string();
    assert!(
        eventually(GENEROUS, || t.log_lines().contains(&line)),
        "{:?}",
        t.log_lines()
    );
}

#[test]
fn reread_keeps_existing_checkouts() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    let lingering = c.req("CHECKOUT MPM_ADV_RC u h lingering linger=600");
    assert!(lingering.starts_with("OK "));
    assert!(c.req("CHECKOUT MPM_ADV_RC u h held").starts_with("OK "));
    let before = c.status();
    // (start time, deadline) of each instance.
    let since = |s: &serde_json::Value| -> Vec<(u64, Option<u64>)> {
        let mut v: Vec<(u64, Option<u64>)> = s["features"]
            .as_array()
            .expect("features")
            .iter()
            .filter(|f| f["name"] == "MPM_ADV_RC")
            .flat_map(|f| f["holders"].as_array().cloned().unwrap_or_default())
            .map(|h| {
                (
                    h["since_ms"].as_u64().unwrap_or(0),
                    h["deadline_ms"].as_u64(),
                )
            })
            .collect();
        v.sort();
        v
    };
    // The new file: more seats, one feature gone, one new.
    let new_license = LICENSE
        .replace(
            "MPM_ADV_RC CITRIX 1.0 permanent 2",
            "MPM_ADV_RC CITRIX 1.0 permanent 5",
        )
        .replace(
            "FEATURE SINGLE CITRIX 1.0 permanent 1\n",
            "FEATURE NEWONE CITRIX 1.0 permanent 3\n",
        );
    std::fs::write(t.license_path(), new_license).expect("rewrite license");
    assert_eq!(c.req("REREAD"), "OK REREAD 4 0");
    let after = c.status();
    assert_eq!(
        since(&before),
        since(&after),
        "same instances, same start times and deadlines"
    );
    assert_eq!(
        c.in_use("MPM_ADV_RC"),
        2,
        "nothing dropped or counted twice"
    );
    assert_eq!(c.holders("MPM_ADV_RC"), ["held", "lingering"]);
    let total = after["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["name"] == "MPM_ADV_RC")
        .and_then(|f| f["total"].as_u64());
    assert_eq!(total, Some(5));
    assert!(c.req("CHECKOUT NEWONE u h n").starts_with("OK "));
    assert!(c
        .req("CHECKOUT SINGLE u h s")
        .starts_with("DENIED SINGLE s NO_SUCH_FEATURE"));
    // The lingering one (same deadline, above) renews; the held one is still
    // bound to this connection: check-in works, and disconnect would
    // release it.
    assert_eq!(
        c.req("CHECKOUT MPM_ADV_RC u h lingering linger=600")
            .split(' ')
            .next(),
        Some("OK")
    );
    assert_eq!(c.req("CHECKIN MPM_ADV_RC held"), "OK MPM_ADV_RC held");
    assert_eq!(c.in_use("MPM_ADV_RC"), 1);
}

/// Lingers held through every loop (two workers; connections spread over
/// both) still expire at their deadlines after a REREAD done on one of
/// them: each loop moves its own linger timers to the new engine's ids,
/// and the connection-bound checkouts beside them stay bound (none is
/// released by a stale id naming another instance of the new engine).
#[test]
fn lingers_on_every_loop_expire_after_a_reread() {
    let license = "FEATURE MANY CITRIX 1.0 permanent 100\n";
    let t = Tallyd::start(license, &[]);
    let mut clients: Vec<_> = (0..8).map(|_| t.connect()).collect();
    let mut deadline = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        // The bound one first: in the new engine, slots are given out in
        // another order than they were.
        assert!(c.req(&format!("CHECKOUT MANY u h b{i}")).starts_with("OK "));
        let r = c.req(&format!("CHECKOUT MANY u h l{i} linger=2"));
        assert!(r.starts_with("OK "), "{r}");
        deadline = r
            .rsplit(' ')
            .next()
            .and_then(|d| d.parse().ok())
            .expect("deadline");
    }
    std::fs::write(t.license_path(), license.replace("100", "50")).expect("rewrite license");
    let mut admin = t.connect();
    assert_eq!(admin.req("REREAD"), "OK REREAD 1 0");
    assert!(
        eventually(
            Duration::from_millis(2_000 + GENEROUS.as_millis() as u64),
            || { admin.in_use("MANY") == 8 }
        ),
        "the lingers were not released: {} in use",
        admin.in_use("MANY")
    );
    assert!(now_ms() >= deadline, "released before the deadline");
    assert_eq!(admin.in_use("MANY"), 8);
    let mut holders = admin.holders("MANY");
    holders.sort();
    assert_eq!(holders, (0..8).map(|i| format!("b{i}")).collect::<Vec<_>>());
    // The bound ones are still their connections': a close releases them.
    drop(clients);
    assert!(eventually(GENEROUS, || admin.in_use("MANY") == 0));
}

#[test]
fn reread_of_a_file_with_nothing_to_serve_changes_nothing() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC u h a linger=600")
        .starts_with("OK "));
    std::fs::write(t.license_path(), "# emptied by mistake\n").expect("rewrite license");
    let r = c.req("REREAD");
    assert!(
        r.starts_with("ERR REREAD_FAILED") && r.contains("nothing to serve"),
        "{r}"
    );
    assert_eq!(c.holders("MPM_ADV_RC"), ["a"]);
    assert!(c.req("CHECKOUT MPM_ADV_RC u h b").starts_with("OK "));
}

#[test]
fn reread_keeps_the_identity_of_long_names() {
    // Names this long are shortened in the table's holder copy (and so in
    // STATUS); the instance must still be the client's after a reread.
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    let (user, handle) = ("u".repeat(200), "h".repeat(150));
    let out = format!("CHECKOUT MPM_ADV_RC {user} host {handle} linger=600");
    assert!(c.req(&out).starts_with("OK "));
    assert_eq!(c.req("REREAD"), "OK REREAD 4 0");
    assert!(c.req(&out).starts_with("OK "), "renewed after the reread");
    assert_eq!(c.in_use("MPM_ADV_RC"), 1, "one instance, not two");
    assert_eq!(
        c.req(&format!("CHECKIN MPM_ADV_RC {handle}")),
        format!("OK MPM_ADV_RC {handle}")
    );
    assert_eq!(c.in_use("MPM_ADV_RC"), 0);
}

#[test]
fn reread_then_disconnect_releases_the_moved_unlingered_checkout() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut a = t.connect();
    assert!(a.req("CHECKOUT MPM_ADV_RC u h bound").starts_with("OK "));
    let mut admin = t.connect();
    assert_eq!(admin.req("REREAD"), "OK REREAD 4 0");
    assert_eq!(admin.holders("MPM_ADV_RC"), ["bound"]);
    drop(a);
    assert!(eventually(GENEROUS, || admin.in_use("MPM_ADV_RC") == 0));
}

#[test]
fn down_stops_the_server() {
    let mut t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert_eq!(c.req("DOWN"), "OK DOWN");
    let status = t.wait_exit(GENEROUS).expect("tallyd exits after DOWN");
    assert!(status.success());
    let log = t.log_lines();
    assert_eq!(
        log.last().map(String::as_str),
        Some("(lmgrd) tallyd shut down")
    );
}

#[test]
fn debug_log_matches_lmgrd_lines() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    c.req("CHECKOUT CITRIX USER15 GENE-VM-2K3 ec26edf8");
    c.req("CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 count=2");
    c.req("CHECKOUT SINGLE USER15 GENE-VM-2K3 ec26edf8");
    c.req("CHECKOUT SINGLE USER16 GENE-VM-2K4 ffff0000");
    c.req("CHECKIN MPM_ADV_RC ec26edf8");
    // Flush: the log is written by its own thread; wait for the last line.
    assert!(eventually(GENEROUS, || t
        .log_lines()
        .iter()
        .any(|l| l.contains("IN: \"MPM_ADV_RC\""))));
    let golden = [
        "(CITRIX) OUT: \"CITRIX\" USER15@GENE-VM-2K3 [ec26edf8]",
        "(CITRIX) IN: \"CITRIX\" USER15@GENE-VM-2K3 [ec26edf8]",
        "(CITRIX) OUT: \"MPM_ADV_RC\" USER15@GENE-VM-2K3 [ec26edf8]  (2 licenses)",
        "(CITRIX) OUT: \"SINGLE\" USER15@GENE-VM-2K3 [ec26edf8]",
        "(CITRIX) DENIED: \"SINGLE\" USER16@GENE-VM-2K4 [ffff0000]  (Licensed number of users already reached. (-4,342))",
        "(CITRIX) IN: \"MPM_ADV_RC\" USER15@GENE-VM-2K3 [ec26edf8]  (2 licenses)",
    ];
    let log = t.log_lines();
    let tail: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains(": \""))
        .collect();
    assert_eq!(tail, golden);
    // Start lines as lmgrd writes them.
    assert!(log[0].starts_with("(lmgrd) FlexNet Licensing compatible tallyd (v"));
    assert!(log
        .iter()
        .any(|l| l.starts_with("(CITRIX) Server started on ")));
    // Every line has the HH:MM:SS prefix with a space-padded hour.
    let raw = std::fs::read_to_string(&t.log).expect("log");
    for line in raw.lines() {
        let (time, _) = line.split_at(8);
        let b = time.as_bytes();
        assert!(
            (b[0] == b' ' || b[0].is_ascii_digit()) && b[2] == b':' && b[5] == b':',
            "{line:?}"
        );
    }
}
