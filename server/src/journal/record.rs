//! Journal records: what is written, and how a file of them is read back.
//!
//! A file (segment or snapshot) is a 16-byte header (8-byte magic, then the
//! file's generation as a little-endian `u64`) followed by frames:
//!
//! ```text
//! +---------+---------+---------+----------------------+
//! | len u32 | crc u32 | seq u64 | payload (len bytes)  |
//! +---------+---------+---------+----------------------+
//! ```
//!
//! All integers little-endian. `crc` is CRC-32C of the `seq` bytes and the
//! payload. Sequence numbers go up by one from frame to frame, across
//! segments. [`scan`] stops at the first frame that is short, too long,
//! fails its checksum or breaks the sequence ([`Scan`] says how much is
//! left). [`survey`] goes on: it resynchronises on the next intact frame
//! and reports each damaged region ([`Damage`]), which is how recovery
//! tells a torn tail (the end of an interrupted append,
//! [`Survey::is_torn_tail`]) from damage anywhere else, and how
//! `--salvage-journal` restores every intact record around the damage.
//!
//! Payloads (first byte is the tag):
//!
//! - [`TAG_OUT`] / [`TAG_INSTANCE`]: an instance, fixed fields then five
//!   strings (feature, user, host, display, handle), each a `u16` length and
//!   UTF-8 bytes. In a segment, `OUT` is a grant or a renewal (`at` = time of
//!   the checkout); in a snapshot, `INSTANCE` is a live instance (`at` = its
//!   first checkout). Layout: tag u8, id u64, at u64, linger u64, deadline
//!   u64 (0 = none), count u32, version u64, renewed u8, strings. A
//!   borrowed instance's linger has its top bit set
//!   (`tally_core::engine::BORROWED`, far above any linger): the layout is
//!   unchanged, journals written before borrowing read as before, and a
//!   tallyd older than borrowing restores a borrow as a linger of that
//!   (huge) length, still checked in at its deadline. In a snapshot,
//!   `renewed` = 1 says the names are the table's shortened copy (a scan
//!   met the instance before its record reached the journal): the next
//!   OUT of the id, which follows after the snapshot's mark, brings the
//!   full ones ([`names_incomplete`]).
//! - [`TAG_IN`]: a release: tag, id u64, at u64.
//! - [`TAG_TOMBSTONE`] (snapshots only): a recent release, kept so a
//!   renewal record that was written after it cannot bring it back.
//! - [`TAG_END`] (snapshots only): tag, instances u64, tombstones u64; a
//!   snapshot without it is incomplete.
//! - [`TAG_RECONCILE`] (segments and snapshots; added with RECONCILE): an
//!   admission id a RECONCILE recorded: tag, format u8
//!   ([`RECONCILE_FORMAT`]), instance u64 (journal id of the instance it
//!   created, 0 = none: it held nothing, or that instance is gone), at u64
//!   (when it was reconciled), then three strings as above (admission id,
//!   feature, handle). In a segment it follows the OUT of its instance. A
//!   snapshot keeps one per admission id still remembered; END does not
//!   count them. Journals without RECONCILE records are read as before; a
//!   tallyd older than RECONCILE refuses a journal that has one (unknown
//!   tag).
//!
//! The `id` is the server's journal id of the instance (its engine id in
//! the run that wrote the record); each run starts from a snapshot written
//! with its own ids, so ids never cross runs.

use std::fmt;

use tally_core::engine::Names;

/// Bytes of a frame header (len, crc, seq).
pub const FRAME_HEADER: usize = 16;

/// Bytes of a file header (magic, generation).
pub const FILE_HEADER: usize = 16;

/// Largest payload accepted: five strings of a request line fit well within.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Magic of a journal segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"TALLYJ01";

/// Magic of a snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"TALLYS01";

/// Grant or renewal (segments).
pub const TAG_OUT: u8 = 1;
/// Release (segments).
pub const TAG_IN: u8 = 2;
/// A live instance (snapshots).
pub const TAG_INSTANCE: u8 = 3;
/// A recent release (snapshots).
pub const TAG_TOMBSTONE: u8 = 4;
/// End of a snapshot.
pub const TAG_END: u8 = 5;
/// A reconciled admission id (segments and snapshots).
pub const TAG_RECONCILE: u8 = 6;

/// The layout version of [`TAG_RECONCILE`] payloads written now.
pub const RECONCILE_FORMAT: u8 = 1;

