//! Tests of the whole wheel: exact firing ticks, cancel, far deadlines, a
//! proptest against a reference model, and a million timers.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;

/// Deadlines around every level boundary, plus a few arbitrary ones.
const BOUNDARY_DEADLINES: &[u64] = &[
    0,
    1,
    2,
    63,
    64,
    65,
    127,
    128,
    4095,
    4096,
    4097,
    64 * 64 * 64 - 1,
    64 * 64 * 64,
    64 * 64 * 64 + 7,
    64 * 64 * 64 * 64 + 1,
    64 * 64 * 64 * 64 * 64 - 1,
    64 * 64 * 64 * 64 * 64 * 3 + 12345,
    SPAN_TICKS - 1,
    SPAN_TICKS,
    SPAN_TICKS + 1,
    SPAN_TICKS * 2 + 64,
];

/// Three years of ticks: beyond the levels' span of about 2.2 years.
const THREE_YEARS: u64 = 3 * 365 * 24 * 60 * 60 * 1_000 / TICK_MS;

/// A small deterministic PRNG (SplitMix64), so tests need no extra crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

// The levels span over two years; three years is beyond them.
const _: () = assert!(SPAN_TICKS * TICK_MS > 2 * 365 * 24 * 60 * 60 * 1_000);
const _: () = assert!(THREE_YEARS > SPAN_TICKS);

#[test]
fn constants_agree() {
    assert_eq!(SLOTS_PER_LEVEL, 1 << SLOT_BITS);
    assert_eq!(SPAN_TICKS, (SLOTS_PER_LEVEL as u64).pow(LEVELS as u32));
}

#[test]
fn new_wheel_is_empty_at_zero() {
    let mut wheel: Wheel<u8> = Wheel::new();
    assert_eq!(wheel.elapsed(), 0);
    assert!(wheel.is_empty());
    assert_eq!(wheel.len(), 0);
    assert_eq!(wheel.next_expiration(), None);
    assert_eq!(wheel.poll(1_000), None);
    assert_eq!(wheel.elapsed(), 1_000);
    assert!(format!("{wheel:?}").contains("elapsed: 1000"));
}

#[test]
fn each_deadline_fires_at_its_tick_and_not_before() {
    for &deadline in BOUNDARY_DEADLINES
        .iter()
        .chain([&THREE_YEARS, &(u64::MAX / 2)])
    {
        let mut wheel = Wheel::new();
        let key = wheel.insert(deadline, deadline);
        assert_eq!(wheel.deadline(key), Some(deadline));
        let bound = wheel.next_expiration().expect("one timer");
        assert!(bound <= deadline, "bound {bound} after deadline {deadline}");
        if deadline > 0 {
            assert_eq!(wheel.poll(deadline - 1), None, "early at {deadline}");
            assert_eq!(wheel.elapsed(), deadline - 1);
            assert_eq!(wheel.len(), 1);
            assert_eq!(
                wheel.next_expiration(),
                Some(deadline),
                "exact one tick before"
            );
        }
        assert_eq!(wheel.poll(deadline), Some((deadline, deadline)));
        assert_eq!(wheel.elapsed(), deadline);
        assert_eq!(wheel.poll(deadline), None);
        assert!(wheel.is_empty());
        assert_eq!(wheel.deadline(key), None);
    }
}

#[test]
fn deadlines_relative_to_a_later_elapsed() {
    for start in [1, 63, 64, 4095, SPAN_TICKS - 1, SPAN_TICKS, THREE_YEARS] {
        for &offset in BOUNDARY_DEADLINES.iter().filter(|&&d| d > 0) {
            let mut wheel = Wheel::new();
            assert_eq!(wheel.poll(start), None);
            let deadline = start + offset;
            wheel.insert(deadline, ());
            assert_eq!(wheel.poll(deadline - 1), None, "early: {start} + {offset}");
            assert_eq!(
                wheel.poll(deadline),
                Some((deadline, ())),
                "{start} + {offset}"
            );
        }
    }
}

