use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::offline::{Session, Verdict};
use crate::picture::sample;
use crate::{Client, Timeouts};

/// The last contact: 2026-04-22 09:08:00 UTC.
const T0: Millis = 1_776_848_880_000;

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    /// Admission ids counted (each once).
    ids: HashSet<String>,
    /// RECONCILE lines received, in order.
    lines: Vec<String>,
    /// Drop the connection instead of answering the first RECONCILE
    /// (having counted it): a lost reply.
    lose_first_reply: bool,
}

/// A server answering each line with `answer` (None: close the
/// connection), for at most 4 connections.
fn server(seen: Arc<Mutex<Seen>>, answer: fn(&str, &mut Seen) -> Option<String>) -> ServerAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().take(4).flatten() {
            let mut w = s.try_clone().expect("clone");
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                let reply = answer(&line, &mut seen.lock().expect("lock"));
                match reply {
                    Some(r) => {
                        let _ = w.write_all(r.as_bytes());
                    }
                    None => break,
                }
            }
        }
    });
    ServerAddr {
        port,
        host: "127.0.0.1".into(),
    }
}

/// A tally-like server with PICTURE (the sample picture) and RECONCILE
/// over a count of 2 (MPM_ADV_RC's), 1 already in use.
fn tally_like(line: &str, seen: &mut Seen) -> Option<String> {
    let w: Vec<&str> = line.split(' ').collect();
    Some(match w[0] {
        "PING" => "PONG\n".to_string(),
        "PICTURE" => format!("{}\n", sample().to_reply()),
        "RECONCILE" => {
            seen.lines.push(line.to_string());
            let id = w
                .iter()
                .find_map(|f| f.strip_prefix("id="))
                .unwrap_or_default()
                .to_string();
            let (f, h) = (w[1], w[4]);
            if !seen.ids.insert(id) {
                return Some(format!("OK DUPLICATE {f} {h}\n"));
            }
            if std::mem::take(&mut seen.lose_first_reply) {
                return None;
            }
            let in_use = 1 + seen.ids.len();
            if in_use > 2 {
                format!("OK OVERDRAFT {f} {h} 0 {}\n", in_use - 2)
            } else {
                format!("OK RECONCILED {f} {h} 0\n")
            }
        }
        _ => format!("ERR UNKNOWN_COMMAND {} is not a command\n", w[0]),
    })
}

fn client(s: ServerAddr) -> Client {
    Client::with_timeouts(vec![s], Timeouts::all(Duration::from_secs(5)))
}

fn dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().join("tally.ini");
    (d, p)
}

fn refreshed(r: Refresh) -> (Offline, Stored) {
    match r {
        Refresh::Stored { offline, stored } => (*offline, stored),
        Refresh::Unsupported { server } => panic!("unsupported at {server}"),
    }
}

#[test]
fn refresh_writes_the_cache_once_and_records_every_contact() {
    let (_d, cache) = dir();
    let mut c = client(server(Arc::default(), tally_like));
    let (_, stored) = refreshed(
        refresh(&mut c, &cache, &Identity::default(), T0, Durability::NoSync).expect("refresh"),
    );
    assert_eq!(stored, Stored::Written);
    let written = std::fs::read(&cache).expect("cache");
    let (off, stored) = refreshed(
        refresh(
            &mut c,
            &cache,
            &Identity::default(),
            T0 + 5,
            Durability::NoSync,
        )
        .expect("refresh"),
    );
    assert_eq!(stored, Stored::Unchanged);
    assert_eq!(std::fs::read(&cache).expect("cache"), written);
    assert_eq!(off.last_contact_ms(), T0 + 5);
    assert_eq!(off.cache().pools.len(), sample().pools.len());
}

#[test]
fn a_server_without_picture_leaves_the_cache_alone() {
    let (_d, cache) = dir();
    let s = server(Arc::default(), |l, _| {
        Some(match l {
            "PING" => "PONG\n".into(),
            _ => "ERR UNKNOWN_COMMAND PICTURE is not a command\n".into(),
        })
    });
    let mut c = client(s.clone());
    let r = refresh(&mut c, &cache, &Identity::default(), T0, Durability::NoSync).expect("ok");
    assert!(matches!(r, Refresh::Unsupported { server } if server == s));
    assert!(!cache.exists());
    // The connection is still good for the online path.
    assert_eq!(c.ping().expect("ping"), s);
}

