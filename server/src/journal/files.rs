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
//! absent. Recovery = the newest snapshot + every segment of that
//! generation or later, in order. Each run of tallyd starts by writing a
//! snapshot of what it restored (with its own ids) and a fresh segment, then
//! deletes everything older.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::record::{self, Record, FILE_HEADER, SEGMENT_MAGIC, SNAPSHOT_MAGIC};
use super::state::State;

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
    #[error("snapshot {} is damaged: {why}; move it away to start without it (its checkouts would be lost)", path.display())]
    BadSnapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
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
        .and_then(|d| d.sync_all())
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
    /// Bytes cut from torn or corrupt tails.
    pub dropped_bytes: u64,
    /// One line per torn tail or damaged segment, for the log.
    pub notes: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, JournalError> {
    std::fs::read(path).map_err(io_at("read", path))
}

/// Reads the newest snapshot and replays the segments after it.
pub fn recover(dir: &Path) -> Result<Recovered, JournalError> {
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
    let from = snapshots.last().copied();
    if let Some(g) = from {
        let path = snapshot_path(dir, g);
        out.state = load_snapshot(&path, g)?;
        out.snapshot = Some(path);
    }
    for &g in segments.iter().filter(|&&g| from.map_or(true, |s| g >= s)) {
        let path = segment_path(dir, g);
        let bytes = read(&path)?;
        out.segments += 1;
        check_format(&path, &bytes, SEGMENT_MAGIC)?;
        if bytes.len() < FILE_HEADER || &bytes[..8] != SEGMENT_MAGIC {
            out.dropped_bytes += bytes.len() as u64;
            out.notes.push(format!(
                "{}: no segment header ({} bytes): dropped",
                path.display(),
                bytes.len()
            ));
            continue;
        }
        let body = &bytes[FILE_HEADER..];
        let scan = record::scan(body, None);
        for (_, r) in &scan.frames {
            let payload = &body[r.clone()];
            if let Ok(rec) = record::decode(payload) {
                out.state.apply(&rec, payload);
            }
        }
        out.records += scan.frames.len() as u64;
        if let Some(stop) = scan.stop {
            out.dropped_bytes += scan.dropped_bytes as u64;
            out.notes.push(format!(
                "{}: cut at byte {} after {} good records: {} ({} bytes dropped)",
                path.display(),
                FILE_HEADER + scan.good_len,
                scan.frames.len(),
                stop,
                scan.dropped_bytes
            ));
        }
    }
    Ok(out)
}

fn load_snapshot(path: &Path, gen: u64) -> Result<State, JournalError> {
    let bad = |why: String| JournalError::BadSnapshot {
        path: path.to_path_buf(),
        why,
    };
    let bytes = read(path)?;
    check_format(path, &bytes, SNAPSHOT_MAGIC)?;
    if bytes.len() < FILE_HEADER || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(bad("no snapshot header".into()));
    }
    if bytes[8..16] != gen.to_le_bytes() {
        return Err(bad("its header names another generation".into()));
    }
    let body = &bytes[FILE_HEADER..];
    let scan = record::scan(body, Some(0));
    if let Some(stop) = scan.stop {
        return Err(bad(format!(
            "{stop} at byte {}",
            FILE_HEADER + scan.good_len
        )));
    }
    let mut state = State::default();
    let mut ended = None;
    for (_, r) in &scan.frames {
        let payload = &body[r.clone()];
        match record::decode(payload) {
            Ok(Record::End {
                instances,
                tombstones,
            }) => ended = Some((instances, tombstones)),
            Ok(rec) => state.apply(&rec, payload),
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    let counted = (state.live.len() as u64, state.tombstones.len() as u64);
    match ended {
        Some(e) if e == counted => Ok(state),
        Some(e) => Err(bad(format!(
            "it promises {} instances and {} tombstones but holds {} and {}",
            e.0, e.1, counted.0, counted.1
        ))),
        None => Err(bad("it has no end record (incomplete)".into())),
    }
}

/// Writes snapshot `gen` of `state` whole (tmp, sync, rename, sync dir).
pub fn write_snapshot(dir: &Path, gen: u64, state: &State) -> Result<(), JournalError> {
    write_snapshot_bytes(dir, gen, &encode_snapshot(gen, state))
}

/// Snapshot `gen` of `state` as the bytes of its file (in memory: a copy of
/// the state that another thread can write while this one goes on).
pub fn encode_snapshot(gen: u64, state: &State) -> Vec<u8> {
    let mut buf = Vec::with_capacity(FILE_HEADER + state.live.len() * 96 + 64);
    record::file_header(&mut buf, SNAPSHOT_MAGIC, gen);
    state.write_frames(&mut buf, 0);
    buf
}

/// Writes the bytes of snapshot `gen` (from [`encode_snapshot`]) whole:
/// tmp, sync, rename, sync dir.
pub fn write_snapshot_bytes(dir: &Path, gen: u64, buf: &[u8]) -> Result<(), JournalError> {
    let path = snapshot_path(dir, gen);
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_at("create", &tmp))?;
    f.write_all(buf).map_err(io_at("write", &tmp))?;
    f.sync_all().map_err(io_at("sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io_at("rename into place", &path))?;
    sync_dir(dir)
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
    f.write_all(&h).map_err(io_at("write", &path))?;
    f.sync_all().map_err(io_at("sync", &path))?;
    sync_dir(dir)?;
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
        }
    }
    Ok(())
}

