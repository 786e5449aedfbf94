//! The durability journal: grants, renewals and releases of lingering
//! licenses, written by a thread of its own with group commit.
//!
//! Data path:
//!
//! ```text
//! loop i: checkout -> engine -> LoopJournal::out (encode into the loop's
//!         batch buffer; the reply waits in the connection behind a gate)
//!   end of each event round: one Batch { from: i, no } -> channel
//! journal thread: take every batch that arrived, frame each record
//!   (len, crc32c, seq), one write(), one fdatasync() (sync mode),
//!   then durable[i] = no and wake loop i, which lets the gated replies go.
//! ```
//!
//! Modes ([`Durability`]): `sync` (a reply of a grant, renewal or release
//! of a lingering license is sent only once its record is on disk, batched
//! with whatever else arrived meanwhile), `async` (records are written at
//! once and synced every [`ASYNC_SYNC_MS`]; replies do not wait), `off` (no
//! journal). Connection-bound checkouts (no linger) are not journaled: a
//! restart closes their connections, which releases them anyway. See
//! [`files`] for the directory layout and recovery.
//!
//! # Snapshots: a scan of the engine after a mark
//!
//! The journal keeps no copy of the live instances. A snapshot (once the
//! segment reaches [`snapshot_threshold`]: [`SNAPSHOT_EVERY_BYTES`] of
//! journal or the last snapshot's size, whichever is larger; at
//! [`SNAPSHOT_EVERY_MS`]; at a clean stop, after a reread or a failed
//! sync) is taken in two steps:
//!
//! 1. **The mark.** The journal thread starts segment `g + 1`: every record
//!    it takes from now on goes there. It copies, at this instant, what
//!    [`Kept`] holds: the reconciled admission ids and the *recent
//!    releases* (below).
//! 2. **The scan.** A thread of its own (or the journal thread, for the
//!    synchronous cases) reads the engine's lingering instances
//!    ([`Engine::for_each_lingering`]: each slot read consistently, the
//!    table as a whole not at one instant) while the loops go on, and
//!    writes them as snapshot `g + 1` with the recent releases as
//!    tombstones; only once it is synced are the older files deleted.
//!
//! Recovery loads the newest whole snapshot and replays every segment from
//! its generation on ([`files`]), applying records by id: OUT and
//! INSTANCE set an instance (a renewal patches its deadline), IN and
//! TOMBSTONE remove it for good (ids are not reused within a run: a slot's
//! generation would have to wrap), a connection-bound renewal removes it.
//!
//! ## Why the result is the live state
//!
//! Take any instance `x` and a crash after every record of `x` was taken
//! (in `sync` mode: every record whose reply went out; a loop writes a
//! record right after its engine call, so the engine's change always comes
//! first). Write `M` for the mark, `S(x)` for the moment the scan read
//! `x`'s slot (after `M`).
//!
//! - *No record of `x` after `M`.* Every change of `x` that is journaled
//!   happened before its record, so before `M`, so before `S(x)`: the scan
//!   read `x`'s last state (live with its deadline, or gone). The changes a
//!   journal does not record do not matter to a restart: a
//!   connection-bound instance is not scanned, and a DUP_GROUP instance
//!   held by a bound use is scanned with its latest promise, which its
//!   records carry too.
//! - *Records of `x` after `M`.* They are replayed over whatever the scan
//!   read, in channel order. A loop's records arrive in its own order, and
//!   an instance is renewed only by the loop of the connection that holds
//!   it, so the last grant or renewal record is the last grant or renewal.
//!   A release is final, whatever comes after it: a grant or renewal
//!   record of another loop that the release overtook (made before it,
//!   sent after it) is ignored because the IN came first in the replay,
//!   or the snapshot has it as a tombstone, or the scan did not see `x`
//!   and that record is not after `M`. The one case that needs the
//!   tombstones: the IN before `M`, the overtaken record after it. That
//!   record was sent after its loop's last send before `M`; the release
//!   came after it; so the IN arrived after that send too.
//!   The *marker rounds* ([`kept::Recent`]) bound how far back that is:
//!   the journal thread raises an epoch and wakes the loops, each loop
//!   answers at the end of its next event round with a marker after its
//!   batch; once every loop has answered, every record still to come was
//!   made after its loop's marker, so every release it can have been
//!   overtaken by arrived after the round began. The journal keeps the
//!   releases since the start of the last completed round (rounds start
//!   at most every [`MARK_ROUND_MS`], only while releases happen): a
//!   fraction of a second of them, written as the snapshot's tombstones,
//!   not one per release for a minute as before (150 k releases/s would
//!   have been nine million).
//! - *Records not yet taken at the crash* (not acknowledged): the scan may
//!   hold a grant or renewal whose record was lost, or miss an instance
//!   whose release was not journaled yet. The first is restored (its
//!   client's retry renews it), within the license's count as every
//!   restored instance ([`Engine::restore_within_count`]); the second was
//!   being checked in. Nothing acknowledged is lost, nothing is restored
//!   beyond the count.
//!
//! Two loops renewing one instance within one event round of each other
//! (the same handle on two connections) may leave the earlier deadline
//! in the journal, as before this design: the order of two loops' records
//! is not the engine's.
//!
//! What the scan cannot read from the table: names longer than its copy
//! (more than 116 bytes of user, host, display and handle; a restart
//! computes the instance's key from the full names) are kept by the
//! journal thread for those instances only ([`kept::LongNames`]); one the
//! scan meets before its record arrived is written marked
//! ([`record::names_incomplete`]) and its record after the mark brings the
//! names. The version is the charged pool's, as a reread restores it.
//! Reconciled admission ids are kept as records, as before (few).
//!
//! A reread sends the id map and the new engine ([`Msg::Remap`]): every
//! record with a new id comes after it, so the snapshot of the new engine
//! is marked there (synchronously, before the next record is written).
//!
//! Memory: per held license, nothing beyond the table's slot (at
//! 0c38786, 1 M held with `--durability sync`: 532 B per held license
//! before, of which 133 B the journal's copy; see docs/benchmarks.md).

