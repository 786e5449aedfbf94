//! The side file: an append-only log of what happened offline, next to
//! the cache file (`<cache>.admissions`).
//!
//! One record per line: `<CRC-32C of the JSON, 8 lower-case hex digits>
//! <JSON>` and a LF. Each record is appended with one `write` and, with
//! [`Durability::Fsync`], an `fdatasync` before the call returns, so an
//! admission that was answered survives a crash or a power loss. On
//! reading, a bad or unfinished *last* line is a torn append (the crash
//! came before its fsync returned): it is dropped, and [`SideFile::open`]
//! cuts it off the file before appending. A bad line before the last is
//! damage: the file is refused, naming the line.
//!
//! Several processes may use one cache (every `tallyctl agent checkout`
//! is one): each holds an exclusive advisory lock on the side file
//! (`flock(2)`, [`SideFile::lock`]) from reading it to appending what it
//! decided, so two of them never decide from the same state (a count
//! exceeded, an id handed out twice). A torn line seen under the lock is
//! a crash's, never another process's append in progress.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tally_core::clock::Millis;

use super::OfflineError;

/// Whether appends are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` after every record (the default; what survives a power
    /// loss).
    #[default]
    Fsync,
    /// No fsync: records reach the OS, not the disk. For benches and tests
    /// only.
    NoSync,
}

/// One session admitted offline: what RECONCILE will report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// `<client tag>-<sequence>-<16 random hex digits>`: unique per side
    /// file (the sequence, given out under the lock) and across clients
    /// whose side files were copied (the random part); RECONCILE's
    /// idempotency key.
    pub id: String,
    /// Feature.
    pub feature: String,
    /// Version asked, if any.
    pub version: Option<String>,
    /// User.
    pub user: String,
    /// Host.
    pub host: String,
    /// The client's handle.
    pub handle: String,
    /// When it was admitted, Unix ms (the highest time seen then).
    pub start_ms: Millis,
    /// Licenses.
    pub count: u32,
    /// The version of the pool it was counted against.
    pub pool_version: String,
    /// The expiry (`permanent` or `YYYY-MM-DD`) of that pool.
    pub pool_expiry: String,
    /// The linger the session asked for, ms (RECONCILE's `linger=`);
    /// `None`: none asked (absent from older side files too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_ms: Option<u64>,
}

/// A line of the side file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum Record {
    /// First line: the client tag admission ids start with.
    Client {
        /// Random, fixed when the file is created.
        tag: String,
    },
    /// A successful contact with the server at `at_ms`.
    Contact {
        /// Unix ms.
        at_ms: Millis,
    },
    /// The clock read `at_ms` (kept so that a clock moved backwards,
    /// even across a reboot, never extends grace).
    Seen {
        /// Unix ms.
        at_ms: Millis,
    },
    /// A session admitted offline.
    Admit(Admission),
    /// The session of admission `id` asked again at `at_ms` (the same
    /// feature, user, host and handle): renewed, not admitted twice.
    Renew {
        /// Its admission id.
        id: String,
        /// Unix ms.
        at_ms: Millis,
        /// The linger asked this time, ms (RECONCILE sends the latest).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        linger_ms: Option<u64>,
    },
    /// A session admitted offline ended at `at_ms`.
    Release {
        /// Its admission id.
        id: String,
        /// Unix ms.
        at_ms: Millis,
    },
    /// The server recorded the admission (RECONCILE answered).
    Reconciled {
        /// Its admission id.
        id: String,
    },
    /// The server refused the admission for good (RECONCILE answered
    /// `DENIED`): it no longer counts and is not sent again.
    Rejected {
        /// Its admission id.
        id: String,
        /// The server's reason (`EXPIRED`, `NO_SUCH_FEATURE`, ...).
        reason: String,
    },
}

impl Record {
    /// The record's line, LF included.
    pub fn line(&self) -> String {
        // An enum of strings and numbers always serializes.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{:08x} {json}\n", crc32c::crc32c(json.as_bytes()))
    }

