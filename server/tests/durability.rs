//! Black-box durability tests: the real `tallyd`, stopped cleanly or
//! killed with SIGKILL, restarted on the same state directory.
//!
//! The crash test runs [`DEFAULT_CRASH_CYCLES`] cycles under `cargo test`;
//! `TALLY_CRASH_CYCLES=20 cargo test -p tally-server --test durability
//! crash -- --nocapture` runs the full version and prints its figures.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{eventually, Scratch, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 10 VENDOR_STRING=\";LT=Retail;GP=720\"
FEATURE CRASH CITRIX 1.0 permanent 200
";

const SHRUNK: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 2 VENDOR_STRING=\";LT=Retail;GP=720\"
FEATURE CRASH CITRIX 1.0 permanent 200
";

const GENEROUS: Duration = Duration::from_secs(20);

/// Crash cycles run by a plain `cargo test`.
const DEFAULT_CRASH_CYCLES: usize = 3;
/// The crash test's tallyd: every grant synced, and a snapshot every 16 KiB
/// of journal (about every 150 records), so background snapshots are being
/// written when the kill -9 lands.
const CRASH_ARGS: [&str; 4] = ["--durability", "sync", "--snapshot-every-kib", "16"];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// handle -> (since_ms, deadline_ms) of `feature`'s holders.
fn holders(t: &Tallyd, feature: &str) -> HashMap<String, (u64, Option<u64>)> {
    let s = t.connect().status();
    s["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter(|f| f["name"] == feature)
        .flat_map(|f| f["holders"].as_array().cloned().unwrap_or_default())
        .map(|h| {
            (
                h["handle"].as_str().unwrap_or("").to_string(),
                (
                    h["since_ms"].as_u64().unwrap_or(0),
                    h["deadline_ms"].as_u64(),
                ),
            )
        })
        .collect()
}

fn deadline_of(reply: &str) -> u64 {
    reply
        .rsplit(' ')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no deadline in {reply:?}"))
}

fn down(t: &mut Tallyd) {
    assert_eq!(t.connect().req("DOWN"), "OK DOWN");
    assert!(
        t.wait_exit(GENEROUS).is_some(),
        "tallyd did not exit after DOWN"
    );
}

#[test]
fn clean_restart_resumes_lingering_checkouts_with_their_deadlines() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let mut c = t.connect();
    let a = c.req("CHECKOUT MPM_ADV_RC alice pc1 ha linger=3600 display=console");
    assert!(a.starts_with("OK MPM_ADV_RC ha "), "{a}");
    let b = c.req("CHECKOUT MPM_ADV_RC bob pc2 hb linger=600");
    assert!(b.starts_with("OK "), "{b}");
    std::thread::sleep(Duration::from_millis(20));
    // An acknowledged renewal moves the deadline; it must survive too.
    let a2 = c.req("CHECKOUT MPM_ADV_RC alice pc1 ha linger=7200 display=console");
    assert!(deadline_of(&a2) > deadline_of(&a), "{a} then {a2}");
    // Connection-bound: released by the restart.
    assert_eq!(
        c.req("CHECKOUT MPM_ADV_RC carol pc3 hc"),
        "OK MPM_ADV_RC hc 0"
    );
    // Checked in: must stay checked in.
    let d = c.req("CHECKOUT MPM_ADV_RC dave pc4 hd linger=600");
    assert!(d.starts_with("OK "), "{d}");
    assert_eq!(c.req("CHECKIN MPM_ADV_RC hd"), "OK MPM_ADV_RC hd");
    let before = holders(&t, "MPM_ADV_RC");
    drop(c);
    down(&mut t);

    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let after = holders(&t2, "MPM_ADV_RC");
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after["ha"], before["ha"]);
    assert_eq!(after["ha"].1, Some(deadline_of(&a2)));
    assert_eq!(after["hb"], before["hb"]);
    assert_eq!(t2.connect().in_use("MPM_ADV_RC"), 2);
    assert!(
        eventually(GENEROUS, || t2.log_lines().iter().any(|l| l
            .contains("journal: recovered")
            && l.contains("restored 2,"))),
        "no recovery summary in {:?}",
        t2.log_lines()
    );
    // The restored instance is the same one: a renewal renews it.
    let mut c2 = t2.connect();
    assert!(c2
        .req("CHECKOUT MPM_ADV_RC alice pc1 ha linger=60 display=console")
        .starts_with("OK "));
    assert_eq!(c2.in_use("MPM_ADV_RC"), 2);
}

