//! Baseline tables: what a team would write instead of tally's table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;
use tally_core::engine::HolderBuf;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::Workload;

/// One held instance, as the baselines store it. `since` and `holder` are
/// never read by the benches; they are stored so the baselines write as
/// much per checkout as tally does (a status page would read them).
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
struct Instance {
    since: u64,
    deadline: u64,
    holder: HolderBuf,
}

/// The same identity tally computes per checkout: XXH3-128 of the handle
/// under a per-feature seed (tally derives the seed once per feature; here
/// it is a constant).
fn key(handle: &str) -> u128 {
    const FEATURE_SEED: u64 = 0x7461_6c6c_7946_4545;
    xxh3_128_with_seed(handle.as_bytes(), FEATURE_SEED)
}

/// A `parking_lot::Mutex<HashMap>`: one lock for the whole table.
#[derive(Debug)]
pub struct MutexTable {
    inner: Mutex<(HashMap<u128, Instance>, u32)>,
    limit: u32,
}

impl MutexTable {
    /// A table of `limit` licenses.
    pub fn new(limit: u32) -> MutexTable {
        MutexTable {
            inner: Mutex::new((HashMap::with_capacity(limit as usize * 2), 0)),
            limit,
        }
    }
}

impl Workload for MutexTable {
    fn name(&self) -> &'static str {
        "mutex-hashmap"
    }
    fn checkout(&self, handle: &str, linger_ms: u64, now: u64) -> bool {
        let k = key(handle);
        let holder = HolderBuf::new("user", "host", "", handle);
        let mut g = self.inner.lock();
        let (map, in_use) = &mut *g;
        if let Some(i) = map.get_mut(&k) {
            i.deadline = now + linger_ms;
            return true;
        }
        if *in_use >= self.limit {
            return false;
        }
        *in_use += 1;
        map.insert(
            k,
            Instance {
                since: now,
                deadline: now + linger_ms,
                holder,
            },
        );
        true
    }
    fn checkin(&self, handle: &str) -> bool {
        let k = key(handle);
        let mut g = self.inner.lock();
        let (map, in_use) = &mut *g;
        if map.remove(&k).is_some() {
            *in_use -= 1;
            true
        } else {
            false
        }
    }
}

/// A `DashMap` (sharded `RwLock`s) plus an atomic admission counter.
#[derive(Debug)]
pub struct DashTable {
    map: DashMap<u128, Instance>,
    in_use: AtomicU32,
    limit: u32,
}

impl DashTable {
    /// A table of `limit` licenses.
    pub fn new(limit: u32) -> DashTable {
        DashTable {
            map: DashMap::with_capacity(limit as usize * 2),
            in_use: AtomicU32::new(0),
            limit,
        }
    }
}

impl Workload for DashTable {
    fn name(&self) -> &'static str {
        "dashmap"
    }
    fn checkout(&self, handle: &str, linger_ms: u64, now: u64) -> bool {
        let k = key(handle);
        let holder = HolderBuf::new("user", "host", "", handle);
        match self.map.entry(k) {
            dashmap::Entry::Occupied(mut e) => {
                e.get_mut().deadline = now + linger_ms;
                true
            }
            dashmap::Entry::Vacant(v) => {
                let admitted = self
                    .in_use
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < self.limit).then_some(n + 1)
                    })
                    .is_ok();
                if admitted {
                    v.insert(Instance {
                        since: now,
                        deadline: now + linger_ms,
                        holder,
                    });
                }
                admitted
            }
        }
    }
    fn checkin(&self, handle: &str) -> bool {
        if self.map.remove(&key(handle)).is_some() {
            self.in_use.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TallyEngine;

    /// Every workload obeys the same rules, so the benches compare like
    /// with like.
    #[test]
    fn all_workloads_agree_on_the_rules() {
        let tables: [&dyn Workload; 3] = [
            &TallyEngine::new(2),
            &MutexTable::new(2),
            &DashTable::new(2),
        ];
        for t in tables {
            assert!(t.checkout("a", 0, 1), "{}", t.name());
            assert!(t.checkout("a", 0, 1), "{} renewal", t.name());
            assert!(t.checkout("b", 0, 1), "{}", t.name());
            assert!(!t.checkout("c", 0, 1), "{} over count", t.name());
            assert!(t.checkin("a"), "{}", t.name());
            assert!(!t.checkin("a"), "{} twice", t.name());
            assert!(t.checkout("c", 0, 1), "{}", t.name());
        }
    }
}
