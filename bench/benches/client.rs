//! The library's own overhead: one checkout round trip (a renewal: the
//! same handle and linger again, so nothing accumulates) over loopback to a
//! private tallyd, through `tally_client::Client` and through a raw socket
//! sending the same request line and reading the reply line, same run,
//! same server.
//!
//! `cargo build --release -p tally-server --bin tallyd && cargo bench -p
//! tally-bench --bench client` (`TALLYD=/path/to/tallyd` to pick another
//! binary; by default the `tallyd` of this bench's target directory).
//! tallyd runs with `--durability off`: a renewal is journaled, and a
//! grouped fsync per reply would measure the disk, not the client.

#![forbid(unsafe_code)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_bench::servers::{start_tallyd_licensed, Placement, TallydSpec};
use tally_client::{Checkout, Client, Reply, ServerAddr, Timeouts};

const LICENSE: &str = "INCREMENT F BENCH 1.0 permanent 100\n";
const LINE: &str = "CHECKOUT F u h bench linger=600";

/// `$TALLYD`, else `<target>/release/tallyd` (this bench runs from
/// `<target>/release/deps`).
fn tallyd() -> PathBuf {
    if let Some(p) = std::env::var_os("TALLYD") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the bench's path");
    let deps = exe.parent().expect("deps");
    deps.parent().unwrap_or(deps).join("tallyd")
}

fn round_trip(c: &mut Criterion) {
    let spec = TallydSpec {
        bin: tallyd(),
        seats: 0,
        workers: 1,
        // No fsync before each reply: the round trip, not the disk.
        extra: vec!["--durability".into(), "off".into()],
    };
    let server = match start_tallyd_licensed(&spec, LICENSE, &Placement { server_core: None }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("client bench skipped: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("checkout_round_trip");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));

    let addr = ServerAddr {
        port: server.addr.port(),
        host: server.addr.ip().to_string(),
    };
    let mut client = Client::with_timeouts(vec![addr], Timeouts::default());
    let req = Checkout::new("F", "u", "h", "bench").linger(Duration::from_secs(600));
    assert_eq!(req.line().ok().as_deref(), Some(LINE));
    client.checkout(&req).expect("first checkout");
    g.bench_function("tally_client::Client::renew", |b| {
        b.iter(|| black_box(client.renew(black_box(&req)).expect("renew")))
    });

    let stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let request = format!("{LINE}\n");
    let mut reply = Vec::with_capacity(128);
    g.bench_function("raw_socket", |b| {
        b.iter(|| {
            writer.write_all(request.as_bytes()).expect("write");
            reply.clear();
            reader.read_until(b'\n', &mut reply).expect("read");
            assert!(reply.starts_with(b"OK F bench "));
            black_box(&reply);
        })
    });
    g.finish();
    drop(server);
}

/// The library's per-call work without the network: the request line
/// built and checked, the reply line parsed (what `renew` adds to a raw
/// socket's round trip, less the grant's field split).
fn client_side_work(c: &mut Criterion) {
    let req = Checkout::new("F", "u", "h", "bench").linger(Duration::from_secs(600));
    c.bench_function("checkout_line_and_reply_parse", |b| {
        b.iter(|| {
            let line = black_box(&req).line().expect("line");
            let reply = Reply::parse(black_box("OK F bench 1700000600000"));
            black_box((line, reply))
        })
    });
}

criterion_group!(benches, round_trip, client_side_work);
criterion_main!(benches);
