//! PICTURE and RECONCILE on a manual clock (the bench of `cmd/tests.rs`:
//! F has 1 license, G has 5, D has 1 under DUP_GROUP=UH).

use super::*;
use crate::picture::Picture;

/// The PICTURE reply the status thread builds for the job left in `fx`.
fn picture(b: &mut Bench, s: &mut Session) -> Picture {
    assert_eq!(b.req(s, "PICTURE"), "", "built off the loop");
    let job = b.fx.status.take().expect("a job for the status thread");
    assert!(job.picture);
    let line = String::from_utf8(crate::status_thread::build(job)).unwrap();
    assert_eq!(line.matches('\n').count(), 1, "one line");
    serde_json::from_str(line.trim_end().strip_prefix("OK ").unwrap()).unwrap()
}

/// The free-form debug-log lines left in the effects.
fn lines(b: &Bench) -> Vec<String> {
    b.fx.log
        .iter()
        .filter_map(|e| match e {
            Event::Line { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn picture_lists_every_pool_with_its_terms_and_use() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    b.req(&mut s, "CHECKOUT G alice pc1 h1 count=2");
    let p = picture(&mut b, &mut s);
    assert_eq!((p.server.as_str(), p.port), ("lic1", 27000));
    let pools: Vec<_> = p
        .pools
        .iter()
        .map(|p| (p.terms.feature.as_str(), p.terms.total, p.in_use))
        .collect();
    assert_eq!(
        pools,
        [("F", Some(1), 0), ("G", Some(5), 2), ("D", Some(1), 0)]
    );
    let g = &p.pools[1].terms;
    assert_eq!(
        (g.expiry.as_str(), g.expiry_ms, g.gp_hours, g.overdraft),
        ("permanent", None, None, 0)
    );
    // The stamp is the terms', not the usage's.
    b.req(&mut s, "CHECKIN G h1");
    assert_eq!(picture(&mut b, &mut s).stamp, p.stamp);
}

#[test]
fn the_stamp_changes_on_a_reread_of_a_changed_file_only() {
    let path = std::env::temp_dir().join(format!("tally-picture-{}.lic", std::process::id()));
    let mut b = bench(None, Some(path.clone()));
    let mut s = remote(1);
    let before = picture(&mut b, &mut s).stamp;
    let stamp_after_reread = |b: &Bench, text: &str| {
        std::fs::write(&path, text).unwrap();
        let files = crate::reread::read_files(&b.cx.shared).unwrap();
        let p = reread::prepare(&b.cx, files, b.now());
        Picture::of(&p.engine, "lic1", 27000, 0).stamp
    };
    // The same terms, rewritten with comments: the same stamp.
    let same = format!("# reissued\n{LICENSE}# end\n");
    assert_eq!(stamp_after_reread(&b, &same), before);
    let more = LICENSE.replace("permanent 5", "permanent 6");
    let changed = stamp_after_reread(&b, &more);
    assert_ne!(changed, before);
    // And stable for that file.
    assert_eq!(stamp_after_reread(&b, &more), changed);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn reconcile_counts_overdraft_and_blocks_new_checkouts_until_under() {
    let mut b = bench(None, None);
    let (mut s1, mut s2) = (remote(1), remote(2));
    assert_eq!(b.req(&mut s1, "CHECKOUT F alice pc1 h1"), "OK F h1 0");
    // A session admitted offline 10 minutes ago, reported now: beyond the
    // count of 1, admitted as overdraft.
    let start = START - 600_000;
    let r = b.req(
        &mut s2,
        &format!("RECONCILE F bob pc2 h2 start={start} id=c1-1 linger=60"),
    );
    assert_eq!(r, format!("OK OVERDRAFT F h2 {} 1", START + 60_000));
    assert_eq!(b.logged(), [Action::OutOverdraft(OutKind::Reconciled)]);
    assert_eq!(
        lines(&b),
        [r#"OVERDRAFT: "F" bob@pc2 [h2]  (reconciled offline use, 1 over 1)"#]
    );
    assert_eq!(b.fx.lingers, [(b.fx.lingers[0].0, START + 60_000)]);
    assert_eq!(b.in_use("F"), 2);
    let snap = b.cx.engine.snapshot(b.now());
    let pool = &snap.features[0].pools[0];
    assert_eq!(pool.overdraft, 1);
    let h2 = pool.holders.iter().find(|h| h.handle == "h2").unwrap();
    assert_eq!(h2.since_ms, start, "since the offline admission");
    // The same id again: nothing counted.
    let again = format!("RECONCILE F bob pc2 h2 start={start} id=c1-1 linger=60");
    assert_eq!(b.req(&mut s2, &again), "OK DUPLICATE F h2");
    assert!(b.fx.log.is_empty());
    assert_eq!(b.in_use("F"), 2);
    // The reporting connection closes: the session lingers on.
    let mut fx = Effects::default();
    b.cx.closed(&mut s2, b.now(), &mut fx);
    assert_eq!(b.in_use("F"), 2);
    // New checkouts are denied while over the count.
    let mut s3 = remote(3);
    let denied = b.req(&mut s3, "CHECKOUT F carl pc3 h3");
    assert!(denied.starts_with("DENIED F h3 ALL_IN_USE"), "{denied}");
    // One back: at the count, still full.
    assert_eq!(b.req(&mut s1, "CHECKIN F h1"), "OK F h1");
    assert!(b
        .req(&mut s3, "CHECKOUT F carl pc3 h3")
        .starts_with("DENIED"));
    // The reconciled one returns (a renewal with linger 1 s, expired):
    // under the count, admitted again.
    let mut s4 = remote(4);
    let r = b.req(&mut s4, "CHECKOUT F bob pc2 h2 linger=1");
    assert_eq!(
        r,
        format!("OK F h2 {}", START + 1000),
        "renewed, not denied"
    );
    b.clock.advance(1000);
    let fid = b.cx.engine.feature_id("F").unwrap();
    let names = tally_core::engine::Names {
        feature: "F",
        user: "bob",
        host: "pc2",
        display: "",
        handle: "h2",
    };
    let id = b.cx.engine.find(fid, &names).unwrap();
    assert!(matches!(
        b.cx.engine.expire(id, b.now()),
        tally_core::engine::Expired::Released(_)
    ));
    assert_eq!(b.req(&mut s3, "CHECKOUT F carl pc3 h3"), "OK F h3 0");
}

#[test]
fn reconcile_under_the_count_and_its_defaults() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    let r = b.req(
        &mut s,
        &format!("RECONCILE G bob pc2 h2 start={START} id=c1-2 count=2"),
    );
    assert_eq!(
        r,
        format!(
            "OK RECONCILED G h2 {}",
            START + protocol::RECONCILE_DEFAULT_LINGER_MS
        )
    );
    assert_eq!(b.logged(), [Action::Out(OutKind::Reconciled)]);
    assert!(lines(&b).is_empty(), "no overdraft line");
    assert_eq!(b.in_use("G"), 2);
    // A start in the future is clamped to now.
    let later = START + 5_000;
    let r = b.req(
        &mut s,
        &format!("RECONCILE G bob pc2 h3 start={later} id=c1-3 linger=5"),
    );
    assert_eq!(r, format!("OK RECONCILED G h3 {}", START + 5_000));
    let snap = b.cx.engine.snapshot(b.now());
    let h3 = snap.features[1].pools[0]
        .holders
        .iter()
        .find(|h| h.handle == "h3")
        .unwrap();
    assert_eq!(h3.since_ms, START);
    // A handle already out (the client checked it out again online):
    // nothing counted twice, its deadline kept.
    let r = b.req(&mut s, "CHECKOUT G bob pc2 h4 linger=30");
    assert_eq!(r, format!("OK G h4 {}", START + 30_000));
    let r = b.req(
        &mut s,
        &format!("RECONCILE G bob pc2 h4 start={START} id=c1-4 linger=5"),
    );
    assert_eq!(r, format!("OK RECONCILED G h4 {}", START + 30_000));
    assert!(b.logged().is_empty());
    assert_eq!(b.in_use("G"), 4);
    assert_eq!(b.cx.shared.reconciled.len(), 3);
}

#[test]
fn a_denied_reconcile_counts_nothing_and_is_not_remembered() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    let line = format!("RECONCILE NOPE bob pc2 h2 start={START} id=c1-9");
    let r = b.req(&mut s, &line);
    assert!(r.starts_with("DENIED NOPE h2 NO_SUCH_FEATURE -5"), "{r}");
    assert_eq!(b.cx.shared.reconciled.len(), 0);
    // A holder's handle under another user: NOT_HOLDER, not remembered.
    b.req(&mut s, "CHECKOUT G alice pc1 hx linger=60");
    let r = b.req(
        &mut s,
        &format!("RECONCILE G bob pc2 hx start={START} id=c1-10"),
    );
    assert!(r.starts_with("DENIED G hx NOT_HOLDER"), "{r}");
    assert_eq!(b.cx.shared.reconciled.len(), 0);
    assert_eq!(b.in_use("G"), 1);
}

#[test]
fn malformed_reconciles_are_clear_errors() {
    let mut b = bench(None, None);
    let mut s = remote(1);
    for (line, want) in [
        (
            "RECONCILE F bob pc2",
            "ERR MISSING_FIELD missing field 5 (handle)",
        ),
        (
            "RECONCILE F bob pc2 h2",
            "ERR MISSING_FIELD RECONCILE needs start= (when the session was admitted, Unix ms)",
        ),
        (
            "RECONCILE F bob pc2 h2 start=1",
            "ERR MISSING_FIELD RECONCILE needs id= (the client's admission id)",
        ),
        (
            "RECONCILE F bob pc2 h2 start=yesterday id=x",
            "ERR BAD_FIELD start=\"yesterday\" is not a time in Unix milliseconds",
        ),
        (
            "RECONCILE F bob pc2 h2 start=1 id=x linger=0",
            "ERR BAD_FIELD linger=0: a reconciled session lingers (at least 0.001 s)",
        ),
        (
            "RECONCILE F bob pc2 h2 start=1 id=x wait=5",
            "ERR BAD_FIELD unknown option \"wait\" (expected start=, id=, count=, version=, linger=, display=)",
        ),
        (
            "RECONCILE F bob pc2 h2 start=1 id=x id=y",
            "ERR BAD_FIELD option id= given twice",
        ),
        (
            "RECONCILE F bob pc2 h2 start=1 id=x count=0",
            "ERR BAD_FIELD count=0 is out of range: the number of licenses must be 1..=1000000",
        ),
        (
            "RECONCILE F bob pc2 h2 start=1 id=x extra",
            "ERR BAD_FIELD unexpected field \"extra\" (options are key=value: start=, id=, count=, version=, linger=, display=)",
        ),
    ] {
        assert_eq!(b.req(&mut s, line), want, "{line}");
    }
    assert_eq!(b.in_use("F"), 0);
    assert_eq!(b.cx.shared.reconciled.len(), 0);
}
