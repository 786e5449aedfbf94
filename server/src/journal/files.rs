//! The state directory: its lock, segments, snapshots, and recovery.
//!
//! ```text
//! STATE_DIR/lock                      flock'ed by the running tallyd
//! STATE_DIR/snapshot-<gen>.tly        live instances when segment <gen> began
//! STATE_DIR/journal-<gen>.tly         records after that snapshot
//! ```
//!
//! `<gen>` is 16 hex digits. A snapshot is written to `.tmp`, synced, and
//! renamed (then the directory is synced), so a snapshot file is whole or
//! absent; a `.tmp` or a segment whose writing failed is removed, so a full
//! disk never leaves a half-written file behind. Recovery = the newest
//! snapshot + every segment of that generation or later, in order. Each run
//! of tallyd starts by writing a snapshot of what it restored (with its own
//! ids) and a fresh segment, then deletes everything older.
//!
//! Damage. The only damage recovery repairs without asking is a torn tail:
//! the end of the newest segment, after its last intact record, when it is
//! what an interrupted append leaves ([`record::Survey::is_torn_tail`]).
//! Anything else (a bad record with intact ones after it, a damaged
//! header, a gap in the sequence numbers, any damage in an older segment
//! or in the snapshot) makes [`recover`] refuse with
//! [`JournalError::Damaged`] or [`JournalError::BadSnapshot`], naming the
//! file, the byte offset and what is readable after it, and touching
//! nothing. With `salvage`, every intact record around the damage is
//! restored and each damaged file is set aside in `STATE_DIR/damaged/`
//! ([`DAMAGED_DIR`]), never deleted.
//!
//! Invariant the torn-tail rule relies on: only the newest segment is ever
//! appended to. A segment is left (for a new one) only after its last
//! write is synced, or, when a sync failed, by a new snapshot that makes
//! the old segments unnecessary (recovery starts from it).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::damage::{damaged_message, describe, set_aside, FileDamage, DAMAGED_DIR};
use super::record::{self, Record, FILE_HEADER, SEGMENT_MAGIC, SNAPSHOT_MAGIC};
use super::state::State;

/// Test hook, debug builds only: while the file this variable names
/// exists, every journal and snapshot sync fails with EIO.
pub const DEBUG_SYNC_EIO_ENV: &str = "TALLYD_DEBUG_SYNC_EIO";

/// Test hook, debug builds only: while the file this variable names
/// exists, its first word names a step of writing a snapshot at which
/// tallyd stops dead (it sends itself SIGKILL, as a `kill -9` landing
/// exactly there would): `snapshot-written` (the `.tmp` written, not
/// synced), `snapshot-synced` (not renamed), `snapshot-renamed` (the
/// directory not synced), `snapshot-durable` (older files not deleted),
/// `delete-started` (one older file deleted), `scan` (a running scan,
/// after its first instance). With a second word `pause` the step waits
/// instead: it writes the step's name to `<file>.paused` and goes on once
/// the file is gone or names another step, or stops dead there once the
/// file says `kill` (so a test can have records journaled after the mark
/// first).
pub const DEBUG_CRASH_AT_ENV: &str = "TALLYD_DEBUG_CRASH_AT";

