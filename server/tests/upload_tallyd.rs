//! The report upload in the real tallyd (`--upload-url`): UPLOAD and
//! UPLOAD_STATUS on the wire, the uploader log beside the debug log, and a
//! hanging endpoint that changes nothing for checkouts.

mod common;
mod upload_endpoint;

use std::time::Duration;

use common::{eventually, Tallyd};
use upload_endpoint::{Endpoint, Hanging, Pki};

const LICENSE: &str = "\
VENDOR CITRIX
FEATURE MANY CITRIX 1.0 permanent 5
";

/// Longest a test waits for the uploader (CI is slow).
const PATIENCE: Duration = Duration::from_secs(60);

fn upload_status(t: &Tallyd) -> serde_json::Value {
    let line = t.connect().req("UPLOAD_STATUS");
    let json = line
        .strip_prefix("OK UPLOAD_STATUS ")
        .unwrap_or_else(|| panic!("{line}"));
    serde_json::from_str(json).unwrap()
}

#[test]
fn upload_is_off_without_upload_url() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c.req("UPLOAD").starts_with("ERR UPLOAD_OFF "));
    assert!(c.req("UPLOAD_STATUS").starts_with("ERR UPLOAD_OFF "));
}

#[test]
fn plain_http_is_refused_at_start() {
    let out = std::process::Command::new(common::tallyd_bin())
        .args([
            "--upload-url",
            "http://127.0.0.1:9/",
            "--port",
            "0",
            "--durability",
            "off",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain http is refused"), "{err}");
}

#[test]
fn upload_on_demand_sends_the_report_and_status_says_so() {
    let pki = Pki::new();
    let e = Endpoint::start(&pki);
    let scratch = common::Scratch::new("upload-ca");
    let ca = scratch.path("ca.pem");
    pki.write_ca(&ca);
    let url = e.url();
    let ca_arg = ca.display().to_string();
    let t = Tallyd::start(
        LICENSE,
        &[
            "--upload-url",
            &url,
            "--upload-ca",
            &ca_arg,
            "--upload-delay",
            "1h",
        ],
    );
    let s = upload_status(&t);
    assert_eq!(s["attempts"], 0, "{s}");
    assert_eq!(s["running"], false, "{s}");
    assert!(s["next"].is_u64(), "{s}");
    let mut c = t.connect();
    assert_eq!(
        c.req("CHECKOUT MANY ann h1 a1").split(' ').next(),
        Some("OK")
    );
    assert_eq!(c.req("UPLOAD"), "OK UPLOAD STARTED");
    assert!(eventually(PATIENCE, || upload_status(&t)["attempts"] == 1));
    let s = upload_status(&t);
    assert_eq!(s["last"]["code"], "CTX_UPLOADER_SUCCESS", "{s}");
    assert!(s["last_success"].is_u64(), "{s}");
    assert_eq!(s["pending"], 0, "{s}");
    // The compliance report of the usage history (REPORT's JSON), with
    // ann's checkout in it: the log writer's flush committed it first.
    let st = e.state.lock().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&st.finished[0].1).unwrap();
    assert!(report["from"].is_string(), "{report}");
    assert_eq!(report["features"][0]["feature"], "MANY", "{report}");
    assert_eq!(report["features"][0]["totals"]["checkouts"], 1, "{report}");
    assert_eq!(
        report["features"][0]["totals"]["peak_in_use"], 1,
        "{report}"
    );
    // The uploader log is beside the debug log; the debug log names who asked.
    let log = std::fs::read_to_string(t.log.with_file_name("log_uploader.log")).unwrap();
    assert!(log.contains("<Code>CTX_UPLOADER_SUCCESS</Code>"), "{log}");
    assert!(
        t.log_lines()
            .iter()
            .any(|l| l.contains("Report upload requested by 127.0.0.1")),
        "{:?}",
        t.log_lines()
    );
}

/// The endpoint accepts and never answers: checkouts are still answered
/// while the uploader waits, and the attempt ends with a timeout.
#[test]
fn a_hanging_endpoint_does_not_stop_checkouts() {
    let pki = Pki::new();
    let hang = Hanging::start();
    let scratch = common::Scratch::new("upload-hang");
    let ca = scratch.path("ca.pem");
    pki.write_ca(&ca);
    let url = hang.url();
    let ca_arg = ca.display().to_string();
    let t = Tallyd::start(
        LICENSE,
        &[
            "--upload-url",
            &url,
            "--upload-ca",
            &ca_arg,
            "--upload-delay",
            "0",
            "--upload-timeout",
            "3s",
            "--upload-attempts",
            "2",
            "--upload-backoff",
            "100ms:100ms",
        ],
    );
    assert!(eventually(PATIENCE, || hang.accepted() >= 1));
    let mut a = t.connect();
    let mut b = t.connect();
    for i in 0..50 {
        let r = a.req(&format!("CHECKOUT MANY ann h1 a{i}"));
        assert!(r.starts_with("OK "), "{r}");
        let r = b.req(&format!("CHECKOUT MANY bob h2 b{i}"));
        assert!(r.starts_with("OK "), "{r}");
        assert!(a.req(&format!("CHECKIN MANY a{i}")).starts_with("OK "));
        assert!(b.req(&format!("CHECKIN MANY b{i}")).starts_with("OK "));
    }
    assert!(a.req("STATUS").starts_with("OK "));
    let up = a.req("UPLOAD");
    assert!(
        up == "OK UPLOAD RUNNING" || up == "OK UPLOAD STARTED",
        "{up}"
    );
    let log_path = t.log.with_file_name("log_uploader.log");
    assert!(eventually(PATIENCE, || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("<Code>CTX_UPLOADER_TIMEOUT</Code>")
    }));
    assert_eq!(a.req("PING"), "PONG");
}
