//! The snapshot as a scan of the engine's table: what a running journal
//! writes ([`Scan`]), instead of a copy of every live instance that it
//! would have to keep. See the parent module's docs for why a scan that
//! runs while the loops go on, after the mark, is a correct snapshot.

use std::io;
use std::sync::Arc;

use tally_core::engine::{Engine, InstanceId, Names};

use super::files::{Frames, SnapshotBody};
use super::kept::{Kept, LongNames};
use super::record::{self, Instance, Record, TAG_INSTANCE};

/// What a snapshot is written from: the engine (its lingering instances),
/// the full names of those the table shortened, the recent releases
/// (tombstones) and the reconciled admission ids, copied at the mark.
pub struct Scan {
    /// The engine whose ids the journal writes now.
    pub engine: Arc<Engine>,
    /// Shared with the journal thread, which goes on updating it.
    pub long: LongNames,
    /// Written as tombstones.
    pub released: Vec<(u64, u64)>,
    /// RECONCILE payloads.
    pub reconciled: Vec<Box<[u8]>>,
    /// The scan's time: promises of DUP_GROUP instances that are past are
    /// not kept.
    pub now: u64,
}

impl Scan {
    /// The scan of `engine` with what `kept` holds now (the mark).
    pub fn at_mark(engine: &Arc<Engine>, kept: &Kept, now: u64) -> Scan {
        Scan {
            engine: engine.clone(),
            long: kept.long.clone(),
            released: kept.recent.tombstones(),
            reconciled: kept.reconciled.values().cloned().collect(),
            now,
        }
    }
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("released", &self.released.len())
            .field("reconciled", &self.reconciled.len())
            .finish()
    }
}

impl SnapshotBody for Scan {
    fn write_frames(&self, f: &mut Frames<'_>) -> io::Result<()> {
        let engine = &self.engine;
        let mut failed = None;
        let mut p = Vec::with_capacity(256);
        engine.for_each_lingering(self.now, |l| {
            if failed.is_some() {
                return;
            }
            let h = &l.holder;
            let id = l.id.to_bits();
            let mut i = Instance {
                id,
                at_ms: l.since_ms,
                linger_ms: l.linger_ms,
                deadline_ms: Some(l.deadline_ms),
                count: l.count,
                version: l.version,
                renewed: false,
                names: Names {
                    feature: engine.feature_name(l.feature),
                    user: h.user(),
                    host: h.host(),
                    display: h.display(),
                    handle: h.handle(),
                },
            };
            p.clear();
            // A shortened name ends in '~': the full ones, if the journal
            // has them (it has them for every instance whose record
            // arrived; one whose record is still on its way is written
            // after the mark, and its replay brings the full names).
            let shortened = [h.user(), h.host(), h.display(), h.handle()]
                .iter()
                .any(|s| s.ends_with('~'));
            let long = if shortened {
                let map = self.long.lock().unwrap_or_else(|e| e.into_inner());
                map.get(&id).cloned()
            } else {
                None
            };
            match long.as_deref().map(record::decode) {
                Some(Ok(Record::Instance(full))) => {
                    i.names = full.names;
                    record::encode_instance(&mut p, TAG_INSTANCE, &i);
                }
                _ => {
                    // Shortened, and no record of it yet: said so, for the
                    // replay of the record that follows the mark.
                    i.renewed = shortened;
                    record::encode_instance(&mut p, TAG_INSTANCE, &i);
                }
            }
            if let Err(e) = f.instance(&p) {
                failed = Some(e);
            }
            // The test hook's step (`files::DEBUG_CRASH_AT_ENV`).
            #[cfg(debug_assertions)]
            if f.instances() == 1 {
                super::files::debug_step("scan");
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let mut released = self.released.clone();
        released.sort_unstable();
        released.dedup_by_key(|r| r.0);
        for (id, at) in released {
            // Ids are not reused within a run (a slot's generation would
            // have to wrap within a marker round): never live here.
            if !engine.is_live(InstanceId::from_bits(id)) {
                f.tombstone(id, at)?;
            }
        }
        for r in &self.reconciled {
            f.other(r)?;
        }
        Ok(())
    }
}