/// Offset of the fixed fields in an instance payload.
const OFF_ID: usize = 1;
const OFF_AT: usize = 9;
const OFF_LINGER: usize = 17;
const OFF_DEADLINE: usize = 25;
const OFF_COUNT: usize = 33;
const OFF_VERSION: usize = 37;
const OFF_RENEWED: usize = 45;
const OFF_STRINGS: usize = 46;

/// An instance as the journal knows it (borrowed from a payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance<'a> {
    /// Journal id.
    pub id: u64,
    /// Checkout time (OUT) or first checkout (INSTANCE), Unix ms.
    pub at_ms: u64,
    /// Linger, ms; with `tally_core::engine::BORROWED` set, a borrow's.
    pub linger_ms: u64,
    /// Deadline, Unix ms; `None` = held until check-in.
    pub deadline_ms: Option<u64>,
    /// Licenses held.
    pub count: u32,
    /// Lowest version the client asked for (scaled).
    pub version: u64,
    /// A renewal of an instance already out (OUT only).
    pub renewed: bool,
    /// The feature and the holder's names.
    pub names: Names<&'a str>,
}

/// A reconciled admission id as the journal knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled<'a> {
    /// Journal id of the instance it created (0: none).
    pub instance: u64,
    /// When it was reconciled, Unix ms.
    pub at_ms: u64,
    /// The client's admission id.
    pub id: &'a str,
    /// Feature.
    pub feature: &'a str,
    /// Client handle.
    pub handle: &'a str,
}

