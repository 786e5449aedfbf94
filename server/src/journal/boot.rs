//! Recovery at start: the journal's instances back into a new engine,
//! before the first connection is accepted.
//!
//! Each recovered instance whose deadline is still ahead is restored with
//! its original deadline, names, count and first-checkout time, charged only
//! within the license's counts ([`Engine::restore_within_count`]), oldest
//! first; if the license shrank while the server was down, the newest ones
//! that no longer fit are not restored and the log says which and why.
//! Those whose deadline passed while the server was down are checked in and
//! logged with `(expired while server was down)`.
//!
//! Reconciled instances (those a remembered RECONCILE record names) are
//! restored after the others and whatever the counts
//! ([`Engine::restore`]), as RECONCILE admitted them: their overdraft is
//! back as it was. The remembered admission ids come back in
//! [`Booted::reconciled`], so a RECONCILE repeated after the restart
//! counts nothing again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tally_core::engine::{Engine, EngineConfig, InstanceId, Reason, Restore};

use super::files::{self, JournalError, Recovered};
use super::kept::{names_fit, Kept};
use super::record::{self, Instance, Record, TAG_INSTANCE};
use super::{Durability, Journal};
use crate::debuglog::LogHandle;

/// The state directory, locked and prepared, ready to start the journal
/// thread once the loops' wakers exist.
#[derive(Debug)]
pub struct Prepared {
    dir: PathBuf,
    lock: std::fs::File,
    gen: u64,
    /// What the journal thread starts with (the instances themselves are
    /// in the engine, which its first snapshot scans).
    kept: Kept,
    mode: Durability,
}

/// What recovery did.
#[derive(Debug, Default)]
pub struct Booted {
    /// `None` when durability is off.
    pub prepared: Option<Prepared>,
    /// Timers to arm: restored instances and their deadlines.
    pub arm: Vec<(InstanceId, u64)>,
    /// Restored instances.
    pub restored: usize,
    /// Checked in because their deadline passed while the server was down.
    pub expired: usize,
    /// Not restored (feature gone, license shrank).
    pub not_restored: usize,
    /// One line for stderr and the log.
    pub summary: Option<String>,
    /// Admission ids reconciled before the restart: (id, feature, handle).
    pub reconciled: Vec<(String, String, String)>,
}

/// The state directory, locked and read, not yet restored: read before
/// the engine is built, so that the engine is built with room for what it
/// restores ([`Read::config`]) rather than growing level by level while
/// millions of instances come back.
#[derive(Debug)]
pub struct Read {
    dir: PathBuf,
    mode: Durability,
    lock: std::fs::File,
    rec: Recovered,
    started: Instant,
}

/// Locks and reads `dir` (nothing when durability is off). A journal
/// damaged other than by a torn tail is refused unless `salvage`
/// (`tallyd --salvage-journal`): see [`files::recover`].
pub fn read(dir: &Path, mode: Durability, salvage: bool) -> Result<Option<Read>, JournalError> {
    if mode == Durability::Off {
        return Ok(None);
    }
    let started = Instant::now();
    let lock = files::lock_dir(dir)?;
    let rec = files::recover(dir, salvage)?;
    Ok(Some(Read {
        dir: dir.to_path_buf(),
        mode,
        lock,
        rec,
        started,
    }))
}

/// Instances restored a batch at a time (see [`Read::restore_into`]).
const BATCH: usize = 16;

/// A live instance's place in the restore order: first checkout, journal
/// id, and where its payload is (24 bytes: sorting millions of these moves
/// far less memory than sorting the decoded instances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Order {
    at_ms: u64,
    id: u64,
    index: u32,
}

impl Read {
    /// Live instances the journal holds (some may have expired meanwhile).
    pub fn instances(&self) -> usize {
        self.rec.state.live.len()
    }

    /// `config` with the engine's first table level sized to restore every
    /// live instance the journal holds ([`EngineConfig::restoring`]).
    pub fn config(&self, config: EngineConfig) -> EngineConfig {
        config.restoring(self.instances())
    }

