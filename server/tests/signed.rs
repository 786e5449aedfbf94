//! Black-box tests of vendor-signed license files: the real `tallyd` with
//! `--vendor-key` on a free loopback port (docs/license-file.md, "Signed
//! license files").

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, tallyd_bin, Scratch, Tallyd};
use tally_core::license::signature::{sign, VendorSigningKey};

const LICENSE: &str = "\
SERVER this_host ANY 27000
VENDOR acme
FEATURE Alpha acme 1.0 permanent 2 SIGN=\"0A1B 2C3D\"
INCREMENT Beta acme 1.0 permanent 3 \\
    ISSUED=1-jan-2026
";

fn key() -> VendorSigningKey {
    VendorSigningKey::from_seed([42; 32])
}

/// The signed license, and the public key file's path (in `scratch`).
fn signed(scratch: &Scratch) -> (String, String) {
    let s = sign(&key(), LICENSE);
    assert_eq!(s.lines, [3, 4]);
    let pub_path = scratch.path("vendor.pub");
    std::fs::write(&pub_path, key().public().to_text()).expect("write key");
    (s.text, pub_path.display().to_string())
}

#[test]
fn a_signed_file_is_served() {
    let keys = Scratch::new("sigkeys");
    let (text, pub_path) = signed(&keys);
    let t = Tallyd::start(&text, &["--vendor-key", &pub_path]);
    let mut c = t.connect();
    assert_eq!(c.req("CHECKOUT Alpha u1 h1 a"), "OK Alpha a 0");
    assert_eq!(c.req("CHECKOUT Beta u1 h1 b"), "OK Beta b 0");
    assert!(!t.log_lines().iter().any(|l| l.contains("line skipped")));
}

#[test]
fn a_tampered_line_is_refused_with_file_and_line_and_the_rest_serves() {
    let keys = Scratch::new("sigkeys");
    let (text, pub_path) = signed(&keys);
    let tampered = text.replace("1.0 permanent 2 SIGN", "1.0 permanent 20 SIGN");
    assert_ne!(tampered, text);
    let t = Tallyd::start(&tampered, &["--vendor-key", &pub_path]);
    let mut c = t.connect();
    assert!(
        c.req("CHECKOUT Alpha u1 h1 a")
            .starts_with("DENIED Alpha a NO_SUCH_FEATURE -5"),
        "the tampered line serves nothing"
    );
    assert_eq!(c.req("CHECKOUT Beta u1 h1 b"), "OK Beta b 0");
    let where_ = format!("{}:3:", t.license_path().display());
    let named = || {
        t.log_lines().iter().any(|l| {
            l.contains("line skipped")
                && l.contains(&where_)
                && l.contains("FEATURE Alpha: bad tally signature")
        })
    };
    assert!(
        eventually(Duration::from_secs(10), named),
        "{:#?}",
        t.log_lines()
    );
    // Without the key the same file serves every line (TALLY_SIG is an
    // attribute tally does not interpret).
    let plain = Tallyd::start(&tampered, &[]);
    assert_eq!(
        plain.connect().req("CHECKOUT Alpha u1 h1 a"),
        "OK Alpha a 0"
    );

    // A REREAD checks the new file the same way: Beta's count raised, and
    // Alpha restored as signed.
    let reread = text.replace("1.0 permanent 3 ", "1.0 permanent 30 ");
    std::fs::write(t.license_path(), reread).expect("rewrite license");
    assert_eq!(c.req("REREAD"), "OK REREAD 1 1");
    assert_eq!(c.req("CHECKOUT Alpha u1 h1 c"), "OK Alpha c 0");
    // Named at its TALLY_SIG=, on the record's second physical line (the
    // debug log is written by its own thread: wait for the line).
    let where_ = format!("{}:5:23:", t.license_path().display());
    let named = || {
        t.log_lines().iter().any(|l| {
            l.contains("line skipped") && l.contains(&where_) && l.contains("INCREMENT Beta")
        })
    };
    assert!(
        eventually(Duration::from_secs(10), named),
        "{:#?}",
        t.log_lines()
    );
}

#[test]
fn unsigned_lines_are_named_on_stderr_and_a_file_with_none_left_does_not_start() {
    let dir = Scratch::new("sigstderr");
    let (text, pub_path) = signed(&dir);
    let license = dir.path("mixed.lic");
    std::fs::write(
        &license,
        format!("{text}FEATURE Gamma acme 1.0 permanent 9\n"),
    )
    .expect("write license");
    let mut child = Command::new(tallyd_bin())
        .arg("-c")
        .arg(&license)
        .args(["--vendor-key", &pub_path, "--port", "0", "--state-dir"])
        .arg(dir.path("state"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tallyd");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut before_serving = Vec::new();
    for line in stderr.lines() {
        let line = line.expect("read stderr");
        let serving = line.starts_with("tallyd: serving ");
        before_serving.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let want = format!(
        "tallyd: warning: {}:6:1: FEATURE Gamma: no tally signature",
        license.display()
    );
    assert!(
        before_serving.iter().any(|l| l.starts_with(&want)),
        "{before_serving:#?}"
    );
    assert!(before_serving
        .last()
        .unwrap()
        .starts_with("tallyd: serving "));

    // A file with no line left does not start.
    let unsigned = dir.path("unsigned.lic");
    std::fs::write(&unsigned, LICENSE).expect("write license");
    let run = |key: &std::path::Path| {
        Command::new(tallyd_bin())
            .arg("-c")
            .arg(&unsigned)
            .arg("--vendor-key")
            .arg(key)
            .args(["--port", "0", "--state-dir"])
            .arg(dir.path("state"))
            .stdin(Stdio::null())
            .output()
            .expect("run tallyd")
    };
    let out = run(std::path::Path::new(&pub_path));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to serve"), "{stderr}");
    // A key file that is not one is refused, named.
    std::fs::write(dir.path("bad.pub"), "hello\n").expect("write");
    let out = run(&dir.path("bad.pub"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.pub") && stderr.contains("public key"),
        "{stderr}"
    );
}