/// A decoded payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A reconciled admission id.
    Reconcile(Reconciled<'a>),
    /// A grant or renewal.
    Out(Instance<'a>),
    /// A release.
    In {
        /// Journal id.
        id: u64,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// A live instance in a snapshot.
    Instance(Instance<'a>),
    /// A recent release in a snapshot.
    Tombstone {
        /// Journal id.
        id: u64,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// The end of a snapshot.
    End {
        /// Instances written before it.
        instances: u64,
        /// Tombstones written before it.
        tombstones: u64,
    },
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its fields.
    #[error("record is truncated")]
    Short,
    /// Unknown first byte.
    #[error("unknown record tag {0}")]
    Tag(u8),
    /// A string is not UTF-8.
    #[error("record text is not UTF-8")]
    Utf8,
    /// Bytes left after the last field.
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
    /// A RECONCILE record of a layout this tallyd does not know.
    #[error("RECONCILE record of unknown format {0}")]
    Format(u8),
}

/// Appends an instance payload (no length prefix) to `out`.
pub fn encode_instance(out: &mut Vec<u8>, tag: u8, i: &Instance<'_>) {
    out.push(tag);
    out.extend_from_slice(&i.id.to_le_bytes());
    out.extend_from_slice(&i.at_ms.to_le_bytes());
    out.extend_from_slice(&i.linger_ms.to_le_bytes());
    out.extend_from_slice(&i.deadline_ms.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&i.count.to_le_bytes());
    out.extend_from_slice(&i.version.to_le_bytes());
    out.push(u8::from(i.renewed));
    let n = &i.names;
    for s in [n.feature, n.user, n.host, n.display, n.handle] {
        let s = clip(s);
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
}

/// Appends a RECONCILE payload to `out`.
pub fn encode_reconcile(out: &mut Vec<u8>, r: &Reconciled<'_>) {
    out.push(TAG_RECONCILE);
    out.push(RECONCILE_FORMAT);
    out.extend_from_slice(&r.instance.to_le_bytes());
    out.extend_from_slice(&r.at_ms.to_le_bytes());
    for s in [r.id, r.feature, r.handle] {
        let s = clip(s);
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
}

/// Rewrites the instance of an encoded RECONCILE payload in place.
pub fn patch_reconcile(payload: &mut [u8], instance: u64) {
    if payload.len() >= 10 && payload[0] == TAG_RECONCILE {
        payload[2..10].copy_from_slice(&instance.to_le_bytes());
    }
}

/// Appends a release payload to `out`.
pub fn encode_in(out: &mut Vec<u8>, id: u64, at_ms: u64) {
    out.push(TAG_IN);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&at_ms.to_le_bytes());
}

/// Appends a tombstone payload to `out`.
pub fn encode_tombstone(out: &mut Vec<u8>, id: u64, at_ms: u64) {
    out.push(TAG_TOMBSTONE);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&at_ms.to_le_bytes());
}

/// Appends a snapshot end payload to `out`.
pub fn encode_end(out: &mut Vec<u8>, instances: u64, tombstones: u64) {
    out.push(TAG_END);
    out.extend_from_slice(&instances.to_le_bytes());
    out.extend_from_slice(&tombstones.to_le_bytes());
}

/// `s` cut to at most `u16::MAX` bytes on a character boundary (request
/// lines are far shorter; this only keeps the length field honest).
fn clip(s: &str) -> &str {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, DecodeError> {
    let bytes = b.get(at..at + 8).ok_or(DecodeError::Short)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(bytes);
    Ok(u64::from_le_bytes(a))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    let bytes = b.get(at..at + 4).ok_or(DecodeError::Short)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(a))
}

/// Decodes one payload.
pub fn decode(b: &[u8]) -> Result<Record<'_>, DecodeError> {
    let tag = *b.first().ok_or(DecodeError::Short)?;
    let fixed = |len: usize| {
        if b.len() < len {
            Err(DecodeError::Short)
        } else if b.len() > len {
            Err(DecodeError::Trailing(b.len() - len))
        } else {
            Ok(())
        }
    };
    match tag {
        TAG_OUT | TAG_INSTANCE => {
            let i = decode_instance(b)?;
            Ok(if tag == TAG_OUT {
                Record::Out(i)
            } else {
                Record::Instance(i)
            })
        }
        TAG_IN | TAG_TOMBSTONE => {
            fixed(17)?;
            let (id, at_ms) = (u64_at(b, 1)?, u64_at(b, 9)?);
            Ok(if tag == TAG_IN {
                Record::In { id, at_ms }
            } else {
                Record::Tombstone { id, at_ms }
            })
        }
        TAG_END => {
            fixed(17)?;
            Ok(Record::End {
                instances: u64_at(b, 1)?,
                tombstones: u64_at(b, 9)?,
            })
        }
        TAG_RECONCILE => decode_reconcile(b),
        t => Err(DecodeError::Tag(t)),
    }
}

fn decode_reconcile(b: &[u8]) -> Result<Record<'_>, DecodeError> {
    let format = *b.get(1).ok_or(DecodeError::Short)?;
    if format != RECONCILE_FORMAT {
        return Err(DecodeError::Format(format));
    }
    let (instance, at_ms) = (u64_at(b, 2)?, u64_at(b, 10)?);
    let (strings, end) = strings_at::<3>(b, 18)?;
    if end != b.len() {
        return Err(DecodeError::Trailing(b.len() - end));
    }
    Ok(Record::Reconcile(Reconciled {
        instance,
        at_ms,
        id: strings[0],
        feature: strings[1],
        handle: strings[2],
    }))
}

/// `N` strings (each a `u16` length and UTF-8 bytes) from `at`; and where
/// they end.
fn strings_at<const N: usize>(b: &[u8], mut at: usize) -> Result<([&str; N], usize), DecodeError> {
    let mut strings = [""; N];
    for s in &mut strings {
        let len_bytes = b.get(at..at + 2).ok_or(DecodeError::Short)?;
        let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
        let bytes = b.get(at + 2..at + 2 + len).ok_or(DecodeError::Short)?;
        *s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Utf8)?;
        at += 2 + len;
    }
    Ok((strings, at))
}

fn decode_instance(b: &[u8]) -> Result<Instance<'_>, DecodeError> {
    let deadline = u64_at(b, OFF_DEADLINE)?;
    let renewed = *b.get(OFF_RENEWED).ok_or(DecodeError::Short)? != 0;
    let mut at = OFF_STRINGS;
    let mut strings = [""; 5];
    for s in &mut strings {
        let len_bytes = b.get(at..at + 2).ok_or(DecodeError::Short)?;
        let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
        let bytes = b.get(at + 2..at + 2 + len).ok_or(DecodeError::Short)?;
        *s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Utf8)?;
        at += 2 + len;
    }
    if at != b.len() {
        return Err(DecodeError::Trailing(b.len() - at));
    }
    Ok(Instance {
        id: u64_at(b, OFF_ID)?,
        at_ms: u64_at(b, OFF_AT)?,
        linger_ms: u64_at(b, OFF_LINGER)?,
        deadline_ms: (deadline != 0).then_some(deadline),
        count: u32_at(b, OFF_COUNT)?,
        version: u64_at(b, OFF_VERSION)?,
        renewed,
        names: Names {
            feature: strings[0],
            user: strings[1],
            host: strings[2],
            display: strings[3],
            handle: strings[4],
        },
    })
}

/// Rewrites an encoded instance payload in place: new tag, linger and
/// deadline (for a renewal of an instance the journal already holds).
pub fn patch_instance(payload: &mut [u8], linger_ms: u64, deadline_ms: u64) {
    if payload.len() >= OFF_STRINGS {
        payload[OFF_LINGER..OFF_LINGER + 8].copy_from_slice(&linger_ms.to_le_bytes());
        payload[OFF_DEADLINE..OFF_DEADLINE + 8].copy_from_slice(&deadline_ms.to_le_bytes());
    }
}

