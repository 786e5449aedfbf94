//! Black-box tests of the journal under disk faults and damage: the real
//! `tallyd` with its state dir on a small tmpfs that fills up, a sync that
//! fails with EIO, and state dirs damaged between runs.
//!
//! The tmpfs tests need `mount` (root, or CAP_SYS_ADMIN); where mounting is
//! not allowed they print `SKIPPED: ...` and pass.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, Scratch, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
FEATURE F CITRIX 1.0 permanent 1000
";

const GENEROUS: Duration = Duration::from_secs(20);

/// How long a test watches for replies that must not come (the journal
/// retries a refused write every second).
const QUIET: Duration = Duration::from_millis(1500);

/// tallyd's exit status for a damaged state dir.
const EXIT_DAMAGED_STATE: i32 = 65;

/// A tmpfs mounted for one test, unmounted (and its directory removed) on
/// drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax, e.g. `2m`), or prints why
    /// not and returns `None`.
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("tally-tmpfs-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                eprintln!(
                    "SKIPPED: {name}: cannot mount a tmpfs on {} ({why}); this test needs root or CAP_SYS_ADMIN",
                    dir.display()
                );
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still has a file open: detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Fills the file system holding `path` by writing `path` until the disk
/// refuses; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0xa5u8; 4096];
    let mut written = 0u64;
    // Bounded: a 2 MiB tmpfs is full long before this.
    for _ in 0..1_000_000 {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    // Pages are allocated whole: fill the last partial one byte by byte.
    for _ in 0..4096 {
        match f.write(&[0xa5]) {
            Ok(1) => written += 1,
            _ => break,
        }
    }
    written
}

/// A connection for pipelining: requests sent at once, replies read later.
struct Pipe {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pipe {
    fn connect(t: &Tallyd) -> Pipe {
        let s = TcpStream::connect(t.addr).expect("connect");
        Pipe {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        }
    }

    fn send_all(&mut self, lines: &[String]) {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        self.w.write_all(buf.as_bytes()).expect("send");
    }

    /// Reads reply lines until `n` are in or `limit` passes without one.
    fn read_replies(&mut self, n: usize, limit: Duration) -> Vec<String> {
        self.r
            .get_ref()
            .set_read_timeout(Some(limit))
            .expect("timeout");
        let mut out = Vec::new();
        while out.len() < n {
            let mut s = String::new();
            match self.r.read_line(&mut s) {
                Ok(0) | Err(_) => break,
                Ok(_) => out.push(s.trim_end().to_string()),
            }
        }
        out
    }
}

fn checkouts(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("CHECKOUT F u{prefix} pc {prefix}{i} linger=3600"))
        .collect()
}

fn handles(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn held(t: &Tallyd) -> HashSet<String> {
    t.connect().holders("F").into_iter().collect()
}

fn all_ok(replies: &[String]) {
    for r in replies {
        assert!(r.starts_with("OK F "), "{r}");
    }
}

/// The reproduction: 50 lingering checkouts, the disk fills, 200
/// more are pipelined (no reply while the journal cannot write them), space
/// comes back, 50 more, `kill -9`, restart: all 300 must be back. Before
/// the fix the retried write left the partial bytes of the failed one in
/// the segment and recovery cut everything after them (51 of 300 back).
#[test]
fn a_full_disk_loses_no_acknowledged_checkout() {
    let Some(fs) = Tmpfs::mount("full", "2m") else {
        return;
    };
    let state = fs.dir.join("state");
    let filler = fs.dir.join("filler");
    let args = ["--durability", "sync"];
    let mut t = Tallyd::start_with_state(LICENSE, &args, &state);
    let mut acked = Vec::new();

    let mut p = Pipe::connect(&t);
    p.send_all(&checkouts("a", 50));
    let first = p.read_replies(50, GENEROUS);
    assert_eq!(first.len(), 50);
    all_ok(&first);
    acked.extend(handles("a", 50));

    let filled = fill(&filler);
    assert!(filled > 0, "the filler got no space");
    p.send_all(&checkouts("b", 200));
    assert!(
        eventually(GENEROUS, || t
            .log_lines()
            .iter()
            .any(|l| l.contains("journal: cannot write"))),
        "the journal never hit the full disk: {:?}",
        t.log_lines()
    );
    // While the disk refuses, a reply that waits for its record is not sent.
    let early = p.read_replies(200, QUIET);
    assert!(
        early.len() < 200,
        "all 200 replies were sent while the disk was full"
    );
    std::fs::remove_file(&filler).expect("free the space");
    let mut second = early;
    second.extend(p.read_replies(200 - second.len(), GENEROUS));
    assert_eq!(second.len(), 200, "replies after space came back");
    all_ok(&second);
    acked.extend(handles("b", 200));
    assert!(
        eventually(GENEROUS, || t
            .log_lines()
            .iter()
            .any(|l| l.contains("journal: writing again"))),
        "{:?}",
        t.log_lines()
    );

    p.send_all(&checkouts("c", 50));
    let third = p.read_replies(50, GENEROUS);
    assert_eq!(third.len(), 50);
    all_ok(&third);
    acked.extend(handles("c", 50));
    drop(p);
    t.kill9();

    let t2 = Tallyd::start_with_state(LICENSE, &args, &state);
    let back = held(&t2);
    let lost: Vec<_> = acked.iter().filter(|h| !back.contains(*h)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged checkouts lost after the full disk: {:?}; log: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)],
        t2.log_lines()
    );
    assert_eq!(back.len(), 300);
    drop(t2);
    drop(t);
}

