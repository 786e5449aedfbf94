//! loom models of the table's own protocols: the spill protocol (a key
//! whose primary bucket is full lives in its secondary one, and two
//! claimers of one key in different buckets must still see each other) and
//! the growth by levels (two claimers of one key in different levels, a
//! third thread growing the table, lookups and check-ins racing a growth).
//! The engine-level models in `loom-tests` use tables of one level.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p tally-core --lib --release`

use super::*;
use loom::sync::Arc;
use loom::thread;

/// Two buckets of two slots: bucket = `lo & 1` (primary), `hi & 1`
/// (secondary; the next bucket if equal).
/// `loom::model` with room for the spins of a claim that waits for its
/// twin (more branches than the default 1,000).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.check(f);
}

fn table() -> Table {
    let t = Table::with_capacity(2, false);
    assert_eq!(t.first.buckets(), 2);
    t
}

fn key(lo: u64, hi: u64) -> InstanceKey {
    InstanceKey { lo, hi }
}

/// The key the models race on: primary bucket 0.
const RACED: InstanceKey = InstanceKey { lo: 0, hi: 1 };

/// Takes `k` as the engine does: renew a live instance, else claim and
/// publish. Returns the instance and whether it is new.
fn take(t: &Table, k: InstanceKey) -> (InstanceId, bool) {
    let holder = HolderBuf::new("u", "h", "", "x");
    loop {
        if let Lookup::Live(found) = t.lookup(k) {
            return (found.id, false);
        }
        match t.claim(k) {
            Claim::Owned(c) => {
                let f = Fields {
                    pool: 0,
                    count: 1,
                    since: 0,
                    linger: 0,
                    deadline: NO_DEADLINE,
                    holder: &holder,
                };
                return (t.publish(c, &f), true);
            }
            Claim::Exists(found) => return (found.id, false),
            Claim::Retry => {}
            Claim::Full => panic!("table full"),
        }
    }
}

fn live_with(t: &Table, k: InstanceKey) -> usize {
    let mut n = 0;
    t.for_each_live(|r| n += usize::from(r.key == k));
    n
}

/// Fills bucket 0 (the raced key's primary) with two other keys.
fn fill_primary(t: &Table) -> [InstanceId; 2] {
    // Fingerprints other than the raced key's (bits 57.. of `hi`).
    let a = take(t, key(2, 1 << 58)).0;
    let b = take(t, key(4, 2 << 58)).0;
    assert_eq!((a.slot / 2, b.slot / 2), (0, 0), "both in bucket 0");
    [a, b]
}

#[test]
fn spilled_twins_make_one_instance() {
    model(|| {
        let t = Arc::new(table());
        fill_primary(&t);
        let t2 = t.clone();
        let other = thread::spawn(move || take(&t2, RACED));
        let mine = take(&t, RACED);
        let theirs = other.join().unwrap();
        assert_eq!(mine.0, theirs.0, "one instance");
        assert!(mine.1 ^ theirs.1, "exactly one new: {mine:?} {theirs:?}");
        assert_eq!(mine.0.slot / 2, 1, "spilled into bucket 1");
        assert_eq!(live_with(&t, RACED), 1);
    });
}

#[test]
fn a_twin_in_the_primary_sees_a_spilled_one() {
    model(|| {
        let t = Arc::new(table());
        let [a, _] = fill_primary(&t);
        let t2 = t.clone();
        // Frees a primary slot, so this claimer may land in bucket 0
        // while the other one spills into bucket 1.
        let other = thread::spawn(move || {
            t2.release(a, |_| true, |_, _| {}).expect("released");
            take(&t2, RACED)
        });
        let mine = take(&t, RACED);
        let theirs = other.join().unwrap();
        assert_eq!(mine.0, theirs.0, "one instance");
        assert!(mine.1 ^ theirs.1, "exactly one new: {mine:?} {theirs:?}");
        assert_eq!(live_with(&t, RACED), 1);
    });
}