//! Hot path: the loop only appends to its own buffer (no syscall, no lock;
//! the buffer's capacity is reused across batches). The channel send and
//! the batch's allocation happen once per event round, not per request.

pub mod boot;
pub mod damage;
pub mod files;
pub mod kept;
pub mod record;
pub mod scan;
pub mod state;
mod writer;

#[cfg(test)]
mod model_tests;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use mio::Waker;
use tally_core::engine::Engine;
use tally_core::watermark::Watermark;

pub use files::{JournalError, Recovered};
pub use kept::Kept;
pub use record::Instance;
pub use state::State;
use writer::Writer;

/// How often `async` mode syncs the journal, ms.
pub const ASYNC_SYNC_MS: u64 = 100;

/// How long the journal waits before trying again a write the disk
/// refused, ms.
pub const RETRY_MS: u64 = 1000;

/// Journal bytes after which a snapshot starts a new segment, by default
/// (`tallyd --snapshot-every-kib`).
pub const SNAPSHOT_EVERY_BYTES: u64 = 64 << 20;

/// The process's snapshot threshold, bytes: set once by `tallyd` from its
/// flag before the server starts; read by the journal thread.
static SNAPSHOT_EVERY: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(SNAPSHOT_EVERY_BYTES);

/// Sets the journal bytes after which a snapshot is taken (at least 1).
pub fn set_snapshot_every_bytes(bytes: u64) {
    SNAPSHOT_EVERY.store(bytes.max(1), std::sync::atomic::Ordering::Relaxed);
}

fn snapshot_every_bytes() -> u64 {
    SNAPSHOT_EVERY.load(std::sync::atomic::Ordering::Relaxed)
}

