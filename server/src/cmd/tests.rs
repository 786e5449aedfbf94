//! Unit tests of the commands: no socket, no thread of their own, time
//! from a [`ManualClock`] moved by hand. Each test runs requests through
//! [`answer`] against a real engine and looks at the reply and at the
//! effects left for the network layer; the timer tests drive the loop's
//! timer service (`timers.rs`, on the core's wheel) the way the loop's
//! timer step does, with the clock advanced instead of slept.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use tally_core::clock::{Clock, ManualClock};
use tally_core::engine::{EngineConfig, Reason};
use tally_core::sync::{Pause, Published};

use super::*;
use crate::debuglog::{DebugLog, LogTarget, OutKind};
use crate::options::PolicyConfig;
use crate::queue::Queues;
use crate::shared::Facts;
use crate::timers::{Fired, LoopTimers, Timer};

mod borrow;
mod reconcile;

const START: u64 = 1_700_000_000_000;

const LICENSE: &str = "\
VENDOR V
INCREMENT F V 1.0 permanent 1
INCREMENT G V 1.0 permanent 5
INCREMENT D V 1.0 permanent 1 DUP_GROUP=UH
";

/// A loop's command context on a manual clock, without sockets.
struct Bench {
    cx: Ctx,
    clock: Arc<ManualClock>,
    fx: Effects,
    /// Keeps the log's writer alive (it never serves: nothing is written).
    _log: DebugLog,
}

fn bench(options: Option<&str>, license_path: Option<PathBuf>) -> Bench {
    bench_of(LICENSE, options, license_path)
}

/// [`bench`] serving `license` rather than [`LICENSE`].
fn bench_of(license: &str, options: Option<&str>, license_path: Option<PathBuf>) -> Bench {
    let licenses = tally_core::license::parse_str("test.lic", license);
    let options = options.map(|o| tally_core::options::parse_str("test.opt", o));
    // The seed `Shared::seed` gives a REREAD's engine, as at start (a moved
    // instance keeps its identity hash).
    let seed = (1, 2);
    let engine = Arc::new(crate::options::build_engine(
        &licenses,
        options.as_ref(),
        EngineConfig {
            seed,
            ..EngineConfig::default()
        },
    ));
    let opts = Arc::new(ServerOptions::new(&engine, options.as_ref(), 1));
    let clock = Arc::new(ManualClock::new(START));
    let log = DebugLog::start(&LogTarget::Stderr, engine.clone(), clock.clone()).unwrap();
    let shared = Arc::new(Shared {
        generation: Published::new(Generation {
            engine: engine.clone(),
            opts: opts.clone(),
            remap: HashMap::new(),
            facts: Facts {
                host: "lic1".into(),
                port: 27000,
                license_file: "test.lic".into(),
                vendors: vec!["V".into()],
                started_ms: START,
            },
        }),
        pause: Pause::new(1),
        metrics: vec![crate::metrics::LoopCounters::default()].into(),
        shutdown: AtomicBool::new(false),
        wakers: OnceLock::new(),
        connections: AtomicU64::new(0),
        log: log.handle(),
        usage_events: false,
        usage_db: None,
        license_path,
        vendor_key: None,
        admin_token: Some("s3cret".into()),
        seed,
        policy: PolicyConfig {
            min_timeout_secs: 1,
            ..PolicyConfig::default()
        },
        queues: Queues::new(1),
        reconciled: Default::default(),
        upload: OnceLock::new(),
        clock: clock.clone(),
        journal: crate::shared::JournalFacts {
            mode: crate::journal::Durability::Off,
            dir: "state".into(),
            figures: OnceLock::new(),
        },
    });
    Bench {
        cx: Ctx {
            index: 0,
            gen: shared.generation.reader(),
            shared,
            engine,
            opts,
            journal: None,
            admin_failures: FailureLog::default(),
        },
        clock,
        fx: Effects::default(),
        _log: log,
    }
}

