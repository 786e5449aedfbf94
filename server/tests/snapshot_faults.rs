//! Black-box tests of the journal's fuzzy snapshot at the moments that
//! matter: the real `tallyd` is stopped dead (SIGKILL) at each named step
//! of writing a background snapshot, or has its scan paused while
//! checkouts, renewals, check-ins, re-checkouts and a REREAD go on; then
//! a restart must hold exactly what was acknowledged (with the deadlines
//! acknowledged), nothing checked in, nothing beyond the count.
//!
//! The steps are tallyd's debug-build hook `TALLYD_DEBUG_CRASH_AT`
//! (`journal::files::DEBUG_CRASH_AT_ENV`): a file whose first word names
//! the step; a second word `pause` makes the step wait while the file
//! exists instead (it creates `<file>.paused` meanwhile).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, Scratch, Tallyd};
use tally_server::journal::files;

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
FEATURE F CITRIX 1.0 permanent 1000
";

/// Every grant synced before its reply; a background snapshot every
/// 16 KiB of journal (about 150 records).
const ARGS: [&str; 4] = ["--durability", "sync", "--snapshot-every-kib", "16"];

const GENEROUS: Duration = Duration::from_secs(20);

/// A request of the test's one connection.
#[derive(Debug, Clone)]
enum Op {
    /// A checkout (or renewal) of handle `.0` with a linger of `.1` s.
    Out(String, u64),
    /// A check-in of handle `.0`.
    In(String),
}

impl Op {
    fn handle(&self) -> &str {
        match self {
            Op::Out(h, _) | Op::In(h) => h,
        }
    }

    fn line(&self) -> String {
        match self {
            Op::Out(h, l) => format!("CHECKOUT F {} pc {h} linger={l}", user_of(h)),
            Op::In(h) => format!("CHECKIN F {h}"),
        }
    }
}

/// The user of handle `h`: for handles `L...`, a name too long for the
/// table's copy of the names (the journal keeps the full ones).
fn user_of(h: &str) -> String {
    if h.starts_with('L') {
        format!("u{}", "long".repeat(30))
    } else {
        format!("u{}", &h[..1])
    }
}

/// One pipelined connection and what its acknowledged replies say the
/// server holds.
struct Driver {
    r: BufReader<TcpStream>,
    w: TcpStream,
    /// Handle -> deadline of its last acknowledged checkout or renewal.
    held: HashMap<String, u64>,
    /// Handles whose check-in was acknowledged last.
    released: HashSet<String>,
    /// Handles with a request the server died before answering: either
    /// outcome is right.
    unsure: HashSet<String>,
}

impl Driver {
    fn connect(t: &Tallyd) -> Driver {
        let s = TcpStream::connect(t.addr).expect("connect");
        s.set_read_timeout(Some(GENEROUS)).expect("timeout");
        Driver {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
            held: HashMap::new(),
            released: HashSet::new(),
            unsure: HashSet::new(),
        }
    }

    /// Sends `ops` at once (pipelined, in order) and applies each reply.
    /// False if the connection ended first (the server died): the
    /// unanswered ones' handles are unsure from then on.
    fn run(&mut self, ops: &[Op]) -> bool {
        self.run_with(ops, || {})
    }

    /// [`Driver::run`], calling `between` once the requests are sent.
    fn run_with(&mut self, ops: &[Op], between: impl FnOnce()) -> bool {
        let mut buf = String::new();
        for op in ops {
            buf.push_str(&op.line());
            buf.push('\n');
        }
        if self.w.write_all(buf.as_bytes()).is_err() {
            self.forget(ops);
            return false;
        }
        between();
        for (i, op) in ops.iter().enumerate() {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => {
                    self.forget(&ops[i..]);
                    return false;
                }
            }
            self.answered(op, line.trim_end());
        }
        true
    }

    /// Like [`Driver::run`], and every reply must have come.
    fn all(&mut self, ops: &[Op]) {
        assert!(self.run(ops), "tallyd died answering {ops:?}");
    }

    fn answered(&mut self, op: &Op, reply: &str) {
        match op {
            Op::Out(h, _) => {
                assert!(reply.starts_with(&format!("OK F {h} ")), "{op:?}: {reply}");
                let d = reply
                    .rsplit(' ')
                    .next()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or_else(|| panic!("no deadline in {reply:?}"));
                self.released.remove(h);
                self.held.insert(h.clone(), d);
            }
            Op::In(h) => {
                assert_eq!(reply, format!("OK F {h}"), "{op:?}");
                self.held.remove(h);
                self.released.insert(h.clone());
            }
        }
    }

    fn forget(&mut self, ops: &[Op]) {
        for op in ops {
            let h = op.handle();
            self.held.remove(h);
            self.released.remove(h);
            self.unsure.insert(h.to_string());
        }
    }

    /// Held handles (not unsure), sorted: the targets of renewals and
    /// check-ins.
    fn held_sorted(&self) -> Vec<String> {
        let mut v: Vec<String> = self.held.keys().cloned().collect();
        v.sort();
        v
    }
}

