//! STATUS for a server of many holders, against a real tallyd over TCP:
//! the summary (`holders_limit=0`) and holder paging (`holders_limit=`,
//! `holders_after=`) list every holder exactly once, also while holders
//! come and go; requests without them answer as before.

mod common;

use std::collections::{HashMap, HashSet};

use common::{Client, Tallyd};
use serde_json::Value;

/// Holders of the big feature.
const HELD: usize = 50_000;

fn license() -> String {
    format!(
        "VENDOR CITRIX\n\
         INCREMENT BIG CITRIX 1.0 permanent {}\n\
         INCREMENT TWO CITRIX 1.0 permanent 3\n\
         INCREMENT TWO CITRIX 2.0 permanent 4\n\
         FEATURE IDLE CITRIX 1.0 permanent 5\n",
        HELD + 1_000
    )
}

/// Checks out `n` lingering licenses of `feature` (handles `{prefix}{i}`),
/// pipelined in batches of 1,000.
fn hold(c: &mut Client, feature: &str, prefix: &str, range: std::ops::Range<usize>) {
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(1_000) {
        let mut batch = String::new();
        for i in chunk {
            batch.push_str(&format!(
                "CHECKOUT {feature} u{} h{} {prefix}{i} linger=3600\n",
                i % 7,
                i % 11
            ));
        }
        c.send(batch.as_bytes());
        for i in chunk {
            let r = c.read_line().expect("a reply");
            assert!(r.starts_with("OK "), "checkout {prefix}{i}: {r}");
        }
    }
}

fn json(c: &mut Client, request: &str) -> Value {
    let r = c.req(request);
    let body = r
        .strip_prefix("OK ")
        .unwrap_or_else(|| panic!("{request}: {r}"));
    serde_json::from_str(body).expect("JSON")
}

fn handles(entry: &Value) -> Vec<String> {
    entry["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| h["handle"].as_str().expect("handle").to_string())
        .collect()
}

/// Pages through entry `index` of `feature` with `limit` holders a page;
/// calls `between(page_number)` after each page. Returns the handles in
/// the order listed, and the number of pages.
fn page_all(
    c: &mut Client,
    feature: &str,
    index: usize,
    limit: usize,
    mut between: impl FnMut(usize),
) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let request = match &after {
            None => format!("STATUS {feature} from={index} limit=1 holders_limit={limit}"),
            Some(a) => format!(
                "STATUS {feature} from={index} limit=1 holders_limit={limit} holders_after={a}"
            ),
        };
        let s = json(c, &request);
        assert_eq!(s["holders_limit"], limit, "{request}");
        let entries = s["features"].as_array().expect("features");
        assert_eq!(entries.len(), 1, "{request}");
        let page = handles(&entries[0]);
        assert!(page.len() <= limit, "{request}: {} holders", page.len());
        pages += 1;
        all.extend(page);
        between(pages);
        match entries[0].get("holders_next").and_then(Value::as_str) {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 10_000, "paging does not end");
    }
    (all, pages)
}

#[test]
fn paging_lists_every_holder_exactly_once() {
    let t = Tallyd::start(&license(), &[]);
    let mut c = t.connect();
    hold(&mut c, "BIG", "b", 0..HELD);
    hold(&mut c, "TWO", "t", 0..5);

    // The old request: every holder in one entry, no paging fields.
    let full = json(&mut c, "STATUS BIG");
    assert!(full.get("holders_limit").is_none());
    let entry = &full["features"][0];
    assert!(entry.get("holders_next").is_none());
    let expected: HashSet<String> = handles(entry).into_iter().collect();
    assert_eq!(expected.len(), HELD);
    assert_eq!(entry["in_use"], HELD);

    let (listed, pages) = page_all(&mut c, "BIG", 0, 7_000, |_| {});
    assert_eq!(pages, HELD.div_ceil(7_000));
    let mut seen = HashSet::new();
    for h in &listed {
        assert!(seen.insert(h.clone()), "{h} listed twice");
    }
    assert_eq!(seen, expected);

    // A page big enough for all is the old entry, holder for holder.
    let one = json(&mut c, &format!("STATUS BIG holders_limit={HELD}"));
    assert_eq!(one["features"][0]["holders"], entry["holders"]);
    assert!(one["features"][0].get("holders_next").is_none());

    // Several pools of one feature page separately, by from=.
    let (first, _) = page_all(&mut c, "TWO", 0, 2, |_| {});
    let (second, _) = page_all(&mut c, "TWO", 1, 2, |_| {});
    let both: HashSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(first.len() + second.len(), 5);
    assert_eq!(both.len(), 5);
}

