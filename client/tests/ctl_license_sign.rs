//! `tallyctl license keygen` and `tallyctl license sign`, round trip
//! through `tallyctl check-license --vendor-key`, by running the binary on
//! files in a temporary directory (docs/license-file.md, "Signed license
//! files").

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tallyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .env("TALLYCTL_NOW", "2026-04-22T11:08:00+02:00")
        .output()
        .expect("run tallyctl")
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tallyctl-sign-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const LICENSE: &str = "\
SERVER lic1 ANY 27000
VENDOR acme
FEATURE Alpha acme 1.0 permanent 2 SIGN=\"0A1B 2C3D\"
INCREMENT Beta acme 1.0 31-dec-2030 3 \\
    ISSUED=1-jan-2026
";

#[test]
fn keygen_sign_and_check_license_round_trip() {
    let d = dir("round");
    let prefix = d.join("acme");
    let out = tallyctl(&["license", "keygen", "--out", s(&prefix)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (key, public) = (d.join("acme.key"), d.join("acme.pub"));
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is private");
    assert!(std::fs::read_to_string(&public)
        .expect("pub")
        .starts_with("tally-vendor-public-key v1\n"));
    // keygen never overwrites.
    let again = tallyctl(&["license", "keygen", "--out", s(&prefix)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    let input = d.join("in.lic");
    std::fs::write(&input, LICENSE).expect("write");
    let out = tallyctl(&["license", "sign", "--key", s(&key), s(&input)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("signed 2 lines"));
    let signed = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(signed.matches("TALLY_SIG=").count(), 2);
    assert!(signed.contains("SIGN=\"0A1B 2C3D\" TALLY_SIG="), "{signed}");
    let signed_path = d.join("out.lic");
    std::fs::write(&signed_path, &signed).expect("write");

    let out = tallyctl(&["check-license", s(&signed_path), "--vendor-key", s(&public)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("line 3: FEATURE Alpha: signature valid\n"),
        "{text}"
    );
    assert!(
        text.contains("line 4: INCREMENT Beta: signature valid\n"),
        "{text}"
    );

    // Without the key: listed as not checked, and the file is clean.
    let out = tallyctl(&["check-license", s(&signed_path)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("line 3: FEATURE Alpha: signature not checked (signed; no --vendor-key)"),
        "{text}"
    );

    // A raised count: bad, rejected (exit 1), Alpha makes no pool.
    let tampered = d.join("tampered.lic");
    std::fs::write(&tampered, signed.replace("permanent 2 ", "permanent 9 ")).expect("write");
    let out = tallyctl(&[
        "check-license",
        s(&tampered),
        "--vendor-key",
        s(&public),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let pools: Vec<&str> = v["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| p["feature"].as_str().expect("name"))
        .collect();
    assert_eq!(pools, ["Beta"]);
    assert_eq!(v["signatures"][0]["status"], "bad");
    assert_eq!(v["signatures"][0]["line"], 3);
    assert!(v["signatures"][0]["reason"].is_string());
    assert_eq!(v["signatures"][1]["status"], "valid");
    assert!(v["signatures"][1].get("reason").is_none());
    assert_eq!(v["diagnostics"][0]["line"], 3);

    // The unsigned input with the key: every line missing.
    let out = tallyctl(&["check-license", s(&input), "--vendor-key", s(&public)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("line 3: FEATURE Alpha: signature missing\n"),
        "{text}"
    );
    // Another vendor's key: bad.
    let other = d.join("other");
    assert_eq!(
        tallyctl(&["license", "keygen", "--out", s(&other)])
            .status
            .code(),
        Some(0)
    );
    let out = tallyctl(&[
        "check-license",
        s(&signed_path),
        "--vendor-key",
        s(&d.join("other.pub")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("line 4: INCREMENT Beta: signature bad (")
    );
    // A private key is not a public key file.
    let out = tallyctl(&["check-license", s(&signed_path), "--vendor-key", s(&key)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("public key"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_file_without_signatures_lists_none() {
    let d = dir("plain");
    let input = d.join("plain.lic");
    std::fs::write(&input, LICENSE).expect("write");
    let out = tallyctl(&["check-license", s(&input), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v.get("signatures").is_none());
    let _ = std::fs::remove_dir_all(&d);
}