#[test]
fn sleeping_until_next_expiration_reaches_each_deadline() {
    // The server's loop: sleep until next_expiration, drain, repeat.
    for &deadline in BOUNDARY_DEADLINES
        .iter()
        .chain([&THREE_YEARS, &(u64::MAX / 2)])
    {
        let mut wheel = Wheel::new();
        wheel.insert(deadline, ());
        let mut wakeups = 0;
        let fired = loop {
            let at = wheel.next_expiration().expect("not fired yet");
            assert!(at <= deadline);
            wakeups += 1;
            if let Some(fired) = wheel.poll(at) {
                break fired;
            }
        };
        assert_eq!(fired, (deadline, ()));
        // One wake-up per level at most, plus one for the overflow list.
        assert!(wakeups <= LEVELS + 1, "{wakeups} wake-ups for {deadline}");
    }
}

#[test]
fn stepping_tick_by_tick_fires_each_exactly_on_time() {
    let mut wheel = Wheel::new();
    let horizon = 9_000;
    for i in 0..3_000u64 {
        let deadline = (i * 7_919) % horizon;
        wheel.insert(deadline, i);
    }
    let mut fired = 0;
    for now in 0..=horizon {
        wheel.drain_due(now, |deadline, i| {
            assert_eq!(deadline, now, "timer {i}");
            assert_eq!(deadline, (i * 7_919) % horizon);
            fired += 1;
        });
    }
    assert_eq!(fired, 3_000);
    assert!(wheel.is_empty());
}

#[test]
fn one_big_poll_returns_all_in_deadline_order() {
    let mut rng = SplitMix(7);
    let mut wheel = Wheel::new();
    let mut expected: Vec<u64> = (0..5_000).map(|_| rng.next() % (1 << 30)).collect();
    for &d in &expected {
        wheel.insert(d, d);
    }
    let mut got = Vec::new();
    wheel.drain_due(1 << 30, |d, v| {
        assert_eq!(d, v);
        got.push(d);
    });
    expected.sort_unstable();
    assert_eq!(got, expected);
}

#[test]
fn poll_never_moves_backwards() {
    let mut wheel = Wheel::new();
    assert_eq!(wheel.poll(500), None);
    wheel.insert(600, 'a');
    assert_eq!(wheel.poll(100), None);
    assert_eq!(wheel.elapsed(), 500);
    assert_eq!(wheel.poll(600), Some((600, 'a')));
    assert_eq!(wheel.poll(0), None);
    assert_eq!(wheel.elapsed(), 600);
}

#[test]
fn poll_returns_one_at_a_time_and_elapsed_follows() {
    let mut wheel = Wheel::new();
    wheel.insert(10, 'a');
    wheel.insert(20, 'b');
    wheel.insert(20, 'c');
    assert_eq!(wheel.poll(100), Some((10, 'a')));
    assert_eq!(wheel.elapsed(), 10);
    let mut at_20 = [wheel.poll(100), wheel.poll(100)];
    at_20.sort();
    assert_eq!(at_20, [Some((20, 'b')), Some((20, 'c'))]);
    assert_eq!(wheel.elapsed(), 20);
    assert_eq!(wheel.poll(100), None);
    assert_eq!(wheel.elapsed(), 100);
}

#[test]
fn overdue_inserts_are_due_at_the_next_poll_before_on_time_ones() {
    let mut wheel = Wheel::new();
    assert_eq!(wheel.poll(100), None);
    wheel.insert(101, "on time");
    wheel.insert(50, "b");
    wheel.insert(100, "c");
    wheel.insert(20, "d");
    assert_eq!(wheel.next_expiration(), Some(20), "lower bound of pending");
    // A `now` below elapsed still returns what is due, in insertion order.
    assert_eq!(wheel.poll(0), Some((50, "b")));
    assert_eq!(wheel.poll(0), Some((100, "c")));
    assert_eq!(wheel.poll(0), Some((20, "d")));
    assert_eq!(wheel.poll(0), None);
    assert_eq!(wheel.elapsed(), 100);
    assert_eq!(wheel.next_expiration(), Some(101));
    assert_eq!(wheel.poll(101), Some((101, "on time")));
}

