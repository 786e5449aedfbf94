//! Hand-made histories, legal and illegal, with the operation each failure
//! must be reported at.

mod common;

use common::replay;
use tally_check::{Checker, Denials, History, HistoryError, Kind, Op, Outcome, Verdict};

use Outcome::{Denied, Granted, NotHeld, Released, Unknown};

fn check(h: &History) -> Verdict {
    Checker::new().check(h)
}

fn history(limit: u32, ops: impl IntoIterator<Item = Op>) -> History {
    History::from_ops(limit, ops).expect("a well-formed history")
}

/// The failing op of a violation, or a panic saying what the verdict was.
fn failing_op(v: &Verdict) -> Option<usize> {
    match v {
        Verdict::Violation(v) => {
            assert!(v.exact, "{v}");
            v.op
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

fn linearizable(h: &History) {
    match check(h) {
        Verdict::Linearizable { order } => replay(h, &order),
        other => panic!("expected linearizable, got {other:?}"),
    }
}

#[test]
fn over_grant_across_two_concurrent_clients() {
    // One seat; two clients' checkouts overlap and both are granted:
    // whichever goes first, the second had no seat.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkout(2, "b", 5, 15, Granted),
        ],
    );
    assert_eq!(failing_op(&check(&h)), Some(1));
    // One of them denied instead: legal either way round.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkout(2, "b", 5, 15, Denied),
        ],
    );
    linearizable(&h);
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Denied),
            Op::checkout(2, "b", 5, 15, Granted),
        ],
    );
    linearizable(&h);
}

#[test]
fn over_grant_reported_at_the_first_response_that_cannot_be_ordered() {
    // Two seats, a legal stretch, then a third holder while two hold.
    let h = history(
        2,
        [
            Op::checkout(1, "a", 0, 5, Granted),
            Op::checkout(2, "b", 6, 9, Granted),
            Op::checkin(1, "a", 10, 12, Released),
            Op::checkout(3, "c", 13, 15, Granted),
            Op::checkout(1, "a", 16, 20, Granted), // third seat: b, c, a
            Op::checkin(2, "b", 30, 31, Released),
        ],
    );
    let v = check(&h);
    assert_eq!(failing_op(&v), Some(4));
    let Verdict::Violation(v) = v else {
        unreachable!()
    };
    assert!(
        v.to_string().contains("op 4 (client 1: checkout of a"),
        "{v}"
    );
}

#[test]
fn a_grant_may_use_a_seat_whose_check_in_was_answered_later() {
    // "a" holds the one seat; its check-in is in flight over [10, 30]; "b"
    // is granted at [15, 20]: the check-in took effect first.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 5, Granted),
            Op::checkin(1, "a", 10, 30, Released),
            Op::checkout(2, "b", 15, 20, Granted),
        ],
    );
    linearizable(&h);
    // But not one answered before the check-in was even sent.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 5, Granted),
            Op::checkout(2, "b", 6, 8, Granted),
            Op::checkin(1, "a", 10, 30, Released),
        ],
    );
    assert_eq!(failing_op(&check(&h)), Some(1));
    // Touching intervals are concurrent: check-in sent at 8, grant answered at 8.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 5, Granted),
            Op::checkout(2, "b", 6, 8, Granted),
            Op::checkin(1, "a", 8, 30, Released),
        ],
    );
    linearizable(&h);
}

#[test]
fn unknown_checkouts_may_or_may_not_have_taken_effect() {
    // A timed-out checkout, then another client granted the only seat: the
    // first never took effect.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Unknown),
            Op::checkout(2, "b", 20, 25, Granted),
        ],
    );
    linearizable(&h);
    // ... or it took effect after its client gave up (its later check-in
    // says it held), before b's grant only if b's seat was free again.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Unknown),
            Op::checkin(1, "a", 40, 45, Released),
            Op::checkout(2, "b", 50, 55, Granted),
        ],
    );
    linearizable(&h);
    // Both held at once, whichever order: a was held at its check-in at
    // [40, 45] and b from [20, 25] on, never checked in.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Unknown),
            Op::checkout(2, "b", 20, 25, Granted),
            Op::checkin(1, "a", 40, 45, Released),
        ],
    );
    assert_eq!(failing_op(&check(&h)), Some(2));
}

#[test]
fn unknown_check_ins_may_or_may_not_have_taken_effect() {
    // a's check-in timed out; b is granted the seat later: it took effect.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 5, Granted),
            Op::checkin(1, "a", 10, 20, Unknown),
            Op::checkout(2, "b", 100, 110, Granted),
        ],
    );
    linearizable(&h);
    // Without it, b's grant is an over-grant.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 5, Granted),
            Op::checkout(2, "b", 100, 110, Granted),
        ],
    );
    assert_eq!(failing_op(&check(&h)), Some(1));
    // An unknown check-in that took effect cannot have before its send.
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 5, Granted),
            Op::checkout(2, "b", 6, 8, Granted),
            Op::checkin(1, "a", 10, 20, Unknown),
        ],
    );
    assert_eq!(failing_op(&check(&h)), Some(1));
}