fn outs(prefix: &str, range: std::ops::Range<usize>, linger: u64) -> Vec<Op> {
    range
        .map(|i| Op::Out(format!("{prefix}{i}"), linger))
        .collect()
}

fn ins(prefix: &str, range: std::ops::Range<usize>) -> Vec<Op> {
    range.map(|i| Op::In(format!("{prefix}{i}"))).collect()
}

/// handle -> deadline of every holder of F, and F's in_use.
fn holders(t: &Tallyd) -> (HashMap<String, Option<u64>>, u64) {
    let s = t.connect().status();
    let f = s["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["name"] == "F")
        .cloned()
        .expect("feature F");
    let held = f["holders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            (
                h["handle"].as_str().unwrap_or("").to_string(),
                h["deadline_ms"].as_u64(),
            )
        })
        .collect();
    (held, f["in_use"].as_u64().expect("in_use"))
}

/// After a restart: every acknowledged holder with its acknowledged
/// deadline, no acknowledged check-in back, nothing the client never
/// asked for, and in_use is the holders (one license each).
fn check_restored(t: &Tallyd, d: &Driver, what: &str) {
    let (after, in_use) = holders(t);
    let mut lost = Vec::new();
    for (h, &deadline) in &d.held {
        if after.get(h) != Some(&Some(deadline)) {
            lost.push(format!(
                "{h}: acknowledged {deadline}, restored {:?}",
                after.get(h)
            ));
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "{what}: {} of {} acknowledged holders lost or changed: {:?}; log: {:?}",
        lost.len(),
        d.held.len(),
        &lost[..lost.len().min(10)],
        t.log_lines()
    );
    let mut back: Vec<&String> = d
        .released
        .iter()
        .filter(|h| after.contains_key(*h))
        .collect();
    back.sort();
    assert!(
        back.is_empty(),
        "{what}: checked in, yet restored: {back:?}"
    );
    let mut invented: Vec<&String> = after
        .keys()
        .filter(|h| !d.held.contains_key(*h) && !d.unsure.contains(*h))
        .collect();
    invented.sort();
    assert!(invented.is_empty(), "{what}: never held: {invented:?}");
    assert_eq!(in_use, after.len() as u64, "{what}: in_use");
}

fn gen_file(state: &Path, kind: &str, gen: u64) -> PathBuf {
    state.join(format!("{kind}-{gen:016x}.tly"))
}

fn names(state: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(state)
        .expect("list the state dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    v.sort();
    v
}

/// Lingering checkouts, renewals and check-ins, all acknowledged, fewer
/// than a snapshot's worth of journal: generation 1 (the boot's) only.
fn before_the_snapshot(d: &mut Driver) {
    d.all(&outs("a", 0..40, 3600));
    d.all(&outs("a", 0..10, 7200));
    d.all(&ins("a", 10..20));
}

/// Batch `r` of the load that fills the journal up to a snapshot: 14 new
/// checkouts, 3 renewals and 3 check-ins of held instances.
fn batch(d: &Driver, r: usize) -> Vec<Op> {
    let mut ops = outs(&format!("b{r}x"), 0..14, 3600);
    let held = d.held_sorted();
    let mut picked = HashSet::new();
    for j in 0..6 {
        let h = &held[(r * 7 + j * 13) % held.len()];
        if !picked.insert(h.clone()) {
            continue;
        }
        ops.push(if j < 3 {
            Op::Out(h.clone(), 7200 + r as u64)
        } else {
            Op::In(h.clone())
        });
    }
    ops
}

/// Writes the hook's file whole (a rename: tallyd never reads it half
/// written).
fn set_flag(flag: &Path, text: &str) {
    let tmp = flag.with_extension("new");
    std::fs::write(&tmp, text).expect("write the flag");
    std::fs::rename(&tmp, flag).expect("rename the flag");
}

/// tallyd's first background snapshot (generation 2) waits at `step`
/// while a pipelined load of checkouts, renewals and check-ins goes on
/// (journaled after the mark); then it is stopped dead there with a batch
/// in flight; `files` checks the state dir it left; the restart must hold
/// exactly what was acknowledged.
fn killed_at(step: &str, files: impl FnOnce(&Path, &[String])) {
    let scratch = Scratch::new(&format!("killed-at-{step}"));
    let state = scratch.path("state");
    let flag = scratch.path("crash-at");
    let paused = flag.with_extension("paused");
    let flag_s = flag.to_str().expect("utf-8 path").to_string();
    let mut t = Tallyd::start_with_env(
        LICENSE,
        &ARGS,
        &state,
        &[("TALLYD_DEBUG_CRASH_AT", &flag_s)],
    );
    let mut d = Driver::connect(&t);
    before_the_snapshot(&mut d);
    assert!(
        !gen_file(&state, "journal", 2).exists(),
        "no snapshot yet: {:?}",
        names(&state)
    );
    set_flag(&flag, &format!("{step} pause"));
    let mut r = 0;
    while !paused.exists() {
        assert!(r < 300, "no snapshot reached {step}: {:?}", names(&state));
        d.all(&batch(&d, r));
        r += 1;
    }
    // Acknowledged after the mark: in segment 2 only.
    for _ in 0..3 {
        d.all(&batch(&d, r));
        r += 1;
    }
    let ops = batch(&d, r);
    let died_answering = !d.run_with(&ops, || set_flag(&flag, "kill"));
    assert!(
        t.wait_exit(GENEROUS).is_some(),
        "tallyd did not die at {step}"
    );
    let left = names(&state);
    eprintln!(
        "{step}: killed with {} held, {} checked in, {} unanswered (the last batch cut: {died_answering}); state dir {left:?}",
        d.held.len(),
        d.released.len(),
        d.unsure.len()
    );
    files(&state, &left);
    let t2 = Tallyd::start_with_state(LICENSE, &ARGS, &state);
    check_restored(&t2, &d, step);
    drop(t2);
    drop(t);
}

/// The old generation and both segments are there, the new snapshot only
/// as a `.tmp`.
fn before_the_rename(state: &Path, left: &[String]) {
    for p in [
        gen_file(state, "snapshot", 1),
        gen_file(state, "journal", 1),
        gen_file(state, "journal", 2),
        gen_file(state, "snapshot", 2).with_extension("tmp"),
    ] {
        assert!(p.exists(), "{} missing: {left:?}", p.display());
    }
    assert!(!gen_file(state, "snapshot", 2).exists(), "{left:?}");
}

/// Both generations are whole: nothing deleted yet.
fn after_the_rename(state: &Path, left: &[String]) {
    for p in [
        gen_file(state, "snapshot", 1),
        gen_file(state, "journal", 1),
        gen_file(state, "snapshot", 2),
        gen_file(state, "journal", 2),
    ] {
        assert!(p.exists(), "{} missing: {left:?}", p.display());
    }
}

#[test]
fn killed_after_the_snapshot_is_written_before_its_sync() {
    killed_at("snapshot-written", before_the_rename);
}

#[test]
fn killed_after_the_snapshot_is_synced_before_its_rename() {
    killed_at("snapshot-synced", before_the_rename);
}

#[test]
fn killed_after_the_rename_before_the_directory_sync() {
    killed_at("snapshot-renamed", after_the_rename);
}

#[test]
fn killed_after_the_snapshot_is_durable_before_the_old_files_go() {
    killed_at("snapshot-durable", after_the_rename);
}

#[test]
fn killed_with_half_the_old_generation_deleted() {
    killed_at("delete-started", |state, left| {
        assert!(gen_file(state, "snapshot", 2).exists(), "{left:?}");
        assert!(gen_file(state, "journal", 2).exists(), "{left:?}");
        let old = [
            gen_file(state, "snapshot", 1),
            gen_file(state, "journal", 1),
        ];
        assert_eq!(
            old.iter().filter(|p| p.exists()).count(),
            1,
            "one of the old files deleted: {left:?}"
        );
    });
}

#[test]
fn killed_in_the_middle_of_the_scan() {
    killed_at("scan", before_the_rename);
}

/// How a paused scan ends in [`paused_scan`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    /// tallyd is killed while the scan is still paused.
    KilledPaused,
    /// The scan goes on, the snapshot is written whole, then a kill.
    Completed,
    /// A REREAD (new ids, a new engine) while the scan is paused, more
    /// requests after it, then the scan goes on, then a kill.
    Reread,
}

/// The first background snapshot's scan is paused after its first
/// instance, with 60 lingering instances held; meanwhile 20 are checked
/// in, 20 renewed, 10 of the checked-in handles checked out again (new
/// instances, likely in the slots just freed) and 20 new ones checked
/// out, all acknowledged; `then` says how it ends; the restart must hold
/// exactly what was acknowledged.
fn paused_scan(then: Then) {
    let scratch = Scratch::new(&format!("paused-{then:?}"));
    let state = scratch.path("state");
    let flag = scratch.path("crash-at");
    let paused = flag.with_extension("paused");
    let flag_s = flag.to_str().expect("utf-8 path").to_string();
    let mut t = Tallyd::start_with_env(
        LICENSE,
        &ARGS,
        &state,
        &[("TALLYD_DEBUG_CRASH_AT", &flag_s)],
    );
    let mut d = Driver::connect(&t);
    d.all(&outs("a", 0..60, 3600));
    set_flag(&flag, "scan pause");
    // Fill the journal until the snapshot starts and its scan waits.
    let mut r = 0;
    while !paused.exists() {
        assert!(r < 300, "no snapshot started: {:?}", names(&state));
        d.all(&outs(&format!("b{r}x"), 0..20, 3600));
        r += 1;
    }
    assert!(
        gen_file(&state, "journal", 2).exists(),
        "{:?}",
        names(&state)
    );
    d.all(&ins("a", 0..20));
    d.all(&outs("a", 20..40, 7200));
    d.all(&outs("a", 0..10, 1800));
    d.all(&outs("c", 0..20, 3600));
    assert!(paused.exists(), "the scan waits");
    match then {
        Then::KilledPaused => {}
        Then::Completed => {
            std::fs::remove_file(&flag).expect("unpause");
            assert!(
                eventually(GENEROUS, || gen_file(&state, "snapshot", 2).exists()
                    && !gen_file(&state, "snapshot", 1).exists()),
                "snapshot 2 never replaced 1: {:?}",
                names(&state)
            );
            d.all(&ins("a", 40..45));
            d.all(&outs("a", 45..50, 600));
        }
        Then::Reread => {
            // The reread's snapshot of the new ids waits for the paused
            // one: send everything, then let the scan go on.
            let mut ops = vec!["REREAD".to_string()];
            let more: Vec<Op> = ins("a", 40..45)
                .into_iter()
                .chain(outs("a", 45..50, 600))
                .chain(outs("d", 0..10, 3600))
                .chain(ins("a", 0..3))
                .collect();
            ops.extend(more.iter().map(Op::line));
            let mut buf = ops.join("\n");
            buf.push('\n');
            d.w.write_all(buf.as_bytes()).expect("send");
            std::thread::sleep(Duration::from_millis(100));
            std::fs::remove_file(&flag).expect("unpause");
            let mut line = String::new();
            d.r.read_line(&mut line).expect("REREAD reply");
            assert!(line.starts_with("OK REREAD "), "{line}");
            for op in &more {
                let mut line = String::new();
                d.r.read_line(&mut line).expect("reply");
                d.answered(op, line.trim_end());
            }
            assert!(
                eventually(GENEROUS, || gen_file(&state, "snapshot", 3).exists()
                    && !gen_file(&state, "snapshot", 2).exists()),
                "the reread's snapshot 3: {:?}",
                names(&state)
            );
            d.all(&outs("a", 20..25, 900));
        }
    }
    eprintln!(
        "{then:?}: killed with {} held, {} checked in; state dir {:?}",
        d.held.len(),
        d.released.len(),
        names(&state)
    );
    t.kill9();
    let t2 = Tallyd::start_with_state(LICENSE, &ARGS, &state);
    check_restored(&t2, &d, &format!("{then:?}"));
    assert!(d.unsure.is_empty());
    drop(t2);
    drop(t);
}

#[test]
fn a_crash_while_the_scan_waits_replays_every_change_since_the_mark() {
    paused_scan(Then::KilledPaused);
}

#[test]
fn changes_during_a_scan_are_right_after_the_snapshot_replaces_the_old_one() {
    paused_scan(Then::Completed);
}

#[test]
fn a_reread_during_a_scan_keeps_every_change_before_and_after_it() {
    paused_scan(Then::Reread);
}

/// A REREAD while a background scan of the old engine runs, then a crash
/// once that snapshot is durable and before the reread's own snapshot is:
/// recovery starts from the old engine's snapshot. Holders whose names
/// are too long for the table's copy (the journal keeps their full names
/// by id) must be read back with their full names (a restart keys the
/// instance by them; shortened, it would be another instance than the
/// client's). They are checked out,
/// in and out again a few times first, so their old ids (slot
/// generations) differ from the new engine's.
#[test]
fn a_reread_during_a_scan_keeps_the_full_names_of_long_named_holders() {
    let scratch = Scratch::new("reread-long");
    let state = scratch.path("state");
    let flag = scratch.path("crash-at");
    let paused = flag.with_extension("paused");
    let flag_s = flag.to_str().expect("utf-8 path").to_string();
    let mut t = Tallyd::start_with_env(
        LICENSE,
        &ARGS,
        &state,
        &[("TALLYD_DEBUG_CRASH_AT", &flag_s)],
    );
    let mut d = Driver::connect(&t);
    for _ in 0..3 {
        d.all(&outs("L", 0..5, 3600));
        d.all(&ins("L", 0..5));
    }
    d.all(&outs("L", 0..5, 3600));
    d.all(&outs("a", 0..40, 3600));
    set_flag(&flag, "scan pause");
    let mut r = 0;
    while !paused.exists() {
        assert!(r < 300, "no snapshot started: {:?}", names(&state));
        d.all(&outs(&format!("b{r}x"), 0..20, 3600));
        r += 1;
    }
    d.w.write_all(b"REREAD\n").expect("send REREAD");
    // Time for the journal thread to take the reread (it then waits for
    // the paused snapshot); were it later, the test would only miss the
    // case, not fail.
    std::thread::sleep(Duration::from_millis(300));
    set_flag(&flag, "snapshot-durable pause");
    assert!(
        eventually(GENEROUS, || std::fs::read_to_string(&paused)
            .is_ok_and(|s| s == "snapshot-durable")),
        "the old engine's snapshot never became durable: {:?}",
        names(&state)
    );
    set_flag(&flag, "kill");
    assert!(t.wait_exit(GENEROUS).is_some(), "tallyd did not die");
    let left = names(&state);
    assert!(gen_file(&state, "snapshot", 2).exists(), "{left:?}");
    assert!(!gen_file(&state, "snapshot", 3).exists(), "{left:?}");
    // What a restart reads: the full names, which it keys them by.
    let rec = files::recover(&state, false).expect("recover");
    let mut long: Vec<(String, String)> = rec
        .state
        .instances()
        .filter(|i| i.names.handle.starts_with('L'))
        .map(|i| (i.names.handle.to_string(), i.names.user.to_string()))
        .collect();
    long.sort();
    let want: Vec<(String, String)> = (0..5).map(|i| (format!("L{i}"), user_of("L"))).collect();
    assert_eq!(long, want, "the long names as recovery reads them");
    let t2 = Tallyd::start_with_state(LICENSE, &ARGS, &state);
    check_restored(&t2, &d, "reread during a scan");
    drop(t2);
    drop(t);
}

/// A tmpfs mounted for one test, unmounted (and its directory removed) on
/// drop; `None` (the test prints SKIPPED and passes) where mounting is
/// not allowed (it needs root or CAP_SYS_ADMIN).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("tally-tmpfs-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Tmpfs(dir))
        } else {
            eprintln!("SKIPPED: {name}: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)");
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Writes `path` until the file system refuses.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0xa5u8; 4096];
    for _ in 0..1_000_000 {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    for _ in 0..4096 {
        if !matches!(f.write(&[0xa5]), Ok(1)) {
            break;
        }
    }
}

