//! `tallyctl check-license`: exit statuses 0 / 1 / 2 and the JSON shape, by
//! running the binary on files written to a temporary directory.

use std::path::PathBuf;
use std::process::{Command, Output};

fn temp_file(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tallyctl-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{tag}.lic"));
    std::fs::write(&path, text).expect("write license");
    path
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .arg("check-license")
        .args(args)
        .env("TALLYCTL_NOW", "2026-04-22T11:08:00+02:00")
        .output()
        .expect("run tallyctl")
}

const CLEAN: &str = "\
SERVER lic1 ANY 27000
VENDOR CITRIX
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5 DUP_GROUP=UHD
INCREMENT XD_NODE CITRIX 2026.0101 31-dec-2026 uncounted HOSTID=ANY
";

#[test]
fn clean_file_exits_0_with_json_pools() {
    let path = temp_file("clean", CLEAN);
    let out = check(&[path.to_str().expect("utf-8 path"), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "pools": [
                {"line": 3, "keyword": "INCREMENT", "feature": "MPM_ADV_RC", "vendor": "CITRIX",
                 "version": "1.0", "expiry": "permanent", "count": 5, "dup_group": "UHD",
                 "hostid": null, "overdraft": 0, "start": null, "state": "active"},
                {"line": 4, "keyword": "INCREMENT", "feature": "XD_NODE", "vendor": "CITRIX",
                 "version": "2026.0101", "expiry": "31-dec-2026", "count": null,
                 "dup_group": "NONE", "hostid": "ANY", "overdraft": 0, "start": null,
                 "state": "active"}
            ],
            "diagnostics": [],
            "warnings": [],
            "options": null
        })
    );
}

#[test]
fn rejected_lines_exit_1_with_positions() {
    let text = format!("{CLEAN}INCREMENT BROKEN CITRIX 1.0 31-foo-2026 5\n");
    let path = temp_file("rejected", &text);
    let shown = path.to_str().expect("utf-8 path");

    let out = check(&[shown, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["pools"].as_array().map(Vec::len), Some(2));
    let diag = &v["diagnostics"][0];
    assert_eq!(diag["line"], 5);
    assert_eq!(diag["column"], 29);
    assert!(diag["message"].as_str().is_some_and(|m| !m.is_empty()));

    let out = check(&[shown]);
    assert_eq!(out.status.code(), Some(1));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("line 3: INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5 DUP_GROUP=UHD"),
        "{human}"
    );
    assert!(human.contains(&format!("{shown}:5:29: ")), "{human}");
}

#[test]
fn unreadable_file_exits_2() {
    let out = check(&["/nonexistent/tally/license.lic"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tally/license.lic"));
    let path = temp_file("binary", "");
    std::fs::write(&path, b"INCREMENT F V 1.0 permanent 1 \xff\n").expect("write");
    let out = check(&[path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 12 item 9: check-license did not look at the options file the
/// license names; one that could not be read (or was endless) passed.
#[test]
fn the_options_file_the_license_names_is_checked() {
    let dir = std::env::temp_dir().join(format!("tallyctl-check-opt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("citrix.opt"),
        "GROUP eng erik   # joined\nMAX 2 MPM_ADV_RC USER bob   # two\nBOGUS x\n",
    )
    .expect("write options");
    let license = dir.join("with-options.lic");
    std::fs::write(
        &license,
        "VENDOR CITRIX OPTIONS=citrix.opt\nINCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5\n",
    )
    .expect("write license");
    let shown = license.to_str().expect("utf-8 path");
    let out = check(&[shown, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let o = &v["options"];
    assert!(
        o["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("citrix.opt")),
        "{v}"
    );
    assert_eq!(o["diagnostics"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(o["diagnostics"][0]["line"], 2);
    assert_eq!(o["warnings"][0]["line"], 1);
    let out = check(&[shown]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("citrix.opt:3:1: "), "{human}");
    assert!(
        human.contains("(options file): 0 rules, 2 lines rejected, 1 warning"),
        "{human}"
    );

    // An options file tallyd could not read stops check-license too.
    std::fs::write(
        &license,
        "VENDOR CITRIX OPTIONS=/dev/zero\nINCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5\n",
    )
    .expect("write license");
    let out = check(&[shown]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("options file /dev/zero is larger than"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 12 items 11 and 12 through the binary: the swallowed feature is
/// named; names that can never be checked out are warned about.
#[test]
fn swallowed_records_and_unservable_names_are_reported() {
    let long = "N".repeat(300);
    let text = format!(
        "INCREMENT MATLAB MLM 49 01-jan-2099 150 252446F5A5CB \\\n\
         INCREMENT SIMULINK MLM 49 01-jan-2099 150 BA43E5DA5E64\n\
         INCREMENT {long} MLM 49 01-jan-2099 1\n\
         INCREMENT bi\u{202e}di MLM 49 01-jan-2099 1\n"
    );
    let path = temp_file("swallow", &text);
    let shown = path.to_str().expect("utf-8 path");
    let out = check(&[shown]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains(&format!("{shown}:2:1: INCREMENT SIMULINK")),
        "{human}"
    );
    assert!(
        human.contains(&format!("{shown}:3: warning: INCREMENT \"NNN")),
        "{human}"
    );
    assert!(human.contains("can never be checked out"), "{human}");
    assert!(human.contains(&format!("{shown}:4: warning:")), "{human}");
    assert!(human.contains("U+202E"), "{human}");
    assert!(
        !human.contains('\u{202e}'),
        "the listing escapes it: {human}"
    );
}