/// A session of a remote peer (no admin rights without AUTH).
fn remote(key: usize) -> Session {
    let peer: SocketAddr = format!("10.0.0.{key}:4000").parse().unwrap();
    Session::new(peer, key, key as u64, START)
}

impl Bench {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Sends `line` on `s`; returns the reply (without LF), `""` if none.
    /// The effects stay in `self.fx` until the next request.
    fn req(&mut self, s: &mut Session, line: &str) -> String {
        self.fx = Effects::default();
        let mut out = BytesMut::new();
        let now = self.now();
        answer(
            &mut self.cx,
            s,
            line.as_bytes(),
            now,
            &mut out,
            &mut self.fx,
        );
        String::from_utf8(out.to_vec())
            .unwrap()
            .trim_end_matches('\n')
            .to_string()
    }

    /// The license events left in the effects: (action, count).
    fn logged(&self) -> Vec<Action> {
        self.fx
            .log
            .iter()
            .filter_map(|e| match e {
                Event::License { action, .. } => Some(*action),
                _ => None,
            })
            .collect()
    }

    fn in_use(&self, feature: &str) -> u32 {
        let snap = self.cx.engine.snapshot(self.now());
        snap.features
            .iter()
            .filter(|f| f.name == feature)
            .flat_map(|f| &f.pools)
            .map(|p| p.in_use)
            .sum()
    }
}

#[test]
fn checkout_grants_and_denies() {
    let mut b = bench(None, None);
    let (mut s1, mut s2) = (remote(1), remote(2));
    assert_eq!(b.req(&mut s1, "CHECKOUT F alice pc1 h1"), "OK F h1 0");
    assert_eq!(b.logged(), [Action::Out(OutKind::New)]);
    assert!(s1.held.len() == 1, "a bound checkout is the session's");
    assert_eq!(
        b.req(&mut s2, "CHECKOUT F bob pc2 h2"),
        "DENIED F h2 ALL_IN_USE -4 Licensed number of users already reached."
    );
    assert_eq!(b.logged(), [Action::Denied(Reason::AllInUse)]);
    assert!(b.fx.waits.is_empty() && s2.waiting.is_none());
    let r = b.req(&mut s2, "CHECKOUT NOPE bob pc2 h2");
    assert!(r.starts_with("DENIED NOPE h2 NO_SUCH_FEATURE -5"), "{r}");
    // A linger: the reply carries the deadline, the loop gets a timer.
    let r = b.req(&mut s2, "CHECKOUT G bob pc2 h3 linger=60");
    assert_eq!(r, format!("OK G h3 {}", START + 60_000));
    assert_eq!(b.fx.lingers.len(), 1);
    assert_eq!(b.fx.lingers[0].1, START + 60_000);
    assert!(b.fx.gate.is_none(), "no journal, nothing to wait for");
}

#[test]
fn a_full_pool_queues_a_checkout_with_wait() {
    let mut b = bench(None, None);
    let (mut s1, mut s2) = (remote(1), remote(2));
    assert_eq!(b.req(&mut s1, "CHECKOUT F alice pc1 h1"), "OK F h1 0");
    assert_eq!(b.req(&mut s2, "CHECKOUT F bob pc2 h2 wait=5"), "");
    assert_eq!(b.logged(), [Action::Queued]);
    assert_eq!(b.fx.waits.len(), 1);
    assert_eq!(b.fx.waits[0].0, START + 5_000);
    assert!(s2.waiting.is_some());
    assert_eq!(b.cx.shared.queues.snapshot()[0].names.handle, "h2");
    // The license comes back: the check-in wakes the queue's loops.
    assert_eq!(b.req(&mut s1, "CHECKIN F h1"), "OK F h1");
    assert!(b.fx.wake_queues);
    // The loop's round of the queue: the head is tried and served.
    let now = b.now();
    let [(feature, w)] = &b.cx.shared.queues.to_try_on(0, now)[..] else {
        panic!("one waiter to try");
    };
    let mut out = BytesMut::new();
    let answered =
        super::answer_waiter(&mut b.cx, &mut s2, &w.line, now, false, &mut out, &mut b.fx);
    assert!(answered && s2.waiting.is_none());
    assert!(out.starts_with(b"OK F h2 "), "{out:?}");
    assert!(b.cx.shared.queues.remove(feature, w.seq).is_some());
    assert!(b.cx.shared.queues.is_empty());
}