/// Whether `payload` is an INSTANCE whose names are the table's shortened
/// copy (its `renewed` byte set, which an INSTANCE otherwise never has):
/// written by a snapshot scan that met an instance with names too long for
/// the table before the journal had its record. The OUT record that brings
/// the full names follows in a segment after the snapshot's mark.
pub fn names_incomplete(payload: &[u8]) -> bool {
    payload.first() == Some(&TAG_INSTANCE) && payload.get(OFF_RENEWED).is_some_and(|&b| b != 0)
}

/// The `at` field of an instance payload (INSTANCE: the first checkout).
pub fn at_of(payload: &[u8]) -> Option<u64> {
    u64_at(payload, OFF_AT).ok()
}

/// The `id` field of an instance payload, read without decoding the rest
/// (recovery sorts millions of them by their fixed fields).
pub fn id_of(payload: &[u8]) -> Option<u64> {
    u64_at(payload, OFF_ID).ok()
}

/// Turns an OUT payload into an INSTANCE payload with first checkout
/// `since_ms` (in place).
pub fn as_instance(payload: &mut [u8], since_ms: u64) {
    if payload.len() >= OFF_STRINGS {
        payload[0] = TAG_INSTANCE;
        payload[OFF_AT..OFF_AT + 8].copy_from_slice(&since_ms.to_le_bytes());
        payload[OFF_RENEWED] = 0;
    }
}

/// Appends one frame (header and payload) to `out`.
pub fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let seq_bytes = seq.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&seq_bytes), payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq_bytes);
    out.extend_from_slice(payload);
}

/// Appends a file header to `out`.
pub fn file_header(out: &mut Vec<u8>, magic: &[u8; 8], generation: u64) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&generation.to_le_bytes());
}

/// Why a scan stopped before the end of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Fewer bytes than a frame header or its payload: a torn write.
    Torn,
    /// A length beyond [`MAX_PAYLOAD`].
    BadLength(u32),
    /// The checksum does not match.
    BadChecksum,
    /// The sequence number is not the next one.
    BadSequence {
        /// Expected.
        want: u64,
        /// Found.
        got: u64,
    },
    /// The frame is sound but its payload does not decode.
    BadPayload(DecodeError),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Torn => write!(f, "torn write (frame cut short)"),
            Stop::BadLength(n) => write!(f, "impossible record length {n}"),
            Stop::BadChecksum => write!(f, "checksum mismatch"),
            Stop::BadSequence { want, got } => {
                write!(f, "sequence number {got} where {want} was expected")
            }
            Stop::BadPayload(e) => write!(f, "undecodable record: {e}"),
        }
    }
}

/// The good prefix of a run of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Each good frame: its sequence number and the payload's byte range.
    pub frames: Vec<(u64, std::ops::Range<usize>)>,
    /// Bytes of good frames (where a repaired file is cut).
    pub good_len: usize,
    /// Why the scan stopped early, if it did.
    pub stop: Option<Stop>,
    /// Bytes after `good_len`.
    pub dropped_bytes: usize,
}

/// The frame at `at` of `bytes`, if it is intact (length in range, whole,
/// checksum matching, payload decodable): its sequence number and the
/// payload's byte range.
pub fn frame_at(bytes: &[u8], at: usize) -> Result<(u64, std::ops::Range<usize>), Stop> {
    let h = bytes.get(at..at + FRAME_HEADER).ok_or(Stop::Torn)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if len as usize > MAX_PAYLOAD || len == 0 {
        return Err(Stop::BadLength(len));
    }
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let seq_bytes = &h[8..16];
    let start = at + FRAME_HEADER;
    let payload = bytes.get(start..start + len as usize).ok_or(Stop::Torn)?;
    if crc32c::crc32c_append(crc32c::crc32c(seq_bytes), payload) != crc {
        return Err(Stop::BadChecksum);
    }
    decode(payload).map_err(Stop::BadPayload)?;
    let mut s = [0u8; 8];
    s.copy_from_slice(seq_bytes);
    Ok((u64::from_le_bytes(s), start..start + len as usize))
}

