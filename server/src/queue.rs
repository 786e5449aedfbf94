//! Queued checkout: `CHECKOUT ... wait=<secs>` waits for a license when
//! none is free, and is served first come, first served.
//!
//! # Shape
//!
//! One FIFO per feature, shared by every loop behind one mutex. The mutex
//! is only taken where a waiter may be concerned, never on the common
//! path:
//!
//! - CHECKOUT reads one atomic (`Queues::is_empty`) and goes on when
//!   nobody waits at all; when somebody waits, it hashes the feature's
//!   name and reads that bucket's count of waiters (64 buckets of names:
//!   names, not [`FeatureId`](tally_core::engine::FeatureId)s, so the
//!   counts stay true across a REREAD), and locks only when a waiter may
//!   be of its own feature.
//! - Each loop, at the end of every turn, looks at its own count of
//!   waiters and at the queue's epoch (bumped when a license came back
//!   while somebody waits, or a waiter left): it locks and tries its
//!   waiters only when it has some and something may have changed since
//!   it last tried (a new epoch, a waiter of its own just queued, a new
//!   generation adopted, a head-of-line bound passing, or a second gone
//!   by).
//!
//! - A checkout that finds the pool full (`ALL_IN_USE` / `RESERVED`) with
//!   `wait=` joins the tail. Its connection stops answering further lines
//!   until it is served, so replies stay in request order.
//! - A request no pool could ever grant (more licenses than any pool's
//!   count plus overdraft) is denied `COUNT_TOO_HIGH` at once, never
//!   queued; `wait=` is at most [`MAX_WAIT_MS`].
//! - While a feature's queue has been non-empty for less than
//!   [`HOL_LIMIT_MS`] (since it last became non-empty, so a chain of
//!   waiters each leaving early cannot keep the door shut),
//!   a new checkout of it that is not a renewal joins the tail too (with
//!   `wait=`) or is denied at once (without): nobody overtakes the queue,
//!   and only the head is tried when licenses come back.
//! - Past that bound the head no longer blocks the rest: new checkouts are
//!   tried against the pools as if nobody waited, and every waiter of the
//!   feature is tried in order whenever licenses come back, the head first.
//!   So a large request holds the door for smaller ones for at most
//!   [`HOL_LIMIT_MS`]; it keeps its place, and is served first as soon as
//!   enough licenses are free at a moment it is tried (under steady load a
//!   large request may then wait until its own deadline: FIFO fairness is
//!   traded for never letting one request idle free licenses for long).
//! - Any loop that checks a license in while somebody waits bumps the
//!   epoch and wakes every loop; each loop tries the waiters that belong
//!   to it. A waiter queued while a license comes back on another loop is
//!   not missed: the queueing loop counts it, then (a SeqCst fence) tries
//!   it once more, and the releasing loop frees the license, then (a SeqCst
//!   fence) reads the count, so one of them sees the other (the loom model
//!   `loom-tests/tests/queue.rs`). A loop with waiters also tries at least
//!   once a second (its longest sleep), so even a lost wake-up only
//!   delays.
//! - Each loop keeps its waiters' deadlines in its timer service
//!   (`timers.rs`); a waiter still queued at its deadline is taken out and
//!   denied.
//! - A waiting client that disconnects leaves the queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tally_core::engine::Names;

/// How long a feature's head waiter may keep others from overtaking it, in
/// ms (see the module docs).
pub const HOL_LIMIT_MS: u64 = 10_000;

/// The longest `wait=` a checkout may ask for, in ms (one day).
pub const MAX_WAIT_MS: u64 = 86_400_000;

/// A loop with waiters tries them at least this often, in ms, even when
/// nothing told it to (see the module docs).
const RETRY_MS: u64 = 1_000;

/// Buckets of feature names the waiters are counted in.
const BUCKETS: usize = 64;

/// `LoopSlot::tried` when the loop must try at its next turn.
const UNTRIED: u64 = u64::MAX;

/// The bucket of a feature's name (FNV-1a: names are short).
fn bucket(feature: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in feature.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % BUCKETS
}

/// Where a waiter's connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seat {
    /// Loop index.
    pub(crate) loop_index: usize,
    /// Slab key of the connection in that loop.
    pub(crate) conn: usize,
    /// The connection's serial number (slab keys are reused).
    pub(crate) serial: u64,
}