#[test]
fn a_panicking_loop_exits_tallyd_and_the_restart_resumes_from_the_journal() {
    let state = Scratch::new("state");
    let env = [("TALLYD_DEBUG_PANIC", "1")];
    let mut t = Tallyd::start_with_env(LICENSE, &[], &state.0, &env);
    let mut c = t.connect();
    let a = c.req("CHECKOUT MPM_ADV_RC alice pc1 ha linger=3600");
    assert!(a.starts_with("OK MPM_ADV_RC ha "), "{a}");
    // A debug-build test hook makes the loop serving `c` panic.
    c.send(b"DEBUG_PANIC\n");
    let status = t
        .wait_exit(GENEROUS)
        .expect("tallyd exits after a loop panic");
    assert_eq!(status.code(), Some(70), "{status:?}");
    assert!(
        t.log_lines()
            .iter()
            .any(|l| l.contains("event loop") && l.contains("panicked")),
        "the panic is in the debug log: {:?}",
        t.log_lines()
    );
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let after = holders(&t2, "MPM_ADV_RC");
    assert_eq!(after["ha"].1, Some(deadline_of(&a)), "{after:?}");
}

#[test]
fn the_options_file_linger_default_is_journaled_with_the_grant() {
    // A checkout without linger= takes the options file's LINGER; the
    // restored instance must show that linger, not the request's 0.
    let state = Scratch::new("state");
    let options = state.path("tally.opt");
    std::fs::write(&options, "LINGER MPM_ADV_RC 600\n").expect("write options");
    let opt = options.to_str().expect("utf-8 path");
    let mut t = Tallyd::start_with_state(LICENSE, &["--options", opt], &state.0);
    let a = t.connect().req("CHECKOUT MPM_ADV_RC alice pc1 ha");
    assert!(deadline_of(&a) > 0, "LINGER gave it a deadline: {a}");
    down(&mut t);
    let t2 = Tallyd::start_with_state(LICENSE, &["--options", opt], &state.0);
    let s = t2.connect().status();
    let lingers: Vec<u64> = s["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter(|f| f["name"] == "MPM_ADV_RC")
        .flat_map(|f| f["holders"].as_array().cloned().unwrap_or_default())
        .map(|h| h["linger_ms"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lingers, [600_000]);
}

#[test]
fn sigterm_drains_and_the_next_server_resumes() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &["--durability", "sync"], &state.0);
    let r = t
        .connect()
        .req("CHECKOUT MPM_ADV_RC alice pc1 ha linger=3600");
    assert!(r.starts_with("OK "), "{r}");
    // Safety: kill(2) with a child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(t.pid() as i32, libc::SIGTERM) }, 0);
    assert!(t.wait_exit(GENEROUS).is_some(), "no exit after SIGTERM");
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    assert_eq!(
        holders(&t2, "MPM_ADV_RC")["ha"].1,
        Some(deadline_of(&r)),
        "the checkout did not survive SIGTERM"
    );
}

#[test]
fn deadlines_passed_while_down_are_checked_in_and_logged() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC alice pc1 short linger=1")
        .starts_with("OK "));
    assert!(c
        .req("CHECKOUT MPM_ADV_RC bob pc2 long linger=3600")
        .starts_with("OK "));
    drop(c);
    t.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let h = holders(&t2, "MPM_ADV_RC");
    assert!(h.contains_key("long") && !h.contains_key("short"), "{h:?}");
    assert!(
        eventually(GENEROUS, || t2.log_lines().iter().any(|l| l.contains(
            "IN: \"MPM_ADV_RC\" alice@pc1 [short]  (expired while server was down)"
        ))),
        "{:?}",
        t2.log_lines()
    );
}

