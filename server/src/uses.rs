//! Uses of one shared instance under `DUP_GROUP`.
//!
//! With `DUP_GROUP=UH` (say), every checkout by alice on pc1 is a *use* of
//! one instance: the first takes the license, the others share it. Each use
//! ends on its own (its CHECKIN, its connection closing, its idle TIMEOUT),
//! and the license goes back only when the last one ends, as FlexLM does:
//! otherwise a second program of alice's would run on a license that
//! another user has meanwhile been granted. Uses may sit on different
//! connections, served by different loops, so the count is shared. Only
//! grouped features are counted (a handle's instance has one use).

use std::collections::HashMap;
use std::sync::Mutex;

use tally_core::engine::{FeatureId, InstanceId};

/// Live uses per shared instance (absent: not counted, one use).
#[derive(Debug, Default)]
pub(crate) struct Uses(Mutex<HashMap<InstanceId, u32>>);

impl Uses {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new use of `id` began.
    pub(crate) fn add(&self, id: InstanceId) {
        *self.map().entry(id).or_insert(0) += 1;
    }

    /// `n` uses of `id` ended; true if none is left, so the caller checks
    /// the instance in (also when `id` was never counted).
    pub(crate) fn end(&self, id: InstanceId, n: u32) -> bool {
        let mut map = self.map();
        match map.get_mut(&id) {
            Some(left) if *left > n => {
                *left -= n;
                false
            }
            Some(_) => {
                map.remove(&id);
                true
            }
            None => true,
        }
    }

    /// The instance was checked in (by its last use, an expiry, a removal):
    /// forget its count.
    pub(crate) fn forget(&self, id: InstanceId) {
        let mut map = self.map();
        if !map.is_empty() {
            map.remove(&id);
        }
    }

    /// After a reread: the counts follow their instances to the new ids;
    /// instances that were not kept are forgotten.
    pub(crate) fn remap(&self, moved: &HashMap<InstanceId, (InstanceId, FeatureId)>) {
        let mut map = self.map();
        let old = std::mem::take(&mut *map);
        map.extend(
            old.into_iter()
                .filter_map(|(id, n)| moved.get(&id).map(|&(new, _)| (new, n))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32) -> InstanceId {
        InstanceId::from_bits(u64::from(slot))
    }

    #[test]
    fn the_last_use_checks_in() {
        let u = Uses::default();
        u.add(id(1));
        u.add(id(1));
        u.add(id(1));
        assert!(!u.end(id(1), 1));
        assert!(!u.end(id(1), 1));
        assert!(u.end(id(1), 1), "the third use was the last");
        assert!(u.end(id(1), 1), "not counted: one use");
        u.add(id(2));
        u.add(id(2));
        assert!(u.end(id(2), 2), "a connection ending both of its uses");
    }

    #[test]
    fn forgotten_and_remapped_counts() {
        let u = Uses::default();
        u.add(id(1));
        u.add(id(1));
        u.forget(id(1));
        assert!(u.end(id(1), 1));
        u.add(id(3));
        u.add(id(3));
        u.add(id(4));
        let moved = HashMap::from([(id(3), (id(30), FeatureId(0)))]);
        u.remap(&moved);
        assert!(!u.end(id(30), 1), "moved with its count");
        assert!(u.end(id(30), 1));
        assert!(u.end(id(4), 1), "not kept: forgotten");
    }
}