/// A named step of writing a snapshot, for the test hook
/// [`DEBUG_CRASH_AT_ENV`] (nothing in a release build).
pub(crate) fn debug_step(step: &str) {
    #[cfg(debug_assertions)]
    if let Some(p) = std::env::var_os(DEBUG_CRASH_AT_ENV) {
        let flag = Path::new(&p);
        let Ok(text) = std::fs::read_to_string(flag) else {
            return;
        };
        let mut words = text.split_whitespace();
        if words.next() != Some(step) {
            return;
        }
        if words.next() == Some("pause") {
            let paused = flag.with_extension("paused");
            let _ = std::fs::write(&paused, step);
            // Until the file is gone or names another step, or says `kill`.
            while let Ok(text) = std::fs::read_to_string(flag) {
                if text.split_whitespace().any(|w| w == "kill") {
                    debug_kill(step);
                }
                if text.split_whitespace().next() != Some(step) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = std::fs::remove_file(&paused);
        } else {
            debug_kill(step);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

/// Stops tallyd dead at `step` (the test hook [`DEBUG_CRASH_AT_ENV`]).
#[cfg(debug_assertions)]
fn debug_kill(step: &str) {
    eprintln!("tallyd: debug: killed at snapshot step {step}");
    // Safety: kill(2) of this process with a valid signal.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("state dir: cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error("state dir {} is in use by another tallyd (its lock file is held); give each server its own --state-dir", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A snapshot is damaged (snapshots are written whole, so this is disk
    /// damage or tampering: tallyd refuses to guess).
    #[error("snapshot {} is damaged: {why}. tallyd does not start on a damaged snapshot: --salvage-journal restores its intact records and the segments after it (the file is then moved to the state dir's {DAMAGED_DIR}/), or move it away to start without it (its checkouts would be lost)", path.display())]
    BadSnapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Journal segments are damaged other than by a torn tail (see the
    /// module documentation): refused unless salvaging.
    #[error("{}", damaged_message(.dir, .files))]
    Damaged {
        /// The state directory.
        dir: PathBuf,
        /// Each damaged file.
        files: Vec<FileDamage>,
    },
    /// A state file in a format this tallyd does not read, e.g. written by
    /// a newer version (a downgrade): refused rather than skipped, since
    /// skipping it would lose its checkouts.
    #[error("{} is in journal format {found:?}, this tallyd reads {reads:?}: start the tallyd version that wrote it, or move the state dir away (its checkouts would be lost)", path.display())]
    OtherFormat {
        /// The file.
        path: PathBuf,
        /// Its magic.
        found: String,
        /// The magic this build reads.
        reads: String,
    },
}

impl JournalError {
    /// Whether this is damage or a foreign format in the state files (not
    /// an I/O failure): a restart would meet it again, so tallyd exits with
    /// a status of its own that a supervisor can be told not to restart on.
    pub fn is_damaged_state(&self) -> bool {
        matches!(
            self,
            JournalError::Damaged { .. }
                | JournalError::BadSnapshot { .. }
                | JournalError::OtherFormat { .. }
        )
    }
}

/// Fails with EIO while the debug hook asks for it ([`DEBUG_SYNC_EIO_ENV`]).
fn debug_sync_fault() -> io::Result<()> {
    #[cfg(debug_assertions)]
    if let Some(p) = std::env::var_os(DEBUG_SYNC_EIO_ENV) {
        if Path::new(&p).exists() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
    }
    Ok(())
}

/// `fdatasync` of a journal file (through the debug hook).
pub fn sync_data(f: &File) -> io::Result<()> {
    debug_sync_fault()?;
    f.sync_data()
}

/// `fsync` of a state file or directory (through the debug hook).
fn sync_all(f: &File) -> io::Result<()> {
    debug_sync_fault()?;
    f.sync_all()
}

/// `Err(OtherFormat)` if `bytes` start like a tally state file of kind
/// `magic` (same 6-byte prefix) in another format version.
fn check_format(path: &Path, bytes: &[u8], magic: &[u8; 8]) -> Result<(), JournalError> {
    match bytes.get(..8) {
        Some(m) if m != magic && m[..6] == magic[..6] => Err(JournalError::OtherFormat {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(m).into_owned(),
            reads: String::from_utf8_lossy(magic).into_owned(),
        }),
        _ => Ok(()),
    }
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The path of segment `gen`.
pub fn segment_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("journal-{gen:016x}.tly"))
}

/// The path of snapshot `gen`.
pub fn snapshot_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("snapshot-{gen:016x}.tly"))
}

/// The size of snapshot `gen`, bytes (0 if it cannot be read: the
/// snapshot threshold is then `--snapshot-every-kib` alone).
pub fn snapshot_size(dir: &Path, gen: u64) -> u64 {
    std::fs::metadata(snapshot_path(dir, gen)).map_or(0, |m| m.len())
}

fn parse_gen(name: &str, prefix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(".tly")?;
    u64::from_str_radix(hex, 16).ok()
}

/// Creates (if needed) and locks the state directory. The lock lasts as
/// long as the returned file is open.
pub fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    std::fs::create_dir_all(dir).map_err(io_at("create", dir))?;
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_at("open the lock file", &path))?;
    // Safety: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Err(JournalError::Locked {
                path: dir.to_path_buf(),
            });
        }
        return Err(JournalError::Io {
            what: "lock",
            path,
            source: e,
        });
    }
    // Prove the directory is writable now, not at the first checkout.
    let probe = dir.join("write-test.tmp");
    std::fs::write(&probe, b"tally").map_err(io_at("write in", dir))?;
    let _ = std::fs::remove_file(&probe);
    Ok(f)
}

