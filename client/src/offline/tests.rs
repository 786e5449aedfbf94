use std::fs;

use tally_core::clock::{Clock, ManualClock};

use super::*;
use crate::grace::MS_PER_HOUR;
use crate::picture::sample;

/// The last contact: 2026-04-22 09:08:00 UTC.
const CONTACT: Millis = 1_776_848_880_000;

struct Files {
    _dir: tempfile::TempDir,
    cache: PathBuf,
}

/// A cache written by a contact at [`CONTACT`].
fn files() -> Files {
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("tally.ini");
    let (_, stored) = Offline::contact(
        &cache,
        &sample(),
        &Identity::default(),
        CONTACT,
        Durability::Fsync,
    )
    .expect("contact");
    assert_eq!(stored, Stored::Written);
    Files { _dir: dir, cache }
}

fn session<'a>(feature: &'a str, handle: &'a str) -> Session<'a> {
    Session {
        feature,
        version: None,
        user: "alice",
        host: "ts01",
        handle,
        count: 1,
    }
}

fn admitted(v: &Verdict) -> &Admission {
    match v {
        Verdict::Admitted { admission, .. } => admission,
        Verdict::Refused(r) => panic!("refused: {r}"),
    }
}

fn refusal(v: &Verdict) -> &Refusal {
    match v {
        Verdict::Refused(r) => r,
        Verdict::Admitted { admission, .. } => panic!("admitted: {admission:?}"),
    }
}

#[test]
fn grace_ends_at_gp_hours_for_each_pool() {
    let f = files();
    let clock = ManualClock::new(CONTACT + 96 * MS_PER_HOUR - 1);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let v = off
        .admit(&session("CITRIX", "h1"), clock.now_ms())
        .expect("admit");
    assert_eq!(admitted(&v).start_ms, clock.now_ms());
    clock.advance(1);
    let v = off
        .admit(&session("CITRIX", "h2"), clock.now_ms())
        .expect("admit");
    assert_eq!(
        refusal(&v),
        &Refusal::GraceEnded {
            feature: "CITRIX".to_string(),
            ended_ms: CONTACT + 96 * MS_PER_HOUR,
            hours: 96
        }
    );
    clock.set(CONTACT + 720 * MS_PER_HOUR - 1);
    let v = off
        .admit(&session("MPM_ADV_RC", "h3"), clock.now_ms())
        .expect("admit");
    assert!(
        matches!(v, Verdict::Admitted { grace_ends_ms, .. } if grace_ends_ms == CONTACT + 720 * MS_PER_HOUR)
    );
    clock.advance(1);
    let v = off
        .admit(&session("MPM_ADV_RC", "h4"), clock.now_ms())
        .expect("admit");
    assert_eq!(refusal(&v).code(), "GRACE_ENDED");
    // Sessions admitted keep running: nothing was released.
    assert_eq!(off.pending().len(), 2);
    let graces = off.grace(clock.now_ms());
    assert!(graces.iter().all(|g| g.grace_left_ms == 0), "{graces:?}");
}

#[test]
fn a_clock_moved_backwards_never_extends_grace_even_after_a_restart() {
    let f = files();
    let clock = ManualClock::new(CONTACT + 720 * MS_PER_HOUR);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let v = off
        .admit(&session("MPM_ADV_RC", "h1"), clock.now_ms())
        .expect("admit");
    assert_eq!(refusal(&v).code(), "GRACE_ENDED");
    clock.set(CONTACT + MS_PER_HOUR);
    let v = off
        .admit(&session("MPM_ADV_RC", "h1"), clock.now_ms())
        .expect("admit");
    assert_eq!(refusal(&v).code(), "GRACE_ENDED");
    drop(off);
    // A reboot with the clock still wrong.
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.high_water_ms(), CONTACT + 720 * MS_PER_HOUR);
    let v = off
        .admit(&session("MPM_ADV_RC", "h1"), clock.now_ms())
        .expect("admit");
    assert_eq!(refusal(&v).code(), "GRACE_ENDED");
    // Admissions made under a backwards clock carry the highest time.
    let f = files();
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    admitted(
        &off.admit(&session("MPM_ADV_RC", "a"), CONTACT + 10 * MS_PER_HOUR)
            .expect("admit"),
    );
    let v = off
        .admit(&session("MPM_ADV_RC", "b"), CONTACT + MS_PER_HOUR)
        .expect("admit");
    assert_eq!(admitted(&v).start_ms, CONTACT + 10 * MS_PER_HOUR);
}

