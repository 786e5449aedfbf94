//! Unit tests of the table: the word, the fingerprint scan, claims,
//! spills, and the growth by levels.

use super::level::CROWDED;
use super::*;

fn key(n: u64) -> InstanceKey {
    InstanceKey {
        lo: n,
        hi: n.rotate_left(17) ^ 0x9e37,
    }
}

/// Claims and publishes (pool 3, count 2, since 100, deadline 500).
fn insert<'t>(t: &'t Table, k: InstanceKey, h: &HolderBuf) -> Result<InstanceId, Claim<'t>> {
    match t.claim(k) {
        Claim::Owned(c) => Ok(t.publish(
            c,
            &Fields {
                pool: 3,
                count: 2,
                since: 100,
                linger: 0,
                deadline: 500,
                holder: h,
            },
        )),
        other => Err(other),
    }
}

#[test]
fn scan_flags_every_lane_with_the_fingerprint() {
    let t = Table::with_capacity(8, false); // one bucket
    let k = key(77);
    let tag = tag_of(k);
    // Other fingerprints that differ from `tag` in a high bit are never
    // flagged; those that differ only in the lowest bit may be, just
    // above a true match (the SWAR borrow; a key check rejects them).
    for (other, exact) in [(tag ^ 0x40, true), (tag ^ 0x01, false)] {
        for lanes in [0u32, 1, 0x8001, 0xffff, 0x0f0f, 0x1234, 0x8000] {
            for lane in 0..SLOTS_PER_BUCKET {
                let byte = if lanes >> lane & 1 == 1 { tag } else { other };
                let w = &t.first.bucket(0).tags[lane / 8];
                let shift = 8 * (lane % 8);
                let old = w.load(Ordering::Relaxed) & !(0xff << shift);
                w.store(old | u64::from(byte) << shift, Ordering::Relaxed);
            }
            let got = t.first.scan(0, k, Ordering::Relaxed);
            assert_eq!(got & lanes, lanes, "{lanes:#x} -> {got:#x}");
            if exact {
                assert_eq!(got, lanes, "{lanes:#x} -> {got:#x}");
            }
        }
    }
}

#[test]
fn the_zero_word_is_free_of_generation_zero() {
    // Levels are allocated zeroed (`level::try_zeroed`): a slot's word 0
    // must be what `Bucket::new` writes.
    assert_eq!(Word::new(State::Free, 0, 0).0, 0);
    let t = Table::with_capacity(64, true);
    for i in 0..t.slot_count() {
        let at = t.locate(i).unwrap();
        let w = at.level.slot(at.local).load(Ordering::Relaxed);
        assert_eq!((w.state(), w.gen(), w.deadline()), (State::Free, 0, 0));
        assert_eq!(
            at.level.charge(at.local).unwrap().load(Ordering::Relaxed),
            0
        );
    }
}

#[test]
fn word_round_trips() {
    let w = Word::new(State::Live, (1 << GEN_BITS) - 1, MAX_DEADLINE);
    assert_eq!(w.state(), State::Live);
    assert_eq!(w.gen(), (1 << GEN_BITS) - 1);
    assert_eq!(w.deadline(), MAX_DEADLINE);
    assert_eq!(w.next_gen(), 0);
    let w = Word::new(State::Releasing, 7, NO_DEADLINE);
    assert_eq!(
        (w.state(), w.gen(), w.deadline()),
        (State::Releasing, 7, NO_DEADLINE)
    );
}

#[test]
fn long_and_short_holder_names_round_trip_through_a_reused_slot() {
    // One bucket: every claim lands in its slots, and a released slot is
    // the next claim's. Names over 52 bytes use the level's second cold
    // array; a short holder after a long one must not read its leftovers.
    let t = Table::with_capacity(1, false);
    let long = HolderBuf::new(
        "a-rather-long-user-name",
        "build-agent-17.eng.example.com",
        "build-agent-17.eng.example.com:0.0",
        "client-handle-0001",
    );
    let short = HolderBuf::new("u", "h", "d", "x");
    assert_ne!(long, short);
    for round in 0..3 {
        let (first, second) = if round % 2 == 0 {
            (&long, &short)
        } else {
            (&short, &long)
        };
        let a = insert(&t, key(1), first).unwrap();
        let b = insert(&t, key(2), second).unwrap();
        assert_eq!(t.read(a).unwrap().holder, *first);
        assert_eq!(t.read(b).unwrap().holder, *second);
        assert_eq!(t.release(a, |_| true, |_, _| {}).unwrap().holder, *first);
        assert_eq!(t.release(b, |_| true, |_, _| {}).unwrap().holder, *second);
    }
    let mut seen = Vec::new();
    let a = insert(&t, key(3), &long).unwrap();
    let b = insert(&t, key(4), &short).unwrap();
    t.for_each_live(|r| seen.push((r.id, r.holder)));
    seen.sort_by_key(|(id, _)| id.slot);
    let mut want = vec![(a, long), (b, short)];
    want.sort_by_key(|(id, _)| id.slot);
    assert_eq!(seen, want);
}

