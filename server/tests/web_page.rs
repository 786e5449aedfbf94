//! The status page (`GET /`) in a real browser: tallyd with `--http`, a
//! scripted state (two users' checkouts, a linger, a denial, a queued
//! checkout) and a seeded usage history (charts), then headless Chromium's `--dump-dom` of the page, checked
//! for the features, holders and figures, and a `--screenshot` kept under
//! the target directory (`<target>/web/status.png`: CI's artifact).
//!
//! Chromium is Debian's `chromium` (`scripts/install-chromium`); without
//! it the browser test is skipped with a message, unless
//! `TALLY_REQUIRE_CHROMIUM` is set (.ci/run sets it).

mod common;
mod served;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use served::{get, Served};

const LICENSE: &str = "\
VENDOR CITRIX
FEATURE CAD CITRIX 1.0 31-dec-2099 3
FEATURE SIM CITRIX 2.0 permanent 1
";

/// Longest one Chromium run may take before the test gives up on it.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(90);

/// `chromium`, if it is on PATH or `scripts/install-chromium` can install it.
fn chromium() -> Option<&'static str> {
    let found = || {
        Command::new("chromium")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found() {
        return Some("chromium");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-chromium");
    let _ = Command::new(script).status();
    found().then_some("chromium")
}

/// The target directory (`CARGO_TARGET_DIR`, else the one this test binary
/// was built in: `<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("<target>").to_path_buf()
}

/// Runs headless Chromium with `args` then `url`, within
/// [`CHROMIUM_LIMIT`]: its stdout.
fn run_chromium(bin: &str, args: &[&str], url: &str, profile: &Path) -> String {
    let mut child = Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--no-first-run", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if start.elapsed() > CHROMIUM_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} took longer than {CHROMIUM_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("chromium's stdout")
}

/// The scripted state: alice holds CAD; bob holds one with a linger (a
/// deadline, 10 minutes on) and SIM; a user named
/// `<script>alert(1)</script>` holds the last CAD; carl is denied SIM;
/// dave waits in SIM's queue. Returns the clients (closing them would
/// check their licenses in).
fn script(s: &Served) -> Vec<common::Client> {
    let mut alice = s.connect();
    let mut bob = s.connect();
    let mut carl = s.connect();
    let mut dave = s.connect();
    let mut odd = s.connect();
    assert!(alice
        .req("CHECKOUT CAD alice ws-a a1 display=:0")
        .starts_with("OK "));
    assert!(bob
        .req("CHECKOUT CAD bob ws-b b1 linger=600")
        .starts_with("OK "));
    assert!(bob.req("CHECKOUT SIM bob ws-b b2").starts_with("OK "));
    let r = odd.req("CHECKOUT CAD <script>alert(1)</script> ws-x x1");
    assert!(r.starts_with("OK "), "{r}");
    let r = carl.req("CHECKOUT SIM carl ws-c c1");
    assert!(r.starts_with("DENIED SIM c1 ALL_IN_USE"), "{r}");
    dave.send(b"CHECKOUT SIM dave ws-d d1 wait=600\n");
    assert!(
        common::eventually(Duration::from_secs(10), || {
            get(s.http, "/api/v1/status").1.contains("\"dave\"")
        }),
        "dave queued"
    );
    vec![alice, bob, carl, dave, odd]
}

#[test]
fn the_page_is_served_whole_with_the_state() {
    let s = Served::start("web-page", LICENSE);
    let _clients = script(&s);
    let (code, page) = get(s.http, "/");
    assert_eq!(code, 200);
    assert!(
        page.contains("<b class=\"in-use\">3</b> of <b class=\"total\">3</b> in use"),
        "{page}"
    );
    assert!(page.contains("<td class=\"user\">alice</td>"), "{page}");
    assert!(
        page.contains("<span id=\"denials-hour\">1</span>"),
        "{page}"
    );
    assert!(
        page.contains("<tr class=\"waiter\"><td>SIM</td><td>dave</td>"),
        "{page}"
    );
    assert!(!page.contains("<script"), "a user's name is text: {page}");
    assert!(
        page.contains("<td class=\"user\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"),
        "{page}"
    );
    assert!(page.contains("read-only: admin is tallyctl"));
    // Nothing to load from anywhere: no src=, href= or script.
    assert!(!page.contains("src=") && !page.contains("href="), "{page}");
    // Paged as /api/v1/status: one line a page, a link to the next.
    let (code, first) = get(s.http, "/?limit=1");
    assert_eq!(code, 200);
    assert!(first.contains("data-feature=\"CAD\"") && !first.contains("data-feature=\"SIM\""));
    assert!(first.contains("license-file lines 1 to 1 of 2"), "{first}");
    assert!(
        first.contains("<a href=\"?from=1&amp;limit=1\">next</a>"),
        "{first}"
    );
    let (_, second) = get(s.http, "/?from=1&limit=1");
    assert!(second.contains("data-feature=\"SIM\"") && !second.contains("data-feature=\"CAD\""));
    assert_eq!(get(s.http, "/?from=x").0, 400);
}