/// The disk fills while a background snapshot is being written (its scan
/// paused, the disk filled, the scan let go): the snapshot fails without
/// leaving its `.tmp` or touching generation 1, the failure is logged
/// when it happens (not at the next snapshot, which a quiet server may
/// never reach), and after space comes back, more checkouts and a
/// `kill -9`, the restart (from generation 1 and both segments) holds
/// exactly what was acknowledged.
#[test]
fn a_snapshot_that_meets_a_full_disk_is_reported_and_loses_nothing() {
    let Some(fs) = Tmpfs::mount("snapshot-enospc", "2m") else {
        return;
    };
    let scratch = Scratch::new("snapshot-enospc");
    let state = fs.0.join("state");
    let filler = fs.0.join("filler");
    let flag = scratch.path("crash-at");
    let paused = flag.with_extension("paused");
    let flag_s = flag.to_str().expect("utf-8 path").to_string();
    let mut t = Tallyd::start_with_env(
        LICENSE,
        &ARGS,
        &state,
        &[("TALLYD_DEBUG_CRASH_AT", &flag_s)],
    );
    let mut d = Driver::connect(&t);
    before_the_snapshot(&mut d);
    set_flag(&flag, "scan pause");
    let mut r = 0;
    while !paused.exists() {
        assert!(r < 300, "no snapshot started: {:?}", names(&state));
        d.all(&batch(&d, r));
        r += 1;
    }
    let tmp = gen_file(&state, "snapshot", 2).with_extension("tmp");
    assert!(tmp.exists(), "{:?}", names(&state));
    fill(&filler);
    std::fs::remove_file(&flag).expect("let the scan go on");
    assert!(
        eventually(GENEROUS, || !tmp.exists()),
        "the failed snapshot's .tmp stays: {:?}",
        names(&state)
    );
    assert!(
        eventually(GENEROUS, || t
            .log_lines()
            .iter()
            .any(|l| l.contains("journal: snapshot failed")
                && l.contains("snapshot-0000000000000002.tmp"))),
        "the failed snapshot is not reported: {:?}",
        t.log_lines()
    );
    std::fs::remove_file(&filler).expect("free the space");
    let left = names(&state);
    for p in [
        gen_file(&state, "snapshot", 1),
        gen_file(&state, "journal", 1),
        gen_file(&state, "journal", 2),
    ] {
        assert!(p.exists(), "{} missing: {left:?}", p.display());
    }
    assert!(!gen_file(&state, "snapshot", 2).exists(), "{left:?}");
    for _ in 0..3 {
        d.all(&batch(&d, r));
        r += 1;
    }
    t.kill9();
    let t2 = Tallyd::start_with_state(LICENSE, &ARGS, &state);
    check_restored(&t2, &d, "a snapshot on a full disk");
    drop(t2);
    drop(t);
}

