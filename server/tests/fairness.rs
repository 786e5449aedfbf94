//! Fairness between the connections of one loop: a client that pipelines
//! a flood does not hold the loop until it has answered all of it (issue
//! 18). Against the real tallyd, one worker.

mod common;

use std::io::{ErrorKind, Write};
use std::time::Duration;

use common::{eventually, Tallyd};
use tally_server::server::READ_TURN_BYTES;

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT F1 CITRIX 1.0 permanent 100000 VENDOR_STRING=LT=Retail
INCREMENT CITRIX CITRIX 1.0 permanent uncounted VENDOR_STRING=LT=SYS
";

/// Sends `signal` to process `pid`.
fn signal(pid: u32, signal: i32) {
    // Safety: kill(2) with a child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Continues the stopped tallyd however the test ends.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// With tallyd stopped (SIGSTOP), client A queues a flood of checkouts in
/// the kernel and client B one checkout after it; on SIGCONT the loop sees
/// both ready at once. B's checkout must be answered before all of A's
/// queued flood: the debug log (one loop's lines are in the order it
/// answered them) shows B's OUT line after at most one turn's bytes
/// (`READ_TURN_BYTES`) of A's lines.
#[test]
fn a_pipelining_flood_does_not_hold_the_loop_from_other_connections() {
    let d = Tallyd::start(LICENSE, &["--durability", "off", "--workers", "1"]);
    let a_raw = std::net::TcpStream::connect(d.addr).unwrap();
    let b_raw = std::net::TcpStream::connect(d.addr).unwrap();
    // Accepted before the stop (a served PING on each proves it).
    for s in [&a_raw, &b_raw] {
        let mut c = common::Client::new(s.try_clone().unwrap());
        assert_eq!(c.req("PING"), "PONG");
    }
    // Room in A's socket for a flood of several turns while tallyd sleeps.
    socket2::SockRef::from(&a_raw)
        .set_send_buffer_size(4 << 20)
        .unwrap();

    signal(d.pid(), libc::SIGSTOP);
    let resume = Resume(d.pid());
    let flood: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("CHECKOUT F1 ua ha a{i}\n").into_bytes())
        .collect();
    a_raw.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while queued < flood.len() {
        match (&a_raw).write(&flood[queued..]) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("flood: {e}"),
        }
    }
    assert!(
        queued > 4 * READ_TURN_BYTES,
        "only {queued} bytes of the flood queued while tallyd was stopped"
    );
    // Whole lines queued before the resume; the rest follows after it.
    let queued_lines = flood[..queued].iter().filter(|&&c| c == b'\n').count();
    (&b_raw).write_all(b"CHECKOUT F1 ub hb b0\n").unwrap();
    drop(resume);

    let rest = flood[queued..].to_vec();
    let a_writer = std::thread::spawn(move || {
        a_raw.set_nonblocking(false).unwrap();
        (&a_raw).write_all(&rest).unwrap();
        a_raw
    });
    let mut bc = common::Client::new(b_raw);
    assert_eq!(bc.read_line().as_deref(), Some("OK F1 b0 0"));
    let a_raw = a_writer.join().unwrap();
    let mut ac = common::Client::new(a_raw);
    for i in 0..40_000 {
        assert_eq!(ac.read_line(), Some(format!("OK F1 a{i} 0")), "reply {i}");
    }

    // Every OUT line is in the log once A's last is.
    let last = "OUT: \"F1\" ua@ha [a39999]";
    assert!(
        eventually(Duration::from_secs(20), || d
            .log_lines()
            .iter()
            .any(|l| l.contains(last))),
        "no {last} in the log"
    );
    let log = d.log_lines();
    let b_at = log
        .iter()
        .position(|l| l.contains("OUT: \"F1\" ub@hb [b0]"))
        .expect("B's OUT line");
    let a_before_b = log[..b_at]
        .iter()
        .filter(|l| l.contains("OUT: \"F1\" ua@ha"))
        .count();
    // One turn reads at most READ_TURN_BYTES and the chunk that crossed
    // it (16 KiB); B is served in the same round, before A's next turn.
    let one_turn = flood[..2 * READ_TURN_BYTES]
        .iter()
        .filter(|&&c| c == b'\n')
        .count();
    assert!(
        a_before_b <= one_turn,
        "B answered after {a_before_b} of A's {queued_lines} queued lines, more than one turn's {one_turn}"
    );
}