    /// Restores what was read into `engine` at `now` (see the module docs).
    /// The replay's copy of the instances is freed on a thread of its own
    /// (`tally-free`): returning millions of small blocks to the allocator
    /// takes seconds, which the server need not wait for.
    pub fn restore_into(self, engine: &Engine, log: &LogHandle, now: u64) -> Booted {
        let Read {
            dir,
            mode,
            lock,
            rec,
            started,
        } = self;
        let mut booted = Booted::default();
        for note in &rec.notes {
            eprintln!("tallyd: journal: {note}");
            log.line(now, "lmgrd", format!("Journal: {note}"));
        }
        let reconciled: HashSet<u64> = rec
            .state
            .reconciles()
            .map(|r| r.instance)
            .filter(|&i| i != 0)
            .collect();
        // Oldest first: if the license shrank, the newest checkouts give
        // way; reconciled ones last (they are restored whatever the count).
        // Sorted by small fixed keys read from the payloads; each payload is
        // decoded once, when its turn comes.
        let payloads: Vec<&[u8]> = rec.state.live.values().map(|p| &p[..]).collect();
        let mut order = Vec::with_capacity(payloads.len());
        let mut last = Vec::new();
        for (index, p) in payloads.iter().enumerate() {
            let (Some(at_ms), Some(id)) = (record::at_of(p), record::id_of(p)) else {
                continue;
            };
            let o = Order {
                at_ms,
                id,
                index: index as u32,
            };
            if !reconciled.is_empty() && reconciled.contains(&id) {
                last.push(o);
            } else {
                order.push(o);
            }
        }
        order.sort_unstable();
        last.sort_unstable();
        let reconciled_from = order.len();
        order.extend(last);
        booted.arm.reserve(order.len());
        // Old journal id -> new one, for the RECONCILE records: only the
        // reconciled instances' (the only ones they name).
        let mut renumbered = std::collections::HashMap::new();
        let mut kept = Kept::default();
        let mut payload = Vec::with_capacity(128);
        let vendor = |feature: &str| {
            engine
                .feature_id(feature)
                .map_or("lmgrd", |f| engine.feature_vendor(f))
        };
        // A batch at a time: the next batch's payloads, then this batch's
        // table buckets, are asked of memory ahead (prefetched), so that the
        // cache misses of instances in random places overlap instead of
        // coming one after another.
        let mut batch: Vec<(bool, Instance<'_>)> = Vec::with_capacity(BATCH);
        for (b, chunk) in order.chunks(BATCH).enumerate() {
            let next = order.get((b + 1) * BATCH..).unwrap_or_default();
            for o in next.iter().take(BATCH) {
                prefetch(payloads[o.index as usize]);
            }
            batch.clear();
            for (k, o) in chunk.iter().enumerate() {
                if let Ok(Record::Instance(i)) = record::decode(payloads[o.index as usize]) {
                    engine.prefetch_restore(&restore_of(&i, i.deadline_ms));
                    batch.push((b * BATCH + k >= reconciled_from, i));
                }
            }
            for &(is_reconciled, i) in &batch {
                let names = &i.names;
                let Some(deadline) = i.deadline_ms.filter(|&d| d > now) else {
                    booted.expired += 1;
                    log.line(
                        now,
                        vendor(names.feature),
                        format!(
                            "IN: \"{}\" {}@{} [{}]  (expired while server was down)",
                            names.feature, names.user, names.host, names.handle
                        ),
                    );
                    continue;
                };
                let r = restore_of(&i, Some(deadline));
                let restored = if is_reconciled {
                    engine.restore(&r)
                } else {
                    engine.restore_within_count(&r)
                };
                match restored {
                    Ok(id) => {
                        booted.restored += 1;
                        if is_reconciled {
                            renumbered.insert(i.id, id.to_bits());
                        }
                        booted.arm.push((id, deadline));
                        if !names_fit(&i) {
                            // The table shortens them: the journal keeps them.
                            payload.clear();
                            record::encode_instance(
                                &mut payload,
                                TAG_INSTANCE,
                                &Instance {
                                    id: id.to_bits(),
                                    renewed: false,
                                    ..i
                                },
                            );
                            kept.long
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.to_bits(), payload.as_slice().into());
                        }
                    }
                    Err(why) => {
                        booted.not_restored += 1;
                        let because = match why {
                            Reason::AllInUse => {
                                "the license file now has fewer licenses than were out"
                            }
                            Reason::NoSuchFeature => "the license file no longer has this feature",
                            Reason::VersionTooHigh => "no counted pool of this version any more",
                            other => other.text(),
                        };
                        log.line(
                            now,
                            vendor(names.feature),
                            format!(
                                "IN: \"{}\" {}@{} [{}]  (not restored after restart: {because})",
                                names.feature, names.user, names.host, names.handle
                            ),
                        );
                    }
                }
            }
        }
        drop(order);
        drop(payloads);
        for r in rec.state.reconciles() {
            let instance = renumbered.get(&r.instance).copied().unwrap_or(0);
            payload.clear();
            record::encode_reconcile(&mut payload, &record::Reconciled { instance, ..r });
            kept.reconciled
                .insert(r.id.into(), payload.as_slice().into());
            booted.reconciled.push((
                r.id.to_string(),
                r.feature.to_string(),
                r.handle.to_string(),
            ));
        }
        let mut salvaged = if rec.set_aside.is_empty() {
            String::new()
        } else {
            format!(
                ", salvaged {} damaged file(s) ({} bytes unreadable; moved to {})",
                rec.set_aside.len(),
                rec.unreadable_bytes,
                dir.join(super::damage::DAMAGED_DIR).display()
            )
        };
        if !booted.reconciled.is_empty() {
            salvaged.push_str(&format!(
                ", {} reconciled admission id(s) remembered",
                booted.reconciled.len()
            ));
        }
        let summary = format!(
            "journal: recovered {} ({} mode): restored {}, expired while down {}, not restored {}, {} records replayed from {} and {} segment(s), {} bytes of torn tail dropped{salvaged}, in {} ms",
            dir.display(),
            mode,
            booted.restored,
            booted.expired,
            booted.not_restored,
            rec.records,
            rec.snapshot
                .as_ref()
                .map_or("no snapshot".to_string(), |p| p.display().to_string()),
            rec.segments,
            rec.dropped_bytes,
            started.elapsed().as_millis()
        );
        log.line(now, "lmgrd", summary.clone());
        booted.summary = Some(summary);
        booted.prepared = Some(Prepared {
            dir,
            lock,
            gen: rec.next_gen,
            kept,
            mode,
        });
        free_in_background(rec);
        booted
    }
}

