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
                 "hostid": null},
                {"line": 4, "keyword": "INCREMENT", "feature": "XD_NODE", "vendor": "CITRIX",
                 "version": "2026.0101", "expiry": "31-dec-2026", "count": null,
                 "dup_group": "NONE", "hostid": "ANY"}
            ],
            "diagnostics": []
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