/// A background snapshot that is durable, but whose deletion of the older
/// files fails (here one of them cannot be unlinked: a directory by a
/// segment's name), is said to be durable with the old files left, not
/// as a failed snapshot; nothing acknowledged is lost.
#[test]
fn a_snapshot_whose_old_files_cannot_be_deleted_is_said_durable() {
    let scratch = Scratch::new("snapshot-old-files-kept");
    let state = scratch.path("state");
    let flag = scratch.path("crash-at");
    let paused = flag.with_extension("paused");
    let flag_s = flag.to_str().expect("utf-8 path").to_string();
    let mut t = Tallyd::start_with_env(
        LICENSE,
        &ARGS,
        &state,
        &[("TALLYD_DEBUG_CRASH_AT", &flag_s)],
    );
    let mut d = Driver::connect(&t);
    before_the_snapshot(&mut d);
    set_flag(&flag, "snapshot-durable pause");
    let mut r = 0;
    while !paused.exists() {
        assert!(r < 300, "no snapshot became durable: {:?}", names(&state));
        d.all(&batch(&d, r));
        r += 1;
    }
    // An older generation's name that unlink(2) refuses (EISDIR).
    let stuck = gen_file(&state, "journal", 0);
    std::fs::create_dir(&stuck).expect("mkdir");
    std::fs::write(stuck.join("x"), "x").expect("a file in it");
    std::fs::remove_file(&flag).expect("let the snapshot go on");
    assert!(
        eventually(GENEROUS, || t
            .log_lines()
            .iter()
            .any(|l| l.contains(
                "journal: snapshot 2 is durable, but the older files could not all be deleted"
            ) && l.contains("journal-0000000000000000.tly"))),
        "the kept old files are not reported: {:?}",
        t.log_lines()
    );
    assert!(
        !t.log_lines().iter().any(|l| l.contains("snapshot failed")),
        "{:?}",
        t.log_lines()
    );
    assert!(
        gen_file(&state, "snapshot", 2).exists(),
        "{:?}",
        names(&state)
    );
    std::fs::remove_dir_all(&stuck).expect("rmdir");
    for _ in 0..3 {
        d.all(&batch(&d, r));
        r += 1;
    }
    t.kill9();
    let t2 = Tallyd::start_with_state(LICENSE, &ARGS, &state);
    check_restored(&t2, &d, "a snapshot that kept the old files");
    drop(t2);
    drop(t);
}

