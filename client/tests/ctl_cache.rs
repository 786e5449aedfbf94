//! `tallyctl cache verify` and `tallyctl cache show` on cache files the
//! library wrote (then tampered with): exit statuses and messages.

use std::path::Path;
use std::process::{Command, Output};

use tally_client::cache::{self, Identity};
use tally_client::offline::{Durability, Offline, Session, Verdict};
use tally_client::picture::Picture;

/// 2026-04-22 09:08:00 UTC.
const CONTACT: u64 = 1_776_848_880_000;

/// A PICTURE reply: seed 001's startup license and MPS_ENT_CCU.
const REPLY: &str = r#"OK {"stamp":"s1","server":"lic1","port":27000,"pools":[{"feature":"CITRIX","vendor":"CITRIX","version":"2038.0101","total":5000,"expiry":"permanent","expiry_ms":null,"start":null,"lt":"SYS","gp_hours":96,"cl":[],"sa":"0","odp":null,"overdraft":0,"dup_group":"HV","vendor_string":";LT=SYS;GP=96;SA=0;DUP_GROUP=HV","in_use":1},{"feature":"MPS_ENT_CCU","vendor":"CITRIX","version":"2007.0726","total":50,"expiry":"2026-07-26","expiry_ms":1785024000000,"start":null,"lt":"Eval","gp_hours":720,"cl":["ENT","ADV","STD","AST"],"sa":"0","odp":0,"overdraft":0,"dup_group":null,"vendor_string":";LT=Eval;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0","in_use":45}]}"#;

fn tallyctl(args: &[&str], now: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .env("TALLYCTL_NOW", now)
        .env_remove("TALLY_LICENSE_FILE")
        .env_remove("LM_LICENSE_FILE")
        .output()
        .expect("run tallyctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_cache(path: &Path) {
    let picture = Picture::parse_reply(REPLY).expect("picture");
    cache::store(path, &picture, &Identity::default(), CONTACT).expect("store");
}

#[test]
fn verify_accepts_a_valid_cache() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tally.ini");
    write_cache(&file);
    let f = file.to_str().expect("utf-8 path");
    let out = tallyctl(&["cache", "verify", f], "2026-04-22T11:08:00+02:00");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("{f}: valid: 2 features, 2 pools, stamp s1, last contact 2026-04-22T09:08:00Z\n")
    );
}

#[test]
fn verify_refuses_a_tampered_cache_naming_section_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tally.ini");
    write_cache(&file);
    let f = file.to_str().expect("utf-8 path");
    let text = std::fs::read_to_string(&file).expect("read");
    // 50 licenses become 500 under the old CRC.
    std::fs::write(&file, text.replace("NumLic=50\n", "NumLic=500\n")).expect("tamper");
    let out = tallyctl(&["cache", "verify", f], "2026-04-22T11:08:00+02:00");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let crc_line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("CRC="))
        .last()
        .map(|(i, _)| i + 1)
        .expect("crc");
    let want = format!("{f}: [PLD_POOL_LIC_NODE_1_0] line {crc_line}: CRC mismatch");
    assert!(
        stdout(&out).starts_with(&want),
        "{}\nwant {want}",
        stdout(&out)
    );
    // Garbage and an empty file.
    std::fs::write(&file, b"\xff\xfe garbage").expect("garbage");
    let out = tallyctl(&["cache", "verify", f], "2026-04-22T11:08:00+02:00");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        format!("{f}: [LSD] line 1: no line feed at the end: the file is cut off\n")
    );
    std::fs::write(&file, b"").expect("empty");
    let out = tallyctl(&["cache", "verify", f], "2026-04-22T11:08:00+02:00");
    assert_eq!(
        stdout(&out),
        format!("{f}: [LSD] line 1: the file is empty\n")
    );
    // Missing: unreadable, 2.
    let out = tallyctl(
        &["cache", "verify", "/nonexistent/tally.ini"],
        "2026-04-22T11:08:00Z",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn show_prints_pools_grace_left_and_offline_admissions() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tally.ini");
    write_cache(&file);
    let mut off = Offline::open(&file, Durability::Fsync).expect("open");
    let session = Session {
        feature: "MPS_ENT_CCU",
        version: None,
        user: "user51",
        host: "ts01",
        handle: "h51",
        count: 1,
    };
    // One day into the outage.
    let v = off
        .admit(&session, CONTACT + 24 * 3_600_000)
        .expect("admit");
    let Verdict::Admitted { admission, .. } = v else {
        panic!("refused: {v:?}");
    };
    drop(off);
    let f = file.to_str().expect("utf-8 path");
    let out = tallyctl(&["cache", "show", f], "2026-04-24T09:08:00Z");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("last contact 2026-04-22T09:08:00Z; grace measured at 2026-04-24T09:08:00Z"),
        "{text}"
    );
    assert!(text.contains("CITRIX               2038.0101       5000       0    96h  2026-04-26T09:08:00Z  2d 0h 0m"), "{text}");
    assert!(text.contains("MPS_ENT_CCU          2007.0726         50       1   720h  2026-05-22T09:08:00Z  28d 0h 0m"), "{text}");
    assert!(
        text.contains(&format!(
            "1 offline admission (1 not reconciled)\n  {} MPS_ENT_CCU user51@ts01 handle h51 count 1 since 2026-04-23T09:08:00Z\n",
            admission.id
        )),
        "{text}"
    );
    let out = tallyctl(&["cache", "show", f, "--json"], "2026-04-24T09:08:00Z");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["pools"][1]["held"], 1);
    assert_eq!(v["pools"][0]["grace_left_ms"], 2 * 24 * 3_600_000u64);
    assert_eq!(v["admissions"][0]["admission"]["id"], admission.id.as_str());
    assert_eq!(v["last_contact_ms"], CONTACT);
    // A damaged cache is not shown.
    std::fs::write(&file, b"[LSD]\n").expect("damage");
    let out = tallyctl(&["cache", "show", f], "2026-04-24T09:08:00Z");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("{f}: [LSD] line 1: no CRC line: the section is cut off or edited\n")
    );
}

#[test]
fn the_example_in_docs_client_md_is_a_valid_cache() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/client.md"))
        .expect("docs/client.md");
    let start = doc.find("```ini\n").expect("ini block") + "```ini\n".len();
    let end = doc[start..].find("```\n").expect("block end") + start;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("doc.ini");
    std::fs::write(&file, &doc[start..end]).expect("write");
    let out = tallyctl(
        &["cache", "verify", file.to_str().expect("utf-8")],
        "2026-04-22T09:08:00Z",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // And it is what the library writes for the picture it describes.
    let reply = REPLY.replace("\"stamp\":\"s1\"", "\"stamp\":\"3f9c0d2a\"");
    let picture = Picture::parse_reply(&reply).expect("picture");
    let cache = cache::Cache::from_picture(&picture, &Identity::default(), CONTACT);
    assert_eq!(cache.to_text(), &doc[start..end]);
}
