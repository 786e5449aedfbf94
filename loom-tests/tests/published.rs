//! loom models of `tally_core::sync::Published`, the generation cell a
//! REREAD swaps: a reader that loads version `v` and refreshes holds a value
//! at least as new as `v`'s, the version it reports is the one its value
//! was published with, and the fields of one value are never mixed with
//! another's.
//!
//! Run as the other models: `RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release`.
//! Checked mutation: storing the atomic version before installing the value
//! in `publish` (outside the lock) makes the first model fail (a reader
//! sees version 1 and refreshes to version 0's value).
#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use tally_core::sync::Published;

/// What a generation holds: the engine and the options compiled for it are
/// published together, so they always agree.
#[derive(Debug)]
struct Gen {
    engine: u64,
    options: u64,
}

fn gen(n: u64) -> Arc<Gen> {
    Arc::new(Gen {
        engine: n,
        options: n,
    })
}

#[test]
fn a_reader_that_sees_v_gets_at_least_v() {
    loom::model(|| {
        let cell = Arc::new(Published::from_arc(gen(0)));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                assert_eq!(cell.publish(gen(1)), 1);
                assert_eq!(cell.publish(gen(2)), 2);
            })
        };
        let mut reader = cell.reader();
        let mut last = reader.version();
        for _ in 0..2 {
            let seen = cell.version();
            reader.refresh(&cell);
            let value = reader.get();
            assert!(
                value.engine >= seen,
                "saw version {seen}, got {}",
                value.engine
            );
            assert_eq!(reader.version(), value.engine, "version of another value");
            assert_eq!(value.options, value.engine, "torn generation");
            assert!(reader.version() >= last, "went back");
            last = reader.version();
        }
        writer.join().unwrap();
        reader.refresh(&cell);
        assert_eq!(reader.version(), 2);
        assert_eq!(reader.get().engine, 2);
    });
}

#[test]
fn two_writers_give_each_value_its_own_version() {
    loom::model(|| {
        let cell = Arc::new(Published::from_arc(gen(0)));
        let other = {
            let cell = cell.clone();
            thread::spawn(move || cell.publish(gen(7)))
        };
        let mine = cell.publish(gen(9));
        let theirs = other.join().unwrap();
        let mut both = [mine, theirs];
        both.sort_unstable();
        assert_eq!(both, [1, 2]);
        let (version, value) = cell.load();
        assert_eq!(version, 2);
        // The last one published is the one kept.
        let expected = if mine == 2 { 9 } else { 7 };
        assert_eq!(value.engine, expected);
    });
}