/// Runs tallyd on `state` expecting it to refuse to start: its exit
/// status and stderr.
fn refused(state: &Path, scratch: &Scratch) -> (Option<i32>, String) {
    let lic = scratch.path("refused.lic");
    std::fs::write(&lic, LICENSE).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(&lic)
        .args(["--port", "0", "--state-dir"])
        .arg(state)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tallyd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The byte offsets of a snapshot's frames (after its 16-byte header).
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut at = 16;
    let mut starts = Vec::new();
    while at + 16 <= bytes.len() {
        starts.push(at);
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        at += 16 + len as usize;
    }
    starts
}

/// A snapshot cut short (disk damage: snapshots are renamed into place
/// only whole) at `cut` of its frames' offsets: tallyd refuses to start
/// (status 65) naming the file and what is wrong, touching nothing; with
/// `--salvage-journal` it restores the instances before the cut and sets
/// the file aside.
fn truncated_snapshot(
    name: &str,
    cut: impl FnOnce(&[usize]) -> usize,
    why: impl FnOnce(&[usize]) -> Vec<String>,
) {
    let scratch = Scratch::new(name);
    let state = scratch.path("state");
    let mut t = Tallyd::start_with_state(LICENSE, &ARGS, &state);
    let mut d = Driver::connect(&t);
    d.all(&outs("a", 0..100, 3600));
    assert_eq!(t.connect().req("DOWN"), "OK DOWN");
    assert!(t.wait_exit(GENEROUS).is_some(), "no exit after DOWN");
    // The clean stop's snapshot holds every instance; its segment is empty.
    let snap = std::fs::read_dir(&state)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("snapshot-"))
        .max()
        .expect("a snapshot");
    let mut bytes = std::fs::read(&snap).expect("read");
    let starts = frame_starts(&bytes);
    assert!(
        starts.len() > 100,
        "100 instances and END: {}",
        starts.len()
    );
    bytes.truncate(cut(&starts));
    let why = why(&starts);
    std::fs::write(&snap, &bytes).expect("cut");

    let (status, err) = refused(&state, &scratch);
    eprintln!("{name}: refused with {status:?}: {err}");
    assert_eq!(status, Some(65), "{err}");
    assert!(err.contains(&snap.display().to_string()), "{err}");
    for w in &why {
        assert!(err.contains(w.as_str()), "{w:?} not in {err}");
    }
    assert!(err.contains("--salvage-journal"), "{err}");
    assert_eq!(std::fs::read(&snap).expect("untouched"), bytes);

    let t2 = Tallyd::start_with_state(LICENSE, &["--salvage-journal"], &state);
    let (after, in_use) = holders(&t2);
    assert_eq!(in_use, after.len() as u64);
    // The first 50 frames are instances (a snapshot writes them first).
    assert_eq!(after.len(), 50, "the instances before the cut");
    for h in after.keys() {
        assert!(d.held.contains_key(h), "never held: {h}");
    }
    assert!(!snap.exists(), "the damaged snapshot stays at its name");
    assert!(
        std::fs::read_dir(state.join("damaged"))
            .map(|r| r.count())
            .unwrap_or(0)
            == 1,
        "the damaged snapshot is set aside"
    );
    drop(t2);
}

#[test]
fn a_snapshot_cut_mid_record_is_refused_and_salvaged() {
    truncated_snapshot(
        "cut-mid",
        |s| s[50] + 20,
        |s| {
            vec![
                format!("is damaged: at byte {} (torn write", s[50]),
                "50 intact records before it".into(),
            ]
        },
    );
}

#[test]
fn a_snapshot_cut_between_records_is_refused_as_incomplete() {
    truncated_snapshot(
        "cut-between",
        |s| s[50],
        |_| vec!["is damaged: it has no end record (incomplete)".into()],
    );
}
