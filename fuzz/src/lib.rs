//! Fuzz targets for tally's input parsers and its journal decoder.
//!
//! Each target is a function from arbitrary bytes to `()` that panics when a
//! property fails; under `cargo afl` (see `src/bin/tally-fuzz.rs` and
//! `fuzz/run`) a panic aborts the process and AFL++ saves the input as a
//! crash. The same functions replay the seed corpus and every saved crash in
//! `cargo test` (see `tests/replay.rs`), so they build and run on a stable
//! toolchain without AFL.
//!
//! | target | code under test | properties beyond "does not panic" |
//! | --- | --- | --- |
//! | `protocol` | `tally_server::protocol::parse` | a request re-formats to a line that parses to the same command; fields obey the documented limits; errors are one line and have the code the input calls for |
//! | `license` | `tally_core::license::parse_str` (and `parse_file` for non-UTF-8) | every diagnostic is `file:line:col: message` with a position inside the text; parsing is deterministic |
//! | `options` | `tally_core::options::parse_str` (and `parse_file` for non-UTF-8) | as `license` |
//! | `journal_decode` | `journal::record::decode` | a decoded record re-encodes to the same bytes; its strings lie inside the input |
//! | `journal_scan` | `journal::record::scan` | accepted frames tile the good prefix, each with a matching CRC-32C, consecutive sequence numbers and a decodable payload; the stop reason is true of the first bytes not accepted; the good prefix scans clean on its own |
//! | `journal_recover` | `journal::files::recover` on a state dir the input writes | recovery returns (never panics) and whatever it restores decodes |
//! | `journal_replay` | the encoder, `encode_snapshot` and `recover` together | a state dir written from a sequence of records, with its last segment torn anywhere, recovers exactly the state of the records that were written whole |
//!
//! The state-dir targets write files: to a directory of their own under
//! `$TALLY_FUZZ_TMP`, else `/dev/shm`, else the temp dir.

#![warn(missing_docs)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use tally_core::engine::{MAX_COUNT_PER_CHECKOUT, MAX_LINGER_MS};
use tally_core::license::Diagnostic;
use tally_server::journal::files;
use tally_server::journal::record::{self, Instance, Record, Stop};
use tally_server::journal::State;
use tally_server::protocol::{self, Command, ErrCode, MAX_FIELD_BYTES, MAX_LINE_BYTES};

/// A fuzz target: panics on a broken property.
pub type Target = fn(&[u8]);

/// Every target, by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("protocol", protocol),
    ("license", license),
    ("options", options),
    ("journal_decode", journal_decode),
    ("journal_scan", journal_scan),
    ("journal_recover", journal_recover),
    ("journal_replay", journal_replay),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

// ---------------------------------------------------------------- protocol

/// The protocol request parser: one request line.
pub fn protocol(data: &[u8]) {
    let parsed = protocol::parse(data);
    let line = data.strip_suffix(b"\r").unwrap_or(data);
    match parsed {
        Err(e) => {
            let text = e.to_string();
            assert!(
                !text.contains(['\n', '\r']),
                "an ERR reply must be one line: {text:?}"
            );
            assert!(!e.text.is_empty(), "ERR {} without a text", e.code.as_str());
            let want = if line.len() > MAX_LINE_BYTES {
                Some(ErrCode::LineTooLong)
            } else if std::str::from_utf8(line).is_err() {
                Some(ErrCode::BadUtf8)
            } else if line.is_empty() {
                Some(ErrCode::EmptyRequest)
            } else {
                None
            };
            if let Some(want) = want {
                assert_eq!(e.code, want, "{e}");
            } else {
                assert!(
                    matches!(
                        e.code,
                        ErrCode::UnknownCommand | ErrCode::MissingField | ErrCode::BadField
                    ),
                    "a well-formed line got {e}"
                );
            }
        }
        Ok(cmd) => {
            assert!(line.len() <= MAX_LINE_BYTES);
            check_fields(&cmd);
            let again = format_request(&cmd);
            let reparsed = protocol::parse(again.as_bytes())
                .unwrap_or_else(|e| panic!("{cmd:?} re-formatted as {again:?}: {e}"));
            assert_eq!(reparsed, cmd, "re-formatted as {again:?}");
            // The verb is case-insensitive and a trailing CR is dropped.
            let mut upper = line.to_vec();
            let verb_end = upper.iter().position(|&b| b == b' ').unwrap_or(upper.len());
            upper[..verb_end].make_ascii_uppercase();
            upper.extend_from_slice(b"\r");
            assert_eq!(
                protocol::parse(&upper),
                Ok(cmd),
                "verb case or CR changed it"
            );
        }
    }
}