/// 89 days of usage before today in `state`'s usage.sqlite: CAD's peak
/// goes 1, 2, 3, 2, 1, ... of 3 licensed; SIM's 1 of 1 every other day.
fn seed_history(state: &Path) {
    use tally_server::usage::{day, db};
    let mut c = db::open_for_writing(&state.join(db::DB_FILE)).expect("create usage.sqlite");
    let today = chrono::Utc::now().timestamp_millis() as u64 / day::DAY_MS;
    let mut rows = Vec::new();
    for back in 1..90u64 {
        for (feature, licensed, peak) in [
            ("CAD", 3, [1, 2, 3, 2][(back % 4) as usize]),
            ("SIM", 1, back % 2),
        ] {
            rows.push(day::Row {
                day: today - back,
                feature: feature.into(),
                summary: day::DaySummary {
                    licensed: Some(licensed),
                    peak_in_use: peak,
                    checkouts: peak * 4,
                    ..Default::default()
                },
                new_users: vec!["seeded".into()],
                new_hosts: vec!["ws-seed".into()],
            });
        }
    }
    db::write_batch(&mut c, &rows).expect("seed usage.sqlite");
}

#[test]
fn chromium_renders_the_features_and_holders() {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("TALLY_REQUIRE_CHROMIUM").is_none(),
            "chromium is required (TALLY_REQUIRE_CHROMIUM) but missing"
        );
        eprintln!(
            "SKIPPED chromium_renders_the_features_and_holders: chromium is not on PATH and \
             scripts/install-chromium could not install it (apt-get install -y chromium)"
        );
        return;
    };
    let s = Served::start_seeded("web-chromium", LICENSE, seed_history);
    let _clients = script(&s);
    // REPORT flushes the log writer: today's row is in the history too.
    let r = s.connect().req("REPORT");
    assert!(r.starts_with("OK {"), "{r}");
    let url = format!("http://{}/", s.http);
    let out = target_dir().join("web");
    std::fs::create_dir_all(&out).expect("create <target>/web");
    let profile = out.join("chromium-profile");

    let dom = run_chromium(bin, &["--dump-dom"], &url, &profile);
    assert!(dom.contains("tallyd on "), "not the page: {dom}");
    for feature in ["data-feature=\"CAD\"", "data-feature=\"SIM\""] {
        assert!(dom.contains(feature), "{feature} missing: {dom}");
    }
    for holder in [
        "<td class=\"user\">alice</td><td class=\"host\">ws-a</td><td>:0</td>",
        "<td class=\"user\">bob</td><td class=\"host\">ws-b</td>",
    ] {
        assert!(dom.contains(holder), "{holder} missing: {dom}");
    }
    // bob's CAD lingers (a deadline), his SIM does not.
    assert_eq!(dom.matches("<tr class=\"holder\">").count(), 4, "{dom}");
    assert!(dom.contains("(in 9m "), "bob's linger deadline: {dom}");
    assert!(dom.contains("<span id=\"denials-hour\">1</span>"), "{dom}");
    assert!(dom.contains("dave"), "the queue: {dom}");
    // Charts from the usage history: 89 seeded days and today, each day
    // its own bar (CAD: the last 30 days and the last 90, twice each).
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 4, "{dom}");
    assert!(
        dom.contains("CAD: daily peak in use against licensed, last 90 days"),
        "{dom}"
    );
    let today = chrono::Utc::now().date_naive();
    assert!(
        dom.contains(&format!("<title>{today}: peak 3 of 3</title>")),
        "today's CAD: {dom}"
    );
    let cad =
        &dom[dom.find("data-feature=\"CAD\"").unwrap()..dom.find("data-feature=\"SIM\"").unwrap()];
    assert_eq!(
        cad.matches("<rect class=\"peak\"").count(),
        30 + 90,
        "{cad}"
    );
    // The browser built no script element out of the odd user's name.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );

    let png = out.join("status.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        bin,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,900",
        ],
        &url,
        &profile,
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    eprintln!("screenshot: {}", png.display());
}