#[test]
fn a_settled_unknown_took_effect_by_then_or_never() {
    // b holds the one seat until its check-in at [50, 55]; a's checkout
    // timed out. With no bound it may have taken effect after b's check-in,
    // so a's check-in at [60, 65] is legal.
    let ops = |settled: Option<u64>| {
        let mut a = Op::checkout(1, "a", 0, 10, Unknown);
        if let Some(t) = settled {
            a = a.settled_by(t);
        }
        history(
            1,
            [
                a,
                Op::checkin(2, "b", 50, 55, Released),
                Op::checkin(1, "a", 60, 65, Released),
            ],
        )
        .with_held(["b"])
    };
    linearizable(&ops(None));
    linearizable(&ops(Some(57)));
    // Settled by 20, while b held the seat: it never took effect, and a
    // held nothing to check in.
    assert_eq!(failing_op(&check(&ops(Some(20)))), Some(2));
    // A settle time is for unknown results only.
    let mut h = History::new(1);
    assert_eq!(
        h.push(Op::checkout(1, "a", 0, 10, Granted).settled_by(20)),
        Err(HistoryError::Mismatch { op: 0 })
    );
    assert_eq!(
        h.push(Op::checkout(1, "a", 30, 40, Unknown).settled_by(20)),
        Err(HistoryError::Backwards { op: 0 })
    );
}

#[test]
fn denials_must_have_seen_every_seat_out() {
    let full = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkout(2, "b", 20, 30, Denied),
        ],
    );
    linearizable(&full);
    // Two seats, one out: the denial had a free seat throughout.
    let free = history(
        2,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkout(2, "b", 20, 30, Denied),
        ],
    );
    assert_eq!(failing_op(&check(&free)), Some(1));
    // Unless denials are not checked.
    assert!(Checker::new()
        .denials(Denials::Unchecked)
        .check(&free)
        .is_linearizable());
    // A denial while a check-in of the last seat is in flight: legal (it
    // came first).
    let racing = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkin(1, "a", 15, 40, Released),
            Op::checkout(2, "b", 20, 30, Denied),
        ],
    );
    linearizable(&racing);
    // A held handle is renewed, never denied.
    let renewal = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkout(1, "a", 20, 30, Denied),
        ],
    );
    assert_eq!(failing_op(&check(&renewal)), Some(1));
}

#[test]
fn renewals_take_no_second_seat() {
    let h = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkout(1, "a", 20, 30, Granted),
            Op::checkout(2, "a", 25, 35, Granted), // the same handle from elsewhere
            Op::checkout(3, "b", 40, 50, Denied),
        ],
    );
    linearizable(&h);
}

#[test]
fn check_ins_must_agree_with_what_is_held() {
    let h = history(
        1,
        [
            Op::checkin(1, "a", 0, 10, NotHeld),
            Op::checkout(1, "a", 20, 30, Granted),
            Op::checkin(1, "a", 40, 50, Released),
            Op::checkin(1, "a", 60, 70, NotHeld),
        ],
    );
    linearizable(&h);
    let h = history(
        1,
        [
            Op::checkout(1, "a", 20, 30, Granted),
            Op::checkin(1, "a", 40, 50, NotHeld),
        ],
    );
    assert_eq!(failing_op(&check(&h)), Some(1));
    let h = history(1, [Op::checkin(1, "a", 40, 50, Released)]);
    assert_eq!(failing_op(&check(&h)), Some(0));
}

#[test]
fn expiries_free_seats_from_when_they_were_due() {
    // a's linger ran out between 100 (its deadline) and 200 (seen).
    let legal = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::expiry(0, "a", 100, 200),
            Op::checkout(2, "b", 150, 160, Granted),
        ],
    );
    linearizable(&legal);
    let early = history(
        1,
        [
            Op::checkout(1, "a", 0, 10, Granted),
            Op::checkout(2, "b", 50, 60, Granted),
            Op::expiry(0, "a", 100, 200),
        ],
    );
    assert_eq!(failing_op(&check(&early)), Some(1));
}

#[test]
fn handles_held_at_the_start_count() {
    let h = history(2, [Op::checkout(1, "c", 0, 10, Granted)]).with_held(["a", "b"]);
    assert_eq!(failing_op(&check(&h)), Some(0));
    let h = history(
        2,
        [
            Op::checkin(1, "a", 0, 5, Released),
            Op::checkout(1, "c", 6, 10, Granted),
        ],
    )
    .with_held(["a", "b"]);
    linearizable(&h);
    let over = History::new(1).with_held(["a", "b"]);
    assert_eq!(failing_op(&check(&over)), None);
}

#[test]
fn an_empty_history_is_linearizable() {
    assert_eq!(
        check(&History::new(0)),
        Verdict::Linearizable { order: vec![] }
    );
    // Only unknowns: nothing need have happened.
    let h = history(0, [Op::checkout(1, "a", 0, 10, Unknown)]);
    assert_eq!(check(&h), Verdict::Linearizable { order: vec![] });
}

