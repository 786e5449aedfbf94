//! Damage in the state files: how it is reported, and where a salvaged
//! file is kept.
//!
//! A report names the file, the byte offset of each damaged region, why
//! its first frame was refused, and what is intact before and after it
//! (count, byte range, sequence numbers), so an operator can judge a
//! salvage before running it. A damaged file is never deleted:
//! [`set_aside`] keeps it in `STATE_DIR/damaged/` before recovery's new
//! generation removes the old names.

use std::path::{Path, PathBuf};

use super::files::{sync_dir, JournalError};
use super::record::{Survey, FRAME_HEADER};

/// Subdirectory of the state dir where `--salvage-journal` sets damaged
/// files aside (as `<UTC time>-<name>`).
pub const DAMAGED_DIR: &str = "damaged";

/// Damage found in one state file.
#[derive(Debug, Clone)]
pub struct FileDamage {
    /// The file.
    pub path: PathBuf,
    /// Where, why, and what is readable around it (follows the path in a
    /// message: "is damaged at byte ...").
    pub report: String,
    /// Bytes that hold no intact record.
    pub unreadable_bytes: u64,
}

impl std::fmt::Display for FileDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.path.display(), self.report)
    }
}

pub(crate) fn damaged_message(dir: &Path, files: &[FileDamage]) -> String {
    let list: Vec<String> = files.iter().map(ToString::to_string).collect();
    format!(
        "journal damage in {}: {}. Only a torn tail (an incomplete last record at the end of the newest segment) is cut without asking; tallyd does not start on other damage. To start, restore every intact record with --salvage-journal (the damaged files are then moved to {}), or restore the state dir from a backup",
        dir.display(),
        list.join("; "),
        dir.join(DAMAGED_DIR).display()
    )
}

/// How many damaged regions of one file a message describes.
const REPORTED_REGIONS: usize = 4;

/// "at byte N (why, B bytes unreadable): K intact records
/// before it, M follow at bytes X..Y (seq S..T)" for each damaged region
/// of `survey` (of the bytes after a `base`-byte header), and `header`
/// first if the header is damaged.
pub(crate) fn describe(survey: &Survey, base: usize, header: Option<&str>) -> String {
    let frames = &survey.frames;
    let follow = |from: usize| -> String {
        match (frames.get(from), frames.last()) {
            (Some((s0, r0)), Some((s1, r1))) => format!(
                "{} intact record{} follow{} at bytes {}..{} (seq {s0}..{s1})",
                frames.len() - from,
                if frames.len() - from == 1 { "" } else { "s" },
                if frames.len() - from == 1 { "s" } else { "" },
                base + r0.start - FRAME_HEADER,
                base + r1.end
            ),
            _ => "no intact record follows".to_string(),
        }
    };
    let mut parts = Vec::new();
    if let Some(h) = header {
        parts.push(format!("at byte 0 ({h}): {}", follow(0)));
    }
    for d in survey.damage.iter().take(REPORTED_REGIONS) {
        let what = if d.len == 0 {
            format!("{}: records are missing", d.stop)
        } else {
            format!("{}, {} bytes unreadable", d.stop, d.len)
        };
        parts.push(format!(
            "at byte {} ({what}): {} intact record{} before it, {}",
            base + d.at,
            d.frames_before,
            if d.frames_before == 1 { "" } else { "s" },
            follow(d.frames_before)
        ));
    }
    if survey.damage.len() > REPORTED_REGIONS {
        parts.push(format!(
            "and {} more damaged regions",
            survey.damage.len() - REPORTED_REGIONS
        ));
    }
    parts.join("; and ")
}

