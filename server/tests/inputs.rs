//! What tallyd makes of hostile or mistaken input files at start and on
//! REREAD (issue 12, items 9, 12 and 21): the real binary, its stderr and
//! exit status.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, Tallyd};

const LICENSE: &str = "\
VENDOR CITRIX
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5
";

/// Runs tallyd with `args` until it exits (bounded), returning its exit
/// code and stderr.
fn run_to_exit(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tallyd");
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status.and_then(|s| s.code()), err)
}

/// Item 9: `OPTIONS=/dev/zero` read until memory ran out. Now the start
/// fails at the size limit, naming the file.
#[test]
fn an_endless_options_file_stops_the_start_naming_it() {
    let scratch = Scratch::new("devzero");
    let lic = scratch.path("license.lic");
    std::fs::write(
        &lic,
        "VENDOR CITRIX OPTIONS=/dev/zero\nINCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5\n",
    )
    .expect("write license");
    let state = scratch.path("state");
    let (code, err) = run_to_exit(
        &[
            "-c",
            lic.to_str().expect("utf-8"),
            "--port",
            "0",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("options file /dev/zero is larger than 16777216 bytes"),
        "{err}"
    );
}

/// Item 9, REREAD: a license file that became an endless one is refused,
/// and the server keeps serving.
#[test]
fn reread_of_an_endless_options_file_is_refused() {
    let t = Tallyd::start(LICENSE, &[]);
    std::fs::write(
        t.license_path(),
        "VENDOR CITRIX OPTIONS=/dev/zero\nINCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5\n",
    )
    .expect("rewrite license");
    let mut c = t.connect();
    let reply = c.req("REREAD");
    assert!(
        reply.starts_with("ERR REREAD_FAILED options file /dev/zero is larger than"),
        "{reply}"
    );
    assert_eq!(c.req("PING"), "PONG");
}

/// Item 12: names over 255 bytes or with bidi controls were accepted
/// without a word; tallyd now warns at start, naming file:line and whether
/// the name can ever be checked out.
#[test]
fn unservable_feature_names_are_warned_about_at_start() {
    let scratch = Scratch::new("names");
    let lic = scratch.path("names.lic");
    let long = "L".repeat(256);
    std::fs::write(
        &lic,
        format!(
            "INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5\n\
             INCREMENT {long} CITRIX 1.0 permanent 5\n\
             INCREMENT ev\u{202e}il CITRIX 1.0 permanent 5\n"
        ),
    )
    .expect("write license");
    let state = scratch.path("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyd"))
        .args([
            "-c",
            lic.to_str().expect("utf-8"),
            "--port",
            "0",
            "--state-dir",
        ])
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tallyd");
    let stderr = child.stderr.take().expect("stderr");
    let mut warnings = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.starts_with("tallyd: serving ") {
            break;
        }
        warnings.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let shown = lic.display().to_string();
    let long_warning = warnings
        .iter()
        .find(|l| l.starts_with(&format!("tallyd: {shown}:2: warning: INCREMENT \"LLL")))
        .unwrap_or_else(|| panic!("no warning for line 2: {warnings:?}"));
    assert!(
        long_warning.contains("can never be checked out"),
        "{long_warning}"
    );
    let bidi = warnings
        .iter()
        .find(|l| l.starts_with(&format!("tallyd: {shown}:3: warning:")))
        .unwrap_or_else(|| panic!("no warning for line 3: {warnings:?}"));
    assert!(
        bidi.contains("U+202E") && bidi.contains("can be checked out"),
        "{bidi}"
    );
}

/// Item 21: the demo's default state dir was one per user, shared by every
/// checkout of the repository (one demo's journal restored into another's).
/// Two copies of the binary now get two directories.
#[test]
fn two_builds_of_the_demo_get_two_state_dirs() {
    let scratch = Scratch::new("demo-dirs");
    let mut dirs = Vec::new();
    for copy in ["a", "b"] {
        let bin_dir = scratch.path(copy);
        std::fs::create_dir_all(&bin_dir).expect("mkdir");
        let bin = bin_dir.join("tallyd");
        std::fs::copy(env!("CARGO_BIN_EXE_tallyd"), &bin).expect("copy tallyd");
        let mut child = Command::new(&bin)
            .args(["--port", "0"])
            .env("XDG_STATE_HOME", scratch.path("xdg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the demo");
        let stderr = child.stderr.take().expect("stderr");
        let dir = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .take(20)
            .find_map(|l| {
                l.strip_prefix("tallyd: demo: journal in ")
                    .and_then(|r| r.split(" (").next())
                    .map(str::to_string)
            });
        let _ = child.kill();
        let _ = child.wait();
        dirs.push(dir.unwrap_or_else(|| panic!("copy {copy}: no demo journal line")));
    }
    assert_ne!(dirs[0], dirs[1]);
    for d in &dirs {
        assert!(d.contains("tally-demo-"), "{d}");
    }
}

/// Item 21: "1 checkouts kept", "1 lines skipped" in the debug log.
#[test]
fn log_lines_count_in_the_singular_too() {
    let scratch = Scratch::new("plural-opt");
    let opt = scratch.path("one.opt");
    std::fs::write(&opt, "MAX 2 MPM_ADV_RC USER bob\nBOGUS line\n").expect("write options");
    let t = Tallyd::start(LICENSE, &["--options", opt.to_str().expect("utf-8")]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC alice pc1 h1 linger=600")
        .starts_with("OK "));
    assert_eq!(c.req("REREAD"), "OK REREAD 1 0");
    let want_options = format!(
        "(lmgrd) Options file: {} (1 rule, 1 line skipped)",
        opt.display()
    );
    let want_reread = format!(
        "(lmgrd) Reread license file {}: 1 pool, 0 lines rejected, 1 checkout kept, 0 removed",
        t.license_path().display()
    );
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let lines = t.log_lines();
            lines.contains(&want_options) && lines.contains(&want_reread)
        }),
        "{:?}",
        t.log_lines()
    );
}