#[test]
fn a_shrunk_license_never_restores_beyond_its_count() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let mut c = t.connect();
    for h in ["h1", "h2", "h3"] {
        let r = c.req(&format!("CHECKOUT MPM_ADV_RC u{h} pc {h} linger=3600"));
        assert!(r.starts_with("OK "), "{r}");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c);
    down(&mut t);
    let t2 = Tallyd::start_with_state(SHRUNK, &[], &state.0);
    let h = holders(&t2, "MPM_ADV_RC");
    // Oldest first: h3, the newest, gives way.
    let mut kept: Vec<_> = h.keys().cloned().collect();
    kept.sort();
    assert_eq!(kept, ["h1", "h2"]);
    assert_eq!(t2.connect().in_use("MPM_ADV_RC"), 2);
    assert!(
        eventually(GENEROUS, || t2.log_lines().iter().any(|l| l
            .contains("[h3]")
            && l.contains(
                "not restored after restart: the license file now has fewer licenses"
            ))),
        "{:?}",
        t2.log_lines()
    );
}

#[test]
fn a_torn_journal_tail_is_cut_and_reported() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let r = t
        .connect()
        .req("CHECKOUT MPM_ADV_RC alice pc1 ha linger=3600");
    assert!(r.starts_with("OK "), "{r}");
    t.kill9();
    // A half-written record at the end of the newest segment.
    let seg = std::fs::read_dir(&state.0)
        .expect("state dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("journal-"))
        .max()
        .expect("a journal segment");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
        .expect("append");
    drop(f);
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    assert!(holders(&t2, "MPM_ADV_RC").contains_key("ha"));
    assert!(
        eventually(GENEROUS, || t2
            .log_lines()
            .iter()
            .any(|l| l.contains("after 1 good records: torn write")
                && l.contains("(11 bytes dropped)"))),
        "{:?}",
        t2.log_lines()
    );
}

#[test]
fn a_second_server_on_the_same_state_dir_is_refused() {
    let state = Scratch::new("state");
    let _t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(_t.license_path())
        .args(["--port", "0", "--state-dir"])
        .arg(&state.0)
        .output()
        .expect("run tallyd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another tallyd"), "{err}");
    assert!(err.contains(&state.0.display().to_string()), "{err}");
}

/// Rewrites the format version in the magic of every state file.
fn set_format(dir: &std::path::Path, from: &[u8], to: &[u8]) {
    for e in std::fs::read_dir(dir).expect("state dir") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "tly") {
            let mut b = std::fs::read(&path).expect("read");
            if b.len() >= 8 && &b[6..8] == from {
                b[6..8].copy_from_slice(to);
                std::fs::write(&path, b).expect("write");
            }
        }
    }
}

#[test]
fn state_in_another_format_version_is_refused_not_dropped() {
    // What a downgrade (or a format change) looks like to tallyd: files
    // whose magic names another format version. Refusing to start keeps
    // their checkouts; skipping them would lose them.
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let a = t
        .connect()
        .req("CHECKOUT MPM_ADV_RC alice pc1 ha linger=3600");
    assert!(a.starts_with("OK "), "{a}");
    down(&mut t);
    set_format(&state.0, b"01", b"02");
    let lic = state.path("l.lic");
    std::fs::write(&lic, LICENSE).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(&lic)
        .args(["--port", "0", "--state-dir"])
        .arg(&state.0)
        .output()
        .expect("run tallyd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("journal format \"TALLY"), "{err}");
    assert!(err.contains("02\", this tallyd reads"), "{err}");
    // Nothing was deleted: with the format back, the checkout is back.
    set_format(&state.0, b"02", b"01");
    let t2 = Tallyd::start_with_state(LICENSE, &[], &state.0);
    assert_eq!(holders(&t2, "MPM_ADV_RC")["ha"].1, Some(deadline_of(&a)));
}

