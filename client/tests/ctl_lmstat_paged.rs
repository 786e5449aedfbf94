//! `tallyctl lmstat -a` of a pool of many holders against a real tallyd:
//! read page by page (`holders_limit=`, `holders_after=`), it prints every
//! holder exactly once, the same lines as when one page holds them all;
//! plain `lmstat` and `lmstat -i` read the summary.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::process::Command;

use common::{Client, Tallyd};

/// Holders of BIG.
const HELD: usize = 12_000;

fn license() -> String {
    format!(
        "VENDOR CITRIX\n\
         FEATURE BIG CITRIX 1.0 permanent {}\n\
         INCREMENT TWO CITRIX 1.0 permanent 3\n\
         INCREMENT TWO CITRIX 2.0 permanent 4\n",
        HELD + 100
    )
}

/// Connection-bound checkouts (no linger, so no line shows a time left
/// that would differ between two runs), pipelined.
fn hold(c: &mut Client, feature: &str, prefix: &str, n: usize) {
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(1_000) {
        let mut batch = String::new();
        for i in chunk {
            batch.push_str(&format!(
                "CHECKOUT {feature} user{} host{} {prefix}{i}\n",
                i % 13,
                i % 5
            ));
        }
        c.send(batch.as_bytes());
        for _ in chunk {
            let r = c.read_line().expect("a reply");
            assert!(r.starts_with("OK "), "{r}");
        }
    }
}

fn lmstat(t: &Tallyd, args: &[&str], page: usize) -> String {
    let server = format!("{}@127.0.0.1", t.addr.port());
    let out = Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .arg("lmstat")
        .args(args)
        .args(["-c", &server])
        .env("TALLYCTL_LMSTAT_PAGE", page.to_string())
        .output()
        .expect("run tallyctl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("ASCII")
}

fn holder_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("    user") && l.contains(", start "))
        .collect()
}

#[test]
fn lmstat_a_pages_through_a_pool_of_many_holders() {
    let t = Tallyd::start(&license(), &[]);
    let mut c = t.connect();
    hold(&mut c, "BIG", "b", HELD);
    hold(&mut c, "TWO", "t", 6);
    let paged = lmstat(&t, &["-a"], 1_000);
    let whole = lmstat(&t, &["-a"], 1_000_000);
    assert!(
        paged.contains(&format!(
            "Users of BIG:  (Total of {} licenses issued;  Total of {HELD} licenses in use)",
            HELD + 100
        )),
        "{}",
        &paged[..paged.len().min(2_000)]
    );
    assert!(
        paged.contains("Users of TWO:  (Total of 7 licenses issued;  Total of 6 licenses in use)")
    );
    // Every holder once: HELD + 6 lines, each ticket once.
    let lines = holder_lines(&paged);
    assert_eq!(lines.len(), HELD + 6);
    let tickets: HashSet<&str> = lines
        .iter()
        .map(|l| {
            l.split(" (")
                .nth(2)
                .and_then(|s| s.split(')').next())
                .unwrap_or_else(|| panic!("no ticket in {l}"))
        })
        .collect();
    assert_eq!(tickets.len(), HELD + 6);
    // The same lines as one page of all; only the order of holders with
    // the same start millisecond may differ across a page boundary.
    let mut a = lines.clone();
    let mut b = holder_lines(&whole);
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    let rest = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !(l.starts_with("    user") && l.contains(", start ")))
            .filter(|l| !l.starts_with("Flexible License Manager status on"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(rest(&paged), rest(&whole));
}

#[test]
fn plain_lmstat_and_lmstat_i_read_the_summary() {
    let t = Tallyd::start(&license(), &[]);
    let mut c = t.connect();
    hold(&mut c, "BIG", "b", 100);
    let plain = lmstat(&t, &[], 10);
    assert!(plain.contains("license server UP (MASTER)"), "{plain}");
    assert!(!plain.contains("Users of"), "{plain}");
    let i = lmstat(&t, &["-i"], 10);
    assert!(
        i.lines()
            .any(|l| l.starts_with("BIG ") && l.contains(&(HELD + 100).to_string())),
        "{i}"
    );
    assert_eq!(
        i.lines().filter(|l| l.starts_with("TWO ")).count(),
        2,
        "{i}"
    );
}
