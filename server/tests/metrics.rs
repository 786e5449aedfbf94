//! Black-box tests of `tallyd --http`: the real `tallyd`, a scripted set of
//! checkouts, renewals, denials and check-ins over TCP, then `/metrics`
//! scraped over HTTP and its figures checked against what was done and
//! against STATUS; and `promtool check metrics` on the scraped text.

mod common;
mod served;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, REPLY_TIMEOUT};
use served::Served;

const GENEROUS: Duration = Duration::from_secs(10);

const LICENSE: &str = "\
VENDOR CITRIX
FEATURE ONE CITRIX 1.0 permanent 1
FEATURE MANY CITRIX 1.0 31-dec-2099 5
";

/// One HTTP/1.0 GET (a test client: the response is read to its end):
/// (status code, content type, body).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP port");
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: tally\r\n{accept}\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let kind = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, kind, body.to_string())
}

/// Every sample of a scrape: `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

fn scrape(s: &Served) -> HashMap<String, f64> {
    let (code, _, body) = get(s.http, "/metrics", None);
    assert_eq!(code, 200);
    samples(&body)
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {m:#?}"))
}

#[test]
fn metrics_count_what_was_done_and_agree_with_status() {
    let s = Served::start("metrics", LICENSE);
    let mut a = s.connect();
    let mut b = s.connect();
    let mut admin = s.connect();
    // Checkouts: ONE's only license to a; three of MANY.
    assert!(a.req("CHECKOUT ONE ann h a1").starts_with("OK "));
    assert!(a.req("CHECKOUT MANY ann h a2").starts_with("OK "));
    assert!(a.req("CHECKOUT MANY ann h a3").starts_with("OK "));
    let r = b.req("CHECKOUT MANY bob h b1");
    assert!(r.starts_with("OK "), "{r}");
    // A renewal (the same handle again).
    assert!(a.req("CHECKOUT MANY ann h a2").starts_with("OK "));
    // Denials: ONE is all in use (twice), NOPE does not exist.
    assert!(b
        .req("CHECKOUT ONE bob h b2")
        .starts_with("DENIED ONE b2 ALL_IN_USE"));
    assert!(b
        .req("CHECKOUT ONE bob h b3")
        .starts_with("DENIED ONE b3 ALL_IN_USE"));
    assert!(b
        .req("CHECKOUT NOPE bob h b4")
        .starts_with("DENIED NOPE b4 NO_SUCH_FEATURE"));
    // A check-in; an admin's REMOVE_HANDLE of b's license.
    assert_eq!(a.req("CHECKIN MANY a3"), "OK MANY a3");
    let ticket = admin.status()["features"]
        .as_array()
        .expect("features")
        .iter()
        .flat_map(|f| f["holders"].as_array().cloned().unwrap_or_default())
        .find(|h| h["handle"] == "b1")
        .and_then(|h| h["ticket"].as_u64())
        .expect("b1's ticket");
    assert_eq!(
        admin.req(&format!("REMOVE_HANDLE MANY {ticket}")),
        "OK REMOVED 1"
    );
    // A lingering checkout, left to expire.
    assert!(b
        .req("CHECKOUT MANY bob h b5 linger=0.05")
        .starts_with("OK "));

    let m = scrape(&s);
    assert_eq!(value(&m, "tally_checkouts_total"), 5.0);
    assert_eq!(value(&m, "tally_renewals_total"), 1.0);
    assert_eq!(value(&m, "tally_denials_total{reason=\"ALL_IN_USE\"}"), 2.0);
    assert_eq!(
        value(&m, "tally_denials_total{reason=\"NO_SUCH_FEATURE\"}"),
        1.0
    );
    assert_eq!(value(&m, "tally_checkins_total{cause=\"checkin\"}"), 1.0);
    assert_eq!(value(&m, "tally_checkins_total{cause=\"remove\"}"), 1.0);
    assert_eq!(value(&m, "tally_connections"), 3.0);
    assert_eq!(value(&m, "tally_build_info{version=\"0.1.0\"}"), 1.0);
    // The linger of b5 runs out on its own.
    assert!(eventually(GENEROUS, || value(
        &scrape(&s),
        "tally_checkins_total{cause=\"linger_expiry\"}"
    ) == 1.0));

    // The histograms: one linger expiry (its lateness), the requests above
    // (each counted in the round that answered it), the journal's syncs
    // (--durability sync by default: one per group commit).
    let m = scrape(&s);
    assert_eq!(value(&m, "tally_linger_expiry_lateness_seconds_count"), 1.0);
    assert_eq!(
        value(
            &m,
            "tally_linger_expiry_lateness_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );
    // 5 of a's, 5 of b's, 2 of admin's (their rounds long over by now).
    assert_eq!(value(&m, "tally_request_latency_seconds_count"), 12.0);
    assert!(value(&m, "tally_request_latency_seconds_sum") > 0.0);
    assert!(value(&m, "tally_journal_fsync_seconds_count") >= 1.0);
    assert!(value(&m, "tally_journal_bytes") > 0.0);
    let snap = value(&m, "tally_journal_last_snapshot_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        snap > now - 3600.0 && snap <= now + 1.0,
        "the start's snapshot: {snap}"
    );

    // The gauges equal STATUS.
    let status = admin.status();
    let m = scrape(&s);
    for f in status["features"].as_array().expect("features") {
        let name = f["name"].as_str().unwrap();
        let l = format!("{{feature=\"{name}\"}}");
        assert_eq!(
            value(&m, &format!("tally_licenses_in_use{l}")),
            f["in_use"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(
            value(&m, &format!("tally_licenses_issued{l}")),
            f["total"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(
            value(&m, &format!("tally_licenses_overdraft{l}")),
            f["overdraft"].as_f64().unwrap()
        );
        assert_eq!(value(&m, &format!("tally_queue_length{l}")), 0.0);
    }
    assert_eq!(value(&m, "tally_licenses_in_use{feature=\"ONE\"}"), 1.0);
    assert_eq!(value(&m, "tally_licenses_in_use{feature=\"MANY\"}"), 1.0);
    // 31-dec-2099 ends at 2100-01-01T00:00:00Z; ONE is permanent.
    assert_eq!(
        value(
            &m,
            "tally_license_expiry_timestamp_seconds{feature=\"MANY\",line=\"3\"}"
        ),
        4_102_444_800.0
    );
    assert!(!m
        .keys()
        .any(|k| k.starts_with("tally_license_expiry_timestamp_seconds{feature=\"ONE\"")));

    // A connection that goes away checks its licenses in.
    drop(a);
    assert!(eventually(GENEROUS, || value(
        &scrape(&s),
        "tally_checkins_total{cause=\"disconnect\"}"
    ) == 2.0));
    assert_eq!(admin.in_use("ONE"), 0);
}

#[test]
fn a_queued_checkout_shows_in_the_queue_length() {
    let s = Served::start("metrics", LICENSE);
    let mut a = s.connect();
    let mut b = s.connect();
    assert!(a.req("CHECKOUT ONE ann h a").starts_with("OK "));
    b.send(b"CHECKOUT ONE bob h b wait=60\n");
    assert!(eventually(GENEROUS, || value(
        &scrape(&s),
        "tally_queue_length{feature=\"ONE\"}"
    ) == 1.0));
    assert_eq!(a.req("CHECKIN ONE a"), "OK ONE a");
    assert!(b.read_line().expect("b is served").starts_with("OK ONE b "));
    assert_eq!(
        value(&scrape(&s), "tally_queue_length{feature=\"ONE\"}"),
        0.0
    );
}

#[test]
fn other_paths_and_methods_are_refused_and_openmetrics_is_negotiated() {
    let s = Served::start("metrics", LICENSE);
    assert_eq!(get(s.http, "/nope", None).0, 404);
    let mut t = TcpStream::connect(s.http).unwrap();
    t.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    t.write_all(b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    t.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 405") || raw.starts_with("HTTP/1.0 405"),
        "{raw}"
    );

    let (code, kind, body) = get(s.http, "/metrics", None);
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert!(body.contains("# TYPE tally_checkouts_total counter\n"));
    assert!(!body.contains("# EOF"));
    let om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (code, kind, body) = get(s.http, "/metrics", Some(om));
    assert_eq!(code, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(body.contains("# TYPE tally_checkouts counter\n"));
    assert!(body.ends_with("# EOF\n"));
    // The license port is still served.
    assert_eq!(s.connect().req("PING"), "PONG");
}

/// `promtool`, if it is on PATH or `scripts/install-promtool` can install it.
fn promtool() -> Option<String> {
    let found = || {
        Command::new("promtool")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found() {
        return Some("promtool".into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-promtool");
    let _ = Command::new(script).status();
    found().then(|| "promtool".into())
}

/// RESERVE's free licenses, the debug log's lines and the uploader's last
/// result: each a figure of the scrape, and promtool takes it.
#[test]
fn reservations_log_lines_and_the_upload_result_are_figures() {
    // An upload endpoint nobody listens on: the attempt cannot connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let s = Served::start_with(
        "metrics",
        LICENSE,
        Some("RESERVE 2 MANY USER zed\n"),
        &[
            "--upload-url",
            &url,
            "--upload-delay",
            "1h",
            "--upload-attempts",
            "1",
        ],
    );
    let m = scrape(&s);
    assert_eq!(value(&m, "tally_licenses_reserved{feature=\"MANY\"}"), 2.0);
    assert_eq!(value(&m, "tally_licenses_reserved{feature=\"ONE\"}"), 0.0);
    assert_eq!(
        value(&m, "tally_upload_last_attempt_timestamp_seconds"),
        0.0
    );
    assert!(
        !m.keys().any(|k| k.starts_with("tally_upload_last_result")),
        "{m:?}"
    );
    let mut c = s.connect();
    assert!(c.req("CHECKOUT MANY zed h z").starts_with("OK "));
    assert_eq!(c.req("UPLOAD"), "OK UPLOAD STARTED");
    assert!(eventually(GENEROUS, || {
        value(&scrape(&s), "tally_upload_last_attempt_timestamp_seconds") > 0.0
    }));
    let m = scrape(&s);
    assert_eq!(value(&m, "tally_licenses_reserved{feature=\"MANY\"}"), 1.0);
    assert_eq!(
        value(
            &m,
            "tally_upload_last_result{code=\"CTX_UPLOADER_CONNECT_FAILED\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "tally_upload_last_result{code=\"CTX_UPLOADER_SUCCESS\"}"
        ),
        0.0
    );
    assert_eq!(
        value(&m, "tally_upload_last_success_timestamp_seconds"),
        0.0
    );
    assert_eq!(value(&m, "tally_upload_pending_reports"), 1.0);
    // The start lines at least; more as the log writer gets to them.
    assert!(value(&m, "tally_log_lines_written_total") >= 3.0, "{m:?}");
    if let Some(promtool) = promtool() {
        let (_, _, body) = get(s.http, "/metrics", None);
        promtool_check(&promtool, &body);
    }
}

/// `promtool check metrics` of `body`: passes, or the test fails with its
/// output.
fn promtool_check(promtool: &str, body: &str) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the scrape:\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_a_live_scrape() {
    let Some(promtool) = promtool() else {
        // .ci/run installs promtool and sets this: CI never skips it.
        assert!(
            std::env::var_os("TALLY_REQUIRE_PROMTOOL").is_none(),
            "promtool is required (TALLY_REQUIRE_PROMTOOL) but missing"
        );
        eprintln!(
            "SKIPPED promtool_accepts_a_live_scrape: promtool is not on PATH and \
             scripts/install-promtool could not install it (needs root and apt-get: \
             apt-get install -y prometheus)"
        );
        return;
    };
    let s = Served::start("metrics", LICENSE);
    let mut c = s.connect();
    assert!(c.req("CHECKOUT ONE ann h a").starts_with("OK "));
    assert!(c.req("CHECKOUT ONE bob h b").starts_with("DENIED "));
    let (_, _, body) = get(s.http, "/metrics", None);
    promtool_check(&promtool, &body);
}

#[test]
fn the_status_api_is_status_paged_with_handles_hidden() {
    let s = Served::start("metrics", LICENSE);
    let mut c = s.connect();
    assert!(c.req("CHECKOUT MANY ann h secret").starts_with("OK "));
    let (code, kind, body) = get(s.http, "/api/v1/status", None);
    assert_eq!((code, kind.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let status = c.status();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&v), names(&status));
    assert_eq!(v["handles_hidden"], true);
    assert_eq!(v["features"][1]["holders"][0]["user"], "ann");
    assert_eq!(v["features"][1]["holders"][0]["handle"], "");
    assert!(!body.contains("secret"));

    let (_, _, body) = get(s.http, "/api/v1/status?from=1&limit=1", None);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(names(&v), ["MANY"]);
    assert_eq!((v["from"].as_u64(), v["next"].as_u64()), (Some(1), None));
    let (_, _, body) = get(s.http, "/api/v1/status?limit=1", None);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (names(&v), v["next"].as_u64()),
        (vec!["ONE".to_string()], Some(1))
    );
    assert_eq!(get(s.http, "/api/v1/status?from=x", None).0, 400);

    let (code, _, body) = get(s.http, "/api/v1/features/MANY", None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(names(&v), ["MANY"]);
    assert_eq!(v["features"][0]["in_use"], 1);
    assert_eq!(get(s.http, "/api/v1/features/NOPE", None).0, 404);
}