/// The segment size, bytes, at which the journal takes its next
/// snapshot: `every` (`--snapshot-every-kib`) or the size of the last
/// snapshot written, whichever is larger.
///
/// A snapshot costs about its own size in writing (and a scan of the
/// table); replaying a segment costs about its size in reading. Waiting
/// for a segment as large as the last snapshot bounds the snapshots'
/// writing to about the journal's own, and a restart's reading to at
/// most about twice the last snapshot: with millions held, a snapshot is
/// many times `every`, and a fixed threshold took one every `every` bytes
/// of journal (checking out 1 M licenses with a 4 MiB threshold: 19
/// crossings, 5 snapshots with this).
pub fn snapshot_threshold(every: u64, last_snapshot_bytes: u64) -> u64 {
    every.max(last_snapshot_bytes)
}

/// Longest time between snapshots (if anything was journaled), ms.
pub const SNAPSHOT_EVERY_MS: u64 = 10 * 60 * 1000;

/// Least time between two marker rounds, ms (see [`kept::Recent`]): the
/// recent releases a snapshot writes as tombstones span about two of
/// these.
pub const MARK_ROUND_MS: u64 = 50;

/// Batches the channel holds before a loop's send blocks (backpressure).
pub const JOURNAL_CHANNEL_BATCHES: usize = 4096;

/// Default state directory of a production server.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tally";

/// When a grant is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// Grouped fsync before the reply (default).
    Sync,
    /// Written at once, synced every 100 ms (`ASYNC_SYNC_MS`); replies do not wait.
    Async,
    /// No journal: a restart loses every checkout.
    Off,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Sync => "sync",
            Durability::Async => "async",
            Durability::Off => "off",
        })
    }
}

/// A loop's records of one event round.
#[derive(Debug)]
pub struct Batch {
    /// The loop.
    pub from: usize,
    /// The loop's batch number (1, 2, ...).
    pub no: u64,
    /// Records, each a `u32` length and a payload.
    pub bytes: Vec<u8>,
}

/// What the journal thread is sent.
#[derive(Debug)]
pub enum Msg {
    /// Records.
    Batch(Batch),
    /// After a license reread: old id -> new id (absent = dropped), and
    /// the engine that holds the new ids.
    Remap(HashMap<u64, u64>, Arc<Engine>),
    /// Loop `from` saw marker round `epoch` begin: every record of what it
    /// did before is in the batches it sent before this ([`kept::Recent`]).
    Marker {
        /// The loop.
        from: usize,
        /// The round.
        epoch: u64,
    },
    /// Write everything, snapshot, and stop; then answer.
    Stop(Sender<()>),
}

/// Counters a loop reads: the last batch of each loop that is durable.
#[derive(Debug)]
pub struct Durable {
    per_loop: Vec<Watermark>,
}

impl Durable {
    /// The last durable batch of loop `i`.
    pub fn of(&self, i: usize) -> u64 {
        self.per_loop.get(i).map_or(u64::MAX, Watermark::get)
    }
}

/// A loop's end of the journal. Not shared: one per loop.
#[derive(Debug)]
pub struct LoopJournal {
    index: usize,
    tx: Sender<Msg>,
    recycle: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    /// The batch being filled.
    no: u64,
    durable: Arc<Durable>,
    sync: bool,
    /// The marker round the journal thread asks for, and the last one
    /// this loop answered.
    epoch: Arc<AtomicU64>,
    answered: u64,
}

impl LoopJournal {
    /// Records a grant or renewal; returns the batch a reply must wait for
    /// (`None` if it need not wait).
    pub fn out(&mut self, i: &Instance<'_>) -> Option<u64> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        record::encode_instance(&mut self.buf, record::TAG_OUT, i);
        self.seal(at)
    }

    /// Records a reconciled admission id (after its instance's OUT);
    /// returns the batch a reply must wait for.
    pub fn reconcile(&mut self, r: &record::Reconciled<'_>) -> Option<u64> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        record::encode_reconcile(&mut self.buf, r);
        self.seal(at)
    }

