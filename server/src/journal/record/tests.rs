use super::*;
use proptest::prelude::*;

fn sample(id: u64) -> Vec<u8> {
    let mut p = Vec::new();
    encode_instance(
        &mut p,
        TAG_OUT,
        &Instance {
            id,
            at_ms: 1_700_000_000_000 + id,
            linger_ms: 60_000,
            deadline_ms: Some(1_700_000_060_000 + id),
            count: 1,
            version: 0,
            renewed: false,
            feature: "MPM_ADV_RC",
            user: "USER15",
            host: "GENE-VM-2K3",
            display: "console",
            handle: "ec26edf8",
        },
    );
    p
}

fn frames(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        frame(&mut out, 10 + i, &sample(i));
    }
    out
}

fn name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[^\\s]{0,40}").expect("regex")
}

proptest! {
    #[test]
    fn instance_round_trips(
        id: u64, at_ms: u64, linger_ms: u64, deadline in proptest::option::of(1u64..),
        count: u32, version: u64, renewed: bool, instance: bool,
        feature in name(), user in name(), host in name(), display in name(), handle in name(),
        seq: u64,
    ) {
        let i = Instance {
            id, at_ms, linger_ms, deadline_ms: deadline, count, version, renewed,
            feature: &feature, user: &user, host: &host, display: &display, handle: &handle,
        };
        let tag = if instance { TAG_INSTANCE } else { TAG_OUT };
        let mut p = Vec::new();
        encode_instance(&mut p, tag, &i);
        let want = if instance { Record::Instance(i) } else { Record::Out(i) };
        prop_assert_eq!(decode(&p), Ok(want));
        let mut f = Vec::new();
        frame(&mut f, seq, &p);
        let s = scan(&f, Some(seq));
        prop_assert_eq!(s.stop, None);
        prop_assert_eq!(s.frames.len(), 1);
        prop_assert_eq!(&f[s.frames[0].1.clone()], &p[..]);
    }

    #[test]
    fn release_round_trips(id: u64, at_ms: u64, tomb: bool) {
        let mut p = Vec::new();
        if tomb {
            encode_tombstone(&mut p, id, at_ms);
            prop_assert_eq!(decode(&p), Ok(Record::Tombstone { id, at_ms }));
        } else {
            encode_in(&mut p, id, at_ms);
            prop_assert_eq!(decode(&p), Ok(Record::In { id, at_ms }));
        }
    }

    /// Cutting the bytes anywhere keeps exactly the whole frames before
    /// the cut.
    #[test]
    fn any_cut_keeps_the_whole_frames(cut in 0usize..1000) {
        let all = frames(8);
        let cut = cut % (all.len() + 1);
        let s = scan(&all[..cut], Some(10));
        let whole = all[..cut].len() / (FRAME_HEADER + sample(0).len());
        prop_assert_eq!(s.frames.len(), whole);
        prop_assert_eq!(s.good_len + s.dropped_bytes, cut);
    }

    /// Flipping any bit stops the scan at or before the frame it is in,
    /// never later, and never accepts a changed frame.
    #[test]
    fn a_bit_flip_is_caught(bit in 0usize..8000) {
        let all = frames(8);
        let frame_len = FRAME_HEADER + sample(0).len();
        let bit = bit % (all.len() * 8);
        let mut bad = all.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let s = scan(&bad, Some(10));
        let hit = (bit / 8) / frame_len;
        prop_assert!(s.frames.len() <= hit, "kept {} frames, flip in frame {}", s.frames.len(), hit);
        prop_assert!(s.stop.is_some());
        for (_, r) in &s.frames {
            prop_assert_eq!(&bad[r.clone()], &all[r.clone()]);
        }
    }
}

