//! The library and its agent against the real tallyd: seed 002's lifecycle
//! in the debug log, failover past a dead server, reconnection to the same
//! instance, and servers that answer garbage.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use common::{eventually, Tallyd};
use tally_client::agent::{Agent, AgentConfig, Event};
use tally_client::{Checkout, ClientError, ServerAddr, Timeouts};

const GENEROUS: Duration = Duration::from_secs(10);
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// Seed 002's features: the startup license (`LT=SYS`) and the product.
const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT CITRIX CITRIX 2038.0101 permanent 5000 VENDOR_STRING=\";LT=SYS;GP=96;SA=0\"
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 2 VENDOR_STRING=\";LT=Retail;GP=720\"
";

fn addr(t: &Tallyd) -> ServerAddr {
    ServerAddr {
        port: t.addr.port(),
        host: t.addr.ip().to_string(),
    }
}

/// A port nobody listens on.
fn dead() -> ServerAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    ServerAddr {
        port,
        host: "127.0.0.1".into(),
    }
}

/// A server that answers the n-th request line of each connection with
/// `answers[n]` (the last one again after the end), whatever it was.
fn garbage(answers: &'static [&'static [u8]]) -> ServerAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = s.try_clone().expect("clone");
                let mut lines = BufReader::new(s).lines();
                for n in 0.. {
                    if !matches!(lines.next(), Some(Ok(_))) {
                        break;
                    }
                    let a = answers[n.min(answers.len() - 1)];
                    if w.write_all(a).is_err() {
                        break;
                    }
                }
            });
        }
    });
    ServerAddr {
        port,
        host: "127.0.0.1".into(),
    }
}

fn client(servers: Vec<ServerAddr>) -> tally_client::Client {
    tally_client::Client::with_timeouts(servers, Timeouts::all(Duration::from_secs(5)))
}

fn tallyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .env_remove("TALLY_LICENSE_FILE")
        .env_remove("LM_LICENSE_FILE")
        .output()
        .expect("run tallyctl")
}

/// A cache file path in a directory of its own (removed with the guard).
fn scratch() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("c.ini").to_string_lossy().into_owned();
    (dir, cache)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Seed 002: the agent starts (startup license out and in), checks its
/// product license out with a 21-day linger, renews it 6 hours later (on
/// the agent's manual clock), and returns it on shutdown with linger 1 s:
/// the debug log shows the seed's lines in the seed's order, the last IN
/// when the 1-second linger runs out.
#[test]
fn an_agents_lifecycle_in_the_debug_log() {
    let t = Tallyd::start(LICENSE, &[]);
    let product = Checkout::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8")
        .linger(Duration::from_millis(21 * DAY));
    let mut agent = Agent::new(client(vec![addr(&t)]), AgentConfig::new(product));
    let t0 = 1_700_000_000_000;
    let first = agent.tick(t0);
    assert!(
        matches!(
            first.events[..],
            [Event::Startup { .. }, Event::CheckedOut { deadline_ms, .. }] if deadline_ms > 0
        ),
        "{:?}",
        first.events
    );
    assert_eq!(first.next, Some(t0 + 6 * HOUR));
    let renewal = agent.tick(t0 + 6 * HOUR);
    assert!(
        matches!(renewal.events[..], [Event::Renewed { .. }]),
        "{:?}",
        renewal.events
    );
    let mut c = t.connect();
    assert_eq!(c.in_use("MPM_ADV_RC"), 1, "one instance, renewed");
    let end = agent.shutdown(t0 + 7 * HOUR);
    assert!(
        matches!(end.events[..], [Event::Returned { .. }]),
        "{:?}",
        end.events
    );
    assert!(eventually(GENEROUS, || c.in_use("MPM_ADV_RC") == 0));
    let who = "USER15@GENE-VM-2K3 [ec26edf8]";
    let want = [
        format!("(CITRIX) OUT: \"CITRIX\" {who}"),
        format!("(CITRIX) IN: \"CITRIX\" {who}"),
        format!("(CITRIX) OUT: \"MPM_ADV_RC\" {who}"),
        // The renewal: a second instance for a moment, corrected at once.
        format!("(CITRIX) OUT: \"MPM_ADV_RC\" {who}"),
        format!("(CITRIX) IN: \"MPM_ADV_RC\" {who}"),
        // The return: checked out with linger 1 s ...
        format!("(CITRIX) OUT: \"MPM_ADV_RC\" {who}"),
        format!("(CITRIX) IN: \"MPM_ADV_RC\" {who}"),
        // ... and checked in when it runs out.
        format!("(CITRIX) IN: \"MPM_ADV_RC\" {who}"),
    ];
    let ours = || -> Vec<String> {
        t.log_lines()
            .into_iter()
            .filter(|l| l.contains(who))
            .collect()
    };
    assert!(eventually(GENEROUS, || ours().len() >= want.len()));
    assert_eq!(ours(), want);
}