#[test]
fn an_unusable_state_dir_is_named() {
    let scratch = Scratch::new("bad-state");
    let file = scratch.path("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let lic = scratch.path("l.lic");
    std::fs::write(&lic, LICENSE).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(&lic)
        .args(["--port", "0", "--state-dir"])
        .arg(file.join("sub"))
        .output()
        .expect("run tallyd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state dir: cannot create"), "{err}");
    assert!(err.contains("not-a-dir/sub"), "{err}");
}

fn reopen_test(by_signal: bool) {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC alice pc1 before")
        .starts_with("OK "));
    let rotated = t.scratch.path("debug.log.1");
    assert!(eventually(GENEROUS, || std::fs::read_to_string(&t.log)
        .is_ok_and(|s| s.contains("[before]"))));
    std::fs::rename(&t.log, &rotated).expect("rotate");
    if by_signal {
        // Safety: kill(2) with a child's pid and a valid signal number.
        assert_eq!(unsafe { libc::kill(t.pid() as i32, libc::SIGHUP) }, 0);
    } else {
        assert_eq!(c.req("REOPEN_LOG"), "OK REOPEN_LOG");
    }
    assert!(eventually(GENEROUS, || t.log.exists()));
    assert!(c
        .req("CHECKOUT MPM_ADV_RC bob pc2 after")
        .starts_with("OK "));
    assert!(
        eventually(GENEROUS, || std::fs::read_to_string(&t.log).is_ok_and(
            |s| s.contains("[after]") && s.contains("Debug log reopened")
        )),
        "{:?}",
        std::fs::read_to_string(&t.log)
    );
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert!(
        old.contains("[before]") && !old.contains("[after]"),
        "{old}"
    );
}

#[test]
fn sighup_reopens_the_debug_log() {
    reopen_test(true);
}

#[test]
fn reopen_log_request_reopens_the_debug_log() {
    reopen_test(false);
}

#[test]
fn the_debug_log_is_appended_across_restarts() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(LICENSE, &[], &state.0);
    let log = t.log.clone();
    down(&mut t);
    let first = std::fs::read_to_string(&log).expect("log");
    assert!(first.contains("tallyd shut down"), "{first}");
    // The same file, without the `+` of lmgrd's append spelling.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .arg("-c")
        .arg(t.license_path())
        .args(["--port", "0", "--state-dir"])
        .arg(&state.0)
        .arg("-l")
        .arg(&log)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tallyd");
    let stderr = child.stderr.take().expect("stderr");
    let serving = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("tallyd: serving "));
    let appended = eventually(GENEROUS, || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.starts_with(&first) && s.len() > first.len())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving && appended, "{:?}", std::fs::read_to_string(&log));
}

/// A protocol client for the crash test that reports a dead server as
/// `None` instead of panicking.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Option<Raw> {
        let s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(GENEROUS)).ok()?;
        Some(Raw {
            w: s.try_clone().ok()?,
            r: BufReader::new(s),
        })
    }

    fn req(&mut self, line: &str) -> Option<String> {
        self.w.write_all(format!("{line}\n").as_bytes()).ok()?;
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim_end().to_string()),
        }
    }
}

/// What one client thread knows for sure.
#[derive(Default)]
struct Acked {
    /// handle -> deadline of the latest acknowledged checkout, for handles
    /// with no check-in sent since.
    held: HashMap<String, u64>,
    /// Handles whose check-in was acknowledged (and no checkout sent since).
    released: Vec<String>,
    grants: u64,
}