/// A failed fsync (EIO), simulated by tallyd's debug-build hook
/// (`TALLYD_DEBUG_SYNC_EIO`: every journal sync fails while the file it
/// names exists; the kernel cannot be made to fail one here). No reply may
/// go out while the syncs fail, and after they work again and a `kill -9`,
/// every acknowledged checkout is back. Before the fix the journal wrote
/// the batch again after each failed sync, so the segment held copies of
/// it and recovery cut everything after the first copy.
#[test]
fn a_failed_sync_is_never_acknowledged_and_loses_nothing() {
    let scratch = Scratch::new("eio");
    let state = scratch.path("state");
    let flag = scratch.path("fail-syncs");
    let flag_s = flag.to_str().expect("utf-8 path").to_string();
    let args = ["--durability", "sync"];
    let mut t = Tallyd::start_with_env(
        LICENSE,
        &args,
        &state,
        &[("TALLYD_DEBUG_SYNC_EIO", &flag_s)],
    );
    let mut p = Pipe::connect(&t);
    p.send_all(&checkouts("a", 20));
    let first = p.read_replies(20, GENEROUS);
    assert_eq!(first.len(), 20);
    all_ok(&first);

    std::fs::write(&flag, b"EIO").expect("flag");
    p.send_all(&checkouts("b", 50));
    assert!(
        eventually(GENEROUS, || t.log_lines().iter().any(|l| l
            .contains("journal: cannot sync")
            && l.contains("rewritten"))),
        "{:?}",
        t.log_lines()
    );
    let early = p.read_replies(50, QUIET);
    assert!(
        early.is_empty(),
        "replies sent while every sync failed: {early:?}"
    );
    std::fs::remove_file(&flag).expect("unflag");
    let second = p.read_replies(50, GENEROUS);
    assert_eq!(second.len(), 50);
    all_ok(&second);

    p.send_all(&checkouts("c", 20));
    let third = p.read_replies(20, GENEROUS);
    assert_eq!(third.len(), 20);
    all_ok(&third);
    drop(p);
    t.kill9();

    let t2 = Tallyd::start_with_state(LICENSE, &args, &state);
    let back = held(&t2);
    let acked: Vec<String> = [handles("a", 20), handles("b", 50), handles("c", 20)].concat();
    let lost: Vec<_> = acked.iter().filter(|h| !back.contains(*h)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} lost: {:?}; {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)],
        t2.log_lines()
    );
}

