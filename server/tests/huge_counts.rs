//! Legal but huge counts (issue 12, item 3): a pool of 4,294,967,295 seats,
//! `OVERDRAFT=4294967295` and an `ODP` of a huge count. Before, tallyd sized
//! its checkout table at twice every license up front, asked for ~378 GB
//! and died of SIGABRT at start, or on a REREAD of a running server. Now
//! memory follows what is held: these start and serve in a few MB, a
//! REREAD to such a file keeps the server serving, and both tallyd's log
//! and `tallyctl check-license` name the lines served less than written
//! (the latter is tested with tallyctl, in tally-client's tests/ctl_tallyd.rs).
//!
//! The memory bound below is a bound on resident memory, not a timing
//! claim: a tallyd holding a few licenses is far below it.

mod common;

use common::Tallyd;

/// A tallyd holding a handful of licenses stays well under this (its
/// buffers, journal and a first table level of about 1.4 MB).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Line 3: as many seats as a count can say; line 4: a 32-bit overdraft
/// (count + overdraft saturates); line 5: an ODP percentage of a huge count
/// (the overdraft saturates).
const HUGE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT BIG CITRIX 1.0 permanent 4294967295
INCREMENT OVER CITRIX 1.0 permanent 5 OVERDRAFT=4294967295
INCREMENT ODP CITRIX 1.0 permanent 4000000000 VENDOR_STRING=\";ODP=200\"
";

const SMALL: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT BIG CITRIX 1.0 permanent 10
";

/// Resident memory of process `pid`, KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn huge_counts_start_serve_and_stay_small() {
    let t = Tallyd::start(HUGE, &[]);
    let mut c = t.connect();
    for feature in ["BIG", "OVER", "ODP"] {
        for h in 0..50 {
            let r = c.req(&format!("CHECKOUT {feature} u{h} host{h} {feature}{h}"));
            assert!(r.starts_with("OK "), "{feature} {h}: {r}");
        }
        assert_eq!(c.in_use(feature), 50);
    }
    let rss = rss_kib(t.pid());
    assert!(rss < RSS_LIMIT_KIB, "tallyd uses {rss} KiB");
    // Start names every line served less than written, with file:line.
    let file = t.license_path().display().to_string();
    let log = t.log_lines().join("\n");
    for want in [
        format!("License file warning: {file}:3: BIG: 4294967295 licenses, but at most "),
        format!(
            "License file warning: {file}:4: OVER: 5 licenses and an overdraft of \
             4294967295 make 4294967300"
        ),
        format!(
            "License file warning: {file}:5: ODP: ODP=200% of 4000000000 licenses is an \
             overdraft of 8000000000"
        ),
    ] {
        assert!(log.contains(&want), "no {want:?} in the log:\n{log}");
    }
}

#[test]
fn a_reread_to_huge_counts_keeps_the_server_serving() {
    let t = Tallyd::start(SMALL, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT BIG alice pc1 a linger=600")
        .starts_with("OK "));
    std::fs::write(t.license_path(), HUGE).expect("rewrite license");
    assert_eq!(c.req("REREAD"), "OK REREAD 3 0");
    // Still up, the lingering license kept, new ones granted.
    assert_eq!(c.req("PING"), "PONG");
    assert_eq!(c.in_use("BIG"), 1);
    for h in 0..20 {
        let r = c.req(&format!("CHECKOUT BIG bob pc2 b{h}"));
        assert!(r.starts_with("OK "), "{h}: {r}");
    }
    assert_eq!(c.in_use("BIG"), 21);
    assert!(c.req("CHECKOUT OVER carol pc3 c").starts_with("OK "));
    let rss = rss_kib(t.pid());
    assert!(
        rss < RSS_LIMIT_KIB,
        "tallyd uses {rss} KiB after the reread"
    );
    // And back again.
    std::fs::write(t.license_path(), SMALL).expect("rewrite license");
    assert!(c.req("REREAD").starts_with("OK REREAD "));
    assert_eq!(c.req("PING"), "PONG");
}
