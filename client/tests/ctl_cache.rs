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

/// A loopback port nobody listens on.
fn dead_server() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("{port}@127.0.0.1")
}

#[test]
fn a_damaged_side_file_is_refused_with_the_way_out_and_salvaged() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tally.ini");
    // `agent checkout` runs on the system clock: a permanent pool, a
    // contact just now.
    let reply = REPLY.replace(
        r#""expiry":"2026-07-26","expiry_ms":1785024000000"#,
        r#""expiry":"permanent","expiry_ms":null"#,
    );
    let picture = Picture::parse_reply(&reply).expect("picture");
    let contact = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    cache::store(&file, &picture, &Identity::default(), contact).expect("store");
    let f = file.to_str().expect("utf-8 path");
    // The time `cache salvage` names the damaged file with.
    let now = "2026-04-23T09:08:00Z";
    let dead = dead_server();
    let checkout = |handle: &str| {
        tallyctl(
            &[
                "agent",
                "checkout",
                "MPS_ENT_CCU",
                "--user",
                "u",
                "--host",
                "ts1",
                "--handle",
                handle,
                "--cache",
                f,
                "-c",
                &dead,
            ],
            now,
        )
    };
    for h in ["h1", "h2", "h3"] {
        let o = checkout(h);
        assert!(stdout(&o).starts_with("OFFLINE MPS_ENT_CCU "), "{o:?}");
    }
    let side = format!("{f}.admissions");
    let text = std::fs::read_to_string(&side).expect("side");
    let damaged = text.replacen("\"h2\"", "\"hX\"", 1);
    std::fs::write(&side, &damaged).expect("damage");
    let line = damaged
        .lines()
        .position(|l| l.contains("\"hX\""))
        .expect("line")
        + 1;

    let o = checkout("h4");
    assert_eq!(o.status.code(), Some(241), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("REFUSED cache {side}: line {line}: CRC mismatch")),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with(&format!("; run `tallyctl cache salvage {f}` (keeps every intact record, sets the damaged side file aside; nothing is deleted)")),
        "{out}"
    );
    let o = tallyctl(&["agent", "reconcile", "--cache", f, "-c", &dead], now);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("run `tallyctl cache salvage {f}`")),
        "{o:?}"
    );

    let o = tallyctl(&["cache", "salvage", f], now);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let kept = format!("{side}.damaged-20260423T090800Z");
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!(
            "{side}: salvaged: kept {} records, dropped line {line} (CRC mismatch",
            damaged.lines().count() - 1
        )) && out.ends_with(&format!("; the damaged file is kept as {kept}\n")),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&kept).expect("kept"), damaged);
    let v = tallyctl(&["cache", "verify", f], now);
    assert_eq!(v.status.code(), Some(0), "{v:?}");
    // Offline use again, h1 and h3 still counted.
    let o = checkout("h4");
    assert!(stdout(&o).ends_with("(3 of 50 offline)\n"), "{o:?}");
    let o = tallyctl(&["cache", "salvage", f], now);
    assert_eq!(
        stdout(&o),
        format!("{side}: not damaged: nothing to salvage\n")
    );
}