#[test]
fn a_queued_checkout_times_out_without_sleeping() {
    let mut b = bench(None, None);
    let (mut s1, mut s2) = (remote(1), remote(2));
    b.req(&mut s1, "CHECKOUT F alice pc1 h1");
    b.req(&mut s2, "CHECKOUT F bob pc2 h2 wait=5");
    let mut timers = LoopTimers::with_capacity(START, 0);
    for (d, seq) in b.fx.waits.drain(..) {
        timers.arm(Timer::queue_wait(s2.key, seq), d);
    }
    // The loop's timer step: due waiters leave the queue and are tried
    // once more with `give_up`.
    let mut step = |b: &mut Bench, s: &mut Session| -> Option<String> {
        let now = b.now();
        let mut due = Vec::new();
        timers.drain_due(&b.cx.engine, now, |_, f| due.push(f));
        let [Fired::Timer(Timer::QueueWait { key, seq })] = due[..] else {
            assert!(due.is_empty(), "{due:?}");
            return None;
        };
        assert_eq!(key as usize, s.key);
        let (feature, waiting) = s.waiting.clone().expect("still waiting");
        assert_eq!(waiting, seq);
        let w = b.cx.shared.queues.remove(&feature, seq)?;
        let mut out = BytesMut::new();
        b.fx = Effects::default();
        let answered = super::answer_waiter(&mut b.cx, s, &w.line, now, true, &mut out, &mut b.fx);
        assert!(answered && s.waiting.is_none());
        Some(String::from_utf8(out.to_vec()).unwrap())
    };
    b.clock.advance(4_999);
    assert_eq!(step(&mut b, &mut s2), None, "not due yet");
    b.clock.advance(1);
    let r = step(&mut b, &mut s2).expect("due at 5 s");
    assert!(r.starts_with("DENIED F h2 ALL_IN_USE -4"), "{r}");
    assert!(b.cx.shared.queues.is_empty());
}

#[test]
fn a_linger_expires_without_sleeping() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    let r = b.req(&mut s, "CHECKOUT F alice pc1 h1 linger=10");
    assert_eq!(r, format!("OK F h1 {}", START + 10_000));
    assert!(
        s.held.is_empty(),
        "a lingering instance outlives its connection"
    );
    let mut timers = LoopTimers::with_capacity(START, 0);
    for (id, at) in b.fx.lingers.drain(..) {
        timers.arm_linger(id, at);
    }
    let mut expire = |b: &mut Bench| {
        let mut due = Vec::new();
        timers.drain_due(&b.cx.engine, b.now(), |_, f| due.push(f));
        b.fx = Effects::default();
        for f in &due {
            let Fired::Released(r) = f else {
                panic!("only the linger is armed: {f:?}");
            };
            b.cx.released(r, crate::metrics::Cause::LingerExpiry, b.now(), &mut b.fx);
        }
        due.len()
    };
    b.clock.advance(9_000);
    assert_eq!(expire(&mut b), 0);
    assert_eq!(b.in_use("F"), 1);
    b.clock.advance(1_100);
    assert_eq!(expire(&mut b), 1);
    assert_eq!(b.logged(), [Action::In(Cause::LingerExpiry)]);
    assert_eq!(b.in_use("F"), 0);
}