#[test]
fn a_reboot_mid_outage_keeps_every_admission_and_the_count() {
    let f = files();
    let clock = ManualClock::new(CONTACT + 5 * MS_PER_HOUR);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let first = admitted(
        &off.admit(&session("MPM_ADV_RC", "h1"), clock.now_ms())
            .expect("admit"),
    )
    .clone();
    drop(off);
    clock.advance(MS_PER_HOUR);
    // A new process: the same files.
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.pending(), [&first]);
    assert_eq!(off.ledger().held(&off.cache().pools)[3], 1);
    let second = admitted(
        &off.admit(&session("MPM_ADV_RC", "h2"), clock.now_ms())
            .expect("admit"),
    )
    .clone();
    assert_ne!(first.id, second.id);
    assert!(second.id.starts_with(&off.ledger().tag));
    // MPM_ADV_RC has 2: the third is refused.
    let v = off
        .admit(&session("MPM_ADV_RC", "h3"), clock.now_ms())
        .expect("admit");
    assert_eq!(refusal(&v).code(), "POOL_FULL");
    // One ends; its place is free again (also after another restart).
    assert!(off.release(&first.id, clock.now_ms()).expect("release"));
    assert!(!off.release(&first.id, clock.now_ms()).expect("again"));
    drop(off);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    let third = admitted(
        &off.admit(&session("MPM_ADV_RC", "h3"), clock.now_ms())
            .expect("admit"),
    )
    .clone();
    // All three still to be reconciled, in order, ids unique.
    let ids: Vec<&str> = off.pending().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        [first.id.as_str(), second.id.as_str(), third.id.as_str()]
    );
}

#[test]
fn reconciled_admissions_leave_pending_and_the_count() {
    let f = files();
    let now = CONTACT + MS_PER_HOUR;
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let a = admitted(&off.admit(&session("MPM_ADV_RC", "h1"), now).expect("admit")).clone();
    let b = admitted(&off.admit(&session("MPM_ADV_RC", "h2"), now).expect("admit")).clone();
    assert!(off.mark_reconciled(&a.id).expect("mark"));
    assert!(!off.mark_reconciled(&a.id).expect("twice"));
    assert!(!off.mark_reconciled("nope").expect("unknown"));
    assert_eq!(off.pending(), [&b]);
    drop(off);
    let off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.pending(), [&b]);
    assert_eq!(off.ledger().held(&off.cache().pools)[3], 1);
}

#[test]
fn a_contact_restarts_grace_without_rewriting_an_unchanged_cache() {
    let f = files();
    let before = fs::read(&f.cache).expect("cache");
    let later = CONTACT + 700 * MS_PER_HOUR;
    let (mut off, stored) = Offline::contact(
        &f.cache,
        &sample(),
        &Identity::default(),
        later,
        Durability::Fsync,
    )
    .expect("contact");
    assert_eq!(stored, Stored::Unchanged);
    assert_eq!(fs::read(&f.cache).expect("cache"), before);
    assert_eq!(off.last_contact_ms(), later);
    let v = off
        .admit(&session("MPM_ADV_RC", "h"), CONTACT + 800 * MS_PER_HOUR)
        .expect("admit");
    assert!(
        matches!(v, Verdict::Admitted { grace_ends_ms, .. } if grace_ends_ms == later + 720 * MS_PER_HOUR)
    );
    // Also for a new process.
    drop(off);
    let off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.last_contact_ms(), later);
}

