//! The DUP_GROUP use rules (`uses.rs`), through the engine's API with an
//! explicit `now`.

use super::*;
use crate::engine::tests::{engine, line};
use crate::engine::{table, Expired, Names, Request};
use crate::license::DupGroup;
use crate::sync::Mutex;

const NOW: Millis = 1_700_000_000_000;

/// F: one license shared by alice@pc1's handles (DUP_GROUP=UH). G: one
/// license, one instance per handle.
fn shared() -> Engine {
    let mut f = line("F", "1.0", Some(1));
    f.dup_group = DupGroup::parse("UH").unwrap();
    engine(vec![f, line("G", "1.0", Some(1))])
}

/// A grant of [`Engine::checkout_use`] and what it counted (read as the
/// grant).
#[derive(Debug)]
struct Used {
    grant: Grant,
    counted: Option<Counted>,
}

impl std::ops::Deref for Used {
    type Target = Grant;

    fn deref(&self) -> &Grant {
        &self.grant
    }
}

/// A checkout of F by alice@pc1 with `handle`, `linger_ms`, at `now`; the
/// caller's use of the instance before is `prior`, whatever its id.
fn out(e: &Engine, handle: &str, prior: Option<Use>, linger_ms: u64, now: Millis) -> Used {
    try_out(e, "alice", handle, prior, linger_ms, now).unwrap()
}

fn try_out(
    e: &Engine,
    user: &str,
    handle: &str,
    prior: Option<Use>,
    linger_ms: u64,
    now: Millis,
) -> Result<Used, Denial> {
    let mut r = Request::new("F", user, "pc1", handle);
    r.linger_ms = linger_ms;
    let (grant, counted) = e.checkout_use(&r, None, now, |_| prior)?;
    Ok(Used { grant, counted })
}

fn counted(g: &Used) -> Counted {
    g.counted.expect("a counted use")
}

fn deadline(e: &Engine, id: InstanceId) -> Option<Option<Millis>> {
    e.table.deadline_of(id).map(deadline_out)
}

fn kept(schedule: Option<Millis>, promised: Option<Millis>) -> Ended {
    Ended::Kept { schedule, promised }
}