/// Each string field of a parsed request obeys the wire rules: non-empty
/// (but `display`, which defaults to empty), at most [`MAX_FIELD_BYTES`],
/// no blank, no control character.
fn check_fields(cmd: &Command<'_>) {
    let field = |name: &str, s: &str, may_be_empty: bool| {
        assert!(may_be_empty || !s.is_empty(), "{name} is empty in {cmd:?}");
        assert!(s.len() <= MAX_FIELD_BYTES, "{name} too long in {cmd:?}");
        assert!(
            !s.contains(' ') && !s.chars().any(char::is_control),
            "{name} {s:?} has a blank or control character"
        );
    };
    match cmd {
        Command::Checkout(c) => {
            field("feature", c.names.feature, false);
            field("user", c.names.user, false);
            field("host", c.names.host, false);
            field("handle", c.names.handle, false);
            field("display", c.names.display, true);
            assert!((1..=MAX_COUNT_PER_CHECKOUT).contains(&c.count), "{cmd:?}");
            assert!(c.linger_ms <= MAX_LINGER_MS, "{cmd:?}");
            if let Some(h) = c.borrow_hours {
                assert!((1..=protocol::MAX_BORROW_HOURS).contains(&h), "{cmd:?}");
            }
        }
        Command::Checkin {
            feature,
            handle,
            holder,
        } => {
            field("feature", feature, false);
            field("handle", handle, false);
            if let Some((u, h)) = holder {
                field("user", u, false);
                field("host", h, false);
            }
        }
        Command::Auth(token) => field("token", token, false),
        Command::Remove {
            feature,
            user,
            host,
            display,
        } => {
            for (n, s) in [
                ("feature", feature),
                ("user", user),
                ("host", host),
                ("display", display),
            ] {
                field(n, s, false);
            }
        }
        Command::RemoveHandle { feature, .. } => field("feature", feature, false),
        Command::BorrowReturn {
            feature,
            user,
            host,
            display,
        } => {
            for (n, s) in [("feature", feature), ("user", user), ("host", host)] {
                field(n, s, false);
            }
            if let Some(d) = display {
                field("display", d, false);
            }
        }
        Command::Status(q) => {
            if let Some(f) = q.feature {
                field("feature", f, false);
            }
            assert!(q.limit != Some(0), "{cmd:?}");
        }
        Command::Reconcile(r) => {
            field("feature", r.feature, false);
            field("user", r.user, false);
            field("host", r.host, false);
            field("handle", r.handle, false);
            field("id", r.id, false);
            field("display", r.display, true);
            assert!((1..=MAX_COUNT_PER_CHECKOUT).contains(&r.count), "{cmd:?}");
            if let Some(l) = r.linger_ms {
                assert!((1..=MAX_LINGER_MS).contains(&l), "{cmd:?}");
            }
        }
        Command::Report(q) => {
            for d in [q.from, q.to].into_iter().flatten() {
                field("date", d, false);
            }
        }
        Command::Ping | Command::Quit | Command::Picture => {}
        Command::Reread | Command::Down | Command::ReopenLog => {}
        Command::Upload | Command::UploadStatus => {}
    }
}

/// Seconds with three decimals, as `linger=` and `wait=` take them.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// A request line for `cmd`, in the canonical spelling of docs/protocol.md
/// (upper-case verb, options in a fixed order, every option written out).
pub fn format_request(cmd: &Command<'_>) -> String {
    match cmd {
        Command::Checkout(c) => {
            let mut s = format!(
                "CHECKOUT {} {} {} {} count={} linger={} wait={}",
                c.names.feature,
                c.names.user,
                c.names.host,
                c.names.handle,
                c.count,
                seconds(c.linger_ms),
                seconds(c.wait_ms)
            );
            if let Some(v) = c.version {
                let _ = write!(s, " version={}.{:09}", v / 1_000_000_000, v % 1_000_000_000);
            }
            if !c.names.display.is_empty() {
                let _ = write!(s, " display={}", c.names.display);
            }
            if let Some(h) = c.borrow_hours {
                let _ = write!(s, " borrow={h}");
            }
            s
        }
        Command::Checkin {
            feature,
            handle,
            holder,
        } => match holder {
            Some((u, h)) => format!("CHECKIN {feature} {handle} user={u} host={h}"),
            None => format!("CHECKIN {feature} {handle}"),
        },
        Command::Status(q) => {
            let mut s = String::from("STATUS");
            if let Some(f) = q.feature {
                let _ = write!(s, " {f}");
            }
            let _ = write!(s, " from={}", q.from);
            if let Some(l) = q.limit {
                let _ = write!(s, " limit={l}");
            }
            s
        }
        Command::Report(q) => {
            let mut s = String::from("REPORT");
            if let Some(f) = q.from {
                let _ = write!(s, " from={f}");
            }
            if let Some(t) = q.to {
                let _ = write!(s, " to={t}");
            }
            s
        }
        Command::Ping => "PING".into(),
        Command::Quit => "QUIT".into(),
        Command::Auth(t) => format!("AUTH {t}"),
        Command::Remove {
            feature,
            user,
            host,
            display,
        } => format!("REMOVE {feature} {user} {host} {display}"),
        Command::RemoveHandle { feature, ticket } => format!("REMOVE_HANDLE {feature} {ticket}"),
        Command::BorrowReturn {
            feature,
            user,
            host,
            display,
        } => match display {
            Some(d) => format!("BORROW_RETURN {feature} {user} {host} {d}"),
            None => format!("BORROW_RETURN {feature} {user} {host}"),
        },
        Command::Reread => "REREAD".into(),
        Command::Down => "DOWN".into(),
        Command::ReopenLog => "REOPEN_LOG".into(),
        Command::Upload => "UPLOAD".into(),
        Command::UploadStatus => "UPLOAD_STATUS".into(),
        Command::Picture => "PICTURE".into(),
        Command::Reconcile(r) => {
            let mut s = format!(
                "RECONCILE {} {} {} {} start={} id={} count={}",
                r.feature, r.user, r.host, r.handle, r.start_ms, r.id, r.count
            );
            if let Some(v) = r.version {
                let _ = write!(s, " version={}.{:09}", v / 1_000_000_000, v % 1_000_000_000);
            }
            if let Some(l) = r.linger_ms {
                let _ = write!(s, " linger={}", seconds(l));
            }
            if !r.display.is_empty() {
                let _ = write!(s, " display={}", r.display);
            }
            s
        }
    }
}