/// One queued request.
#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    /// Queue-wide sequence number (order of arrival).
    pub(crate) seq: u64,
    /// Its connection.
    pub(crate) seat: Seat,
    /// The CHECKOUT line as received (parsed again when tried).
    pub(crate) line: Box<[u8]>,
    /// Shown in STATUS.
    pub(crate) entry: QueuedStatus,
}

/// A queued request as shown in STATUS (`queue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedStatus {
    /// Feature, user, host, display, client handle (flattened: STATUS
    /// shows them as fields of the entry).
    #[serde(flatten)]
    pub names: Names<String>,
    /// Licenses asked for.
    pub count: u32,
    /// When it was queued, Unix ms.
    pub since_ms: u64,
    /// When it gives up, Unix ms.
    pub deadline_ms: u64,
}

/// One feature's waiters.
#[derive(Debug, Default)]
struct Queue {
    /// When the queue last became non-empty, Unix ms: the head-of-line
    /// bound counts from here, so a chain of waiters each leaving before
    /// its 10 s cannot keep the door shut.
    since: u64,
    waiters: VecDeque<Waiter>,
}

impl Queue {
    /// Whether the queue still keeps others from overtaking it at `now`.
    fn holds_the_door(&self, now: u64) -> bool {
        !self.waiters.is_empty() && now < self.since.saturating_add(HOL_LIMIT_MS)
    }
}

/// What one loop keeps of the queue: written by that loop only (its
/// waiters are queued, served and taken out by it), on a cache line of its
/// own.
#[derive(Debug)]
#[repr(align(64))]
struct LoopSlot {
    /// Its waiters, in all queues.
    waiters: AtomicU32,
    /// The epoch it last tried its waiters at, or [`UNTRIED`].
    tried: AtomicU64,
    /// When it must try again even if the epoch did not move, Unix ms.
    retry_at: AtomicU64,
}

impl Default for LoopSlot {
    fn default() -> Self {
        LoopSlot {
            waiters: AtomicU32::new(0),
            tried: AtomicU64::new(UNTRIED),
            retry_at: AtomicU64::new(0),
        }
    }
}

/// Every feature's queue.
#[derive(Debug)]
pub(crate) struct Queues {
    by_feature: Mutex<HashMap<String, Queue>>,
    /// Waiters in all queues.
    waiting: AtomicUsize,
    /// Waiters per bucket of feature names ([`bucket`]).
    buckets: [AtomicU32; BUCKETS],
    /// Per loop, by loop index.
    loops: Box<[LoopSlot]>,
    /// Bumped when a waiter may be served that could not be before: a
    /// license came back while somebody waits, or a waiter left.
    epoch: AtomicU64,
    next_seq: AtomicU64,
}

