//! Black-box tests of the load generator against a real tallyd (and a real
//! redis-server when one is installed). They check what was counted, never
//! how fast: performance is measured by `bench/run`, not asserted.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tally_bench::load::{self, Timing, Workload};
use tally_bench::servers::{self, Placement, TallydSpec};
use tally_bench::status;
use tally_bench::wire::{Conn, Encoder, Op, Outcome, Target};

const SHORT: Timing = Timing {
    warmup_s: 0.05,
    seconds: 0.2,
};

/// target/<profile>/tallyd, built first if this test run did not build it.
fn tallyd_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join("tallyd");
    if !bin.is_file() {
        let release = dir.ends_with("release");
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "-p", "tally-server", "--bin", "tallyd"]);
        if release {
            c.arg("--release");
        }
        assert!(c.status().expect("cargo build tallyd").success());
    }
    bin
}

fn tallyd() -> servers::Running {
    servers::start_tallyd(
        &TallydSpec {
            bin: tallyd_bin(),
            seats: 10_000,
            workers: 1,
            extra: vec![],
        },
        &Placement { server_core: None },
    )
    .expect("start tallyd")
}

fn tally_enc() -> Encoder {
    Encoder {
        target: Target::Tally,
        sha: String::new(),
        limit: 10_000,
    }
}

#[test]
fn closed_and_open_loops_count_every_reply_ok_against_tallyd() {
    let t = tallyd();
    let enc = tally_enc();
    for work in [Workload::Pairs { linger_s: 0 }, Workload::Renew] {
        let m = load::closed_loop(t.addr, &enc, work, 4, 8, SHORT).expect("closed loop");
        assert!(m.ok > 0, "{work:?}: {}", m.line());
        assert_eq!((m.denied, m.err), (0, 0), "{work:?}: {}", m.line());
        let m = load::open_loop(t.addr, &enc, work, 2, 400.0, SHORT).expect("open loop");
        // 400/s for 0.2 s: about 80 requests in the window (a schedule
        // boundary may add or drop one per connection), all answered OK.
        assert!((78..=82).contains(&m.ok), "{work:?}: {}", m.line());
        assert_eq!((m.denied, m.err), (0, 0));
    }
}

#[test]
fn server_cpu_per_request_is_read_from_the_server_process() {
    let t = tallyd();
    let enc = tally_enc();
    let work = Workload::Pairs { linger_s: 0 };
    // Without a pid: no figure.
    let m = load::closed_loop(t.addr, &enc, work, 4, 8, SHORT).expect("closed loop");
    assert_eq!(m.cpu_us_per_req, None);
    // With tallyd's: a figure, and (the clock ticks at 10 ms) one that
    // moves off zero once tallyd has served enough; a few tries at most.
    let mut seen = Vec::new();
    for _ in 0..10 {
        let m = load::closed_loop_cpu(t.addr, t.pid(), &enc, work, 4, 8, SHORT).expect("closed");
        assert!(m.ok > 0 && m.err == 0, "{}", m.line());
        let cpu = m
            .cpu_us_per_req
            .expect("a CPU figure when the pid is given");
        assert!(cpu.is_finite() && cpu >= 0.0, "{}", m.line());
        seen.push(cpu);
        if cpu > 0.0 {
            break;
        }
    }
    assert!(
        seen.iter().any(|&c| c > 0.0),
        "tallyd never used CPU: {seen:?}"
    );
    let m = load::open_loop_cpu(t.addr, t.pid(), &enc, work, 2, 400.0, SHORT).expect("open");
    assert!(m.cpu_us_per_req.is_some(), "{}", m.line());
    // A pid that is not there: an error, not a made-up figure.
    let gone = {
        let mut c = Command::new("true").spawn().expect("spawn true");
        let pid = c.id();
        c.wait().expect("reap");
        pid
    };
    assert!(load::closed_loop_cpu(t.addr, gone, &enc, work, 2, 1, SHORT).is_err());
}

#[test]
fn a_full_pool_is_counted_denied_not_err() {
    // 10,000 seats; 4 connections x 32 renewals hold 128: fine. Hold the
    // rest, then every further new checkout is DENIED.
    let t = tallyd();
    let enc = tally_enc();
    load::hold_lingering(t.addr, &enc, 10_000, "fill", 3600).expect("fill the pool");
    let m = load::closed_loop(t.addr, &enc, Workload::Pairs { linger_s: 0 }, 2, 4, SHORT)
        .expect("closed loop");
    assert_eq!(m.ok, 0, "{}", m.line());
    // Acquires are denied; the releases of what was never held are errors.
    assert!(m.denied > 0 && m.err > 0, "{}", m.line());
}