// ------------------------------------------------------ license / options

/// Name the text goes by in diagnostics.
const SOURCE: &str = "fuzz.lic";

/// The license-file parser.
pub fn license(data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(text) => {
            let set = tally_core::license::parse_str(SOURCE, text);
            check_diagnostics(text, &set.diagnostics);
            for p in &set.pools {
                assert!(!p.feature.is_empty(), "a pool with no feature name: {p:?}");
            }
            assert_eq!(set, tally_core::license::parse_str(SOURCE, text));
        }
        Err(e) => with_file(data, |path| {
            match tally_server::source::read_license(path) {
                Err(tally_server::source::SourceFileError::NotUtf8 {
                    offset,
                    line,
                    column,
                    ..
                }) => {
                    assert_eq!(offset, e.valid_up_to());
                    let (l, c) = line_col(&data[..offset]);
                    assert_eq!((line, column), (l, c), "position of byte {offset}");
                }
                other => panic!("non-UTF-8 license file gave {other:?}"),
            }
        }),
    }
}

/// The options-file parser.
pub fn options(data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(text) => {
            let file = tally_core::options::parse_str(SOURCE, text);
            check_diagnostics(text, &file.diagnostics);
            for g in file.groups.iter().chain(&file.host_groups) {
                assert!(!g.name.is_empty(), "a group with no name: {g:?}");
            }
            assert_eq!(file, tally_core::options::parse_str(SOURCE, text));
        }
        Err(e) => with_file(data, |path| {
            match tally_server::source::read_options(path) {
                Err(tally_server::source::SourceFileError::NotUtf8 { offset, .. }) => {
                    assert_eq!(offset, e.valid_up_to());
                }
                other => panic!("non-UTF-8 options file gave {other:?}"),
            }
        }),
    }
}

/// 1-based line and character column just after `valid` (UTF-8 prefix).
fn line_col(valid: &[u8]) -> (u32, u32) {
    let text = std::str::from_utf8(valid).expect("prefix is UTF-8");
    let line = text.matches('\n').count() + 1;
    let start = text.rfind('\n').map_or(0, |i| i + 1);
    let column = text[start..].chars().count() + 1;
    (line as u32, column as u32)
}

/// Every diagnostic names `SOURCE:line:col` with a line of `text` and a
/// column on it (at most one past its last character), and a one-line
/// message.
fn check_diagnostics(text: &str, diagnostics: &[Diagnostic]) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').collect();
    for d in diagnostics {
        assert_eq!(d.file, SOURCE);
        assert!(!d.message.is_empty(), "empty message: {d:?}");
        assert!(!d.message.contains('\n'), "message of two lines: {d:?}");
        let shown = d.to_string();
        let prefix = format!("{SOURCE}:{}:{}: ", d.line, d.column);
        assert!(shown.starts_with(&prefix), "{shown:?} is not file:line:col");
        assert!(d.line >= 1 && d.column >= 1, "{d:?}");
        let line = lines
            .get(d.line as usize - 1)
            .unwrap_or_else(|| panic!("line {} of {}: {d:?}", d.line, lines.len()));
        let width = line.strip_suffix('\r').unwrap_or(line).chars().count() as u32;
        assert!(
            d.column <= width + 1,
            "column {} of {width}: {d:?}",
            d.column
        );
        assert!(
            d.record_line >= 1 && d.record_line <= d.line.max(d.record_line),
            "{d:?}"
        );
    }
}

// ---------------------------------------------------------------- journal

