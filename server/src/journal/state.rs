//! The live lingering instances as recovery rebuilds them from the
//! records: a snapshot, then every segment after its mark
//! ([`super::files::recover`]). The running journal keeps no such copy
//! (its snapshots scan the engine: see the parent module); this is the
//! replay's state, dropped once recovery has restored it into the engine.
//!
//! Records of one instance can reach the journal out of engine order when
//! two loops touch it (a renewal on one connection, a check-in of the same
//! handle on another, each in its own loop's batch). Engine ids are never
//! reused within a run, so a release leaves a tombstone, and a later OUT
//! for a tombstoned id is ignored: a released instance never comes back.
//! A snapshot's TOMBSTONE records (the recent releases of the run that
//! wrote it) do the same for records after its mark.
//!
//! RECONCILE records are kept by admission id (the latest record of an id
//! wins; a RECONCILE never writes an id twice): the ids a restart must
//! still refuse to count again, and which live instances are reconciled
//! ones (recovery restores those beyond the count). An id is forgotten at
//! a snapshot [`SEEN_KEEP_MS`] after it was reconciled, once its instance
//! is no longer live.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use rustc_hash::FxHashMap;

use super::record::{self, Instance, Record};

/// How long [`State::prune`] keeps a tombstone: far longer than a batch
/// can be in flight.
pub const TOMBSTONE_KEEP_MS: u64 = 60_000;

/// How long a reconciled admission id is remembered: 90 days, far longer
/// than a client's offline grace (30 days) and its retries.
pub const SEEN_KEEP_MS: u64 = 90 * 24 * 3600 * 1000;

/// Live instances (encoded INSTANCE payloads by journal id), recent
/// releases and reconciled admission ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    /// Journal id -> INSTANCE payload (engine ids of the run that wrote
    /// them, not chosen by clients: hashed with the cheap Fx hash, which
    /// matters when a restart replays millions).
    pub live: FxHashMap<u64, Box<[u8]>>,
    /// Journal id -> release time, Unix ms.
    pub tombstones: HashMap<u64, u64>,
    /// Admission id -> RECONCILE payload.
    pub reconciled: HashMap<Box<str>, Box<[u8]>>,
}

impl State {
    /// Applies one decoded record (its encoded payload is `payload`).
    pub fn apply(&mut self, rec: &Record<'_>, payload: &[u8]) {
        match rec {
            Record::Out(i) => self.apply_out(i, payload, false),
            Record::Instance(i) => self.apply_out(i, payload, true),
            Record::In { id, at_ms } | Record::Tombstone { id, at_ms } => {
                self.live.remove(id);
                self.tombstones.insert(*id, *at_ms);
            }
            Record::Reconcile(r) => {
                self.reconciled.insert(r.id.into(), payload.into());
            }
            Record::End { .. } => {}
        }
    }

