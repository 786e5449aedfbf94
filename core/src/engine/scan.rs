//! A read-only scan of the lingering instances, for a journal's snapshot.
//!
//! [`Engine::for_each_lingering`] walks the table once
//! (`Table::for_each_live`: two fingerprint words per bucket, a
//! consistent read of each live slot) and reports each instance that a
//! restart must keep: one with a linger deadline, or a DUP_GROUP
//! instance that a bound use holds (no deadline in its slot) while a
//! lingering use was promised one (the latest promise is what it is held
//! until once no connection is left; see `uses.rs`). Connection-bound
//! instances are skipped: a restart closes their connections.
//!
//! Like [`Engine::snapshot`], each instance is read consistently, the
//! scan as a whole is not one instant: an instance granted, renewed or
//! released while it runs may be seen before or after the change. A
//! journal makes that harmless by replaying every record written after a
//! mark taken before the scan began (`tally-server`'s `journal` module).
//! Nothing is allocated per instance; the caller's closure is called with
//! the table's copy of the holder's names ([`HolderBuf`], shortened if
//! they did not fit: [`HolderBuf::fits`] says when).

use super::table::NO_DEADLINE;
use super::{Engine, FeatureId, HolderBuf, InstanceId};
use crate::clock::Millis;

/// A lingering instance as [`Engine::for_each_lingering`] reads it:
/// everything a journal's INSTANCE record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lingering {
    /// The instance.
    pub id: InstanceId,
    /// Its feature.
    pub feature: FeatureId,
    /// The (scaled) version of the pool it is charged to: a pool of this
    /// version or later serves it again ([`super::Restore::version`]).
    pub version: u64,
    /// Licenses held.
    pub count: u32,
    /// First checkout, Unix ms.
    pub since_ms: Millis,
    /// Linger of the latest checkout, ms, with [`super::BORROWED`] set
    /// for a borrow (as [`super::Restore::linger_ms`] takes it).
    pub linger_ms: u64,
    /// When it is checked in: its slot's deadline, or for a DUP_GROUP
    /// instance held by a bound use, the latest promise ahead of `now`.
    pub deadline_ms: Millis,
    /// The holder's names (the table's copy).
    pub holder: HolderBuf,
}

impl Engine {
    /// Calls `f` for every instance a restart at `now` must keep (see the
    /// module docs of `engine/scan.rs`). Read-only; takes a DUP_GROUP
    /// bucket's lock only for a grouped instance without a deadline.
    pub fn for_each_lingering(&self, now: Millis, mut f: impl FnMut(&Lingering)) {
        self.table.for_each_live(|r| {
            let pool = &self.pools[r.pool as usize];
            let deadline = if r.deadline != NO_DEADLINE {
                Some(r.deadline)
            } else if self.shares(pool.feature) {
                self.uses(r.id)
                    .and_then(|u| u.promises().map(|(_, d)| d).filter(|&d| d > now).max())
            } else {
                None
            };
            if let Some(deadline_ms) = deadline {
                f(&Lingering {
                    id: r.id,
                    feature: FeatureId(pool.feature),
                    version: pool.version,
                    count: r.count,
                    since_ms: r.since,
                    linger_ms: r.linger,
                    deadline_ms,
                    holder: r.holder,
                });
            }
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::engine::{Engine, EngineConfig, Request, BORROWED};
    use crate::license::parse_str;

    fn scan(e: &Engine, now: u64) -> Vec<(String, u64, u64)> {
        let mut v = Vec::new();
        e.for_each_lingering(now, |l| {
            v.push((l.holder.handle().to_string(), l.deadline_ms, l.since_ms));
        });
        v.sort();
        v
    }

    #[test]
    fn lingering_instances_are_seen_and_bound_ones_are_not() {
        let lic = parse_str("t", "FEATURE F v 1.0 permanent 10\n");
        let e = Engine::new(&lic, EngineConfig::default());
        let now = 1_000_000;
        let mut r = Request::new("F", "u", "h", "a");
        r.linger_ms = 5000;
        e.checkout(&r, now).unwrap();
        let mut bound = Request::new("F", "u", "h", "b");
        bound.linger_ms = 0;
        e.checkout(&bound, now).unwrap();
        assert_eq!(scan(&e, now), [("a".to_string(), now + 5000, now)]);
        // A renewal moves what the scan reads; a release removes it.
        e.checkout(&r, now + 10).unwrap();
        assert_eq!(scan(&e, now), [("a".to_string(), now + 5010, now)]);
        e.checkin("F", "u", "h", "", "a").unwrap();
        assert!(scan(&e, now).is_empty());
        // A bound instance renewed with a linger is seen from then on.
        bound.linger_ms = 100;
        e.checkout(&bound, now + 20).unwrap();
        assert_eq!(scan(&e, now), [("b".to_string(), now + 120, now)]);
    }

    #[test]
    fn a_grouped_instance_held_by_a_bound_use_is_kept_until_its_promise() {
        let lic = parse_str("t", "FEATURE F v 1.0 permanent 10 DUP_GROUP=UH\n");
        let e = Engine::new(&lic, EngineConfig::default());
        let now = 1_000_000;
        let mut a = Request::new("F", "u", "h", "a");
        a.linger_ms = 5000;
        let (g, _) = e.checkout_use(&a, None, now, |_| None).unwrap();
        let mut b = Request::new("F", "u", "h", "b");
        b.linger_ms = 0;
        e.checkout_use(&b, None, now + 1, |_| None).unwrap();
        // The slot has no deadline (a bound use), the promise is 5000.
        assert_eq!(e.holder(g.id.unwrap()).unwrap().handle(), "a");
        assert_eq!(scan(&e, now + 2), [("a".to_string(), now + 5000, now)]);
        // Past the promise, nothing is kept for a restart.
        assert!(scan(&e, now + 6000).is_empty());
    }

    #[test]
    fn a_borrow_keeps_its_mark() {
        let lic = parse_str("t", "FEATURE F v 1.0 permanent 10 BORROW\n");
        let e = Engine::new(&lic, EngineConfig::default());
        let now = 1_000_000;
        let r = Request::new("F", "u", "h", "a");
        e.borrow(&r, 1, None, now).expect("lent");
        let mut seen = Vec::new();
        e.for_each_lingering(now, |l| {
            seen.push((l.linger_ms & BORROWED != 0, l.deadline_ms));
        });
        assert_eq!(seen, [(true, now + 3_600_000)]);
    }
}