#[test]
fn an_idle_timeout_checks_in_without_sleeping() {
    let mut b = bench(Some("TIMEOUT F 2\n"), None);
    let mut s = remote(1);
    assert_eq!(b.req(&mut s, "CHECKOUT F alice pc1 h1"), "OK F h1 0");
    assert_eq!(b.req(&mut s, "CHECKOUT G alice pc1 h2"), "OK G h2 0");
    let mut idle = LoopTimers::with_capacity(START, 0);
    let shortest = b.cx.opts.shortest_timeout_ms().expect("a TIMEOUT");
    assert_eq!(shortest, 2_000);
    idle.arm(Timer::idle(s.key, s.serial), s.last_seen + shortest);
    // The loop's idle step: each due check decides from `last_seen`.
    let step = |b: &mut Bench, s: &mut Session, idle: &mut LoopTimers| {
        b.fx = Effects::default();
        let mut due = Vec::new();
        idle.drain_due(&b.cx.engine, b.now(), |_, f| due.push(f));
        for f in due {
            let Fired::Timer(Timer::Idle { key, serial }) = f else {
                panic!("only idle checks are armed: {f:?}");
            };
            assert_eq!((key as usize, serial), (s.key, s.serial));
            let now = b.now();
            if let Some(due) = idle::check(&mut b.cx, s, now, &mut b.fx) {
                idle.arm(Timer::idle(s.key, s.serial), due);
            }
        }
    };
    b.clock.advance(1_500);
    b.req(&mut s, "PING"); // a heartbeat
    b.clock.advance(1_500);
    step(&mut b, &mut s, &mut idle);
    assert_eq!(b.in_use("F"), 1, "3 s since the checkout, 1.5 s idle");
    b.clock.advance(500);
    step(&mut b, &mut s, &mut idle);
    assert_eq!(
        b.in_use("F"),
        1,
        "idle 2 s, but re-checked at most once a second"
    );
    b.clock.advance(500);
    step(&mut b, &mut s, &mut idle);
    assert_eq!(b.in_use("F"), 0, "2.5 s idle: TIMEOUT");
    assert_eq!(b.logged(), [Action::In(Cause::IdleTimeout)]);
    assert_eq!(b.in_use("G"), 1, "G has no TIMEOUT");
}

