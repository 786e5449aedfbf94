//! `tallyctl agent checkout` / `agent reconcile` and the offline cache,
//! against scripted servers (and, in `seed001`, the real tallyd).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

/// A server answering each request line by its first word, per `answer`
/// (at most 8 connections).
fn scripted(answer: fn(&str) -> String) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().take(8).flatten() {
            let mut w = s.try_clone().expect("clone");
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                if w.write_all(answer(&line).as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    format!("{port}@127.0.0.1")
}

fn tallyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tallyctl"))
        .args(args)
        .env_remove("TALLY_LICENSE_FILE")
        .env_remove("LM_LICENSE_FILE")
        .output()
        .expect("run tallyctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_server_without_picture_checks_out_and_says_the_cache_is_not_refreshed() {
    let server = scripted(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        match w[0] {
            "PING" => "PONG\n".into(),
            "CHECKOUT" => format!("OK {} {} 0\n", w[1], w[4]),
            _ => format!("ERR UNKNOWN_COMMAND {} is not a command\n", w[0]),
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("c.ini");
    let cache_s = cache.to_string_lossy().into_owned();
    let o = tallyctl(&[
        "agent", "checkout", "F", "--user", "u", "--host", "h", "--handle", "x", "--cache",
        &cache_s, "-c", &server,
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(text(&o.stdout).starts_with("OK F x deadline 0 "), "{o:?}");
    let err = text(&o.stderr);
    assert_eq!(
        err,
        format!(
            "tallyctl: {server} does not answer PICTURE (ERR UNKNOWN_COMMAND): the cache \
             {cache_s} is not refreshed\n"
        )
    );
    assert!(!cache.exists());
}

#[test]
fn a_cut_off_picture_leaves_the_checkout_ok_and_the_cache_unwritten() {
    let server = scripted(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        match w[0] {
            "PING" => "PONG\n".into(),
            "CHECKOUT" => format!("OK {} {} 0\n", w[1], w[4]),
            _ => {
                "OK {\"stamp\":\"s1\",\"server\":\"lic1\",\"port\":27000,\"pools\":[{\"fea\n".into()
            }
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("c.ini");
    let cache_s = cache.to_string_lossy().into_owned();
    let o = tallyctl(&[
        "agent", "checkout", "F", "--user", "u", "--host", "h", "--handle", "x", "--cache",
        &cache_s, "-c", &server,
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let err = text(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "tallyctl: the cache {cache_s} is not refreshed: {server}: "
        )) && err.contains("cut off"),
        "{err}"
    );
    assert!(!cache.exists());
}