#[test]
fn status_phase_reads_whole_replies_and_answers_every_probe() {
    let features = 300;
    let t = servers::start_tallyd_licensed(
        &TallydSpec {
            bin: tallyd_bin(),
            seats: 0,
            workers: 1,
            extra: vec![],
        },
        &status::license(features),
        &Placement { server_core: None },
    )
    .expect("start tallyd");
    // Every 10th feature: S000000, S000010, ..., S000290.
    assert_eq!(
        status::hold_holders(t.addr, features, 10).expect("hold"),
        30
    );
    let mut c = Conn::connect(t.addr, false).expect("connect");
    let one = c.request_line("STATUS S000290").expect("STATUS S000290");
    assert!(one.contains("\"handle\":\"st290\""), "{one}");
    let none = c.request_line("STATUS S000291").expect("STATUS S000291");
    assert!(none.contains("\"holders\":[]"), "{none}");
    let alone = status::phase(t.addr, 0, SHORT).expect("phase alone");
    assert_eq!(alone.status.replies, 0);
    let p = status::phase(t.addr, 2, SHORT).expect("phase with STATUS");
    for m in [&alone.ping, &alone.pair, &p.ping, &p.pair] {
        assert!(m.ok > 0, "{}", m.line());
        assert_eq!((m.denied, m.err), (0, 0), "{}", m.line());
    }
    assert!(p.status.replies > 0);
    assert_eq!(p.status.err, 0);
    // A whole reply: every feature's entry (each over 100 bytes) and its
    // newline, the 30 holders included.
    let full = c.request_line("STATUS").expect("STATUS");
    assert!(full.len() > features * 100, "{} bytes", full.len());
    assert_eq!(full.matches("\"handle\":\"st").count(), 30);
    let size = p.status.reply_bytes();
    assert!(
        (size - full.len() as f64 - 1.0).abs() < 64.0,
        "counted {size} B a reply, STATUS here is {} B",
        full.len() + 1
    );
    // The probe's pair checked its license in every time.
    let f = c.request_line("STATUS F").expect("STATUS F");
    assert!(f.contains("\"in_use\":0"), "{f}");
}

#[test]
fn storm_and_expiry_complete_against_tallyd() {
    let t = tallyd();
    let s = load::storm(t.addr, &tally_enc(), 20, Duration::from_millis(200), 4).expect("storm");
    assert_eq!(s.completed, 20, "{}", s.m.line());
    assert_eq!(s.m.ok, 40);
    load::hold_lingering(t.addr, &tally_enc(), 100, "bg", 3600).expect("background");
    let l = load::expiry(t.addr, 2, 50, "t").expect("expiry");
    assert_eq!(l.samples_us.len(), 2, "on time");
    assert_eq!(l.early, 0, "granted before the holder's deadline");
}

#[test]
fn redis_semaphore_grants_up_to_its_limit_and_renews() {
    let Some(bin) = servers::find_redis() else {
        eprintln!("{}", servers::redis_missing_message());
        return;
    };
    let r = servers::start_redis(&bin, &Placement { server_core: None }, 100).expect("redis");
    let enc = Encoder {
        target: Target::RedisLua,
        sha: r.sha.clone(),
        limit: 2,
    };
    let mut c = Conn::connect(r.server.addr, true).expect("connect");
    let mut ask = |op: Op<'_>| {
        let mut b = Vec::new();
        enc.encode(op, &mut b);
        c.send(&b).expect("send");
        c.outcome().expect("reply")
    };
    let acq = |h| Op::Acquire {
        feature: "F",
        handle: h,
        linger_s: 60,
    };
    assert_eq!(ask(acq("a")), Outcome::Ok);
    assert_eq!(ask(acq("b")), Outcome::Ok);
    assert_eq!(ask(acq("c")), Outcome::Denied, "limit 2");
    assert_eq!(ask(acq("a")), Outcome::Ok, "a renewal of a held handle");
    assert_eq!(
        ask(Op::Release {
            feature: "F",
            handle: "a"
        }),
        Outcome::Ok
    );
    assert_eq!(ask(acq("c")), Outcome::Ok, "a seat came free");
    // The same closed loop drives both Redis targets without errors.
    r.flush().expect("flush");
    for target in [Target::RedisLua, Target::RedisSet] {
        let enc = Encoder {
            target,
            sha: r.sha.clone(),
            limit: 10_000,
        };
        let m = load::closed_loop(
            r.server.addr,
            &enc,
            Workload::Pairs { linger_s: 0 },
            2,
            8,
            SHORT,
        )
        .expect("closed loop");
        assert!(m.ok > 0, "{}: {}", target.name(), m.line());
        assert_eq!((m.denied, m.err), (0, 0), "{}: {}", target.name(), m.line());
    }
}

#[test]
fn the_scraper_reads_whole_metrics_from_a_tallyd_with_http() {
    let port = servers::free_port().expect("a free port");
    let http: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let t = servers::start_tallyd(
        &TallydSpec {
            bin: tallyd_bin(),
            seats: 10_000,
            workers: 1,
            extra: vec!["--http".into(), http.to_string()],
        },
        &Placement { server_core: None },
    )
    .expect("start tallyd");
    let scraper = tally_bench::scrape::Scraper::start(http, Duration::from_millis(20));
    let m = load::closed_loop(
        t.addr,
        &tally_enc(),
        Workload::Pairs { linger_s: 0 },
        2,
        1,
        SHORT,
    )
    .expect("closed loop");
    let st = scraper.stop();
    assert!(m.ok > 0 && m.err == 0, "{}", m.line());
    assert!(st.ok > 0, "{st:?}");
    assert_eq!(st.failed, 0, "{st:?}");
    assert!(st.mean_bytes > 1000.0, "a whole /metrics: {st:?}");
}
