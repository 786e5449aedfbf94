//! Black-box tests of usage reporting: the real `tallyd`, its report log,
//! its usage history (REPORT), and both after a `kill -9`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, Scratch, Tallyd};
use serde_json::Value;

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
FEATURE F CITRIX 1.0 permanent 2
FEATURE G CITRIX 1.0 permanent 10
";

const GENEROUS: Duration = Duration::from_secs(20);

/// The REPORT JSON (today's period).
fn report(t: &Tallyd) -> Value {
    let r = t.connect().req("REPORT");
    let json = r
        .strip_prefix("OK ")
        .unwrap_or_else(|| panic!("REPORT: {r}"));
    serde_json::from_str(json).expect("REPORT is JSON")
}

/// One feature's totals in a report.
fn totals<'a>(report: &'a Value, feature: &str) -> &'a Value {
    report["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["feature"] == feature)
        .map(|f| &f["totals"])
        .unwrap_or_else(|| panic!("no {feature} in {report}"))
}

/// The report log's lines of one event word (OUT, IN, DENIED, INUSE).
fn report_lines(path: &Path, word: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(word))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_scripted_day_is_reported_exactly_and_logged_line_by_line() {
    let scratch = Scratch::new("usage-day");
    let rl = scratch.path("report.log");
    let options = scratch.path("tally.opt");
    // NOLOG OUT keeps checkouts out of the debug log, not out of the usage.
    std::fs::write(&options, "NOLOG OUT\n").unwrap();
    let rl_arg = format!("+{}", rl.display());
    let opt_arg = options.display().to_string();
    let t = Tallyd::start(LICENSE, &["--report-log", &rl_arg, "--options", &opt_arg]);
    let mut a = t.connect();
    assert_eq!(a.req("CHECKOUT F alice pc1 a1"), "OK F a1 0");
    assert!(a
        .req("CHECKOUT F bob pc2 b1 linger=0.3")
        .starts_with("OK F b1 "));
    let r = a.req("CHECKOUT F carol pc3 c1");
    assert!(r.starts_with("DENIED F c1 ALL_IN_USE"), "{r}");
    assert_eq!(a.req("CHECKOUT F alice pc1 a1"), "OK F a1 0"); // a renewal
    assert!(a
        .req("CHECKOUT NOPE dave pc4 d1")
        .starts_with("DENIED NOPE d1 NO_SUCH_FEATURE"));
    // bob's linger runs out.
    assert!(eventually(GENEROUS, || t.connect().in_use("F") == 1));
    assert_eq!(a.req("CHECKIN F a1"), "OK F a1");
    {
        let mut c = t.connect();
        assert_eq!(c.req("CHECKOUT F carol pc3 c2 count=2"), "OK F c2 0");
    } // closed: carol's licenses come back
    assert!(eventually(GENEROUS, || t.connect().in_use("F") == 0));

    let rep = report(&t);
    assert_eq!(rep["schema"], 1);
    assert_eq!(rep["server"]["name"], "tallyd");
    let f = totals(&rep, "F");
    assert_eq!(f["licensed"], 2);
    assert_eq!(f["peak_in_use"], 2);
    assert_eq!(f["checkouts"], 3);
    assert_eq!(f["renewals"], 1);
    assert_eq!(f["denials"], serde_json::json!({"ALL_IN_USE": 1}));
    assert_eq!(f["overdraft_peak"], 0);
    assert_eq!(f["overdraft_grants"], 0);
    assert_eq!(
        (f["distinct_users"].as_u64(), f["distinct_hosts"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(f["full_use_ms"].as_u64().unwrap() > 0, "{f}");
    let nope = totals(&rep, "NOPE");
    assert_eq!(nope["licensed"], Value::Null);
    assert_eq!(nope["denials"], serde_json::json!({"NO_SUCH_FEATURE": 1}));
    let g = totals(&rep, "G");
    assert_eq!(
        (g["licensed"].as_u64(), g["checkouts"].as_u64()),
        (Some(10), Some(0))
    );

    // The report log has every event, with its kind, cause and reason.
    let outs = report_lines(&rl, "OUT");
    assert_eq!(outs.len(), 4, "{outs:?}");
    assert!(outs[0].ends_with(
        "OUT feature=F version=1.0 user=alice host=pc1 display=\"\" handle=a1 count=1 kind=new"
    ));
    assert!(
        outs[2].ends_with("handle=a1 count=1 kind=renewal"),
        "{outs:?}"
    );
    assert!(outs[3].ends_with("handle=c2 count=2 kind=new"), "{outs:?}");
    let causes: Vec<String> = report_lines(&rl, "IN")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(
        causes,
        ["cause=linger_expiry", "cause=checkin", "cause=disconnect"]
    );
    let denied = report_lines(&rl, "DENIED");
    assert!(denied[0].ends_with("reason=ALL_IN_USE"), "{denied:?}");
    assert!(
        denied[1].contains("feature=NOPE version=\"\" user=dave"),
        "{denied:?}"
    );
    let stamp = &outs[0][..24];
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.ends_with('Z'),
        "{stamp}"
    );
    // NOLOG OUT: no OUT line in the debug log.
    assert!(!t.log_lines().iter().any(|l| l.contains("OUT:")));
}

#[test]
fn after_kill9_the_day_is_rebuilt_from_the_report_log() {
    let scratch = Scratch::new("usage-kill9");
    let state = scratch.path("state");
    let rl = scratch.path("report.log");
    let rl_arg = format!("+{}", rl.display());
    let args = ["--report-log", rl_arg.as_str()];
    let mut t = Tallyd::start_with_state(LICENSE, &args, &state);
    let mut a = t.connect();
    // alice's license lingers (journaled: it survives the crash), bob's is
    // bound to the connection (gone with the crash).
    assert!(a
        .req("CHECKOUT F alice pc1 a1 linger=600")
        .starts_with("OK F a1 "));
    assert_eq!(a.req("CHECKOUT F bob pc2 b1"), "OK F b1 0");
    assert!(a
        .req("CHECKOUT F carol pc3 c1")
        .starts_with("DENIED F c1 ALL_IN_USE"));
    // No REPORT (which would commit a batch): the events are in the report
    // log, perhaps not yet in the database, when the kill lands.
    assert!(eventually(GENEROUS, || report_lines(&rl, "DENIED").len() == 1));
    t.kill9();

    let t = Tallyd::start_with_state(LICENSE, &args, &state);
    assert!(report_lines(&rl, "INUSE")
        .iter()
        .any(|l| l.ends_with("INUSE feature=F licensed=2 in_use=1 at=start")));
    let f = totals(&report(&t), "F").clone();
    assert_eq!(f["checkouts"], 2, "{f}");
    assert_eq!(f["peak_in_use"], 2, "{f}");
    assert_eq!(f["denials"], serde_json::json!({"ALL_IN_USE": 1}));
    assert_eq!(f["distinct_users"], 2, "{f}");
    // alice's recovered license counts: with dave's, 2 in use again.
    let mut dave = t.connect(); // held while the connection is open
    assert_eq!(dave.req("CHECKOUT F dave pc4 d1"), "OK F d1 0");
    let r = t.connect().req("CHECKOUT F erin pc5 e1");
    assert!(r.starts_with("DENIED F e1 ALL_IN_USE"), "{r}");
    let f = totals(&report(&t), "F").clone();
    assert_eq!(f["checkouts"], 3, "{f}");
    assert_eq!(f["peak_in_use"], 2, "{f}");
    assert_eq!(f["denials"], serde_json::json!({"ALL_IN_USE": 2}));
    assert_eq!(f["distinct_users"], 3, "{f}");
}

#[test]
fn without_a_report_log_the_history_keeps_what_was_committed() {
    let scratch = Scratch::new("usage-db");
    let state = scratch.path("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state);
    assert_eq!(
        t.connect().req("CHECKOUT G alice pc1 a1 count=3"),
        "OK G a1 0"
    );
    let before = totals(&report(&t), "G").clone();
    assert_eq!(
        (before["checkouts"].as_u64(), before["peak_in_use"].as_u64()),
        (Some(1), Some(3))
    );
    t.kill9();
    let t = Tallyd::start_with_state(LICENSE, &[], &state);
    assert_eq!(*totals(&report(&t), "G"), before);
    assert!(state.join("usage.sqlite").exists());
}

#[test]
fn report_periods_are_checked_and_no_state_dir_means_no_history() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    let r = c.req("REPORT from=2026-12-05 to=2026-12-01");
    assert_eq!(r, "ERR BAD_FIELD from=2026-12-05 is after to=2026-12-01");
    let r = c.req("REPORT from=yesterday");
    assert!(
        r.starts_with("ERR BAD_FIELD from=\"yesterday\" is not a date"),
        "{r}"
    );
    let rep: Value = serde_json::from_str(
        c.req("REPORT from=2026-01-01 to=2026-01-31")
            .strip_prefix("OK ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (rep["from"].as_str(), rep["to"].as_str()),
        (Some("2026-01-01"), Some("2026-01-31"))
    );
    assert!(rep["features"].as_array().unwrap().is_empty(), "{rep}");
    drop(t);

    let t = Tallyd::start(LICENSE, &["--durability", "off"]);
    let r = t.connect().req("REPORT");
    assert!(r.starts_with("OK {\"error\":\"no usage history"), "{r}");
}

#[test]
fn the_report_log_is_reopened_with_the_debug_log() {
    let scratch = Scratch::new("usage-reopen");
    let rl = scratch.path("report.log");
    let rl_arg = rl.display().to_string(); // truncated at start
    std::fs::write(&rl, "an old line\n").unwrap();
    let t = Tallyd::start(LICENSE, &["--report-log", &rl_arg]);
    let mut c = t.connect();
    assert_eq!(c.req("CHECKOUT G alice pc1 a1"), "OK G a1 0");
    assert!(eventually(GENEROUS, || report_lines(&rl, "OUT").len() == 1));
    assert!(!std::fs::read_to_string(&rl)
        .unwrap()
        .contains("an old line"));
    let moved = scratch.path("report.log.1");
    std::fs::rename(&rl, &moved).unwrap();
    assert_eq!(c.req("REOPEN_LOG"), "OK REOPEN_LOG");
    assert_eq!(c.req("CHECKIN G a1"), "OK G a1");
    assert!(eventually(GENEROUS, || report_lines(&rl, "IN").len() == 1));
    assert_eq!(report_lines(&moved, "IN").len(), 0);
    assert_eq!(report_lines(&moved, "OUT").len(), 1);
}

/// A REREAD onto a file without G: G is licensed no more in today's row
/// (its licensed count was not carried on), F keeps its count.
#[test]
fn a_feature_reread_away_is_licensed_no_more() {
    let t = Tallyd::start(LICENSE, &[]);
    assert_eq!(totals(&report(&t), "G")["licensed"], 10);
    std::fs::write(
        t.license_path(),
        "SERVER this_host ANY 27000\nVENDOR CITRIX\nFEATURE F CITRIX 1.0 permanent 3\n",
    )
    .unwrap();
    let r = t.connect().req("REREAD");
    assert!(r.starts_with("OK REREAD "), "{r}");
    let after = report(&t);
    assert_eq!(totals(&after, "F")["licensed"], 3, "{after}");
    assert!(totals(&after, "G")["licensed"].is_null(), "{after}");
}