#[test]
fn claim_find_renew_release() {
    let t = Table::with_capacity(8, false);
    let h = HolderBuf::new("u", "h", "d", "x");
    let id = insert(&t, key(1), &h).unwrap();
    assert_eq!(t.find(key(1)), Some(id));
    assert_eq!(t.find(key(2)), None);
    let Err(Claim::Exists(found)) = insert(&t, key(1), &h) else {
        panic!("a second claim of a live key")
    };
    assert_eq!((found.id, found.pool, found.count), (id, 3, 2));
    assert_eq!(
        t.renew(&found, 900, 1),
        Renew::Renewed { old_deadline: 500 }
    );
    let r = t.read(id).unwrap();
    assert_eq!((r.pool, r.count, r.since, r.deadline), (3, 2, 100, 900));
    assert_eq!(r.holder.user(), "u");
    assert!(
        t.release(id, |d| d <= 800, |_, _| {}).is_none(),
        "not yet due"
    );
    let mut credited = 0;
    let gone = t
        .release(id, |d| d <= 900, |r, _| credited += r.count)
        .unwrap();
    assert_eq!((gone.count, credited), (2, 2));
    assert!(
        t.release(id, |_| true, |_, _| {}).is_none(),
        "released once only"
    );
    assert_eq!(t.renew(&found, 1000, 1), Renew::Gone);
    assert_eq!(t.find(key(1)), None);
}

#[test]
fn abandoned_claims_leave_no_trace() {
    let t = Table::with_capacity(2, false);
    let Claim::Owned(c) = t.claim(key(9)) else {
        panic!("not claimed")
    };
    t.abandon(c);
    assert_eq!(t.find(key(9)), None);
    let mut live = 0;
    t.for_each_live(|_| live += 1);
    assert_eq!(live, 0);
}

#[test]
fn fills_up_and_reports_full() {
    let t = Table::with_levels(1, false, 1); // one bucket, no growth
    let h = HolderBuf::new("u", "h", "d", "x");
    let mut n = 0;
    while insert(&t, key(n), &h).is_ok() {
        n += 1;
    }
    assert_eq!(n as usize, t.slot_count());
    assert_eq!(insert(&t, key(n + 1), &h), Err(Claim::Full));
}

#[test]
fn a_crowded_primary_bucket_spills_and_is_counted() {
    let t = Table::with_capacity(16, false); // two buckets of 16
    assert_eq!(t.first.buckets(), 2);
    let h = HolderBuf::new("u", "h", "d", "x");
    // Keys whose primary is bucket 0 (and secondary bucket 1) stay
    // there until it is crowded.
    let key = |n: u64| InstanceKey { lo: n * 2, hi: n };
    let mut ids = Vec::new();
    for n in 0..u64::from(CROWDED) {
        let id = insert(&t, key(n), &h).unwrap();
        assert_eq!(id.slot / 16, 0);
        ids.push(id);
    }
    assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 0);
    let spilled = key(100);
    let id = insert(&t, spilled, &h).unwrap();
    assert_eq!(id.slot / 16, 1, "in the emptier secondary bucket");
    assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 1);
    assert_eq!(t.find(spilled), Some(id));
    assert!(matches!(insert(&t, spilled, &h), Err(Claim::Exists(f)) if f.id == id));
    // A key of bucket 0 that is absent is looked for in bucket 1 too,
    // and still not found.
    assert_eq!(t.find(key(101)), None);
    t.release(id, |_| true, |_, _| {}).unwrap();
    assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 0);
    assert_eq!(t.find(spilled), None);
    // An abandoned spilled claim leaves the count as it found it.
    let Claim::Owned(c) = t.claim(key(200)) else {
        panic!("not claimed")
    };
    assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 1);
    t.abandon(c);
    assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 0);
    // No longer crowded: the key goes back to its primary.
    t.release(ids[3], |_| true, |_, _| {}).unwrap();
    let again = insert(&t, spilled, &h).unwrap();
    assert_eq!(again.slot / 16, 0);
    assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 0);
}