#[test]
fn dup_group_uses_on_two_sessions_end_on_their_own() {
    let mut b = bench(None, None);
    let (mut s1, mut s2, mut s3) = (remote(1), remote(2), remote(3));
    // Two programs of alice's on pc1, on two connections: one license.
    assert_eq!(b.req(&mut s1, "CHECKOUT D alice pc1 p1"), "OK D p1 0");
    assert_eq!(b.logged(), [Action::Out(OutKind::New)]);
    assert_eq!(b.req(&mut s2, "CHECKOUT D alice pc1 p2"), "OK D p2 0");
    assert_eq!(b.in_use("D"), 1);
    let r = b.req(&mut s3, "CHECKOUT D bob pc2 q1");
    assert!(r.starts_with("DENIED D q1 ALL_IN_USE"), "{r}");
    // The first use's end keeps the license; the last one's checks it in.
    assert_eq!(b.req(&mut s1, "CHECKIN D p1"), "OK D p1");
    assert!(!b.logged().contains(&Action::In(Cause::Checkin)));
    assert_eq!(b.in_use("D"), 1);
    assert_eq!(b.req(&mut s2, "CHECKIN D p2"), "OK D p2");
    assert_eq!(b.logged(), [Action::In(Cause::Checkin)]);
    assert_eq!(b.in_use("D"), 0);

    // A lingering use (s1) and a bound one (s2) of a new instance.
    let mut timers = LoopTimers::with_capacity(START, 0);
    let promise = START + 30_000;
    let r = b.req(&mut s1, "CHECKOUT D alice pc1 p3 linger=30");
    assert_eq!(r, format!("OK D p3 {promise}"));
    b.fx.lingers
        .drain(..)
        .for_each(|(id, at)| timers.arm_linger(id, at));
    assert_eq!(b.req(&mut s2, "CHECKOUT D alice pc1 p4"), "OK D p4 0");
    b.fx.lingers
        .drain(..)
        .for_each(|(id, at)| timers.arm_linger(id, at));
    // Both sessions close: the bound use's end is the last use's, but the
    // promise made to p3 keeps the license until it, with a timer there.
    b.clock.advance(1_000);
    let now = b.now();
    b.fx = Effects::default();
    b.cx.closed(&mut s1, now, &mut b.fx);
    b.cx.closed(&mut s2, now, &mut b.fx);
    assert!(b.logged().is_empty(), "nothing checked in");
    assert_eq!(b.in_use("D"), 1);
    assert_eq!(b.fx.lingers.len(), 1);
    assert_eq!(b.fx.lingers[0].1, promise);
    b.fx.lingers
        .drain(..)
        .for_each(|(id, at)| timers.arm_linger(id, at));
    let r = b.req(&mut s3, "CHECKOUT D bob pc2 q2");
    assert!(r.starts_with("DENIED D q2 ALL_IN_USE"), "{r}");
    // The promise's timer checks it in.
    let mut expire = |b: &mut Bench| {
        let mut due = Vec::new();
        timers.drain_due(&b.cx.engine, b.now(), |_, f| due.push(f));
        b.fx = Effects::default();
        for f in &due {
            let Fired::Released(r) = f else {
                panic!("only lingers are armed: {f:?}");
            };
            b.cx.released(r, crate::metrics::Cause::LingerExpiry, b.now(), &mut b.fx);
        }
        due.len()
    };
    b.clock.advance(28_000);
    assert_eq!(expire(&mut b), 0);
    assert_eq!(b.in_use("D"), 1);
    b.clock.advance(2_000);
    assert_eq!(expire(&mut b), 1);
    assert_eq!(b.logged(), [Action::In(Cause::LingerExpiry)]);
    assert_eq!(b.in_use("D"), 0);
    assert_eq!(b.req(&mut s3, "CHECKOUT D bob pc2 q3"), "OK D q3 0");
}

#[test]
fn checkin_is_for_the_holder_only() {
    let mut b = bench(None, None);
    let (mut s1, mut s2) = (remote(1), remote(2));
    let r = b.req(&mut s1, "CHECKOUT F alice pc1 h1 linger=60");
    assert!(r.starts_with("OK F h1 "), "{r}");
    for n in 1..=2 {
        assert_eq!(
            b.req(&mut s2, "CHECKIN F h1"),
            "ERR NOT_HOLDER the license of F with handle h1 is held by another user or host; only its holder may check it in"
        );
        assert_eq!(s2.not_holder, n);
        assert!(!b.fx.close);
    }
    assert_eq!(b.in_use("F"), 1);
    // The third refusal closes the connection.
    b.req(&mut s2, "CHECKIN F h1");
    assert!(b.fx.close);
    // Naming the holder is the holder's (a client that reconnected).
    let mut s3 = remote(3);
    assert_eq!(
        b.req(&mut s3, "CHECKIN F h1 user=alice host=pc1"),
        "OK F h1"
    );
    assert_eq!(b.logged(), [Action::In(Cause::Checkin)]);
    assert_eq!(
        b.req(&mut s3, "CHECKIN F h1"),
        "ERR NOT_HELD handle h1 holds no license of F"
    );
    assert_eq!(
        b.req(&mut s3, "CHECKIN NOPE h1"),
        r#"ERR NO_SUCH_FEATURE the license file has no feature "NOPE""#
    );
}