/// The first server of the list is dead (nobody listens): the second
/// answers, in the library and in `tallyctl agent checkout`.
#[test]
fn fails_over_to_the_second_server() {
    let (_dir, cache) = scratch();
    let t = Tallyd::start(LICENSE, &[]);
    let (down, up) = (dead(), addr(&t));
    let mut lib = client(vec![down.clone(), up.clone()]);
    let product = Checkout::new("MPM_ADV_RC", "u", "h", "lib").linger(Duration::from_secs(60));
    let g = lib
        .checkout(&product)
        .expect("granted by the second server");
    assert_eq!((&g.server, lib.connected()), (&up, Some(&up)));

    let list = format!("{down}:{up}");
    let o = tallyctl(&[
        "agent",
        "checkout",
        "MPM_ADV_RC",
        "--user",
        "u",
        "--host",
        "h",
        "--handle",
        "ctl",
        "--linger",
        "60",
        "--cache",
        "/nonexistent/cache.ini",
        "-c",
        &list,
    ]);
    let line = stdout(&o);
    assert!(
        line.starts_with("OK MPM_ADV_RC ctl deadline ") && line.ends_with(&format!(" from {up}\n")),
        "{line:?}"
    );
    assert_eq!(o.status.code(), Some(0));
    // Both licenses are out now: the next is denied, typed.
    let e = lib
        .checkout(&Checkout::new("MPM_ADV_RC", "v", "h", "third"))
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Denied { ref reason, flexlm_code: -4, .. } if reason == "ALL_IN_USE"),
        "{e}"
    );
    let o = tallyctl(&[
        "agent",
        "checkout",
        "MPM_ADV_RC",
        "--user",
        "v",
        "--host",
        "h",
        "--handle",
        "fourth",
        "--cache",
        &cache,
        "-c",
        &list,
    ]);
    assert_eq!(
        stdout(&o),
        "DENIED MPM_ADV_RC fourth ALL_IN_USE -4 Licensed number of users already reached.\n"
    );
    assert_eq!(o.status.code(), Some(1));
}

/// Nobody answers at all: `REFUSED`, naming what was tried, non-zero exit.
#[test]
fn no_server_is_refused_with_what_was_tried() {
    let (_dir, cache) = scratch();
    let (a, b) = (dead(), dead());
    let list = format!("{a}:{b}");
    let o = tallyctl(&[
        "agent", "checkout", "F", "--user", "u", "--host", "h", "--handle", "x", "--cache", &cache,
        "-c", &list,
    ]);
    let line = stdout(&o);
    assert!(
        line.starts_with("REFUSED no license server answered (")
            && line.contains(&format!("{a}: cannot connect"))
            && line.contains(&format!("{b}: cannot connect")),
        "{line:?}"
    );
    assert_ne!(o.status.code(), Some(0));
}