#[test]
fn a_torn_last_record_is_dropped_and_cut_off() {
    let f = files();
    let side = side_file_path(&f.cache);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let a = admitted(
        &off.admit(&session("MPM_ADV_RC", "h1"), CONTACT + 1)
            .expect("admit"),
    )
    .clone();
    drop(off);
    let good = fs::read(&side).expect("side");
    // A crash in the middle of the next append.
    let torn = Record::Admit(Admission {
        id: "x".to_string(),
        ..a.clone()
    })
    .line();
    let mut bytes = good.clone();
    bytes.extend_from_slice(&torn.as_bytes()[..torn.len() / 2]);
    fs::write(&side, &bytes).expect("tear");
    let contents = log::read(&side).expect("read");
    assert_eq!(contents.good_len, good.len() as u64);
    assert!(contents.torn_line.is_some());
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.pending(), [&a]);
    assert_eq!(fs::read(&side).expect("side"), good);
    admitted(
        &off.admit(&session("MPM_ADV_RC", "h2"), CONTACT + 2)
            .expect("admit"),
    );
    drop(off);
    let off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.pending().len(), 2);
    // A complete last line with a bad CRC is torn too.
    let mut bytes = fs::read(&side).expect("side");
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    fs::write(&side, &bytes).expect("damage");
    assert_eq!(
        log::read(&side).expect("read").records.len(),
        off_records(&off) - 1
    );
}

fn off_records(off: &Offline) -> usize {
    // Client + Contact + two admissions.
    2 + off.ledger().entries.len()
}

#[test]
fn a_damaged_record_before_the_last_is_refused() {
    let f = files();
    let side = side_file_path(&f.cache);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    admitted(
        &off.admit(&session("MPM_ADV_RC", "h1"), CONTACT + 1)
            .expect("admit"),
    );
    admitted(
        &off.admit(&session("FREEBIE", "h2"), CONTACT + 1)
            .expect("admit"),
    );
    drop(off);
    let text = fs::read_to_string(&side).expect("side");
    let text = text.replacen("\"alice\"", "\"mallory\"", 1);
    fs::write(&side, text).expect("edit");
    let err = Offline::open(&f.cache, Durability::Fsync).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: line 3: CRC mismatch", side.display())),
        "{msg}"
    );
}