#[test]
fn remove_needs_admin_rights_and_checks_in() {
    let mut b = bench(None, None);
    let (mut s1, mut admin) = (remote(1), remote(2));
    b.req(&mut s1, "CHECKOUT G alice pc1 h1 linger=60");
    b.req(&mut s1, "CHECKOUT G bob pc2 h2 linger=60");
    assert_eq!(
        b.req(&mut admin, "REMOVE G alice pc1 pc1"),
        "ERR FORBIDDEN admin requests from 10.0.0.2 need AUTH <token> first"
    );
    assert_eq!(b.in_use("G"), 2);
    assert_eq!(b.req(&mut admin, "AUTH s3cret"), "OK AUTH");
    assert_eq!(b.req(&mut admin, "REMOVE G alice pc1 pc1"), "OK REMOVED 1");
    assert_eq!(b.logged(), [Action::Removing, Action::In(Cause::Remove)]);
    assert_eq!(b.in_use("G"), 1);
    assert_eq!(
        b.req(&mut admin, "REMOVE_HANDLE G 999"),
        "ERR NOT_HELD no license of G has handle 999"
    );
    assert_eq!(
        b.req(&mut admin, "REMOVE NOPE a b c"),
        r#"ERR NO_SUCH_FEATURE the license file has no feature "NOPE""#
    );
}

#[test]
fn auth_failures_take_rights_away_and_close_at_the_third() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    assert_eq!(b.req(&mut s, "AUTH s3cret"), "OK AUTH");
    assert!(s.is_admin());
    assert_eq!(
        b.req(&mut s, "AUTH nope"),
        "ERR AUTH_FAILED wrong admin token"
    );
    assert!(!s.is_admin(), "a failure takes the rights away");
    assert!(!b.fx.close);
    b.req(&mut s, "AUTH nope");
    assert_eq!(
        b.req(&mut s, "AUTH nope"),
        "ERR AUTH_FAILED wrong admin token; 3 failures, closing the connection"
    );
    assert!(b.fx.close);
    let lines = b
        .fx
        .log
        .iter()
        .filter(
            |e| matches!(e, Event::Line { text, .. } if text.contains("AUTH failed from 10.0.0.1")),
        )
        .count();
    assert_eq!(lines, 1, "each failure is logged");
}

#[test]
fn status_is_left_for_the_status_thread() {
    let mut b = bench(None, None);
    let (mut s1, mut s2) = (remote(1), remote(2));
    b.req(&mut s1, "CHECKOUT G alice pc1 h1");
    assert_eq!(b.req(&mut s2, "STATUS G"), "", "the reply comes later");
    let job = b.fx.status.take().expect("a STATUS job");
    assert_eq!((job.conn, job.serial), (s2.key, s2.serial));
    assert!(job.hide_handles, "a remote peer without AUTH");
    assert_eq!(job.info.now_ms, START);
    let line = crate::status_thread::build(job);
    let text = String::from_utf8(line).unwrap();
    let json: serde_json::Value = serde_json::from_str(text.strip_prefix("OK ").unwrap()).unwrap();
    assert_eq!(json["features"][0]["name"], "G");
    assert_eq!(json["features"][0]["in_use"], 1);
    assert_eq!(json["features"][0]["holders"][0]["handle"], "");
    b.req(&mut s2, "AUTH s3cret");
    b.req(&mut s2, "STATUS");
    assert!(!b.fx.status.take().unwrap().hide_handles);
}

#[test]
fn reread_of_a_bad_file_fails_and_changes_nothing() {
    let missing = std::env::temp_dir().join(format!("tally-no-such-{}.lic", std::process::id()));
    let mut b = bench(None, Some(missing.clone()));
    let mut local = Session::new("127.0.0.1:4000".parse().unwrap(), 9, 9, START);
    // The command asks the loop for the reread (which needs every loop).
    assert_eq!(b.req(&mut local, "REREAD"), "");
    assert!(b.fx.reread);
    let e = crate::reread::read_files(&b.cx.shared).unwrap_err();
    assert!(e.contains(&*missing.to_string_lossy()), "{e}");
    let reply = protocol::Reply::RereadFailed(&e).to_string();
    assert!(reply.starts_with("ERR REREAD_FAILED "), "{reply}");
    // A remote peer may not ask at all.
    let mut s = remote(1);
    assert!(b.req(&mut s, "REREAD").starts_with("ERR FORBIDDEN "));
    assert!(!b.fx.reread);
}

