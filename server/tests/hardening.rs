//! Defects found by trying to break tallyd (issue 12): each test provokes
//! the fault for real against the tallyd binary.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{eventually, Client, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT F1 CITRIX 1.0 permanent 100 VENDOR_STRING=LT=Retail
INCREMENT CITRIX CITRIX 1.0 permanent uncounted VENDOR_STRING=LT=SYS
";

/// Out of file descriptors, then back: the server accepts again (an
/// edge-triggered listener gets no new event for a full backlog, so a loop
/// that only waited for one would never accept again).
#[test]
fn accepting_resumes_after_running_out_of_file_descriptors() {
    let d = Tallyd::start_with_nofile(LICENSE, &["--durability", "off"], 256);
    let mut conns = Vec::new();
    for _ in 0..600 {
        // A full backlog leaves a connect hanging in SYN retries: give up.
        match TcpStream::connect_timeout(&d.addr, Duration::from_millis(300)) {
            Ok(s) => conns.push(s),
            Err(_) => break,
        }
    }
    // 256 descriptors less the server's own, plus the listen backlog.
    assert!(conns.len() > 256, "only {} connections made", conns.len());
    // Let the loops hit the limit while the rest wait in the backlog.
    std::thread::sleep(Duration::from_millis(300));
    drop(conns);
    // The fds come back as the server sees the closes; a new client must
    // then be served.
    let served = eventually(Duration::from_secs(20), || {
        let Ok(s) = TcpStream::connect_timeout(&d.addr, Duration::from_secs(1)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut c = Client::new(s);
        c.send(b"PING\n");
        matches!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.read_line())), Ok(Some(l)) if l == "PONG")
    });
    assert!(served, "no PONG after the descriptors came back");
    let log = d.log_lines().join("\n");
    // Once per episode and loop (two workers; a loop may recover and run
    // out again while the closes come in), never once per failed attempt.
    let episodes = log.matches("accept failed: Too many open files").count();
    assert!((1..=4).contains(&episodes), "{episodes} lines:\n{log}");
    assert!(log.contains("accepting connections again"), "{log}");
}

/// The startup license (LT=SYS) is checked out and at once checked in by
/// the server (seed 002); the agent's own CHECKIN of it must be OK, and an
/// uncounted feature's likewise.
#[test]
fn checkin_of_the_startup_license_is_ok() {
    let d = Tallyd::start(LICENSE, &["--durability", "off"]);
    let mut c = d.connect();
    let r = c.req("CHECKOUT CITRIX ctxadmin pc1 ec26edf8");
    assert!(r.starts_with("OK CITRIX ec26edf8"), "{r}");
    assert_eq!(c.req("CHECKIN CITRIX ec26edf8"), "OK CITRIX ec26edf8");
    // A feature that does hold instances still says what is true.
    let r = c.req("CHECKIN F1 nobody");
    assert!(r.starts_with("ERR NOT_HELD"), "{r}");
}