/// Syncs a directory (so a rename or create in it is durable).
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| sync_all(&d))
        .map_err(io_at("sync", dir))
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The live instances and recent releases (ids of the previous run).
    pub state: State,
    /// The generation the new run must use (above every file seen).
    pub next_gen: u64,
    /// The snapshot recovery started from, if any.
    pub snapshot: Option<PathBuf>,
    /// Segments replayed.
    pub segments: usize,
    /// Records replayed from segments.
    pub records: u64,
    /// Bytes cut from torn tails.
    pub dropped_bytes: u64,
    /// Bytes of damaged files that held no intact record (salvage only).
    pub unreadable_bytes: u64,
    /// Damaged files salvaged and set aside: where each went.
    pub set_aside: Vec<PathBuf>,
    /// One line per torn tail or salvaged file, for the log.
    pub notes: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, JournalError> {
    std::fs::read(path).map_err(io_at("read", path))
}

/// Reads the newest snapshot and replays the segments after it. Damage
/// other than a torn tail is refused (nothing is touched) unless `salvage`,
/// which restores every intact record and sets each damaged file aside.
pub fn recover(dir: &Path, salvage: bool) -> Result<Recovered, JournalError> {
    let mut snapshots = Vec::new();
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io_at("list", dir))?;
    for e in entries {
        let e = e.map_err(io_at("list", dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(g) = parse_gen(name, "snapshot-") {
            snapshots.push(g);
        } else if let Some(g) = parse_gen(name, "journal-") {
            segments.push(g);
        } else if name.ends_with(".tmp") {
            // An unfinished snapshot of a run that died writing it.
            let _ = std::fs::remove_file(e.path());
        }
    }
    snapshots.sort_unstable();
    segments.sort_unstable();
    let mut out = Recovered {
        next_gen: snapshots.iter().chain(&segments).max().map_or(1, |g| g + 1),
        ..Recovered::default()
    };
    let mut damaged = Vec::new();
    let from = snapshots.last().copied();
    if let Some(g) = from {
        let path = snapshot_path(dir, g);
        let (state, damage) = load_snapshot(&path, g, salvage)?;
        out.state = state;
        damaged.extend(damage);
        out.snapshot = Some(path);
    }
    segments.retain(|&g| from.map_or(true, |s| g >= s));
    let newest = segments.last().copied();
    // Sequence numbers run on across the segments of a run.
    let mut want = None;
    for &g in &segments {
        let path = segment_path(dir, g);
        let bytes = read(&path)?;
        out.segments += 1;
        check_format(&path, &bytes, SEGMENT_MAGIC)?;
        let mut header = Vec::with_capacity(FILE_HEADER);
        record::file_header(&mut header, SEGMENT_MAGIC, g);
        let is_newest = Some(g) == newest;
        if bytes.len() < FILE_HEADER {
            if is_newest && header.starts_with(&bytes) {
                // Cut while it was being created: it held nothing yet.
                if !bytes.is_empty() {
                    out.dropped_bytes += bytes.len() as u64;
                    out.notes.push(format!(
                        "{}: header cut short ({} bytes; a crash while creating it): dropped, it held no records",
                        path.display(),
                        bytes.len()
                    ));
                }
                continue;
            }
            damaged.push(FileDamage {
                path,
                report: format!(
                    "is damaged at byte 0 (it has {} bytes, not a segment header): no intact record follows",
                    bytes.len()
                ),
                unreadable_bytes: bytes.len() as u64,
            });
            continue;
        }
        let header_bad = bytes[..FILE_HEADER] != header[..];
        let body = &bytes[FILE_HEADER..];
        let survey = record::survey(body, want);
        for (_, r) in &survey.frames {
            let payload = &body[r.clone()];
            if let Ok(rec) = record::decode(payload) {
                out.state.apply(&rec, payload);
            }
        }
        out.records += survey.frames.len() as u64;
        if let Some((seq, _)) = survey.frames.last() {
            want = Some(seq + 1);
        }
        if !header_bad && survey.damage.is_empty() {
            continue;
        }
        if !header_bad && is_newest && survey.is_torn_tail(body) {
            let d = &survey.damage[0];
            out.dropped_bytes += d.len as u64;
            out.notes.push(format!(
                "{}: cut at byte {} after {} good records: {} ({} bytes dropped)",
                path.display(),
                FILE_HEADER + d.at,
                survey.frames.len(),
                d.stop,
                d.len
            ));
            continue;
        }
        let header_why = header_bad.then(|| {
            format!(
                "its header is not {} with generation {g}",
                String::from_utf8_lossy(SEGMENT_MAGIC)
            )
        });
        damaged.push(FileDamage {
            report: format!(
                "is damaged {}",
                describe(&survey, FILE_HEADER, header_why.as_deref())
            ),
            unreadable_bytes: survey.damage.iter().map(|d| d.len as u64).sum::<u64>()
                + if header_bad { FILE_HEADER as u64 } else { 0 },
            path,
        });
    }
    if !damaged.is_empty() {
        if !salvage {
            return Err(JournalError::Damaged {
                dir: dir.to_path_buf(),
                files: damaged,
            });
        }
        for d in &damaged {
            let to = set_aside(dir, &d.path)?;
            out.unreadable_bytes += d.unreadable_bytes;
            out.notes.push(format!(
                "salvaged every intact record of {d}; the file is moved to {}",
                to.display()
            ));
            out.set_aside.push(to);
        }
    }
    Ok(out)
}

/// Reads snapshot `gen`. Damage is refused unless `salvage`; then its
/// intact records are returned with the damage found.
fn load_snapshot(
    path: &Path,
    gen: u64,
    salvage: bool,
) -> Result<(State, Option<FileDamage>), JournalError> {
    let bytes = read(path)?;
    check_format(path, &bytes, SNAPSHOT_MAGIC)?;
    let mut header = Vec::with_capacity(FILE_HEADER);
    record::file_header(&mut header, SNAPSHOT_MAGIC, gen);
    let header_why = if bytes.len() < FILE_HEADER || &bytes[..8] != SNAPSHOT_MAGIC {
        Some("no snapshot header")
    } else if bytes[8..16] != header[8..16] {
        Some("its header names another generation")
    } else {
        None
    };
    let body = bytes.get(FILE_HEADER..).unwrap_or_default();
    let survey = record::survey(body, Some(0));
    let mut state = State::default();
    // Nearly every frame of a snapshot is a live instance: room for them
    // all at once, not table after table as they come.
    state.live.reserve(survey.frames.len());
    let mut ended = None;
    for (_, r) in &survey.frames {
        let payload = &body[r.clone()];
        match record::decode(payload) {
            Ok(Record::End {
                instances,
                tombstones,
            }) => ended = Some((instances, tombstones)),
            Ok(rec) => state.apply(&rec, payload),
            Err(_) => {} // cannot happen: the survey decoded it
        }
    }
    let counted = (state.live.len() as u64, state.tombstones.len() as u64);
    let why = if header_why.is_some() || !survey.damage.is_empty() {
        Some(describe(&survey, FILE_HEADER, header_why))
    } else {
        match ended {
            Some(e) if e == counted => None,
            Some(e) => Some(format!(
                "it promises {} instances and {} tombstones but holds {} and {}",
                e.0, e.1, counted.0, counted.1
            )),
            None => Some("it has no end record (incomplete)".into()),
        }
    };
    match why {
        None => Ok((state, None)),
        Some(why) if !salvage => Err(JournalError::BadSnapshot {
            path: path.to_path_buf(),
            why,
        }),
        Some(why) => Ok((
            state,
            Some(FileDamage {
                path: path.to_path_buf(),
                report: format!("is damaged: {why}"),
                unreadable_bytes: survey.damage.iter().map(|d| d.len as u64).sum(),
            }),
        )),
    }
}

/// What a snapshot holds, written frame by frame (END is added by
/// [`write_snapshot`]): the journal's [`State`] (recovery, tests), or a
/// scan of the engine's table (the running journal: `journal/scan.rs`).
pub trait SnapshotBody {
    /// Writes every instance, tombstone and reconciled id through `f`.
    fn write_frames(&self, f: &mut Frames<'_>) -> io::Result<()>;
}

/// The frames of a snapshot being written: numbered from 0, counted for
/// its END record.
pub struct Frames<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    seq: u64,
    instances: u64,
    tombstones: u64,
}

impl std::fmt::Debug for Frames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("seq", &self.seq)
            .field("instances", &self.instances)
            .field("tombstones", &self.tombstones)
            .finish()
    }
}