/// Scans `bytes` (frames only, no file header) from the start. `first_seq`
/// is the sequence number the first frame must carry (`None`: any).
pub fn scan(bytes: &[u8], first_seq: Option<u64>) -> Scan {
    let mut frames = Vec::new();
    let mut at = 0;
    let mut want = first_seq;
    let stop = loop {
        if at == bytes.len() {
            break None;
        }
        let (seq, range) = match frame_at(bytes, at) {
            Ok(f) => f,
            Err(stop) => break Some(stop),
        };
        if let Some(w) = want {
            if seq != w {
                break Some(Stop::BadSequence { want: w, got: seq });
            }
        }
        want = Some(seq + 1);
        at = range.end;
        frames.push((seq, range));
    };
    Scan {
        frames,
        good_len: at,
        stop,
        dropped_bytes: bytes.len() - at,
    }
}

/// A region of a run of frames that holds no intact frame, or a gap in
/// the sequence numbers between two intact frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Offset of its first byte in the bytes surveyed.
    pub at: usize,
    /// Its length in bytes: up to the next intact frame or the end. 0 for
    /// a sequence gap between two intact frames (frames are missing).
    pub len: usize,
    /// Why the frame at `at` was refused.
    pub stop: Stop,
    /// Intact frames before it (an index into [`Survey::frames`]).
    pub frames_before: usize,
}

/// Every intact frame of a run of frames, resynchronised after damage, and
/// the damage between them.
///
/// Resynchronising: after a frame is refused, the next intact frame is
/// looked for at every following byte offset. A frame found there is
/// trusted by its checksum (CRC-32C over its sequence number and payload),
/// its length and its payload's decoding, and only if its sequence number
/// does not go back (a copy of older frames is part of the damage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Each intact frame: its sequence number and the payload's byte range.
    pub frames: Vec<(u64, std::ops::Range<usize>)>,
    /// Each damaged region, in file order.
    pub damage: Vec<Damage>,
}

/// Surveys `bytes` (frames only, no file header): every intact frame, and
/// where and why the others were refused. `first_seq` is the sequence
/// number the first frame should carry (`None`: any); a later one is a
/// gap, an earlier one is refused.
pub fn survey(bytes: &[u8], first_seq: Option<u64>) -> Survey {
    let mut out = Survey::default();
    let mut at = 0;
    let mut want = first_seq;
    let fits = |seq: u64, want: Option<u64>| want.map_or(true, |w| seq >= w);
    while at < bytes.len() {
        let stop = match frame_at(bytes, at) {
            Ok((seq, range)) if fits(seq, want) => {
                if let Some(w) = want.filter(|&w| seq > w) {
                    let after_damage = out
                        .damage
                        .last()
                        .is_some_and(|d| d.at + d.len == at && d.len > 0);
                    if !after_damage {
                        out.damage.push(Damage {
                            at,
                            len: 0,
                            stop: Stop::BadSequence { want: w, got: seq },
                            frames_before: out.frames.len(),
                        });
                    }
                }
                want = Some(seq + 1);
                at = range.end;
                out.frames.push((seq, range));
                continue;
            }
            Ok((seq, _)) => Stop::BadSequence {
                want: want.unwrap_or(0),
                got: seq,
            },
            Err(stop) => stop,
        };
        let next = (at + 1..bytes.len())
            .find(|&p| frame_at(bytes, p).is_ok_and(|(seq, _)| fits(seq, want)))
            .unwrap_or(bytes.len());
        out.damage.push(Damage {
            at,
            len: next - at,
            stop,
            frames_before: out.frames.len(),
        });
        at = next;
    }
    out
}

impl Survey {
    /// Whether the only damage is what a crash in the middle of an append
    /// leaves at the end of a file: one region reaching the end with no
    /// intact frame after it, which is either a frame cut short by the end
    /// of the bytes (and whose bytes present do not check out as a whole
    /// frame with a damaged length), or zero fill (a file system that grew
    /// the file before its data reached the disk).
    pub fn is_torn_tail(&self, bytes: &[u8]) -> bool {
        let [d] = self.damage.as_slice() else {
            return false;
        };
        if d.len == 0 || d.at + d.len != bytes.len() {
            return false;
        }
        let tail = &bytes[d.at..];
        tail.iter().all(|&b| b == 0) || (d.stop == Stop::Torn && !is_whole_frame(tail))
    }
}

/// Whether `tail` (from a frame's start to the end of the bytes) is a
/// whole frame but for its length field: a torn write never leaves bytes
/// whose checksum matches, a damaged length does.
fn is_whole_frame(tail: &[u8]) -> bool {
    let Some(h) = tail.get(..FRAME_HEADER) else {
        return false;
    };
    let payload = &tail[FRAME_HEADER..];
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    !payload.is_empty()
        && crc32c::crc32c_append(crc32c::crc32c(&h[8..16]), payload) == crc
        && decode(payload).is_ok()
}

#[cfg(test)]
mod tests;