proptest! {
    /// Flipping any bit costs exactly the frame it is in: the survey
    /// resynchronises on the next frame and keeps every other one
    /// unchanged, and the damage is never taken for a torn tail.
    #[test]
    fn a_bit_flip_costs_only_its_frame(bit in 0usize..8000) {
        let all = frames(8);
        let frame_len = FRAME_HEADER + sample(0).len();
        let bit = bit % (all.len() * 8);
        let mut bad = all.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let s = survey(&bad, Some(10));
        let hit = (bit / 8) / frame_len;
        let seqs: Vec<u64> = s.frames.iter().map(|(q, _)| *q).collect();
        let want: Vec<u64> = (0..8u64).filter(|&i| i as usize != hit).map(|i| 10 + i).collect();
        prop_assert_eq!(seqs, want);
        for (_, r) in &s.frames {
            prop_assert_eq!(&bad[r.clone()], &all[r.clone()]);
        }
        prop_assert_eq!(s.damage.len(), 1);
        prop_assert_eq!(s.damage[0].at, hit * frame_len);
        prop_assert!(!s.is_torn_tail(&bad), "{:?}", s.damage);
    }

    /// Cutting the bytes anywhere inside the last frame is a torn tail.
    #[test]
    fn a_cut_is_a_torn_tail(cut in 1usize..1000) {
        let all = frames(3);
        let frame_len = FRAME_HEADER + sample(0).len();
        let cut = 2 * frame_len + 1 + cut % (frame_len - 1);
        let s = survey(&all[..cut], Some(10));
        prop_assert_eq!(s.frames.len(), 2);
        prop_assert!(s.is_torn_tail(&all[..cut]), "{:?}", s.damage);
    }
}

fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + FRAME_HEADER <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        at += FRAME_HEADER + len as usize;
    }
    out
}

#[test]
fn a_flipped_byte_mid_run_is_damage_with_intact_frames_after_it() {
    let all = frames(200);
    let starts = frame_starts(&all);
    let mut bad = all.clone();
    bad[starts[100] + FRAME_HEADER + 20] ^= 0x40;
    let s = survey(&bad, None);
    assert_eq!(s.frames.len(), 199);
    assert_eq!(s.damage.len(), 1);
    let d = &s.damage[0];
    assert_eq!(
        (d.at, d.len, d.stop),
        (starts[100], starts[101] - starts[100], Stop::BadChecksum)
    );
    assert_eq!(d.frames_before, 100);
    assert!(!s.is_torn_tail(&bad));
    // The strict scan stops there.
    assert_eq!(scan(&bad, None).frames.len(), 100);
}

