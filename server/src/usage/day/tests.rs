//! A scripted day on a manual clock: exact peaks, counts, denials, time at
//! full use, and the split at UTC midnight.

use tally_core::clock::{Clock, ManualClock};

use super::*;

/// 2026-12-03T00:00:00Z.
const DAY0: u64 = 20_790 * DAY_MS;
const HOUR: u64 = 3_600_000;

fn grant(at_ms: u64, user: &'static str, kind: OutKind, count: u32) -> UsageEvent<'static> {
    UsageEvent {
        at_ms,
        feature: "F",
        known: true,
        user,
        host: "pc1",
        change: Change::Grant {
            kind,
            overdraft: false,
            count,
        },
    }
}

fn release(at_ms: u64, cause: Cause, count: u32) -> UsageEvent<'static> {
    UsageEvent {
        at_ms,
        feature: "F",
        known: true,
        user: "x",
        host: "pc1",
        change: Change::Release { cause, count },
    }
}

fn denial(at_ms: u64, reason: &'static str) -> UsageEvent<'static> {
    UsageEvent {
        at_ms,
        feature: "F",
        known: true,
        user: "zoe",
        host: "pc9",
        change: Change::Denial { reason },
    }
}

#[test]
fn the_day_numbers_are_utc_dates() {
    assert_eq!(day_text(day_of(DAY0)), "2026-12-03");
    assert_eq!(parse_day("2026-12-03"), Some(day_of(DAY0)));
    assert_eq!(day_of(DAY0 - 1), day_of(DAY0) - 1);
    assert_eq!(parse_day("2026-02-30"), None);
    assert_eq!(parse_day("2026-1-01"), None);
    assert_eq!(parse_day("+2026-12-3"), None);
}

#[test]
fn a_scripted_day_gives_exact_figures() {
    let clock = ManualClock::new(DAY0 + 8 * HOUR);
    let mut a = Aggregator::new(clock.now_ms());
    // 3 licenses, one recovered from the journal at start.
    a.seed("F", Some(3), 1, clock.now_ms());
    clock.advance(HOUR); // 09:00
    a.apply(&grant(clock.now_ms(), "alice", OutKind::New, 1));
    a.apply(&grant(clock.now_ms(), "bob", OutKind::New, 1)); // 3 in use: full
    clock.advance(HOUR / 2); // 09:30
    a.apply(&denial(clock.now_ms(), "ALL_IN_USE"));
    a.apply(&denial(clock.now_ms(), "ALL_IN_USE"));
    a.apply(&grant(clock.now_ms(), "alice", OutKind::Renewal, 1));
    clock.advance(HOUR / 2); // 10:00: one lingers out
    a.apply(&release(clock.now_ms(), Cause::LingerExpiry, 1));
    clock.advance(HOUR); // 11:00
                         // 4 of 3: the engine grants beyond the count only as an overdraft.
    let mut carol = grant(clock.now_ms(), "carol", OutKind::New, 2);
    carol.change = Change::Grant {
        kind: OutKind::New,
        overdraft: true,
        count: 2,
    };
    a.apply(&carol);
    a.apply(&denial(clock.now_ms(), "EXPIRED"));
    clock.advance(HOUR); // 12:00
    a.apply(&release(clock.now_ms(), Cause::IdleTimeout, 2));
    a.apply(&release(clock.now_ms(), Cause::Disconnect, 1));
    a.apply(&release(clock.now_ms(), Cause::Remove, 1));
    let s = a.today("F").unwrap();
    assert_eq!(a.in_use("F"), 0);
    assert_eq!(s.licensed, Some(3));
    assert_eq!(s.peak_in_use, 4);
    assert_eq!(s.checkouts, 3);
    assert_eq!(s.renewals, 1);
    assert_eq!(s.overdraft_peak, 1);
    assert_eq!(
        s.denials,
        [("ALL_IN_USE".to_string(), 2), ("EXPIRED".to_string(), 1)].into()
    );
    // Full 09:00-10:00 and 11:00-12:00.
    assert_eq!(s.full_use_ms, 2 * HOUR);
    // alice, bob, carol (the denied zoe is no user of the feature).
    assert_eq!((s.distinct_users, s.distinct_hosts), (3, 1));
    // One row, then nothing until something changes.
    let rows = a.take(clock.now_ms());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].summary, s);
    assert_eq!(rows[0].new_users, ["alice", "bob", "carol"]);
    assert!(a.take(clock.now_ms()).is_empty());
}

