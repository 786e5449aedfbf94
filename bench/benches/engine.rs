//! Checkout-table benches: tally against `Mutex<HashMap>` and `DashMap`
//! doing the same work, in the same run.
//!
//! `cargo bench -p tally-bench --bench engine`

#![forbid(unsafe_code)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tally_bench::baseline::{DashTable, MutexTable};
use tally_bench::{handles, TallyEngine, Workload};
use tally_core::engine::{Lingers, Request};

const NOW: u64 = 1_700_000_000_000;
/// Licenses in the bench pool: enough that no checkout is denied.
const LICENSES: u32 = 100_000;
/// Distinct handles each thread cycles through.
const HANDLES: usize = 1024;

fn workloads() -> Vec<Box<dyn Workload>> {
    vec![
        Box::new(TallyEngine::new(LICENSES)),
        Box::new(MutexTable::new(LICENSES)),
        Box::new(DashTable::new(LICENSES)),
    ]
}

/// One checkout (new instance) and its check-in, one thread.
fn checkout_checkin_1_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("checkout_checkin/1_thread");
    g.throughput(Throughput::Elements(1));
    for w in workloads() {
        let hs = handles(HANDLES);
        let mut i = 0;
        g.bench_function(w.name(), |b| {
            b.iter(|| {
                let h = &hs[i % HANDLES];
                i += 1;
                assert!(w.checkout(black_box(h), 0, NOW));
                assert!(w.checkin(h));
            })
        });
    }
    g.finish();
}

/// The same on two threads at once, each with its own handles; the time
/// reported is per checkout+check-in pair on one thread.
fn checkout_checkin_2_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("checkout_checkin/2_threads");
    g.throughput(Throughput::Elements(1));
    for w in workloads() {
        let per_thread: Vec<Vec<String>> = (0..2)
            .map(|t| {
                handles(HANDLES)
                    .into_iter()
                    .map(|h| format!("t{t}{h}"))
                    .collect()
            })
            .collect();
        g.bench_function(w.name(), |b| {
            b.iter_custom(|iters| run_threads(&*w, &per_thread, iters))
        });
    }
    g.finish();
}

fn run_threads(w: &dyn Workload, per_thread: &[Vec<String>], iters: u64) -> Duration {
    let barrier = Barrier::new(per_thread.len());
    std::thread::scope(|s| {
        let joins: Vec<_> = per_thread
            .iter()
            .map(|hs| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let h = &hs[i % hs.len()];
                        assert!(w.checkout(h, 0, NOW));
                        assert!(w.checkin(h));
                    }
                    start.elapsed()
                })
            })
            .collect();
        joins
            .into_iter()
            .map(|j| j.join().unwrap_or_default())
            .max()
            .unwrap_or_default()
    })
}

/// Renewal: the handle already holds an instance; a checkout moves its
/// deadline (an agent's 6-hourly renewal).
fn renewal(c: &mut Criterion) {
    let mut g = c.benchmark_group("renewal");
    g.throughput(Throughput::Elements(1));
    for w in workloads() {
        let hs = handles(HANDLES);
        for h in &hs {
            assert!(w.checkout(h, 60_000, NOW));
        }
        let mut i = 0u64;
        g.bench_function(w.name(), |b| {
            b.iter(|| {
                let h = &hs[i as usize % HANDLES];
                i += 1;
                assert!(w.checkout(black_box(h), 60_000, NOW + i));
            })
        });
    }
    g.finish();
}

/// Expiry: N lingering instances all come due; time to release them all
/// through the timer wheel (per release).
fn expiry(c: &mut Criterion) {
    let mut g = c.benchmark_group("expiry");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        g.throughput(Throughput::Elements(n as u64));
        let hs = handles(n);
        g.bench_with_input(BenchmarkId::new("tally", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let e = TallyEngine::new(n as u32);
                    let mut lingers = Lingers::with_capacity(NOW, n);
                    for (k, h) in hs.iter().enumerate() {
                        let mut r = Request::new("F", "user", "host", h);
                        r.linger_ms = 1_000 + (k % 1000) as u64;
                        let g = e.0.checkout(&r, NOW).expect("granted");
                        lingers.track(&g);
                    }
                    (e, lingers)
                },
                |(e, mut lingers)| {
                    let released = lingers.expire(&e.0, NOW + 2_000, |r| {
                        black_box(r);
                    });
                    assert_eq!(released, n);
                    (e, lingers)
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    checkout_checkin_1_thread,
    checkout_checkin_2_threads,
    renewal,
    expiry
);
criterion_main!(benches);