/// The connection breaks: the next call reconnects and re-sends what is
/// held, and gets the same instance (same handle) back, the
/// connection-bound one included (the server had checked it in).
#[test]
fn a_reconnection_gets_the_same_instances_back() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut lib = client(vec![addr(&t)]);
    let bound = Checkout::new("MPM_ADV_RC", "u", "h", "bound");
    let lingering =
        Checkout::new("MPM_ADV_RC", "u", "h", "lingering").linger(Duration::from_secs(600));
    lib.checkout(&bound).expect("bound");
    lib.checkout(&lingering).expect("lingering");
    let mut c = t.connect();
    assert_eq!(c.holders("MPM_ADV_RC"), ["bound", "lingering"]);
    let _ = lib
        .connection()
        .expect("connected")
        .stream()
        .shutdown(std::net::Shutdown::Both);
    // The server checks the connection-bound one in.
    assert!(eventually(GENEROUS, || c.holders("MPM_ADV_RC") == ["lingering"]));
    lib.renew(&lingering).expect("renewed after reconnecting");
    assert_eq!(c.holders("MPM_ADV_RC"), ["bound", "lingering"]);
    assert_eq!(c.in_use("MPM_ADV_RC"), 2);
}

/// A server that answers garbage: a clear error, no panic, from the
/// library and from tallyctl; a later server of the list still serves.
#[test]
fn a_server_that_answers_garbage() {
    let (_dir, cache) = scratch();
    let junk = garbage(&[b"\x00\xffHELLO garbage \x07\n"]);
    let mut lib = client(vec![junk.clone()]);
    let e = lib
        .checkout(&Checkout::new("F", "u", "h", "x"))
        .unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains(&format!("{junk}: ")), "{e}");

    let words = garbage(&[b"PONG\n", b"OK F\n"]);
    let mut lib = client(vec![words]);
    let e = lib
        .checkout(&Checkout::new("F", "u", "h", "x"))
        .unwrap_err();
    assert!(
        matches!(e, ClientError::BadReply { .. }) && e.to_string().contains("unexpected reply"),
        "{e}"
    );

    let t = Tallyd::start(LICENSE, &[]);
    let list = format!("{junk}:{}", addr(&t));
    let o = tallyctl(&[
        "agent",
        "checkout",
        "MPM_ADV_RC",
        "--user",
        "u",
        "--host",
        "h",
        "--handle",
        "x",
        "--cache",
        &cache,
        "-c",
        &list,
    ]);
    assert!(stdout(&o).starts_with("OK MPM_ADV_RC x "), "{o:?}");

    // A cache never written (the one above is, by the OK: PICTURE).
    let (_fresh_dir, fresh) = scratch();
    let o = tallyctl(&[
        "agent",
        "checkout",
        "F",
        "--user",
        "u",
        "--host",
        "h",
        "--handle",
        "x",
        "--cache",
        &fresh,
        "-c",
        &junk.to_string(),
    ]);
    assert!(
        stdout(&o).starts_with(&format!("REFUSED no license server answered ({junk}: ")),
        "{o:?}"
    );
    assert_ne!(o.status.code(), Some(0));
}

/// `tallyctl agent run`: one line per action, startup first, the return
/// last.
#[test]
fn tallyctl_agent_run_prints_what_it_does() {
    let t = Tallyd::start(LICENSE, &[]);
    let o = tallyctl(&[
        "agent",
        "run",
        "MPM_ADV_RC",
        "--user",
        "USER15",
        "--host",
        "H",
        "--handle",
        "run1",
        "--linger",
        "600",
        "--renew-every",
        "0.2",
        "--for",
        "1",
        "-c",
        &addr(&t).to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    let actions: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(actions.first(), Some(&"STARTUP"), "{out}");
    assert_eq!(actions.get(1), Some(&"CHECKED_OUT"), "{out}");
    assert_eq!(actions.last(), Some(&"RETURNED"), "{out}");
    assert!(
        actions[2..actions.len() - 1]
            .iter()
            .all(|a| *a == "RENEWED"),
        "{out}"
    );
    let mut c = t.connect();
    assert!(eventually(GENEROUS, || c.in_use("MPM_ADV_RC") == 0));
}
