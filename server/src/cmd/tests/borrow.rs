//! Borrowing on a manual clock: `borrow=` on CHECKOUT, its end on the
//! timers, its early return by CHECKIN or BORROW_RETURN.

use super::*;

const HOUR: u64 = 3_600_000;

const BORROWABLE: &str = "\
VENDOR V
INCREMENT B V 1.0 permanent 2 BORROW=24
INCREMENT N V 1.0 permanent 2
";

/// The loop's timer step for the lingers in `b.fx`, with the real cause
/// the loop gives an expiry; returns how many were released.
fn expire(b: &mut Bench, timers: &mut LoopTimers) -> usize {
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
}

#[test]
fn a_borrow_expires_exactly_at_its_end_not_on_disconnect() {
    let mut b = bench_of(BORROWABLE, None, None);
    let mut s = remote(1);
    let end = START + 24 * HOUR;
    assert_eq!(
        b.req(&mut s, "CHECKOUT B alice pc1 h1 borrow=24"),
        format!("OK B h1 {end}")
    );
    assert_eq!(b.logged(), [Action::Out(OutKind::Borrow)]);
    assert!(s.held.is_empty(), "a borrow is not the connection's");
    let mut timers = LoopTimers::with_capacity(START, 0);
    for (id, at) in b.fx.lingers.drain(..) {
        timers.arm_linger(id, at);
    }
    // The connection closes: the borrow stays.
    let now = b.now();
    b.cx.closed(&mut s, now, &mut b.fx);
    assert_eq!(b.in_use("B"), 1);
    b.clock.advance(24 * HOUR - 1);
    assert_eq!(expire(&mut b, &mut timers), 0);
    assert_eq!(b.in_use("B"), 1);
    b.clock.advance(1);
    assert_eq!(expire(&mut b, &mut timers), 1, "due at its end exactly");
    assert_eq!(b.logged(), [Action::In(Cause::BorrowExpiry)]);
    assert_eq!(b.in_use("B"), 0);
    let t = crate::metrics::totals(&b.cx.shared.metrics);
    assert_eq!(t.checkins[crate::metrics::Cause::BorrowExpiry as usize], 1);
}

#[test]
fn borrow_denials_name_the_rule() {
    let opts = "MAX_BORROW_HOURS B 8\nEXCLUDE_BORROW B USER bert\n";
    let mut b = bench_of(BORROWABLE, Some(opts), None);
    let mut s = remote(1);
    assert_eq!(
        b.req(&mut s, "CHECKOUT B alice pc1 h1 borrow=9"),
        "DENIED B h1 BORROW_TOO_LONG -42 Cannot borrow that long. (at most 8 hours)"
    );
    assert_eq!(
        b.req(&mut s, "CHECKOUT B bert pc1 h2 borrow=1"),
        "DENIED B h2 NOT_BORROWABLE -38 User/host on EXCLUDE_BORROW list for feature."
    );
    let r = b.req(&mut s, "CHECKOUT N alice pc1 h3 borrow=1");
    assert!(
        r.starts_with("DENIED N h3 NOT_BORROWABLE -42 Feature cannot be borrowed"),
        "{r}"
    );
    assert_eq!(b.in_use("B") + b.in_use("N"), 0);
    let r = b.req(&mut s, "CHECKOUT B alice pc1 h1 borrow=0");
    assert!(
        r.starts_with("ERR BAD_FIELD borrow=\"0\" is not a whole number of hours"),
        "{r}"
    );
    // An ordinary checkout of B is untouched by the borrow rules.
    assert_eq!(b.req(&mut s, "CHECKOUT B bert pc1 h4"), "OK B h4 0");
}

#[test]
fn a_borrow_is_returned_early_by_its_checkin_or_the_admin() {
    let mut b = bench_of(BORROWABLE, None, None);
    let mut s = remote(1);
    b.req(&mut s, "CHECKOUT B alice pc1 h1 borrow=1");
    b.req(&mut s, "CHECKOUT B alice pc1 h2 borrow=1");
    let now = b.now();
    b.cx.closed(&mut s, now, &mut b.fx);
    // Back on the network: a new connection names the holder.
    let mut back = remote(2);
    assert_eq!(
        b.req(&mut back, "CHECKIN B h1 user=alice host=pc1"),
        "OK B h1"
    );
    assert_eq!(b.logged(), [Action::In(Cause::BorrowReturn)]);
    assert_eq!(b.in_use("B"), 1);
    // The admin ends the other: BORROW_RETURN is an admin request.
    let mut admin = remote(3);
    let r = b.req(&mut admin, "BORROW_RETURN B alice pc1");
    assert!(r.starts_with("ERR FORBIDDEN"), "{r}");
    assert_eq!(b.req(&mut admin, "AUTH s3cret"), "OK AUTH");
    assert_eq!(
        b.req(&mut admin, "BORROW_RETURN B bob pc1"),
        "OK RETURNED 0"
    );
    assert_eq!(
        b.req(&mut admin, "BORROW_RETURN B alice pc1"),
        "OK RETURNED 1"
    );
    assert_eq!(b.logged(), [Action::In(Cause::BorrowReturn)]);
    assert_eq!(b.in_use("B"), 0);
    let t = crate::metrics::totals(&b.cx.shared.metrics);
    assert_eq!(t.checkins[crate::metrics::Cause::BorrowReturn as usize], 2);
    // It returns borrows only: an ordinary checkout stays.
    let mut s3 = remote(4);
    assert_eq!(b.req(&mut s3, "CHECKOUT B alice pc1 h3"), "OK B h3 0");
    assert_eq!(
        b.req(&mut admin, "BORROW_RETURN B alice pc1"),
        "OK RETURNED 0"
    );
    assert_eq!(b.in_use("B"), 1);
}