#[test]
fn the_search_is_bounded() {
    // Many concurrent unknown checkouts and an impossible grant at the end:
    // a search of 10 steps cannot decide it.
    let mut ops: Vec<Op> = (0..12)
        .map(|i| Op::checkout(i, &format!("u{i}"), 0, 1000, Unknown))
        .collect();
    ops.push(Op::checkout(99, "x", 0, 1000, Granted));
    ops.push(Op::checkout(98, "y", 0, 1000, Granted));
    let h = history(1, ops);
    assert!(matches!(
        Checker::new().max_steps(10).check(&h),
        Verdict::GaveUp { steps: 10 }
    ));
    assert_eq!(failing_op(&check(&h)), Some(13));
}

#[test]
fn malformed_operations_are_refused() {
    let mut h = History::new(1);
    assert_eq!(
        h.push(Op::checkout(1, "a", 10, 5, Granted)),
        Err(HistoryError::Backwards { op: 0 })
    );
    assert_eq!(
        h.push(Op::checkin(1, "a", 0, 5, Granted)),
        Err(HistoryError::Mismatch { op: 0 })
    );
    assert_eq!(
        h.push(Op::checkout(1, "a", 0, 5, Released)),
        Err(HistoryError::Mismatch { op: 0 })
    );
    assert_eq!(
        h.push(Op::new(1, Kind::Expiry, "a", 0, 5, Unknown)),
        Err(HistoryError::Mismatch { op: 0 })
    );
    assert_eq!(
        h.push(Op::checkout(1, "a b", 0, 5, Granted)),
        Err(HistoryError::BadHandle { op: 0 })
    );
    assert_eq!(
        h.push(Op::checkout(1, "", 0, 5, Granted)),
        Err(HistoryError::BadHandle { op: 0 })
    );
    assert!(h.ops().is_empty());
}

#[test]
fn the_text_form_reads_back() {
    let text = "\
# a recorded history
limit 2
held h0 h9 h0
1 checkout h1 100 120 granted
2 checkin h0 105 130 released   # a comment
3 checkout h2 110 140 denied

4 checkout h3 115 900 unknown
6 checkin h3 116 901 unknown 2000
0 expiry h1 200 250 released
5 checkin h7 300 310 not_held
";
    let h = History::parse(text).unwrap();
    assert_eq!(h.limit(), 2);
    assert_eq!(h.held(), ["h0", "h9"]);
    assert_eq!(h.ops().len(), 7);
    assert_eq!(
        h.ops()[4],
        Op::checkin(6, "h3", 116, 901, Unknown).settled_by(2000)
    );
    assert_eq!(h.ops()[5], Op::expiry(0, "h1", 200, 250));
    assert_eq!(History::parse(&h.to_string()).unwrap(), h);
    linearizable(&h);
}

#[test]
fn bad_text_is_refused_with_its_line() {
    let line_of = |t: &str| match History::parse(t) {
        Err(HistoryError::Parse { line, .. }) => line,
        other => panic!("{other:?}"),
    };
    assert_eq!(line_of(""), 1);
    assert_eq!(line_of("1 checkout a 0 1 granted"), 1);
    assert_eq!(line_of("limit x"), 1);
    assert_eq!(line_of("limit 1\nlimit 2"), 2);
    assert_eq!(line_of("limit 1\n1 checkout a 0 1"), 2);
    assert_eq!(line_of("limit 1\n1 borrow a 0 1 granted"), 2);
    assert_eq!(line_of("limit 1\n1 checkout a 0 1 maybe"), 2);
    assert_eq!(line_of("limit 1\n\n1 checkout a 5 1 granted"), 3);
    assert_eq!(line_of("limit 1\nx checkout a 0 1 granted"), 2);
    assert_eq!(line_of("limit 1\n1 checkout a 0 1 unknown x"), 2);
    assert_eq!(line_of("limit 1\n1 checkout a 0 1 granted 5"), 2);
}

#[test]
fn a_log_out_of_engine_order_across_a_failover_is_caught() {
    // docs/replication.md, "Why one loop": X's check-in and Y's grant of
    // X's seat reach the log in the wrong order, the leader dies between
    // them. The new leader still holds X, so X's client, retrying, is
    // granted X as a renewal while Y holds the one seat.
    let h = history(
        1,
        [
            Op::checkin(1, "x", 10, 40, Unknown).settled_by(100),
            Op::checkout(2, "y", 20, 30, Granted),
            Op::checkout(1, "x", 200, 210, Granted),
        ],
    )
    .with_held(["x"]);
    assert_eq!(failing_op(&check(&h)), Some(2));
    // Had the new leader released X (its check-in committed), X's retry
    // would have been denied: legal.
    let h = history(
        1,
        [
            Op::checkin(1, "x", 10, 40, Unknown).settled_by(100),
            Op::checkout(2, "y", 20, 30, Granted),
            Op::checkout(1, "x", 200, 210, Denied),
        ],
    )
    .with_held(["x"]);
    linearizable(&h);
}
