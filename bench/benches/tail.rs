//! Tail latency of checkout+check-in, per operation, in an hdrhistogram:
//! tally vs `Mutex<HashMap>` vs `DashMap`, 1 and 2 threads, same run.
//!
//! `cargo bench -p tally-bench --bench tail` (set `TAIL_OPS` to change the
//! operations per thread; default 2,000,000).

#![forbid(unsafe_code)]

use std::sync::Barrier;
use std::time::Instant;

use hdrhistogram::Histogram;
use tally_bench::baseline::{DashTable, MutexTable};
use tally_bench::{handles, TallyEngine, Workload};

const NOW: u64 = 1_700_000_000_000;

fn ops() -> usize {
    std::env::var("TAIL_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

fn measure(w: &dyn Workload, threads: usize, ops: usize) -> Histogram<u64> {
    let barrier = Barrier::new(threads);
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let joins: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let hs: Vec<String> = handles(1024)
                        .into_iter()
                        .map(|h| format!("t{t}{h}"))
                        .collect();
                    let mut hist =
                        Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("bounds");
                    barrier.wait();
                    for i in 0..ops {
                        let h = &hs[i % hs.len()];
                        let start = Instant::now();
                        let ok = w.checkout(h, 0, NOW) && w.checkin(h);
                        let ns = start.elapsed().as_nanos() as u64;
                        assert!(ok);
                        hist.saturating_record(ns.max(1));
                    }
                    hist
                })
            })
            .collect();
        joins.into_iter().filter_map(|j| j.join().ok()).collect()
    });
    let mut all = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("bounds");
    for h in &hists {
        all.add(h).expect("same bounds");
    }
    all
}

fn timer_overhead(ops: usize) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("bounds");
    for _ in 0..ops {
        let start = Instant::now();
        hist.saturating_record((start.elapsed().as_nanos() as u64).max(1));
    }
    hist
}

fn main() {
    // `cargo test --benches` runs bench binaries with no work to do.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let ops = ops();
    println!(
        "checkout+check-in latency, ns per pair, {ops} pairs per thread (timer overhead included)"
    );
    println!("| table | threads | p50 | p90 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|---|");
    let t = timer_overhead(ops);
    println!(
        "| (timer only) | 1 | {} | {} | {} | {} | {} |",
        t.value_at_quantile(0.5),
        t.value_at_quantile(0.9),
        t.value_at_quantile(0.99),
        t.value_at_quantile(0.999),
        t.max()
    );
    for threads in [1, 2] {
        let tables: Vec<Box<dyn Workload>> = vec![
            Box::new(TallyEngine::new(100_000)),
            Box::new(MutexTable::new(100_000)),
            Box::new(DashTable::new(100_000)),
        ];
        for w in &tables {
            let h = measure(&**w, threads, ops);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                w.name(),
                threads,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        }
    }
}