/// 200 acknowledged lingering checkouts (handles b0..b199, one record
/// each, in order) in the newest segment of `state`, tallyd killed;
/// returns the segment and the byte offset of each record in it.
fn journal_of_200(state: &Path) -> (PathBuf, Vec<usize>) {
    let mut t = Tallyd::start_with_state(LICENSE, &[], state);
    let mut p = Pipe::connect(&t);
    p.send_all(&checkouts("b", 200));
    let r = p.read_replies(200, GENEROUS);
    assert_eq!(r.len(), 200);
    all_ok(&r);
    t.kill9();
    let seg = std::fs::read_dir(state)
        .expect("state dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("journal-"))
        .max()
        .expect("a segment");
    let bytes = std::fs::read(&seg).expect("read");
    let mut at = 16;
    let mut starts = Vec::new();
    while at + 16 <= bytes.len() {
        starts.push(at);
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        at += 16 + len as usize;
    }
    assert_eq!(starts.len(), 200, "one record per checkout");
    (seg, starts)
}

/// Runs tallyd on `state` expecting it to refuse; returns its exit status
/// and stderr.
fn refused(state: &Path, scratch: &Scratch) -> (Option<i32>, String) {
    let lic = scratch.path("refused.lic");
    std::fs::write(&lic, LICENSE).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(&lic)
        .args(["--port", "0", "--state-dir"])
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tallyd");
    let mut stderr = child.stderr.take().expect("stderr");
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if start.elapsed() > GENEROUS {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    assert!(
        status.is_some(),
        "tallyd started on a damaged journal: {err}"
    );
    (status.and_then(|s| s.code()), err)
}

fn damaged_dir_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("damaged"))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Damages the journal of 200 checkouts with `damage`; tallyd must refuse
/// (status 65, a message naming the file, the offset and what follows,
/// nothing touched), then with `--salvage-journal` restore all but `lost`,
/// keep the damaged file in `STATE_DIR/damaged/`, and start cleanly after.
fn damage_test(
    name: &str,
    damage: impl FnOnce(&mut Vec<u8>, &[usize]),
    want: impl FnOnce(&[usize]) -> Vec<String>,
    lost: &[&str],
) {
    let scratch = Scratch::new(name);
    let state = scratch.path("state");
    let (seg, starts) = journal_of_200(&state);
    let mut bytes = std::fs::read(&seg).expect("read");
    damage(&mut bytes, &starts);
    std::fs::write(&seg, &bytes).expect("damage");

    let (status, err) = refused(&state, &scratch);
    eprintln!("{name}: tallyd refused with status {status:?}: {err}");
    assert_eq!(status, Some(EXIT_DAMAGED_STATE), "{err}");
    assert!(err.contains(&seg.display().to_string()), "{err}");
    for w in want(&starts) {
        assert!(err.contains(&w), "{w:?} not in {err}");
    }
    assert!(err.contains("--salvage-journal"), "{err}");
    assert_eq!(std::fs::read(&seg).expect("untouched"), bytes);
    assert!(damaged_dir_files(&state).is_empty());

    let mut t = Tallyd::start_with_state(LICENSE, &["--salvage-journal"], &state);
    let back = held(&t);
    let expected: HashSet<String> = handles("b", 200)
        .into_iter()
        .filter(|h| !lost.contains(&h.as_str()))
        .collect();
    assert_eq!(back, expected, "{:?}", t.log_lines());
    let aside = damaged_dir_files(&state);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).expect("kept"), bytes);
    assert!(!seg.exists(), "the damaged file stays at its old name");
    assert!(
        eventually(GENEROUS, || t
            .log_lines()
            .iter()
            .any(|l| l.contains("salvaged every intact record of")
                && l.contains(&aside[0].display().to_string()))),
        "{:?}",
        t.log_lines()
    );
    t.kill9();
    // The salvaged state is a clean state dir now.
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state);
    assert_eq!(held(&t2), expected);
}

#[test]
fn a_flipped_byte_mid_segment_refuses_start_and_salvage_restores_199() {
    damage_test(
        "flip",
        |b, s| b[s[100] + 16 + 40] ^= 0x04,
        |s| {
            vec![
                format!("is damaged at byte {} (checksum mismatch", s[100]),
                "100 intact records before it".into(),
                format!("99 intact records follow at bytes {}..", s[101]),
            ]
        },
        &["b100"],
    );
}

#[test]
fn a_huge_length_field_refuses_start_and_salvage_restores_199() {
    damage_test(
        "length",
        |b, s| b[s[1]..s[1] + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()),
        |s| {
            vec![
                format!(
                    "is damaged at byte {} (impossible record length 2147483647",
                    s[1]
                ),
                "198 intact records follow".into(),
            ]
        },
        &["b1"],
    );
}

#[test]
fn a_flipped_magic_byte_refuses_start_and_salvage_restores_200() {
    damage_test(
        "magic",
        |b, _| b[1] ^= 0x01,
        |_| {
            vec![
                "is damaged at byte 0 (its header is not TALLYJ01".into(),
                "200 intact records follow".into(),
            ]
        },
        &[],
    );
}