#[test]
fn overdraft_grants_are_counted_and_untracked_grants_hold_nothing() {
    let mut a = Aggregator::new(DAY0);
    a.seed("F", Some(1), 0, DAY0);
    let mut e = grant(DAY0 + 1, "u", OutKind::Reconciled, 2);
    e.change = Change::Grant {
        kind: OutKind::Reconciled,
        overdraft: true,
        count: 2,
    };
    a.apply(&e);
    a.apply(&grant(DAY0 + 2, "v", OutKind::Untracked, 1));
    let s = a.today("F").unwrap();
    assert_eq!((s.overdraft_grants, s.overdraft_peak), (1, 1));
    assert_eq!((s.checkouts, s.peak_in_use), (2, 2));
    assert_eq!(a.in_use("F"), 2);
}

#[test]
fn midnight_splits_the_days_and_the_time_at_full_use() {
    let mut a = Aggregator::new(DAY0 + 22 * HOUR);
    a.seed("F", Some(2), 0, DAY0 + 22 * HOUR);
    a.apply(&grant(DAY0 + 23 * HOUR, "alice", OutKind::New, 2)); // full from 23:00
    a.apply(&denial(DAY0 + 23 * HOUR + 1, "ALL_IN_USE"));
    // Crosses midnight; full until 01:00 the next day.
    a.apply(&release(DAY0 + DAY_MS + HOUR, Cause::Checkin, 1));
    a.apply(&grant(DAY0 + DAY_MS + 2 * HOUR, "bob", OutKind::New, 1));
    a.apply(&release(DAY0 + DAY_MS + 3 * HOUR, Cause::Checkin, 2));
    let rows = a.take(DAY0 + DAY_MS + 4 * HOUR);
    let days: Vec<(String, &str)> = rows
        .iter()
        .map(|r| (day_text(r.day), r.feature.as_str()))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-12-03".to_string(), "F"),
            ("2026-12-04".to_string(), "F")
        ]
    );
    let (d0, d1) = (&rows[0].summary, &rows[1].summary);
    assert_eq!(d0.full_use_ms, HOUR);
    assert_eq!((d0.peak_in_use, d0.checkouts), (2, 1));
    assert_eq!(d0.denials.get("ALL_IN_USE"), Some(&1));
    // The new day opens with what was in use at midnight as its peak.
    assert_eq!(d1.full_use_ms, HOUR + HOUR);
    assert_eq!((d1.peak_in_use, d1.checkouts), (2, 1));
    assert!(d1.denials.is_empty());
    // alice held over midnight but did no checkout on the 4th.
    assert_eq!(d1.distinct_users, 1);
    assert_eq!(rows[1].new_users, ["bob"]);
}

#[test]
fn an_open_interval_at_full_use_counts_up_to_the_batch() {
    let mut a = Aggregator::new(DAY0);
    a.seed("F", Some(1), 1, DAY0);
    let rows = a.take(DAY0 + HOUR);
    assert_eq!(rows[0].summary.full_use_ms, HOUR);
    // Still full: the next batch has a later figure.
    let rows = a.take(DAY0 + 2 * HOUR);
    assert_eq!(rows[0].summary.full_use_ms, 2 * HOUR);
    // Days with no event at all still get their row.
    let rows = a.take(DAY0 + 2 * DAY_MS + HOUR);
    let days: Vec<u64> = rows.iter().map(|r| r.day - day_of(DAY0)).collect();
    assert_eq!(days, [0, 1, 2]);
    assert_eq!(rows[0].summary.full_use_ms, DAY_MS);
    assert_eq!(rows[1].summary.full_use_ms, DAY_MS);
    assert_eq!(rows[2].summary.full_use_ms, HOUR);
}