#[test]
fn cancel_before_fire_after_fire_and_stale_keys() {
    let mut wheel = Wheel::new();
    let a = wheel.insert(70, 'a');
    let b = wheel.insert(70, 'b');
    assert_eq!(wheel.cancel(a), Some('a'));
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.cancel(a), None, "cancelled twice");
    assert_eq!(wheel.deadline(a), None);
    assert_eq!(wheel.poll(70), Some((70, 'b')));
    assert_eq!(wheel.poll(70), None, "cancelled timer never fires");
    assert_eq!(wheel.cancel(b), None, "already fired");

    // The freed entry is reused; the old keys must not reach the new timer.
    let c = wheel.insert(80, 'c');
    assert!(c.index == a.index || c.index == b.index);
    assert_eq!(wheel.cancel(a), None);
    assert_eq!(wheel.cancel(b), None);
    assert_eq!(wheel.deadline(b), None);
    assert_eq!(wheel.deadline(c), Some(80));
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.poll(80), Some((80, 'c')));
}

#[test]
fn cancel_from_every_kind_of_list() {
    let mut wheel = Wheel::new();
    assert_eq!(wheel.poll(1_000), None);
    let pending = wheel.insert(10, 0);
    let level0 = wheel.insert(1_010, 1);
    let level3 = wheel.insert(1_000 + 64 * 64 * 64 * 5, 2);
    let overflow = wheel.insert(u64::MAX / 2, 3);
    let overflow2 = wheel.insert(THREE_YEARS, 4);
    assert_eq!(wheel.cancel(pending), Some(0));
    assert_eq!(wheel.cancel(level0), Some(1));
    assert_eq!(wheel.cancel(level3), Some(2));
    assert_eq!(wheel.cancel(overflow2), Some(4));
    assert_eq!(wheel.len(), 1);
    // The stale overflow minimum only makes the bound earlier.
    assert!(wheel.next_expiration().is_some_and(|t| t <= u64::MAX / 2));
    assert_eq!(wheel.poll(u64::MAX / 2 - 1), None);
    assert_eq!(wheel.cancel(overflow), Some(3));
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_expiration(), None);
    assert_eq!(wheel.poll(u64::MAX / 2), None);
}

#[test]
fn far_deadlines_in_many_blocks_fire_on_time_and_in_order() {
    let mut wheel = Wheel::new();
    let deadlines = [
        u64::MAX / 2,
        THREE_YEARS,
        SPAN_TICKS * 5 + 3,
        SPAN_TICKS * 5 + 3,
        SPAN_TICKS * 5 + 2,
        SPAN_TICKS * 1_000,
        SPAN_TICKS + 1,
        SPAN_TICKS - 1,
    ];
    for &d in &deadlines {
        wheel.insert(d, d);
    }
    let mut sorted = deadlines.to_vec();
    sorted.sort_unstable();
    let mut unique = sorted.clone();
    unique.dedup();
    let mut fired = Vec::new();
    for &d in &unique {
        assert_eq!(wheel.poll(d - 1), None, "early: {d}");
        wheel.drain_due(d, |deadline, v| {
            assert_eq!((deadline, v), (d, d));
            fired.push(d);
        });
    }
    assert_eq!(fired, sorted);
    assert!(wheel.is_empty());
}

#[test]
fn steady_state_reuses_the_preallocated_slab() {
    let n = 1_024;
    let mut wheel = Wheel::with_capacity(n);
    let capacity = wheel.capacity();
    assert!(capacity >= n);
    let mut rng = SplitMix(3);
    for round in 0..4u64 {
        let base = wheel.elapsed();
        for i in 0..n as u64 {
            wheel.insert(base + 1 + rng.next() % 100_000, i);
        }
        let mut fired = 0;
        wheel.drain_due(base + 100_000, |_, _| fired += 1);
        assert_eq!(fired, n, "round {round}");
        assert_eq!(wheel.capacity(), capacity, "grew in round {round}");
    }
}

