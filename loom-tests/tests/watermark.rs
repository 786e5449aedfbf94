//! loom model of `tally_core::watermark::Watermark`, the journal's "durable
//! up to batch n" mark: a loop that sees n also sees that batch n was
//! written (so it never sends a reply before its record is durable), and the
//! mark it reads never goes back.
//!
//! Run as the other models: `RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release`.
//! Checked mutation: with `Relaxed` instead of `Release` in `publish`, the
//! first model fails (a reader sees batch 1 published but not done).
#![cfg(loom)]
#![forbid(unsafe_code)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use tally_core::watermark::Watermark;

#[test]
fn a_reader_that_sees_n_sees_batch_n_done() {
    loom::model(|| {
        let mark = Arc::new(Watermark::new());
        // done[i]: batch i+1 was written and synced (the journal's work).
        let done = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let writer = {
            let (mark, done) = (mark.clone(), done.clone());
            thread::spawn(move || {
                for n in 1..=2u64 {
                    done[(n - 1) as usize].store(true, Ordering::Relaxed);
                    mark.publish(n);
                }
            })
        };
        let first = mark.get();
        for n in 1..=first {
            assert!(
                done[(n - 1) as usize].load(Ordering::Relaxed),
                "batch {n} not done"
            );
        }
        let second = mark.get();
        assert!(second >= first, "the mark went back");
        writer.join().unwrap();
        assert_eq!(mark.get(), 2);
    });
}

#[test]
fn two_publishers_keep_the_largest() {
    loom::model(|| {
        let mark = Arc::new(Watermark::new());
        let a = {
            let mark = mark.clone();
            thread::spawn(move || mark.publish(2))
        };
        mark.publish(1);
        a.join().unwrap();
        assert_eq!(mark.get(), 2);
    });
}