impl Queues {
    /// The queues of a server with `loops` event loops.
    pub(crate) fn new(loops: usize) -> Self {
        Queues {
            by_feature: Mutex::default(),
            waiting: AtomicUsize::new(0),
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
            loops: (0..loops.max(1)).map(|_| LoopSlot::default()).collect(),
            epoch: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queue>> {
        self.by_feature.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when nobody waits (one relaxed load: the checkout fast path).
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) == 0
    }

    /// Whether `feature`'s queue keeps new checkouts from overtaking it at
    /// `now`: it has a head that has waited less than [`HOL_LIMIT_MS`].
    /// Locks only if a waiter's feature shares the name's bucket.
    pub(crate) fn blocks(&self, feature: &str, now: u64) -> bool {
        !self.is_empty()
            && self.buckets[bucket(feature)].load(Ordering::Relaxed) > 0
            && self
                .lock()
                .get(feature)
                .is_some_and(|q| q.holds_the_door(now))
    }

    /// A license came back: true if somebody waits, and then the epoch is
    /// bumped (the caller wakes every loop). The fence pairs with
    /// [`push`](Self::push)'s: a waiter queued meanwhile is either counted
    /// here or tried after the license is back.
    pub(crate) fn released(&self) -> bool {
        fence(Ordering::SeqCst);
        if self.is_empty() {
            return false;
        }
        self.epoch.fetch_add(1, Ordering::Release);
        true
    }

    /// Loop `loop_index` tries its waiters at its next turn (it adopted a
    /// new generation: its pools may have grown).
    pub(crate) fn retry_on(&self, loop_index: usize) {
        if let Some(slot) = self.loops.get(loop_index) {
            slot.tried.store(UNTRIED, Ordering::Relaxed);
        }
    }

    fn slot(&self, loop_index: usize) -> &LoopSlot {
        &self.loops[loop_index % self.loops.len()]
    }

    /// Appends a waiter; returns its sequence number.
    pub(crate) fn push(&self, seat: Seat, line: &[u8], entry: QueuedStatus) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        let q = map.entry(entry.names.feature.clone()).or_default();
        if q.waiters.is_empty() {
            q.since = entry.since_ms;
        }
        let b = bucket(&entry.names.feature);
        q.waiters.push_back(Waiter {
            seq,
            seat,
            line: line.into(),
            entry,
        });
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(seat.loop_index);
        slot.waiters.fetch_add(1, Ordering::Relaxed);
        // Its loop tries it once more (at the end of this turn), after the
        // count is visible to a releasing loop ([`released`](Self::released)).
        slot.tried.store(UNTRIED, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        seq
    }

    /// The waiters loop `loop_index` should try at `now`, in order: each
    /// feature's head if it sits on this loop, and once the head has waited
    /// [`HOL_LIMIT_MS`], every other waiter of the feature on this loop.
    /// None, without a lock, when the loop has no waiter or nothing changed
    /// since it last tried (see the module docs).
    pub(crate) fn to_try_on(&self, loop_index: usize, now: u64) -> Vec<(String, Waiter)> {
        if self.is_empty() {
            return Vec::new();
        }
        let slot = self.slot(loop_index);
        if slot.waiters.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        // Read before the pools are looked at: a license back after this
        // bumps it again.
        let epoch = self.epoch.load(Ordering::Acquire);
        if slot.tried.load(Ordering::Relaxed) == epoch
            && now < slot.retry_at.load(Ordering::Relaxed)
        {
            return Vec::new();
        }
        slot.tried.store(epoch, Ordering::Relaxed);
        let mut retry_at = now.saturating_add(RETRY_MS);
        let mut out = Vec::new();
        for (f, q) in self.lock().iter() {
            let take = if q.holds_the_door(now) {
                // The others of this loop are tried once the bound passes.
                if q.waiters
                    .iter()
                    .skip(1)
                    .any(|w| w.seat.loop_index == loop_index)
                {
                    retry_at = retry_at.min(q.since.saturating_add(HOL_LIMIT_MS));
                }
                1
            } else {
                q.waiters.len()
            };
            out.extend(
                q.waiters
                    .iter()
                    .take(take)
                    .filter(|w| w.seat.loop_index == loop_index)
                    .map(|w| (f.clone(), w.clone())),
            );
        }
        slot.retry_at.store(retry_at, Ordering::Relaxed);
        out
    }

    /// Removes the waiter `seq` of `feature` if still queued (and bumps
    /// the epoch: the next one may be served now).
    pub(crate) fn remove(&self, feature: &str, seq: u64) -> Option<Waiter> {
        let mut map = self.lock();
        let q = map.get_mut(feature)?;
        let at = q.waiters.iter().position(|w| w.seq == seq)?;
        let w = q.waiters.remove(at)?;
        if q.waiters.is_empty() {
            map.remove(feature);
        }
        drop(map);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.buckets[bucket(feature)].fetch_sub(1, Ordering::Relaxed);
        self.slot(w.seat.loop_index)
            .waiters
            .fetch_sub(1, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Release);
        Some(w)
    }

    /// Every queued request, oldest first per feature.
    pub(crate) fn snapshot(&self) -> Vec<QueuedStatus> {
        if self.is_empty() {
            return Vec::new();
        }
        let map = self.lock();
        let mut all: Vec<(u64, QueuedStatus)> = map
            .values()
            .flat_map(|q| &q.waiters)
            .map(|w| (w.seq, w.entry.clone()))
            .collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, e)| e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(f: &str, h: &str) -> QueuedStatus {
        QueuedStatus {
            names: Names::new(f, "u", "h", h).to_owned(),
            count: 1,
            since_ms: 0,
            deadline_ms: 10,
        }
    }

    #[test]
    fn fifo_per_feature_and_removal() {
        let q = Queues::new(2);
        assert!(q.is_empty());
        let seat = |l, c| Seat {
            loop_index: l,
            conn: c,
            serial: 1,
        };
        let a = q.push(seat(0, 1), b"a", entry("F", "a"));
        let b = q.push(seat(1, 2), b"b", entry("F", "b"));
        q.push(seat(1, 3), b"c", entry("G", "c"));
        assert!(q.blocks("F", 0) && !q.blocks("H", 0));
        let heads = q.to_try_on(0, 0);
        assert_eq!(heads.len(), 1);
        assert_eq!(heads[0].1.seq, a);
        assert_eq!(q.to_try_on(1, 0).len(), 1, "F's head is on loop 0");
        assert!(q.blocks("F", HOL_LIMIT_MS - 1) && !q.blocks("G", 10 * HOL_LIMIT_MS));
        // Past the bound, F's second waiter is tried too.
        assert_eq!(q.to_try_on(1, HOL_LIMIT_MS).len(), 2);
        assert!(q.remove("F", a).is_some());
        assert!(q.remove("F", a).is_none(), "removed once");
        assert_eq!(q.to_try_on(1, 0).len(), 2);
        let shown: Vec<String> = q.snapshot().into_iter().map(|e| e.names.handle).collect();
        assert_eq!(shown, ["b", "c"]);
        q.remove("F", b);
        assert!(!q.blocks("F", 0));
    }

    #[test]
    fn a_chain_of_waiters_cannot_keep_the_door_shut() {
        let q = Queues::new(2);
        let seat = Seat {
            loop_index: 0,
            conn: 1,
            serial: 1,
        };
        let at = |t: u64, h: &str| QueuedStatus {
            since_ms: t,
            ..entry("F", h)
        };
        let a = q.push(seat, b"a", at(0, "a"));
        q.push(seat, b"b", at(9_000, "b"));
        q.remove("F", a);
        // b is the head now, queued at 9 s; the queue has been non-empty
        // since 0, so the bound has passed at 10 s.
        assert!(q.blocks("F", 9_999));
        assert!(!q.blocks("F", HOL_LIMIT_MS));
        assert_eq!(q.to_try_on(0, HOL_LIMIT_MS).len(), 1);
    }

    #[test]
    fn a_loop_tries_again_only_when_something_changed() {
        let q = Queues::new(2);
        let seat = |l| Seat {
            loop_index: l,
            conn: 1,
            serial: 1,
        };
        assert!(q.to_try_on(0, 0).is_empty(), "no waiter: nothing to try");
        let a = q.push(seat(0), b"a", entry("F", "a"));
        q.push(seat(0), b"b", entry("F", "b"));
        assert_eq!(q.to_try_on(0, 0).len(), 1, "a new waiter is tried");
        assert!(q.to_try_on(0, 1).is_empty(), "nothing changed");
        assert!(q.to_try_on(1, 1).is_empty(), "loop 1 has no waiter");
        assert!(q.released(), "somebody waits");
        assert_eq!(q.to_try_on(0, 2).len(), 1, "a license came back");
        assert!(q.to_try_on(0, 3).is_empty());
        q.retry_on(0);
        assert_eq!(q.to_try_on(0, 4).len(), 1, "a new generation");
        assert!(q.to_try_on(0, 5).is_empty());
        // The head-of-line bound passing lets b be tried too.
        assert_eq!(q.to_try_on(0, HOL_LIMIT_MS).len(), 2);
        assert!(q.to_try_on(0, HOL_LIMIT_MS + 1).is_empty());
        assert_eq!(
            q.to_try_on(0, HOL_LIMIT_MS + RETRY_MS).len(),
            2,
            "a second on"
        );
        q.remove("F", a);
        assert_eq!(
            q.to_try_on(0, HOL_LIMIT_MS + RETRY_MS).len(),
            1,
            "a waiter left"
        );
        let b = q.to_try_on(0, HOL_LIMIT_MS + 2 * RETRY_MS)[0].1.seq;
        q.remove("F", b);
        assert!(q.is_empty() && !q.released(), "nobody waits");
        assert!(q.to_try_on(0, 3 * HOL_LIMIT_MS).is_empty());
    }

    #[test]
    fn the_checkout_path_locks_only_for_a_waiter_of_its_bucket() {
        let q = Queues::new(1);
        let seat = Seat {
            loop_index: 0,
            conn: 1,
            serial: 1,
        };
        q.push(seat, b"a", entry("F", "a"));
        assert!(q.blocks("F", 0));
        let other = (0..1000)
            .map(|n| format!("G{n}"))
            .find(|g| bucket(g) != bucket("F"))
            .expect("another bucket");
        assert_eq!(q.buckets[bucket(&other)].load(Ordering::Relaxed), 0);
        assert!(!q.blocks(&other, 0));
    }
}