/// Starts generation `gen`: snapshot of `state`, an empty segment, and the
/// older files deleted. Returns the open segment.
pub fn start_generation(dir: &Path, gen: u64, state: &State) -> Result<File, JournalError> {
    write_snapshot(dir, gen, state)?;
    let f = create_segment(dir, gen)?;
    delete_before(dir, gen)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{encode_in, encode_instance, Instance, TAG_OUT};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tally-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn out(id: u64, renewed: bool, deadline: u64) -> Vec<u8> {
        let mut p = Vec::new();
        encode_instance(
            &mut p,
            TAG_OUT,
            &Instance {
                id,
                at_ms: 1000 + id,
                linger_ms: 60_000,
                deadline_ms: Some(deadline),
                count: 1,
                version: 0,
                renewed,
                feature: "F",
                user: "u",
                host: "h",
                display: "",
                handle: &format!("h{id}"),
            },
        );
        p
    }

    fn append(path: &Path, first_seq: u64, payloads: &[Vec<u8>]) {
        let mut buf = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            record::frame(&mut buf, first_seq + i as u64, p);
        }
        let mut f = OpenOptions::new().append(true).open(path).expect("open");
        f.write_all(&buf).expect("append");
    }

    /// The live state, built record by record, equals snapshot + tail after
    /// a recovery, and a torn tail costs only the torn record.
    #[test]
    fn snapshot_plus_tail_equals_the_live_state() {
        let d = dir("snap");
        let _lock = lock_dir(&d).expect("lock");
        let mut live = State::default();
        let mut first: Vec<Vec<u8>> = (1..=5).map(|i| out(i, false, 50_000)).collect();
        let mut rel = Vec::new();
        encode_in(&mut rel, 2, 1500);
        first.push(rel);
        for p in &first {
            live.apply(&record::decode(p).expect("decode"), p);
        }
        start_generation(&d, 1, &State::default()).expect("gen 1");
        append(&segment_path(&d, 1), 0, &first);
        // A snapshot of the state so far starts generation 2.
        start_generation(&d, 2, &live).expect("gen 2");
        let tail = vec![out(3, true, 90_000), out(6, false, 70_000)];
        for p in &tail {
            live.apply(&record::decode(p).expect("decode"), p);
        }
        append(&segment_path(&d, 2), 6, &tail);
        // A torn record after the tail.
        let mut torn = Vec::new();
        record::frame(&mut torn, 8, &out(7, false, 1));
        torn.truncate(torn.len() - 3);
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(&d, 2))
            .expect("open");
        f.write_all(&torn).expect("append");
        drop(f);

        let rec = recover(&d).expect("recover");
        assert_eq!(rec.state, live);
        assert_eq!(rec.next_gen, 3);
        assert_eq!(rec.records, 2);
        assert_eq!(rec.dropped_bytes, torn.len() as u64);
        assert!(rec.notes[0].contains("torn write"), "{:?}", rec.notes);
        // Generation 1 was deleted when 2 began.
        assert!(!segment_path(&d, 1).exists() && !snapshot_path(&d, 1).exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A periodic snapshot is written in the background after segment
    /// `gen + 1` has started: a crash before it is renamed into place
    /// leaves snapshot `gen`, segment `gen` and segment `gen + 1` (and a
    /// partial tmp file), and recovery must replay both segments.
    #[test]
    fn a_crash_during_a_background_snapshot_loses_nothing() {
        let d = dir("background");
        let _lock = lock_dir(&d).expect("lock");
        let mut live = State::default();
        let first: Vec<Vec<u8>> = (1..=3).map(|i| out(i, false, 50_000)).collect();
        let second = vec![out(2, true, 80_000), out(4, false, 60_000)];
        for p in first.iter().chain(&second) {
            live.apply(&record::decode(p).expect("decode"), p);
        }
        start_generation(&d, 1, &State::default()).expect("gen 1");
        append(&segment_path(&d, 1), 0, &first);
        create_segment(&d, 2).expect("segment 2");
        append(&segment_path(&d, 2), 3, &second);
        std::fs::write(
            snapshot_path(&d, 2).with_extension("tmp"),
            b"TALLYS01partial",
        )
        .expect("tmp");

        let rec = recover(&d).expect("recover");
        assert_eq!(rec.state, live);
        assert_eq!(rec.records, 5);
        assert_eq!(rec.next_gen, 3);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_snapshot_is_refused_with_its_name() {
        let d = dir("damaged");
        let _lock = lock_dir(&d).expect("lock");
        let mut s = State::default();
        let p = out(1, false, 9);
        s.apply(&record::decode(&p).expect("decode"), &p);
        start_generation(&d, 4, &s).expect("gen");
        let path = snapshot_path(&d, 4);
        let mut bytes = std::fs::read(&path).expect("read");
        let n = bytes.len();
        bytes[n - 5] ^= 0x10;
        std::fs::write(&path, bytes).expect("write");
        let e = recover(&d).expect_err("must refuse").to_string();
        assert!(
            e.contains("snapshot-0000000000000004.tly is damaged"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