/// Drops the replay's state (every instance's payload: they are in the
/// engine now) on a `tally-free` thread, then gives the memory back to the
/// system, not only to the allocator, so a restarted server's RSS is what
/// it holds. Inline if no thread can be had.
fn free_in_background(rec: Recovered) {
    // Should the thread not start, the closure, and `rec` with it, is
    // dropped here.
    let _ = std::thread::Builder::new()
        .name("tally-free".into())
        .spawn(move || {
            fastbins(false);
            drop(rec);
            fastbins(true);
            give_back_free_memory();
        });
}

/// What restoring journal instance `i` with deadline `deadline_ms` asks of
/// the engine.
fn restore_of<'a>(i: &Instance<'a>, deadline_ms: Option<u64>) -> Restore<'a> {
    Restore {
        names: i.names,
        count: i.count,
        version: i.version,
        since_ms: i.at_ms,
        linger_ms: i.linger_ms,
        deadline_ms,
        identity: None,
    }
}

/// Hints the CPU to load the first two cache lines of `payload` (an
/// instance's fixed fields and the start of its names).
#[inline(always)]
fn prefetch(payload: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for p in [payload.as_ptr(), payload.as_ptr().wrapping_add(64)] {
        // Safety: a prefetch is a hint: it reads nothing the program sees
        // and faults on no address. SSE is part of every x86_64 target.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = payload;
}

/// Turns glibc's fastbins off (or back on, to their default size) while
/// the replay's state is freed. With them on, the freeing thread's frees
/// of millions of small blocks only queue them in the arena's fastbins,
/// and whichever thread next asks for a large block (the main thread, the
/// recovery snapshot's buffer) merges them all before it gets it: seconds
/// at 10 M, in the way of the first connection. With them off, each free
/// merges its block at once, on the freeing thread. Elsewhere nothing.
fn fastbins(on: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's DEFAULT_MXFAST: 64 * sizeof(size_t) / 4.
        let max = if on {
            64 * std::mem::size_of::<usize>() as libc::c_int / 4
        } else {
            0
        };
        // Safety: mallopt only changes the allocator's own parameters,
        // under its own lock.
        unsafe {
            libc::mallopt(libc::M_MXFAST, max);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = on;
}

/// Returns the allocator's free pages to the system (glibc's
/// `malloc_trim`; elsewhere nothing).
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Prepared {
    /// Starts the journal thread (snapshot of what `engine` holds, the
    /// restored instances, first).
    pub fn start(
        self,
        engine: std::sync::Arc<Engine>,
        wakers: Vec<std::sync::Arc<mio::Waker>>,
        log: LogHandle,
        clock: std::sync::Arc<dyn tally_core::clock::Clock>,
    ) -> Result<Journal, JournalError> {
        Journal::start(
            &self.dir,
            self.lock,
            self.gen,
            engine,
            self.kept,
            self.mode,
            wakers,
            clock.clone(),
            move |line| {
                log.line(clock.now_ms(), "lmgrd", line);
            },
        )
    }
}
