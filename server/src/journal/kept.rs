//! What the journal thread remembers between snapshots, now that the
//! snapshot is read from the engine's table ([`super::scan`]): no copy of
//! the live instances. Three small things:
//!
//! - the reconciled admission ids (RECONCILE records, by admission id:
//!   few, and they must outlive their instances, see [`SEEN_KEEP_MS`]);
//! - the full names of live instances whose names the table keeps
//!   shortened ([`HolderBuf::fits`]: more than 116 bytes of user, host,
//!   display and handle together; none in practice), because a restart
//!   computes an instance's key from its names;
//! - the releases of the last moments ([`Recent`]): the ids whose IN record
//!   arrived since the start of the last completed *marker round*, which a
//!   snapshot writes as tombstones (see the parent module's argument: a
//!   grant or renewal record of another loop that was made before such a
//!   release may still arrive after the snapshot's mark, and must not
//!   bring the instance back). A marker round is short (every loop ends
//!   its event round), so this holds a fraction of a second of releases,
//!   whatever the churn, and nothing at all on a server that releases
//!   nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tally_core::engine::{Engine, HolderBuf, InstanceId};

use super::record::{self, Instance, Record};
use super::state::SEEN_KEEP_MS;

/// Full names of the live instances whose names the table shortens:
/// journal id -> INSTANCE payload. Shared with the snapshot thread.
pub type LongNames = Arc<Mutex<HashMap<u64, Box<[u8]>>>>;

/// Whether an instance's names fit the table's copy whole.
pub fn names_fit(i: &Instance<'_>) -> bool {
    let n = &i.names;
    HolderBuf::fits(n.user, n.host, n.display, n.handle)
}

/// The journal thread's memory (see the module docs).
#[derive(Debug, Default)]
pub struct Kept {
    /// Admission id -> RECONCILE payload.
    pub reconciled: HashMap<Box<str>, Box<[u8]>>,
    /// See [`LongNames`].
    pub long: LongNames,
    /// Recent releases and the marker rounds that bound them.
    pub recent: Recent,
}

impl Kept {
    /// Applies one record the journal thread is writing.
    pub fn apply(&mut self, rec: &Record<'_>, payload: &[u8]) {
        match rec {
            Record::Out(i) | Record::Instance(i) => {
                if i.deadline_ms.is_none() {
                    // Connection-bound from now on: not a restart's business.
                    self.long_names().remove(&i.id);
                } else if !names_fit(i) && !i.names.user.is_empty() {
                    let mut long = self.long_names();
                    if !(i.renewed && long.contains_key(&i.id)) {
                        let mut p: Box<[u8]> = payload.into();
                        record::as_instance(&mut p, i.at_ms);
                        long.insert(i.id, p);
                    }
                }
            }
            Record::In { id, at_ms } | Record::Tombstone { id, at_ms } => {
                if !self.long_names().is_empty() {
                    self.long_names().remove(id);
                }
                self.recent.released(*id, *at_ms);
            }
            Record::Reconcile(r) => {
                self.reconciled.insert(r.id.into(), payload.into());
            }
            Record::End { .. } => {}
        }
    }