#[test]
fn a_cut_off_or_garbage_picture_is_an_error_and_nothing_is_written() {
    for reply in [
        "OK {\"stamp\":\"s1\",\"server\":\"lic1\",\"po\n",
        "OK \u{1}garbage\n",
        "HELLO\n",
    ] {
        let (_d, cache) = dir();
        let seen = Arc::new(Mutex::new(Seen::default()));
        // The reply to PICTURE comes from the line itself: a fn pointer
        // cannot capture, so the garbage is chosen by a marker in Seen.
        seen.lock().expect("lock").lines.push(reply.to_string());
        let s = server(seen, |l, seen| {
            Some(match l {
                "PING" => "PONG\n".into(),
                _ => seen.lines[0].clone(),
            })
        });
        let mut c = client(s);
        let e = refresh(&mut c, &cache, &Identity::default(), T0, Durability::NoSync)
            .expect_err("refused");
        assert!(
            matches!(e, JoinError::Client(ClientError::BadReply { .. })),
            "{reply:?}: {e}"
        );
        assert!(!cache.exists());
    }
}

/// A cache of the sample picture with `n` MPM_ADV_RC sessions admitted
/// offline (its count is 2).
fn admitted(cache: &Path, n: usize) -> Offline {
    let mut c = client(server(Arc::default(), tally_like));
    let (mut off, _) = refreshed(
        refresh(&mut c, cache, &Identity::default(), T0, Durability::NoSync).expect("refresh"),
    );
    for i in 0..n {
        let handle = format!("h{i}");
        let s = Session {
            feature: "MPM_ADV_RC",
            version: None,
            user: "u",
            host: "ts1",
            handle: &handle,
            count: 1,
        };
        let v = off
            .admit_lingering(&s, Some(3_600_000), T0 + 1 + i as u64)
            .expect("admit");
        assert!(matches!(v, Verdict::Admitted { .. }), "{v:?}");
    }
    off
}

#[test]
fn reconcile_reports_each_admission_once_and_marks_it() {
    let (_d, cache) = dir();
    let mut off = admitted(&cache, 2);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut c = client(server(seen.clone(), tally_like));
    let report = reconcile(&mut c, &mut off).expect("reconcile");
    assert_eq!(report.counts(), (1, 1, 0, 0), "{report:?}");
    assert_eq!((report.excess(), report.left), (1, 0));
    let lines: Vec<String> = report.outcomes.iter().map(ToString::to_string).collect();
    assert!(
        lines[0].starts_with("RECONCILED MPM_ADV_RC h0 u@ts1 started "),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("OVERDRAFT MPM_ADV_RC h1 ") && lines[1].ends_with(" excess 1"));
    let sent = seen.lock().expect("lock").lines.clone();
    let id0 = &off.ledger().entries[0].admission.id;
    assert_eq!(
        sent[0],
        format!(
            "RECONCILE MPM_ADV_RC u ts1 h0 start={} id={id0} linger=3600",
            T0 + 1
        )
    );
    // Marked: a second reconcile (also from a new process) sends nothing.
    assert!(reconcile(&mut c, &mut off)
        .expect("again")
        .outcomes
        .is_empty());
    let mut reopened = Offline::open(&cache, Durability::NoSync).expect("open");
    assert!(reopened.pending().is_empty());
    assert!(reconcile(&mut c, &mut reopened)
        .expect("again")
        .outcomes
        .is_empty());
    assert_eq!(seen.lock().expect("lock").lines.len(), 2);
}

#[test]
fn a_lost_reply_is_sent_again_and_counted_once() {
    let (_d, cache) = dir();
    let mut off = admitted(&cache, 2);
    let seen = Arc::new(Mutex::new(Seen {
        lose_first_reply: true,
        ..Seen::default()
    }));
    let mut c = client(server(seen.clone(), tally_like));
    c.ping().expect("connected");
    let report = reconcile(&mut c, &mut off).expect("reconcile");
    // The first reply was lost with the connection: the client reconnected
    // and sent it again; the server knew the id.
    assert_eq!(report.counts(), (0, 1, 1, 0), "{report:?}");
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.lines.len(), 3);
        assert_eq!(seen.lines[0], seen.lines[1]);
        assert_eq!(seen.ids.len(), 2);
    }
    assert!(off.pending().is_empty());
}