#[test]
fn a_reread_keeps_the_instances_and_a_linger_still_expires_on_time() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    assert_eq!(b.req(&mut s, "CHECKOUT F alice pc1 h1"), "OK F h1 0");
    let r = b.req(&mut s, "CHECKOUT G alice pc1 h2 linger=10");
    assert_eq!(r, format!("OK G h2 {}", START + 10_000));
    let mut timers = LoopTimers::with_capacity(START, 0);
    for (id, at) in b.fx.lingers.drain(..) {
        timers.arm_linger(id, at);
    }
    let old_f = s.held.values().next().map(|h| h.id);
    b.clock.advance(4_000);
    // The new file: F has two licenses now; D is gone (nobody holds it).
    let text = "VENDOR V\nINCREMENT F V 1.0 permanent 2\nINCREMENT G V 1.0 permanent 5\n";
    let files = reread::Files {
        licenses: tally_core::license::parse_str("new.lic", text),
        options_path: None,
        options: None,
    };
    let now = b.now();
    let p = reread::prepare(&b.cx, files, now);
    b.fx = Effects::default();
    let (remap, removed) = reread::migrate(&mut b.cx, &p, now, &mut b.fx);
    assert_eq!((remap.len(), removed), (2, 0), "both instances kept");
    let mut out = BytesMut::new();
    reread::report(&p, remap.len(), removed, now, &mut out, &mut b.fx);
    assert_eq!(out, "OK REREAD 2 0\n");
    // What the loop does when it adopts the new generation.
    b.cx.engine = p.engine.clone();
    b.cx.opts = p.opts.clone();
    s.adopt(&remap);
    timers.remap_lingers(|old| remap.get(&old).map(|&(new, _)| new));
    // The session held the bound F (a lingering license is not the
    // connection's); it now holds F's new id.
    assert_eq!(s.held.len(), 1);
    assert!(old_f.is_some_and(|old| s.held.contains_key(&remap[&old].0)));
    assert_eq!((b.in_use("F"), b.in_use("G")), (1, 1));
    // The new pool's second license, and the kept one checks in.
    let mut s2 = remote(2);
    assert_eq!(b.req(&mut s2, "CHECKOUT F bob pc2 h3"), "OK F h3 0");
    assert_eq!(b.req(&mut s, "CHECKIN F h1"), "OK F h1");
    assert_eq!(b.in_use("F"), 1);
    // The lingering G instance expires on its old deadline, from the new
    // engine.
    let mut expire = |b: &mut Bench| {
        let mut due = Vec::new();
        timers.drain_due(&b.cx.engine, b.now(), |_, f| due.push(f));
        due.len()
    };
    b.clock.advance(5_999);
    assert_eq!(expire(&mut b), 0);
    assert_eq!(b.in_use("G"), 1);
    b.clock.advance(1);
    assert_eq!(expire(&mut b), 1, "due at 10 s, as before the reread");
    assert_eq!(b.in_use("G"), 0);
}

#[test]
fn ping_quit_and_down() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    assert_eq!(b.req(&mut s, "PING"), "PONG");
    assert_eq!(b.req(&mut s, ""), "ERR EMPTY_REQUEST empty request line");
    assert_eq!(b.req(&mut s, "QUIT"), "BYE");
    assert!(b.fx.close);
    let mut local = Session::new("127.0.0.1:4000".parse().unwrap(), 9, 9, START);
    assert_eq!(b.req(&mut local, "DOWN"), "OK DOWN");
    assert!(b.fx.shutdown && b.fx.close);
}