impl Frames<'_> {
    /// An INSTANCE payload.
    pub fn instance(&mut self, payload: &[u8]) -> io::Result<()> {
        self.instances += 1;
        self.frame(payload)
    }

    /// A tombstone of a release at `at_ms`.
    pub fn tombstone(&mut self, id: u64, at_ms: u64) -> io::Result<()> {
        let mut p = Vec::with_capacity(17);
        record::encode_tombstone(&mut p, id, at_ms);
        self.tombstones += 1;
        self.frame(&p)
    }

    /// Any other payload (a RECONCILE record; END does not count them).
    pub fn other(&mut self, payload: &[u8]) -> io::Result<()> {
        self.frame(payload)
    }

    fn frame(&mut self, payload: &[u8]) -> io::Result<()> {
        self.buf.clear();
        record::frame(&mut self.buf, self.seq, payload);
        self.seq += 1;
        self.out.write_all(&self.buf)
    }

    /// Instances written so far.
    pub fn instances(&self) -> u64 {
        self.instances
    }
}

impl SnapshotBody for State {
    fn write_frames(&self, f: &mut Frames<'_>) -> io::Result<()> {
        for payload in self.live.values() {
            f.instance(payload)?;
        }
        for (&id, &at) in &self.tombstones {
            f.tombstone(id, at)?;
        }
        for payload in self.reconciled.values() {
            f.other(payload)?;
        }
        Ok(())
    }
}