    /// Each remembered reconciled admission, decoded.
    pub fn reconciles(&self) -> impl Iterator<Item = record::Reconciled<'_>> {
        self.reconciled
            .values()
            .filter_map(|p| match record::decode(p) {
                Ok(Record::Reconcile(r)) => Some(r),
                _ => None,
            })
    }

    fn apply_out(&mut self, i: &Instance<'_>, payload: &[u8], snapshot: bool) {
        if self.tombstones.contains_key(&i.id) {
            return;
        }
        let Some(deadline) = i.deadline_ms else {
            // Held until check-in from now on: connection-bound, released
            // by a restart, so no longer the journal's business.
            self.live.remove(&i.id);
            return;
        };
        // One probe of the map per record (a restart replays millions).
        let entry = self.live.entry(i.id);
        match entry {
            // A checkout's record (count 0: a DUP_GROUP check-in's, which
            // names only the handle) brings the full names a snapshot
            // lacked; the first checkout time stays.
            Entry::Occupied(mut e)
                if !snapshot && i.count != 0 && record::names_incomplete(e.get()) =>
            {
                let p = e.get_mut();
                let since = record::at_of(p).unwrap_or(i.at_ms);
                let mut full: Box<[u8]> = payload.into();
                record::as_instance(&mut full, since);
                *p = full;
            }
            Entry::Occupied(mut e) if i.renewed => {
                record::patch_instance(e.get_mut(), i.linger_ms, deadline);
            }
            entry => {
                let mut p: Box<[u8]> = payload.into();
                if !snapshot {
                    // A renewal of an instance the journal never saw out
                    // with a linger (it was connection-bound): its first
                    // checkout time is unknown, the renewal's is the best
                    // there is.
                    record::as_instance(&mut p, i.at_ms);
                }
                match entry {
                    Entry::Occupied(mut e) => {
                        e.insert(p);
                    }
                    Entry::Vacant(e) => {
                        e.insert(p);
                    }
                }
            }
        }
    }

    /// Drops tombstones older than [`TOMBSTONE_KEEP_MS`] at `now`.
    /// Forgets reconciled ids older than [`SEEN_KEEP_MS`] whose instance
    /// is not live.
    pub fn prune(&mut self, now: u64) {
        self.tombstones
            .retain(|_, at| at.saturating_add(TOMBSTONE_KEEP_MS) >= now);
        let live = &self.live;
        self.reconciled.retain(|_, p| match record::decode(p) {
            Ok(Record::Reconcile(r)) => {
                live.contains_key(&r.instance) || r.at_ms.saturating_add(SEEN_KEEP_MS) >= now
            }
            _ => false,
        });
    }

    /// Re-keys every live instance after a license reread: `remap` maps old
    /// ids to new ones; instances it lacks were dropped by the reread.
    /// Tombstones are cleared: old ids are never seen again.
    pub fn remap(&mut self, remap: &HashMap<u64, u64>) {
        let old = std::mem::take(&mut self.live);
        for (id, mut p) in old {
            if let Some(&new) = remap.get(&id) {
                if p.len() > 9 {
                    p[1..9].copy_from_slice(&new.to_le_bytes());
                }
                self.live.insert(new, p);
            }
        }
        for p in self.reconciled.values_mut() {
            if let Ok(Record::Reconcile(r)) = record::decode(p) {
                let new = remap.get(&r.instance).copied().unwrap_or(0);
                record::patch_reconcile(p, new);
            }
        }
        self.tombstones.clear();
    }

    /// The snapshot body: every live instance, every tombstone, every
    /// reconciled id, then END,
    /// as frames numbered from `seq`. Returns the next sequence number.
    pub fn write_frames(&self, out: &mut Vec<u8>, mut seq: u64) -> u64 {
        let mut p = Vec::with_capacity(128);
        for payload in self.live.values() {
            record::frame(out, seq, payload);
            seq += 1;
        }
        for (&id, &at) in &self.tombstones {
            p.clear();
            record::encode_tombstone(&mut p, id, at);
            record::frame(out, seq, &p);
            seq += 1;
        }
        for payload in self.reconciled.values() {
            record::frame(out, seq, payload);
            seq += 1;
        }
        p.clear();
        record::encode_end(&mut p, self.live.len() as u64, self.tombstones.len() as u64);
        record::frame(out, seq, &p);
        seq + 1
    }

    /// Each live instance, decoded.
    pub fn instances(&self) -> impl Iterator<Item = Instance<'_>> {
        self.live.values().filter_map(|p| match record::decode(p) {
            Ok(Record::Instance(i)) => Some(i),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{decode, encode_in, encode_instance, TAG_OUT};
    use tally_core::engine::Names;

    fn out(id: u64, at: u64, deadline: Option<u64>, renewed: bool, handle: &str) -> Vec<u8> {
        let mut p = Vec::new();
        encode_instance(
            &mut p,
            TAG_OUT,
            &Instance {
                id,
                at_ms: at,
                linger_ms: deadline.map_or(0, |d| d - at),
                deadline_ms: deadline,
                count: 1,
                version: 0,
                renewed,
                names: Names {
                    feature: "F",
                    user: "u",
                    host: "h",
                    display: "d",
                    handle,
                },
            },
        );
        p
    }

    fn apply(s: &mut State, p: &[u8]) {
        s.apply(&decode(p).expect("decodes"), p);
    }

    #[test]
    fn renewal_moves_the_deadline_and_keeps_since() {
        let mut s = State::default();
        apply(&mut s, &out(1, 100, Some(1100), false, "a"));
        apply(&mut s, &out(1, 500, Some(2500), true, "b"));
        let i: Vec<_> = s.instances().collect();
        assert_eq!(i.len(), 1);
        assert_eq!((i[0].at_ms, i[0].deadline_ms), (100, Some(2500)));
        assert_eq!(i[0].names.handle, "a");
    }

    #[test]
    fn a_renewal_after_its_release_does_not_bring_it_back() {
        let mut s = State::default();
        apply(&mut s, &out(1, 100, Some(1100), false, "a"));
        let mut p = Vec::new();
        encode_in(&mut p, 1, 200);
        apply(&mut s, &p);
        apply(&mut s, &out(1, 150, Some(9100), true, "a"));
        assert!(s.live.is_empty());
        s.prune(200 + TOMBSTONE_KEEP_MS + 1);
        assert!(s.tombstones.is_empty());
    }

    #[test]
    fn renewal_without_linger_leaves_the_journal() {
        let mut s = State::default();
        apply(&mut s, &out(1, 100, Some(1100), false, "a"));
        apply(&mut s, &out(1, 200, None, true, "a"));
        assert!(s.live.is_empty());
        // And a connection-bound instance renewed with a linger enters it.
        apply(&mut s, &out(2, 300, Some(1300), true, "b"));
        assert_eq!(s.instances().next().map(|i| i.at_ms), Some(300));
    }

    fn reconcile(instance: u64, at: u64, id: &str) -> Vec<u8> {
        let mut p = Vec::new();
        record::encode_reconcile(
            &mut p,
            &record::Reconciled {
                instance,
                at_ms: at,
                id,
                feature: "F",
                handle: "a",
            },
        );
        p
    }

    #[test]
    fn reconciled_ids_survive_snapshots_and_remaps_then_age_out() {
        let mut s = State::default();
        apply(&mut s, &out(1, 100, Some(1100), false, "a"));
        apply(&mut s, &reconcile(1, 100, "c-1"));
        apply(&mut s, &reconcile(0, 100, "c-2"));
        let mut body = Vec::new();
        s.write_frames(&mut body, 0);
        let mut back = State::default();
        for (_, r) in crate::journal::record::scan(&body, Some(0)).frames {
            let p = &body[r];
            match decode(p).unwrap() {
                Record::End { .. } => {}
                rec => back.apply(&rec, p),
            }
        }
        assert_eq!(back, s);
        s.remap(&HashMap::from([(1, 77)]));
        let mut got: Vec<_> = s.reconciles().map(|r| (r.id, r.instance)).collect();
        got.sort();
        assert_eq!(got, [("c-1", 77), ("c-2", 0)]);
        // Old: forgotten unless its instance is live.
        s.prune(100 + SEEN_KEEP_MS + 1);
        let got: Vec<_> = s.reconciles().map(|r| r.id).collect();
        assert_eq!(got, ["c-1"]);
        let mut p = Vec::new();
        encode_in(&mut p, 77, 200);
        apply(&mut s, &p);
        s.prune(100 + SEEN_KEEP_MS + 1);
        assert_eq!(s.reconciles().count(), 0);
    }

    #[test]
    fn remap_rekeys_and_drops() {
        let mut s = State::default();
        apply(&mut s, &out(1, 100, Some(1100), false, "a"));
        apply(&mut s, &out(2, 100, Some(1100), false, "b"));
        s.remap(&HashMap::from([(1, 77)]));
        let i: Vec<_> = s.instances().collect();
        assert_eq!(i.len(), 1);
        assert_eq!((i[0].id, i[0].names.handle), (77, "a"));
    }
}