/// The journal's payload decoder.
pub fn journal_decode(data: &[u8]) {
    let Ok(rec) = record::decode(data) else {
        return;
    };
    let mut again = Vec::new();
    match &rec {
        Record::Out(i) | Record::Instance(i) => {
            let n = &i.names;
            for s in [n.feature, n.user, n.host, n.display, n.handle] {
                assert!(inside(data, s.as_bytes()), "{s:?} is not inside the input");
            }
            let tag = data[0];
            record::encode_instance(&mut again, tag, i);
            // `renewed` is any non-zero byte; the encoder writes 1.
            const OFF_RENEWED: usize = 45;
            if let Some(b) = again.get_mut(OFF_RENEWED) {
                if *b == 1 {
                    *b = data[OFF_RENEWED];
                }
            }
        }
        Record::In { id, at_ms } => record::encode_in(&mut again, *id, *at_ms),
        Record::Tombstone { id, at_ms } => record::encode_tombstone(&mut again, *id, *at_ms),
        Record::End {
            instances,
            tombstones,
        } => record::encode_end(&mut again, *instances, *tombstones),
        Record::Reconcile(r) => {
            for s in [r.id, r.feature, r.handle] {
                assert!(inside(data, s.as_bytes()), "{s:?} is not inside the input");
            }
            record::encode_reconcile(&mut again, r);
        }
    }
    assert_eq!(again, data, "{rec:?} does not re-encode to its bytes");
}

/// True if `part` is a sub-slice of `whole` (an empty slice anywhere in or
/// at the end of it).
fn inside(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

/// The journal's frame scanner. The first byte chooses `first_seq`
/// (even: none; odd: the next 8 bytes, little-endian), the rest is scanned.
pub fn journal_scan(data: &[u8]) {
    let (first_seq, bytes) = match data.split_first() {
        Some((&b, rest)) if b % 2 == 1 && rest.len() >= 8 => {
            let mut s = [0u8; 8];
            s.copy_from_slice(&rest[..8]);
            (Some(u64::from_le_bytes(s)), &rest[8..])
        }
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    let scan = record::scan(bytes, first_seq);
    assert_eq!(scan.good_len + scan.dropped_bytes, bytes.len());
    assert_eq!(scan.stop.is_none(), scan.dropped_bytes == 0, "{scan:?}");
    // The accepted frames tile bytes[..good_len], each sound.
    let mut at = 0;
    let mut want = first_seq;
    let mut rebuilt = Vec::with_capacity(scan.good_len);
    for (seq, r) in &scan.frames {
        assert_eq!(
            r.start,
            at + record::FRAME_HEADER,
            "frames are not contiguous"
        );
        assert!(r.end <= scan.good_len, "frame past the good prefix");
        let h = &bytes[at..r.start];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let payload = &bytes[r.clone()];
        assert_eq!(len, payload.len());
        assert!(len > 0 && len <= record::MAX_PAYLOAD);
        assert_eq!(
            crc32c::crc32c_append(crc32c::crc32c(&h[8..16]), payload),
            crc,
            "scan accepted a frame whose checksum is wrong"
        );
        assert_eq!(&h[8..16], &seq.to_le_bytes());
        if let Some(w) = want {
            assert_eq!(*seq, w, "sequence broken");
        }
        want = seq.checked_add(1);
        assert!(
            record::decode(payload).is_ok(),
            "accepted an undecodable payload"
        );
        record::frame(&mut rebuilt, *seq, payload);
        at = r.end;
    }
    assert_eq!(at, scan.good_len);
    assert_eq!(
        rebuilt,
        &bytes[..at],
        "re-framing the accepted frames differs"
    );
    // Why it stopped must be true of the bytes at good_len.
    let rest = &bytes[at..];
    match scan.stop {
        None => {}
        Some(Stop::Torn) => {
            let len = rest
                .get(..4)
                .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize);
            assert!(
                rest.len() < record::FRAME_HEADER
                    || len.is_some_and(|l| rest.len() < record::FRAME_HEADER + l),
                "Torn with a whole frame left"
            );
        }
        Some(Stop::BadLength(n)) => {
            assert_eq!(rest.get(..4), Some(&n.to_le_bytes()[..]));
            assert!(n == 0 || n as usize > record::MAX_PAYLOAD);
        }
        Some(Stop::BadChecksum) => {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            let payload = &rest[record::FRAME_HEADER..record::FRAME_HEADER + len];
            assert_ne!(
                crc32c::crc32c_append(crc32c::crc32c(&rest[8..16]), payload),
                crc
            );
        }
        Some(Stop::BadSequence { want: w, got }) => {
            assert_eq!(Some(w), want);
            assert_ne!(w, got);
        }
        Some(Stop::BadPayload(e)) => {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let payload = &rest[record::FRAME_HEADER..record::FRAME_HEADER + len];
            assert_eq!(record::decode(payload).err(), Some(e));
        }
    }
    // The good prefix scans clean by itself, to the same frames.
    let prefix = record::scan(&bytes[..at], first_seq);
    assert_eq!(prefix.stop, None);
    assert_eq!(prefix.frames, scan.frames);
}

/// A directory of this process's own for state-dir targets, emptied.
fn scratch_dir() -> PathBuf {
    let base = std::env::var_os("TALLY_FUZZ_TMP")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("tally-fuzz-{}", std::process::id()));
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).expect("create the scratch state dir");
    dir
}

