//! `tallyctl report upload | status | export | verify`: the export file for
//! a manual upload, and the upload requests against a real tallyd.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{eventually, Scratch, Tallyd};

const LICENSE: &str = "\
VENDOR CITRIX
FEATURE MANY CITRIX 1.0 permanent 5
";

fn tallyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .output()
        .expect("run tallyctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn an_export_verifies_and_a_flipped_byte_names_the_part() {
    let s = Scratch::new("report-export");
    let report = s.path("report.json");
    std::fs::write(&report, br#"{"features":[{"name":"MATLAB","peak":17}]}"#).unwrap();
    let out = s.path("export.tally");
    let (r, o) = (report.display().to_string(), out.display().to_string());
    let made = tallyctl(&["report", "export", "--out", &o, "--report", &r]);
    assert_eq!(made.status.code(), Some(0), "{made:?}");
    assert!(
        stdout(&made).contains("report.json (42 bytes, SHA-256 "),
        "{}",
        stdout(&made)
    );
    let ok = tallyctl(&["report", "verify", &o]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(
        stdout(&ok).contains(": intact: made on "),
        "{}",
        stdout(&ok)
    );

    let mut bytes = std::fs::read(&out).unwrap();
    let at = bytes.windows(6).position(|w| w == b"MATLAB").unwrap();
    bytes[at] ^= 0x01;
    let bad = s.path("flipped.tally");
    std::fs::write(&bad, &bytes).unwrap();
    let v = tallyctl(&["report", "verify", &bad.display().to_string()]);
    assert_eq!(v.status.code(), Some(1), "{v:?}");
    assert!(
        stdout(&v).contains("damaged: part report.json: SHA-256 does not match"),
        "{}",
        stdout(&v)
    );

    // Never overwritten; the report must be JSON; a missing file is 2.
    let again = tallyctl(&["report", "export", "--out", &o, "--report", &r]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    std::fs::write(&report, b"not json").unwrap();
    let nj = tallyctl(&[
        "report",
        "export",
        "--out",
        &s.path("x").display().to_string(),
        "--report",
        &r,
    ]);
    assert_eq!(nj.status.code(), Some(2), "{nj:?}");
    let missing = tallyctl(&["report", "verify", &s.path("none").display().to_string()]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
}

#[test]
fn report_upload_and_status_without_upload_url_say_it_is_off() {
    let t = Tallyd::start(LICENSE, &[]);
    let c = format!("{}@127.0.0.1", t.addr.port());
    for cmd in ["upload", "status"] {
        let o = tallyctl(&["report", cmd, "-c", &c]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        assert!(all.contains("UPLOAD_OFF"), "{all}");
    }
}

#[test]
fn report_upload_starts_one_and_status_shows_its_code() {
    // An endpoint nobody listens on: the attempt fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let t = Tallyd::start(
        LICENSE,
        &[
            "--upload-url",
            &url,
            "--upload-delay",
            "1h",
            "--upload-attempts",
            "1",
        ],
    );
    let c = format!("{}@127.0.0.1", t.addr.port());
    let before = tallyctl(&["report", "status", "-c", &c]);
    assert_eq!(before.status.code(), Some(0), "{before:?}");
    let text = stdout(&before);
    assert!(text.contains(&format!("Upload to {url}")), "{text}");
    assert!(text.contains("last attempt:  none yet"), "{text}");
    let up = tallyctl(&["report", "upload", "-c", &c]);
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    assert!(
        stdout(&up).contains("report upload started"),
        "{}",
        stdout(&up)
    );
    assert!(eventually(Duration::from_secs(60), || {
        stdout(&tallyctl(&["report", "status", "-c", &c])).contains("CTX_UPLOADER_CONNECT_FAILED")
    }));
    let after = stdout(&tallyctl(&["report", "status", "-c", &c]));
    assert!(after.contains("waiting:       1 report(s)"), "{after}");
    assert!(after.contains("last success:  never"), "{after}");
    let json = stdout(&tallyctl(&["report", "status", "--json", "-c", &c]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["last"]["code"], "CTX_UPLOADER_CONNECT_FAILED");
}

#[test]
fn an_export_without_report_asks_the_server_and_verifies() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c.req("CHECKOUT MANY ann h1 a1").starts_with("OK "));
    assert!(c.req("CHECKOUT MANY bob h2 b1 count=2").starts_with("OK "));
    let s = Scratch::new("report-export-server");
    let out = s.path("export.tally");
    let o = out.display().to_string();
    let server = format!("{}@127.0.0.1", t.addr.port());
    let made = tallyctl(&["report", "export", "-c", &server, "--out", &o]);
    assert_eq!(made.status.code(), Some(0), "{made:?}");
    let ok = tallyctl(&["report", "verify", &o]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    // The part is the server's REPORT, byte for byte: what `tallyctl
    // report` prints (the same day's figures: 3 in use at the peak).
    let file = std::fs::read_to_string(&out).unwrap();
    let json = file
        .lines()
        .skip_while(|l| !l.starts_with("part report.json "))
        .nth(1)
        .expect("the report part");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["features"][0]["feature"], "MANY", "{v}");
    assert_eq!(v["features"][0]["totals"]["peak_in_use"], 3, "{v}");
    assert_eq!(v["features"][0]["totals"]["checkouts"], 2, "{v}");
    // A period the server refuses is the server's error (exit 1).
    let bad = tallyctl(&[
        "report",
        "export",
        "-c",
        &server,
        "--out",
        &s.path("bad").display().to_string(),
        "--from",
        "2026-13-01",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(!s.path("bad").exists());
}