fn seed() -> u64 {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    n ^ (u64::from(std::process::id()) << 32)
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn client_thread(addr: SocketAddr, prefix: String, stop: Arc<AtomicBool>, mut rng: u64) -> Acked {
    let mut acked = Acked::default();
    let Some(mut c) = Raw::connect(addr) else {
        return acked;
    };
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) && k < 5000 {
        k += 1;
        let op = xorshift(&mut rng) % 10;
        let known: Vec<String> = acked.held.keys().cloned().collect();
        if op < 5 || known.is_empty() {
            if acked.held.len() >= 40 {
                continue;
            }
            let h = format!("{prefix}n{k}");
            let Some(r) = c.req(&format!("CHECKOUT CRASH u{prefix} host {h} linger=120")) else {
                return acked;
            };
            if r.starts_with("OK ") {
                acked.grants += 1;
                acked.held.insert(h, deadline_of(&r));
            }
        } else if op < 8 {
            let h = known[(xorshift(&mut rng) % known.len() as u64) as usize].clone();
            let Some(r) = c.req(&format!("CHECKOUT CRASH u{prefix} host {h} linger=240")) else {
                return acked;
            };
            if r.starts_with("OK ") {
                acked.grants += 1;
                acked.held.insert(h, deadline_of(&r));
            }
        } else {
            let h = known[(xorshift(&mut rng) % known.len() as u64) as usize].clone();
            // Unknown outcome until acknowledged: forget it first.
            acked.held.remove(&h);
            let Some(r) = c.req(&format!("CHECKIN CRASH {h}")) else {
                return acked;
            };
            if r.starts_with("OK ") {
                acked.released.push(h);
            }
        }
    }
    acked
}

