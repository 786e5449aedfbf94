//! loom model of the journal's marker rounds (`tally-server`'s
//! `journal/kept.rs`, `Recent`, and `LoopJournal::send`): once every loop
//! has answered a round, a grant or renewal record that arrives later and
//! was overtaken by a release of another loop finds that release among
//! the ones the journal keeps (those that arrived after the round began),
//! so a snapshot marked then writes it as a tombstone.
//!
//! The server's code is not built with loom, so the model restates its
//! steps with the same orderings: the journal thread notes where the round
//! starts (the releases taken so far), then raises the epoch (Release); a
//! loop, at the end of its event round, sends its batch, then loads the
//! epoch (Acquire) and, if it changed, sends a marker; a renewal and a
//! release of one instance are CASes on its slot word (AcqRel); the
//! channel is FIFO. Checked mutations: raising the epoch before noting
//! where the round starts fails the model (at the usual
//! `LOOM_MAX_PREEMPTIONS=2`); answering a round before sending the batch
//! fails it with `LOOM_MAX_PREEMPTIONS=4` (it needs five switches; the
//! model passes at 4 too, in about 2 s).
//!
//! Run as the other models: `RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release`.
#![cfg(loom)]
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    /// A grant or renewal record of the instance (loop A).
    Out,
    /// Its release (loop B).
    In,
    /// Loop `0` (A) or `1` (B) answered round `1`.
    Marker(usize),
}

const LIVE: u64 = 1;
const FREE: u64 = 2;

/// A loop's end of round: its batch, then its marker if a round began.
fn end_of_round(
    me: usize,
    batch: &mut Vec<Msg>,
    chan: &Mutex<VecDeque<Msg>>,
    epoch: &AtomicU64,
    answered: &mut u64,
) {
    let mut c = chan.lock().unwrap();
    c.extend(batch.drain(..));
    drop(c);
    if epoch.load(Ordering::Relaxed) != *answered {
        *answered = epoch.load(Ordering::Acquire);
        chan.lock().unwrap().push_back(Msg::Marker(me));
    }
}

#[test]
fn a_release_that_overtook_a_later_record_is_kept_by_the_round() {
    loom::model(|| {
        let slot = Arc::new(AtomicU64::new(LIVE));
        let epoch = Arc::new(AtomicU64::new(0));
        let chan = Arc::new(Mutex::new(VecDeque::new()));
        // Loop A renews the instance (a record), in two event rounds.
        let a = {
            let (slot, epoch, chan) = (slot.clone(), epoch.clone(), chan.clone());
            thread::spawn(move || {
                let (mut batch, mut answered) = (Vec::new(), 0);
                for _ in 0..2 {
                    if slot
                        .compare_exchange(LIVE, LIVE, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        batch.push(Msg::Out);
                    }
                    end_of_round(0, &mut batch, &chan, &epoch, &mut answered);
                }
            })
        };
        // Loop B checks it in, then has one more event round.
        let b = {
            let (slot, epoch, chan) = (slot.clone(), epoch.clone(), chan.clone());
            thread::spawn(move || {
                let (mut batch, mut answered) = (Vec::new(), 0);
                if slot
                    .compare_exchange(LIVE, FREE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    batch.push(Msg::In);
                }
                end_of_round(1, &mut batch, &chan, &epoch, &mut answered);
                end_of_round(1, &mut batch, &chan, &epoch, &mut answered);
            })
        };
        // The journal thread: takes what arrived, starts round 1 (where it
        // starts, then the epoch), takes the rest.
        let mut taken: Vec<Msg> = Vec::new();
        taken.extend(chan.lock().unwrap().drain(..));
        let from = taken.len();
        epoch.store(1, Ordering::Release);
        a.join().unwrap();
        b.join().unwrap();
        taken.extend(chan.lock().unwrap().drain(..));
        // Where the round completed (both markers taken), if it did.
        let mut markers = 0;
        let Some(done) = taken.iter().position(|m| {
            markers += usize::from(matches!(m, Msg::Marker(_)));
            markers == 2
        }) else {
            return;
        };
        let released = taken.iter().position(|&m| m == Msg::In);
        for (i, &m) in taken.iter().enumerate() {
            if m == Msg::Out && i > done {
                if let Some(r) = released.filter(|&r| r < i) {
                    // A record after the round that the release came
                    // before: the release is one the journal keeps.
                    assert!(r >= from, "release at {r} before the round's start {from}");
                }
            }
        }
    });
}