#[test]
fn a_huge_length_field_costs_one_frame() {
    let all = frames(200);
    let starts = frame_starts(&all);
    let mut bad = all.clone();
    bad[starts[1]..starts[1] + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let s = survey(&bad, None);
    assert_eq!(s.frames.len(), 199);
    assert_eq!(s.damage.len(), 1);
    assert_eq!(s.damage[0].stop, Stop::BadLength(0x7fff_ffff));
    assert!(!s.is_torn_tail(&bad));
}

#[test]
fn a_damaged_length_in_the_last_frame_is_not_a_torn_tail() {
    let all = frames(5);
    let starts = frame_starts(&all);
    let mut bad = all.clone();
    // Longer than the bytes present: looks cut short, but the bytes
    // present check out as the whole frame.
    let len = u32::from_le_bytes([
        bad[starts[4]],
        bad[starts[4] + 1],
        bad[starts[4] + 2],
        bad[starts[4] + 3],
    ]);
    bad[starts[4]..starts[4] + 4].copy_from_slice(&(len + 100).to_le_bytes());
    let s = survey(&bad, None);
    assert_eq!(s.frames.len(), 4);
    assert_eq!(s.damage[0].stop, Stop::Torn);
    assert!(!s.is_torn_tail(&bad), "{:?}", s.damage);
}

#[test]
fn zero_fill_at_the_end_is_a_torn_tail_and_mid_run_it_is_not() {
    let mut all = frames(5);
    all.extend_from_slice(&[0; 300]);
    let s = survey(&all, None);
    assert_eq!(s.frames.len(), 5);
    assert!(s.is_torn_tail(&all));
    let mut mid = all.clone();
    let mut tail = Vec::new();
    frame(&mut tail, 15, &sample(5));
    mid.extend_from_slice(&tail);
    let s = survey(&mid, None);
    assert_eq!(s.frames.len(), 6);
    assert!(!s.is_torn_tail(&mid), "{:?}", s.damage);
}

/// What the old retry of a failed write left: the partial bytes of the
/// first try, then the whole batch again. The survey refuses the older
/// copies (their sequence numbers go back) and keeps every record once.
#[test]
fn a_partial_write_then_its_full_copy_keeps_each_record_once() {
    let mut bytes = frames(3);
    let mut batch = Vec::new();
    for i in 3..6 {
        frame(&mut batch, 10 + i, &sample(i));
    }
    bytes.extend_from_slice(&batch[..batch.len() / 2]);
    bytes.extend_from_slice(&batch);
    let s = survey(&bytes, None);
    let seqs: Vec<u64> = s.frames.iter().map(|(q, _)| *q).collect();
    assert_eq!(seqs, [10, 11, 12, 13, 14, 15]);
    assert_eq!(s.damage.len(), 1, "{:?}", s.damage);
}

#[test]
fn a_sequence_gap_between_intact_frames_is_reported() {
    let mut out = Vec::new();
    frame(&mut out, 1, &sample(1));
    frame(&mut out, 3, &sample(3));
    let s = survey(&out, Some(1));
    assert_eq!(s.frames.len(), 2);
    assert_eq!(s.damage.len(), 1);
    assert_eq!(
        (s.damage[0].len, s.damage[0].stop),
        (0, Stop::BadSequence { want: 2, got: 3 })
    );
}

#[test]
fn sequence_gaps_stop_the_scan() {
    let mut out = Vec::new();
    frame(&mut out, 1, &sample(1));
    frame(&mut out, 3, &sample(3));
    let s = scan(&out, Some(1));
    assert_eq!(s.frames.len(), 1);
    assert_eq!(s.stop, Some(Stop::BadSequence { want: 2, got: 3 }));
}

#[test]
fn patching_a_renewal_keeps_the_names() {
    let mut p = sample(7);
    patch_instance(&mut p, 1000, 42);
    as_instance(&mut p, 5);
    let Ok(Record::Instance(i)) = decode(&p) else {
        panic!("not an instance: {:?}", decode(&p));
    };
    assert_eq!((i.linger_ms, i.deadline_ms, i.at_ms), (1000, Some(42), 5));
    assert_eq!(i.handle, "ec26edf8");
}

#[test]
fn reconcile_records_round_trip_and_refuse_what_they_do_not_know() {
    let r = Reconciled {
        instance: 9,
        at_ms: 1_700_000_000_000,
        id: "c0ffee-17",
        feature: "MPS_ENT_CCU",
        handle: "s51",
    };
    let mut p = Vec::new();
    encode_reconcile(&mut p, &r);
    assert_eq!(p[..2], [TAG_RECONCILE, RECONCILE_FORMAT]);
    assert_eq!(decode(&p), Ok(Record::Reconcile(r)));
    patch_reconcile(&mut p, 0);
    let Ok(Record::Reconcile(patched)) = decode(&p) else {
        panic!("{:?}", decode(&p));
    };
    assert_eq!(patched.instance, 0);
    assert_eq!(patched.id, "c0ffee-17");
    // Every cut is refused, so is a later format or trailing bytes.
    for end in 0..p.len() {
        assert!(decode(&p[..end]).is_err(), "{end}");
    }
    let mut later = p.clone();
    later[1] = RECONCILE_FORMAT + 1;
    assert_eq!(
        decode(&later),
        Err(DecodeError::Format(RECONCILE_FORMAT + 1))
    );
    p.push(0);
    assert_eq!(decode(&p), Err(DecodeError::Trailing(1)));
    // And in a frame, as any record.
    let mut out = Vec::new();
    frame(&mut out, 1, &p[..p.len() - 1]);
    assert_eq!(scan(&out, Some(1)).frames.len(), 1);
}
