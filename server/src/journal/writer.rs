//! The journal thread: takes the loops' batches, frames and writes them
//! with one `write` and (in `sync` mode) one `fdatasync` per round, keeps
//! what [`Kept`] holds, runs the marker rounds and starts the snapshots,
//! which scan the engine (see the parent module's data path and argument).

use super::*;

pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) _lock: File,
    pub(super) gen: u64,
    pub(super) segment: File,
    pub(super) segment_bytes: u64,
    /// The size of the last snapshot written, bytes: the next is taken
    /// once the segment reaches [`snapshot_threshold`] of it.
    pub(super) snapshot_bytes: u64,
    pub(super) seq: u64,
    /// Reconciled ids, long names, recent releases.
    pub(super) kept: Kept,
    /// The engine whose ids the records name (a reread sends the next).
    pub(super) engine: Arc<Engine>,
    /// The marker round the loops are asked to answer.
    pub(super) epoch: Arc<AtomicU64>,
    /// When the last marker round began.
    pub(super) last_round: Instant,
    pub(super) mode: Durability,
    pub(super) counters: Arc<Durable>,
    pub(super) wakers: Vec<Arc<Waker>>,
    pub(super) recycle: Vec<Sender<Vec<u8>>>,
    pub(super) out: Vec<u8>,
    pub(super) last_sync: Instant,
    pub(super) dirty: bool,
    pub(super) last_snapshot: Instant,
    pub(super) journaled_since_snapshot: bool,
    pub(super) log: Box<dyn Fn(String) + Send>,
    /// The server's clock (`server::Config::clock`).
    pub(super) clock: Arc<dyn tally_core::clock::Clock>,
    pub(super) failing: bool,
    /// A periodic snapshot being written by a thread of its own.
    /// Its end: the snapshot's size, and `Some(e)` if it is durable but
    /// the older files could not all be deleted.
    pub(super) writing: Option<std::thread::JoinHandle<SnapshotEnd>>,
    /// What `/metrics` reads (fsync latency, segment size, last snapshot).
    pub(super) figures: Arc<JournalFigures>,
}