#[test]
fn a_full_table_of_both_buckets_is_full() {
    let t = Table::with_levels(16, false, 1);
    let h = HolderBuf::new("u", "h", "d", "x");
    let mut n = 0;
    while insert(&t, InstanceKey { lo: n * 2, hi: n }, &h).is_ok() {
        n += 1;
    }
    assert_eq!(n, 32, "both buckets fill before a claim fails");
}

#[test]
fn reuses_released_slots_with_new_generation() {
    let t = Table::with_levels(1, false, 1);
    let h = HolderBuf::new("u", "h", "d", "x");
    let a = insert(&t, key(5), &h).unwrap();
    t.release(a, |_| true, |_, _| {}).unwrap();
    let b = insert(&t, key(6), &h).unwrap();
    assert_eq!(a.slot, b.slot);
    assert_ne!(a.gen, b.gen);
    assert!(t.read(a).is_none());
    assert!(t.read(b).is_some());
}

#[test]
fn a_full_level_publishes_the_next_and_ids_stay_valid() {
    let t = Table::with_capacity(1, false); // level 0: one bucket of 16
    assert_eq!(t.slot_count(), 16);
    let before = t.bytes();
    let h = HolderBuf::new("u", "h", "d", "x");
    let old: Vec<InstanceId> = (0..16).map(|n| insert(&t, key(n), &h).unwrap()).collect();
    assert!(old.iter().all(|id| id.slot < 16));
    // Level 0 is full: the next key publishes level 1 (32 slots, from
    // global index 16) and lands there.
    let new = insert(&t, key(100), &h).unwrap();
    assert!((16..48).contains(&new.slot), "{new:?}");
    assert_eq!(t.slot_count(), 48);
    assert_eq!(t.levels.load(Ordering::Relaxed), 2);
    assert!(t.bytes() > 2 * before, "{} -> {}", before, t.bytes());
    // Every id, old and new, still names its instance; keys in either
    // level are found, renewed and released; a duplicate is refused.
    for (n, id) in old.iter().enumerate() {
        assert_eq!(t.find(key(n as u64)), Some(*id));
        assert!(t.read(*id).is_some());
    }
    assert_eq!(t.find(key(100)), Some(new));
    assert!(matches!(insert(&t, key(3), &h), Err(Claim::Exists(f)) if f.id == old[3]));
    assert!(matches!(insert(&t, key(100), &h), Err(Claim::Exists(f)) if f.id == new));
    let Lookup::Live(found) = t.lookup(key(100)) else {
        panic!("not found")
    };
    assert_eq!(
        t.renew(&found, 900, 1),
        Renew::Renewed { old_deadline: 500 }
    );
    assert_eq!(t.deadline_of(new), Some(900));
    let mut live = 0;
    t.for_each_live(|_| live += 1);
    assert_eq!(live, 17);
    assert!(t.release(new, |_| true, |_, _| {}).is_some());
    assert_eq!(t.find(key(100)), None);
    // A freed slot of level 0 is reused before anything grows again.
    t.release(old[5], |_| true, |_, _| {}).unwrap();
    let again = insert(&t, key(200), &h).unwrap();
    assert!(
        (16..48).contains(&again.slot),
        "newest level first: {again:?}"
    );
    assert_eq!(t.slot_count(), 48, "no growth while there is room");
}

#[test]
fn an_id_beyond_the_published_levels_names_nothing() {
    let t = Table::with_capacity(1, false);
    for slot in [16, 47, 48, 1 << 20, u32::MAX] {
        let id = InstanceId { slot, gen: 0 };
        assert!(t.read(id).is_none());
        assert!(t.deadline_of(id).is_none());
        assert!(t.release(id, |_| true, |_, _| {}).is_none());
    }
}

