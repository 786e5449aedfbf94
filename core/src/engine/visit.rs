//! Read-only visits of the live holders, without copying them.
//!
//! [`Engine::for_each_holder`] walks the checkout table once
//! (`Table::for_each_live`: two fingerprint words per bucket, a
//! seqlock-validated read of each live slot) and calls the caller's
//! closure with a [`HolderView`] on the stack: nothing is allocated per
//! holder, so a caller that keeps a bounded part (one page of a STATUS,
//! the few holders an lmremove names) needs memory for that part only.
//! [`Engine::pools_snapshot`] is the rest of a [`Snapshot`]: every pool's
//! terms and counters, no holder listed. [`Engine::snapshot`] is the two
//! together, so a caller built on them sees exactly what a snapshot
//! lists.
//!
//! Like a snapshot, each holder is read consistently; the visit as a
//! whole is not one instant: a holder granted or released while it runs
//! may be seen or not.

use super::{
    deadline_out, Engine, FeatureId, FeatureSnapshot, HolderBuf, HolderSnapshot, Identity,
    InstanceId, PoolId, PoolSnapshot, Snapshot, BORROWED,
};
use crate::clock::Millis;

/// One live holder as [`Engine::for_each_holder`] reads it: what a
/// [`HolderSnapshot`] holds, with the table's copy of the names
/// ([`HolderBuf`], shortened if they did not fit) instead of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderView {
    /// The instance.
    pub id: InstanceId,
    /// The pool it is charged to.
    pub pool: PoolId,
    /// That pool's feature.
    pub feature: FeatureId,
    /// Its identity, for [`super::Restore::identity`].
    pub identity: Identity,
    /// Licenses held.
    pub count: u32,
    /// First checkout.
    pub since_ms: Millis,
    /// Linger of the latest checkout, ms (0 = none; [`BORROWED`] cleared).
    pub linger_ms: u64,
    /// Linger deadline; `None` = held until check-in. For a borrowed
    /// instance: the borrow's end.
    pub deadline_ms: Option<Millis>,
    /// Borrowed ([`Engine::borrow`]).
    pub borrowed: bool,
    /// The holder's names (the table's copy).
    pub holder: HolderBuf,
}

impl HolderView {
    /// Numeric license handle (lmstat's number after `server/port`).
    pub fn ticket(&self) -> u64 {
        self.id.ticket()
    }

    /// The same holder as a snapshot lists it (the names copied out).
    pub fn to_snapshot(&self) -> HolderSnapshot {
        HolderSnapshot {
            id: self.id,
            identity: self.identity,
            ticket: self.ticket(),
            user: self.holder.user().to_string(),
            host: self.holder.host().to_string(),
            display: self.holder.display().to_string(),
            handle: self.holder.handle().to_string(),
            count: self.count,
            since_ms: self.since_ms,
            linger_ms: self.linger_ms,
            deadline_ms: self.deadline_ms,
            borrowed: self.borrowed,
        }
    }
}

impl Engine {
    /// Calls `f` for every live holder, in table order (not the
    /// snapshot's): one pass over the table, nothing allocated. Read-only;
    /// `f` may call back into the engine (a release of the instance seen
    /// is safe: the visit reads each slot afresh).
    pub fn for_each_holder(&self, mut f: impl FnMut(&HolderView)) {
        self.table.for_each_live(|r| {
            let Some(pool) = self.pools.get(r.pool as usize) else {
                return;
            };
            f(&HolderView {
                id: r.id,
                pool: PoolId(r.pool),
                feature: FeatureId(pool.feature),
                identity: Identity {
                    key: r.key,
                    dup: self.features[pool.feature as usize].key.dup(),
                },
                count: r.count,
                since_ms: r.since,
                linger_ms: r.linger & !BORROWED,
                deadline_ms: deadline_out(r.deadline),
                borrowed: r.linger & BORROWED != 0,
                holder: r.holder,
            });
        });
    }