#[test]
fn a_spilled_release_is_uncounted() {
    model(|| {
        let t = Arc::new(table());
        fill_primary(&t);
        let (id, _) = take(&t, RACED);
        assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 1);
        let t2 = t.clone();
        let other = thread::spawn(move || t2.release(id, |_| true, |_, _| {}).is_some());
        let found = t.find(RACED);
        assert!(other.join().unwrap());
        assert!(found.is_none() || found == Some(id));
        assert_eq!(t.first.bucket(0).spilled.load(Ordering::Relaxed), 0);
        assert_eq!(t.find(RACED), None);
    });
}

/// A table of one bucket of two slots in level 0; level 1 has two buckets
/// (`lo & 1` primary, `hi & 1` secondary), level 2 four.
fn small() -> Table {
    let t = Table::with_capacity(1, false);
    assert_eq!((t.first.buckets(), t.slot_count()), (1, 2));
    t
}

/// Another key for the models (fingerprint other than the raced key's).
fn other(n: u64) -> InstanceKey {
    key(2 * n, n << 58)
}

/// Two claimers of one key, one slot left in level 0: one takes it, the
/// other finds level 0 full, publishes level 1 and claims there. The one
/// whose fingerprint comes later must see the other across the levels;
/// without the SeqCst re-read of the level count in `claim` (re-scanning
/// only the levels `reserve` saw), this model finds two instances.
#[test]
fn twins_across_a_growth() {
    model(|| {
        let t = Arc::new(small());
        take(&t, other(1));
        let t2 = t.clone();
        let theirs = thread::spawn(move || take(&t2, RACED));
        let mine = take(&t, RACED);
        let theirs = theirs.join().unwrap();
        assert_eq!(mine.0, theirs.0, "one instance");
        assert!(mine.1 ^ theirs.1, "exactly one new: {mine:?} {theirs:?}");
        assert_eq!(live_with(&t, RACED), 1);
    });
}

/// Two claimers of one key while a third thread claims another key: any of
/// them may take level 0's last slot, publish level 1, or lose the race to
/// publish it (and free its own allocation).
#[test]
fn twins_while_a_third_grows() {
    model(|| {
        let t = Arc::new(small());
        take(&t, other(1));
        let (t2, t3) = (t.clone(), t.clone());
        let grower = thread::spawn(move || take(&t3, other(2)).0);
        let theirs = thread::spawn(move || take(&t2, RACED));
        let mine = take(&t, RACED);
        let theirs = theirs.join().unwrap();
        let grown = grower.join().unwrap();
        assert_eq!(mine.0, theirs.0, "one instance");
        assert!(mine.1 ^ theirs.1, "exactly one new: {mine:?} {theirs:?}");
        assert_eq!(live_with(&t, RACED), 1);
        assert_eq!(t.find(other(2)), Some(grown));
        assert_eq!(t.slot_count(), 6, "level 1 published once");
    });
}

/// A lookup and a check-in of a key in level 0, and a lookup of a key being
/// claimed in level 1, while another thread fills level 0 and grows.
#[test]
fn lookup_and_checkin_race_a_growth() {
    model(|| {
        let t = Arc::new(small());
        let (held, _) = take(&t, other(1));
        let t2 = t.clone();
        let grower = thread::spawn(move || {
            let a = take(&t2, other(2)).0;
            let b = take(&t2, other(3)).0;
            (a, b)
        });
        assert_eq!(t.find(other(1)), Some(held), "found during the growth");
        let seen = t.find(other(3));
        let released = t.release(held, |_| true, |_, _| {}).is_some();
        let (a, b) = grower.join().unwrap();
        assert!(released, "checked in once");
        assert!(seen.is_none() || seen == Some(b), "{seen:?} vs {b:?}");
        assert_eq!(t.find(other(1)), None);
        assert_eq!((t.find(other(2)), t.find(other(3))), (Some(a), Some(b)));
        let mut live = 0;
        t.for_each_live(|_| live += 1);
        assert_eq!(live, 2);
    });
}
