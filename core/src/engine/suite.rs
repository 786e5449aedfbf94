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
//! # SUITE_RESERVED
//!
//! With `OPTIONS=SUITE_RESERVED`, a holder who takes the suite license
//! also takes one license of each *other* component, kept for them (a
//! *kept* license: counted in the component pool like any other, held by
//! no instance). A kept license stays until the holder's suite license
//! goes back, which gives every kept license back with it. The holder's
//! own checkout of a component uses its kept one; a component instance of
//! the holder's that is released while they still hold the suite becomes
//! the kept license of that component again, if they have none of it.
//! A component with no free license when the suite is taken is not kept
//! (the checkout is not refused for it), nor kept later.
//!
//! Every checkout of a reserved suite's component holds the suite's lock
//! from before the component charge to after the suite take
//! ([`Suites::checkout_reserved`]): freeing the holder's kept license and
//! charging the pool happen with no other charge of the suite's component
//! pools in between, so the freed license cannot go to someone else. A
//! release keeps (or gives back) under the same lock, in the table's
//! credit step.
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
    /// Per pool: its component's index in its suite's `components`.
    component_of_pool: Vec<u32>,
    /// Per feature: the `SUITE_RESERVED` suite its pools are components
    /// of, or NONE.
    reserved_of_feature: Vec<u32>,
    suites: Vec<Suite>,
}

/// What the engine tells [`Suites::build`] about one pool that is a
/// suite's component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SuiteOf<'a> {
    /// The suite feature's pools.
    pub(crate) pools: &'a [u32],
    pub(crate) dup: DupGroup,
    /// `OPTIONS=SUITE_RESERVED`.
    pub(crate) reserved: bool,
    /// The component's feature.
    pub(crate) feature: u32,
}

#[derive(Debug)]
struct Suite {
    /// The suite feature's pools, in file order.
    pools: Vec<u32>,
    dup: DupGroup,
    /// `OPTIONS=SUITE_RESERVED`: holders keep a license of each component.
    reserved: bool,
    /// The components: (feature, its pools in this suite, in file order).
    components: Vec<(u32, Vec<u32>)>,
    /// Grouped holder names -> what they hold.
    held: Mutex<FxHashMap<String, Held>>,
}

#[derive(Debug, Clone)]
struct Held {
    /// Component instances of this holder.
    components: u32,
    /// The suite pool charged (NONE: an uncounted one, nothing charged).
    pool: u32,
    /// `SUITE_RESERVED`: per component (as in [`Suite::components`]), the
    /// pool of the license kept for the holder, or NONE. Empty otherwise.
    kept: Vec<u32>,
}