#[test]
fn levels_fill_then_the_capped_table_is_full() {
    let t = Table::with_levels(1, false, 3); // 16 + 32 + 64 slots
    let h = HolderBuf::new("u", "h", "d", "x");
    let mut ids = Vec::new();
    let mut n = 0;
    loop {
        match insert(&t, key(n), &h) {
            Ok(id) => ids.push(id),
            Err(Claim::Full) => break,
            Err(other) => panic!("{other:?}"),
        }
        n += 1;
    }
    assert_eq!(t.slot_count(), 112);
    // Two-choice placement fills most of a level before a key finds both
    // of its buckets full in every level.
    assert!(ids.len() > 80, "only {} of 112 slots filled", ids.len());
    let mut slots: Vec<u32> = ids.iter().map(|id| id.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), ids.len(), "each instance its own slot");
    assert!(slots.iter().all(|&s| s < 112));
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(t.find(key(k as u64)), Some(*id));
        assert!(t.release(*id, |_| true, |_, _| {}).is_some());
    }
    let mut live = 0;
    t.for_each_live(|_| live += 1);
    assert_eq!(live, 0);
}

#[test]
fn slot_indices_fit_their_bits_at_every_size() {
    for instances in [0, 1, 8, 100, 4096, 1 << 16] {
        let t = Table::with_capacity(instances, false);
        let end = t.offset(t.max_levels) as u64;
        assert!(
            end < 1 << INDEX_BITS,
            "{instances}: last level ends at {end}"
        );
        assert!(
            t.offset(t.max_levels + 1) as u64 >= 1 << INDEX_BITS,
            "{instances}: room for another level"
        );
        // Every index of the last level maps back to it.
        let last = t.max_levels - 1;
        for i in [t.offset(last), t.offset(last + 1) - 1] {
            let q = (i >> t.shift) + 1;
            assert_eq!((usize::BITS - 1 - q.leading_zeros()) as usize, last);
        }
    }
}

#[test]
fn a_charged_table_keeps_a_record_per_slot_in_every_level() {
    let t = Table::with_capacity(1, true);
    let h = HolderBuf::new("u", "h", "d", "x");
    let mut ids = Vec::new();
    for n in 0..40 {
        let Claim::Owned(c) = t.claim(key(n)) else {
            panic!("not claimed")
        };
        c.charge()
            .expect("a record")
            .store(n + 1, Ordering::Relaxed);
        ids.push(t.publish(
            c,
            &Fields {
                pool: 0,
                count: 1,
                since: 0,
                linger: 0,
                deadline: NO_DEADLINE,
                holder: &h,
            },
        ));
    }
    assert!(t.levels.load(Ordering::Relaxed) >= 2, "grew");
    for (n, id) in ids.into_iter().enumerate() {
        let mut seen = 0;
        t.release(
            id,
            |_| true,
            |_, charge| seen = charge.expect("a record").swap(0, Ordering::Relaxed),
        )
        .unwrap();
        assert_eq!(seen, n as u64 + 1);
    }
    let plain = Table::with_capacity(1, false);
    let Claim::Owned(c) = plain.claim(key(1)) else {
        panic!("not claimed")
    };
    assert!(c.charge().is_none());
    plain.abandon(c);
}

#[test]
fn max_instances_is_every_slot_of_a_default_table() {
    let t = Table::with_capacity(INITIAL_INSTANCES, false);
    assert_eq!(t.offset(t.max_levels) as u64, MAX_INSTANCES);
}

#[test]
fn user_host_reads_the_holders_names_and_nothing_once_released() {
    let t = Table::with_capacity(64, false);
    let long = "l".repeat(60); // past the first cold words: the second array
    for (n, h) in [
        HolderBuf::new("u", "h", "d", "x"),
        HolderBuf::new(&long, "host", "disp", "handle"),
    ]
    .iter()
    .enumerate()
    {
        let id = insert(&t, key(n as u64 + 1), h).unwrap();
        let got = t.user_host(id).expect("live");
        assert_eq!((got.user(), got.host()), (h.user(), h.host()));
        assert!(got.is_user_host(h.user(), h.host()));
        assert!(!got.is_user_host(h.user(), "other"));
        t.release(id, |_| true, |_, _| {}).unwrap();
        assert_eq!(t.user_host(id), None, "released: nothing");
    }
}
