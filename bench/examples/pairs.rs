//! Runs N checkout+check-in pairs (or, with `renew`, N renewals of held
//! instances) on one table, for instruction-count profiles that do not
//! depend on machine load:
//!
//! `valgrind --tool=callgrind target/release/examples/pairs tally 100000`
//!
//! The table is one of `tally`, `mutex-hashmap`, `dashmap`. Subtract a run
//! with N = 0 (setup only) and divide by N for instructions per operation.

#![forbid(unsafe_code)]

use tally_bench::baseline::{DashTable, MutexTable};
use tally_bench::{handles, TallyEngine, Workload};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "tally".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let w: Box<dyn Workload> = match which.as_str() {
        "tally" => Box::new(TallyEngine::new(100_000)),
        "mutex-hashmap" => Box::new(MutexTable::new(100_000)),
        "dashmap" => Box::new(DashTable::new(100_000)),
        other => {
            eprintln!("pairs: unknown table {other:?} (tally, mutex-hashmap, dashmap)");
            std::process::exit(2);
        }
    };
    let renew = args.next().as_deref() == Some("renew");
    let hs = handles(1024);
    if renew {
        for h in &hs {
            assert!(w.checkout(h, 60_000, 1_700_000_000_000));
        }
        for i in 0..n {
            let h = &hs[i % hs.len()];
            let now = 1_700_000_000_000 + i as u64;
            assert!(w.checkout(std::hint::black_box(h), 60_000, now));
        }
        return;
    }
    for i in 0..n {
        let h = &hs[i % hs.len()];
        assert!(w.checkout(std::hint::black_box(h), 0, 1_700_000_000_000));
        assert!(w.checkin(h));
    }
}