/// Snapshot `gen` of `body` as the bytes of its file, in memory (tests and
/// the fuzz targets; the journal streams its snapshots: [`write_snapshot`]).
pub fn encode_snapshot(gen: u64, body: &dyn SnapshotBody) -> Vec<u8> {
    let mut buf = Vec::with_capacity(FILE_HEADER);
    record::file_header(&mut buf, SNAPSHOT_MAGIC, gen);
    buf.extend_from_slice(&snapshot_frames(body));
    buf
}

/// A snapshot body's frames and END as bytes (no file header): the
/// model tests read it back as recovery does.
pub(crate) fn snapshot_frames(body: &dyn SnapshotBody) -> Vec<u8> {
    let mut out = Vec::new();
    let mut frames = Frames {
        out: &mut out,
        buf: Vec::new(),
        seq: 0,
        instances: 0,
        tombstones: 0,
    };
    body.write_frames(&mut frames)
        .expect("a Vec takes every write");
    let mut end = Vec::new();
    record::encode_end(&mut end, frames.instances, frames.tombstones);
    frames.other(&end).expect("a Vec takes every write");
    out
}

/// Writes snapshot `gen` of `body` whole: streamed into a `.tmp` (no copy
/// of it in memory), synced, renamed into place, the directory synced.
/// Returns the instances written.
pub fn write_snapshot(dir: &Path, gen: u64, body: &dyn SnapshotBody) -> Result<u64, JournalError> {
    let path = snapshot_path(dir, gen);
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp)
        .map_err(io_at("create", &tmp))
        .and_then(|f| {
            let mut w = io::BufWriter::with_capacity(1 << 20, f);
            let mut header = Vec::with_capacity(FILE_HEADER);
            record::file_header(&mut header, SNAPSHOT_MAGIC, gen);
            let mut frames = Frames {
                out: &mut w,
                buf: Vec::with_capacity(256),
                seq: 0,
                instances: 0,
                tombstones: 0,
            };
            let body = frames
                .out
                .write_all(&header)
                .and_then(|()| body.write_frames(&mut frames))
                .and_then(|()| {
                    let mut end = Vec::with_capacity(17);
                    record::encode_end(&mut end, frames.instances, frames.tombstones);
                    frames.other(&end)
                });
            let n = frames.instances;
            body.map_err(io_at("write", &tmp))?;
            let f = w.into_inner().map_err(|e| JournalError::Io {
                what: "write",
                path: tmp.clone(),
                source: e.into_error(),
            })?;
            debug_step("snapshot-written");
            sync_all(&f).map_err(io_at("sync", &tmp))?;
            debug_step("snapshot-synced");
            Ok(n)
        })
        .and_then(|n| {
            std::fs::rename(&tmp, &path).map_err(io_at("rename into place", &path))?;
            debug_step("snapshot-renamed");
            Ok(n)
        });
    if written.is_err() {
        // A full disk must not keep a half-written snapshot eating space.
        let _ = std::fs::remove_file(&tmp);
    }
    let n = written?;
    sync_dir(dir)?;
    debug_step("snapshot-durable");
    Ok(n)
}