#[test]
fn merged_figures_take_the_larger_and_the_union() {
    let mut a = Aggregator::new(DAY0 + HOUR);
    a.merge(DayRecord {
        feature: "F".into(),
        summary: DaySummary {
            licensed: Some(5),
            peak_in_use: 4,
            checkouts: 10,
            ..DaySummary::default()
        },
        users: vec!["alice".into()],
        hosts: vec!["pc1".into()],
    });
    a.merge(DayRecord {
        feature: "F".into(),
        summary: DaySummary {
            peak_in_use: 3,
            checkouts: 12,
            ..DaySummary::default()
        },
        users: vec!["alice".into(), "bob".into()],
        hosts: vec!["pc1".into()],
    });
    a.seed("F", Some(5), 1, DAY0 + HOUR);
    let s = a.today("F").unwrap();
    assert_eq!((s.peak_in_use, s.checkouts), (4, 12));
    assert_eq!((s.distinct_users, s.distinct_hosts), (2, 1));
}

#[test]
fn unknown_feature_names_are_bounded() {
    let mut a = Aggregator::new(DAY0);
    let names: Vec<String> = (0..MAX_UNKNOWN_FEATURES + 10)
        .map(|i| format!("NOPE{i}"))
        .collect();
    for n in &names {
        a.apply(&UsageEvent {
            at_ms: DAY0,
            feature: n,
            known: false,
            user: "u",
            host: "h",
            change: Change::Denial {
                reason: "NO_SUCH_FEATURE",
            },
        });
    }
    let rows = a.take(DAY0);
    assert_eq!(rows.len(), MAX_UNKNOWN_FEATURES + 1);
    let other = rows.iter().find(|r| r.feature == OTHER_FEATURES).unwrap();
    assert_eq!(other.summary.denials.get("NO_SUCH_FEATURE"), Some(&10));
}

#[test]
fn a_borrow_is_a_checkout_held_until_it_ends_or_returns() {
    let mut a = Aggregator::new(DAY0);
    a.seed("F", Some(2), 0, DAY0);
    a.apply(&grant(DAY0 + HOUR, "away", OutKind::Borrow, 1));
    a.apply(&grant(DAY0 + 2 * HOUR, "trip", OutKind::Borrow, 1));
    assert_eq!(a.in_use("F"), 2);
    a.apply(&release(DAY0 + 3 * HOUR, Cause::BorrowReturn, 1));
    a.apply(&release(DAY0 + 5 * HOUR, Cause::BorrowExpiry, 1));
    let s = a.today("F").unwrap();
    assert_eq!((s.checkouts, s.peak_in_use), (2, 2));
    // Both out from 02:00 to 03:00: an hour at full use.
    assert_eq!(s.full_use_ms, HOUR);
    assert_eq!(a.in_use("F"), 0);
}

#[test]
fn a_grant_before_the_check_in_it_follows_is_no_overdraft() {
    // Two loops: bob's check-in on one frees the license alice's checkout
    // takes on the other, and alice's OUT comes first.
    let mut a = Aggregator::new(DAY0);
    a.seed("F", Some(2), 2, DAY0);
    a.apply(&grant(DAY0 + 10, "alice", OutKind::New, 1));
    a.apply(&release(DAY0 + 11, Cause::Checkin, 1));
    let s = a.today("F").unwrap();
    assert_eq!((s.peak_in_use, s.overdraft_peak), (2, 0));
    assert_eq!(a.in_use("F"), 2);
    // A real overdraft grant still counts, and a recovered one at start.
    let mut e = grant(DAY0 + 20, "carol", OutKind::New, 1);
    e.change = Change::Grant {
        kind: OutKind::New,
        overdraft: true,
        count: 1,
    };
    a.apply(&e);
    let s = a.today("F").unwrap();
    assert_eq!(
        (s.peak_in_use, s.overdraft_peak, s.overdraft_grants),
        (3, 1, 1)
    );
    let mut b = Aggregator::new(DAY0);
    b.seed("F", Some(2), 3, DAY0);
    assert_eq!(b.today("F").unwrap().overdraft_peak, 1);
}