fn io_at<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Keeps a damaged file in `dir/damaged/` under `<UTC time>-<name>` (a
/// hard link, else a copy). The original name goes when the recovered
/// state's snapshot is in place ([`super::files::start_generation`] deletes the older
/// files), so a crash before then finds the damaged file where it was.
pub fn set_aside(dir: &Path, path: &Path) -> Result<PathBuf, JournalError> {
    let to_dir = dir.join(DAMAGED_DIR);
    std::fs::create_dir_all(&to_dir).map_err(io_at("create", &to_dir))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map_or_else(|| "state-file".into(), |n| n.to_string_lossy().into_owned());
    let mut to = to_dir.join(format!("{stamp}-{name}"));
    let mut n = 1;
    while to.exists() {
        to = to_dir.join(format!("{stamp}.{n}-{name}"));
        n += 1;
    }
    std::fs::hard_link(path, &to)
        .or_else(|_| std::fs::copy(path, &to).map(|_| ()))
        .map_err(io_at("keep a copy of the damaged file in", &to_dir))?;
    sync_dir(&to_dir)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::files::tests::{append, dir, out};
    use crate::journal::files::{
        create_segment, lock_dir, recover, segment_path, snapshot_path, start_generation,
    };
    use crate::journal::record::{self, FILE_HEADER};
    use crate::journal::state::State;

    /// A state dir of generation 1: an empty snapshot and a segment of
    /// `n` grants (seq 0..n). Returns the segment's path and the byte
    /// offset of each frame in it.
    fn journal_of(d: &Path, n: u64) -> (PathBuf, Vec<usize>) {
        start_generation(d, 1, &State::default()).expect("gen 1");
        let payloads: Vec<Vec<u8>> = (1..=n).map(|i| out(i, false, 50_000)).collect();
        let seg = segment_path(d, 1);
        append(&seg, 0, &payloads);
        let bytes = std::fs::read(&seg).expect("read");
        let mut at = FILE_HEADER;
        let mut starts = Vec::new();
        while at < bytes.len() {
            starts.push(at);
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            at += FRAME_HEADER + len as usize;
        }
        (seg, starts)
    }

    fn poke(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut b = std::fs::read(path).expect("read");
        f(&mut b);
        std::fs::write(path, b).expect("write");
    }

    fn set_aside_files(d: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(d.join(DAMAGED_DIR))
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    /// Refused without salvage (message names the file, the offset and
    /// what follows; nothing touched); with salvage, `restored` instances
    /// come back and the file is set aside, not deleted.
    fn refused_then_salvaged(d: &Path, seg: &Path, restored: usize, message: &[&str]) {
        let before = std::fs::read(seg).expect("read");
        let e = recover(d, false).expect_err("damage must be refused");
        assert!(e.is_damaged_state());
        let text = e.to_string();
        assert!(text.contains(&seg.display().to_string()), "{text}");
        assert!(text.contains("--salvage-journal"), "{text}");
        for m in message {
            assert!(text.contains(m), "{m:?} not in {text}");
        }
        assert_eq!(std::fs::read(seg).expect("still there"), before);
        assert!(set_aside_files(d).is_empty());

        let rec = recover(d, true).expect("salvage");
        assert_eq!(rec.state.live.len(), restored);
        let aside = set_aside_files(d);
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).expect("set aside"), before);
        assert_eq!(rec.set_aside, aside);
        assert!(
            rec.notes.iter().any(|n| n.contains("moved to")),
            "{:?}",
            rec.notes
        );
        // The next generation deletes the original name; the copy stays.
        start_generation(d, rec.next_gen, &rec.state).expect("next gen");
        assert!(!seg.exists());
        assert_eq!(std::fs::read(&aside[0]).expect("set aside"), before);
        let again = recover(d, false).expect("clean after salvage");
        assert_eq!(again.state.live.len(), restored);
    }

    #[test]
    fn a_flipped_byte_mid_segment_is_refused_and_salvage_keeps_199_of_200() {
        let d = dir("flip");
        let _lock = lock_dir(&d).expect("lock");
        let (seg, starts) = journal_of(&d, 200);
        let at = starts[100] + FRAME_HEADER + 30;
        poke(&seg, |b| b[at] ^= 0x01);
        let msg = format!("is damaged at byte {} (checksum mismatch", starts[100]);
        let follow = format!("99 intact records follow at bytes {}..", starts[101]);
        refused_then_salvaged(
            &d,
            &seg,
            199,
            &[
                &msg,
                "100 intact records before it",
                &follow,
                "(seq 101..199)",
            ],
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_huge_length_field_is_refused_and_salvage_keeps_the_rest() {
        let d = dir("length");
        let _lock = lock_dir(&d).expect("lock");
        let (seg, starts) = journal_of(&d, 200);
        poke(&seg, |b| {
            b[starts[1]..starts[1] + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes())
        });
        refused_then_salvaged(
            &d,
            &seg,
            199,
            &[
                "impossible record length 2147483647",
                "1 intact record before it",
            ],
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_flipped_magic_byte_is_refused_and_salvage_keeps_every_record() {
        let d = dir("magic");
        let _lock = lock_dir(&d).expect("lock");
        let (seg, _) = journal_of(&d, 200);
        poke(&seg, |b| b[2] ^= 0x20);
        refused_then_salvaged(
            &d,
            &seg,
            200,
            &[
                "is damaged at byte 0 (its header is not TALLYJ01 with generation 1)",
                "200 intact records follow",
            ],
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_tail_is_still_cut_quietly() {
        let d = dir("torn");
        let _lock = lock_dir(&d).expect("lock");
        let (seg, _) = journal_of(&d, 20);
        let mut torn = Vec::new();
        record::frame(&mut torn, 20, &out(21, false, 1));
        torn.truncate(torn.len() - 7);
        poke(&seg, |b| b.extend_from_slice(&torn));
        let rec = recover(&d, false).expect("a torn tail is no damage");
        assert_eq!(rec.state.live.len(), 20);
        assert_eq!(rec.dropped_bytes, torn.len() as u64);
        assert!(rec.set_aside.is_empty());
        assert!(
            rec.notes[0].contains("after 20 good records: torn write"),
            "{:?}",
            rec.notes
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Only the newest segment is ever appended to: a torn end of an older
    /// one means records are missing, so it is damage.
    #[test]
    fn a_torn_end_of_an_older_segment_is_damage() {
        let d = dir("older");
        let _lock = lock_dir(&d).expect("lock");
        let (seg, starts) = journal_of(&d, 10);
        create_segment(&d, 2).expect("segment 2");
        append(&segment_path(&d, 2), 10, &[out(11, false, 50_000)]);
        poke(&seg, |b| b.truncate(starts[9] + 5));
        let e = recover(&d, false).expect_err("refused").to_string();
        assert!(
            e.contains("journal-0000000000000001.tly is damaged at byte"),
            "{e}"
        );
        // The lost record 9 also breaks the sequence into segment 2.
        let rec = recover(&d, true).expect("salvage");
        assert_eq!(rec.state.live.len(), 10);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_sequence_gap_between_segments_is_damage() {
        let d = dir("gap");
        let _lock = lock_dir(&d).expect("lock");
        let _ = journal_of(&d, 5);
        create_segment(&d, 2).expect("segment 2");
        append(&segment_path(&d, 2), 7, &[out(8, false, 50_000)]);
        let e = recover(&d, false).expect_err("refused").to_string();
        assert!(e.contains("journal-0000000000000002.tly is damaged at byte 16 (sequence number 7 where 5 was expected: records are missing)"), "{e}");
        assert_eq!(recover(&d, true).expect("salvage").state.live.len(), 6);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_snapshot_is_salvaged_with_its_intact_records() {
        let d = dir("snapsalvage");
        let _lock = lock_dir(&d).expect("lock");
        let mut s = State::default();
        for i in 1..=10 {
            let p = out(i, false, 9);
            s.apply(&record::decode(&p).expect("decode"), &p);
        }
        start_generation(&d, 3, &s).expect("gen");
        append(&segment_path(&d, 3), 0, &[out(11, false, 9)]);
        let path = snapshot_path(&d, 3);
        poke(&path, |b| b[FILE_HEADER + FRAME_HEADER + 3] ^= 0x08);
        let e = recover(&d, false).expect_err("refused").to_string();
        assert!(
            e.contains("snapshot-0000000000000003.tly is damaged: at byte 16 (checksum mismatch"),
            "{e}"
        );
        assert!(e.contains("intact records follow at bytes"), "{e}");
        assert!(e.contains("--salvage-journal"), "{e}");
        let rec = recover(&d, true).expect("salvage");
        // Nine of the snapshot's ten, and the segment's one.
        assert_eq!(rec.state.live.len(), 10);
        assert_eq!(set_aside_files(&d).len(), 1);
        assert!(path.exists(), "kept until the next generation is in place");
        let _ = std::fs::remove_dir_all(&d);
    }
}
