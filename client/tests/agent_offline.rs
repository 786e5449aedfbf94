//! `tallyctl agent checkout` / `agent reconcile` and the offline cache,
//! against scripted servers (and, in `seed001`, the real tallyd).

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

use std::time::Duration;

use common::{eventually, Tallyd};
use tally_client::agent::{Agent, AgentConfig, Event, OfflineConfig};
use tally_client::{Checkout, Client, Reconciled, ServerAddr, Timeouts};
use tally_core::clock::{Clock, SystemClock};

/// A server answering each request line by its first word, per `answer`
/// (at most 8 connections).
fn scripted(answer: fn(&str) -> String) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().take(8).flatten() {
            let mut w = s.try_clone().expect("clone");
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                if w.write_all(answer(&line).as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    format!("{port}@127.0.0.1")
}

fn tallyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .env_remove("TALLY_LICENSE_FILE")
        .env_remove("LM_LICENSE_FILE")
        .output()
        .expect("run tallyctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_server_without_picture_checks_out_and_says_the_cache_is_not_refreshed() {
    let server = scripted(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        match w[0] {
            "PING" => "PONG\n".into(),
            "CHECKOUT" => format!("OK {} {} 0\n", w[1], w[4]),
            _ => format!("ERR UNKNOWN_COMMAND {} is not a command\n", w[0]),
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("c.ini");
    let cache_s = cache.to_string_lossy().into_owned();
    let o = tallyctl(&[
        "agent", "checkout", "F", "--user", "u", "--host", "h", "--handle", "x", "--cache",
        &cache_s, "-c", &server,
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(text(&o.stdout).starts_with("OK F x deadline 0 "), "{o:?}");
    let err = text(&o.stderr);
    assert_eq!(
        err,
        format!(
            "tallyctl: {server} does not answer PICTURE (ERR UNKNOWN_COMMAND): the cache \
             {cache_s} is not refreshed\n"
        )
    );
    assert!(!cache.exists());
}

#[test]
fn a_cut_off_picture_leaves_the_checkout_ok_and_the_cache_unwritten() {
    let server = scripted(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        match w[0] {
            "PING" => "PONG\n".into(),
            "CHECKOUT" => format!("OK {} {} 0\n", w[1], w[4]),
            _ => {
                "OK {\"stamp\":\"s1\",\"server\":\"lic1\",\"port\":27000,\"pools\":[{\"fea\n".into()
            }
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("c.ini");
    let cache_s = cache.to_string_lossy().into_owned();
    let o = tallyctl(&[
        "agent", "checkout", "F", "--user", "u", "--host", "h", "--handle", "x", "--cache",
        &cache_s, "-c", &server,
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let err = text(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "tallyctl: the cache {cache_s} is not refreshed: {server}: "
        )) && err.contains("cut off"),
        "{err}"
    );
    assert!(!cache.exists());
}

/// Seed 001's pool: 50 MPS_ENT_CCU, 30 days of grace.
const SEED001: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT MPS_ENT_CCU CITRIX 2007.0726 permanent 50 VENDOR_STRING=\";LT=Retail;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0\"
";

fn server_of(t: &Tallyd) -> String {
    format!("{}@{}", t.addr.port(), t.addr.ip())
}

fn agent_checkout(cache: &str, server: &str, user: &str, handle: &str) -> Output {
    tallyctl(&[
        "agent",
        "checkout",
        "MPS_ENT_CCU",
        "--user",
        user,
        "--host",
        "ts1",
        "--handle",
        handle,
        "--linger",
        "3600",
        "--cache",
        cache,
        "-c",
        server,
    ])
}

/// Seed 001's story: 50 licenses, 45 in use, the client checks out once
/// online (cache written; its license is connection-bound and checked in
/// when tallyctl exits), tallyd killed, 10 sessions admitted offline (each
/// by a new tallyctl process: a reboot mid-outage loses nothing), tallyd
/// restarted on the same state, `agent reconcile`: 5 within the count, 5
/// overdraft, visible in STATUS and lmstat; reconciling again counts
/// nothing twice.
#[test]
fn seed001_fifty_fortyfive_ten() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let cache = dir.path().join("tally.ini");
    let cache_s = cache.to_string_lossy().into_owned();
    let mut t = Tallyd::start_with_state(SEED001, &[], &state);
    let mut helper = t.connect();
    for i in 0..45 {
        let r = helper.req(&format!(
            "CHECKOUT MPS_ENT_CCU user{i} ts0 held{i} linger=86400"
        ));
        assert!(r.starts_with("OK "), "{r}");
    }
    let o = tallyctl(&[
        "agent",
        "checkout",
        "MPS_ENT_CCU",
        "--user",
        "USER00",
        "--host",
        "ts1",
        "--handle",
        "online",
        "--cache",
        &cache_s,
        "-c",
        &server_of(&t),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        text(&o.stdout).starts_with("OK MPS_ENT_CCU online "),
        "{o:?}"
    );
    assert_eq!(text(&o.stderr), "", "PICTURE answered, cache written");
    let v = tallyctl(&["cache", "verify", &cache_s]);
    assert_eq!(v.status.code(), Some(0), "{v:?}");
    drop(helper);
    t.kill9();

    for i in 1..=10 {
        let o = agent_checkout(
            &cache_s,
            &server_of(&t),
            &format!("USER{}", 50 + i),
            &format!("h{i}"),
        );
        let line = text(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert!(
            line.starts_with(&format!("OFFLINE MPS_ENT_CCU h{i} grace until "))
                && line.ends_with(&format!(" ({i} of 50 offline)\n")),
            "{line:?}"
        );
    }
    let side = tally_client::offline::side_file_path(&cache);
    let before = std::fs::read(&side).expect("side file");

    let t2 = Tallyd::start_with_state(SEED001, &[], &state);
    let mut c = t2.connect();
    assert_eq!(c.in_use("MPS_ENT_CCU"), 45, "the lingering 45 are back");
    let o = tallyctl(&[
        "agent",
        "reconcile",
        "--cache",
        &cache_s,
        "-c",
        &server_of(&t2),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 11, "{out}");
    for (i, l) in lines[..5].iter().enumerate() {
        assert!(
            l.starts_with(&format!(
                "RECONCILED MPS_ENT_CCU h{} USER{}@ts1 started ",
                i + 1,
                51 + i
            )),
            "{l}"
        );
    }
    for (i, l) in lines[5..10].iter().enumerate() {
        assert!(
            l.starts_with(&format!("OVERDRAFT MPS_ENT_CCU h{} ", i + 6))
                && l.ends_with(" excess 1"),
            "{l}"
        );
    }
    assert_eq!(
        lines[10],
        "reconciled 10 offline admissions: 5 within the count, 5 overdraft (5 licenses beyond the count), 0 duplicate, 0 rejected, 0 failed; 0 pending"
    );
    let seen_status = |c: &mut common::Client| {
        let s = c.status();
        let f = s["features"]
            .as_array()
            .expect("features")
            .iter()
            .find(|f| f["name"] == "MPS_ENT_CCU")
            .cloned()
            .expect("feature");
        f
    };
    let f = seen_status(&mut c);
    assert_eq!(f["in_use"], 55, "{f}");
    assert_eq!(
        (f["overdraft"].as_u64(), f["over_limit"].as_u64()),
        (Some(5), Some(5)),
        "{f}"
    );
    let lm = tallyctl(&["lmstat", "-a", "-c", &server_of(&t2)]);
    let lm_text = text(&lm.stdout);
    assert!(
        lm_text.contains(
            "Users of MPS_ENT_CCU:  (Total of 50 licenses issued;  Total of 55 licenses in use)"
        ),
        "{lm_text}"
    );
    let over_lines = t2
        .log_lines()
        .iter()
        .filter(|l| l.contains("OVERDRAFT: "))
        .count();
    assert_eq!(over_lines, 5, "{:?}", t2.log_lines());

    // Again: nothing pending, nothing sent.
    let o = tallyctl(&[
        "agent",
        "reconcile",
        "--cache",
        &cache_s,
        "-c",
        &server_of(&t2),
    ]);
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (
            Some(0),
            "reconciled 0 offline admissions: 0 within the count, 0 overdraft (0 licenses beyond the count), 0 duplicate, 0 rejected, 0 failed; 0 pending\n".to_string()
        )
    );
    // The same admissions sent again (the side file as it was before:
    // a client that crashed before its marks): the server knows the ids.
    std::fs::write(&side, before).expect("restore side file");
    let o = tallyctl(&[
        "agent",
        "reconcile",
        "--cache",
        &cache_s,
        "-c",
        &server_of(&t2),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = text(&o.stdout);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("DUPLICATE MPS_ENT_CCU h"))
            .count(),
        10,
        "{out}"
    );
    assert!(
        out.ends_with(
            "0 within the count, 0 overdraft (0 licenses beyond the count), 10 duplicate, 0 rejected, 0 failed; 0 pending\n"
        ),
        "{out}"
    );
    let f = seen_status(&mut c);
    assert_eq!(
        (f["in_use"].as_u64(), f["overdraft"].as_u64()),
        (Some(55), Some(5)),
        "{f}"
    );
}

fn addr(t: &Tallyd) -> ServerAddr {
    ServerAddr {
        port: t.addr.port(),
        host: t.addr.ip().to_string(),
    }
}

/// The library's Agent with a cache: online (cache written), the server
/// killed, the license lapses unrenewed, the agent admits the session
/// offline; the server back, the agent's first call reports the admission
/// (RECONCILE) and then checks out online again.
#[test]
fn an_agent_holds_offline_and_reconciles_on_its_first_contact() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let cache = dir.path().join("tally.ini");
    let mut t = Tallyd::start_with_state(SEED001, &[], &state);
    let product =
        Checkout::new("MPS_ENT_CCU", "USER15", "ts1", "agent1").linger(Duration::from_secs(1));
    let mut config = AgentConfig::new(product);
    config.startup_feature = None;
    let client = Client::with_timeouts(vec![addr(&t)], Timeouts::all(Duration::from_secs(5)));
    let mut agent = Agent::with_offline(client, config, OfflineConfig::new(&cache));
    let t0 = SystemClock.now_ms();
    let first = agent.tick(t0);
    assert!(
        matches!(first.events[..], [Event::CheckedOut { .. }]),
        "{first:?}"
    );
    assert!(cache.exists(), "PICTURE stored");
    // The 1-second linger runs out on the server; then it dies.
    let mut c = t.connect();
    assert!(eventually(Duration::from_secs(10), || c
        .in_use("MPS_ENT_CCU")
        == 0));
    drop(c);
    t.kill9();
    // On the agent's clock: renewals fail, the deadline passes, the
    // checkout again finds nobody: admitted offline.
    let mut next = first.next.expect("due");
    let mut admitted = None;
    for _ in 0..100 {
        let tick = agent.tick(next);
        if let Some(Event::AdmittedOffline { id, .. }) = tick.events.last() {
            admitted = Some(id.clone());
        }
        next = tick.next.expect("due");
        if admitted.is_some() {
            break;
        }
    }
    let id = admitted.expect("admitted offline");
    assert_eq!(agent.offline_admission(), Some(id.as_str()));
    assert!(agent.holds(next));

    let t2 = Tallyd::start_with_state(SEED001, &[], &state);
    agent.licensing().set_servers(vec![addr(&t2)]);
    let back = agent.tick(next);
    match &back.events[..] {
        [Event::Reconciled { outcome, .. }, Event::CheckedOut { .. }] => {
            assert_eq!(outcome.admission.id, id);
            assert!(
                matches!(outcome.result, Ok(Reconciled::Counted { .. })),
                "{outcome}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(agent.offline().expect("cache").pending().is_empty());
    let mut c = t2.connect();
    assert_eq!(c.holders("MPS_ENT_CCU"), ["agent1"]);
}

const FIVE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT MPS_ENT_CCU CITRIX 2007.0726 permanent 5 VENDOR_STRING=\";LT=Retail;GP=720;SA=0;ODP=0\"
";

/// 20 `agent checkout` processes at once on one cache of a 5-license pool,
/// no server answering: exactly 5 admitted, with 5 different ids; the same
/// handle asking again is renewed (counted once); the server back with a
/// license file without the feature: every admission REJECTED, for good.
#[test]
fn parallel_offline_checkouts_never_over_admit_and_denied_ones_are_rejected() {
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("tally.ini");
    let cache_s = cache.to_string_lossy().into_owned();
    let mut t = Tallyd::start(FIVE, &[]);
    let o = agent_checkout(&cache_s, &server_of(&t), "USER00", "online");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let server = server_of(&t);
    t.kill9();

    let outs: Vec<Output> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..20)
            .map(|i| {
                let (cache_s, server) = (&cache_s, &server);
                s.spawn(move || agent_checkout(cache_s, server, &format!("U{i}"), &format!("p{i}")))
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("run")).collect()
    });
    let lines: Vec<String> = outs.iter().map(|o| text(&o.stdout)).collect();
    let offline = lines.iter().filter(|l| l.starts_with("OFFLINE ")).count();
    let full = lines
        .iter()
        .filter(|l| l.starts_with("REFUSED POOL_FULL"))
        .count();
    assert_eq!((offline, full), (5, 15), "{lines:?}");
    let (_, ledger) = tally_client::offline::Offline::inspect(&cache).expect("inspect");
    let mut ids: Vec<&str> = ledger
        .entries
        .iter()
        .map(|e| e.admission.id.as_str())
        .collect();
    assert_eq!(ids.len(), 5);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "{ids:?}");

    // An admitted handle asking again: the same admission, still 5 of 5.
    let admitted = ledger.entries[0].admission.clone();
    let o = agent_checkout(&cache_s, &server, &admitted.user, &admitted.handle);
    let line = text(&o.stdout);
    assert!(line.ends_with(" (5 of 5 offline)\n"), "{line:?}");
    let (_, again) = tally_client::offline::Offline::inspect(&cache).expect("inspect");
    assert_eq!(again.entries.len(), 5);

    // Back without the feature: each RECONCILE is DENIED, final.
    let t2 = Tallyd::start(
        "SERVER this_host ANY 27000\nVENDOR CITRIX\nINCREMENT OTHER CITRIX 1.0 permanent 1\n",
        &[],
    );
    let o = tallyctl(&[
        "agent",
        "reconcile",
        "--cache",
        &cache_s,
        "-c",
        &server_of(&t2),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("REJECTED MPS_ENT_CCU p") && l.contains(" NO_SUCH_FEATURE "))
            .count(),
        5,
        "{out}"
    );
    assert!(
        out.ends_with("0 duplicate, 5 rejected, 0 failed; 0 pending\n"),
        "{out}"
    );
    let show = tallyctl(&["cache", "show", &cache_s]);
    let shown = text(&show.stdout);
    assert_eq!(
        shown.matches(", rejected NO_SUCH_FEATURE\n").count(),
        5,
        "{shown}"
    );
    assert_eq!(shown.matches(", renewed ").count(), 1, "{shown}");
    let o = tallyctl(&[
        "agent",
        "reconcile",
        "--cache",
        &cache_s,
        "-c",
        &server_of(&t2),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        text(&o.stdout).starts_with("reconciled 0 offline admissions"),
        "{o:?}"
    );
}
