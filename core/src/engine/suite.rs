//! Package suites (`PACKAGE ... OPTIONS=SUITE`): a new instance of a
//! suite's component also takes one license of the suite feature, shared
//! by every component instance of the same holder (under the suite's
//! grouping, `SUITE_DUP_GROUP`, default `UHD`), and given back with the
//! holder's last component instance.
//!
//! Each suite keeps, under one lock, a map from the holder's grouped names
//! to how many component instances they hold and which suite pool they
//! charged. The lock is taken only by checkouts, releases and restores of
//! suite components, never on any other feature's path: it is the one
//! place besides DUP_GROUP uses (`uses.rs`) where a checkout locks.
//!
//! # Order and atomicity
//!
//! A checkout charges the component's pool first (the table claim is
//! already ours, so no twin of the key is charging), then the suite under
//! its lock. If the suite is refused, the component charge is given back
//! and the claim abandoned before anything is published: nobody ever sees
//! a component instance without its suite license, and nothing stays
//! charged. A release gives the suite back while the component's slot is
//! RELEASING (inside the table's credit step), so a checkout of the same
//! key that waits for that credit finds the suite credited too. The suite
//! pool's count is the pool's ordinary CAS counter, so direct checkouts
//! of the suite feature compete with it soundly.

use rustc_hash::FxHashMap;

use super::holder::HolderBuf;
use super::pool::Pool;
use super::Reason;
use crate::clock::Millis;
use crate::license::DupGroup;
use crate::sync::{lock, Mutex};

/// No suite: the pool's checkouts take nothing else.
const NONE: u32 = u32::MAX;

/// The engine's suites, and which pools are their components.
#[derive(Debug, Default)]
pub(crate) struct Suites {
    /// Per pool: the index of the suite its checkouts also take, or NONE.
    of_pool: Vec<u32>,
    suites: Vec<Suite>,
}

#[derive(Debug)]
struct Suite {
    /// The suite feature's pools, in file order.
    pools: Vec<u32>,
    dup: DupGroup,
    /// Grouped holder names -> what they hold.
    held: Mutex<FxHashMap<String, Held>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    /// Component instances of this holder.
    components: u32,
    /// The suite pool charged (NONE: an uncounted one, nothing charged).
    pool: u32,
}

impl Suites {
    /// `suite_of(pool index)`: for each of `pool_count` pools, the suite
    /// feature's pools and grouping if the pool is a suite's component.
    pub(crate) fn build<'a>(
        pool_count: usize,
        suite_of: impl Fn(usize) -> Option<(&'a [u32], DupGroup)>,
    ) -> Suites {
        let mut s = Suites {
            of_pool: vec![NONE; pool_count],
            suites: Vec::new(),
        };
        for p in 0..pool_count {
            let Some((pools, dup)) = suite_of(p) else {
                continue;
            };
            let at = match s
                .suites
                .iter()
                .position(|x| x.pools == pools && x.dup == dup)
            {
                Some(at) => at,
                None => {
                    s.suites.push(Suite {
                        pools: pools.to_vec(),
                        dup,
                        held: Mutex::new(FxHashMap::default()),
                    });
                    s.suites.len() - 1
                }
            };
            s.of_pool[p] = at as u32;
        }
        s
    }

    /// The suite a checkout charged to pool `p` also takes.
    #[inline]
    pub(crate) fn of(&self, p: u32) -> Option<u32> {
        if self.suites.is_empty() {
            return None;
        }
        self.of_pool.get(p as usize).copied().filter(|&s| s != NONE)
    }

