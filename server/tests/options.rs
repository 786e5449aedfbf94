//! Black-box tests of the options file: the real `tallyd` with an options
//! file written by the test, over TCP.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Tallyd};

const GENEROUS: Duration = Duration::from_secs(10);

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
FEATURE F1 CITRIX 1.0 permanent 3
FEATURE F2 CITRIX 1.0 permanent 1 OVERDRAFT=1
FEATURE F3 CITRIX 1.0 permanent 5
";

/// A running tallyd and its options file (in a directory kept until drop).
struct Run {
    t: Tallyd,
    opts: std::path::PathBuf,
    _dir: common::Scratch,
}

/// Starts tallyd with `opts` written to a file given with `--options`.
fn start(opts: &str, extra: &[&str]) -> Run {
    let dir = common::Scratch::new("opts");
    let path = dir.path("t.opt");
    std::fs::write(&path, opts).expect("write options");
    let arg = path.display().to_string();
    let mut args = vec!["--options", arg.as_str()];
    args.extend_from_slice(extra);
    Run {
        t: Tallyd::start(LICENSE, &args),
        opts: path,
        _dir: dir,
    }
}

fn wait_log(t: &Tallyd, needle: &str) -> bool {
    eventually(GENEROUS, || {
        t.log_lines().iter().any(|l| l.contains(needle))
    })
}

#[test]
fn rules_deny_with_flexlm_codes_and_texts() {
    let Run { t, .. } = start(
        "\
GROUP eng ann bob
EXCLUDE F1 USER eve
MAX 1 F1 GROUP eng
INCLUDE F3 USER ann
RESERVE 1 F1 USER carl
",
        &[],
    );
    let mut c = t.connect();
    assert_eq!(
        c.req("CHECKOUT F1 eve h e1"),
        "DENIED F1 e1 EXCLUDED -38 User/host on EXCLUDE list for feature."
    );
    assert!(c.req("CHECKOUT F1 ann h a1").starts_with("OK F1 a1 "));
    assert_eq!(
        c.req("CHECKOUT F1 bob h b1"),
        "DENIED F1 b1 OVER_MAX -87 Checkout exceeds MAX specified in options file."
    );
    assert!(c.req("CHECKOUT F1 dora h d1").starts_with("OK F1 d1 "));
    assert_eq!(
        c.req("CHECKOUT F1 fred h f1"),
        "DENIED F1 f1 RESERVED -4 Licensed number of users already reached (the free licenses are reserved for others). (RESERVE on line 5 of the options file)"
    );
    assert!(c.req("CHECKOUT F1 carl h c1").starts_with("OK F1 c1 "));
    assert_eq!(
        c.req("CHECKOUT F3 bob h b3"),
        "DENIED F3 b3 NOT_INCLUDED -39 User/host not on INCLUDE list for feature."
    );
    assert!(c.req("CHECKOUT F3 ann h a3").starts_with("OK F3 a3 "));
    // A check-in gives the MAX credit back.
    assert_eq!(c.req("CHECKIN F1 a1"), "OK F1 a1");
    assert!(c.req("CHECKOUT F1 bob h b1").starts_with("OK F1 b1 "));
    assert!(wait_log(
        &t,
        "DENIED: \"F1\" eve@h [e1]  (User/host on EXCLUDE list for feature. (-38,0))"
    ));
    assert!(wait_log(&t, "Options file: "));
}

#[test]
fn the_vendor_line_names_the_options_file() {
    let dir = common::Scratch::new("vendor-opts");
    let opts = dir.path("citrix.opt");
    std::fs::write(&opts, "EXCLUDE F3 USER eve\n").expect("write options");
    let lic = LICENSE.replace(
        "VENDOR CITRIX\n",
        &format!("VENDOR CITRIX options={}\n", opts.display()),
    );
    let t = Tallyd::start(&lic, &[]);
    let mut c = t.connect();
    assert_eq!(
        c.req("CHECKOUT F3 eve h e"),
        "DENIED F3 e EXCLUDED -38 User/host on EXCLUDE list for feature."
    );
    assert!(c.req("CHECKOUT F3 ann h a").starts_with("OK "));
}

#[test]
fn a_missing_options_file_stops_tallyd_with_a_clear_message() {
    let dir = common::Scratch::new("missing-opts");
    let license = dir.path("l.lic");
    std::fs::write(&license, LICENSE).expect("license");
    let out = Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(&license)
        .args(["--port", "0", "--options"])
        .arg(dir.path("nope.opt"))
        .stdin(Stdio::null())
        .output()
        .expect("run tallyd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read options file") && err.contains("nope.opt"),
        "{err}"
    );
}