#[test]
fn a_million_timers_fire_exactly_once_on_time() {
    const N: usize = 1_000_000;
    const HORIZON: u64 = 10 * 60 * 1_000 / TICK_MS; // ten minutes of ticks
    const STEP: u64 = 4_999;

    let mut rng = SplitMix(42);
    let mut wheel = Wheel::with_capacity(N);
    let capacity = wheel.capacity();
    let deadlines: Vec<u64> = (0..N).map(|_| rng.next() % HORIZON).collect();
    let keys: Vec<TimerKey> = deadlines
        .iter()
        .enumerate()
        .map(|(id, &d)| wheel.insert(d, id as u32))
        .collect();
    assert_eq!(wheel.len(), N);
    // Cancel every tenth; they must never fire.
    let mut cancelled = 0;
    for key in keys.iter().step_by(10) {
        assert!(wheel.cancel(*key).is_some());
        cancelled += 1;
    }
    assert_eq!(wheel.len(), N - cancelled);

    let mut fired = vec![false; N];
    let mut count = 0;
    let mut last_deadline = 0;
    let mut prev_now: Option<u64> = None;
    let mut now = 0;
    while now < HORIZON + STEP {
        wheel.drain_due(now, |deadline, id| {
            let id = id as usize;
            assert!(id % 10 != 0, "cancelled timer {id} fired");
            assert!(!fired[id], "timer {id} fired twice");
            fired[id] = true;
            count += 1;
            assert_eq!(deadline, deadlines[id]);
            assert!(deadline <= now, "early");
            assert!(prev_now.map_or(true, |p| deadline > p), "late");
            assert!(deadline >= last_deadline, "out of order");
            last_deadline = deadline;
        });
        prev_now = Some(now);
        now += STEP;
    }
    assert_eq!(count, N - cancelled);
    assert!(wheel.is_empty());
    assert_eq!(wheel.capacity(), capacity, "no growth past with_capacity");
}

/// How a generated timer's deadline relates to the wheel's `elapsed`.
#[derive(Clone, Copy, Debug)]
enum Deadline {
    /// `elapsed - n` (saturating): overdue.
    Before(u64),
    /// `elapsed + n`.
    After(u64),
    /// Just past the start of the next `SPAN_TICKS` block: overflow.
    NextBlock(u64),
    /// A fixed far tick.
    Absolute(u64),
}

impl Deadline {
    fn at(self, elapsed: u64) -> u64 {
        match self {
            Deadline::Before(n) => elapsed.saturating_sub(n),
            Deadline::After(n) => elapsed + n,
            Deadline::NextBlock(n) => (elapsed | (SPAN_TICKS - 1)) + 1 + n,
            Deadline::Absolute(t) => t,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Deadline),
    /// Cancel the timer of this earlier insert (live, fired or cancelled).
    Cancel(prop::sample::Index),
    /// One `poll(elapsed + step)`.
    PollOnce(u64),
    /// `poll(elapsed + step)` until `None`.
    Drain(u64),
    /// Drain at `next_expiration()`, as the server's loop does.
    DrainAtNextExpiration,
}

fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..3u64,
        0..100u64,
        0..5_000u64,
        0..(1u64 << 26),
        0..(1u64 << 38),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let deadline = prop_oneof![
        (0..100u64).prop_map(Deadline::Before),
        (0..200u64).prop_map(Deadline::After),
        (0..(1u64 << 24)).prop_map(Deadline::After),
        (0..(1u64 << 40)).prop_map(Deadline::After),
        (0..3u64).prop_map(Deadline::NextBlock),
        prop_oneof![Just(u64::MAX / 2), Just(THREE_YEARS)].prop_map(Deadline::Absolute),
    ];
    prop_oneof![
        4 => deadline.prop_map(Op::Insert),
        2 => any::<prop::sample::Index>().prop_map(Op::Cancel),
        2 => step().prop_map(Op::PollOnce),
        2 => step().prop_map(Op::Drain),
        1 => Just(Op::DrainAtNextExpiration),
    ]
}

/// The dumb reference: live timers ordered by when they are due.
#[derive(Default)]
struct Model {
    elapsed: u64,
    /// (due = max(deadline, elapsed at insert), id) -> deadline.
    live: BTreeMap<(u64, u64), u64>,
    /// id -> due, for live timers.
    due: HashMap<u64, u64>,
    /// Every key issued, with its id.
    keys: Vec<(TimerKey, u64)>,
}

impl Model {
    fn min_deadline(&self) -> Option<u64> {
        self.live.values().copied().min()
    }
}

