//! tallyctl as a new operator uses it, against a real tallyd (issue 12,
//! items 13, 14, 17, 18): `remove` with the display lmstat shows, `lmstat
//! -S VENDOR`, license files in `LM_LICENSE_FILE`, IPv6 servers.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{eventually, Scratch, Tallyd};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR CITRIX
INCREMENT MPM_ADV_RC CITRIX 1.0 permanent 5
FEATURE OTHER_F OTHER 1.0 permanent 2
";

fn tallyctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .env_remove("TALLY_LICENSE_FILE")
        .env_remove("LM_LICENSE_FILE")
        .envs(env.iter().copied())
        .output()
        .expect("run tallyctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Item 13: lmstat prints `bob pc2 pc2` for a holder without a display;
/// `remove MPM_ADV_RC bob pc2 pc2` used to say "nothing removed".
#[test]
fn remove_takes_the_display_lmstat_prints() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC bob pc2 h1 linger=600")
        .starts_with("OK "));
    assert!(c
        .req("CHECKOUT MPM_ADV_RC carol pc3 h2 display=pc2 linger=600")
        .starts_with("OK "));
    let server = format!("{}@127.0.0.1", t.addr.port());
    let out = tallyctl(&["lmstat", "-a", "-c", &server], &[]);
    let report = text(&out.stdout);
    assert!(report.contains("    bob pc2 pc2 (v1.0)"), "{report}");

    let out = tallyctl(
        &["remove", "-c", &server, "MPM_ADV_RC", "bob", "pc2", "pc2"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("removed 1 instance"), "{out:?}");
    assert_eq!(c.holders("MPM_ADV_RC"), ["h2"]);
    // The host stands for an empty display only: carol on pc3 with display
    // pc2 is not bob's, and pc3 does not name her display.
    let out = tallyctl(
        &["remove", "-c", &server, "MPM_ADV_RC", "carol", "pc3", "pc3"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(c.holders("MPM_ADV_RC"), ["h2"]);
    // The debug log has no dangling ":" for an empty display (item 21).
    let line = "(CITRIX) REMOVING bob@pc2 from MPM_ADV_RC".to_string();
    assert!(
        eventually(Duration::from_secs(10), || t.log_lines().contains(&line)),
        "{:?}",
        t.log_lines()
    );
}

/// Item 14: `lmstat -S CITRIX` printed the header only.
#[test]
fn lmstat_s_lists_the_vendors_features_and_users() {
    let t = Tallyd::start(LICENSE, &[]);
    let mut c = t.connect();
    assert!(c
        .req("CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26 display=console linger=600")
        .starts_with("OK "));
    let server = format!("{}@127.0.0.1", t.addr.port());
    let out = tallyctl(&["lmstat", "-S", "CITRIX", "-c", &server], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = text(&out.stdout);
    assert!(
        report.contains(
            "Users of MPM_ADV_RC:  (Total of 5 licenses issued;  Total of 1 license in use)"
        ),
        "{report}"
    );
    assert!(
        report.contains("    USER15 GENE-VM-2K3 console (v1.0)"),
        "{report}"
    );
    assert!(
        !report.contains("OTHER_F"),
        "another vendor's feature: {report}"
    );
}

/// Item 17: `LM_LICENSE_FILE=/opt/foo.lic:PORT@localhost tallyctl lmstat -a`
/// aborted with "not a path"; lmutil skips the unreadable file, and reads a
/// readable one's SERVER line.
#[test]
fn license_files_in_lm_license_file_are_read_or_skipped() {
    let t = Tallyd::start(LICENSE, &[]);
    let value = format!("/opt/foo-does-not-exist.lic:{}@localhost", t.addr.port());
    let out = tallyctl(&["lmstat", "-a"], &[("LM_LICENSE_FILE", &value)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).contains("Users of MPM_ADV_RC:"),
        "{out:?}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("/opt/foo-does-not-exist.lic") && err.contains("skipped"),
        "{err}"
    );

    // A license file naming the server on its SERVER line is enough.
    let scratch = Scratch::new("client-lic");
    let client_lic = scratch.path("client.lic");
    std::fs::write(
        &client_lic,
        format!("SERVER localhost ANY {}\nUSE_SERVER\n", t.addr.port()),
    )
    .expect("write client license");
    let shown = client_lic.display().to_string();
    let out = tallyctl(&["lmstat", "-a"], &[("LM_LICENSE_FILE", &shown)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).contains("Users of MPM_ADV_RC:"),
        "{out:?}"
    );
    let out = tallyctl(&["ping", "-c", &shown], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// Item 18: `-c PORT@[::1]` and `-c PORT@::1` were refused although
/// `tallyd --listen ::1` works. Skipped where this machine has no ::1.
#[test]
fn tallyctl_reaches_an_ipv6_server() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback (::1) on this machine");
        return;
    }
    let t = Tallyd::start(LICENSE, &["--listen", "::1"]);
    let port = t.addr.port();
    for server in [format!("{port}@[::1]"), format!("{port}@::1")] {
        let out = tallyctl(&["ping", "-c", &server], &[]);
        assert_eq!(out.status.code(), Some(0), "{server}: {out:?}");
        assert!(
            text(&out.stdout).contains(&format!("PONG from {port}@[::1]")),
            "{out:?}"
        );
        let out = tallyctl(&["lmstat", "-a", "-c", &server], &[]);
        assert!(
            text(&out.stdout).contains("Users of MPM_ADV_RC:"),
            "{out:?}"
        );
    }
}
