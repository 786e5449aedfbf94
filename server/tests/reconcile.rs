//! Black-box tests of PICTURE and RECONCILE against the real `tallyd`:
//! seed 001's question (50 licenses, 45 in use, the server down, 10 more
//! sessions admitted offline, the server back), idempotence by admission id
//! across a kill -9 and a restart, and malformed RECONCILE lines.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{eventually, Scratch, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT CITRIX CITRIX 2038.0101 permanent 5000 VENDOR_STRING=\";LT=SYS;GP=96;SA=0;DUP_GROUP=HV\"
INCREMENT MPS_ENT_CCU CITRIX 2007.0726 permanent 50 VENDOR_STRING=\";LT=Retail;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0\"
";

const GENEROUS: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// (in_use, overdraft, over_limit) of the MPS_ENT_CCU pool in STATUS.
fn usage(t: &Tallyd) -> (u64, u64, u64) {
    let s = t.connect().status();
    let f = s["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "MPS_ENT_CCU")
        .cloned()
        .unwrap();
    let n = |k: &str| f[k].as_u64().unwrap_or_else(|| panic!("{k} in {f}"));
    (n("in_use"), n("overdraft"), n("over_limit"))
}

/// Seed 001: 45 sessions online, then 10 admitted offline during an outage,
/// reconciled: 5 beyond the count.
fn seed_001(t: &Tallyd, start: u64) -> Vec<String> {
    let mut online = t.connect();
    for i in 0..45 {
        let r = online.req(&format!("CHECKOUT MPS_ENT_CCU u{i} ps1 s{i} linger=3600"));
        assert!(r.starts_with("OK MPS_ENT_CCU "), "{r}");
    }
    let mut c = t.connect();
    (45..55)
        .map(|i| {
            c.req(&format!(
                "RECONCILE MPS_ENT_CCU u{i} ps2 s{i} start={} id=ps2-{i} linger=3600",
                start + i
            ))
        })
        .collect()
}

#[test]
fn seed_001_reconciled_sessions_beyond_the_count_are_overdraft_and_counted_once() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let start = now_ms() - 3_600_000;
    let replies = seed_001(&t, start);
    let kinds: Vec<&str> = replies
        .iter()
        .map(|r| r.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(kinds[..5], ["RECONCILED"; 5], "{replies:?}");
    assert_eq!(kinds[5..], ["OVERDRAFT"; 5], "{replies:?}");
    assert!(replies[9].ends_with(" 1"), "{}", replies[9]);
    assert_eq!(usage(&t), (55, 5, 5));
    // The debug log: one OVERDRAFT line per reconciled excess.
    assert!(eventually(GENEROUS, || {
        t.log_lines()
            .iter()
            .filter(|l| l.contains("OVERDRAFT: \"MPS_ENT_CCU\""))
            .count()
            == 5
    }));
    assert!(t
        .log_lines()
        .iter()
        .any(|l| l.ends_with("(CITRIX) OVERDRAFT: \"MPS_ENT_CCU\" u54@ps2 [s54]  (reconciled offline use, 5 over 50)")),
        "{:?}",
        t.log_lines()
    );
    // Nobody is dropped, nobody new gets in.
    let mut c = t.connect();
    let r = c.req("CHECKOUT MPS_ENT_CCU late ps3 x");
    assert!(r.starts_with("DENIED MPS_ENT_CCU x ALL_IN_USE"), "{r}");
    // A retry after a lost reply counts nothing twice.
    let again = format!(
        "RECONCILE MPS_ENT_CCU u54 ps2 s54 start={} id=ps2-54",
        start + 54
    );
    assert_eq!(c.req(&again), "OK DUPLICATE MPS_ENT_CCU s54");
    assert_eq!(usage(&t), (55, 5, 5));
    // The reconciled instance keeps its original start.
    let s = c.status();
    let since = s["features"][1]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["handle"] == "s54")
        .map(|h| h["since_ms"].as_u64().unwrap())
        .unwrap();
    assert_eq!(since, start + 54);
    // PICTURE shows the use beyond the total, and the client reads it.
    let picture = c.req("PICTURE");
    let p = tally_client::picture::Picture::parse_reply(&picture).expect("the client reads it");
    let pool = p
        .pools
        .iter()
        .find(|p| p.terms.feature == "MPS_ENT_CCU")
        .unwrap();
    assert_eq!((pool.terms.total, pool.in_use), (Some(50), 55));
    assert_eq!(pool.terms.gp_hours, Some(720));
    drop(c);

    // kill -9 (sync durability: every reply was durable before it went).
    t.kill9();
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    assert_eq!(usage(&t2), (55, 5, 5), "reconciled instances restored");
    let mut c2 = t2.connect();
    assert_eq!(
        c2.req(&again),
        "OK DUPLICATE MPS_ENT_CCU s54",
        "ids survive"
    );
    let first = format!(
        "RECONCILE MPS_ENT_CCU u45 ps2 s45 start={} id=ps2-45",
        start + 45
    );
    assert_eq!(c2.req(&first), "OK DUPLICATE MPS_ENT_CCU s45");
    assert_eq!(usage(&t2), (55, 5, 5));
    assert!(eventually(GENEROUS, || t2
        .log_lines()
        .iter()
        .any(|l| l.contains("journal: recovered")
            && l.contains("restored 55,")
            && l.contains("10 reconciled admission id(s) remembered"))));
    // The picture's stamp is the same license set's.
    let p2 = tally_client::picture::Picture::parse_reply(&c2.req("PICTURE")).unwrap();
    assert_eq!(p2.stamp, p.stamp);
    // Six sessions end: under the count, a new checkout gets in.
    for i in 0..6 {
        let r = c2.req(&format!("CHECKOUT MPS_ENT_CCU u{i} ps1 s{i} linger=0.001"));
        assert!(r.starts_with("OK "), "{r}");
    }
    assert!(eventually(GENEROUS, || usage(&t2).0 == 49));
    assert_eq!(usage(&t2), (49, 0, 0));
    let r = c2.req("CHECKOUT MPS_ENT_CCU late ps3 x");
    assert_eq!(r, "OK MPS_ENT_CCU x 0");
}