    /// Records a release; returns the batch a reply must wait for.
    pub fn release(&mut self, id: u64, at_ms: u64) -> Option<u64> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        record::encode_in(&mut self.buf, id, at_ms);
        self.seal(at)
    }

    fn seal(&mut self, at: usize) -> Option<u64> {
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.sync.then_some(self.no)
    }

    /// Hands this round's records to the journal thread (end of a round),
    /// then, if a marker round began since this loop last answered one,
    /// its marker (one relaxed load per round otherwise). Returns the
    /// batch number sent, if any.
    pub fn send(&mut self) -> Option<u64> {
        let sent = if self.buf.is_empty() {
            None
        } else {
            let next = self.recycle.try_recv().unwrap_or_default();
            let bytes = std::mem::replace(&mut self.buf, next);
            let no = self.no;
            self.no += 1;
            // Blocks only if the journal is thousands of batches behind.
            let _ = self.tx.send(Msg::Batch(Batch {
                from: self.index,
                no,
                bytes,
            }));
            Some(no)
        };
        if self.epoch.load(Ordering::Relaxed) != self.answered {
            // Acquire: the round's start is before whatever this loop does
            // after answering.
            let epoch = self.epoch.load(Ordering::Acquire);
            self.answered = epoch;
            let _ = self.tx.send(Msg::Marker {
                from: self.index,
                epoch,
            });
        }
        sent
    }

    /// Sends this round's records, then the id map of a reread and the
    /// engine of the new ids.
    pub fn remap(&mut self, map: HashMap<u64, u64>, engine: Arc<Engine>) {
        self.send();
        let _ = self.tx.send(Msg::Remap(map, engine));
    }

    /// Waits (at most `limit`) until every batch sent is durable.
    pub fn wait_durable(&mut self, limit: Duration) {
        self.send();
        let start = Instant::now();
        while self.sync && self.durable.of(self.index) + 1 < self.no && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A gate for a connection of this loop.
    pub fn gate(&self) -> ReplyGate {
        ReplyGate {
            pending: VecDeque::new(),
            base: 0,
            durable: self.sync.then(|| (self.durable.clone(), self.index)),
        }
    }

    /// The last durable batch of this loop.
    pub fn durable(&self) -> u64 {
        self.durable.of(self.index)
    }
}

/// Which reply bytes of a connection may be written: bytes from the first
/// reply that waits for a batch not yet durable stay in the buffer, and so
/// does everything after them (replies keep request order).
#[derive(Debug, Default)]
pub struct ReplyGate {
    /// (absolute offset of the first waiting reply, batch it waits for),
    /// in batch order.
    pending: VecDeque<(u64, u64)>,
    /// Absolute offset of the write buffer's first byte.
    base: u64,
    durable: Option<(Arc<Durable>, usize)>,
}

impl ReplyGate {
    /// A reply starting at `offset` in the write buffer waits for `batch`.
    pub fn hold(&mut self, offset: usize, batch: Option<u64>) {
        let Some(batch) = batch else { return };
        if self.pending.back().is_some_and(|&(_, b)| b >= batch) {
            return; // an earlier reply already holds everything after it
        }
        self.pending.push_back((self.base + offset as u64, batch));
    }

    /// How many bytes of a buffer of `len` may be written now.
    pub fn writable(&mut self, len: usize) -> usize {
        let Some((durable, i)) = &self.durable else {
            return len;
        };
        let done = durable.of(*i);
        while self.pending.front().is_some_and(|&(_, b)| b <= done) {
            self.pending.pop_front();
        }
        match self.pending.front() {
            Some(&(at, _)) => (at.saturating_sub(self.base) as usize).min(len),
            None => len,
        }
    }

    /// `n` bytes were written.
    pub fn advance(&mut self, n: usize) {
        self.base += n as u64;
    }

