//! Checkout-table benches: tally against `Mutex<HashMap>` and `DashMap`
//! doing the same work, in the same run.
//!
//! `cargo bench -p tally-bench --bench engine`
//!
//! Besides criterion's groups, the two-thread case is measured once more
//! in a way fit to track regressions on a shared machine
//! (`checkout_checkin/2_threads_interleaved`): the two threads pinned to
//! separate cores, the three tables run in turn within each of
//! [`ROUNDS`] rounds (ABCABC...), and what is reported is each table's
//! median ns per pair and, per round, tally's speed over the better
//! baseline's (the baseline's ns per pair over tally's: above 1, tally is
//! faster; the goal's "two threads >= 1.5x"): the median of that ratio
//! with its min, max and quartiles.
//! A load burst then spoils a round of all three tables, not one table's
//! whole measurement. `TALLY_BENCH_ROUNDS` and `TALLY_BENCH_PAIRS` change
//! the rounds and the pairs per thread per table per round.

#![forbid(unsafe_code)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
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

/// Runs `iters` checkout+check-in pairs on each of `per_thread.len()`
/// threads, thread `t` pinned to core `t` (modulo the cores there are);
/// the slowest thread's time.
fn run_threads(w: &dyn Workload, per_thread: &[Vec<String>], iters: u64) -> Duration {
    let barrier = Barrier::new(per_thread.len());
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    std::thread::scope(|s| {
        let joins: Vec<_> = per_thread
            .iter()
            .enumerate()
            .map(|(t, hs)| {
                let barrier = &barrier;
                let core = (!cores.is_empty()).then(|| cores[t % cores.len()]);
                s.spawn(move || {
                    if let Some(core) = core {
                        // Best effort: unpinned if the OS refuses.
                        let _ = core_affinity::set_for_current(core);
                    }
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

/// Rounds of the interleaved two-thread measurement (after one warm-up
/// round that is not counted).
const ROUNDS: usize = 21;
/// Pairs each thread does per table per round.
const PAIRS: u64 = 200_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q`-quantile (0..=1) of sorted `v`, by linear interpolation.
fn quantile(v: &[f64], q: f64) -> f64 {
    let x = q * (v.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The two-thread case, tables interleaved within each round, threads
/// pinned; prints each table's median and the tally/best-baseline ratio's
/// median and spread (module docs).
fn checkout_checkin_2_threads_interleaved(rounds: usize, pairs: u64) {
    let tables = workloads();
    let per_thread: Vec<Vec<String>> = (0..2)
        .map(|t| {
            handles(HANDLES)
                .into_iter()
                .map(|h| format!("t{t}{h}"))
                .collect()
        })
        .collect();
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    // ns per pair, [table][round]
    let mut ns = vec![Vec::with_capacity(rounds); tables.len()];
    for round in 0..=rounds {
        for (k, w) in tables.iter().enumerate() {
            let t = run_threads(&**w, &per_thread, pairs);
            if round > 0 {
                ns[k].push(t.as_nanos() as f64 / pairs as f64);
            }
        }
    }
    let ratios = sorted(
        (0..rounds)
            .map(|r| ns[1][r].min(ns[2][r]) / ns[0][r])
            .collect(),
    );
    println!(
        "checkout_checkin/2_threads_interleaved: {rounds} rounds x {pairs} pairs per thread, \
         threads pinned to cores 0 and 1 ({cores} cores seen), tables in turn"
    );
    for (k, w) in tables.iter().enumerate() {
        let v = sorted(ns[k].clone());
        println!(
            "  {:<16} median {:7.1} ns/pair  (min {:.1}, max {:.1})",
            w.name(),
            quantile(&v, 0.5),
            v[0],
            v[v.len() - 1]
        );
    }
    println!(
        "  tally speed / best baseline's (>1: tally faster): median {:.3}x  IQR {:.3}..{:.3}  min {:.3}  max {:.3}",
        quantile(&ratios, 0.5),
        quantile(&ratios, 0.25),
        quantile(&ratios, 0.75),
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

criterion_group!(
    benches,
    checkout_checkin_1_thread,
    checkout_checkin_2_threads,
    renewal,
    expiry
);

fn main() {
    benches();
    // As criterion: without `--bench` (which `cargo bench` passes; `cargo
    // test --benches` does not) each bench runs once, as a test; a
    // positional argument names the benches to run.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = !args.iter().any(|a| a == "--bench");
    let name = "checkout_checkin/2_threads_interleaved";
    // Criterion's options that take a value (the value is not a filter).
    const VALUED: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--color",
        "--output-format",
        "--plotting-backend",
        "--profile-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
    ];
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|&(i, a)| {
            !a.starts_with('-') && (i == 0 || !VALUED.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .collect();
    let wanted = filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if wanted && !args.iter().any(|a| a == "--list") {
        if test {
            checkout_checkin_2_threads_interleaved(1, 1_000);
        } else {
            checkout_checkin_2_threads_interleaved(
                env_or("TALLY_BENCH_ROUNDS", ROUNDS).max(1),
                env_or("TALLY_BENCH_PAIRS", PAIRS).max(1),
            );
        }
    }
    Criterion::default().configure_from_args().final_summary();
}