/// One `poll(now)` on both, checked against each other. Returns whether the
/// wheel returned a timer.
fn poll_both(wheel: &mut Wheel<u64>, model: &mut Model, now: u64) -> Result<bool, TestCaseError> {
    let now = now.max(model.elapsed);
    let first_due = model.live.keys().next().map(|&(due, _)| due);
    match wheel.poll(now) {
        Some((deadline, id)) => {
            let due = model.due.remove(&id);
            prop_assert!(due.is_some(), "fired timer {} is not live", id);
            let due = due.unwrap_or_default();
            prop_assert_eq!(model.live.remove(&(due, id)), Some(deadline));
            prop_assert!(deadline <= now, "{} fired early at {}", deadline, now);
            prop_assert_eq!(Some(due), first_due, "out of order");
            model.elapsed = model.elapsed.max(deadline);
            prop_assert_eq!(wheel.elapsed(), model.elapsed);
            Ok(true)
        }
        None => {
            prop_assert!(
                first_due.map_or(true, |due| due > now),
                "missed a timer due by {}",
                now
            );
            model.elapsed = now;
            prop_assert_eq!(wheel.elapsed(), now);
            Ok(false)
        }
    }
}

fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut wheel = Wheel::new();
    let mut model = Model::default();
    for (id, op) in (0u64..).zip(ops) {
        match op {
            Op::Insert(deadline) => {
                let deadline = deadline.at(model.elapsed);
                let key = wheel.insert(deadline, id);
                prop_assert_eq!(wheel.deadline(key), Some(deadline));
                let due = deadline.max(model.elapsed);
                model.live.insert((due, id), deadline);
                model.due.insert(id, due);
                model.keys.push((key, id));
            }
            Op::Cancel(index) => {
                if model.keys.is_empty() {
                    continue;
                }
                let (key, victim) = model.keys[index.index(model.keys.len())];
                let due = model.due.remove(&victim);
                let deadline = due.and_then(|due| model.live.remove(&(due, victim)));
                prop_assert_eq!(wheel.deadline(key), deadline);
                prop_assert_eq!(wheel.cancel(key), due.map(|_| victim));
                prop_assert_eq!(wheel.deadline(key), None);
                prop_assert_eq!(wheel.cancel(key), None);
            }
            Op::PollOnce(step) => {
                let now = model.elapsed + step;
                poll_both(&mut wheel, &mut model, now)?;
            }
            Op::Drain(step) => {
                let now = model.elapsed + step;
                while poll_both(&mut wheel, &mut model, now)? {}
            }
            Op::DrainAtNextExpiration => {
                if let Some(at) = wheel.next_expiration() {
                    while poll_both(&mut wheel, &mut model, at)? {}
                }
            }
        }
        prop_assert_eq!(wheel.len(), model.live.len());
        prop_assert_eq!(wheel.is_empty(), model.live.is_empty());
        match (wheel.next_expiration(), model.min_deadline()) {
            (None, None) => {}
            (Some(bound), Some(min)) => prop_assert!(bound <= min, "bound {} > min {}", bound, min),
            (bound, min) => {
                prop_assert!(false, "next_expiration {:?}, min deadline {:?}", bound, min)
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wheel_matches_reference_model(ops in prop::collection::vec(op(), 1..300)) {
        run_model(ops)?;
    }
}

#[test]
fn retain_mut_changes_payloads_in_place_and_cancels_the_rest() {
    let mut w: Wheel<u32> = Wheel::new();
    let keys: Vec<TimerKey> = BOUNDARY_DEADLINES
        .iter()
        .enumerate()
        .map(|(i, &d)| w.insert(d, i as u32))
        .collect();
    // Some due already (pending), some far out (overflow).
    assert_eq!(w.poll(0), Some((0, 0)));
    w.retain_mut(|v| {
        *v += 1000;
        *v % 2 == 0
    });
    let even = (1..BOUNDARY_DEADLINES.len()).filter(|i| i % 2 == 0).count();
    assert_eq!(w.len(), even);
    for (i, key) in keys.iter().enumerate().skip(1) {
        match w.deadline(*key) {
            Some(d) => {
                assert_eq!(i % 2, 0, "odd payloads are cancelled");
                assert_eq!(d, BOUNDARY_DEADLINES[i], "the deadline stays");
            }
            None => assert_eq!(i % 2, 1, "even payloads stay"),
        }
    }
    let mut fired = Vec::new();
    w.drain_due(u64::MAX, |d, v| fired.push((d, v)));
    let want: Vec<(u64, u32)> = BOUNDARY_DEADLINES
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, &d)| (d, i as u32 + 1000))
        .collect();
    assert_eq!(fired, want);
    assert!(w.is_empty());
}
