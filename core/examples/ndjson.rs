//! A front end of another protocol on tally-core: newline-delimited JSON
//! over `std::net`, one thread per connection. The whole embedding contract
//! in one screen: the front end reads the file, owns the sockets and the
//! clock, arms a timer for each grant that asks for one, drains the timers
//! that are due, and checks in what a closed connection held without linger.
//!
//! ```text
//! cargo run -p tally-core --example ndjson -- [PORT] [LICENSE_FILE]
//! {"op":"checkout","feature":"f","user":"u","host":"h","handle":"x","linger_s":60}
//! {"deadline_ms":1700000060000,"handle":"x","kind":"New","ok":true,"ticket":1}
//! {"op":"checkout","feature":"f","user":"v","host":"h","handle":"y"}
//! {"deadline_ms":null,"handle":"y","kind":"New","ok":true,"ticket":2}
//! {"op":"checkout","feature":"f","user":"w","host":"h","handle":"z"}
//! {"code":-4,"message":"Licensed number of users already reached.","ok":false,"reason":"ALL_IN_USE"}
//! ```
//!
//! Ops: `checkout` (`display`, `count`, `linger_s` optional), `checkin`,
//! `status`, `ping`. Port 0 (the default) binds a free port and prints it.

#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tally_core::engine::{
    CheckinError, Engine, EngineConfig, Grant, GrantKind, InstanceId, Lingers, Request,
};
use tally_core::{Clock, SystemClock};

/// Served when no license file is named: one feature `f` of two seats.
pub(crate) const DEMO_LICENSE: &str = "FEATURE f DEMO 1.0 permanent 2 SIGN=0\n";
/// Longest the timer thread waits with nothing armed (new grants wake it).
const IDLE_TICK: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Op {
    Checkout {
        #[serde(flatten)]
        who: Who,
        count: Option<u32>,
        #[serde(default)]
        linger_s: u64,
    },
    Checkin(Who),
    Status,
    Ping,
}

#[derive(Deserialize)]
struct Who {
    feature: String,
    user: String,
    host: String,
    #[serde(default)]
    display: String,
    handle: String,
}

/// Answers one request line. `held` collects the instances this connection
/// took; `timers` carries each grant that asks for a timer to the timer thread.
pub(crate) fn answer(
    engine: &Engine,
    now: u64,
    line: &str,
    held: &mut Vec<InstanceId>,
    timers: &Sender<Grant>,
) -> Value {
    let op = match serde_json::from_str::<Op>(line) {
        Ok(op) => op,
        Err(e) => return json!({"ok": false, "reason": "BAD_REQUEST", "message": e.to_string()}),
    };
    match op {
        Op::Checkout {
            who,
            count,
            linger_s,
        } => {
            let mut req = Request::new(&who.feature, &who.user, &who.host, &who.handle);
            req.names.display = &who.display;
            req.count = count.unwrap_or(1);
            req.linger_ms = linger_s.saturating_mul(1000);
            match engine.checkout(&req, now) {
                Ok(grant) => {
                    if let (GrantKind::New, Some(id)) = (grant.kind, grant.id) {
                        held.push(id);
                    }
                    if grant.schedule.is_some() {
                        let _ = timers.send(grant);
                    }
                    json!({"ok": true, "handle": who.handle, "ticket": grant.id.map(|i| i.ticket()),
                           "kind": format!("{:?}", grant.kind), "deadline_ms": grant.deadline})
                }
                Err(d) => json!({"ok": false, "reason": d.reason.name(),
                                 "code": d.reason.flexlm_code(), "message": d.reason.full_text().to_string()}),
            }
        }
        Op::Checkin(w) => match engine.checkin(&w.feature, &w.user, &w.host, &w.display, &w.handle)
        {
            Ok(r) => json!({"ok": true, "handle": w.handle, "count": r.count}),
            Err(e) => {
                let reason = match e {
                    CheckinError::NoSuchFeature => "NO_SUCH_FEATURE",
                    CheckinError::NotHeld => "NOT_HELD",
                };
                json!({"ok": false, "reason": reason, "message": e.to_string()})
            }
        },
        Op::Status => {
            let features: Vec<Value> = engine
                .snapshot(now)
                .features
                .iter()
                .map(|f| {
                    let in_use: u32 = f.pools.iter().map(|p| p.in_use).sum();
                    let count: Option<u32> = f.pools.iter().map(|p| p.count).sum();
                    json!({"feature": f.name, "in_use": in_use, "count": count})
                })
                .collect();
            json!({"ok": true, "features": features})
        }
        Op::Ping => json!({"ok": true}),
    }
}

/// One connection: a line in, a line out. At EOF, what it holds without a
/// linger is checked in; lingering licenses stay until their deadline.
fn connection(
    stream: TcpStream,
    engine: &Engine,
    clock: &dyn Clock,
    timers: &Sender<Grant>,
) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut held = Vec::new();
    let result = BufReader::new(stream).lines().try_for_each(|line| {
        let reply = answer(engine, clock.now_ms(), &line?, &mut held, timers);
        writeln!(out, "{reply}")
    });
    for id in held {
        engine.release_if_unlingered(id);
    }
    result
}

/// The timer thread: owns the `Lingers`, sleeps until the next deadline or a
/// new grant (`recv_timeout` is the tick), and drains what is due.
fn expiry(engine: &Engine, clock: &dyn Clock, grants: &Receiver<Grant>) {
    let mut lingers = Lingers::new(clock.now_ms());
    loop {
        let now = clock.now_ms();
        lingers.expire(engine, now, |r| {
            eprintln!(
                "expired: {} x{} {}",
                engine.feature_name(r.feature),
                r.count,
                r.holder.handle()
            )
        });
        let wait = lingers.next_deadline().map_or(IDLE_TICK, |at| {
            Duration::from_millis(at.saturating_sub(now))
        });
        match grants.recv_timeout(wait) {
            Ok(grant) => lingers.track(&grant),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Serves `listener` until `accept` fails: a timer thread plus a thread per connection.
pub(crate) fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    clock: Arc<dyn Clock>,
) -> io::Result<()> {
    let (timers, grants) = mpsc::channel();
    let (e, c) = (engine.clone(), clock.clone());
    std::thread::spawn(move || expiry(&e, &*c, &grants));
    for stream in listener.incoming() {
        let (stream, engine, clock, timers) =
            (stream?, engine.clone(), clock.clone(), timers.clone());
        std::thread::spawn(move || connection(stream, &engine, &*clock, &timers));
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(Ok(0), |p| p.parse())?;
    // The core does no I/O: the front end reads the file and passes the text.
    let (source, text) = match args.next() {
        Some(path) => {
            let text = std::fs::read_to_string(&path)?;
            (path, text)
        }
        None => ("<demo>".to_string(), DEMO_LICENSE.to_string()),
    };
    let licenses = tally_core::license::parse_str(&source, &text);
    for d in &licenses.diagnostics {
        eprintln!("{d}"); // file:line:col: message
    }
    let engine = Arc::new(Engine::new(&licenses, EngineConfig::default()));
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("listening on {}", listener.local_addr()?);
    serve(listener, engine, Arc::new(SystemClock))?;
    Ok(())
}
