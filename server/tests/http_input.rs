//! Bad input to the HTTP side (`tallyd --http`): garbage, a 1 MiB header,
//! a client that sends nothing or one byte at a time, more connections
//! than the cap, unknown paths and other methods. Each gets its 4xx (or
//! 503 past the cap), tallyd's thread count does not grow, and the
//! license port answers CHECKOUT and CHECKIN throughout.

mod common;
mod served;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use served::{exchange, get, Served};
use tally_server::http::{HEADER_DEADLINE, MAX_CONNECTIONS, MAX_HEADER_BYTES, WORKERS};

const LICENSE: &str = "\
VENDOR CITRIX
FEATURE ONE CITRIX 1.0 permanent 1
";

/// The license port still serves: a checkout and its check-in.
fn license_port_answers(s: &Served, handle: &str) {
    let mut c = s.connect();
    let r = c.req(&format!("CHECKOUT ONE ann h {handle}"));
    assert!(r.starts_with("OK "), "{r}");
    assert_eq!(
        c.req(&format!("CHECKIN ONE {handle}")),
        format!("OK ONE {handle}")
    );
}

#[test]
fn garbage_unknown_paths_and_other_methods_get_4xx() {
    let s = Served::start("http-garbage", LICENSE);
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let r = exchange(s.http, &garbage);
    assert_eq!(r.map(|(c, _)| c), Some(400));
    assert_eq!(
        exchange(s.http, b"GET / HTTP/9.9\r\n\r\n").map(|(c, _)| c),
        Some(400)
    );
    assert_eq!(
        exchange(s.http, b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n").map(|(c, _)| c),
        Some(400)
    );
    license_port_answers(&s, "g1");
    assert_eq!(get(s.http, "/nope").0, 404);
    assert_eq!(get(s.http, "/../../etc/passwd").0, 404);
    assert_eq!(get(s.http, "/api/v2/status").0, 404);
    let post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(exchange(s.http, post).map(|(c, _)| c), Some(405));
    let post = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(exchange(s.http, post).map(|(c, _)| c), Some(405));
    let del = b"DELETE /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(exchange(s.http, del).map(|(c, _)| c), Some(405));
    license_port_answers(&s, "g2");
    assert_eq!(get(s.http, "/").0, 200);
}

#[test]
fn a_huge_header_gets_431_and_is_not_buffered() {
    let s = Served::start("http-huge", LICENSE);
    // (A thread names itself once it runs.)
    assert!(
        common::eventually(Duration::from_secs(10), || s.http_threads() == WORKERS + 1),
        "the workers and the accept thread"
    );
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.resize(req.len() + (1 << 20), b'a');
    req.extend_from_slice(b"\r\n\r\n");
    let (code, body) = exchange(s.http, &req).expect("a response");
    assert_eq!(code, 431, "{body}");
    // Just past the limit as well, in one line with no end.
    let long = vec![b'G'; MAX_HEADER_BYTES + 1];
    assert_eq!(exchange(s.http, &long).map(|(c, _)| c), Some(431));
    license_port_answers(&s, "h1");
    assert_eq!(get(s.http, "/metrics").0, 200);
    assert_eq!(s.http_threads(), WORKERS + 1, "no thread was started");
}

#[test]
fn a_silent_client_holds_one_worker_and_gets_408() {
    let s = Served::start("http-slow", LICENSE);
    // One client connects and sends nothing; another sends a byte at a time.
    let mut silent = TcpStream::connect(s.http).expect("connect");
    silent.set_read_timeout(Some(HEADER_DEADLINE * 4)).unwrap();
    let mut dribble = TcpStream::connect(s.http).expect("connect");
    dribble.set_read_timeout(Some(HEADER_DEADLINE * 4)).unwrap();
    dribble.write_all(b"G").unwrap();
    // Meanwhile others are served, and so is the license port.
    assert_eq!(get(s.http, "/").0, 200);
    license_port_answers(&s, "s1");
    dribble.write_all(b"E").unwrap();
    assert_eq!(get(s.http, "/metrics").0, 200);
    // The header deadline ends both (no bytes after it are waited for).
    for (name, c) in [("silent", &mut silent), ("dribbling", &mut dribble)] {
        let mut raw = String::new();
        let _ = c.read_to_string(&mut raw);
        assert!(raw.starts_with("HTTP/1.1 408 "), "{name}: {raw:?}");
    }
    license_port_answers(&s, "s2");
}

#[test]
fn past_the_connection_cap_new_ones_get_503_and_no_thread() {
    let s = Served::start("http-cap", LICENSE);
    // (A thread names itself once it runs.)
    assert!(
        common::eventually(Duration::from_secs(10), || s.http_threads() == WORKERS + 1),
        "the workers and the accept thread"
    );
    // Silent connections, each holding a place under the cap (a task, not
    // a thread) until its header deadline.
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(s.http).expect("connect"))
        .collect();
    assert!(
        common::eventually(Duration::from_secs(10), || get_code(&s) == Some(503)),
        "a connection past the cap is refused"
    );
    license_port_answers(&s, "c1");
    assert_eq!(s.http_threads(), WORKERS + 1, "no thread per connection");
    drop(idle);
    // Their workers see them closed; the side serves again.
    assert!(
        common::eventually(Duration::from_secs(10), || get_code(&s) == Some(200)),
        "served again once they are gone"
    );
    license_port_answers(&s, "c2");
}

/// The status code of a GET /, if there was a response.
fn get_code(s: &Served) -> Option<u16> {
    exchange(s.http, b"GET / HTTP/1.0\r\n\r\n").map(|(c, _)| c)
}