impl Suites {
    /// `suite_of(pool index)`: for each of `pool_count` pools, what makes
    /// it a suite's component, if it is one; `features`: the engine's
    /// feature count.
    pub(crate) fn build<'a>(
        pool_count: usize,
        features: usize,
        suite_of: impl Fn(usize) -> Option<SuiteOf<'a>>,
    ) -> Suites {
        let mut s = Suites {
            of_pool: vec![NONE; pool_count],
            component_of_pool: vec![NONE; pool_count],
            reserved_of_feature: Vec::new(),
            suites: Vec::new(),
        };
        for p in 0..pool_count {
            let Some(of) = suite_of(p) else {
                continue;
            };
            let at =
                match s.suites.iter().position(|x| {
                    x.pools == of.pools && x.dup == of.dup && x.reserved == of.reserved
                }) {
                    Some(at) => at,
                    None => {
                        s.suites.push(Suite {
                            pools: of.pools.to_vec(),
                            dup: of.dup,
                            reserved: of.reserved,
                            components: Vec::new(),
                            held: Mutex::new(FxHashMap::default()),
                        });
                        s.suites.len() - 1
                    }
                };
            let suite = &mut s.suites[at];
            let c = match suite.components.iter().position(|(f, _)| *f == of.feature) {
                Some(c) => c,
                None => {
                    suite.components.push((of.feature, Vec::new()));
                    suite.components.len() - 1
                }
            };
            suite.components[c].1.push(p as u32);
            s.of_pool[p] = at as u32;
            s.component_of_pool[p] = c as u32;
            if of.reserved {
                if s.reserved_of_feature.is_empty() {
                    s.reserved_of_feature = vec![NONE; features];
                }
                // A feature that is a component of two reserved suites is
                // kept by the first (a license file that says so is odd).
                if let Some(r) = s.reserved_of_feature.get_mut(of.feature as usize) {
                    if *r == NONE {
                        *r = at as u32;
                    }
                }
            }
        }
        s
    }

    /// The `SUITE_RESERVED` suite whose component feature `fid` is: its
    /// checkouts go through [`Suites::checkout_reserved`].
    #[inline]
    pub(crate) fn reserved_of(&self, fid: u32) -> Option<u32> {
        if self.reserved_of_feature.is_empty() {
            return None;
        }
        self.reserved_of_feature
            .get(fid as usize)
            .copied()
            .filter(|&s| s != NONE)
    }

    /// A checkout of a component of the reserved suite `s`, under the
    /// suite's lock: the holder's kept license of the component (if any)
    /// is given back to its pool, `charge` charges a pool (returning it
    /// and what the caller needs to undo it), and the suite is taken as
    /// [`Suites::take`] does; refused, `undo` gives the charge back and the
    /// kept license is taken again. A pool of another suite (or none)
    /// charged instead: its own suite, if any, is taken after the lock.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn checkout_reserved<T>(
        &self,
        s: u32,
        fid: u32,
        pools: &[Pool],
        holder: &HolderBuf,
        now: Millis,
        charge: impl FnOnce() -> Result<(u32, T), Reason>,
        undo: impl FnOnce(u32, &T),
    ) -> Result<(u32, T), Reason> {
        let suite = &self.suites[s as usize];
        let key = key(suite.dup, holder);
        let mut held = lock(&suite.held);
        let c = suite.components.iter().position(|(f, _)| *f == fid);
        // The holder's kept license of this component: freed for the
        // charge below, which nobody else's can take first (they wait for
        // the lock).
        let kept = match (held.get_mut(&key), c) {
            (Some(h), Some(c)) => std::mem::replace(&mut h.kept[c], NONE),
            _ => NONE,
        };
        if kept != NONE {
            pools[kept as usize].unreserve(1);
        }
        let keep_again = |held: &mut FxHashMap<String, Held>| {
            if kept == NONE {
                return;
            }
            // Nothing else charged the suite's components meanwhile: the
            // license freed above is still free (releases only add).
            if pools[kept as usize].reserve(1).is_some() {
                if let (Some(h), Some(c)) = (held.get_mut(&key), c) {
                    h.kept[c] = kept;
                }
            }
        };
        let (p, t) = match charge() {
            Ok(x) => x,
            Err(reason) => {
                keep_again(&mut held);
                return Err(reason);
            }
        };
        if self.of(p) != Some(s) {
            keep_again(&mut held);
            drop(held);
            if let Some(other) = self.of(p) {
                if let Err(reason) = self.take(other, pools, holder, now) {
                    undo(p, &t);
                    return Err(reason);
                }
            }
            return Ok((p, t));
        }
        match self.take_locked(
            suite,
            &mut held,
            key,
            pools,
            self.component_of_pool[p as usize],
            now,
        ) {
            Ok(()) => Ok((p, t)),
            // Refused only for a new holder, who had nothing kept.
            Err(reason) => {
                undo(p, &t);
                Err(reason)
            }
        }
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
        self.take_locked(suite, &mut held, key, pools, NONE, now)
    }

    /// [`Suites::take`] under the lock; for a reserved suite, a new holder
    /// also keeps a license of each component but `component` (the one
    /// being checked out).
    fn take_locked(
        &self,
        suite: &Suite,
        held: &mut FxHashMap<String, Held>,
        key: String,
        pools: &[Pool],
        component: u32,
        now: Millis,
    ) -> Result<(), Reason> {
        if let Some(h) = held.get_mut(&key) {
            h.components += 1;
            return Ok(());
        }
        let serves = |p: u32| {
            let pool = &pools[p as usize];
            !pool.is_expired(now) && pool.is_started(now) && !pool.retired
        };
        let mut serving = suite.pools.iter().copied().filter(|&p| serves(p));
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
                let kept = if suite.reserved {
                    suite
                        .components
                        .iter()
                        .enumerate()
                        .map(|(c, (_, cps))| {
                            if c as u32 == component {
                                return NONE;
                            }
                            cps.iter()
                                .copied()
                                .filter(|&p| serves(p))
                                .filter(|&p| {
                                    pools[p as usize].counted && !pools[p as usize].startup
                                })
                                .find(|&p| pools[p as usize].reserve(1).is_some())
                                .unwrap_or(NONE)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                held.insert(
                    key,
                    Held {
                        components: 1,
                        pool,
                        kept,
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
        // A restored holder keeps nothing until one of its component
        // instances is released while it holds the suite.
        let kept = if suite.reserved {
            vec![NONE; suite.components.len()]
        } else {
            Vec::new()
        };
        held.insert(
            key,
            Held {
                components: 1,
                pool,
                kept,
            },
        );
    }

    /// A component instance of `holder`, charged to pool `p`, was
    /// released: the suite license goes back with its last one, and every
    /// license kept for the holder with it. Returns whether one of the
    /// instance's licenses stays charged to `p`, as the holder's kept
    /// license of that component (a reserved suite, still held, none kept
    /// of it): the caller credits the pool one license less.
    pub(crate) fn give(&self, s: u32, pools: &[Pool], holder: &HolderBuf, p: u32) -> bool {
        let suite = &self.suites[s as usize];
        let key = key(suite.dup, holder);
        let mut held = lock(&suite.held);
        let Some(h) = held.get_mut(&key) else {
            // A component taken without its suite: a reconciled offline
            // session's (RECONCILE charges the pools it used, not the
            // suite; docs/license-file.md). Nothing to give back.
            return false;
        };
        h.components -= 1;
        if h.components == 0 {
            let Some(h) = held.remove(&key) else {
                return false;
            };
            if h.pool != NONE {
                pools[h.pool as usize].unreserve(1);
            }
            for k in h.kept.into_iter().filter(|&k| k != NONE) {
                pools[k as usize].unreserve(1);
            }
            return false;
        }
        let c = self.component_of_pool[p as usize] as usize;
        match h.kept.get_mut(c) {
            Some(k) if *k == NONE => {
                *k = p;
                true
            }
            _ => false,
        }
    }

    /// Per pool of the engine (`pool_count` of them): the licenses kept
    /// for `SUITE_RESERVED` suite holders now (counted in the pool's in-use
    /// count, held by no instance).
    pub(crate) fn kept(&self, pool_count: usize) -> Vec<u32> {
        let mut kept = vec![0u32; pool_count];
        for suite in self.suites.iter().filter(|s| s.reserved) {
            for h in lock(&suite.held).values() {
                for &k in &h.kept {
                    if let Some(n) = kept.get_mut(k as usize) {
                        *n = n.saturating_add(1);
                    }
                }
            }
        }
        kept
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