#[test]
fn crash_kill9_under_load_loses_no_acknowledged_checkout() {
    let cycles: usize = std::env::var("TALLY_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CRASH_CYCLES);
    let state = Scratch::new("crash-state");
    let mut rng = seed();
    let (mut acked_total, mut lost, mut over, mut resurrected) = (0u64, 0u64, 0u64, 0u64);
    let mut t = Tallyd::start_with_state(LICENSE, &CRASH_ARGS, &state.0);
    for cycle in 0..cycles {
        // Start each cycle clean: check in what the last one left.
        let mut admin = t.connect();
        for (h, _) in holders(&t, "CRASH") {
            assert_eq!(
                admin.req(&format!("CHECKIN CRASH {h}")),
                format!("OK CRASH {h}")
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (addr, stop) = (t.addr, stop.clone());
                let r = xorshift(&mut rng);
                std::thread::spawn(move || client_thread(addr, format!("c{cycle}t{i}"), stop, r))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30 + xorshift(&mut rng) % 400));
        t.kill9();
        stop.store(true, Ordering::Relaxed);
        let acked: Vec<Acked> = threads
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        t = Tallyd::start_with_state(LICENSE, &CRASH_ARGS, &state.0);
        let held = holders(&t, "CRASH");
        let now = now_ms();
        let in_use = t.connect().in_use("CRASH");
        if in_use > 200 || in_use as usize != held.len() {
            over += 1;
        }
        for a in &acked {
            acked_total += a.grants;
            for (h, &deadline) in &a.held {
                let ok = match held.get(h) {
                    Some(&(_, Some(d))) => d >= deadline,
                    _ => deadline <= now,
                };
                if !ok {
                    lost += 1;
                    eprintln!(
                        "cycle {cycle}: lost {h} (deadline {deadline}): {:?}",
                        held.get(h)
                    );
                }
            }
            resurrected += a.released.iter().filter(|h| held.contains_key(*h)).count() as u64;
        }
        eprintln!(
            "cycle {cycle}: {} acknowledged grants this cycle, {} held after restart",
            acked.iter().map(|a| a.grants).sum::<u64>(),
            held.len()
        );
    }
    eprintln!(
        "crash test: cycles {cycles}, acknowledged grants {acked_total}, lost {lost}, over-grants {over}, released-then-back {resurrected}"
    );
    assert_eq!((lost, over, resurrected), (0, 0, 0));
    assert!(acked_total > 0, "the load never got a grant");
}

const TWO_POOLS: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 2 VENDOR_STRING=\";LT=Retail;GP=720\"
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 2 VENDOR_STRING=\";LT=Retail;GP=720\"
";

#[test]
fn recovery_spreads_over_several_pools_and_survives_a_reread() {
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(TWO_POOLS, &[], &state.0);
    let mut c = t.connect();
    for h in ["h1", "h2", "h3"] {
        let r = c.req(&format!("CHECKOUT MPM_ADV_RC u{h} pc {h} linger=3600"));
        assert!(r.starts_with("OK "), "{r}");
    }
    // Ids change at a reread: the journal must follow them.
    assert!(c.req("REREAD").starts_with("OK REREAD "));
    let r = c.req("CHECKOUT MPM_ADV_RC uh4 pc h4 linger=3600");
    assert!(r.starts_with("OK "), "{r}");
    assert!(c
        .req("CHECKOUT MPM_ADV_RC uh1 pc h1 linger=7200")
        .starts_with("OK "));
    assert_eq!(c.req("CHECKIN MPM_ADV_RC h2"), "OK MPM_ADV_RC h2");
    let before = holders(&t, "MPM_ADV_RC");
    drop(c);
    t.kill9();
    let t2 = Tallyd::start_with_state(TWO_POOLS, &[], &state.0);
    let after = holders(&t2, "MPM_ADV_RC");
    assert_eq!(after, before);
    let mut kept: Vec<_> = after.keys().cloned().collect();
    kept.sort();
    assert_eq!(kept, ["h1", "h3", "h4"]);
    // Three held across two pools of 2: one seat left, then full.
    let mut c2 = t2.connect();
    assert!(c2
        .req("CHECKOUT MPM_ADV_RC u5 pc h5 linger=60")
        .starts_with("OK "));
    assert!(c2
        .req("CHECKOUT MPM_ADV_RC u6 pc h6 linger=60")
        .starts_with("DENIED MPM_ADV_RC h6 ALL_IN_USE"));
}

/// More lingering instances than one default table level holds (4,096):
/// recovery builds the engine sized for what the journal holds and
/// restores them all, names, first-checkout times, deadlines and counts,
/// after a kill -9.
#[test]
fn a_restart_restores_more_instances_than_one_default_table_level() {
    const HELD: usize = 9_000;
    let license = format!(
        "SERVER this_host ANY 27000\nVENDOR CITRIX\n\
         INCREMENT MANY CITRIX 1.0 permanent {}\n\
         FEATURE FEW CITRIX 1.0 permanent 3\n",
        HELD + 10
    );
    let args = ["--durability", "sync"];
    let state = Scratch::new("state");
    let mut t = Tallyd::start_with_state(&license, &args, &state.0);
    let mut c = t.connect();
    let handles: Vec<usize> = (0..HELD).collect();
    for chunk in handles.chunks(1_000) {
        let mut batch = String::new();
        for i in chunk {
            batch.push_str(&format!(
                "CHECKOUT MANY u{} pc{} m{i} linger={}\n",
                i % 7,
                i % 13,
                600 + i % 5000
            ));
        }
        c.send(batch.as_bytes());
        for i in chunk {
            let r = c.read_line().expect("a reply");
            assert!(r.starts_with(&format!("OK MANY m{i} ")), "{r}");
        }
    }
    assert!(c
        .req("CHECKOUT FEW alice pc1 f1 linger=600")
        .starts_with("OK "));
    let before = holders(&t, "MANY");
    assert_eq!(before.len(), HELD);
    drop(c);
    t.kill9();

    let t2 = Tallyd::start_with_state(&license, &args, &state.0);
    let after = holders(&t2, "MANY");
    assert_eq!(after.len(), HELD);
    assert_eq!(after, before);
    let mut c2 = t2.connect();
    assert_eq!(c2.in_use("MANY"), HELD as u64);
    assert_eq!(c2.in_use("FEW"), 1);
    assert!(
        eventually(GENEROUS, || t2
            .log_lines()
            .iter()
            .any(|l| l.contains("journal: recovered")
                && l.contains(&format!("restored {},", HELD + 1)))),
        "no recovery summary in {:?}",
        t2.log_lines()
    );
    // The restored instances are the same ones: a renewal renews, a
    // check-in checks in.
    assert!(c2
        .req("CHECKOUT MANY u0 pc0 m0 linger=60")
        .starts_with("OK MANY m0 "));
    assert_eq!(c2.req("CHECKIN MANY m1"), "OK MANY m1");
    assert_eq!(c2.in_use("MANY"), HELD as u64 - 1);
}