/// Creates segment `gen` with its header, synced.
pub fn create_segment(dir: &Path, gen: u64) -> Result<File, JournalError> {
    let path = segment_path(dir, gen);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_at("create", &path))?;
    let mut h = Vec::with_capacity(FILE_HEADER);
    record::file_header(&mut h, SEGMENT_MAGIC, gen);
    let written = f
        .write_all(&h)
        .map_err(io_at("write", &path))
        .and_then(|()| sync_all(&f).map_err(io_at("sync", &path)))
        .and_then(|()| sync_dir(dir));
    if let Err(e) = written {
        // Nothing was journaled in it: leave no half-made segment behind.
        drop(f);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(f)
}

/// Deletes every snapshot and segment older than `gen`.
pub fn delete_before(dir: &Path, gen: u64) -> Result<(), JournalError> {
    let entries = std::fs::read_dir(dir).map_err(io_at("list", dir))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let g = parse_gen(name, "snapshot-").or_else(|| parse_gen(name, "journal-"));
        if g.is_some_and(|g| g < gen) {
            std::fs::remove_file(e.path()).map_err(io_at("delete", &e.path()))?;
            debug_step("delete-started");
        }
    }
    Ok(())
}

/// Starts generation `gen`: snapshot of `body`, an empty segment, and the
/// older files deleted. Returns the open segment.
pub fn start_generation(
    dir: &Path,
    gen: u64,
    body: &dyn SnapshotBody,
) -> Result<File, JournalError> {
    write_snapshot(dir, gen, body)?;
    let f = create_segment(dir, gen)?;
    delete_before(dir, gen)?;
    Ok(f)
}

#[cfg(test)]
pub(crate) mod tests;