    /// Takes the suite license of `holder` (or shares the one it holds).
    /// Refused with `AllInUse` when every suite pool that serves now is
    /// full, `Expired` / `NotYetStarted` when none serves.
    pub(crate) fn take(
        &self,
        s: u32,
        pools: &[Pool],
        holder: &HolderBuf,
        now: Millis,
    ) -> Result<(), Reason> {
        let suite = &self.suites[s as usize];
        let key = key(suite.dup, holder);
        let mut held = lock(&suite.held);
        if let Some(h) = held.get_mut(&key) {
            h.components += 1;
            return Ok(());
        }
        let mut serving = suite.pools.iter().copied().filter(|&p| {
            let pool = &pools[p as usize];
            !pool.is_expired(now) && pool.is_started(now) && !pool.retired
        });
        let mut any = false;
        let charged = serving.find_map(|p| {
            any = true;
            let pool = &pools[p as usize];
            if !pool.counted || pool.startup {
                Some(NONE)
            } else {
                pool.reserve(1).map(|_| p)
            }
        });
        match charged {
            Some(pool) => {
                held.insert(
                    key,
                    Held {
                        components: 1,
                        pool,
                    },
                );
                Ok(())
            }
            None if any => Err(Reason::AllInUse),
            None if suite
                .pools
                .iter()
                .any(|&p| !pools[p as usize].is_expired(now) && !pools[p as usize].retired) =>
            {
                Err(Reason::NotYetStarted)
            }
            None => Err(Reason::Expired),
        }
    }

    /// Takes the suite license of a restored component instance, beyond
    /// the suite's count if need be (it was out already).
    pub(crate) fn force(&self, s: u32, pools: &[Pool], holder: &HolderBuf) {
        let suite = &self.suites[s as usize];
        let key = key(suite.dup, holder);
        let mut held = lock(&suite.held);
        if let Some(h) = held.get_mut(&key) {
            h.components += 1;
            return;
        }
        let counted = |p: &u32| pools[*p as usize].counted && !pools[*p as usize].startup;
        let pool = if suite.pools.iter().any(|p| !counted(p)) {
            NONE
        } else {
            let live = suite
                .pools
                .iter()
                .copied()
                .filter(|&p| !pools[p as usize].retired);
            match live
                .clone()
                .find(|&p| pools[p as usize].reserve(1).is_some())
            {
                Some(p) => p,
                None => match live.chain(suite.pools.iter().copied()).next() {
                    Some(p) => {
                        pools[p as usize].force(1);
                        p
                    }
                    None => NONE,
                },
            }
        };
        held.insert(
            key,
            Held {
                components: 1,
                pool,
            },
        );
    }

    /// A component instance of `holder` was released: the suite license
    /// goes back with its last one.
    pub(crate) fn give(&self, s: u32, pools: &[Pool], holder: &HolderBuf) {
        let suite = &self.suites[s as usize];
        let key = key(suite.dup, holder);
        let mut held = lock(&suite.held);
        let Some(h) = held.get_mut(&key) else {
            debug_assert!(false, "a suite component released without its suite");
            return;
        };
        h.components -= 1;
        if h.components == 0 {
            let pool = h.pool;
            held.remove(&key);
            if pool != NONE {
                pools[pool as usize].unreserve(1);
            }
        }
    }

    /// Per pool of the engine (`pool_count` of them): the suite licenses
    /// it has lent to component holders now.
    pub(crate) fn lent(&self, pool_count: usize) -> Vec<u32> {
        let mut lent = vec![0u32; pool_count];
        for suite in &self.suites {
            for h in lock(&suite.held).values() {
                if let Some(n) = lent.get_mut(h.pool as usize) {
                    *n = n.saturating_add(1);
                }
            }
        }
        lent
    }

    /// Suite licenses held now, and the component instances sharing them
    /// (for tests).
    #[cfg(test)]
    pub(crate) fn held(&self, s: u32) -> (usize, u32) {
        let held = lock(&self.suites[s as usize].held);
        (held.len(), held.values().map(|h| h.components).sum())
    }
}

/// The holder's names that its suite grouping compares.
fn key(dup: DupGroup, h: &HolderBuf) -> String {
    let mask = dup.mask();
    if mask & DupGroup::VENDOR != 0 {
        return String::new();
    }
    if dup.is_by_handle() {
        return format!("\u{1}{}", h.handle());
    }
    let pick = |bit: u8, s: &str| {
        if mask & bit != 0 {
            s.to_string()
        } else {
            String::new()
        }
    };
    format!(
        "{}\0{}\0{}",
        pick(DupGroup::USER, h.user()),
        pick(DupGroup::HOST, h.host()),
        pick(DupGroup::DISPLAY, h.display())
    )
}

#[cfg(all(test, not(loom)))]
mod tests;
