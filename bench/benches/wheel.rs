//! Timer-wheel benches: insert/cancel pairs and insert+fire.
//!
//! `cargo bench -p tally-bench --bench wheel`

#![forbid(unsafe_code)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_core::wheel::Wheel;

fn insert_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("wheel");
    g.throughput(Throughput::Elements(1));
    let mut w: Wheel<u64> = Wheel::with_capacity(1 << 20);
    // A realistic background: 100k timers spread over an hour.
    for i in 0..100_000u64 {
        w.insert((i * 36_001) % 3_600_000, i);
    }
    let mut d = 0u64;
    g.bench_function("insert_cancel", |b| {
        b.iter(|| {
            d = (d + 7_919) % 3_600_000;
            let k = w.insert(black_box(d), 1);
            black_box(w.cancel(k));
        })
    });
    g.bench_function("insert_fire", |b| {
        let mut w: Wheel<u64> = Wheel::with_capacity(1 << 16);
        let mut now = 0u64;
        b.iter(|| {
            w.insert(now + 1_000, now);
            now += 1;
            black_box(w.poll(now));
        })
    });
    g.finish();
}

criterion_group!(benches, insert_cancel);
criterion_main!(benches);
