//! Shared by the tests: a sequential replay of a witness order.

use tally_check::{History, Kind, Outcome};

/// Replays a witness order sequentially: every reply agrees and the count
/// stays within the limit.
pub(crate) fn replay(h: &History, order: &[usize]) {
    let mut held: Vec<&str> = h.held().iter().map(String::as_str).collect();
    let mut seen = vec![false; h.ops().len()];
    for &i in order {
        assert!(!std::mem::replace(&mut seen[i], true), "op {i} twice");
        let op = &h.ops()[i];
        let has = held.contains(&op.handle.as_str());
        match (op.kind, op.outcome) {
            (Kind::Checkout, Outcome::Granted | Outcome::Unknown) => {
                if !has {
                    held.push(&op.handle);
                }
            }
            (Kind::Checkout, Outcome::Denied) => {
                assert!(!has && held.len() >= h.limit() as usize, "op {i}")
            }
            (Kind::Checkin, Outcome::NotHeld) => assert!(!has, "op {i}"),
            (_, Outcome::Released | Outcome::Unknown) => {
                assert!(has, "op {i}");
                held.retain(|x| *x != op.handle);
            }
            other => panic!("op {i}: {other:?}"),
        }
        assert!(
            held.len() <= h.limit() as usize,
            "over the limit after op {i}"
        );
    }
    // Every operation with a known reply is in the order.
    for (i, op) in h.ops().iter().enumerate() {
        assert!(seen[i] || op.outcome == Outcome::Unknown, "op {i} missing");
    }
}
