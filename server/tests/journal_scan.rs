//! The fuzzy snapshot under real concurrency: threads acting as event
//! loops grant, renew and release on one real engine and journal what they
//! do through the real journal thread (sync mode), which takes a snapshot
//! every few KiB, each a scan of the engine while the threads go on. Then
//! the state directory, read as recovery reads it, must hold exactly the
//! engine's lingering instances, with their deadlines and names.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::Scratch;
use tally_core::clock::SystemClock;
use tally_core::engine::{Engine, EngineConfig, GrantKind, Request};
use tally_core::license::parse_str;
use tally_server::journal::{self, files, Durability, Instance, Journal, Kept};

const LOOPS: usize = 4;
const KEYS_PER_LOOP: u64 = 200;
const OPS: usize = 20_000;

/// xorshift64*: a test's own deterministic randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn user(key: u64) -> String {
    // Every 50th name is too long for the table's copy.
    if key % 50 == 0 {
        format!("{key}-{}", "u".repeat(120))
    } else {
        format!("u{key}")
    }
}

#[test]
fn snapshot_scans_under_concurrent_grants_and_releases_recover_the_live_state() {
    let scratch = Scratch::new("journal-scan");
    let dir = scratch.path("state");
    journal::set_snapshot_every_bytes(8 << 10);
    let lic = parse_str("t", "FEATURE F v 1.0 permanent 100000\n");
    let engine = Arc::new(Engine::new(&lic, EngineConfig::default()));
    let lock = files::lock_dir(&dir).expect("lock");
    let polls: Vec<mio::Poll> = (0..LOOPS)
        .map(|_| mio::Poll::new().expect("poll"))
        .collect();
    let wakers = polls
        .iter()
        .map(|p| Arc::new(mio::Waker::new(p.registry(), mio::Token(0)).expect("waker")))
        .collect();
    let j = Journal::start(
        &dir,
        lock,
        1,
        engine.clone(),
        Kept::default(),
        Durability::Sync,
        wakers,
        Arc::new(SystemClock),
        |_| {},
    )
    .expect("journal");
    let start = Arc::new(Barrier::new(LOOPS));
    let threads: Vec<_> = (0..LOOPS)
        .map(|lp| {
            let (engine, start) = (engine.clone(), start.clone());
            let mut lj = j.for_loop(lp);
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (lp as u64 + 1));
                start.wait();
                let base = SystemClock.now();
                for n in 0..OPS {
                    let now = base + (n / 50) as u64;
                    let r = rng.next();
                    match r % 10 {
                        // A grant or renewal of one of this loop's keys.
                        0..=5 => {
                            let key = lp as u64 * KEYS_PER_LOOP + (r >> 8) % KEYS_PER_LOOP;
                            let (u, h) = (user(key), format!("k{key}"));
                            let mut req = Request::new("F", &u, "pc", &h);
                            req.linger_ms = [0, 60_000, 120_000, 1_000][(r >> 4) as usize % 4];
                            let Ok(g) = engine.checkout(&req, now) else {
                                continue;
                            };
                            let Some(id) = g.id else { continue };
                            if g.deadline.is_some() || g.kind == GrantKind::Renewed {
                                lj.out(&Instance {
                                    id: id.to_bits(),
                                    at_ms: now,
                                    linger_ms: req.linger_ms,
                                    deadline_ms: g.deadline,
                                    count: g.count,
                                    version: 0,
                                    renewed: g.kind == GrantKind::Renewed,
                                    names: req.names,
                                });
                            }
                        }
                        // A check-in of any loop's key.
                        _ => {
                            let key = (r >> 8) % (KEYS_PER_LOOP * LOOPS as u64);
                            let (u, h) = (user(key), format!("k{key}"));
                            if let Ok(rel) = engine.checkin("F", &u, "pc", "", &h) {
                                if rel.deadline.is_some() {
                                    lj.release(rel.id.to_bits(), now);
                                }
                            }
                        }
                    }
                    if r % 7 == 0 {
                        lj.send(); // the end of an event round
                    }
                }
                lj.wait_durable(Duration::from_secs(60));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("loop thread");
    }
    // Whatever snapshot is being written finishes; a crash now: read a
    // copy of the whole files as recovery does.
    std::thread::sleep(Duration::from_millis(300));
    let copy = scratch.path("copy");
    std::fs::create_dir_all(&copy).expect("copy dir");
    for e in std::fs::read_dir(&dir).expect("list") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.ends_with(".tly") {
            std::fs::copy(&p, copy.join(&name)).expect("copy");
        }
    }
    let rec = files::recover(&copy, false).expect("recover");
    let snapshot = rec.snapshot.clone().expect("a snapshot");
    assert!(
        !snapshot.ends_with("snapshot-0000000000000001.tly"),
        "periodic snapshots were taken while the loops ran: {snapshot:?}"
    );
    let got: HashMap<u64, (Option<u64>, String, String)> = rec
        .state
        .instances()
        .map(|i| {
            let v = (
                i.deadline_ms,
                i.names.user.to_string(),
                i.names.handle.to_string(),
            );
            (i.id, v)
        })
        .collect();
    let now = SystemClock.now();
    let mut want = HashMap::new();
    engine.for_each_lingering(now, |l| {
        let h = l.holder.handle().to_string();
        let key: u64 = h[1..].parse().expect("k<n>");
        want.insert(l.id.to_bits(), (Some(l.deadline_ms), user(key), h));
    });
    assert!(want.len() > 100, "a real load: {} lingering", want.len());
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    j.shutdown();
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for SystemClock {
    fn now(&self) -> u64 {
        tally_core::clock::Clock::now_ms(self)
    }
}
