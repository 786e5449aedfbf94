//! Histories generated from a real sequential run of the model, with each
//! operation's interval drawn at random around its instant: always
//! linearizable. Grants injected beyond the limit at the end: never.

mod common;

use proptest::prelude::*;
use tally_check::{Checker, History, Kind, Op, Outcome, Verdict};

/// One step of the sequential run.
#[derive(Debug, Clone)]
struct Step {
    handle: usize,
    /// 0, 1: checkout; 2: check-in; 3: expiry (only if held).
    action: u8,
    /// How long before its instant the request was sent.
    before: u64,
    /// How long after its instant the reply was read.
    after: u64,
    /// The reply was lost (the effect happened all the same).
    unknown: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0usize..6,
        0u8..4,
        0u64..=250,
        0u64..=250,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(handle, action, before, after, unknown)| Step {
            handle,
            action,
            before,
            after,
            unknown,
        })
}

/// Instants are 100 apart; a handle's operations (one client's, sent one
/// after the other) never overlap each other; other handles' do.
const GAP: u64 = 100;

/// Runs `steps` on a feature of `limit` seats, `initial` handles held
/// first; returns the history and the handles held at the end.
fn run(limit: u32, initial: usize, steps: &[Step], unknowns: bool) -> (History, usize) {
    let (h, held, _) = run_quiet(limit, initial, steps, unknowns, None);
    (h, held)
}

/// A quiet time after the `quiet`-th step's instant: nothing is in flight
/// from `QUIET / 3` after that instant to `QUIET / 3` before the next.
const QUIET: u64 = 3000;

/// As [`run`], with a quiet time after step `quiet` (if there is such a
/// step); also returns the handles held in the quiet time and when it is.
fn run_quiet(
    limit: u32,
    initial: usize,
    steps: &[Step],
    unknowns: bool,
    quiet: Option<usize>,
) -> (History, usize, Option<(usize, u64)>) {
    let mut in_quiet = None;
    let mut held: Vec<usize> = (0..initial.min(limit as usize)).collect();
    let start: Vec<String> = held.iter().map(|h| format!("h{h}")).collect();
    // (handle, kind, outcome, instant, step)
    let mut done = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let t = 1000
            + GAP * i as u64
            + if quiet.is_some_and(|q| i > q) {
                QUIET
            } else {
                0
            };
        let has = held.contains(&s.handle);
        let (kind, outcome) = match s.action {
            0 | 1 if has => (Kind::Checkout, Outcome::Granted),
            0 | 1 if held.len() < limit as usize => {
                held.push(s.handle);
                (Kind::Checkout, Outcome::Granted)
            }
            0 | 1 => (Kind::Checkout, Outcome::Denied),
            2 if has => {
                held.retain(|&h| h != s.handle);
                (Kind::Checkin, Outcome::Released)
            }
            2 => (Kind::Checkin, Outcome::NotHeld),
            _ if has => {
                held.retain(|&h| h != s.handle);
                (Kind::Expiry, Outcome::Released)
            }
            _ => continue,
        };
        let outcome = if unknowns && s.unknown && kind != Kind::Expiry {
            Outcome::Unknown
        } else {
            outcome
        };
        done.push((s.handle, kind, outcome, t, s));
        if quiet == Some(i) {
            in_quiet = Some((held.len(), t));
        }
    }
    let mut ops = Vec::new();
    for (k, &(h, kind, outcome, t, s)) in done.iter().enumerate() {
        let prev = done[..k].iter().rev().find(|d| d.0 == h).map(|d| d.3);
        let next = done[k + 1..].iter().find(|d| d.0 == h).map(|d| d.3);
        // Within the gaps to the handle's neighbours (split at the middle):
        // sent after the one before was answered, answered before the next
        // is sent.
        let earliest = prev.map_or(0, |p| (p + t) / 2 + 1);
        let invoked = t.saturating_sub(s.before).max(earliest).min(t);
        let latest = next.map_or(u64::MAX, |n| (t + n) / 2);
        let responded = if outcome == Outcome::Unknown {
            // The client may give up before the request took effect.
            (invoked + s.after / 4).max(invoked)
        } else {
            (t + s.after).min(latest).max(t)
        };
        let mut op = Op::new(
            h as u32,
            kind,
            &format!("h{h}"),
            invoked,
            responded,
            outcome,
        );
        if outcome == Outcome::Unknown && s.after % 2 == 0 {
            // Settled some time after it took effect.
            op = op.settled_by(t + s.before);
        }
        ops.push(op);
    }
    let history = History::from_ops(limit, ops).unwrap().with_held(start);
    (history, held.len(), in_quiet)
}