#[test]
fn the_last_use_checks_in() {
    let e = shared();
    let a = out(&e, "a", None, 0, NOW);
    assert_eq!(
        (a.kind, counted(&a)),
        (
            GrantKind::New,
            Counted {
                new_use: true,
                promised: None
            }
        )
    );
    let id = a.id.unwrap();
    for h in ["b", "c"] {
        let g = out(&e, h, None, 0, NOW);
        assert_eq!((g.id, g.kind), (Some(id), GrantKind::Renewed));
        assert!(counted(&g).new_use);
    }
    assert_eq!(e.uses(id).map(|u| (u.count(), u.bound())), Some((3, 3)));
    // Bob is refused while any use lives.
    assert_eq!(
        try_out(&e, "bob", "x", None, 0, NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    assert_eq!(e.end_uses(id, 1, 1, NOW), kept(None, None));
    assert_eq!(e.end_uses(id, 1, 1, NOW), kept(None, None));
    match e.end_uses(id, 1, 1, NOW) {
        Ended::Last(Some(r)) => assert_eq!((r.id, r.count), (id, 1)),
        other => panic!("the last use checks in: {other:?}"),
    }
    assert!(!e.is_live(id));
    assert_eq!(e.end_uses(id, 1, 1, NOW), Ended::Last(None), "gone");
    // A connection's two uses end together.
    let id = out(&e, "a", None, 0, NOW).id.unwrap();
    out(&e, "b", None, 0, NOW);
    assert!(matches!(e.end_uses(id, 2, 2, NOW), Ended::Last(Some(_))));
    assert!(
        try_out(&e, "bob", "x", None, 0, NOW).is_ok(),
        "the license is back"
    );
}

#[test]
fn a_renewal_of_its_own_use_counts_nothing_new() {
    let e = shared();
    let id = out(&e, "a", None, 0, NOW).id.unwrap();
    let g = out(&e, "a", Some(Use::Bound), 0, NOW + 1);
    assert_eq!(
        counted(&g),
        Counted {
            new_use: false,
            promised: None
        }
    );
    assert_eq!(e.uses(id).map(|u| (u.count(), u.bound())), Some((1, 1)));
    // From bound to lingering: the instance's deadline is its promise.
    let g = out(&e, "a", Some(Use::Bound), 50, NOW + 2);
    assert_eq!((g.deadline, g.schedule), (Some(NOW + 52), Some(NOW + 52)));
    assert_eq!(counted(&g).promised, Some(NOW + 52));
    assert_eq!(e.uses(id).map(|u| (u.count(), u.bound())), Some((1, 0)));
    assert_eq!(deadline(&e, id), Some(Some(NOW + 52)));
}

#[test]
fn a_bound_use_holds_and_a_promise_outlives_its_use() {
    let e = shared();
    // x1 promised +30; x2 bound: held until check-in meanwhile.
    let g = out(&e, "x1", None, 30, NOW);
    let id = g.id.unwrap();
    assert_eq!((g.deadline, g.schedule), (Some(NOW + 30), Some(NOW + 30)));
    let g = out(&e, "x2", None, 0, NOW + 1);
    assert_eq!((g.deadline, g.schedule), (None, None));
    assert_eq!(
        counted(&g).promised,
        Some(NOW + 30),
        "the journal keeps x1's promise"
    );
    assert_eq!(deadline(&e, id), Some(None), "held while x2 lives");
    // Another lingering use cannot cut the bound one short.
    let g = out(&e, "m1", None, 1, NOW + 2);
    assert_eq!((g.deadline, g.schedule), (Some(NOW + 3), None));
    assert_eq!(e.expire(id, NOW + 100), Expired::Gone, "no deadline: held");
    assert!(e.is_live(id));
    // x1's connection closes: its promise is kept; x2's closes: the
    // instance's deadline becomes the latest promise.
    assert_eq!(e.end_uses(id, 1, 0, NOW + 4), kept(None, Some(NOW + 30)));
    assert_eq!(
        e.end_uses(id, 1, 1, NOW + 5),
        kept(Some(NOW + 30), Some(NOW + 30))
    );
    assert_eq!(deadline(&e, id), Some(Some(NOW + 30)));
    // m1's closes: no use left, x1's promise still ahead: held.
    assert_eq!(e.end_uses(id, 1, 0, NOW + 6), kept(None, Some(NOW + 30)));
    assert!(e.is_live(id));
    // A new bound use after all that still meets x1's promise.
    let g = out(&e, "x3", None, 0, NOW + 7);
    assert_eq!((g.id, counted(&g).promised), (Some(id), Some(NOW + 30)));
    assert_eq!(
        e.end_uses(id, 1, 1, NOW + 8),
        kept(Some(NOW + 30), Some(NOW + 30))
    );
    // Its expiry checks it in at the promise, not before.
    assert_eq!(e.expire(id, NOW + 29), Expired::Later(NOW + 30));
    assert!(matches!(e.expire(id, NOW + 30), Expired::Released(_)));
    // Past every promise, the last use's end checks in.
    let id = out(&e, "x4", None, 0, NOW + 40).id.unwrap();
    assert!(matches!(
        e.end_uses(id, 1, 1, NOW + 41),
        Ended::Last(Some(_))
    ));
}

#[test]
fn lingering_uses_whose_promises_passed_leave_it_to_the_expiry() {
    let e = shared();
    let id = out(&e, "a", None, 10, NOW).id.unwrap();
    out(&e, "b", None, 0, NOW);
    // b's connection closes past a's promise: due now.
    assert_eq!(e.end_uses(id, 1, 1, NOW + 20), kept(Some(NOW + 20), None));
    // a's closes: no use and no promise left, but a deadline: the expiry's.
    assert_eq!(e.end_uses(id, 1, 0, NOW + 21), Ended::Last(None));
    assert!(matches!(e.expire(id, NOW + 21), Expired::Released(_)));
}

#[test]
fn a_checkin_takes_back_its_own_promise_only() {
    let e = shared();
    let id = out(&e, "x1", None, 30, NOW).id.unwrap();
    out(&e, "x3", None, 10, NOW);
    assert_eq!(deadline(&e, id), Some(Some(NOW + 30)));
    // x1's CHECKIN: x3's promise is what is left.
    let r = e.check_in_use(id, "x1", false, NOW + 2);
    assert_eq!(r, kept(Some(NOW + 10), Some(NOW + 10)));
    assert_eq!(deadline(&e, id), Some(Some(NOW + 10)));
    // The last use, its own promise withdrawn: checked in.
    assert!(matches!(
        e.check_in_use(id, "x3", false, NOW + 3),
        Ended::Last(Some(_))
    ));
    assert!(!e.is_live(id));
    // A bound use's CHECKIN while a lingering one lives: the promise holds.
    let id = out(&e, "y1", None, 0, NOW + 4).id.unwrap();
    out(&e, "y2", None, 40, NOW + 4);
    assert_eq!(deadline(&e, id), Some(None));
    let r = e.check_in_use(id, "y1", true, NOW + 5);
    assert_eq!(r, kept(Some(NOW + 44), Some(NOW + 44)));
}

#[test]
fn a_promise_outlives_the_connection_that_got_it() {
    let e = shared();
    let id = out(&e, "a", None, 60, NOW).id.unwrap();
    assert_eq!(e.end_uses(id, 1, 0, NOW + 1), kept(None, Some(NOW + 60)));
    assert!(e.is_live(id));
    assert_eq!(
        try_out(&e, "bob", "x", None, 0, NOW + 2)
            .unwrap_err()
            .reason,
        Reason::AllInUse
    );
    // A new use renews it; its check-in leaves a's promise.
    out(&e, "b", None, 0, NOW + 3);
    assert_eq!(
        e.check_in_use(id, "b", true, NOW + 4),
        kept(Some(NOW + 60), Some(NOW + 60))
    );
    assert!(matches!(e.expire(id, NOW + 60), Expired::Released(_)));
}

#[test]
fn a_deadline_from_before_the_count_is_a_promise() {
    // After a restart the instance's restored deadline is nobody's
    // promise, and must still be kept.
    let e = shared();
    let id = e
        .restore(&Restore {
            names: Names {
                feature: "F",
                user: "alice",
                host: "pc1",
                display: "",
                handle: "z0",
            },
            count: 1,
            version: 0,
            since_ms: NOW - 50,
            linger_ms: 500,
            deadline_ms: Some(NOW + 500),
            identity: None,
        })
        .unwrap();
    assert_eq!(e.uses(id), None, "not counted");
    let g = out(&e, "z", None, 0, NOW);
    assert_eq!((g.id, g.previous_deadline), (Some(id), Some(NOW + 500)));
    assert_eq!(counted(&g).promised, Some(NOW + 500));
    assert_eq!(
        e.end_uses(id, 1, 1, NOW + 1),
        kept(Some(NOW + 500), Some(NOW + 500))
    );
    // Uncounted and lingering: a close leaves it; a CHECKIN takes it back.
    let base = e_restore("c");
    let other = e.restore(&Restore {
        names: Names {
            user: "carl",
            ..base.names
        },
        ..base
    });
    let other = other.unwrap();
    assert_eq!(e.end_uses(other, 1, 0, NOW), Ended::Last(None));
    assert!(e.is_live(other));
    assert!(matches!(
        e.check_in_use(other, "c", false, NOW),
        Ended::Last(Some(_))
    ));
}

fn e_restore(handle: &str) -> Restore<'_> {
    Restore {
        names: Names {
            feature: "F",
            user: "alice",
            host: "pc1",
            display: "",
            handle,
        },
        count: 1,
        version: 0,
        since_ms: NOW,
        linger_ms: 100,
        deadline_ms: Some(NOW + 100),
        identity: None,
    }
}

#[test]
fn a_use_whose_instance_went_begins_anew() {
    let e = shared();
    let old = out(&e, "a", None, 1, NOW).id.unwrap();
    assert!(matches!(e.expire(old, NOW + 1), Expired::Released(_)));
    // The caller still lists its use of the old instance: not this one.
    let mut r = Request::new("F", "alice", "pc1", "a");
    r.linger_ms = 1;
    let (g, c) = e
        .checkout_use(&r, None, NOW + 2, |id| {
            (id == old).then_some(Use::Lingering)
        })
        .unwrap();
    assert_eq!(g.kind, GrantKind::New);
    assert_ne!(g.id, Some(old));
    assert!(c.expect("a counted use").new_use);
    assert_eq!(e.uses(g.id.unwrap()).map(|u| u.count()), Some(1));
    // Ending uses of the gone instance does nothing.
    assert_eq!(e.end_uses(old, 1, 0, NOW + 3), Ended::Last(None));
    assert_eq!(e.check_in_use(old, "a", false, NOW + 3), Ended::Last(None));
}

#[test]
fn a_removed_instance_leaves_no_uses_to_its_slot() {
    let e = shared();
    let id = out(&e, "a", None, 0, NOW).id.unwrap();
    out(&e, "b", None, 0, NOW);
    assert!(e.release(id).is_some(), "an admin REMOVE");
    let again = out(&e, "c", None, 0, NOW).id.unwrap();
    assert_ne!(again, id);
    assert_eq!(again.slot, id.slot, "the same slot, a new generation");
    assert_eq!(e.uses(again).map(|u| u.count()), Some(1));
    assert_eq!(e.uses(id), None);
    assert!(matches!(e.end_uses(again, 1, 1, NOW), Ended::Last(Some(_))));
}

#[test]
fn ungrouped_features_count_nothing() {
    let e = shared();
    let mut r = Request::new("G", "alice", "pc1", "h");
    r.linger_ms = 10;
    let (g, counted) = e
        .checkout_use(&r, None, NOW, |_| panic!("not asked"))
        .unwrap();
    assert_eq!((counted, g.schedule), (None, Some(NOW + 10)));
    let id = g.id.unwrap();
    assert_eq!(e.uses(id), None);
    // A raw checkout of the grouped feature counts nothing either (and
    // returns no count: a bare grant).
    let raw = e
        .checkout(&Request::new("F", "alice", "pc1", "a"), NOW)
        .unwrap();
    assert_eq!(e.uses(raw.id.unwrap()), None);
}

#[test]
fn a_reread_carries_uses_across_and_adds_up_merged_ones() {
    // Old: alice@pc1 and alice@pc2 are two instances (DUP_GROUP=UH).
    let old = {
        let mut f = line("F", "1.0", Some(2));
        f.dup_group = DupGroup::parse("UH").unwrap();
        engine(vec![f])
    };
    let take = |host, handle, linger_ms| {
        let mut r = Request::new("F", "alice", host, handle);
        r.linger_ms = linger_ms;
        old.checkout_use(&r, None, NOW, |_| None)
            .unwrap()
            .0
            .id
            .unwrap()
    };
    let one = take("pc1", "a", 0);
    take("pc1", "b", 70);
    let two = take("pc2", "c", 0);
    // New: DUP_GROUP=U merges them.
    let new = {
        let mut f = line("F", "1.0", Some(2));
        f.dup_group = DupGroup::parse("U").unwrap();
        engine(vec![f])
    };
    let mut ids = Vec::new();
    for h in old.snapshot(NOW).features[0].pools[0].holders.iter() {
        let r = Restore {
            names: Names {
                feature: "F",
                user: &h.user,
                host: &h.host,
                display: &h.display,
                handle: &h.handle,
            },
            count: h.count,
            version: 0,
            since_ms: h.since_ms,
            linger_ms: h.linger_ms,
            deadline_ms: h.deadline_ms,
            identity: Some(h.identity),
        };
        ids.push(new.restore_uses(&r, old.uses(h.id).as_ref()).unwrap());
    }
    assert_eq!(ids[0], ids[1], "merged");
    let id = ids[0];
    let u = new.uses(id).unwrap();
    assert_eq!((u.count(), u.bound()), (3, 2));
    assert_eq!(u.promises().collect::<Vec<_>>(), vec![("b", NOW + 70)]);
    assert_eq!(old.uses(one).map(|u| u.count()), Some(2));
    assert_eq!(old.uses(two).map(|u| u.count()), Some(1));
    // The uses end one by one in the new engine; the promise holds last.
    assert_eq!(new.end_uses(id, 2, 1, NOW + 1), kept(None, Some(NOW + 70)));
    assert_eq!(
        new.end_uses(id, 1, 1, NOW + 2),
        kept(Some(NOW + 70), Some(NOW + 70))
    );
    // A feature no longer grouped drops its uses.
    let plain = engine(vec![line("F", "1.0", Some(2))]);
    let h = &old.snapshot(NOW).features[0].pools[0].holders[0];
    let r = Restore {
        names: Names {
            feature: "F",
            user: &h.user,
            host: &h.host,
            display: &h.display,
            handle: &h.handle,
        },
        count: 1,
        version: 0,
        since_ms: NOW,
        linger_ms: 0,
        deadline_ms: None,
        identity: None,
    };
    let id = plain.restore_uses(&r, old.uses(h.id).as_ref()).unwrap();
    assert_eq!(plain.uses(id), None);
}

#[test]
fn only_engines_with_grouped_features_pay_for_uses() {
    // A lock and an empty list per bucket of 16 slots: 2 bytes a slot.
    assert!(std::mem::size_of::<Mutex<BucketUses>>() <= 32);
    let plain = engine(vec![line("G", "1.0", Some(100))]);
    let grouped = {
        let mut f = line("G", "1.0", Some(100));
        f.dup_group = DupGroup::parse("UH").unwrap();
        engine(vec![f])
    };
    assert_eq!(plain.table_slots(), grouped.table_slots());
    let buckets = plain.table_slots() / table::SLOTS_PER_BUCKET;
    assert_eq!(
        grouped.table_bytes() - plain.table_bytes(),
        buckets * std::mem::size_of::<Mutex<BucketUses>>()
    );
}

#[test]
#[cfg(target_pointer_width = "64")]
fn what_was_counted_comes_beside_the_grant_not_in_it() {
    // Every checkout returns a `Grant`: it stays the 80 bytes it was before
    // uses were counted (a `Counted` inside took it to 104, and the plain
    // checkout +21 instructions, bench/instructions).
    assert_eq!(std::mem::size_of::<Grant>(), 80);
}