/// How a background snapshot ended: `Ok((bytes, None))` if it is durable
/// (`bytes` long) and the older files are deleted, `Ok((bytes, Some((gen,
/// e))))` if snapshot `gen` is durable but deleting the older files
/// failed with `e`.
pub(super) type SnapshotEnd = Result<(u64, Option<(u64, JournalError)>), JournalError>;

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        let tick = Duration::from_millis(ASYNC_SYNC_MS);
        loop {
            let first = match rx.recv_timeout(tick) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            };
            // Group commit: everything that is already waiting joins.
            let mut done: Vec<Option<u64>> = vec![None; self.counters.per_loop.len()];
            let mut stop = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Batch(b) => {
                        self.take(&b.bytes);
                        if let Some(d) = done.get_mut(b.from) {
                            *d = Some(b.no);
                        }
                        self.give_back(b);
                    }
                    Msg::Remap(map, engine) => {
                        // The ids change: the snapshot of the new ids must
                        // be durable before a record with them is written
                        // (a segment mixing both would be misread), so it
                        // is retried until it is. Every record with a new
                        // id comes after this message: the snapshot is a
                        // scan of the new engine, marked here.
                        self.commit();
                        self.kept.remap(&map);
                        self.engine = engine;
                        self.rewrite();
                    }
                    Msg::Marker { from, epoch } => self.kept.recent.marker(from, epoch),
                    Msg::Stop(reply) => {
                        stop = Some(reply);
                        break;
                    }
                }
                match rx.try_recv() {
                    Ok(m) => next = Some(m),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
                }
            }
            self.commit();
            for (i, no) in done
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.map(|n| (i, n)))
            {
                if let Some(c) = self.counters.per_loop.get(i) {
                    // The records of batch `no` are durable.
                    c.publish(no);
                }
                if let Some(w) = self.wakers.get(i) {
                    let _ = w.wake();
                }
            }
            if let Some(reply) = stop {
                // Whatever was sent after Stop (nothing, in an orderly
                // shutdown) is written too.
                while let Ok(Msg::Batch(b)) = rx.try_recv() {
                    self.take(&b.bytes);
                }
                self.finish();
                let _ = reply.send(());
                return;
            }
            self.reap_finished();
            if self.segment_bytes >= snapshot_threshold(snapshot_every_bytes(), self.snapshot_bytes)
            {
                self.snapshot_in_background();
            }
            self.maybe_start_round();
        }
    }

    /// Starts a marker round if releases are kept that one would let go
    /// and the last began [`MARK_ROUND_MS`] ago: raises the epoch, wakes
    /// every loop (each answers at the end of its next event round).
    fn maybe_start_round(&mut self) {
        if !self.kept.recent.wants_round()
            || self.last_round.elapsed() < Duration::from_millis(MARK_ROUND_MS)
        {
            return;
        }
        self.last_round = Instant::now();
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        // The round's start (what it lets go of) first, then the epoch.
        self.kept.recent.start_round(epoch, self.wakers.len());
        self.epoch.store(epoch, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// The snapshot source at this instant (the mark).
    fn scan(&self) -> scan::Scan {
        scan::Scan::at_mark(&self.engine, &self.kept, self.clock.now_ms())
    }

    /// Frames a batch's records into the output and applies them.
    fn take(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while let Some(len) = bytes.get(at..at + 4) {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(payload) = bytes.get(at + 4..at + 4 + len) else {
                break;
            };
            at += 4 + len;
            match record::decode(payload) {
                Ok(rec) => {
                    self.kept.apply(&rec, payload);
                    record::frame(&mut self.out, self.seq, payload);
                    self.seq += 1;
                }
                Err(e) => (self.log)(format!("journal: a loop sent a bad record ({e}); skipped")),
            }
        }
    }

    fn give_back(&self, mut b: Batch) {
        b.bytes.clear();
        if let Some(tx) = self.recycle.get(b.from) {
            let _ = tx.try_send(b.bytes);
        }
    }

    /// Writes the output; syncs it in sync mode (or when due in async).
    /// Returns only once the output is durable under the mode: while the
    /// disk refuses, it retries every [`RETRY_MS`] and replies keep waiting.
    ///
    /// - A failed write (ENOSPC, EDQUOT, EIO, ...) may have put part of the
    ///   output in the file: the segment is cut back to its last whole
    ///   write (`ftruncate` + seek) before the write is tried again, so no
    ///   partial bytes stay ahead of the retried copy. If even the cut
    ///   fails, the file is given up as after a failed sync.
    /// - A failed sync leaves the file's unsynced bytes in an unknown state
    ///   (Linux reports a writeback error once and may drop the pages, so
    ///   a later sync that succeeds proves nothing): the segment is given
    ///   up, and the journal's whole state (which includes this output) is
    ///   written as a new generation, snapshot then fresh segment, retried
    ///   until it is durable. The older files are deleted only after that.
    fn commit(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let sync = self.mode == Durability::Sync;
        loop {
            let r = self.segment.write_all(&self.out);
            let r = match r {
                Err(e) => Err((false, e)),
                Ok(()) if sync => self.sync_segment().map_err(|e| (true, e)),
                Ok(()) => Ok(()),
            };
            match r {
                Ok(()) => break,
                Err((false, e)) => {
                    self.disk_failed("write", &e, "checkouts wait until it can");
                    if let Err(e) = self.rewind() {
                        self.disk_failed("cut back", &e, "it is given up");
                        self.rewrite();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(RETRY_MS));
                }
                Err((true, e)) => {
                    self.disk_failed(
                        "sync",
                        &e,
                        "its unsynced end is not trusted: the journal is rewritten as a new snapshot and segment (checkouts wait until it is)",
                    );
                    self.rewrite();
                    return;
                }
            }
        }
        self.disk_ok();
        self.segment_bytes += self.out.len() as u64;
        self.segment_size_changed();
        self.out.clear();
        self.journaled_since_snapshot = true;
        if sync {
            self.last_sync = Instant::now();
        } else {
            self.dirty = true;
            self.idle();
        }
    }

    /// Syncs the segment, timed for `tally_journal_fsync_seconds`.
    fn sync_segment(&self) -> std::io::Result<()> {
        let start = Instant::now();
        let r = files::sync_data(&self.segment);
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.figures.fsync.record(ns);
        r
    }

    /// The segment's size for `tally_journal_bytes`.
    fn segment_size_changed(&self) {
        let bytes = record::FILE_HEADER as u64 + self.segment_bytes;
        JournalFigures::set(&self.figures.segment_bytes, bytes);
    }

    /// A snapshot was written whole now, for
    /// `tally_journal_last_snapshot_timestamp_seconds`.
    fn snapshot_written(&self) {
        JournalFigures::set(&self.figures.last_snapshot_ms, self.clock.now_ms());
    }

    /// Cuts the segment back to the end of its last whole write.
    fn rewind(&mut self) -> std::io::Result<()> {
        let end = record::FILE_HEADER as u64 + self.segment_bytes;
        self.segment.set_len(end)?;
        self.segment.seek(SeekFrom::Start(end))?;
        Ok(())
    }

    /// Gives up the current segment: the whole state goes into a new
    /// generation (snapshot, fresh segment, older files deleted), retried
    /// every [`RETRY_MS`] until it is durable. Whatever was waiting in the
    /// output is in the snapshot, so it is dropped from the output.
    fn rewrite(&mut self) {
        self.reap_snapshot();
        let gen = self.next_generation();
        loop {
            match self.start_generation(gen) {
                Ok(f) => break self.switch_to(gen, f),
                Err(e) => {
                    self.disk_failed("rewrite", &e, "checkouts wait until it can");
                    std::thread::sleep(Duration::from_millis(RETRY_MS));
                }
            }
        }
        self.snapshot_written();
        self.disk_ok();
        self.out.clear();
        self.dirty = false;
        self.last_sync = Instant::now();
        self.last_snapshot = Instant::now();
    }

    /// Says once per episode (stderr and the log) that the disk refused.
    fn disk_failed(&mut self, what: &str, e: &dyn std::fmt::Display, then: &str) {
        if self.failing {
            return;
        }
        self.failing = true;
        let msg = format!(
            "journal: cannot {what} {}: {e}; {then}",
            files::segment_path(&self.dir, self.gen).display()
        );
        eprintln!("tallyd: {msg}");
        (self.log)(msg);
    }

    /// The end of an episode of [`Writer::disk_failed`].
    fn disk_ok(&mut self) {
        if self.failing {
            self.failing = false;
            (self.log)("journal: writing again".into());
        }
    }

    /// Syncs the segment; if that fails its unsynced end is not trusted
    /// (the kernel may have dropped the pages), so the journal is
    /// rewritten as a new snapshot and segment. False after a failure.
    fn sync_or_rewrite(&mut self) -> bool {
        let Err(e) = self.sync_segment() else {
            return true;
        };
        self.disk_failed(
            "sync",
            &e,
            "its unsynced end is not trusted: the journal is rewritten as a new snapshot and segment",
        );
        self.rewrite();
        false
    }

    /// Async mode's periodic sync; periodic snapshots; marker rounds.
    fn idle(&mut self) {
        self.reap_finished();
        self.maybe_start_round();
        if self.dirty && self.last_sync.elapsed() >= Duration::from_millis(ASYNC_SYNC_MS) {
            self.sync_or_rewrite();
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        if self.journaled_since_snapshot
            && self.last_snapshot.elapsed() >= Duration::from_millis(SNAPSHOT_EVERY_MS)
        {
            self.snapshot_in_background();
        }
    }

    /// A periodic snapshot, written without holding up the journal: a new
    /// segment `gen + 1` is started here (the mark: every record taken
    /// from now on goes into it), then a thread scans the engine into
    /// snapshot `gen + 1`, syncs it, and only then deletes the older
    /// files. A crash before that leaves the older
    /// snapshot and segments, which recovery replays together with segment
    /// `gen + 1` (it reads every segment from its snapshot's generation on).
    /// If the previous one is still being written, this waits for a later
    /// round.
    fn snapshot_in_background(&mut self) {
        if self.writing.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.reap_snapshot();
        if self.dirty {
            // The segment is left only once it is whole on disk.
            if !self.sync_or_rewrite() {
                return;
            }
        }
        let gen = self.next_generation();
        match files::create_segment(&self.dir, gen) {
            Ok(f) => {
                self.switch_to(gen, f);
                // After the mark: the tombstones are every recent release
                // taken before it.
                let scan = self.scan();
                let dir = self.dir.clone();
                let (figures, clock) = (self.figures.clone(), self.clock.clone());
                let spawned = std::thread::Builder::new()
                    .name("tally-snapshot".into())
                    .spawn(move || {
                        files::write_snapshot(&dir, gen, &scan)?;
                        JournalFigures::set(&figures.last_snapshot_ms, clock.now_ms());
                        let bytes = files::snapshot_size(&dir, gen);
                        let kept = files::delete_before(&dir, gen).err().map(|e| (gen, e));
                        Ok((bytes, kept))
                    });
                match spawned {
                    Ok(h) => self.writing = Some(h),
                    Err(e) => self.snapshot_failed(&format!("cannot start its thread: {e}")),
                }
            }
            Err(e) => self.snapshot_failed(&e.to_string()),
        }
        self.last_snapshot = Instant::now();
    }

    /// Prunes the state for a snapshot; returns the generation the
    /// snapshot starts. (The caller has synced the current segment, or
    /// gives it up.)
    fn next_generation(&mut self) -> u64 {
        self.dirty = false;
        let now = self.clock.now_ms();
        self.kept.prune(&self.engine, now);
        self.gen + 1
    }

    /// Journals into `f`, the new segment of generation `gen`, from now on.
    fn switch_to(&mut self, gen: u64, f: File) {
        self.segment = f;
        self.gen = gen;
        self.segment_bytes = 0;
        self.segment_size_changed();
        self.journaled_since_snapshot = false;
    }

    /// Waits for a background snapshot and reports how it ended.
    fn reap_snapshot(&mut self) {
        if let Some(h) = self.writing.take() {
            match h.join() {
                Ok(Ok((bytes, kept))) => {
                    self.snapshot_bytes = bytes;
                    if let Some((gen, e)) = kept {
                        self.old_files_kept(gen, &e);
                    }
                }
                Ok(Err(e)) => self.snapshot_failed(&e.to_string()),
                Err(_) => self.snapshot_failed("its thread panicked"),
            }
        }
    }

    /// Reaps a background snapshot that has ended, so that a failure
    /// is said when it happens, not at the next snapshot (which a full
    /// disk or a quiet server may put far off).
    fn reap_finished(&mut self) {
        if self.writing.as_ref().is_some_and(|h| h.is_finished()) {
            self.reap_snapshot();
        }
    }

    /// Snapshot `gen`, a new segment and the older files deleted (as
    /// [`files::start_generation`]); the generation is started once its
    /// snapshot and segment are durable, even if deleting the older files
    /// fails (said, and tried again at the next snapshot). Sets the last
    /// snapshot's size.
    fn start_generation(&mut self, gen: u64) -> Result<File, JournalError> {
        files::write_snapshot(&self.dir, gen, &self.scan())?;
        self.snapshot_bytes = files::snapshot_size(&self.dir, gen);
        let f = files::create_segment(&self.dir, gen)?;
        if let Err(e) = files::delete_before(&self.dir, gen) {
            self.old_files_kept(gen, &e);
        }
        Ok(f)
    }

    /// Snapshot `gen` is durable (a restart starts from it), but the older
    /// files could not all be deleted: they take room until the next
    /// snapshot deletes them.
    fn old_files_kept(&self, gen: u64, e: &JournalError) {
        let msg = format!(
            "journal: snapshot {gen} is durable, but the older files could not all be deleted ({e}); they stay in the state dir until the next snapshot deletes them (a restart reads from snapshot {gen} on)"
        );
        eprintln!("tallyd: {msg}");
        (self.log)(msg);
    }

    fn snapshot_failed(&self, why: &str) {
        let msg = format!("journal: snapshot failed ({why}); the journal goes on growing");
        eprintln!("tallyd: {msg}");
        (self.log)(msg);
    }

    /// Snapshot of the state as generation `gen + 1`, a new segment, older
    /// files deleted, at a clean stop. On failure the current segment,
    /// synced, holds everything.
    fn snapshot(&mut self) {
        self.reap_snapshot();
        if self.dirty {
            if let Err(e) = files::sync_data(&self.segment) {
                self.disk_failed("sync", &e, "the journal is rewritten as a new snapshot");
                return self.rewrite();
            }
        }
        let gen = self.next_generation();
        match self.start_generation(gen) {
            Ok(f) => {
                self.switch_to(gen, f);
                self.snapshot_written();
            }
            Err(e) => self.snapshot_failed(&e.to_string()),
        }
        self.last_snapshot = Instant::now();
    }

    /// Clean stop: write, sync, snapshot.
    fn finish(&mut self) {
        self.commit();
        self.snapshot();
    }
}