#[test]
fn the_same_id_for_another_session_is_refused_not_a_duplicate() {
    let state = Scratch::new("state");
    let t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let start = now_ms() - 1000;
    let mut c = t.connect();
    let line = format!("RECONCILE MPS_ENT_CCU ann pc1 a start={start} id=c-1 linger=600");
    assert!(c.req(&line).starts_with("OK RECONCILED MPS_ENT_CCU a "));
    let other = format!("RECONCILE MPS_ENT_CCU bob pc2 b start={start} id=c-1 linger=600");
    assert_eq!(
        c.req(&other),
        "ERR BAD_FIELD id=c-1 was reconciled for MPS_ENT_CCU a"
    );
    let feature = format!("RECONCILE CITRIX ann pc1 a start={start} id=c-1");
    assert_eq!(
        c.req(&feature),
        "ERR BAD_FIELD id=c-1 was reconciled for MPS_ENT_CCU a"
    );
    assert_eq!(c.in_use("MPS_ENT_CCU"), 1, "nothing counted");
    assert_eq!(c.in_use("CITRIX"), 0, "nothing counted");
    assert!(eventually(GENEROUS, || {
        t.log_lines().iter().any(|l| l.contains(
        "RECONCILE refused: id=c-1 was reconciled for \"MPS_ENT_CCU\" [a], not \"MPS_ENT_CCU\" bob@pc2 [b]"
    ))
    }));
    // The same id retried is still a duplicate, and after a restart (the
    // ids from the journal) the mismatch is still told.
    assert_eq!(c.req(&line), "OK DUPLICATE MPS_ENT_CCU a");
    assert_eq!(c.req("DOWN"), "OK DOWN");
    drop(t);
    let t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let mut c = t.connect();
    assert_eq!(
        c.req(&other),
        "ERR BAD_FIELD id=c-1 was reconciled for MPS_ENT_CCU a"
    );
    assert_eq!(c.in_use("MPS_ENT_CCU"), 1);
}

#[test]
fn a_clean_restart_and_a_second_restart_keep_the_ids_too() {
    let state = Scratch::new("state");
    let t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let start = now_ms() - 1000;
    let mut c = t.connect();
    let line = format!("RECONCILE MPS_ENT_CCU ann pc1 a start={start} id=c-1 linger=600");
    assert!(c.req(&line).starts_with("OK RECONCILED MPS_ENT_CCU a "));
    assert_eq!(c.req("DOWN"), "OK DOWN");
    drop(t);
    for _ in 0..2 {
        let t = Tallyd::start_with_state(LICENSE, &[], &state.0);
        let mut c = t.connect();
        assert_eq!(c.req(&line), "OK DUPLICATE MPS_ENT_CCU a");
        assert_eq!(c.in_use("MPS_ENT_CCU"), 1);
    }
}

#[test]
fn cut_off_and_garbage_reconciles_are_clear_errors() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    let full = "RECONCILE MPS_ENT_CCU ann pc1 a start=1700000000000 id=c-1 linger=600";
    // Every cut of the line is refused with an ERR (or, cut inside a
    // value, a shorter value that still parses: never a panic or silence).
    for end in 1..full.len() {
        let r = c.req(&full[..end]);
        assert!(
            r.starts_with("ERR ") || r.starts_with("OK ") || r.starts_with("DENIED "),
            "{:?} -> {r:?}",
            &full[..end]
        );
        if end < full.find(" id=").unwrap() + 4 {
            assert!(r.starts_with("ERR "), "{:?} -> {r:?}", &full[..end]);
        }
    }
    for (line, code) in [
        ("RECONCILE", "ERR MISSING_FIELD "),
        (
            "RECONCILE MPS_ENT_CCU ann pc1 a start=-5 id=x",
            "ERR BAD_FIELD ",
        ),
        (
            "RECONCILE MPS_ENT_CCU ann pc1 a start=1 id=x linger=abc",
            "ERR BAD_FIELD ",
        ),
        (
            "RECONCILE MPS_ENT_CCU ann pc1 a start=1 id=x count=many",
            "ERR BAD_FIELD ",
        ),
        (
            "RECONCILE MPS_ENT_CCU ann pc1 a start=1 id=x \u{1}",
            "ERR BAD_FIELD ",
        ),
    ] {
        let r = c.req(line);
        assert!(r.starts_with(code), "{line:?} -> {r}");
    }
    c.send(b"RECONCILE MPS_ENT_CCU ann pc1 a start=1 id=\xff\n");
    let r = c.read_line().unwrap();
    assert!(r.starts_with("ERR BAD_UTF8 "), "{r}");
    // The connection still serves.
    assert_eq!(c.req("PING"), "PONG");
}