    /// Parses one line (without its LF).
    fn parse(line: &[u8]) -> Result<Record, String> {
        let text = std::str::from_utf8(line).map_err(|_| "not UTF-8 text".to_string())?;
        let (crc, json) = text
            .split_once(' ')
            .ok_or_else(|| "not `<crc> <json>`".to_string())?;
        let stored = (crc.len() == 8)
            .then(|| u32::from_str_radix(crc, 16).ok())
            .flatten()
            .ok_or_else(|| format!("bad CRC {crc:?}"))?;
        let actual = crc32c::crc32c(json.as_bytes());
        if stored != actual {
            return Err(format!(
                "CRC mismatch: {stored:08x} written, {actual:08x} read"
            ));
        }
        serde_json::from_str(json).map_err(|e| format!("not a record: {e}"))
    }
}

/// What a side file holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contents {
    /// The good records, in order.
    pub records: Vec<Record>,
    /// Bytes they take (where the next append goes).
    pub good_len: u64,
    /// A torn last line was dropped (1-based line number).
    pub torn_line: Option<usize>,
}

/// Reads the side file at `path`; a missing file is empty.
pub fn read(path: &Path) -> Result<Contents, OfflineError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(source) => return Err(io_error(path, source)),
    };
    parse(&bytes, path)
}

/// [`read`] of bytes; `path` names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Contents, OfflineError> {
    let mut out = Contents::default();
    let mut rest = bytes;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, complete, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true, &rest[i + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        let is_last = after.is_empty();
        let parsed = if complete {
            Record::parse(line)
        } else {
            Err("no line feed".to_string())
        };
        match parsed {
            Ok(r) => {
                if out.records.is_empty() && !matches!(r, Record::Client { .. }) {
                    return Err(corrupt(path, n, "the first record is not the client tag"));
                }
                out.records.push(r);
                out.good_len += line.len() as u64 + 1;
            }
            Err(_) if is_last => {
                out.torn_line = Some(n);
                break;
            }
            Err(what) => return Err(corrupt(path, n, &what)),
        }
        rest = after;
    }
    Ok(out)
}

/// The side file open for appending.
#[derive(Debug)]
pub struct SideFile {
    path: PathBuf,
    file: File,
    durability: Durability,
}

impl SideFile {
    /// Opens (creating it with a first `Client` record from `new_tag` when
    /// missing or empty) the side file at `path`, cuts a torn last line
    /// off, and returns it with its records.
    pub fn open(
        path: &Path,
        durability: Durability,
        new_tag: impl FnOnce() -> String,
    ) -> Result<(SideFile, Vec<Record>), OfflineError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let mut side = SideFile {
            path: path.to_path_buf(),
            file,
            durability,
        };
        let lock = side.lock()?;
        let records = side.load(new_tag)?;
        drop(lock);
        if !existed {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            crate::cache::sync_dir(dir).map_err(|e| io_error(path, e))?;
        }
        Ok((side, records))
    }

    /// Takes the exclusive lock on the side file (waiting for another
    /// process to release it); released when the guard is dropped.
    ///
    /// If the file at the path is no longer the one open (a
    /// [`salvage`] set it aside meanwhile), the new one is opened and
    /// locked instead.
    pub fn lock(&mut self) -> Result<Lock, OfflineError> {
        loop {
            let file = self.file.try_clone().map_err(|e| io_error(&self.path, e))?;
            lock_exclusive(&file).map_err(|e| io_error(&self.path, e))?;
            let lock = Lock { file };
            if same_file(&self.file, &self.path) {
                return Ok(lock);
            }
            drop(lock);
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| io_error(&self.path, e))?;
        }
    }

    /// Reads the records from the file (call it holding [`SideFile::lock`]):
    /// cuts a torn last line off, and writes the first `Client` record
    /// (from `new_tag`) into an empty file.
    pub fn load(&mut self, new_tag: impl FnOnce() -> String) -> Result<Vec<Record>, OfflineError> {
        let contents = read(&self.path)?;
        if contents.torn_line.is_some() {
            self.file
                .set_len(contents.good_len)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| io_error(&self.path, e))?;
        }
        let mut records = contents.records;
        if records.is_empty() {
            let first = Record::Client { tag: new_tag() };
            self.append(&first)?;
            records.push(first);
        }
        Ok(records)
    }

    /// Appends `record` (one write, then fsync under
    /// [`Durability::Fsync`]).
    pub fn append(&mut self, record: &Record) -> Result<(), OfflineError> {
        let line = record.line();
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| match self.durability {
                Durability::Fsync => self.file.sync_data(),
                Durability::NoSync => Ok(()),
            })
            .map_err(|e| io_error(&self.path, e))
    }
}

