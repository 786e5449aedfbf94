//! The `tallyctl` binary end to end, against a tiny fake server (a
//! `TcpListener` on 127.0.0.1:0 answering canned lines) or against nothing.
//! `TALLYCTL_NOW` fixes the clock and time zone so output compares byte for
//! byte with the golden files. tallyd itself is not started here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::JoinHandle;

const NOW: &str = "2026-04-22T11:08:00+02:00";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The STATUS JSON of `status_mixed.json`, as one line.
fn status_line() -> String {
    let text = std::fs::read_to_string(data("status_mixed.json")).expect("fixture");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value.to_string()
}

/// A server that accepts one connection and, for each `(expected, reply)`,
/// reads one request line, and writes `reply`. Returns its port and a handle
/// yielding the request lines received.
fn fake_server(script: Vec<(String, String)>) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        let mut seen = Vec::new();
        for (expected, reply) in script {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            assert_eq!(line, expected);
            seen.push(line);
            writer
                .write_all(format!("{reply}\n").as_bytes())
                .expect("write");
        }
        seen
    });
    (port, handle)
}

fn script(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn tallyctl(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("TALLYCTL_NOW", NOW)
        .env_remove("TALLY_LICENSE_FILE")
        .env_remove("LM_LICENSE_FILE")
        .output()
        .expect("run tallyctl")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tallyctl"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(data(name)).expect("golden")
}

/// A fresh temporary directory for this test.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tallyctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn server_down_prints_lmutil_error_and_exits_241() {
    let out = tallyctl(
        bin(),
        &["lmstat", "-a", "-c", "1@127.0.0.1", "--timeout", "3"],
    );
    assert_eq!(
        stdout(&out),
        "tallyctl - Copyright (c) 2026 tally authors. All Rights Reserved.\n\
         Flexible License Manager status on Wed 4/22/2026 11:08\n\
         \n\
         [Detecting lmgrd processes...]\n\
         Error getting status: Cannot connect to license server system. \
         (-15,570:111 \"Connection refused\")\n"
    );
    assert_eq!(out.status.code(), Some(241));
}

#[test]
fn lmstat_a_against_fake_server_matches_golden() {
    let (port, server) = fake_server(vec![(
        "STATUS holders_limit=50000".to_string(),
        format!("OK {}", status_line()),
    )]);
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["lmstat", "-a", "-c", &c]);
    assert_eq!(
        stdout(&out),
        golden("lmstat_a_mixed.txt"),
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        server.join().ok(),
        Some(vec!["STATUS holders_limit=50000".to_string()])
    );
}

#[test]
fn invoked_as_lmutil_with_flags_in_exporter_order() {
    let dir = temp_dir("lmutil");
    let lmutil = dir.join("lmutil");
    std::os::unix::fs::symlink(bin(), &lmutil).expect("symlink");

    let (port, server) = fake_server(vec![(
        "STATUS holders_limit=50000".to_string(),
        format!("OK {}", status_line()),
    )]);
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(&lmutil, &["lmstat", "-c", &c, "-a"]);
    assert_eq!(
        stdout(&out),
        golden("lmstat_a_mixed.txt"),
        "{}",
        stderr(&out)
    );
    server
        .join()
        .expect("the fake server saw the requests it expected");

    let (port, server) = fake_server(vec![(
        "STATUS holders_limit=0".to_string(),
        format!("OK {}", status_line()),
    )]);
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(&lmutil, &["lmstat", "-c", &c, "-i"]);
    assert_eq!(
        stdout(&out),
        golden("lmstat_i_mixed.txt"),
        "{}",
        stderr(&out)
    );
    server
        .join()
        .expect("the fake server saw the requests it expected");

    let out = tallyctl(&lmutil, &["lmstat", "-v"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("lmstat v{} build ", env!("CARGO_PKG_VERSION")))),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tries_servers_in_order_and_reads_the_environment() {
    let (port, server) = fake_server(script(&[("PING", "PONG")]));
    let c = format!("1@127.0.0.1:{port}@127.0.0.1");
    let out = tallyctl(bin(), &["ping", "-c", &c]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("PONG from {port}@127.0.0.1 in ")));
    server
        .join()
        .expect("the fake server saw the requests it expected");

    let (port, server) = fake_server(script(&[("PING", "PONG")]));
    let out = Command::new(bin())
        .arg("ping")
        .env("TALLY_LICENSE_FILE", format!("{port}@127.0.0.1"))
        .env("LM_LICENSE_FILE", "1@127.0.0.1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    server
        .join()
        .expect("the fake server saw the requests it expected");

    let out = Command::new(bin())
        .arg("ping")
        .env_remove("TALLY_LICENSE_FILE")
        .env("LM_LICENSE_FILE", "/opt/flexlm/license.dat")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("LM_LICENSE_FILE") && err.contains("PORT@HOST"),
        "{err}"
    );
}