    /// A [`Snapshot`] with every pool's `holders` empty: the pools' terms
    /// and counters only, no scan of the table (its cost is the number of
    /// pools). With [`Engine::for_each_holder`] it is [`Engine::snapshot`]
    /// in parts.
    pub fn pools_snapshot(&self, now: Millis) -> Snapshot {
        let lent = self.suites.lent(self.pools.len());
        let kept = self.suites.kept(self.pools.len());
        let features = self
            .features
            .iter()
            .map(|f| FeatureSnapshot {
                name: f.name.clone(),
                vendor: f.vendor.clone(),
                dup_group: f.key.dup(),
                pools: f
                    .pools
                    .iter()
                    .map(|&p| {
                        let pool = &self.pools[p as usize];
                        let in_use = u32::try_from(pool.in_use()).unwrap_or(u32::MAX);
                        PoolSnapshot {
                            id: PoolId(p),
                            kind: pool.line.kind,
                            line: pool.line.line,
                            version: pool.line.version.clone(),
                            expiry: pool.line.expiry,
                            count: pool.line.count,
                            overdraft_limit: pool.line.overdraft,
                            startup: pool.startup,
                            in_use,
                            overdraft: in_use.saturating_sub(pool.count),
                            expired: pool.is_expired(now),
                            package: pool.line.package.as_ref().map(|c| c.package.clone()),
                            suite_in_use: lent[p as usize],
                            suite_kept: kept[p as usize],
                            reserved_free: self.reserved_free(PoolId(p)),
                            holders: Vec::new(),
                        }
                    })
                    .collect(),
            })
            .collect();
        Snapshot {
            taken_ms: now,
            features,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::BTreeMap;

    use crate::engine::{Engine, EngineConfig, Request};
    use crate::license::parse_str;

    const LIC: &str = "FEATURE F v 1.0 permanent 40\n\
                       INCREMENT F v 1.0 permanent 40\n\
                       FEATURE G v 1.0 permanent 1000\n";

    /// What the visit reports: handle -> (feature, pool, count, since).
    fn visit(e: &Engine) -> BTreeMap<String, (String, u32, u32, u64)> {
        let mut seen = BTreeMap::new();
        e.for_each_holder(|h| {
            let name = e.feature_name(h.feature).to_string();
            let old = seen.insert(
                h.holder.handle().to_string(),
                (name, h.pool.0, h.count, h.since_ms),
            );
            assert!(old.is_none(), "a holder visited twice");
        });
        seen
    }

    #[test]
    fn the_visit_sees_every_live_holder_once_through_churn() {
        let e = Engine::new(&parse_str("t", LIC), EngineConfig::default());
        let now = 1_000_000;
        // The model: handle -> (feature, count, since).
        let mut held: BTreeMap<String, (String, u32, u64)> = BTreeMap::new();
        for i in 0..200u64 {
            let feature = if i % 3 == 0 { "G" } else { "F" };
            let handle = format!("h{i}");
            let mut r = Request::new(feature, "u", "host", &handle);
            r.count = 1 + (i % 2) as u32;
            let count = r.count;
            if e.checkout(&r, now + i).is_ok() {
                held.insert(handle.clone(), (feature.to_string(), count, now + i));
            }
            // Check in an older one now and then.
            if i % 5 == 4 {
                let old = format!("h{}", i - 3);
                if let Some((f, _, _)) = held.remove(&old) {
                    e.checkin(&f, "u", "host", "", &old).unwrap();
                }
            }
            let seen = visit(&e);
            let got: BTreeMap<_, _> = seen
                .iter()
                .map(|(h, (f, _, c, s))| (h.clone(), (f.clone(), *c, *s)))
                .collect();
            assert_eq!(got, held, "after step {i}");
        }
        // The counted pools are full: F's 80 licenses are all held.
        let f_held: u32 = held.values().filter(|v| v.0 == "F").map(|v| v.1).sum();
        assert_eq!(f_held, 80);
        // The visit's pool is the one whose counter each holder charged.
        let mut per_pool = [0u32; 3];
        for (_, (_, p, c, _)) in visit(&e) {
            per_pool[p as usize] += c;
        }
        let pools = e.pools_snapshot(now);
        let counters: Vec<u32> = pools
            .features
            .iter()
            .flat_map(|f| &f.pools)
            .map(|p| p.in_use)
            .collect();
        assert_eq!(counters, per_pool);
        assert!(pools
            .features
            .iter()
            .flat_map(|f| &f.pools)
            .all(|p| p.holders.is_empty()));
    }

    #[test]
    fn a_holder_released_from_inside_the_visit_is_gone_and_the_rest_stay() {
        let e = Engine::new(&parse_str("t", LIC), EngineConfig::default());
        let now = 1_000_000;
        for i in 0..30 {
            let handle = format!("h{i}");
            e.checkout(&Request::new("F", "u", "host", &handle), now)
                .unwrap();
        }
        let mut released = Vec::new();
        e.for_each_holder(|h| {
            if h.holder.handle().ends_with('7') {
                assert!(e.release(h.id).is_some());
                released.push(h.holder.handle().to_string());
            }
        });
        released.sort();
        assert_eq!(released, ["h17", "h27", "h7"]);
        let left = visit(&e);
        assert_eq!(left.len(), 27);
        assert!(left.keys().all(|h| !h.ends_with('7')));
    }

    #[test]
    fn the_snapshot_lists_what_the_visit_sees() {
        let e = Engine::new(&parse_str("t", LIC), EngineConfig::default());
        let now = 1_000_000;
        for i in 0..50u64 {
            let handle = format!("h{i}");
            let mut r = Request::new(if i % 2 == 0 { "F" } else { "G" }, "u", "host", &handle);
            r.linger_ms = i * 10;
            e.checkout(&r, now + 50 - i).unwrap();
        }
        let snap = e.snapshot(now);
        let mut listed = 0;
        for p in snap.features.iter().flat_map(|f| &f.pools) {
            let order: Vec<_> = p.holders.iter().map(|h| (h.since_ms, h.ticket)).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted);
            listed += p.holders.len();
        }
        let mut views = Vec::new();
        e.for_each_holder(|h| views.push(h.to_snapshot()));
        assert_eq!(listed, views.len());
        for v in &views {
            assert!(snap
                .features
                .iter()
                .flat_map(|f| &f.pools)
                .any(|p| p.holders.contains(v)));
        }
    }
}