#[test]
fn a_reply_lost_on_a_fresh_connection_stays_pending_and_counts_once_later() {
    let (_d, cache) = dir();
    let mut off = admitted(&cache, 2);
    let seen = Arc::new(Mutex::new(Seen {
        lose_first_reply: true,
        ..Seen::default()
    }));
    let mut c = client(server(seen.clone(), tally_like));
    let report = reconcile(&mut c, &mut off).expect("reconcile");
    assert!(report.stopped.is_some() && report.left == 2, "{report:?}");
    // The next reconcile sends it again: DUPLICATE, then the second one.
    let report = reconcile(&mut c, &mut off).expect("again");
    assert_eq!(report.counts(), (0, 1, 1, 0), "{report:?}");
    assert_eq!(seen.lock().expect("lock").ids.len(), 2);
}

#[test]
fn a_side_file_not_marked_sends_again_and_the_server_counts_once() {
    let (_d, cache) = dir();
    let side = crate::offline::side_file_path(&cache);
    let mut off = admitted(&cache, 2);
    let before = std::fs::read(&side).expect("side");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut c = client(server(seen.clone(), tally_like));
    assert_eq!(
        reconcile(&mut c, &mut off).expect("1").counts(),
        (1, 1, 0, 0)
    );
    // As if the marks never reached the disk (a crash before they did).
    drop(off);
    std::fs::write(&side, before).expect("restore");
    let mut off = Offline::open(&cache, Durability::NoSync).expect("open");
    assert_eq!(off.pending().len(), 2);
    assert_eq!(
        reconcile(&mut c, &mut off).expect("2").counts(),
        (0, 0, 2, 0)
    );
    assert_eq!(seen.lock().expect("lock").ids.len(), 2);
}

#[test]
fn no_server_leaves_everything_pending() {
    let (_d, cache) = dir();
    let mut off = admitted(&cache, 2);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = ServerAddr {
        port: l.local_addr().expect("addr").port(),
        host: "127.0.0.1".into(),
    };
    drop(l);
    let report = reconcile(&mut client(dead), &mut off).expect("reconcile");
    assert!(report.outcomes.is_empty());
    assert!(report
        .stopped
        .as_ref()
        .is_some_and(ClientError::is_unreachable));
    assert_eq!(report.left, 2);
    assert!(report
        .summary()
        .contains("2 pending (stopped: no license server answered"));
}

#[test]
fn a_garbled_reconcile_reply_is_a_failure_left_pending() {
    let (_d, cache) = dir();
    let mut off = admitted(&cache, 1);
    let s = server(Arc::default(), |l, _| {
        Some(
            if l == "PING" {
                "PONG\n"
            } else {
                "OK RECONCILED\n"
            }
            .into(),
        )
    });
    let report = reconcile(&mut client(s), &mut off).expect("reconcile");
    assert_eq!(report.counts(), (0, 0, 0, 1));
    assert!(report.outcomes[0]
        .to_string()
        .starts_with("FAILED MPM_ADV_RC h0 "));
    assert_eq!(off.pending().len(), 1);
}

#[test]
fn a_denied_reconcile_is_rejected_for_good_and_no_longer_counts() {
    let (_d, cache) = dir();
    let mut off = admitted(&cache, 2);
    let s = server(Arc::default(), |l, _| {
        Some(if l == "PING" {
            "PONG\n".into()
        } else if l.contains(" h0 ") {
            "DENIED MPM_ADV_RC h0 EXPIRED -10 the license expired on 2026-07-26\n".into()
        } else {
            "OK RECONCILED MPM_ADV_RC h1 0\n".into()
        })
    });
    let report = reconcile(&mut client(s), &mut off).expect("reconcile");
    assert_eq!(report.counts(), (1, 0, 0, 0), "{report:?}");
    assert_eq!((report.rejected(), report.left), (1, 0));
    let line = report.outcomes[0].to_string();
    assert!(
        line.starts_with("REJECTED MPM_ADV_RC h0 EXPIRED u@ts1 started "),
        "{line}"
    );
    assert!(
        report
            .summary()
            .contains(", 1 rejected, 0 failed; 0 pending"),
        "{}",
        report.summary()
    );
    assert!(off.pending().is_empty());
    // Recorded: another process sees it rejected, not pending, not held.
    let off = Offline::open(&cache, Durability::NoSync).expect("reopen");
    assert!(off.pending().is_empty());
    assert_eq!(off.ledger().entries[0].rejected.as_deref(), Some("EXPIRED"));
    assert!(off
        .ledger()
        .held(&off.cache().pools)
        .iter()
        .all(|&n| n == 0));
}