#[test]
fn bad_lines_are_logged_with_their_position_and_the_rest_applies() {
    let Run { t, .. } = start("EXCLUDE F1 USER eve\nMAX lots F1 USER bob\n", &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT F1 eve h e")
        .starts_with("DENIED F1 e EXCLUDED"));
    assert!(wait_log(&t, "Options file error, line skipped: "));
    assert!(t
        .log_lines()
        .iter()
        .any(|l| l.contains("t.opt:2:5: \"lots\" is not a whole number")));
}

#[test]
fn reread_reloads_the_options_with_the_license() {
    let Run { t, opts, _dir } = start("EXCLUDE F1 USER eve\n", &[]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT F1 ann h a").starts_with("OK "));
    assert!(c.req("CHECKOUT F1 bob h b").starts_with("OK "));
    assert!(c
        .req("CHECKOUT F1 eve h e")
        .starts_with("DENIED F1 e EXCLUDED"));
    // New rules and a smaller pool: F1 has 2 out and now only 1 seat.
    std::fs::write(&opts, "EXCLUDE F1 USER ann\n").expect("rewrite options");
    std::fs::write(
        t.license_path(),
        LICENSE.replace("F1 CITRIX 1.0 permanent 3", "F1 CITRIX 1.0 permanent 1"),
    )
    .expect("rewrite license");
    assert_eq!(c.req("REREAD"), "OK REREAD 3 0");
    assert_eq!(c.in_use("F1"), 2, "nothing held is revoked");
    assert!(
        c.req("CHECKOUT F1 eve h e")
            .starts_with("DENIED F1 e ALL_IN_USE"),
        "eve is no longer excluded, but the pool is over its new size"
    );
    assert_eq!(c.req("CHECKIN F1 a"), "OK F1 a");
    assert_eq!(c.req("CHECKIN F1 b"), "OK F1 b");
    assert!(c.req("CHECKOUT F1 eve h e").starts_with("OK "));
    assert!(c.req("CHECKOUT F3 ann h a3").starts_with("OK "));
    assert!(c
        .req("CHECKOUT F1 ann h a2")
        .starts_with("DENIED F1 a2 EXCLUDED"));
}

#[test]
fn a_reread_with_an_unreadable_options_file_changes_nothing() {
    let Run { t, opts, _dir } = start("EXCLUDE F1 USER eve\n", &[]);
    let mut c = t.connect();
    std::fs::remove_file(&opts).expect("remove options");
    let r = c.req("REREAD");
    assert!(
        r.starts_with("ERR REREAD_FAILED cannot read options file"),
        "{r}"
    );
    assert!(c
        .req("CHECKOUT F1 eve h e")
        .starts_with("DENIED F1 e EXCLUDED"));
}

#[test]
fn nolog_keeps_lines_out_of_the_debug_log() {
    let Run { t, .. } = start("NOLOG OUT\nNOLOG IN\nEXCLUDE F1 USER eve\n", &[]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT F1 ann h a").starts_with("OK "));
    assert_eq!(c.req("CHECKIN F1 a"), "OK F1 a");
    assert!(c.req("CHECKOUT F1 eve h e").starts_with("DENIED "));
    assert!(wait_log(&t, "DENIED: \"F1\" eve@h [e]"));
    let log = t.log_lines();
    assert!(
        !log.iter()
            .any(|l| l.contains("OUT: ") || l.contains("IN: ")),
        "{log:#?}"
    );
}

#[test]
fn linger_gives_a_default_linger() {
    let Run { t, .. } = start("LINGER F3 600\n", &[]);
    let mut c = t.connect();
    let r = c.req("CHECKOUT F3 ann h a");
    let deadline: u64 = r
        .rsplit(' ')
        .next()
        .and_then(|d| d.parse().ok())
        .expect("deadline");
    assert!(deadline > 0, "a LINGER default gives a deadline: {r}");
    let r = c.req("CHECKOUT F1 ann h a");
    assert!(r.ends_with(" 0"), "F1 has no LINGER: {r}");
    // The lingering F3 license survives the connection.
    drop(c);
    let mut c = t.connect();
    assert_eq!(c.in_use("F3"), 1);
}

#[test]
fn overdraft_grants_are_flagged() {
    let Run { t, .. } = start("", &[]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT F2 ann h a").starts_with("OK "));
    assert!(c.req("CHECKOUT F2 bob h b").starts_with("OK "));
    assert!(c
        .req("CHECKOUT F2 carl h c")
        .starts_with("DENIED F2 c ALL_IN_USE"));
    let s = c.status();
    let f2 = s["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["name"] == "F2")
        .cloned()
        .expect("F2");
    assert_eq!(f2["overdraft"], 1);
    assert_eq!(f2["overdraft_limit"], 1);
    assert!(wait_log(&t, "OUT: \"F2\" bob@h [b]  (OVERDRAFT)"));
}

#[test]
fn max_overdraft_limits_the_overdraft() {
    let Run { t, .. } = start("MAX_OVERDRAFT F2 0\n", &[]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT F2 ann h a").starts_with("OK "));
    assert!(c
        .req("CHECKOUT F2 bob h b")
        .starts_with("DENIED F2 b ALL_IN_USE"));
}

#[test]
fn a_reread_that_removes_a_feature_keeps_its_holders_until_they_drain() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT F3 ann h a").starts_with("OK "));
    assert!(c.req("CHECKOUT F3 bob h b linger=600").starts_with("OK "));
    std::fs::write(
        t.license_path(),
        LICENSE.replace("FEATURE F3 CITRIX 1.0 permanent 5\n", ""),
    )
    .expect("rewrite license");
    assert_eq!(c.req("REREAD"), "OK REREAD 2 0");
    assert_eq!(c.in_use("F3"), 2, "nothing is revoked");
    assert!(c
        .req("CHECKOUT F3 carl h c")
        .starts_with("DENIED F3 c NO_SUCH_FEATURE -5"));
    assert!(
        c.req("CHECKOUT F3 bob h b linger=600")
            .starts_with("DENIED F3 b NO_SUCH_FEATURE"),
        "a removed feature is not renewed"
    );
    assert_eq!(c.req("CHECKIN F3 a"), "OK F3 a");
    assert_eq!(c.in_use("F3"), 1);
}

#[test]
fn an_idle_client_loses_its_licenses_after_timeout() {
    // --min-timeout lowers FlexLM's 900 s minimum so the test is short.
    let Run { t, .. } = start("TIMEOUT F1 1\n", &["--min-timeout", "1"]);
    let mut idle = t.connect();
    assert!(idle.req("CHECKOUT F1 ann h a").starts_with("OK "));
    assert!(idle.req("CHECKOUT F3 ann h a3").starts_with("OK "));
    let mut admin = t.connect();
    assert!(eventually(GENEROUS, || admin.in_use("F1") == 0));
    assert_eq!(admin.in_use("F3"), 1, "F3 has no TIMEOUT");
    assert!(wait_log(&t, "IN: \"F1\" ann@h [a]  (INACTIVE)"));
    // The connection itself stays usable.
    assert_eq!(idle.req("PING"), "PONG");
}

#[test]
fn ping_keeps_an_idle_timeout_away() {
    let Run { t, .. } = start("TIMEOUTALL 3\n", &["--min-timeout", "3"]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT F1 ann h a").starts_with("OK "));
    // A second client that stays silent: its license must go.
    let mut idle = t.connect();
    assert!(idle.req("CHECKOUT F1 bob h b").starts_with("OK "));
    // Heartbeats every 100 ms for 4.5 s: never 3 s without a request.
    for _ in 0..45 {
        assert_eq!(c.req("PING"), "PONG");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        c.holders("F1"),
        ["a"],
        "the pinging client kept its license"
    );
}

#[test]
fn debuglog_is_used_when_no_log_is_given() {
    use std::io::{BufRead, BufReader};
    let dir = common::Scratch::new("debuglog");
    let license = dir.path("l.lic");
    let log = dir.path("from-options.log");
    std::fs::write(&license, LICENSE).expect("license");
    let opts = dir.path("o.opt");
    std::fs::write(&opts, format!("DEBUGLOG +{}\n", log.display())).expect("options");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(&license)
        .args(["--port", "0", "--workers", "1", "--options"])
        .arg(&opts)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tallyd");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("tallyd: serving "));
    // Keep draining stderr so tallyd never writes to a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    let written = serving
        && eventually(GENEROUS, || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Server started on"))
        });
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving, "tallyd did not start");
    assert!(written, "the DEBUGLOG file got the start lines");
}