    fn long_names(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Box<[u8]>>> {
        self.long.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a snapshot: forgets the long names of instances no longer
    /// live in `engine`, and reconciled ids older than [`SEEN_KEEP_MS`]
    /// whose instance is not live.
    pub fn prune(&mut self, engine: &Engine, now: u64) {
        let live = |id: u64| engine.is_live(InstanceId::from_bits(id));
        self.long_names().retain(|&id, _| live(id));
        self.reconciled.retain(|_, p| match record::decode(p) {
            // Instance 0 of a RECONCILE record: none.
            Ok(Record::Reconcile(r)) => {
                (r.instance != 0 && live(r.instance)) || r.at_ms.saturating_add(SEEN_KEEP_MS) >= now
            }
            _ => false,
        });
    }

    /// After a license reread: old ids -> new ones (absent: dropped). The
    /// recent releases are of old ids, which no record names again.
    ///
    /// The long names under the new ids go into a map of their own: a
    /// background scan of the old engine may still be running, and it
    /// looks its instances up by their old ids in the map it was given at
    /// its mark (every record of an old id came before the reread, so that
    /// map is final for them). Rewritten in place, it would find nothing
    /// (or another instance's names, an old id being some new one) and
    /// write shortened names, which a restart from that snapshot would
    /// key the instance by.
    pub fn remap(&mut self, remap: &HashMap<u64, u64>) {
        let mut renamed = HashMap::new();
        for (&id, p) in self.long_names().iter() {
            if let Some(&new) = remap.get(&id) {
                let mut p = p.clone();
                if p.len() > 9 {
                    p[1..9].copy_from_slice(&new.to_le_bytes());
                }
                renamed.insert(new, p);
            }
        }
        self.long = Arc::new(Mutex::new(renamed));
        for p in self.reconciled.values_mut() {
            if let Ok(Record::Reconcile(r)) = record::decode(p) {
                let new = remap.get(&r.instance).copied().unwrap_or(0);
                record::patch_reconcile(p, new);
            }
        }
        self.recent.forget_all();
    }
}

/// The releases a snapshot must write as tombstones, bounded by marker
/// rounds.
///
/// A round starts when the journal thread raises the epoch every loop
/// reads at the end of its event rounds ([`super::LoopJournal::send`]) and
/// wakes the loops; each loop then sends, after its records, a marker:
/// "every record of what I did before this is ahead of it". Once every
/// loop's marker arrived, the round is complete: a record that arrives
/// later was made after its loop's marker, so after the round began, and
/// any release it can precede arrives after that too. So the releases
/// that arrived before the start of the last completed round are never
/// needed again and are dropped.
#[derive(Debug, Default)]
pub struct Recent {
    /// (id, release time), in arrival order; `base` is the absolute index
    /// of the first.
    ids: VecDeque<(u64, u64)>,
    base: u64,
    /// The round under way: its epoch, the absolute index it started at,
    /// and which loops have answered.
    round: Option<Round>,
}

#[derive(Debug)]
struct Round {
    epoch: u64,
    from: u64,
    answered: Vec<bool>,
    left: usize,
}

impl Recent {
    /// A release arrived.
    pub fn released(&mut self, id: u64, at_ms: u64) {
        self.ids.push_back((id, at_ms));
    }

    /// Releases kept now.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether a round should start: none is under way and some release
    /// is kept that a completed round would let go.
    pub fn wants_round(&self) -> bool {
        self.round.is_none() && !self.ids.is_empty()
    }

    /// Round `epoch` starts, among `loops` loops (0: complete at once).
    pub fn start_round(&mut self, epoch: u64, loops: usize) {
        let from = self.base + self.ids.len() as u64;
        self.round = Some(Round {
            epoch,
            from,
            answered: vec![false; loops],
            left: loops,
        });
        if loops == 0 {
            self.complete();
        }
    }

    /// Loop `from`'s marker of round `epoch` arrived.
    pub fn marker(&mut self, from: usize, epoch: u64) {
        let Some(r) = self.round.as_mut() else { return };
        if r.epoch != epoch {
            return;
        }
        if let Some(a) = r.answered.get_mut(from) {
            if !*a {
                *a = true;
                r.left -= 1;
            }
        }
        if r.left == 0 {
            self.complete();
        }
    }

    fn complete(&mut self) {
        if let Some(r) = self.round.take() {
            while self.base < r.from && self.ids.pop_front().is_some() {
                self.base += 1;
            }
        }
    }

    /// The releases a snapshot taken now writes as tombstones.
    pub fn tombstones(&self) -> Vec<(u64, u64)> {
        self.ids.iter().copied().collect()
    }

    /// Forgets every release (a reread: new ids from now on). A round
    /// under way goes on.
    pub fn forget_all(&mut self) {
        self.base += self.ids.len() as u64;
        self.ids.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_round_lets_go_of_what_came_before_it() {
        let mut r = Recent::default();
        r.released(1, 10);
        assert!(r.wants_round());
        r.start_round(1, 2);
        assert!(!r.wants_round());
        r.released(2, 11);
        r.marker(0, 1);
        r.marker(0, 1); // twice counts once
        r.marker(1, 0); // another round's
        assert_eq!(r.len(), 2);
        r.marker(1, 1);
        // Releases since the round's start stay.
        assert_eq!(r.tombstones(), [(2, 11)]);
        r.start_round(2, 2);
        r.marker(0, 2);
        r.marker(1, 2);
        assert!(r.is_empty());
        r.released(3, 12);
        r.forget_all();
        assert!(r.is_empty());
        r.start_round(3, 0);
        assert!(!r.wants_round());
    }

    #[test]
    fn a_remap_leaves_a_running_scan_the_long_names_by_their_old_ids() {
        let mut k = Kept::default();
        k.long
            .lock()
            .expect("lock")
            .insert(5, vec![0u8; 12].into_boxed_slice());
        // What a scan of the old engine took at its mark.
        let at_mark = k.long.clone();
        k.remap(&HashMap::from([(5, 9)]));
        assert!(at_mark.lock().expect("lock").contains_key(&5));
        let now = k.long.lock().expect("lock");
        assert_eq!(now.keys().copied().collect::<Vec<_>>(), [9]);
        assert_eq!(now[&9][1..9], 9u64.to_le_bytes());
    }
}
