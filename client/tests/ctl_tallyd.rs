//! tallyctl against a real tallyd: `lmstat -a` of held and queued
//! checkouts, and `check-license` of the huge counts tallyd serves less of
//! than written (moved here from tally-server's tallyd.rs, queue.rs and
//! huge_counts.rs with tallyctl).

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{eventually, Client, Scratch, Tallyd};

const GENEROUS: Duration = Duration::from_secs(10);

/// tally-server's tests/tallyd.rs license.
const CITRIX: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT CITRIX CITRIX 2038.0101 permanent 5000 VENDOR_STRING=\";LT=SYS;GP=96;SA=0\"
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 2 VENDOR_STRING=\";LT=Retail;GP=720\"
FEATURE GROUPED CITRIX 1.0 permanent 1 DUP_GROUP=UH
FEATURE SINGLE CITRIX 1.0 permanent 1
";

/// tally-server's tests/queue.rs license.
const ONE: &str = "\
VENDOR CITRIX
FEATURE ONE CITRIX 1.0 permanent 1
";

/// tally-server's tests/huge_counts.rs: line 3, as many seats as a count
/// can say; line 4, a 32-bit overdraft (count + overdraft saturates); line
/// 5, an ODP percentage of a huge count (the overdraft saturates).
const HUGE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT BIG CITRIX 1.0 permanent 4294967295
INCREMENT OVER CITRIX 1.0 permanent 5 OVERDRAFT=4294967295
INCREMENT ODP CITRIX 1.0 permanent 4000000000 VENDOR_STRING=\";ODP=200\"
";

/// Handles queued for `feature`, oldest first.
fn queued(c: &mut Client, feature: &str) -> Vec<String> {
    c.status()["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .filter(|q| q["feature"] == feature)
        .map(|q| q["handle"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn lmstat_reads_a_real_tallyd() {
    let t = Tallyd::start(CITRIX, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 display=console linger=600")
        .starts_with("OK "));
    let out = Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args([
            "lmstat",
            "-a",
            "-c",
            &format!("{}@127.0.0.1", t.addr.port()),
        ])
        .output()
        .expect("run tallyctl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("ASCII");
    assert!(
        text.contains(
            "Users of MPM_ADV_RC:  (Total of 2 licenses issued;  Total of 1 license in use)"
        ),
        "{text}"
    );
    assert!(
        text.contains("Users of SINGLE:  (Total of 1 license issued;  Total of 0 licenses in use)")
    );
    let holder = text
        .lines()
        .find(|l| l.starts_with("    USER15 GENE-VM-2K3 console (v1.0) ("))
        .unwrap_or_else(|| panic!("no holder line in:\n{text}"));
    assert!(holder.contains("), start "), "{holder}");
    assert!(holder.contains("  (linger: "), "{holder}");
    assert!(text.lines().all(|l| !l.ends_with(' ')), "trailing space");
}

#[test]
fn lmstat_shows_queued_checkouts() {
    let t = Tallyd::start(ONE, &[]);
    let mut a = t.connect();
    assert!(a.req("CHECKOUT ONE ann h a").starts_with("OK "));
    let mut b = t.connect();
    b.send(b"CHECKOUT ONE bob bhost b display=term wait=60\n");
    assert!(eventually(GENEROUS, || queued(&mut a, "ONE") == ["b"]));
    let out = Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args([
            "lmstat",
            "-a",
            "-c",
            &format!("{}@127.0.0.1", t.addr.port()),
        ])
        .output()
        .expect("run tallyctl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("ASCII");
    let line = text
        .lines()
        .find(|l| l.starts_with("    bob bhost term (v1.0) ("))
        .unwrap_or_else(|| panic!("no queued line in:\n{text}"));
    assert!(line.ends_with("  (queued for 1 license)"), "{line}");
    assert!(
        text.contains("Total of 1 license in use)"),
        "the waiter is not counted: {text}"
    );
}

#[test]
fn check_license_names_the_lines_served_less_than_written() {
    let dir = Scratch::new("huge-check");
    let path = dir.path("huge.lic");
    std::fs::write(&path, HUGE).expect("write license");
    let file = path.display().to_string();
    let run = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tallyctl"));
        cmd.arg("check-license").arg(&path);
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run tallyctl")
    };
    let out = run(false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "served, so not rejected:\n{text}"
    );
    for want in [
        format!("{file}:3: warning: BIG: 4294967295 licenses, but at most "),
        format!("{file}:4: warning: OVER: 5 licenses and an overdraft of 4294967295"),
        format!("{file}:5: warning: ODP: ODP=200% of 4000000000 licenses"),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }
    let out = run(true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let lines: Vec<u64> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, [3, 4, 4, 5, 5, 5], "{v}");
}

#[test]
fn report_prints_the_servers_usage_as_json_and_csv() {
    let t = Tallyd::start(CITRIX, &[]);
    let mut c = t.connect();
    assert_eq!(c.req("CHECKOUT SINGLE alice pc1 a1"), "OK SINGLE a1 0");
    assert!(c
        .req("CHECKOUT SINGLE bob pc2 b1")
        .starts_with("DENIED SINGLE b1 ALL_IN_USE"));
    let server = format!("{}@127.0.0.1", t.addr.port());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tallyctl"))
            .args(["-c", &server, "report"])
            .args(args)
            .output()
            .expect("run tallyctl");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let json: serde_json::Value = serde_json::from_str(&run(&[])).expect("JSON");
    let single = json["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["feature"] == "SINGLE")
        .expect("SINGLE");
    assert_eq!(single["totals"]["peak_in_use"], 1);
    assert_eq!(single["totals"]["denials"]["ALL_IN_USE"], 1);
    let csv = run(&["print", "--format", "csv"]);
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("day,feature,licensed,peak_in_use,"));
    let row = lines
        .find(|l| l.split(',').nth(1) == Some("SINGLE"))
        .unwrap_or_else(|| panic!("no SINGLE row in:\n{csv}"));
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(&cells[2..7], ["1", "1", "1", "0", "1"], "{row}");
    assert_eq!(cells[12], "ALL_IN_USE:1", "{row}");
}