/// What [`salvage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// Intact records kept in the new side file (a fresh `client` record
    /// included if the first line was lost).
    pub kept: usize,
    /// Lines dropped: (1-based line, what was wrong).
    pub dropped: Vec<(usize, String)>,
    /// Where the damaged file is now.
    pub damaged: PathBuf,
}

/// Sets a damaged side file aside and keeps what it held: every intact
/// line (each record has its own CRC) goes into a new side file at `path`,
/// in order, and the damaged file is kept as `<path>.damaged-<stamp>`
/// (nothing is deleted). Done under the side file's lock; the new file is
/// written to a temporary name, fsynced, then renamed into place. `None`:
/// the side file is missing, or not damaged (nothing done).
pub fn salvage(
    path: &Path,
    stamp: &str,
    new_tag: impl FnOnce() -> String,
) -> Result<Option<Salvaged>, OfflineError> {
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    lock_exclusive(&file).map_err(|e| io_error(path, e))?;
    let lock = Lock { file };
    let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
    if parse(&bytes, path).is_ok() {
        return Ok(None);
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut lines = bytes.split(|&b| b == b'\n').peekable();
    let mut n = 0;
    while let Some(line) = lines.next() {
        n += 1;
        let last = lines.peek().is_none();
        if last && line.is_empty() {
            break;
        }
        let parsed = if last {
            Err("no line feed".to_string())
        } else {
            Record::parse(line)
        };
        match parsed {
            Ok(r) => kept.push(r),
            Err(what) => dropped.push((n, what)),
        }
    }
    if !matches!(kept.first(), Some(Record::Client { .. })) {
        kept.retain(|r| !matches!(r, Record::Client { .. }));
        kept.insert(0, Record::Client { tag: new_tag() });
    }
    let name = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let tmp = name(".salvage-tmp");
    let damaged = name(&format!(".damaged-{stamp}"));
    let text: String = kept.iter().map(Record::line).collect();
    let mut out = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    // The damaged file gets its second name first, then the new file
    // replaces the first atomically: the path always names a side file.
    fs::hard_link(path, &damaged).map_err(|e| io_error(&damaged, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::cache::sync_dir(dir).map_err(|e| io_error(path, e))?;
    drop(lock);
    Ok(Some(Salvaged {
        kept: kept.len(),
        dropped,
        damaged,
    }))
}

/// The exclusive lock on a side file ([`SideFile::lock`]), released when
/// dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        unlock(&self.file);
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> io::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    loop {
        match flock(file, FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

#[cfg(unix)]
fn unlock(file: &File) {
    // Closing the last descriptor of the file releases it anyway.
    let _ = rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock);
}

/// `file` is the file at `path` now (not renamed away, not replaced).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    true
}

/// Without flock(2): no lock between processes.
#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn unlock(_file: &File) {}

fn io_error(path: &Path, source: io::Error) -> OfflineError {
    OfflineError::Io {
        file: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, line: usize, what: &str) -> OfflineError {
    OfflineError::Corrupt {
        file: path.to_path_buf(),
        line,
        what: what.to_string(),
    }
}