fn with_grants_at_the_end(h: &History, n: usize) -> History {
    let end = h.ops().iter().map(|o| o.responded).max().unwrap_or(0) + 1;
    let mut h = h.clone();
    for j in 0..n {
        h.push(Op::checkout(
            100 + j as u32,
            &format!("x{j}"),
            end,
            end + 10 + j as u64,
            Outcome::Granted,
        ))
        .unwrap();
    }
    h
}

proptest! {
    #[test]
    fn a_real_run_is_accepted(
        limit in 1u32..=4,
        initial in 0usize..=4,
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let (h, _) = run(limit, initial, &steps, true);
        match Checker::new().check(&h) {
            Verdict::Linearizable { order } => common::replay(&h, &order),
            other => prop_assert!(false, "{other:?}\n{h}"),
        }
    }

    #[test]
    fn grants_beyond_the_limit_are_rejected_and_up_to_it_accepted(
        limit in 1u32..=4,
        initial in 0usize..=4,
        steps in prop::collection::vec(step(), 0..40),
    ) {
        // Known replies only: every order leaves the same handles held at
        // the end (a handle's operations never overlap).
        let (h, held) = run(limit, initial, &steps, false);
        let room = limit as usize - held;
        let up_to = with_grants_at_the_end(&h, room);
        let v = Checker::new().check(&up_to);
        prop_assert!(v.is_linearizable(), "{v:?}\n{up_to}");
        let beyond = with_grants_at_the_end(&h, room + 1);
        match Checker::new().check(&beyond) {
            Verdict::Violation(v) => {
                // Reported at the last injected grant's reply: the first
                // moment one seat too many is out in every order.
                prop_assert!(v.exact);
                prop_assert_eq!(v.op, Some(beyond.ops().len() - 1), "{}\n{}", v, beyond);
            }
            other => prop_assert!(false, "{other:?}\n{beyond}"),
        }
    }

    #[test]
    fn a_denial_at_the_end_is_legal_only_when_the_seats_are_out(
        limit in 1u32..=4,
        initial in 0usize..=4,
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let (mut h, held) = run(limit, initial, &steps, false);
        let end = h.ops().iter().map(|o| o.responded).max().unwrap_or(0) + 1;
        h.push(Op::checkout(99, "late", end, end + 5, Outcome::Denied)).unwrap();
        let v = Checker::new().check(&h);
        if held == limit as usize {
            prop_assert!(v.is_linearizable(), "{v:?}\n{h}");
        } else {
            prop_assert!(v.is_violation(), "{v:?}\n{h}");
        }
    }

    #[test]
    fn an_over_grant_in_a_quiet_moment_is_named(
        limit in 1u32..=4,
        initial in 0usize..=4,
        steps in prop::collection::vec(step(), 1..40),
        at in any::<prop::sample::Index>(),
    ) {
        // Known replies only, and nothing in flight in the quiet time: the
        // holders then are the same in every order. Grants of fresh
        // handles there, one more than the free seats, each checked in
        // soon after: the last of them is the first over-grant.
        let (mut h, _, quiet) = run_quiet(limit, initial, &steps, false, Some(at.index(steps.len())));
        let Some((held, t)) = quiet else {
            // That step did nothing (an expiry of a handle not held).
            return Ok(());
        };
        let n = h.ops().len();
        let extra = limit as usize - held + 1;
        for j in 0..extra as u64 {
            h.push(Op::checkout(200, &format!("q{j}"), t + QUIET / 3, t + QUIET / 3 + 10 + j, Outcome::Granted))
                .unwrap();
        }
        for j in 0..extra as u64 {
            h.push(Op::checkin(200, &format!("q{j}"), t + QUIET / 3 + 100, t + QUIET / 3 + 200, Outcome::Released))
                .unwrap();
        }
        match Checker::new().check(&h) {
            Verdict::Violation(v) => {
                prop_assert!(v.exact);
                prop_assert_eq!(v.op, Some(n + extra - 1), "{}\n{}", v, h);
            }
            other => prop_assert!(false, "{other:?}\n{h}"),
        }
        // One fewer fits.
        let mut fits = h.ops()[..n].to_vec();
        fits.extend(h.ops()[n..n + extra - 1].iter().cloned());
        fits.extend(h.ops()[n + extra..n + 2 * extra - 1].iter().cloned());
        let fits = History::from_ops(limit, fits).unwrap().with_held(h.held().to_vec());
        let v = Checker::new().check(&fits);
        prop_assert!(v.is_linearizable(), "{v:?}\n{fits}");
    }
}