#[test]
fn holders_held_throughout_are_listed_once_while_others_come_and_go() {
    let t = Tallyd::start(&license(), &[]);
    let mut c = t.connect();
    hold(&mut c, "BIG", "b", 0..HELD);
    let mut churn = t.connect();
    let mut gone = HashSet::new();
    let mut listed: Vec<String> = Vec::new();
    let mut next_new = HELD;
    let mut after: Option<String> = None;
    let mut pages = 0;
    // Page through, 5,000 a page; after each page check in 300 of the
    // holders listed already and 300 not listed yet, and check out 300 new
    // ones. An offset-paged listing would skip holders here.
    loop {
        let request = match &after {
            None => "STATUS BIG holders_limit=5000".to_string(),
            Some(a) => format!("STATUS BIG holders_limit=5000 holders_after={a}"),
        };
        let s = json(&mut c, &request);
        listed.extend(handles(&s["features"][0]));
        pages += 1;
        let now = handles(&json(&mut churn, "STATUS BIG")["features"][0]);
        let seen: HashSet<&String> = listed.iter().collect();
        let (before, later): (Vec<&String>, Vec<&String>) =
            now.iter().partition(|h| seen.contains(h));
        let mut batch = String::new();
        let mut n = 0;
        for h in before.iter().take(300).chain(later.iter().take(300)) {
            batch.push_str(&format!("CHECKIN BIG {h}\n"));
            gone.insert((*h).clone());
            n += 1;
        }
        churn.send(batch.as_bytes());
        for _ in 0..n {
            let r = churn.read_line().expect("reply");
            assert!(r.starts_with("OK "), "{r}");
        }
        hold(&mut churn, "BIG", "n", next_new..next_new + 300);
        next_new += 300;
        match s["features"][0].get("holders_next").and_then(Value::as_str) {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
        assert!(pages < 1_000, "paging does not end");
    }
    assert!(pages >= HELD / 5_000, "{pages} pages");
    let mut count: HashMap<&str, usize> = HashMap::new();
    for h in &listed {
        *count.entry(h.as_str()).or_default() += 1;
    }
    for (h, n) in &count {
        assert_eq!(*n, 1, "{h} listed {n} times");
    }
    // Every holder held from before the first page to after the last is
    // listed.
    for i in 0..HELD {
        let h = format!("b{i}");
        if !gone.contains(&h) {
            assert!(
                count.contains_key(h.as_str()),
                "{h} held throughout, never listed"
            );
        }
    }
}

#[test]
fn the_summary_has_the_counts_and_no_holders() {
    let t = Tallyd::start(&license(), &[]);
    let mut c = t.connect();
    hold(&mut c, "BIG", "b", 0..2_000);
    hold(&mut c, "TWO", "t", 0..5);
    let full = json(&mut c, "STATUS");
    let summary = json(&mut c, "STATUS holders_limit=0");
    assert_eq!(summary["holders_limit"], 0);
    let a = full["features"].as_array().expect("features");
    let b = summary["features"].as_array().expect("features");
    assert_eq!(a.len(), b.len());
    for (f, s) in a.iter().zip(b) {
        assert_eq!(s["holders"], Value::Array(vec![]));
        // Every field but the holders agrees with the full reply.
        for key in [
            "name",
            "vendor",
            "version",
            "kind",
            "line",
            "expiry",
            "expired",
            "startup",
            "total",
            "in_use",
            "overdraft",
            "overdraft_limit",
            "over_limit",
            "dup_group",
        ] {
            assert_eq!(s[key], f[key], "{key} of {} line {}", f["name"], f["line"]);
        }
        // A pool with holders says where its holders start.
        let held = f["in_use"].as_u64().expect("in_use") > 0;
        assert_eq!(s.get("holders_next").is_some(), held, "{s}");
        if held {
            assert_eq!(s["holders_next"], "0.0");
        }
    }
    // One feature, paged by entries as before.
    let two = json(&mut c, "STATUS TWO from=1 holders_limit=0");
    assert_eq!(two["features"].as_array().map(Vec::len), Some(1));
    assert_eq!(two["from"], 1);
    assert_eq!(two["features"][0]["version"], "2.0");
}

#[test]
fn bad_holder_paging_fields_are_refused() {
    let t = Tallyd::start(&license(), &[]);
    let mut c = t.connect();
    for bad in [
        "STATUS holders_after=0.0",
        "STATUS holders_limit=x",
        "STATUS holders_limit=10 holders_after=17",
        "STATUS holders_limit=10 holders_after=a.b",
        "STATUS holders_limit=1 holders_limit=2",
    ] {
        let r = c.req(bad);
        assert!(r.starts_with("ERR BAD_FIELD"), "{bad}: {r}");
    }
    // The connection still answers.
    assert_eq!(c.req("PING"), "PONG");
}