#[test]
fn forbidden_admin_request_is_printed_and_fails() {
    let reply = "ERR FORBIDDEN admin requests from 10.0.0.7 need AUTH";
    let (port, server) = fake_server(script(&[("REREAD", reply)]));
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["reread", "-c", &c]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(reply), "{}", stderr(&out));
    server
        .join()
        .expect("the fake server saw the requests it expected");
}

#[test]
fn admin_token_is_sent_before_the_request() {
    let dir = temp_dir("token");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").expect("write token");
    let (port, server) = fake_server(script(&[("AUTH s3cret", "OK AUTH"), ("DOWN", "OK DOWN")]));
    let c = format!("{port}@127.0.0.1");
    let token_arg = token.display().to_string();
    let out = tallyctl(bin(), &["down", "-c", &c, "--admin-token-file", &token_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        server.join().ok(),
        Some(vec!["AUTH s3cret".to_string(), "DOWN".to_string()])
    );

    let (port, server) = fake_server(script(&[
        ("AUTH s3cret", "ERR AUTH_FAILED wrong token"),
        ("DOWN", "ERR FORBIDDEN need AUTH"),
    ]));
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["down", "-c", &c, "--admin-token-file", &token_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ERR AUTH_FAILED wrong token"));
    server
        .join()
        .expect("the fake server saw the requests it expected");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn remove_by_user_and_by_handle() {
    let (port, server) = fake_server(script(&[("REMOVE F1 alice ws7 tty1", "OK REMOVED 2")]));
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["remove", "-c", &c, "F1", "alice", "ws7", "tty1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("removed 2 instances of F1"));
    server
        .join()
        .expect("the fake server saw the requests it expected");

    let (port, server) = fake_server(script(&[("REMOVE_HANDLE F1 17", "OK REMOVED 1")]));
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["remove", "-c", &c, "--handle", "17", "F1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    server
        .join()
        .expect("the fake server saw the requests it expected");

    let (port, server) = fake_server(script(&[("REMOVE F1 bob h d", "OK REMOVED 0")]));
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["remove", "-c", &c, "F1", "bob", "h", "d"]);
    assert_eq!(out.status.code(), Some(1));
    server
        .join()
        .expect("the fake server saw the requests it expected");

    // A field that would smuggle a second request never leaves the client.
    let out = tallyctl(
        bin(),
        &["remove", "-c", "1@127.0.0.1", "F1\nDOWN", "u", "h", "d"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_json_is_the_servers_line() {
    let line = status_line();
    let (port, server) = fake_server(vec![("STATUS".to_string(), format!("OK {line}"))]);
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["status", "--json", "-c", &c]);
    assert_eq!(stdout(&out), format!("{line}\n"));
    server
        .join()
        .expect("the fake server saw the requests it expected");

    let (port, server) = fake_server(vec![("STATUS".to_string(), format!("OK {line}"))]);
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["status", "-c", &c]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text.starts_with("tallyd 0.1.0 on lic1, port 27000"),
        "{text}"
    );
    assert!(
        text.contains("USER15@GENE-VM-2K3 display=console ticket=17"),
        "{text}"
    );
    server
        .join()
        .expect("the fake server saw the requests it expected");
}

/// A tallyd without holder paging refuses `holders_limit=` (`ERR
/// BAD_FIELD`): lmstat asks again the old way, on a new connection, and
/// prints the same report.
#[test]
fn lmstat_asks_an_older_server_the_old_way() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for reply in [
            "ERR BAD_FIELD unknown option \"holders_limit\" (expected from=, limit=)".to_string(),
            format!("OK {}", status_line()),
        ] {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            let mut line = String::new();
            reader.read_line(&mut line).expect("a request");
            seen.push(line.trim_end().to_string());
            writer
                .write_all(format!("{reply}\n").as_bytes())
                .expect("write");
        }
        seen
    });
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["lmstat", "-a", "-c", &c]);
    assert_eq!(
        stdout(&out),
        golden("lmstat_a_mixed.txt"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.join().ok(),
        Some(vec![
            "STATUS holders_limit=50000".to_string(),
            "STATUS".to_string()
        ])
    );
}

#[test]
fn garbage_status_reply_is_a_protocol_error() {
    let (port, server) = fake_server(script(&[("STATUS holders_limit=50000", "OK {not json")]));
    let c = format!("{port}@127.0.0.1");
    let out = tallyctl(bin(), &["lmstat", "-a", "-c", &c]);
    assert_eq!(out.status.code(), Some(244));
    assert!(stdout(&out).contains(
        "Error getting status: Invalid returned data from license server system. (-12,16)"
    ));
    server
        .join()
        .expect("the fake server saw the requests it expected");
}

#[test]
fn help_lists_the_subcommands() {
    let out = tallyctl(bin(), &["--help"]);
    let text = stdout(&out);
    for sub in [
        "lmstat",
        "status",
        "remove",
        "reread",
        "down",
        "ping",
        "hostid",
        "check-license",
    ] {
        assert!(text.contains(sub), "{sub} missing from --help:\n{text}");
    }
    assert_eq!(out.status.code(), Some(0));
}