#[test]
fn status_shows_the_borrow_and_its_end() {
    let mut b = bench_of(BORROWABLE, None, None);
    let mut s = remote(1);
    b.req(&mut s, "CHECKOUT B alice pc1 h1 borrow=2");
    b.req(&mut s, "CHECKOUT B alice pc1 h2 linger=60");
    let snap = b.cx.engine.snapshot(b.now());
    let info = crate::status::ServerInfo {
        name: "tallyd".into(),
        version: "0".into(),
        host: "lic1".into(),
        port: 27000,
        license_file: "test.lic".into(),
        vendors: vec!["V".into()],
        started_ms: START,
        now_ms: b.now(),
        connections: 0,
        log_dropped: 0,
    };
    let status = crate::status::Status::from_snapshot(&snap, info);
    let holders = &status.features[0].holders;
    assert_eq!(holders[0].borrowed_until_ms, Some(START + 2 * HOUR));
    assert_eq!(holders[0].linger_ms, 2 * HOUR);
    assert_eq!(holders[1].borrowed_until_ms, None);
    let json = serde_json::to_string(&holders[1]).unwrap();
    assert!(!json.contains("borrowed"), "absent unless borrowed: {json}");
}

#[test]
fn a_reread_keeps_a_borrow_a_borrow_until_its_end() {
    let mut b = bench_of(BORROWABLE, None, None);
    let mut s = remote(1);
    b.req(&mut s, "CHECKOUT B alice pc1 h1 borrow=1");
    let mut timers = LoopTimers::with_capacity(START, 0);
    for (id, at) in b.fx.lingers.drain(..) {
        timers.arm_linger(id, at);
    }
    // The new file lends no more: the borrow out stays one.
    let text = "VENDOR V\nINCREMENT B V 1.0 permanent 2\n";
    let files = super::reread::Files {
        licenses: tally_core::license::parse_str("new.lic", text),
        options_path: None,
        options: None,
    };
    let now = b.now();
    let p = super::reread::prepare(&b.cx, files, now);
    b.fx = Effects::default();
    let (remap, removed) = super::reread::migrate(&mut b.cx, &p, now, &mut b.fx);
    assert_eq!((remap.len(), removed), (1, 0));
    b.cx.engine = p.engine.clone();
    b.cx.opts = p.opts.clone();
    timers.remap_lingers(|old| remap.get(&old).map(|&(new, _)| new));
    let (new_id, _) = remap.values().next().copied().expect("moved");
    assert!(b.cx.engine.is_borrowed(new_id));
    let r = b.req(&mut s, "CHECKOUT B alice pc1 h1");
    assert!(
        r.starts_with("DENIED B h1 NOT_BORROWABLE -42 The handle's license is borrowed"),
        "{r}"
    );
    b.clock.advance(HOUR);
    assert_eq!(expire(&mut b, &mut timers), 1);
    assert_eq!(b.logged(), [Action::In(Cause::BorrowExpiry)]);
    assert_eq!(b.in_use("B"), 0);
}

#[test]
fn a_borrow_with_wait_queues_and_is_served_as_a_borrow() {
    let mut b = bench_of(BORROWABLE, None, None);
    let (mut s1, mut s2) = (remote(1), remote(2));
    assert_eq!(b.req(&mut s1, "CHECKOUT B alice pc1 h1"), "OK B h1 0");
    assert_eq!(b.req(&mut s1, "CHECKOUT B alice pc1 h2"), "OK B h2 0");
    assert_eq!(b.req(&mut s2, "CHECKOUT B bob pc2 b1 borrow=3 wait=5"), "");
    assert!(s2.waiting.is_some());
    assert_eq!(b.req(&mut s1, "CHECKIN B h1"), "OK B h1");
    let now = b.now();
    let [(feature, w)] = &b.cx.shared.queues.to_try_on(0, now)[..] else {
        panic!("one waiter to try");
    };
    let mut out = BytesMut::new();
    b.fx = Effects::default();
    assert!(super::answer_waiter(
        &mut b.cx, &mut s2, &w.line, now, false, &mut out, &mut b.fx
    ));
    assert_eq!(out, format!("OK B b1 {}\n", now + 3 * HOUR).as_bytes());
    assert!(b.cx.shared.queues.remove(feature, w.seq).is_some());
    assert_eq!(b.logged(), [Action::Out(OutKind::Borrow)]);
    let snap = b.cx.engine.snapshot(now);
    let h = &snap.features[0].pools[0].holders;
    assert!(h.iter().any(|h| h.handle == "b1" && h.borrowed), "{h:?}");
}
