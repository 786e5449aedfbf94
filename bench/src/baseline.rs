//! Baseline tables: what a team would write instead of tally's table.
//!
//! Each does the work tally does per request, with a map in place of
//! tally's table: find the feature by name (tally serves many), key the
//! instance by XXH3-128 of the handle under the feature's seed, admit
//! against a limit, store the instance with its holder's names, and on
//! check-in hand the instance back (a server logs who returned it).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tally_core::engine::HolderBuf;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::{Workload, FEATURE};

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

/// Feature name -> the feature's key seed, as tally keeps it (one
/// feature here; tally's is an `FxHashMap` too).
#[derive(Debug)]
struct Features(FxHashMap<String, u64>);

impl Features {
    fn new() -> Features {
        Features(
            [(FEATURE.to_string(), 0x7461_6c6c_7946_4545)]
                .into_iter()
                .collect(),
        )
    }

    /// The key of `handle`'s instance of `feature`: the identity tally
    /// computes per request.
    fn key(&self, feature: &str, handle: &str) -> Option<u128> {
        let seed = *self.0.get(feature)?;
        Some(xxh3_128_with_seed(handle.as_bytes(), seed))
    }
}

/// A `parking_lot::Mutex<HashMap>`: one lock for the whole table.
#[derive(Debug)]
pub struct MutexTable {
    features: Features,
    inner: Mutex<(HashMap<u128, Instance>, u32)>,
    limit: u32,
}

impl MutexTable {
    /// A table of `limit` licenses.
    pub fn new(limit: u32) -> MutexTable {
        MutexTable {
            features: Features::new(),
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
        let Some(k) = self.features.key(FEATURE, handle) else {
            return false;
        };
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
        let Some(k) = self.features.key(FEATURE, handle) else {
            return false;
        };
        let mut g = self.inner.lock();
        let (map, in_use) = &mut *g;
        match map.remove(&k) {
            Some(gone) => {
                *in_use -= 1;
                drop(g);
                black_box(gone);
                true
            }
            None => false,
        }
    }
}

/// A `DashMap` (sharded `RwLock`s) plus an atomic admission counter.
#[derive(Debug)]
pub struct DashTable {
    features: Features,
    map: DashMap<u128, Instance>,
    in_use: AtomicU32,
    limit: u32,
}

impl DashTable {
    /// A table of `limit` licenses.
    pub fn new(limit: u32) -> DashTable {
        DashTable {
            features: Features::new(),
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
        let Some(k) = self.features.key(FEATURE, handle) else {
            return false;
        };
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
        let Some(k) = self.features.key(FEATURE, handle) else {
            return false;
        };
        match self.map.remove(&k) {
            Some(gone) => {
                self.in_use.fetch_sub(1, Ordering::Relaxed);
                black_box(gone);
                true
            }
            None => false,
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
