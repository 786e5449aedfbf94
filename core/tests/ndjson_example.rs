//! `examples/ndjson.rs`, the JSON front end, over a real loopback socket:
//! the example's file is compiled in here as a module, so the test drives
//! the same `serve` and `answer` the example binary runs.

#![forbid(unsafe_code)]

#[allow(dead_code)] // the example's `main`
#[path = "../examples/ndjson.rs"]
mod ndjson;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};
use tally_core::engine::{Engine, EngineConfig};
use tally_core::ManualClock;

const NOW: u64 = 1_700_000_000_000;
/// Longest the test waits for a reply before it fails (never slept).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

fn demo_engine() -> Engine {
    let licenses = tally_core::license::parse_str("<demo>", ndjson::DEMO_LICENSE);
    assert!(
        licenses.diagnostics.is_empty(),
        "{:?}",
        licenses.diagnostics
    );
    Engine::new(&licenses, EngineConfig::default())
}

struct Client {
    out: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Client {
    fn ask(&mut self, request: Value) -> Value {
        writeln!(self.out, "{request}").unwrap();
        let mut line = String::new();
        self.lines
            .read_line(&mut line)
            .expect("a reply within the timeout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

fn checkout(user: &str, handle: &str) -> Value {
    json!({"op": "checkout", "feature": "f", "user": user, "host": "h", "handle": handle})
}

#[test]
fn checkout_denial_and_checkin_over_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = Arc::new(demo_engine());
    std::thread::spawn(move || ndjson::serve(listener, engine, Arc::new(ManualClock::new(NOW))));

    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let mut c = Client {
        out: stream.try_clone().unwrap(),
        lines: BufReader::new(stream),
    };

    assert_eq!(c.ask(json!({"op": "ping"})), json!({"ok": true}));
    let mut with_linger = checkout("ann", "x");
    with_linger["linger_s"] = json!(60);
    let a = c.ask(with_linger);
    assert_eq!(
        (&a["ok"], &a["handle"], &a["kind"]),
        (&json!(true), &json!("x"), &json!("New"))
    );
    assert_eq!(a["deadline_ms"], json!(NOW + 60_000));
    assert_eq!(c.ask(checkout("bob", "y"))["ok"], json!(true));

    // Two seats, both out: the third user is denied with FlexLM's -4.
    let denied = c.ask(checkout("eve", "z"));
    assert_eq!(
        (&denied["ok"], &denied["reason"], &denied["code"]),
        (&json!(false), &json!("ALL_IN_USE"), &json!(-4))
    );
    let status = c.ask(json!({"op": "status"}));
    assert_eq!(
        status["features"],
        json!([{"feature": "f", "in_use": 2, "count": 2}])
    );

    // Bob checks in; the seat serves Eve; a second check-in finds nothing.
    let checkin =
        json!({"op": "checkin", "feature": "f", "user": "bob", "host": "h", "handle": "y"});
    assert_eq!(
        c.ask(checkin.clone()),
        json!({"ok": true, "handle": "y", "count": 1})
    );
    assert_eq!(c.ask(checkin)["reason"], json!("NOT_HELD"));
    assert_eq!(c.ask(checkout("eve", "z"))["ok"], json!(true));
}

#[test]
fn answer_arms_a_timer_only_for_a_linger_and_names_bad_requests() {
    let engine = demo_engine();
    let (timers, grants) = mpsc::channel();
    let mut held = Vec::new();
    let line = r#"{"op":"checkout","feature":"f","user":"u","host":"h","handle":"x","linger_s":5}"#;
    assert_eq!(
        ndjson::answer(&engine, NOW, line, &mut held, &timers)["ok"],
        json!(true)
    );
    let grant = grants
        .try_recv()
        .expect("a linger grant goes to the timer thread");
    assert_eq!(grant.schedule, Some(NOW + 5_000));
    let no_linger = checkout("v", "y").to_string();
    assert_eq!(
        ndjson::answer(&engine, NOW, &no_linger, &mut held, &timers)["ok"],
        json!(true)
    );
    assert!(grants.try_recv().is_err(), "held until check-in: no timer");
    assert_eq!(held.len(), 2);

    for bad in [
        "not json",
        r#"{"op":"frob"}"#,
        r#"{"op":"checkout","feature":"f"}"#,
    ] {
        let reply = ndjson::answer(&engine, NOW, bad, &mut held, &timers);
        assert_eq!(
            (&reply["ok"], &reply["reason"]),
            (&json!(false), &json!("BAD_REQUEST")),
            "{bad}"
        );
    }
}