    /// Whether some reply waits for the journal.
    pub fn is_waiting(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// What `/metrics` reads of the journal, written by the journal thread
/// (and the snapshot thread it starts) with plain stores, read by scrapes.
#[derive(Debug, Default)]
pub struct JournalFigures {
    /// Each segment sync: `sync` mode's group commit (one per round),
    /// `async` mode's periodic sync.
    pub(crate) fsync: crate::metrics::Histogram,
    /// The current segment's size, bytes (header included).
    pub(crate) segment_bytes: std::sync::atomic::AtomicU64,
    /// When the last snapshot was written whole, Unix ms (the server's clock).
    pub(crate) last_snapshot_ms: std::sync::atomic::AtomicU64,
}

impl JournalFigures {
    /// A relaxed store (one writer at a time).
    fn set(a: &std::sync::atomic::AtomicU64, v: u64) {
        a.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The journal thread and what loops need to reach it.
#[derive(Debug)]
pub struct Journal {
    tx: Sender<Msg>,
    recycle_tx: Vec<Sender<Vec<u8>>>,
    recycle_rx: Vec<Receiver<Vec<u8>>>,
    counters: Arc<Durable>,
    mode: Durability,
    thread: Option<JoinHandle<()>>,
    figures: Arc<JournalFigures>,
    epoch: Arc<AtomicU64>,
}

impl Journal {
    /// Starts generation `gen` in `dir` (a snapshot scanned from `engine`,
    /// which holds what recovery restored, with what `kept` remembers; a
    /// fresh segment; old files deleted), then the writer thread. `lock`
    /// is the directory's lock, held until the thread ends; `clock` dates
    /// what the snapshots prune; `log` receives lines for the debug log.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        dir: &Path,
        lock: File,
        gen: u64,
        engine: Arc<Engine>,
        kept: Kept,
        mode: Durability,
        wakers: Vec<Arc<Waker>>,
        clock: Arc<dyn tally_core::clock::Clock>,
        log: impl Fn(String) + Send + 'static,
    ) -> Result<Journal, JournalError> {
        let scan = scan::Scan::at_mark(&engine, &kept, clock.now_ms());
        let segment = files::start_generation(dir, gen, &scan)?;
        drop(scan);
        let snapshot_bytes = files::snapshot_size(dir, gen);
        let figures = Arc::new(JournalFigures::default());
        JournalFigures::set(&figures.last_snapshot_ms, clock.now_ms());
        JournalFigures::set(&figures.segment_bytes, record::FILE_HEADER as u64);
        let loops = wakers.len();
        let counters = Arc::new(Durable {
            per_loop: (0..loops).map(|_| Watermark::new()).collect(),
        });
        let (tx, rx) = bounded(JOURNAL_CHANNEL_BATCHES);
        let epoch = Arc::new(AtomicU64::new(0));
        let (mut recycle_tx, mut recycle_rx) = (Vec::new(), Vec::new());
        for _ in 0..loops {
            let (t, r) = bounded(8);
            recycle_tx.push(t);
            recycle_rx.push(r);
        }
        let writer = Writer {
            dir: dir.to_path_buf(),
            _lock: lock,
            gen,
            segment,
            segment_bytes: 0,
            snapshot_bytes,
            seq: 0,
            kept,
            engine,
            epoch: epoch.clone(),
            last_round: Instant::now(),
            mode,
            counters: counters.clone(),
            wakers,
            recycle: recycle_tx.clone(),
            out: Vec::with_capacity(1 << 16),
            last_sync: Instant::now(),
            dirty: false,
            last_snapshot: Instant::now(),
            journaled_since_snapshot: false,
            log: Box::new(log),
            clock,
            failing: false,
            writing: None,
            figures: figures.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tally-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| JournalError::Io {
                what: "start the journal thread for",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Journal {
            tx,
            recycle_tx,
            recycle_rx,
            counters,
            mode,
            thread: Some(thread),
            figures,
            epoch,
        })
    }

    /// Its figures for `/metrics`.
    pub fn figures(&self) -> Arc<JournalFigures> {
        self.figures.clone()
    }

    /// The journal end for loop `index`.
    pub fn for_loop(&self, index: usize) -> LoopJournal {
        LoopJournal {
            index,
            tx: self.tx.clone(),
            recycle: self.recycle_rx[index].clone(),
            buf: Vec::with_capacity(4096),
            no: 1,
            durable: self.counters.clone(),
            sync: self.mode == Durability::Sync,
            epoch: self.epoch.clone(),
            answered: 0,
        }
    }

    /// Writes everything sent so far, takes a snapshot and stops the thread.
    pub fn shutdown(mut self) {
        let (done_tx, done_rx) = bounded(1);
        if self.tx.send(Msg::Stop(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(120));
        }
        self.recycle_tx.clear();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