/// Runs `f` on a file holding `data` in the scratch dir.
fn with_file(data: &[u8], f: impl FnOnce(&Path)) {
    let dir = scratch_dir();
    let path = dir.join("input");
    std::fs::write(&path, data).expect("write the input file");
    f(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kinds of file a `journal_recover` input writes.
const FILE_KINDS: u8 = 4;

/// Recovery of a whole state dir. The input is a list of files, each
/// `kind u8, gen u8, len u16 LE, bytes`: kind % 4 is a snapshot, a segment,
/// an unfinished snapshot (`.tmp`) or a file of another name; gen % 4 its
/// generation. A file given twice is written twice (the last wins).
pub fn journal_recover(data: &[u8]) {
    let dir = scratch_dir();
    let mut rest = data;
    let mut max_gen = 0u64;
    let mut total = 0u64;
    let mut tmp = Vec::new();
    while rest.len() >= 4 {
        let (kind, gen) = (rest[0] % FILE_KINDS, u64::from(rest[1] % 4));
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let bytes = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let path = match kind {
            0 => files::snapshot_path(&dir, gen),
            1 => files::segment_path(&dir, gen),
            2 => {
                let p = files::snapshot_path(&dir, gen).with_extension("tmp");
                tmp.push(p.clone());
                p
            }
            _ => dir.join(format!("notes-{gen}.txt")),
        };
        if kind < 2 {
            max_gen = max_gen.max(gen);
        }
        total += bytes.len() as u64;
        std::fs::write(&path, bytes).expect("write a state file");
    }
    if let Ok(rec) = files::recover(&dir, false) {
        assert!(
            rec.next_gen > max_gen,
            "next generation {} reuses one",
            rec.next_gen
        );
        assert!(rec.dropped_bytes <= total);
        for (id, payload) in &rec.state.live {
            match record::decode(payload) {
                Ok(Record::Instance(i)) => assert_eq!(i.id, *id, "live instance under another id"),
                other => panic!("restored a live entry that is no instance: {other:?}"),
            }
        }
        for p in &tmp {
            assert!(
                !p.exists(),
                "unfinished snapshot {} left behind",
                p.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One journaled event of a [`journal_replay`] input.
#[derive(Debug, Arbitrary)]
enum Op {
    /// A grant or renewal.
    Out {
        id: u8,
        at: u16,
        linger: Option<u16>,
        renewed: bool,
        count: u8,
        name: u8,
    },
    /// A release.
    In { id: u8, at: u16 },
    /// A snapshot and a new segment (as at a restart or after
    /// `--snapshot-every-kib`).
    NextGeneration,
}

/// A whole journaled history for [`journal_replay`].
#[derive(Debug, Arbitrary)]
struct History {
    /// Whether the first generation has a snapshot (a run always writes one;
    /// a dir from before snapshots existed does not).
    first_snapshot: bool,
    ops: Vec<Op>,
    /// Bytes cut from the end of the last segment (a torn write), modulo its
    /// frame bytes + 1.
    cut: u16,
}

/// Names for the instances' strings, some multi-byte.
const NAMES: [&str; 4] = ["MPM_ADV_RC", "USER15", "GENE-VM-2K3", "Ünïcødé-名前"];

/// Write, tear and recover a journaled history: recovery restores exactly
/// what the records written whole say.
pub fn journal_replay(data: &[u8]) {
    let Ok(h) = History::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let dir = scratch_dir();
    let mut gen = 1u64;
    let mut seq = 0u64;
    let mut state = State::default();
    if h.first_snapshot {
        write(
            &files::snapshot_path(&dir, gen),
            &files::encode_snapshot(gen, &state),
        );
    }
    let mut segment = Vec::new();
    record::file_header(&mut segment, record::SEGMENT_MAGIC, gen);
    // (end offset in `segment`, state after that frame) for the last one.
    let mut after: Vec<(usize, State)> = vec![(segment.len(), state.clone())];
    let mut payload = Vec::new();
    for op in &h.ops {
        payload.clear();
        match *op {
            Op::Out {
                id,
                at,
                linger,
                renewed,
                count,
                name,
            } => {
                let at_ms = 1_700_000_000_000 + u64::from(at);
                let n = |k: u8| NAMES[usize::from(name.wrapping_add(k)) % NAMES.len()];
                record::encode_instance(
                    &mut payload,
                    record::TAG_OUT,
                    &Instance {
                        id: u64::from(id % 16),
                        at_ms,
                        linger_ms: linger.map_or(0, u64::from),
                        deadline_ms: linger.map(|l| at_ms + u64::from(l)),
                        count: u32::from(count),
                        version: u64::from(name) * 1_000_000_000,
                        renewed,
                        names: tally_core::engine::Names {
                            feature: n(0),
                            user: n(1),
                            host: n(2),
                            display: if name % 3 == 0 { "" } else { n(3) },
                            handle: n(name / 4),
                        },
                    },
                );
            }
            Op::In { id, at } => record::encode_in(
                &mut payload,
                u64::from(id % 16),
                1_700_000_000_000 + u64::from(at),
            ),
            Op::NextGeneration => {
                write(&files::segment_path(&dir, gen), &segment);
                gen += 1;
                write(
                    &files::snapshot_path(&dir, gen),
                    &files::encode_snapshot(gen, &state),
                );
                segment.clear();
                record::file_header(&mut segment, record::SEGMENT_MAGIC, gen);
                after = vec![(segment.len(), state.clone())];
                continue;
            }
        }
        let rec = record::decode(&payload).expect("the encoder's payload decodes");
        state.apply(&rec, &payload);
        record::frame(&mut segment, seq, &payload);
        seq += 1;
        after.push((segment.len(), state.clone()));
    }
    // Tear the last segment inside its frames (its header stays whole).
    let frames = segment.len() - record::FILE_HEADER;
    let cut = usize::from(h.cut) % (frames + 1);
    let kept = segment.len() - cut;
    write(&files::segment_path(&dir, gen), &segment[..kept]);
    let want = after
        .iter()
        .rev()
        .find(|(end, _)| *end <= kept)
        .map(|(_, s)| s)
        .expect("the header is always kept");
    let got = files::recover(&dir, false).unwrap_or_else(|e| panic!("recovery refused: {e}"));
    assert_eq!(
        &got.state, want,
        "recovered state differs (cut {cut} of {frames})"
    );
    assert_eq!(got.next_gen, gen + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write a state file");
}

// ------------------------------------------------------------------ seeds

/// The repository root (this crate lives in `fuzz/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}

/// The seed corpus of `target`: inputs taken from the repository (test data,
/// docs examples) or made by the journal's own encoder. Named, for files.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = repo_root();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| {
        if !out.iter().any(|(_, b)| *b == bytes) {
            out.push((name, bytes));
        }
    };
    match target {
        "protocol" => {
            for file in [
                "docs/protocol.md",
                "docs/operations.md",
                "README.md",
                "server/src/protocol.rs",
                "server/tests/tallyd.rs",
                "server/tests/queue.rs",
                "server/tests/durability.rs",
            ] {
                for (i, line) in request_lines(&read(&root.join(file)))
                    .into_iter()
                    .enumerate()
                {
                    add(format!("{}-{i}", flat(file)), line.into_bytes());
                }
            }
        }
        "license" | "options" => {
            let (dir, ext, doc) = if target == "license" {
                ("core/tests/data", "lic", "docs/license-file.md")
            } else {
                ("core/tests", "", "docs/options-file.md")
            };
            if !ext.is_empty() {
                for p in list(&root.join(dir), ext) {
                    add(flat(&p.display().to_string()), read_bytes(&p));
                }
            }
            for (i, block) in fenced_blocks(&read(&root.join(doc)))
                .into_iter()
                .enumerate()
            {
                add(format!("{}-{i}", flat(doc)), block.into_bytes());
            }
            let (tests, keywords) = if target == "license" {
                (
                    [
                        "core/tests/license_corpus.rs",
                        "core/src/license/parse/tests.rs",
                        "core/tests/model.rs",
                        "client/tests/ctl_check_license.rs",
                    ],
                    LICENSE_KEYWORDS,
                )
            } else {
                (
                    [
                        "core/tests/options.rs",
                        "core/src/options/tests.rs",
                        "core/tests/model.rs",
                        "server/tests/options.rs",
                    ],
                    OPTIONS_KEYWORDS,
                )
            };
            for file in tests {
                for (i, s) in string_literals(&read(&root.join(file)), keywords)
                    .into_iter()
                    .enumerate()
                {
                    add(format!("{}-{i}", flat(file)), s.into_bytes());
                }
            }
            if target == "license" {
                for (i, s) in string_literals(&read(&root.join("server/src/demo.rs")), keywords)
                    .into_iter()
                    .enumerate()
                {
                    add(format!("demo-{i}"), s.into_bytes());
                }
            }
        }
        "journal_decode" => {
            for (i, p) in sample_payloads().into_iter().enumerate() {
                add(format!("payload-{i}"), p);
            }
        }
        "journal_scan" => {
            let mut all = vec![1u8];
            all.extend_from_slice(&7u64.to_le_bytes());
            for (i, p) in sample_payloads().into_iter().enumerate() {
                let mut one = vec![0u8];
                record::frame(&mut one, 3, &p);
                add(format!("frame-{i}"), one);
                record::frame(&mut all, 7 + i as u64, &p);
            }
            add("frames".into(), all);
        }
        "journal_recover" => {
            let mut state = State::default();
            for p in sample_payloads() {
                if let Ok(r) = record::decode(&p) {
                    state.apply(&r, &p);
                }
            }
            let snapshot = files::encode_snapshot(1, &state);
            let mut segment = Vec::new();
            record::file_header(&mut segment, record::SEGMENT_MAGIC, 1);
            for (i, p) in sample_payloads().into_iter().enumerate() {
                record::frame(&mut segment, i as u64, &p);
            }
            let entry = |kind: u8, gen: u8, bytes: &[u8]| {
                let mut e = vec![kind, gen];
                e.extend_from_slice(&(bytes.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
                e.extend_from_slice(bytes);
                e
            };
            add(
                "snapshot+segment".into(),
                [entry(0, 1, &snapshot), entry(1, 1, &segment)].concat(),
            );
            add("segment".into(), entry(1, 1, &segment));
            add(
                "old+new".into(),
                [
                    entry(1, 0, &segment),
                    entry(0, 1, &snapshot),
                    entry(1, 1, &segment),
                    entry(2, 2, &snapshot),
                ]
                .concat(),
            );
        }
        "journal_replay" => {
            add("empty".into(), Vec::new());
            add("few".into(), (0u8..64).collect());
            add(
                "many".into(),
                (0u8..=255).cycle().step_by(7).take(1024).collect(),
            );
            add("zeros".into(), vec![0; 256]);
            add("ones".into(), vec![0xff; 256]);
        }
        _ => {}
    }
    out
}

/// Record keywords of license files, for picking test fixtures as seeds.
const LICENSE_KEYWORDS: &[&str] = &[
    "SERVER ",
    "VENDOR ",
    "DAEMON ",
    "USE_SERVER",
    "FEATURE ",
    "INCREMENT ",
    "PACKAGE ",
    "UPGRADE ",
];

/// Keywords of options files, likewise.
const OPTIONS_KEYWORDS: &[&str] = &[
    "INCLUDE",
    "EXCLUDE",
    "RESERVE ",
    "MAX ",
    "MAX_OVERDRAFT ",
    "GROUP ",
    "USER_GROUP ",
    "HOST_GROUP ",
    "GROUPCASEINSENSITIVE",
    "TIMEOUT",
    "LINGER ",
    "NOLOG ",
    "DEBUGLOG ",
    "REPORTLOG ",
];

/// Words of the protocol's keyword sets, for an AFL dictionary.
pub fn dictionary(target: &str) -> &'static [&'static str] {
    match target {
        "protocol" => &[
            "CHECKOUT",
            "CHECKIN",
            "STATUS",
            "PING",
            "QUIT",
            "AUTH",
            "REMOVE",
            "REMOVE_HANDLE",
            "BORROW_RETURN",
            "REREAD",
            "DOWN",
            "REOPEN_LOG",
            " ",
            "version=",
            "count=",
            "linger=",
            "display=",
            "wait=",
            "borrow=",
            ".",
            "\r",
            "4294967296",
            "18446744073709551615",
        ],
        "license" => &[
            "SERVER",
            "VENDOR",
            "DAEMON",
            "USE_SERVER",
            "FEATURE",
            "INCREMENT",
            "PACKAGE",
            "UPGRADE",
            "permanent",
            "uncounted",
            "HOSTID=",
            "PORT=",
            "OPTIONS=",
            "VENDOR_STRING=",
            "DUP_GROUP=",
            "OVERDRAFT=",
            "START=",
            "SIGN=",
            "ISSUER=",
            "NOTICE=",
            "COMPONENTS=",
            "01-jan-2099",
            "0-jan-0",
            "\\\n",
            "\"",
            "#",
            "=",
            "4294967295",
            "\r\n",
        ],
        "options" => &[
            "INCLUDE",
            "EXCLUDE",
            "INCLUDEALL",
            "EXCLUDEALL",
            "RESERVE",
            "MAX",
            "GROUP",
            "USER_GROUP",
            "HOST_GROUP",
            "GROUPCASEINSENSITIVE",
            "ON",
            "OFF",
            "MAX_OVERDRAFT",
            "TIMEOUT",
            "TIMEOUTALL",
            "LINGER",
            "NOLOG",
            "DEBUGLOG",
            "REPORTLOG",
            "USER",
            "HOST",
            "DISPLAY",
            "INTERNET",
            "PROJECT",
            "VERSION=",
            "KEY=",
            "SIGN=",
            "*",
            "\\\n",
            "\"",
            "#",
            ":",
            "4294967295",
        ],
        _ => &[],
    }
}

/// Instance, release, tombstone and end payloads, as the journal writes them.
fn sample_payloads() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (tag, renewed, deadline, display) in [
        (record::TAG_OUT, false, Some(1_700_000_060_000), "console"),
        (record::TAG_OUT, true, None, ""),
        (record::TAG_INSTANCE, false, Some(1_700_000_060_000), ":0"),
    ] {
        let mut p = Vec::new();
        record::encode_instance(
            &mut p,
            tag,
            &Instance {
                id: 7,
                at_ms: 1_700_000_000_000,
                linger_ms: 60_000,
                deadline_ms: deadline,
                count: 2,
                version: 1_000_000_000,
                renewed,
                names: tally_core::engine::Names {
                    feature: "MPM_ADV_RC",
                    user: "USER15",
                    host: "GENE-VM-2K3",
                    display,
                    handle: "ec26edf8",
                },
            },
        );
        out.push(p);
    }
    let mut p = Vec::new();
    record::encode_in(&mut p, 7, 1_700_000_001_000);
    out.push(p);
    let mut p = Vec::new();
    record::encode_tombstone(&mut p, 8, 1_700_000_001_000);
    out.push(p);
    let mut p = Vec::new();
    record::encode_end(&mut p, 1, 1);
    out.push(p);
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn list(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// `a/b.md` -> `a_b.md`, for seed file names.
fn flat(path: &str) -> String {
    let rel = path
        .strip_prefix(&repo_root().display().to_string())
        .unwrap_or(path);
    rel.trim_start_matches('/').replace('/', "_")
}

/// The request lines quoted in `text`: from each verb to the end of its
/// quote (`"` or a backtick) or line.
fn request_lines(text: &str) -> Vec<String> {
    const VERBS: [&str; 12] = [
        "CHECKOUT ",
        "CHECKIN ",
        "STATUS",
        "PING",
        "QUIT",
        "AUTH ",
        "REMOVE ",
        "REMOVE_HANDLE ",
        "BORROW_RETURN ",
        "REREAD",
        "DOWN",
        "REOPEN_LOG",
    ];
    let mut out = Vec::new();
    for line in text.lines() {
        for verb in VERBS {
            let mut from = 0;
            while let Some(i) = line[from..].find(verb) {
                let start = from + i;
                let tail = &line[start..];
                let end = tail.find(['"', '`', '\\']).unwrap_or(tail.len());
                let req = tail[..end].trim_end().to_string();
                if !out.contains(&req) {
                    out.push(req);
                }
                from = start + verb.len();
            }
        }
    }
    out
}

/// The contents of each fenced code block in a Markdown text.
fn fenced_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => current = Some(String::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

/// The contents of each `r#"..."#` literal, and of each `"..."` literal
/// that spans lines or starts with one of `keywords` (case-insensitive), in
/// Rust source (test fixtures). Escapes `\n`, `\t`, `\"`, `\\` and line
/// continuations are undone; others are kept as written.
fn string_literals(text: &str, keywords: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("r#\"") {
        let body = &rest[i + 3..];
        let Some(end) = body.find("\"#") else { break };
        out.push(body[..end].to_string());
        rest = &body[end + 2..];
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Skip raw strings (done above), char literals like '"' and comments.
        if bytes[i..].starts_with(b"r#\"") {
            i = text[i + 3..]
                .find("\"#")
                .map_or(bytes.len(), |e| i + 3 + e + 2);
            continue;
        }
        if bytes[i..].starts_with(b"'\"'") || bytes[i..].starts_with(b"//") {
            i = text[i..].find('\n').map_or(bytes.len(), |e| i + e + 1);
            continue;
        }
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let mut lit = String::new();
        let mut chars = text[i + 1..].char_indices();
        let mut end = bytes.len();
        while let Some((j, c)) = chars.next() {
            match c {
                '"' => {
                    end = i + 1 + j + 1;
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => lit.push('\n'),
                    Some((_, 't')) => lit.push('\t'),
                    Some((_, 'r')) => lit.push('\r'),
                    Some((_, '\n')) => {
                        // A continuation: the next line's leading blanks go.
                        let rest = chars.as_str();
                        let skip = rest.len() - rest.trim_start().len();
                        for _ in 0..rest[..skip].chars().count() {
                            chars.next();
                        }
                    }
                    Some((_, c)) if c == '"' || c == '\\' || c == '\'' => lit.push(c),
                    Some((_, c)) => {
                        lit.push('\\');
                        lit.push(c);
                    }
                    None => {}
                },
                c => lit.push(c),
            }
        }
        let upper = lit.trim_start().to_ascii_uppercase();
        if (lit.contains('\n') && lit.len() > 8) || keywords.iter().any(|k| upper.starts_with(k)) {
            out.push(lit);
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostic(line: u32, column: u32) -> Diagnostic {
        Diagnostic {
            file: SOURCE.into(),
            line,
            column,
            message: "bad".into(),
            record_line: 1,
        }
    }

    #[test]
    fn diagnostics_inside_the_text_pass() {
        check_diagnostics("FEATURE f\nx\n", &[diagnostic(1, 10), diagnostic(2, 1)]);
    }

    #[test]
    #[should_panic(expected = "column 11 of 9")]
    fn a_column_past_the_line_is_caught() {
        check_diagnostics("FEATURE f\n", &[diagnostic(1, 11)]);
    }

    #[test]
    #[should_panic(expected = "line 3 of 2")]
    fn a_line_past_the_text_is_caught() {
        check_diagnostics("FEATURE f\n", &[diagnostic(3, 1)]);
    }

    #[test]
    fn string_literals_undo_escapes() {
        let src = "let a = \"FEATURE f \\\"v\\\" 1 \\\n      permanent 1\";\nlet b = \"no\";";
        assert_eq!(
            string_literals(src, LICENSE_KEYWORDS),
            ["FEATURE f \"v\" 1 permanent 1"]
        );
    }

    #[test]
    fn request_lines_are_cut_at_their_quote() {
        assert_eq!(
            request_lines("send `CHECKOUT F u h x count=2` then \"PING\"."),
            ["CHECKOUT F u h x count=2", "PING"]
        );
    }
}