#[test]
fn a_damaged_cache_is_never_used() {
    let f = files();
    let text = fs::read_to_string(&f.cache).expect("cache");
    fs::write(&f.cache, text.replace("NumLic=2\n", "NumLic=200\n")).expect("edit");
    let err = Offline::open(&f.cache, Durability::Fsync).unwrap_err();
    assert!(
        matches!(err, OfflineError::Cache(CacheError::Corrupt { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("[PLD_POOL_LIC_NODE_2_0]"), "{err}");
}

#[test]
fn fields_reconcile_could_not_send_are_refused() {
    let f = files();
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let bad = Session {
        user: "al ice",
        ..session("MPM_ADV_RC", "h")
    };
    let err = off.admit(&bad, CONTACT + 1).unwrap_err();
    assert!(
        matches!(err, OfflineError::BadField { what: "user", .. }),
        "{err}"
    );
    assert!(off.pending().is_empty());
}

#[test]
fn no_sync_behaves_the_same() {
    let f = files();
    let mut off = Offline::open(&f.cache, Durability::NoSync).expect("open");
    admitted(
        &off.admit(&session("FREEBIE", "h"), CONTACT + 1)
            .expect("admit"),
    );
    drop(off);
    let off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.pending().len(), 1);
}

#[test]
fn the_same_handle_asking_again_offline_is_renewed_not_admitted_twice() {
    let f = files();
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let s = session("MPM_ADV_RC", "x3");
    let first = admitted(
        &off.admit_lingering(&s, Some(1000), CONTACT + 1)
            .expect("admit"),
    )
    .clone();
    let pools = off.cache().pools.clone();
    let i = pools
        .iter()
        .position(|p| p.feature == "MPM_ADV_RC")
        .expect("pool");
    let v = off
        .admit_lingering(&s, Some(5000), CONTACT + 2)
        .expect("again");
    let again = admitted(&v);
    assert_eq!(again.id, first.id);
    assert_eq!(again.linger_ms, Some(5000));
    assert_eq!(off.ledger().held(&pools)[i], 1);
    assert_eq!(off.pending().len(), 1);
    // Another process sees the same: one admission, renewed.
    drop(off);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    assert_eq!(off.ledger().entries.len(), 1);
    assert_eq!(off.ledger().entries[0].renewed_ms, Some(CONTACT + 2));
    assert_eq!(off.ledger().entries[0].admission.linger_ms, Some(5000));
    // Another handle is another session; a released one is asked anew.
    let other = admitted(
        &off.admit(&session("MPM_ADV_RC", "x4"), CONTACT + 3)
            .expect("x4"),
    )
    .clone();
    assert_ne!(other.id, first.id);
    assert!(off.release(&first.id, CONTACT + 4).expect("release"));
    let anew = admitted(&off.admit(&s, CONTACT + 5).expect("anew")).clone();
    assert_ne!(anew.id, first.id);
    assert_eq!(off.ledger().held(&pools)[i], 2);
}

#[test]
fn concurrent_admissions_on_one_cache_never_exceed_the_count_or_share_an_id() {
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("tally.ini");
    let mut picture = sample();
    for p in picture
        .pools
        .iter_mut()
        .filter(|p| p.terms.feature == "MPM_ADV_RC")
    {
        p.terms.total = Some(5);
    }
    Offline::contact(
        &cache,
        &picture,
        &Identity::default(),
        CONTACT,
        Durability::NoSync,
    )
    .expect("contact");
    // Every process finds the side file missing: one client tag only.
    fs::remove_file(side_file_path(&cache)).expect("rm");
    let n = 20;
    let barrier = std::sync::Barrier::new(n);
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (cache, barrier) = (&cache, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut off = Offline::open(cache, Durability::NoSync).expect("open");
                    let handle = format!("h{i}");
                    match off
                        .admit(&session("MPM_ADV_RC", &handle), CONTACT + 1)
                        .expect("admit")
                    {
                        Verdict::Admitted { admission, .. } => Some(admission.id),
                        Verdict::Refused(r) => {
                            assert_eq!(r.code(), "POOL_FULL");
                            None
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(ids.len(), 5, "{ids:?}");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{ids:?}");
    let contents = log::read(&side_file_path(&cache)).expect("read");
    let tags = contents
        .records
        .iter()
        .filter(|r| matches!(r, Record::Client { .. }))
        .count();
    assert_eq!(tags, 1);
    let (_, ledger) = Offline::inspect(&cache).expect("inspect");
    assert_eq!(ledger.entries.len(), 5);
    assert!(ids
        .iter()
        .all(|id| id.starts_with(&format!("{}-", ledger.tag))));
}

#[test]
fn copied_side_files_never_give_out_the_same_id() {
    let f = files();
    let copy = f.cache.with_file_name("copy.ini");
    fs::copy(&f.cache, &copy).expect("copy cache");
    fs::copy(side_file_path(&f.cache), side_file_path(&copy)).expect("copy side");
    let mut a = Offline::open(&f.cache, Durability::NoSync).expect("a");
    let mut b = Offline::open(&copy, Durability::NoSync).expect("b");
    let ia = admitted(
        &a.admit(&session("MPM_ADV_RC", "h"), CONTACT + 1)
            .expect("a"),
    )
    .clone();
    let ib = admitted(
        &b.admit(&session("MPM_ADV_RC", "h"), CONTACT + 1)
            .expect("b"),
    )
    .clone();
    assert_eq!(a.ledger().tag, b.ledger().tag);
    assert_ne!(ia.id, ib.id);
}

#[test]
fn a_client_clock_ahead_at_contact_then_set_back_does_not_stretch_grace() {
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("tally.ini");
    let mut picture = sample();
    picture.now_ms = Some(CONTACT);
    // The client's clock reads 1000 h ahead of the server's at contact.
    let ahead = CONTACT + 1000 * MS_PER_HOUR;
    let (off, _) = Offline::contact(
        &cache,
        &picture,
        &Identity::default(),
        ahead,
        Durability::NoSync,
    )
    .expect("contact");
    assert_eq!(off.last_contact_ms(), CONTACT);
    assert_eq!(off.cache().last_contact_ms, CONTACT);
    drop(off);
    // Set right again: grace ends 720 h after the server's time.
    let mut off = Offline::open(&cache, Durability::NoSync).expect("open");
    let v = off
        .admit(&session("MPM_ADV_RC", "h1"), CONTACT + MS_PER_HOUR)
        .expect("admit");
    assert!(
        matches!(v, Verdict::Admitted { grace_ends_ms, .. } if grace_ends_ms == CONTACT + 720 * MS_PER_HOUR),
        "{v:?}"
    );
    let v = off
        .admit(&session("MPM_ADV_RC", "h2"), CONTACT + 720 * MS_PER_HOUR)
        .expect("admit");
    assert_eq!(refusal(&v).code(), "GRACE_ENDED");
    // The client's clock behind the server's: its own time counts.
    picture.now_ms = Some(CONTACT + 5 * MS_PER_HOUR);
    let (off, _) = Offline::contact(
        &cache,
        &picture,
        &Identity::default(),
        CONTACT + MS_PER_HOUR,
        Durability::NoSync,
    )
    .expect("contact");
    assert_eq!(off.last_contact_ms(), CONTACT + MS_PER_HOUR);
}

#[test]
fn salvage_keeps_every_intact_record_and_sets_the_damaged_file_aside() {
    let f = files();
    let side = side_file_path(&f.cache);
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("open");
    let h1 = admitted(
        &off.admit(&session("MPM_ADV_RC", "h1"), CONTACT + 1)
            .expect("h1"),
    )
    .clone();
    admitted(
        &off.admit(&session("FREEBIE", "h2"), CONTACT + 2)
            .expect("h2"),
    );
    let h3 = admitted(
        &off.admit(&session("MPM_ADV_RC", "h3"), CONTACT + 3)
            .expect("h3"),
    )
    .clone();
    drop(off);
    // Nothing to do on a good side file.
    assert_eq!(salvage(&f.cache, "t0").expect("salvage"), None);
    let text = fs::read_to_string(&side).expect("side");
    let damaged_text = text.replacen("\"h2\"", "\"hX\"", 1);
    fs::write(&side, &damaged_text).expect("edit");
    assert!(matches!(
        Offline::open(&f.cache, Durability::Fsync),
        Err(OfflineError::Corrupt { line: 4, .. })
    ));
    let s = salvage(&f.cache, "t1").expect("salvage").expect("damaged");
    assert_eq!(s.kept, 4, "{s:?}");
    assert_eq!(s.dropped.len(), 1);
    assert_eq!(s.dropped[0].0, 4);
    assert!(s.dropped[0].1.starts_with("CRC mismatch"), "{s:?}");
    assert_eq!(
        s.damaged,
        side.with_file_name("tally.ini.admissions.damaged-t1")
    );
    assert_eq!(fs::read_to_string(&s.damaged).expect("kept"), damaged_text);
    // Usable again: the intact admissions are there and count.
    let mut off = Offline::open(&f.cache, Durability::Fsync).expect("reopen");
    let ids: Vec<&str> = off.pending().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, [h1.id.as_str(), h3.id.as_str()]);
    assert_eq!(off.last_contact_ms(), CONTACT);
    let v = off
        .admit(&session("MPM_ADV_RC", "h4"), CONTACT + 4)
        .expect("h4");
    assert_eq!(refusal(&v).code(), "POOL_FULL", "h1 and h3 still count");
    admitted(
        &off.admit(&session("FREEBIE", "h5"), CONTACT + 5)
            .expect("h5"),
    );
}
